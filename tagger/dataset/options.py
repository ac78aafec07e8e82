"""Option models of the workbench: the dataset, a bulk edit, the checks.

The command line's flags, the HTTP API's request bodies and the tab's widgets are built from
these, as for the tagging options (``tagger.options``): pydantic 1.10 and 2.x alike.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tagger.options import StrictModel

EditOrder = Literal["none", "frequency", "alphabetical", "reverse", "shuffle"]


class DatasetOptions(StrictModel):
    """Which files make the dataset and how its captions are written."""

    caption_extension: str = Field(".txt", min_length=1, description="Extension of captions.")
    recursive: bool = Field(True, description="Include sub-folders.")
    separator: str = Field(
        ", ",
        min_length=1,
        description="Text between tags when a caption is written (tags are split on its comma).",
    )


class EditSpec(StrictModel):
    """One bulk edit: every part given is applied, in the order of the fields."""

    rename: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Rename tags: old -> new. Old matches any case, _ or space, with * and ? wildcards; "
            "a * in new is what the only * of old matched (* hair -> * fur). A new name that "
            "is already in the caption is merged into it."
        ),
    )
    replace: dict[str, str] = Field(
        default_factory=dict,
        description="Replace text inside each tag: old -> new (exact, case-sensitive).",
    )
    remove: list[str] = Field(
        default_factory=list, description="Remove tags matching these (wildcards as in rename)."
    )
    cleanup: list[str] = Field(
        default_factory=list, description="Clean-up functions to apply, by name, in order."
    )
    dedupe: bool = Field(False, description="Drop repeated tags, keeping the first.")
    order: EditOrder = Field(
        "none",
        description=(
            "Reorder the tags after the first keep_first: by dataset frequency (most frequent "
            "first), alphabetically, reversed, or shuffled (seeded, per file)."
        ),
    )
    keep_first: int = Field(
        0, ge=0, le=10_000, description="Tags at the start left in place by order and max_tags."
    )
    seed: int = Field(0, description="Seed of order=shuffle (each file shuffles differently).")
    max_tags: int = Field(
        0, ge=0, le=10_000, description="Keep at most this many tags (0: no limit)."
    )
    add_last: list[str] = Field(
        default_factory=list, description="Add these at the end when missing."
    )
    add_first: list[str] = Field(
        default_factory=list, description="Add these at the start when missing."
    )
    trigger: str = Field(
        "", description="A trigger word: put first in every caption (moved there if present)."
    )


class CheckOptions(StrictModel):
    """Which checks run and their thresholds."""

    checks: list[str] = Field(
        default_factory=lambda: ["duplicates", "near_duplicates", "broken", "small", "aspect"],
        description=(
            "Checks to run: duplicates, near_duplicates, broken, small, aspect, text, "
            "clip_duplicates, outliers, mismatch, captions (or all)."
        ),
    )
    hash_distance: int = Field(
        6, ge=0, le=16, description="Near duplicates: most differing bits of the 64-bit pHash."
    )
    min_side: int = Field(256, ge=1, description="Small: images whose short side is below this.")
    max_aspect: float = Field(
        3.0, ge=1.0, description="Aspect: images whose long side / short side is above this."
    )
    text_area: float = Field(
        0.02,
        ge=0.0,
        le=1.0,
        description="Text: images whose detected text boxes cover more than this fraction.",
    )
    text_chars: int = Field(
        3, ge=1, description="Text: only images with at least this many recognised characters."
    )
    text_score: float = Field(
        0.5, ge=0.0, le=1.0, description="Text: ignore recognised text below this confidence."
    )
    ocr_side: int = Field(
        960, ge=64, le=4096, description="Text: images are shrunk to this side for OCR."
    )
    clip_model: str = Field("ViT-B-32", description="CLIP checks: the open_clip model.")
    clip_pretrained: str = Field("openai", description="CLIP checks: its weights (tag or file).")
    clip_similarity: float = Field(
        0.95, ge=0.0, le=1.0, description="CLIP duplicates: image embeddings at least this close."
    )
    outlier_sigma: float = Field(
        3.0,
        ge=0.0,
        description="Outliers: distance from the CLIP centroid above mean + this many std.",
    )
    mismatch_score: float = Field(
        0.2,
        ge=-1.0,
        le=1.0,
        description="Mismatch: captions whose CLIP image-text score is below this.",
    )
    scorer: str = Field("clip", description="Mismatch: the image-text scorer, by name.")
    workers: int = Field(0, ge=0, le=64, description="Decode threads (0: chosen).")
    max_pixels: int = Field(178_956_970, ge=1, description="Images above this count as broken.")
