"""Option models: the one place each option set is defined.

The command line, the webui tab, the HTTP schema and presets derive from these models. They are
written in the subset of pydantic that 1.10 (AUTOMATIC1111) and 2.x (Forge) share: typed fields,
``Field`` with defaults, bounds and descriptions, ``Literal`` choices, unknown keys forbidden.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from pydantic import BaseModel, Field

PYDANTIC_V2 = int(pydantic.VERSION.split(".", 1)[0]) >= 2

Order = Literal["confidence", "alphabetical", "model"]
RatingPlacement = Literal["none", "first", "last"]
OnExisting = Literal["skip", "overwrite", "append", "prepend"]


class StrictModel(BaseModel):
    """A pydantic model that rejects unknown keys, on pydantic 1.10 and 2.x alike."""

    if PYDANTIC_V2:
        model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True)
    else:  # pragma: no cover - exercised in the pydantic 1.10 environment

        class Config:
            extra = "forbid"
            validate_assignment = True


def dump(model: BaseModel) -> dict[str, Any]:
    """Return a model's fields as a plain dict on pydantic 1.10 and 2.x.

    >>> dump(TagOptions())["general_threshold"]
    0.35
    """
    if PYDANTIC_V2:
        return model.model_dump()
    return model.dict()  # pragma: no cover


def parse(cls: type[StrictModel], data: dict[str, Any]) -> Any:
    """Validate ``data`` into ``cls`` on pydantic 1.10 and 2.x (raises ValidationError)."""
    if PYDANTIC_V2:
        return cls.model_validate(data)
    return cls.parse_obj(data)  # pragma: no cover


def json_schema(cls: type[StrictModel]) -> dict[str, Any]:
    """Return the JSON schema of an options model on pydantic 1.10 and 2.x."""
    if PYDANTIC_V2:
        return cls.model_json_schema()
    return cls.schema()  # pragma: no cover


def field_names(cls: type[StrictModel]) -> list[str]:
    """Return the field names of an options model, in declaration order."""
    if PYDANTIC_V2:
        return list(cls.model_fields)
    return list(cls.__fields__)  # pragma: no cover


class TagOptions(StrictModel):
    """How model scores become kept tags and caption text.

    Thresholds and MCut follow SmilingWolf's wd-tagger app: a tag is kept when its score is
    strictly greater than its category's threshold; MCut replaces the fixed threshold with the
    middle of the largest gap between sorted scores (never below ``character_mcut_floor`` for
    characters).
    """

    general_threshold: float = Field(
        0.35, ge=0.0, le=1.0, description="Keep general tags scoring above this."
    )
    character_threshold: float = Field(
        0.85, ge=0.0, le=1.0, description="Keep character tags scoring above this."
    )
    mcut_general: bool = Field(
        False, description="Choose the general threshold per image with MCut instead."
    )
    mcut_character: bool = Field(
        False, description="Choose the character threshold per image with MCut instead."
    )
    character_mcut_floor: float = Field(
        0.15, ge=0.0, le=1.0, description="Lowest threshold MCut may pick for characters."
    )
    max_tags: int = Field(
        0, ge=0, description="Keep at most this many model tags, best first (0: no limit)."
    )
    exclude_tags: list[str] = Field(
        default_factory=list,
        description="Tags never written. Any case, spaces or underscores, * and ? wildcards.",
    )
    keep_tags: list[str] = Field(
        default_factory=list,
        description="Tags always written when the model scores them, whatever the threshold.",
    )
    additional_tags: list[str] = Field(
        default_factory=list,
        description="Text added to every caption, verbatim, before the model's tags.",
    )
    replace_tags: dict[str, str] = Field(
        default_factory=dict,
        description="Tag -> replacement text (matched like exclude tags, written verbatim).",
    )
    always_first_tags: list[str] = Field(
        default_factory=list, description="Tags moved to the front when present, in this order."
    )
    character_tags_first: bool = Field(
        False, description="Write character tags before general tags."
    )
    rating_tag: RatingPlacement = Field(
        "none", description="Write the most likely rating tag first, last, or not at all."
    )
    replace_underscores: bool = Field(
        True, description="Write underscores as spaces (kaomoji such as ^_^ are kept)."
    )
    escape_brackets: bool = Field(
        False, description="Escape ( and ) as \\( and \\) so prompts do not read them as weights."
    )
    include_weights: bool = Field(False, description="Write tags as (tag:0.87).")
    order: Order = Field(
        "confidence", description="Order of model tags: confidence, alphabetical or model order."
    )
    separator: str = Field(", ", min_length=1, description="Text between tags.")
    # -- categories beyond rating, general and character (tagger.families) ----------------
    category_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Threshold per further category (copyright, artist, meta, model, year, species...); "
            "a category not listed uses the general threshold; above 1 turns it off."
        ),
    )
    mcut_categories: list[str] = Field(
        default_factory=list,
        description="Further categories whose threshold MCut chooses per image.",
    )
    quality_tag: RatingPlacement = Field(
        "none", description="Write the most likely quality tag first, last, or not at all."
    )
    character_tag_expand: bool = Field(
        False, description="Write character tags name_(series) as two tags: name, series."
    )
    threshold_profile: str = Field(
        "",
        description=(
            "A threshold profile of the model's card (Camie: balanced, micro_optimized, "
            "macro_optimized, overall); empty: the thresholds above."
        ),
    )
    model_thresholds: bool = Field(
        True,
        description=(
            "Use the thresholds a model ships with it (PixAI's thresholds.csv; per-tag files) "
            "for the tags and categories they cover."
        ),
    )
    # -- tag clean-up (tagger.cleanup) -------------------------------------------------------
    drop_overlap: bool = Field(
        False,
        description=(
            "Drop a general tag when a more specific one is kept (shirt beside white shirt; "
            "whole words only), plus the published Danbooru overlap table when it is on disk."
        ),
    )
    drop_character_tags: bool = Field(
        False,
        description=(
            "Drop character-intrinsic general tags (eye and hair colours and styles, skin, "
            "horns...) for character LoRAs."
        ),
    )
    blacklist: list[str] = Field(
        default_factory=list,
        description="Tags never written, matched by whole words, singular or plural.",
    )


class BatchOptions(StrictModel):
    """Where a batch reads images and writes captions, and what it does with existing files."""

    recursive: bool = Field(False, description="Also tag images in sub-folders.")
    output_dir: str | None = Field(
        None,
        description="Write captions here, mirroring sub-folders (default: beside each image).",
    )
    caption_extension: str = Field(
        ".txt", min_length=1, description="Extension of caption files, e.g. .txt or .caption."
    )
    on_existing: OnExisting = Field(
        "skip",
        description=(
            "When a caption file exists: skip the image (so a rerun resumes), overwrite it, "
            "or append / prepend the new tags (without duplicates)."
        ),
    )
    write_json: bool = Field(False, description="Also write <stem>.json with the kept scores.")
    jsonl: str | None = Field(
        None, description="Append one line per image to this JSONL manifest (metadata.jsonl)."
    )
    batch_size: int = Field(
        0, ge=0, le=1024, description="Images per model run (0: chosen for the device)."
    )
    workers: int = Field(
        0, ge=0, le=64, description="Threads decoding images (0: chosen for the machine)."
    )
    max_pixels: int = Field(
        178_956_970, ge=1, description="Refuse images with more pixels than this."
    )
    fsync: bool = Field(
        True,
        description=(
            "Flush each file to the disk before it replaces the old one, so that even a power "
            "cut leaves the old file or the whole new one (about 0.3 ms a file)."
        ),
    )
    fast_decode: bool = Field(
        False,
        description=(
            "Decode large JPEGs at 1/2, 1/4 or 1/8 scale (still larger than the tagger's input): "
            "several times faster for photos far above it, but scores differ slightly from "
            "the reference preprocessing."
        ),
    )


CaptionTemplate = Literal["caption_then_tags", "tags_then_caption", "separate"]
ClipFilterMode = Literal["absolute", "mcut"]


class CaptionOptions(StrictModel):
    """How a captioner (BLIP or CLIP-prefix GPT-2) decodes a sentence.

    For BLIP the defaults give beam search with guards against its known repetition loops
    ("the jungle jungle jungle"): 3 beams, a repetition penalty and no repeated 3-grams.
    CLIP-prefix models decode greedily as the reference ``generate2`` does (67 tokens, stop at
    ".") unless ``num_beams`` > 1 (the reference ``generate_beam``) or ``sample`` is set; the
    penalties and ``min_new_tokens`` apply to BLIP only.
    """

    prompt: str = Field(
        "a picture of",
        description="BLIP conditional prompt, stripped from the output ('' = unconditional).",
    )
    num_beams: int | None = Field(
        None,
        ge=1,
        le=16,
        description="Beams (1: greedy). Default: 3 for BLIP, 1 (reference greedy) for CLIP-prefix.",
    )
    min_new_tokens: int = Field(5, ge=0, le=256, description="BLIP: fewest tokens generated.")
    max_new_tokens: int | None = Field(
        None,
        ge=1,
        le=256,
        description="Most new tokens. Default: 40 for BLIP, 67 (the reference) for CLIP-prefix.",
    )
    repetition_penalty: float = Field(
        1.2, ge=1.0, le=10.0, description="BLIP: penalty on repeated tokens (1.0: none)."
    )
    no_repeat_ngram_size: int = Field(
        3, ge=0, le=16, description="BLIP: never repeat an n-gram of this size (0: allowed)."
    )
    sample: bool = Field(False, description="Nucleus sampling instead of beams / greedy.")
    top_p: float = Field(0.9, ge=0.01, le=1.0, description="Nucleus sampling probability mass.")
    temperature: float = Field(1.0, ge=0.01, le=10.0, description="Sampling temperature.")
    seed: int | None = Field(42, description="Seed for sampling (None: not reproducible).")
    batch_size: int = Field(
        0, ge=0, le=1024, description="Images per captioner run (0: the run's batch size)."
    )
    half: bool = Field(True, description="fp16 on CUDA (ignored on the CPU).")


class ClipFilterOptions(StrictModel):
    """The CLIP relevance filter: drop kept tags whose CLIP image-text similarity is low.

    Each tag is written into ``template`` and scored by the cosine similarity of the image's and
    the text's CLIP embeddings. ``absolute`` drops tags scoring below ``threshold``; ``mcut`` keeps
    the tags above the middle of the widest gap between the image's own sorted scores.
    """

    model: str = Field("ViT-B-32", description="open_clip model name, or a CLIP folder.")
    pretrained: str = Field("openai", description="open_clip pretrained tag or weight file.")
    template: str = Field("a photo of {}", description="Text template; {} is the tag.")
    mode: ClipFilterMode = Field("absolute", description="absolute threshold or per-image mcut.")
    threshold: float = Field(
        0.2, ge=-1.0, le=1.0, description="absolute: keep tags with similarity >= this."
    )
    categories: list[str] = Field(
        default_factory=lambda: ["general"],
        description="Tag categories filtered (general, character).",
    )
    cache_dir: str | None = Field(
        None, description="Folder for cached text embeddings (default: ~/.cache/tagger/clip)."
    )


class OutputOptions(StrictModel):
    """How a caption and tags are combined when a run writes both."""

    template: CaptionTemplate = Field(
        "caption_then_tags",
        description=(
            "caption_then_tags / tags_then_caption in one file, or separate files "
            "(tags in the caption extension, the caption in caption_file_extension)."
        ),
    )
    caption_file_extension: str = Field(
        ".caption", min_length=1, description="Extension of the caption file in 'separate'."
    )
