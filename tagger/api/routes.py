"""The routes under ``/tagger/v1``: the older extensions' routes and the full ones beside them.

Route groups are listed in ``ROUTE_GROUPS``; each adds its routes to the router.

Handlers are plain functions (FastAPI runs them in its thread pool), so requests run side by side;
models are loaded once through ``tagger.cache`` and run under the service's lock.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.params import Depends as DependsParam

from tagger.api.dataset import add_routes as _dataset_routes
from tagger.api.errors import DOCUMENTED, BodyGate, make_route_class
from tagger.api.jobs import JobManager
from tagger.api.models import (
    CaptionRequest,
    CaptionResponse,
    ErrorResponse,
    InterrogateRequest,
    InterrogateResponse,
    InterrogatorsResponse,
    JobRequest,
    JobsResponse,
    JobStatus,
    ModelsResponse,
    TagRequest,
    TagResponse,
    UnloadResponse,
)
from tagger.api.service import (
    TaggerService,
    model_info,
    picobyte_caption,
    picobyte_queue_entry,
    toriato_caption,
)
from tagger.errors import ImageLoadError
from tagger.vlm import is_vlm_family

PREFIX = "/tagger/v1"
TORIATO_DEFAULT_THRESHOLD = 0.35
PICOBYTE_DEFAULT_THRESHOLD = 0.0


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route may answer with."""
    return {
        status: {"model": ErrorResponse, "description": DOCUMENTED[status]} for status in statuses
    }


def fields_set(model: Any) -> set[str]:
    """The fields a request actually carried, on pydantic 1.10 and 2.x."""
    names = getattr(model, "model_fields_set", None)
    return set(names if names is not None else model.__fields_set__)


@dataclass
class Api:
    """What the routes share: the service and the batch jobs."""

    service: TaggerService
    jobs: JobManager


# -- compatible routes ---------------------------------------------------------------------------


def interrogate(api: Api, req: InterrogateRequest) -> dict[str, Any]:
    """toriato's and picobyte's ``interrogate``.

    toriato's reply unless the request carries ``queue`` or ``name_in_queue`` (picobyte's
    fields, even empty); then picobyte's single, queue-add or queue-read reply.
    """
    service = api.service
    spec = service.resolve(req.model)
    picobyte = bool({"queue", "name_in_queue"} & fields_set(req))
    if not picobyte:
        data = service.image_bytes(_required_image(req.image))
        threshold = TORIATO_DEFAULT_THRESHOLD if req.threshold is None else req.threshold
        return {"caption": toriato_caption(service.scores(spec, data), threshold)}
    threshold = PICOBYTE_DEFAULT_THRESHOLD if req.threshold is None else req.threshold
    queue, name = req.queue, req.name_in_queue
    if not queue and not name:
        data = service.image_bytes(_required_image(req.image))
        return {"caption": picobyte_caption(service.scores(spec, data), threshold)}
    if not name:  # read the queue's results
        return {"caption": service.queues.finish(req.model, queue)}
    data = service.image_bytes(_required_image(req.image))
    queue = queue or service.queues.new_name()
    stored = service.queues.reserve(queue, name, data)
    if stored is not None:
        try:
            entry = picobyte_queue_entry(service.scores(spec, data), threshold)
        except BaseException:
            service.queues.release(queue, stored)
            raise
        service.queues.store(req.model, queue, stored, entry)
    return {"caption": service.queues.counts(req.model, queue)}


def _required_image(text: str) -> str:
    """The request's image, which must not be empty here."""
    if not text.strip():
        raise ImageLoadError("image", "is missing (empty): send the image file's bytes as base64")
    return text


def _compat_routes(router: APIRouter, api: Api) -> None:
    """``interrogate``, ``interrogators``, ``unload-interrogators``."""

    @router.post(
        "/interrogate",
        response_model=InterrogateResponse,
        summary="Tag one image (toriato's and picobyte's request and reply)",
        responses=_errors(404, 413, 422, 503),
    )
    def post_interrogate(req: InterrogateRequest) -> dict[str, Any]:
        """The four rating scores and the general and character tags passing ``threshold``,
        raw tag names, in the older extensions' shapes (see the fields' descriptions)."""
        return interrogate(api, req)

    @router.get(
        "/interrogators",
        response_model=InterrogatorsResponse,
        summary="Model names (toriato's and picobyte's reply)",
    )
    def get_interrogators() -> dict[str, Any]:
        """Local model folders that can load, then the registry keys; older keys are accepted
        as well (a folder that cannot load is left out; /models says why)."""
        return {"models": api.service.model_keys()}

    @router.post(
        "/unload-interrogators",
        response_model=str,
        summary="Unload every model (picobyte's reply)",
    )
    def post_unload_interrogators() -> str:
        """Unload every loaded model once the requests using them are done."""
        return f"Successfully unload {api.service.unload()} model(s)"


# -- full routes -------------------------------------------------------------------------------


