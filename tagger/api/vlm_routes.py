"""VLM captions over HTTP: one image, folder jobs, the server's endpoints and the templates.

Routes (under ``/tagger/v1``):

- ``POST /vlm/caption`` (and ``POST /caption`` with a ``vlm`` field): one image, a VLM captioner
  (``vlm-api`` for an endpoint, or a local VLM's key or folder name), the VLM options, and
  optionally a tagger whose tags fill the prompt;
- ``POST /vlm/jobs``: the same over folders on the server (the batch jobs' allow-list applies);
  progress, summary (with the tokens and cost) and cancel through ``/jobs/{id}``;
- ``GET /vlm/endpoints``: the endpoints this server's owner configured, and whether their key
  variable is set (never the key);
- ``GET /vlm/templates``: the built-in templates and the fields a template may name.

The key stays on the server: a request names one of the endpoints the server's owner configured
(``tagger serve --vlm-endpoint``, ``mount(vlm_endpoints=...)`` or ``$TAGGER_VLM_ENDPOINTS``), each
with its URL and key variable; a request carrying ``url`` or ``key_env`` is refused, so a client
can neither read a server variable nor send it anywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, StrictStr

from tagger.api.errors import DOCUMENTED, make_route_class
from tagger.api.models import IMAGE_DESCRIPTION, ErrorResponse, JobStatus
from tagger.errors import ImageFailedError, OptionsError, PathNotAllowedError
from tagger.options import (
    BatchOptions,
    CaptionOptions,
    OutputOptions,
    StrictModel,
    TagOptions,
    dump,
    parse,
)
from tagger.registry import VLM_API_KEY
from tagger.vlm.options import VlmOptions

log = logging.getLogger("tagger")

PREFIX = "/tagger/v1"
VLM_MODEL_DESCRIPTION = (
    "A VLM captioner: vlm-api (an endpoint of this server, see /tagger/v1/vlm/endpoints), a "
    "local VLM's registry key (florence2-base, joycaption-beta-one, qwen2.5-vl-3b, ...) or the "
    "name of a VLM folder in the server's models folders."
)


class EndpointNotAllowedError(PathNotAllowedError):
    """A request named an endpoint this server's owner did not configure, or tried to give a
    URL or key variable of its own (403, as a path outside the allowed folders)."""


# -- request and reply models --------------------------------------------------------------------


class VlmCaptionRequest(StrictModel):
    """``POST /tagger/v1/vlm/caption``: one image and a VLM."""

    image: StrictStr = Field(..., description=IMAGE_DESCRIPTION)
    model: StrictStr = Field(VLM_API_KEY, description=VLM_MODEL_DESCRIPTION)
    endpoint: StrictStr | None = Field(
        None,
        description="For vlm-api: the name of an endpoint of this server (default: its only "
        "one, when it has one).",
    )
    vlm: VlmOptions = Field(
        default_factory=VlmOptions,
        description="VLM options (model, template, prompt, limits, ...); url and key_env are "
        "the server's, never the request's.",
    )
    tagger: StrictStr | None = Field(
        None, description="A tagger whose kept tags fill the prompt's tag fields ({tags}, ...)."
    )
    tag_options: TagOptions = Field(
        default_factory=TagOptions, description="How the tagger's scores become kept tags."
    )
    fields: dict[str, StrictStr] = Field(
        default_factory=dict,
        description="Other prompt fields: name, folder, caption, existing.",
    )


class VlmCaptionResponse(BaseModel):
    """The caption of one image, or why there is none."""

    model: str = Field(..., description="The captioner that ran.")
    caption: str | None = Field(None, description="The cleaned caption (null: see failure).")
    failure: str | None = Field(
        None, description="Why there is no caption (refused, empty, cut off, failed requests)."
    )
    prompt: str = Field(..., description="The user prompt sent, fields filled.")
    system: str = Field("", description="The system prompt sent.")
    tags: list[str] | None = Field(None, description="The tagger's tags, as a caption lists them.")
    usage: dict[str, float] = Field(
        default_factory=dict, description="prompt_tokens, completion_tokens, requests, cost."
    )


class VlmJobRequest(StrictModel):
    """``POST /tagger/v1/vlm/jobs``: caption folders on the server with a VLM."""

    inputs: list[StrictStr] = Field(
        ..., description="Absolute paths on the server, inside the folders it allows."
    )
    model: StrictStr = Field(VLM_API_KEY, description=VLM_MODEL_DESCRIPTION)
    endpoint: StrictStr | None = Field(None, description="For vlm-api: an endpoint's name.")
    vlm: VlmOptions = Field(default_factory=VlmOptions, description="VLM options.")
    tagger: StrictStr | None = Field(
        None,
        description="Also tag each image with this tagger in the same pass (its tags fill the "
        "prompt); the outputs then follow output.template.",
    )
    tag_options: TagOptions = Field(default_factory=TagOptions, description="Tag options.")
    batch: BatchOptions = Field(
        default_factory=lambda: BatchOptions(caption_extension=".caption"),
        description="Batch options (default caption extension .caption).",
    )
    output: OutputOptions = Field(
        default_factory=lambda: OutputOptions(template="separate"),
        description="With a tagger: how tags and caption are written (default separate files).",
    )


class EndpointInfo(BaseModel):
    """One endpoint of this server."""

    name: str
    url: str
    key_env: str = Field("", description="The variable its key is read from ('' : none).")
    key_set: bool = Field(..., description="Whether that variable is set on the server.")


class EndpointsResponse(BaseModel):
    """``GET /tagger/v1/vlm/endpoints``."""

    endpoints: list[EndpointInfo]


class TemplateInfo(BaseModel):
    """One built-in template."""

    name: str
    description: str
    system: str
    user: str
    reply: str


class TemplatesResponse(BaseModel):
    """``GET /tagger/v1/vlm/templates``."""

    templates: list[TemplateInfo]
    fields: list[str]


# -- what the routes do -------------------------------------------------------------------------


def endpoint_options(
    service: Any, model: str, endpoint: str | None, options: VlmOptions
) -> tuple[Any, VlmOptions]:
    """The captioner spec and the VLM options a request may run with (the endpoint's URL and
    key variable filled in by the server)."""
    spec = service.resolve_captioner(model)
    from tagger.vlm import is_vlm_family

    if not is_vlm_family(spec.family):
        raise OptionsError(
            f"{spec.key!r} is not a vision-language model: use /tagger/v1/caption for BLIP and "
            "CLIP-prefix captioners"
        )
    if options.url is not None or options.key_env is not None:
        raise EndpointNotAllowedError(
            "vlm.url and vlm.key_env are set by the server's owner, never by a request: name one "
            "of the server's endpoints in 'endpoint' (GET /tagger/v1/vlm/endpoints)"
        )
    if spec.family != "vlm-api":
        return spec, options
    table = getattr(service, "vlm_endpoints", {}) or {}
    if not table:
        raise EndpointNotAllowedError(
            "this server has no VLM endpoint: its owner adds them with tagger serve "
            "--vlm-endpoint (or $TAGGER_VLM_ENDPOINTS)"
        )
    name = endpoint or (next(iter(table)) if len(table) == 1 else None)
    if name is None or name not in table:
        raise EndpointNotAllowedError(
            f"no VLM endpoint {endpoint!r} on this server: use one of {', '.join(table)}"
        )
    chosen = table[name]
    data = {**dump(options), "url": chosen.url, "key_env": chosen.key_env or None}
    return spec, parse(VlmOptions, data)


def vlm_captioner(service: Any, spec: Any, options: VlmOptions, *, load: bool = True) -> Any:
    """The (cached) captioner for a request, on the server's device."""
    from tagger.captioners import get_captioner
    from tagger.captioners.common import torch_device_for

    providers = service.providers
    text = providers if isinstance(providers, str) else ",".join(providers or [])
    return get_captioner(
        spec,
        device=torch_device_for(text),
        device_id=service.device_id,
        cache_dir=service.hf_cache,
        models_dirs=service.models_dirs,
        vlm=options,
        load=load,
    )


