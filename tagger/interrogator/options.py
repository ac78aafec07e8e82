"""The CLIP Interrogator's options: one model, shared by the command line, the tab and the API.

The defaults are pharmapsychotic's ``clip-interrogator`` 0.6.0 (``Config`` and the
``interrogate*`` keyword defaults). ``low_vram`` applies its ``apply_low_vram_defaults``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tagger.options import StrictModel, dump, parse

Mode = Literal["best", "classic", "fast", "negative", "caption"]
Category = Literal["artists", "flavors", "mediums", "movements", "trendings"]
CaptionDecoding = Literal["run", "library"]

MODES: tuple[str, ...] = ("best", "classic", "fast", "negative", "caption")
#: The banks of the library, in the order its merged table ("fast" and "best") joins them.
CATEGORIES: tuple[str, ...] = ("artists", "flavors", "mediums", "movements", "trendings")
DEFAULT_CLIP = "ViT-L-14/openai"
DEFAULT_CAPTION_MODEL = "blip-large"
#: ``caption_model`` value that turns the caption part off.
NO_CAPTION = "none"
LOW_VRAM_CAPTION_MODEL = "blip-base"
LOW_VRAM_CHUNK = 1024


class InterrogatorOptions(StrictModel):
    """How the CLIP Interrogator turns an image into a prompt.

    ``best`` chains bank terms greedily onto the caption while CLIP's image-text similarity
    improves, then keeps the best of caption, classic, fast and chain; ``classic`` writes the
    caption, the top medium, artist, trending site, movement and flavors; ``fast`` the caption
    and the top 32 terms of all banks; ``negative`` chains the terms least like the image (for a
    negative prompt); ``caption`` the caption alone. Every prompt is cut to CLIP's token limit.
    """

    mode: Mode = Field("best", description="best, classic, fast, negative, or caption alone.")
    clip_model: str = Field(
        DEFAULT_CLIP,
        description="open_clip model as architecture/pretrained (ViT-L-14/openai for SD 1.x, "
        "ViT-H-14/laion2b_s32b_b79k for SD 2.x, ViT-bigG-14/laion2b_s39b_b160k for SDXL), or a "
        "CLIP folder in open_clip's layout.",
    )
    caption_model: str = Field(
        DEFAULT_CAPTION_MODEL,
        description="Captioner for the caption part (a key, folder name or folder), or 'none'.",
    )
    caption_decoding: CaptionDecoding = Field(
        "run",
        description="run: the caption part decodes with the run's caption options (tagger's "
        "BLIP defaults: beams and repetition guards); library: as clip-interrogator does "
        "(unconditional, greedy, 32 new tokens).",
    )
    skip_categories: list[Category] = Field(
        default_factory=list,
        description="Banks left out: artists, flavors, mediums, movements, trendings.",
    )
    extra_banks: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Banks of your own: name -> terms. Ranked with the others (classic adds "
        "each one's best term before the flavors).",
    )
    min_flavors: int = Field(
        8, ge=0, le=77, description="best: terms always chained, improving or not."
    )
    max_flavors: int = Field(
        32, ge=1, le=77, description="best, fast, negative: most terms added to the prompt."
    )
    classic_flavors: int = Field(3, ge=0, le=77, description="classic: flavor terms added.")
    chunk_size: int = Field(
        2048,
        ge=1,
        le=1_000_000,
        description="Banks longer than this are ranked chunk by chunk (and text is embedded in "
        "batches of this size), as the library does.",
    )
    intermediate_count: int = Field(
        2048,
        ge=1,
        le=1_000_000,
        description="best and negative: how many top (or bottom) terms the chain starts from.",
    )
    analyze: bool = Field(
        False,
        description="Also rank the top 5 terms of each bank with their similarities "
        "(clip-interrogator-ext's Analyze), written to the JSON sidecar.",
    )
    low_vram: bool = Field(
        False,
        description="The library's low-VRAM settings: blip-base for the caption (when the "
        "caption model is the default), chunks of 1024, CLIP and captioner moved to the CPU "
        "while the other runs.",
    )


def effective(options: InterrogatorOptions) -> InterrogatorOptions:
    """The options with ``low_vram`` applied (the library's ``apply_low_vram_defaults``).

    >>> low = effective(InterrogatorOptions(low_vram=True))
    >>> low.caption_model, low.chunk_size, low.intermediate_count
    ('blip-base', 1024, 1024)
    """
    if not options.low_vram:
        return options
    data = dump(options)
    if data["caption_model"] == DEFAULT_CAPTION_MODEL:
        data["caption_model"] = LOW_VRAM_CAPTION_MODEL
    data["chunk_size"] = min(data["chunk_size"], LOW_VRAM_CHUNK)
    data["intermediate_count"] = min(data["intermediate_count"], LOW_VRAM_CHUNK)
    return parse(InterrogatorOptions, data)


def split_clip_name(name: str) -> tuple[str, str | None]:
    """``ViT-L-14/openai`` -> (architecture, pretrained tag); a name without ``/`` has none.

    >>> split_clip_name("ViT-H-14/laion2b_s32b_b79k"), split_clip_name("ViT-B-32")
    (('ViT-H-14', 'laion2b_s32b_b79k'), ('ViT-B-32', None))
    """
    arch, _, pretrained = name.strip().partition("/")
    return arch, pretrained or None


def sanitized_name(clip_model: str) -> str:
    """The library's file-name form of a CLIP model name (``/`` and ``@`` as ``_``).

    >>> sanitized_name("ViT-L-14/openai")
    'ViT-L-14_openai'
    """
    return clip_model.replace("/", "_").replace("@", "_")
