"""Request and reply models of the HTTP API (pydantic 1.10 and 2.x alike).

The compatible models keep the field names, defaults and reply shapes of the older tagger
extensions (toriato's and picobyte's), and ignore unknown keys as the webui's own request models
do. The full routes reuse the options models of ``tagger.options`` and reject unknown keys, so a
misspelt option is a 422 instead of being silently ignored. Request strings are ``StrictStr``
so that pydantic 1.10 refuses a number where text belongs, as 2.x does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, StrictStr

from tagger.interrogator.options import InterrogatorOptions
from tagger.options import BatchOptions, CaptionOptions, StrictModel, TagOptions
from tagger.registry import DEFAULT_CAPTIONER, DEFAULT_MODEL
from tagger.vlm.options import VlmOptions

IMAGE_DESCRIPTION = (
    "The image file's bytes as base64 (PNG, JPEG, WebP, ... anything Pillow reads). A data URL "
    "prefix such as 'data:image/png;base64,' is accepted; URLs are not downloaded."
)
MODEL_DESCRIPTION = (
    "A model key (see /tagger/v1/models), a key of the older tagger extensions (wd14-vit-v2, "
    "wd14-vit.v2, wd-v1-4-moat-tagger.v2, ...) or the name of a folder in the server's models "
    "folders."
)

# -- compatible routes (toriato / picobyte) ------------------------------------------------------


class InterrogateRequest(BaseModel):
    """``POST /tagger/v1/interrogate``: toriato's request, with picobyte's queue fields."""

    image: StrictStr = Field("", title="Image", description=IMAGE_DESCRIPTION)
    model: StrictStr = Field(..., title="Model", description=MODEL_DESCRIPTION)
    threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        title="Threshold",
        description=(
            "Keep general and character tags scoring at least this (toriato's reply; default "
            "0.35), or above it when queue or name_in_queue is sent (picobyte's reply; "
            "default 0.0)."
        ),
    )
    queue: StrictStr = Field(
        "",
        title="Queue",
        description=(
            "picobyte's queue mode: the queue's name (empty with a name_in_queue: a random name "
            "is made and returned in the reply). Sending this field, even empty, selects "
            "picobyte's reply shape."
        ),
    )
    name_in_queue: StrictStr = Field(
        "",
        title="Name",
        description=(
            "picobyte's queue mode: the name to store this image's tags under ('<sha256>': the "
            "SHA-256 of the image file). Empty with a queue: return and forget all of the "
            "queue's results."
        ),
    )


class InterrogateResponse(BaseModel):
    """The reply of ``interrogate``: toriato's flat scores or picobyte's nested ones."""

    caption: dict[str, float] | dict[str, dict[str, float]] = Field(
        ...,
        title="Caption",
        description=(
            "toriato: {name: score} with the four ratings first, then the kept tags, best "
            "first. picobyte: {'tag': {...}, 'rating': {...}} for one image; "
            "{model: {queue: images added}} after adding to a queue; {name: {tag: score, "
            "'rating:<name>': score}} when a queue is read."
        ),
    )


class InterrogatorsResponse(BaseModel):
    """``GET /tagger/v1/interrogators``."""

    models: list[str] = Field(
        ...,
        title="Models",
        description="Local model folders that can load first, then the registry keys.",
    )


# -- full routes -----------------------------------------------------------------------------------


class TagRequest(StrictModel):
    """``POST /tagger/v1/tag``: one image with the whole options model."""

    image: StrictStr = Field(..., description=IMAGE_DESCRIPTION)
    model: StrictStr = Field(DEFAULT_MODEL, description=MODEL_DESCRIPTION)
    options: TagOptions = Field(
        default_factory=TagOptions,
        description="How scores become kept tags and caption text (all fields optional).",
    )


class TagResponse(BaseModel):
    """The tags of one image, by category, and its caption text."""

    model: str = Field(..., description="The key of the model that ran.")
    rating: dict[str, float] = Field(..., description="Every rating's score, in model order.")
    character: dict[str, float] = Field(
        ..., description="Kept character tags (raw names), best first."
    )
    general: dict[str, float] = Field(..., description="Kept general tags (raw names), best first.")
    other: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Further categories (copyright, artist, meta, quality...; models of other "
        "tagger families): kept tags by category, best first; quality holds every score.",
    )
    tags: list[str] = Field(..., description="The caption's tags, as written.")
    text: str = Field(..., description="The caption: the tags joined by the separator.")


class CaptionRequest(StrictModel):
    """``POST /tagger/v1/caption``: one image and a captioner (BLIP or CLIP-prefix GPT-2)."""

    image: StrictStr = Field(..., description=IMAGE_DESCRIPTION)
    model: StrictStr = Field(
        DEFAULT_CAPTIONER,
        description="A captioner: a registry key (GET /tagger/v1/captioners) or the name of a "
        "captioner folder in the server's models folders.",
    )
    options: CaptionOptions = Field(
        default_factory=CaptionOptions,
        description="Decoding options (all fields optional; defaults suit each family).",
    )
    vlm: VlmOptions | None = Field(
        None,
        description="For a vision-language model (vlm-api, florence2-*, ...): its options; the "
        "endpoint's url and key_env are the server's (see /tagger/v1/vlm/caption).",
    )
    endpoint: StrictStr | None = Field(
        None, description="For vlm-api: the name of one of the server's VLM endpoints."
    )
    tagger: StrictStr | None = Field(
        None, description="For a VLM: a tagger whose kept tags fill the prompt's tag fields."
    )
    interrogator: InterrogatorOptions | None = Field(
        None,
        description="For model clip-interrogator: its mode, CLIP model, caption model and banks "
        "(model names only, no server paths).",
    )


class CaptionResponse(BaseModel):
    """The caption of one image."""

    model: str = Field(..., description="The key of the captioner that ran.")
    caption: str = Field(..., description="The caption, prompt removed.")


class ModelInfo(BaseModel):
    """One model the server knows."""

    key: str = Field(..., description="The name to use in requests.")
    family: str = Field(..., description="Model family (wd14).")
    description: str = Field("", description="What the model is.")
    source: Literal["hub", "local"] = Field(
        ..., description="hub: downloaded from the Hugging Face Hub; local: a folder on the server."
    )
    repo_id: str | None = Field(None, description="Hub repository (hub models).")
    revision: str | None = Field(None, description="Pinned Hub revision.")
    input_size: int | None = Field(
        None, description="Side of the model's square input (read from the model once loaded)."
    )
    batch_dynamic: bool = Field(True, description="Whether the model runs several images at once.")
    general_threshold: float = Field(0.35, description="Suggested general threshold.")
    character_threshold: float = Field(0.85, description="Suggested character threshold.")
    aliases: list[str] = Field(
        default_factory=list, description="Other names accepted for this model."
    )
    downloaded: bool = Field(..., description="Whether its files are on the server's disk.")
    loaded: bool = Field(..., description="Whether it is loaded in memory now.")
    loadable: bool = Field(
        True,
        description="False for a local folder that cannot load (e.g. its selected_tags.csv "
        "does not match its model.onnx); such folders are left out of /interrogators.",
    )
    error: str | None = Field(
        None, description="Why the folder cannot load (when loadable is false)."
    )


class ModelsResponse(BaseModel):
    """``GET /tagger/v1/models``."""

    models: list[ModelInfo]


class UnloadResponse(BaseModel):
    """``POST /tagger/v1/unload``."""

    unloaded: int = Field(..., description="How many models were loaded and are now unloaded.")


# -- batch jobs --------------------------------------------------------------------------------


class JobRequest(StrictModel):
    """``POST /tagger/v1/jobs``: tag folders on the server and write caption files there."""

    inputs: list[StrictStr] = Field(
        ...,
        description=(
            "Absolute paths on the server: image files, folders or glob patterns, all inside the "
            "folders the server allows."
        ),
    )
    model: StrictStr = Field(DEFAULT_MODEL, description=MODEL_DESCRIPTION)
    options: TagOptions = Field(default_factory=TagOptions, description="Tag options.")
    batch: BatchOptions = Field(
        default_factory=BatchOptions,
        description="Batch options; output_dir and jsonl must be inside the allowed folders too.",
    )


class JobProgress(BaseModel):
    """How far a job is."""

    done: int = Field(0, description="Images handled (written, skipped or failed).")
    total: int | None = Field(None, description="Images found (once counted).")
    written: int = 0
    skipped: int = 0
    failed: int = 0
    current: str | None = Field(None, description="The image handled last.")


class JobFailure(BaseModel):
    """An image a job could not tag, and why."""

    path: str
    reason: str


class JobSummary(BaseModel):
    """What a finished job did."""

    found: int
    written: int
    skipped: int
    failed_count: int
    failed: list[JobFailure] = Field(
        ..., description="The first failed images with their reasons (all are counted)."
    )
    tagged: int = Field(..., description="Images run through the model.")
    elapsed: float = Field(..., description="Seconds.")
    images_per_second: float
    cancelled: bool
    batch_size: int
    providers: list[str]
    top_tags: dict[str, int] = Field(..., description="The most frequent tags written.")
    usage: dict[str, float] = Field(
        default_factory=dict,
        description="Tokens, requests and cost a VLM job spent (prompt_tokens, "
        "completion_tokens, requests, retries, cost); empty for taggers.",
    )


class JobStatus(BaseModel):
    """A batch job."""

    id: str
    state: Literal["queued", "counting", "running", "done", "cancelled", "failed"]
    model: str
    inputs: list[str]
    created: float = Field(..., description="Unix time.")
    started: float | None = None
    finished: float | None = None
    progress: JobProgress
    summary: JobSummary | None = None
    error: str | None = Field(None, description="Why the job failed.")


class JobsResponse(BaseModel):
    """``GET /tagger/v1/jobs``."""

    jobs: list[JobStatus]


# -- errors ------------------------------------------------------------------------------------


class ErrorItem(BaseModel):
    """One invalid field."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Every error reply: what is wrong, and for invalid requests each field's problem."""

    detail: str = Field(..., description="What is wrong and how to fix it.")
    errors: list[ErrorItem] | None = None


def to_dict(model: BaseModel) -> dict[str, Any]:
    """A model as a plain dict on pydantic 1.10 and 2.x."""
    from tagger.options import dump

    return dump(model)