def caption_request(service: Any, req: VlmCaptionRequest) -> dict[str, Any]:
    """``POST /vlm/caption``: one image captioned (tag-guided when a tagger is named)."""
    from tagger.tags import caption_tags

    spec, options = endpoint_options(service, req.model, req.endpoint, req.vlm)
    unknown = set(req.fields) - {"name", "folder", "caption", "existing"}
    if unknown:
        raise OptionsError(
            f"unknown prompt fields {sorted(unknown)}: give name, folder, caption or existing "
            "(the tag fields come from 'tagger')"
        )
    data = service.image_bytes(req.image)  # the server's size and pixel limits
    tags = None
    if req.tagger:
        tags = service.scores(service.resolve(req.tagger), data).select(req.tag_options)
    # decoded in the server's decode pool (at most max_decodes at once), like the taggers' input
    image = service.prepared(data, lambda decoded: decoded.convert("RGB"))
    local = spec.family != "vlm-api"
    if local:  # a local model runs under the server's lock (the webui's queue)
        with service.running():
            captioner = vlm_captioner(service, spec, options)
            result = captioner.caption_image(
                image, tags=tags, tag_options=req.tag_options, fields=req.fields
            )
    else:
        captioner = vlm_captioner(service, spec, options)
        result = captioner.caption_image(
            image, tags=tags, tag_options=req.tag_options, fields=req.fields
        )
    return {
        "model": spec.key,
        "caption": result.caption,
        "failure": result.failure,
        "prompt": result.prompt,
        "system": result.system,
        "tags": caption_tags(tags, req.tag_options) if tags is not None else None,
        "usage": result.usage,
    }