def _tag_routes(router: APIRouter, api: Api) -> None:
    """``tag``, ``models``, ``unload``."""
    from tagger.tags import caption_tags

    @router.post(
        "/tag",
        response_model=TagResponse,
        summary="Tag one image with the full options",
        responses=_errors(404, 413, 422, 503),
    )
    def post_tag(req: TagRequest) -> dict[str, Any]:
        """Rating scores, kept character and general tags (raw names, best first) and the
        post-processed caption, as ``tagger tag`` writes it."""
        spec = api.service.resolve(req.model)
        data = api.service.image_bytes(req.image)
        result = api.service.scores(spec, data).select(req.options)
        tags = caption_tags(result, req.options)
        return {
            "model": spec.key,
            "rating": result.rating,
            "character": result.character,
            "general": result.general,
            "other": result.other,
            "tags": tags,
            "text": req.options.separator.join(tags),
        }

    @router.get("/models", response_model=ModelsResponse, summary="Models with their metadata")
    def get_models() -> dict[str, Any]:
        """Every model the server knows: local folders first, then the registry. A local
        folder that cannot load is listed with ``loadable: false`` and the reason."""
        from tagger.cache import loaded_models

        loaded = loaded_models()
        return {"models": [model_info(api.service, spec, loaded) for spec in api.service.models()]}

    @router.post("/unload", response_model=UnloadResponse, summary="Unload every model")
    def post_unload() -> dict[str, Any]:
        """Unload every loaded model once the requests using them are done."""
        return {"unloaded": api.service.unload()}


def _caption_routes(router: APIRouter, api: Api) -> None:
    """``caption`` and ``captioners`` (BLIP, CLIP-prefix GPT-2, the CLIP Interrogator)."""
    from tagger.api.interrogator import configured_spec

    @router.post(
        "/caption",
        response_model=CaptionResponse,
        summary="Caption one image with BLIP, CLIP-prefix GPT-2 or a vision-language model",
        responses=_errors(403, 404, 413, 422, 503),
    )
    def post_caption(req: CaptionRequest) -> dict[str, Any]:
        """The caption of one image (503 when torch/transformers/open_clip are not installed
        on the server or the captioner's files are not on disk)."""
        spec = api.service.resolve_captioner(req.model)
        if req.vlm is not None or is_vlm_family(spec.family):  # tagger.api.vlm_routes
            from tagger.api.vlm_routes import caption_route

            return caption_route(api.service, req)
        spec = configured_spec(api, spec, req.interrogator)  # the CLIP Interrogator's options
        data = api.service.image_bytes(req.image)
        return {"model": spec.key, "caption": api.service.caption(spec, data, req.options)}

    @router.get("/captioners", response_model=InterrogatorsResponse, summary="Captioner names")
    def get_captioners() -> dict[str, Any]:
        """Local captioner folders first, then the registry's captioners."""
        from tagger.registry import list_captioners

        return {"models": [spec.key for spec in list_captioners(api.service.models_dirs)]}


def _job_routes(router: APIRouter, api: Api) -> None:
    """Batch jobs over the server's allowed folders."""

    @router.post(
        "/jobs",
        response_model=JobStatus,
        status_code=202,
        summary="Start a batch job over server folders",
        responses=_errors(403, 404, 413, 422, 429, 503),
    )
    def post_job(req: JobRequest) -> dict[str, Any]:
        """Tag images in folders on the server and write caption files there, in the
        background. Every path must be inside the folders the server's owner allowed."""
        job = api.jobs.start(req.inputs, req.model, req.options, req.batch)
        return job.status()

    @router.get("/jobs", response_model=JobsResponse, summary="Batch jobs")
    def get_jobs() -> dict[str, Any]:
        """Every job the server remembers, oldest first."""
        return {"jobs": [job.status() for job in api.jobs.list()]}

    @router.get(
        "/jobs/{job_id}",
        response_model=JobStatus,
        summary="A batch job's progress and summary",
        responses=_errors(404),
    )
    def get_job(job_id: str) -> dict[str, Any]:
        """State, progress, and the summary once it has finished."""
        return api.jobs.get(job_id).status()

    @router.post(
        "/jobs/{job_id}/cancel",
        response_model=JobStatus,
        summary="Cancel a batch job",
        responses=_errors(404),
    )
    def post_cancel(job_id: str) -> dict[str, Any]:
        """Stop after the current batch; everything written so far is kept."""
        return api.jobs.cancel(job_id).status()


#: Each entry adds one group of routes to the router.
ROUTE_GROUPS: list[Callable[[APIRouter, Api], None]] = [
    _compat_routes,
    _tag_routes,
    _caption_routes,
    _job_routes,
    importlib.import_module("tagger.api.families").family_routes,
    _dataset_routes,
    importlib.import_module("tagger.api.keywords").add_keyword_routes,
]


def as_dependency(item: Any) -> Any:
    """A FastAPI dependency: ``Depends(...)`` objects as they are, callables wrapped."""
    return item if isinstance(item, DependsParam) else Depends(item)


def build_router(api: Api, dependencies: Sequence[Any] = ()) -> APIRouter:
    """The API's router: every group's routes, the dependencies on each, errors as JSON, and
    the service's body limits checked before anything reads a request's body."""
    limits = api.service.limits
    router = APIRouter(
        prefix=PREFIX,
        tags=["tagger"],
        dependencies=[as_dependency(d) for d in dependencies],
        route_class=make_route_class(limits.max_body_bytes, BodyGate(limits.bodies_in_flight)),
    )
    for add_routes in ROUTE_GROUPS:
        add_routes(router, api)
    return router
