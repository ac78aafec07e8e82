"""HTTP routes of the tagger families, ensembles and tag clean-up.

- ``GET /tagger/v1/families``: every family with its categories, files and preprocessing;
- ``POST /tagger/v1/tag-ensemble``: one image through several taggers, scores merged per tag;
- ``POST /tagger/v1/cleanup``: the clean-up functions on a list of tags.

Models of every family are also served by ``/tag``, ``/interrogate`` and batch jobs (they
resolve through the same registry and cache); ``/tag`` replies their further categories in
``other``.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field, StrictStr

from tagger.api.models import IMAGE_DESCRIPTION, MODEL_DESCRIPTION
from tagger.options import StrictModel, TagOptions


class EnsembleRequest(StrictModel):
    """``POST /tagger/v1/tag-ensemble``."""

    image: StrictStr = Field(..., description=IMAGE_DESCRIPTION)
    models: list[StrictStr] = Field(..., description="Two or more models. " + MODEL_DESCRIPTION)
    mode: Literal["mean", "max", "votes"] = Field(
        "mean", description="Merge per tag: mean, max, or votes over each model's own kept tags."
    )
    min_votes: int = Field(0, ge=0, description="votes: models that must keep a tag (0: majority).")
    options: TagOptions = Field(default_factory=TagOptions, description="Tag options.")


class EnsembleResponse(BaseModel):
    """Merged tags by category, each model's own kept tags, and the caption text."""

    models: list[str]
    rating: dict[str, float]
    character: dict[str, float]
    general: dict[str, float]
    other: dict[str, dict[str, float]] = Field(default_factory=dict)
    per_model: dict[str, dict[str, dict[str, float]]] = Field(
        ..., description="Each model's kept tags by category, before merging."
    )
    tags: list[str]
    text: str


class CleanupRequest(StrictModel):
    """``POST /tagger/v1/cleanup``."""

    tags: list[StrictStr] = Field(..., description="Tags, raw or written (any case, _ or space).")
    drop_overlap: bool = Field(False, description="Drop less specific tags (whole words).")
    drop_character_tags: bool = Field(False, description="Drop character-intrinsic tags.")
    blacklist: list[StrictStr] = Field(default_factory=list, description="Tags to drop.")


class CleanupResponse(BaseModel):
    """The tags that remain, in their order."""

    tags: list[str]


def family_routes(router: APIRouter, api: Any) -> None:
    """``families``, ``tag-ensemble``, ``cleanup``."""
    from tagger.api.routes import _errors

    @router.get("/families", summary="Tagger families: categories, files, preprocessing")
    def get_families() -> list[dict[str, Any]]:
        """Every tagger family this server runs."""
        from tagger.families.spec import family_rows

        return family_rows()

    @router.post(
        "/tag-ensemble",
        response_model=EnsembleResponse,
        summary="Tag one image with several taggers, scores merged per tag",
        responses=_errors(404, 413, 422, 503),
    )
    def post_ensemble(req: EnsembleRequest) -> dict[str, Any]:
        """The union of the models' vocabularies, merged by ``mode``."""
        from tagger.ensemble import Ensemble
        from tagger.tags import caption_tags

        specs = [api.service.resolve(name) for name in req.models]
        data = api.service.image_bytes(req.image)  # size and pixels checked, not decoded
        with api.service.running():
            taggers = [api.service.tagger(s) for s in specs]
        ensemble = Ensemble(taggers, req.mode, req.min_votes)
        try:
            # decoded once, each model's preprocessing, in one of the server's decode threads
            inputs = api.service.prepared(data, ensemble.preprocess)
            with api.service.running():
                rows = ensemble.forward(ensemble.collate([inputs]))[0]
                merged = ensemble.postprocess(rows, req.options)
        finally:
            ensemble.close()
        result = merged.tags
        tags = caption_tags(result, req.options)
        return {
            "models": [s.key for s in specs],
            "rating": result.rating,
            "character": result.character,
            "general": result.general,
            "other": result.other,
            "per_model": merged.extra["models"],
            "tags": tags,
            "text": req.options.separator.join(tags),
        }

    @router.post("/cleanup", response_model=CleanupResponse, summary="Clean up a list of tags")
    def post_cleanup(req: CleanupRequest) -> dict[str, Any]:
        """Whole-word clean-up: less specific tags, character-intrinsic tags, a blacklist."""
        from tagger.cleanup import (
            drop_blacklisted,
            drop_character_tags,
            drop_less_specific,
            drop_overlapping,
            load_overlap_table,
        )

        tags = list(req.tags)
        if req.drop_overlap:
            tags = drop_less_specific(tags)
            table = load_overlap_table(str(api.service.hf_cache) if api.service.hf_cache else None)
            if table:
                tags = drop_overlapping(tags, table)
        if req.drop_character_tags:
            tags = drop_character_tags(tags)
        if req.blacklist:
            tags = drop_blacklisted(tags, req.blacklist)
        return {"tags": tags}