def caption_route(service: Any, req: Any) -> dict[str, Any]:
    """``POST /caption`` for a vision-language model (a ``CaptionRequest`` with ``vlm``): the
    same reply as for BLIP; a model that gives no caption is a 422 naming why."""
    request = VlmCaptionRequest(
        image=req.image,
        model=req.model,
        endpoint=req.endpoint,
        vlm=req.vlm or VlmOptions(),
        tagger=req.tagger,
    )
    out = caption_request(service, request)
    if out["caption"] is None:
        raise ImageFailedError(
            f"no caption: {out['failure']} (POST /tagger/v1/vlm/caption answers the failure "
            "with the tokens it cost)",
            out["usage"],
        )
    return {"model": out["model"], "caption": out["caption"]}


class LockedModel:
    """A batch model whose ``forward`` runs under the server's lock (local VLMs in jobs, so
    the webui's generation interleaves between batches); everything else is the model's."""

    def __init__(self, model: Any, service: Any) -> None:
        self._model = model
        self._service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def load(self) -> LockedModel:
        """Load under the lock."""
        with self._service.running():
            self._model.load()
        return self

    def forward(self, batch: Any) -> Any:
        """One batch under the lock."""
        with self._service.running():
            return self._model.forward(batch)


def start_job(api: Any, req: VlmJobRequest) -> Any:
    """``POST /vlm/jobs``: check the paths and the endpoint, then start the run as a job."""
    from tagger.batch import BatchRun, DeferredModel, check_inputs
    from tagger.interrogate import Interrogator

    service, allow = api.service, api.jobs.allow
    allow.require_enabled()
    for path in req.inputs:
        allow.check(path, "input", pattern=True)
    if req.batch.output_dir:
        allow.check(req.batch.output_dir, "output_dir")
    if req.batch.jsonl:
        allow.check(req.batch.jsonl, "jsonl")
    check_inputs(req.inputs)
    spec, options = endpoint_options(service, req.model, req.endpoint, req.vlm)
    vlm_captioner(service, spec, options, load=False)  # bad options stop the request here
    tagger_spec = service.resolve(req.tagger) if req.tagger else None
    local = spec.family != "vlm-api"

    def build() -> Any:
        tagger = service.tagger(tagger_spec) if tagger_spec is not None else None
        captioner = vlm_captioner(service, spec, options, load=False)
        model = Interrogator(tagger, captioner, CaptionOptions(), tag_options=req.tag_options)
        return LockedModel(model, service) if local or tagger is not None else model

    outputs = ("tags", "caption") if tagger_spec is not None else ("caption",)

    def make_run(progress: Any) -> BatchRun:
        return BatchRun(
            req.inputs,
            DeferredModel(build, outputs),
            req.tag_options,
            req.batch,
            progress=progress,
            check=allow.item_check,
            output_options=req.output,
        )

    job = api.jobs.start_run(list(req.inputs), spec.key, make_run)
    return job.status()


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route may answer with."""
    return {s: {"model": ErrorResponse, "description": DOCUMENTED[s]} for s in statuses}


def build_vlm_router(api: Any, dependencies: Sequence[Any] = ()) -> APIRouter:
    """The VLM routes, with the same dependencies and error replies as the others."""
    from tagger.api.routes import as_dependency

    router = APIRouter(
        prefix=PREFIX,
        tags=["vlm"],
        dependencies=[as_dependency(d) for d in dependencies],
        route_class=make_route_class(),
    )

    @router.post(
        "/vlm/caption",
        response_model=VlmCaptionResponse,
        summary="Caption one image with a vision-language model",
        responses=_errors(403, 404, 413, 422, 503),
    )
    def post_vlm_caption(req: VlmCaptionRequest) -> dict[str, Any]:
        """The cleaned caption (or why there is none), the prompts sent and the tokens spent."""
        return caption_request(api.service, req)

    @router.post(
        "/vlm/jobs",
        response_model=JobStatus,
        status_code=202,
        summary="Caption folders on the server with a vision-language model",
        responses=_errors(403, 404, 422, 429, 503),
    )
    def post_vlm_job(req: VlmJobRequest) -> dict[str, Any]:
        """A batch job (see /tagger/v1/jobs/{id}); its summary holds the tokens and cost."""
        return start_job(api, req)

    @router.get(
        "/vlm/endpoints", response_model=EndpointsResponse, summary="This server's VLM endpoints"
    )
    def get_endpoints() -> dict[str, Any]:
        """Their names, URLs and key variables, and whether each variable is set (never the
        key)."""
        import os

        table = getattr(api.service, "vlm_endpoints", {}) or {}
        return {
            "endpoints": [
                {
                    "name": e.name,
                    "url": e.url,
                    "key_env": e.key_env,
                    "key_set": bool(e.key_env and os.environ.get(e.key_env)),
                }
                for e in table.values()
            ]
        }

    @router.get("/vlm/templates", response_model=TemplatesResponse, summary="Prompt templates")
    def get_templates() -> dict[str, Any]:
        """The built-in templates and the fields a template may name."""
        from tagger.vlm.templates import BUILTIN, FIELDS

        return {
            "templates": [
                {
                    "name": t.name,
                    "description": t.description,
                    "system": t.system,
                    "user": t.user,
                    "reply": t.reply,
                }
                for t in BUILTIN.values()
            ],
            "fields": list(FIELDS),
        }

    return router


def configure_endpoints(target: Any, specs: Any) -> None:
    """Give a mounted API (a FastAPI app, or its service) its VLM endpoints: ``specs`` (a
    list, or one ';'-separated text, of ``openai`` or ``NAME=URL[,KEY_VARIABLE]``), or
    ``$TAGGER_VLM_ENDPOINTS`` when None."""
    import os

    from tagger.vlm.options import parse_endpoints

    state = getattr(target, "state", None)
    service = state.tagger_api.service if state is not None else target
    if specs is None:
        specs = os.environ.get("TAGGER_VLM_ENDPOINTS", "")
    service.vlm_endpoints = parse_endpoints(specs)
    if service.vlm_endpoints:
        log.info("VLM endpoints: %s", ", ".join(service.vlm_endpoints))


__all__ = [
    "EndpointNotAllowedError",
    "build_vlm_router",
    "caption_request",
    "configure_endpoints",
]
