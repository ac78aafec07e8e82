"""HTTP routes of the CLIP Interrogator and the caption scorers.

Under ``/tagger/v1``:

- ``POST /score``: an image and texts -> each text's BLIP ITM probability and ITC cosine;
- ``GET /scorers``: the BLIP image-text matching models;
- ``POST /analyze``: the CLIP Interrogator's Analyze (the top 5 of each bank, with similarities).

``POST /tagger/v1/caption`` runs the interrogator too (``model: "clip-interrogator"`` and its
``interrogator`` options).

And clip-interrogator-ext's own routes, with its request and reply shapes, so its clients keep
working: ``GET /interrogator/models``, ``POST /interrogator/prompt``, ``POST
/interrogator/analyze``. Unlike the extension, bad input gets a 4xx JSON error (the extension
answered 500, or a 200 whose prompt was an error message). When another extension already
serves those paths on the same app, they are left to it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field, StrictStr

from tagger.api.models import IMAGE_DESCRIPTION
from tagger.errors import ModelNotFoundError, OptionsError
from tagger.interrogator.options import DEFAULT_CLIP, InterrogatorOptions
from tagger.options import StrictModel, parse
from tagger.scoring.itm import DEFAULT_SCORER

log = logging.getLogger("tagger")

PREFIX = "/tagger/v1"
EXT_PREFIX = "/interrogator"
MAX_TEXTS = 64
MAX_TEXT = 2000
MAX_BANKS, MAX_TERMS, MAX_TERM = 8, 5000, 200

# -- request and reply models --------------------------------------------------------------


class ScoreRequest(StrictModel):
    """``POST /tagger/v1/score``: one image and the texts to score against it."""

    image: StrictStr = Field(..., description=IMAGE_DESCRIPTION)
    texts: list[StrictStr] = Field(
        ..., description=f"1 to {MAX_TEXTS} texts (captions), each at most {MAX_TEXT} characters."
    )
    model: StrictStr = Field(
        DEFAULT_SCORER,
        description="A BLIP image-text matching model: blip-itm-base-coco, blip-itm-large-coco, "
        "or the name of a BLIP ITM folder in the server's models folders.",
    )


class TextScore(BaseModel):
    """One text's scores."""

    text: str = Field(..., description="The text, as sent.")
    itm: float = Field(..., description="ITM: probability that the text describes the image.")
    itc: float = Field(..., description="ITC: cosine of the image's and the text's embeddings.")


class ScoreResponse(BaseModel):
    """The scores of each text, in the order sent."""

    model: str = Field(..., description="The key of the model that ran.")
    scores: list[TextScore]


class ScorersResponse(BaseModel):
    """``GET /tagger/v1/scorers``."""

    models: list[str] = Field(..., description="Local BLIP ITM folders first, then the registry's.")


class AnalyzeRequest(StrictModel):
    """``POST /tagger/v1/analyze``: one image and the interrogator's options."""

    image: StrictStr = Field(..., description=IMAGE_DESCRIPTION)
    interrogator: InterrogatorOptions = Field(
        default_factory=InterrogatorOptions,
        description="The CLIP model, banks left out and banks of your own (mode is not used).",
    )


class AnalyzeResponse(BaseModel):
    """The top terms of each bank with their similarities, best first."""

    clip_model: str
    analyze: dict[str, dict[str, float]] = Field(
        ..., description="medium, artist, movement, trending, flavor (and your banks)."
    )


class ExtAnalyzeRequest(BaseModel):
    """clip-interrogator-ext's ``InterrogatorAnalyzeRequest`` (unknown keys ignored, as there)."""

    image: StrictStr = Field(
        "",
        title="Image",
        description="Image to work on, must be a Base64 string containing the image's data.",
    )
    clip_model_name: StrictStr = Field(
        DEFAULT_CLIP,
        title="Model",
        description="The interrogate model used. See the models endpoint for a list of "
        "available models.",
    )


class ExtPromptRequest(ExtAnalyzeRequest):
    """clip-interrogator-ext's ``InterrogatorPromptRequest``."""

    mode: Literal["best", "fast", "classic", "negative", "caption"] = Field(
        "fast",
        title="Mode",
        description="The mode used to generate the prompt. Can be one of: best, fast, classic, "
        "negative.",
    )


class ExtPromptResponse(BaseModel):
    """clip-interrogator-ext's prompt reply."""

    prompt: str


class ExtAnalyzeResponse(BaseModel):
    """clip-interrogator-ext's analyze reply: each bank's top 5 as {term: similarity}."""

    medium: dict[str, float]
    artist: dict[str, float]
    movement: dict[str, float]
    trending: dict[str, float]
    flavor: dict[str, float]


# -- what the routes do ------------------------------------------------------------------------


