"""``POST /tagger/v1/keywords`` (KeyBERT keyphrases of a caption, CLIP-filtered) and
``POST /tagger/v1/sbg`` (a Selective Blind Guessing caption with its keywords and candidates)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, StrictStr

from tagger.api.errors import DOCUMENTED
from tagger.api.models import IMAGE_DESCRIPTION, ErrorResponse
from tagger.keywords.options import KeywordOptions
from tagger.options import CaptionOptions, ClipFilterOptions, StrictModel
from tagger.registry import DEFAULT_CAPTIONER


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorResponse, "description": DOCUMENTED[s]} for s in statuses}


class KeywordRequest(StrictModel):
    """One caption and/or image: keyphrases of the caption (written by ``captioner`` when only
    the image is sent), kept by the CLIP filter when ``clip_filter`` is given."""

    image: StrictStr | None = Field(
        None, description=IMAGE_DESCRIPTION + " Optional with a caption."
    )
    caption: StrictStr | None = Field(
        None, description="The caption to extract keyphrases from (else the image is captioned)."
    )
    captioner: StrictStr = Field(DEFAULT_CAPTIONER, description="Captioner for an image alone.")
    caption_options: CaptionOptions = Field(default_factory=CaptionOptions)
    options: KeywordOptions = Field(default_factory=KeywordOptions)
    clip_filter: ClipFilterOptions | None = Field(
        None, description="Keep only the keyphrases CLIP sees in the image (needs the image)."
    )
    exclude_tags: list[StrictStr] = Field(default_factory=list, description="Never returned.")
    keep_tags: list[StrictStr] = Field(
        default_factory=list, description="Never dropped by the CLIP filter."
    )


class KeywordResponse(BaseModel):
    """The keyphrases, best first as KeyBERT ranks them."""

    caption: str = Field(..., description="The caption the keyphrases come from.")
    keywords: dict[str, float] = Field(..., description="Kept keyphrases with KeyBERT's scores.")
    clip: dict[str, float] = Field(..., description="CLIP similarity of each scored keyphrase.")
    text: str = Field(..., description="The keyphrases as tagger keywords writes them.")


class SbgRequest(StrictModel):
    """One image for a Selective Blind Guessing captioner."""

    image: StrictStr = Field(..., description=IMAGE_DESCRIPTION)
    model: StrictStr = Field("sbg-flickr8k", description="An SBG captioner key or folder name.")
    options: CaptionOptions = Field(default_factory=CaptionOptions)


class SbgCandidate(BaseModel):
    caption: str
    similarity: float = Field(..., description="CLIP cosine similarity with the image.")
    probability: float = Field(..., description="Softmax of 100 x similarity over the candidates.")


class SbgResponse(BaseModel):
    """The chosen caption and how it was chosen."""

    model: str
    caption: str
    keywords: dict[str, float] = Field(..., description="Keywords with their CLIP probability.")
    prompt: str = Field(..., description="What the generator was given.")
    candidates: list[SbgCandidate]


def check_names(req: KeywordRequest) -> None:
    """Refuse server paths where a client names models or folders: the keyword model and the
    CLIP model are names (a models-folder name or a registry name), the CLIP cache is the
    server's own."""
    from tagger.errors import ModelNotFoundError, OptionsError
    from tagger.registry import name_problem

    names = [("keyword model", req.options.model)]
    if req.clip_filter is not None:
        if req.clip_filter.cache_dir is not None:
            raise OptionsError("clip_filter.cache_dir cannot be set over HTTP (the server's own)")
        names += [
            ("CLIP model", req.clip_filter.model),
            ("CLIP weights", req.clip_filter.pretrained),
        ]
    for what, name in names:
        problem = name_problem(name) if name else None
        if problem is not None:
            raise ModelNotFoundError(
                f"{what} {name!r} is not a plain name ({problem}); over HTTP name a model "
                f"(a folder name in the server's models folders, or {KeywordOptions().model} / "
                f"an open_clip name)"
            )


def add_keyword_routes(router: APIRouter, api: Any) -> None:
    """Add ``/keywords`` and ``/sbg`` to the API's router."""
    service = api.service

    def device() -> str:
        from tagger.captioners.common import torch_device_for

        providers = service.providers
        return torch_device_for(providers if isinstance(providers, str) else ",".join(providers))

    @router.post(
        "/keywords",
        response_model=KeywordResponse,
        summary="KeyBERT keyphrases of a caption, CLIP-filtered",
        responses=_errors(404, 413, 422, 503),
    )
    def post_keywords(req: KeywordRequest) -> dict[str, Any]:
        """Keyphrases of the caption sent, or of the image's caption (503 when keybert and
        sentence-transformers are not installed on the server or the model is not on disk)."""
        from tagger.errors import OptionsError
        from tagger.keywords.single import image_keywords
        from tagger.options import TagOptions

        if req.image is None and req.caption is None:
            raise OptionsError("send a caption, an image, or both")
        check_names(req)
        image = None
        if req.image is not None:  # size and pixels checked, then decoded in a decode thread
            image = service.prepared(service.image_bytes(req.image), lambda im: im.copy())
        captioner = service.resolve_captioner(req.captioner) if req.caption is None else None
        tags = TagOptions(exclude_tags=req.exclude_tags, keep_tags=req.keep_tags)
        with service.running():
            result = image_keywords(
                image,
                req.caption,
                captioner=captioner or DEFAULT_CAPTIONER,
                caption_options=req.caption_options,
                options=req.options,
                clip=req.clip_filter,
                tag_options=tags,
                device=device(),
                device_id=service.device_id,
                hf_cache=service.hf_cache,
                models_dirs=service.models_dirs,
            )
        return {
            "caption": result.caption,
            "keywords": result.keywords,
            "clip": result.clip,
            "text": result.text,
        }

    @router.post(
        "/sbg",
        response_model=SbgResponse,
        summary="A Selective Blind Guessing caption, its keywords and candidates",
        responses=_errors(404, 413, 422, 503),
    )
    def post_sbg(req: SbgRequest) -> dict[str, Any]:
        """Caption one image with an SBG captioner and say how the caption was chosen."""
        from tagger.captioners import get_captioner
        from tagger.errors import ModelNotFoundError

        spec = service.resolve_captioner(req.model)
        if spec.family != "sbg":
            raise ModelNotFoundError(f"{req.model!r} is not an SBG captioner (try sbg-flickr8k)")
        data = service.image_bytes(req.image)  # size and pixels checked, not decoded

        def loaded() -> Any:
            return get_captioner(
                spec,
                device=device(),
                device_id=service.device_id,
                half=req.options.half,
                cache_dir=service.hf_cache,
                models_dirs=service.models_dirs,
            )

        with service.running():
            captioner = loaded()
        with service.gate.run():  # the image reduced to CLIP's input in a decode thread
            pixels = service.prepared(data, captioner.preprocess)
        with service.running():
            (result,) = loaded().forward(captioner.collate([pixels]), req.options)
        details = result.sidecar()["sbg"]
        return {
            "model": spec.key,
            "caption": result.caption,
            "keywords": details["keywords"],
            "prompt": details["prompt"],
            "candidates": details["candidates"],
        }