def _torch_device(api: Any) -> str:
    """The torch device for the service's providers."""
    from tagger.captioners.common import torch_device_for

    providers = api.service.providers
    text = providers if isinstance(providers, str) else ",".join(providers or [])
    return torch_device_for(text)


def configured_spec(api: Any, spec: Any, options: InterrogatorOptions | None) -> Any:
    """A captioner spec with the interrogator's options (names only, no server paths); other
    captioners refuse interrogator options."""
    from tagger.interrogator.captioner import FAMILY, interrogator_spec

    if spec.family != FAMILY:
        if options is not None:
            raise OptionsError(
                f"interrogator options are for the clip-interrogator model, not {spec.key!r}"
            )
        return spec
    check_banks(options)
    return interrogator_spec(spec, options, models_dirs=api.service.models_dirs, allow_paths=False)


def check_banks(options: InterrogatorOptions | None) -> None:
    """Banks of your own over HTTP: at most ``MAX_BANKS`` of ``MAX_TERMS`` terms of
    ``MAX_TERM`` characters (a server embeds them, and keeps them on disk)."""
    banks = options.extra_banks if options is not None else {}
    if len(banks) > MAX_BANKS:
        raise OptionsError(f"interrogator.extra_banks: at most {MAX_BANKS} banks, not {len(banks)}")
    for name, terms in banks.items():
        if not name.strip() or len(name) > MAX_TERM:
            raise OptionsError(
                f"interrogator.extra_banks: bank name {name[:40]!r} is empty or too long"
            )
        if not terms or len(terms) > MAX_TERMS:
            raise OptionsError(
                f"interrogator.extra_banks.{name}: send 1 to {MAX_TERMS} terms, not {len(terms)}"
            )
        if any(not term.strip() or len(term) > MAX_TERM for term in terms):
            raise OptionsError(
                f"interrogator.extra_banks.{name}: every term is 1 to {MAX_TERM} characters"
            )


def interrogator(api: Any, options: InterrogatorOptions | None) -> Any:
    """The loaded CLIP Interrogator for these options (loaded once, shared)."""
    from tagger.captioners import get_captioner
    from tagger.registry import resolve_captioner

    spec = configured_spec(
        api, resolve_captioner("clip-interrogator", []), options or InterrogatorOptions()
    )
    service = api.service
    return get_captioner(
        spec,
        device=_torch_device(api),
        device_id=service.device_id,
        half=True,
        cache_dir=service.hf_cache,
        models_dirs=service.models_dirs,
    )


def prompt(api: Any, image: Any, options: InterrogatorOptions) -> str:
    """One image's prompt."""
    with api.service.running():
        return interrogator(api, options).caption([image])[0]


def analyze(api: Any, image: Any, options: InterrogatorOptions) -> dict[str, dict[str, float]]:
    """One image's Analyze."""
    with api.service.running():
        return interrogator(api, options).analyze(image)


def score(api: Any, image: Any, texts: Sequence[str], model: str) -> tuple[str, list[Any]]:
    """(scorer key, each text's scores) for one image."""
    from tagger.registry import name_problem
    from tagger.scoring import get_scorer
    from tagger.scoring.itm import itm_models, resolve_itm

    service = api.service
    problem = name_problem(model)
    if problem is not None:
        valid = ", ".join(s.key for s in itm_models(service.models_dirs))
        raise ModelNotFoundError(
            f"scorer {model[:80]!r} is not a model name ({problem}); name one of: {valid}"
        )
    if not texts or len(texts) > MAX_TEXTS:
        raise OptionsError(f"texts: send 1 to {MAX_TEXTS} texts, not {len(texts)}")
    long = [i for i, text in enumerate(texts) if len(text) > MAX_TEXT]
    if long:
        raise OptionsError(f"texts[{long[0]}]: longer than {MAX_TEXT} characters")
    spec = resolve_itm(model, service.models_dirs)
    with service.running():
        scorer = get_scorer(
            spec,
            device=_torch_device(api),
            device_id=service.device_id,
            cache_dir=service.hf_cache,
            models_dirs=service.models_dirs,
        )
        return spec.key, scorer.score_images([image], [list(texts)])[0]


def clip_names(api: Any) -> list[str]:
    """clip-interrogator-ext's model list (``architecture/pretrained`` of every open_clip
    pretrained model), after the CLIP folders in the server's models folders."""
    from pathlib import Path

    from tagger.captioners.common import require
    from tagger.captioners.openclip import CLIP_CONFIG

    open_clip = require("open_clip")
    local = [
        child.name
        for folder in api.service.models_dirs
        if Path(folder).is_dir()
        for child in sorted(Path(folder).iterdir())
        if (child / CLIP_CONFIG).is_file()
    ]
    return [*local, *("/".join(pair) for pair in open_clip.list_pretrained())]


def ext_options(clip_model_name: str, mode: str = "fast") -> InterrogatorOptions:
    """The options clip-interrogator-ext runs with: the library's caption decoding."""
    return parse(
        InterrogatorOptions,
        {"mode": mode, "clip_model": clip_model_name, "caption_decoding": "library"},
    )


# -- the routers ---------------------------------------------------------------------------------


def build_routers(api: Any, dependencies: Sequence[Any] = (), *, ext: bool = True) -> list[Any]:
    """The routers: ``/tagger/v1`` routes, and (``ext``) clip-interrogator-ext's."""
    from fastapi import APIRouter

    from tagger.api.errors import make_route_class
    from tagger.api.routes import _errors, as_dependency

    common = {
        "dependencies": [as_dependency(d) for d in dependencies],
        "route_class": make_route_class(),
    }
    ours = APIRouter(prefix=PREFIX, tags=["tagger"], **common)

    @ours.post(
        "/score",
        response_model=ScoreResponse,
        summary="Score texts against an image (BLIP image-text matching)",
        responses=_errors(404, 413, 422, 503),
    )
    def post_score(req: ScoreRequest) -> dict[str, Any]:
        """ITM probability and ITC cosine of each text with the image."""
        image = load_request_image(api, req.image)
        key, scores = score(api, image, req.texts, req.model)
        return {
            "model": key,
            "scores": [
                {"text": text, "itm": s.itm, "itc": s.itc}
                for text, s in zip(req.texts, scores, strict=True)
            ],
        }

    @ours.get("/scorers", response_model=ScorersResponse, summary="Image-text matching models")
    def get_scorers() -> dict[str, Any]:
        """Local BLIP ITM folders first, then the registry's."""
        from tagger.scoring.itm import itm_models

        return {"models": [spec.key for spec in itm_models(api.service.models_dirs)]}

    @ours.post(
        "/analyze",
        response_model=AnalyzeResponse,
        summary="The CLIP Interrogator's Analyze",
        responses=_errors(404, 413, 422, 503),
    )
    def post_analyze(req: AnalyzeRequest) -> dict[str, Any]:
        """The top 5 terms of each bank, with their similarities to the image."""
        image = load_request_image(api, req.image)
        return {
            "clip_model": req.interrogator.clip_model,
            "analyze": analyze(api, image, req.interrogator),
        }

    routers = [ours]
    if not ext:
        return routers
    theirs = APIRouter(prefix=EXT_PREFIX, tags=["clip-interrogator-ext"], **common)

    @theirs.get(
        "/models",
        response_model=list[str],
        summary="CLIP models (clip-interrogator-ext)",
        responses=_errors(503),
    )
    def get_models() -> list[str]:
        """Every open_clip pretrained CLIP as architecture/pretrained (local CLIP folders
        first)."""
        return clip_names(api)

    @theirs.post(
        "/prompt",
        response_model=ExtPromptResponse,
        summary="Prompt of an image (clip-interrogator-ext)",
        responses=_errors(404, 413, 422, 503),
    )
    def post_prompt(req: ExtPromptRequest) -> dict[str, Any]:
        """The prompt in the given mode (default fast), as clip-interrogator-ext makes it."""
        image = load_request_image(api, _required(req.image))
        return {"prompt": prompt(api, image, ext_options(req.clip_model_name, req.mode))}

    @theirs.post(
        "/analyze",
        response_model=ExtAnalyzeResponse,
        summary="Analyze an image (clip-interrogator-ext)",
        responses=_errors(404, 413, 422, 503),
    )
    def post_ext_analyze(req: ExtAnalyzeRequest) -> dict[str, Any]:
        """The top 5 mediums, artists, movements, trending sites and flavors."""
        image = load_request_image(api, _required(req.image))
        return analyze(api, image, ext_options(req.clip_model_name))

    return [*routers, theirs]


def load_request_image(api: Any, text: str) -> Any:
    """A request's base64 image, checked by the server's limits (bytes, pixels) and decoded
    in its decode pool; the RGB image comes back (the caption part and CLIP resize it each
    their own way, so the decoded image itself is what they take)."""
    data = api.service.image_bytes(text)
    return api.service.prepared(data, lambda image: image.copy())


def _required(text: str) -> str:
    """The extension's image field defaults to ""; an empty one is a 422 here."""
    if not text.strip():
        raise OptionsError("image: send the image as base64")
    return text


def include(app: Any, api: Any, dependencies: Sequence[Any] = ()) -> None:
    """Add these routes to ``app`` (clip-interrogator-ext's paths only when no other extension
    serves them already)."""
    taken = {getattr(route, "path", None) for route in getattr(app, "routes", [])}
    ext = f"{EXT_PREFIX}/prompt" not in taken
    if not ext:
        log.info("clip-interrogator-ext's routes are already served here; leaving them to it")
    for router in build_routers(api, dependencies, ext=ext):
        app.include_router(router)
