"""The captioner shape of vision-language models (endpoints and local transformers models).

A VLM captioner is a ``tagger.captioners.base.Captioner``, so the batch engine, ``tagger
caption``, ``tagger tag --captioner``, the tab, the API and Ray run it as they run BLIP:

- ``item_context(image_path, caption_path)``: the prompt fields known from the file (``{name}``,
  ``{folder}``, ``{existing}``), read in the engine's decode threads;
- ``preprocess(image, context)``: a ``VlmItem`` (the image as the backend takes it, the fields);
- ``add_tags(items, tag_results, tag_options)``: the tag fields, from the tagger of the same pass;
- ``forward(items, options)``: one ``VlmReply`` per image. An endpoint's requests for the batch
  are all in flight at once (up to ``concurrency``, under the rate limits); a local model runs
  one batched ``generate``;
- ``postprocess(reply, options)``: the cleaned caption, or ``ImageFailedError`` with the reason
  (refused, empty, cut off, failed requests) and the tokens spent, so nothing is written for it.

A guide captioner (another captioner, e.g. BLIP) fills ``{caption}`` in the same forward.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagger.captioners.base import Captioner
from tagger.errors import ImageFailedError, OptionsError, OutputError
from tagger.options import CaptionOptions, TagOptions
from tagger.vlm.clean import clean_reply, rejection
from tagger.vlm.options import VlmOptions
from tagger.vlm.templates import TAG_FIELDS, Template, render, resolve_template, template_fields

if TYPE_CHECKING:
    from PIL import Image

    from tagger.registry import ModelSpec
    from tagger.tags import TagResult

log = logging.getLogger("tagger")

_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)")


@dataclass
class VlmItem:
    """One image on its way to a VLM: the image as the backend takes it, the prompt fields, and
    the guide captioner's input when there is one."""

    image: Any
    fields: dict[str, str] = field(default_factory=dict)
    guide: Any = None


@dataclass
class VlmReply:
    """What a VLM answered for one image (``error`` set when there is no answer)."""

    text: str | None = None
    usage: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    finish: str | None = None
    prompt: str = ""


@dataclass(frozen=True)
class VlmCaption:
    """One image captioned on its own (the tab, the HTTP API): the caption or why there is
    none, the prompts sent and the usage."""

    caption: str | None
    failure: str | None
    prompt: str
    system: str
    usage: dict[str, float]


@dataclass(frozen=True)
class PromptPreview:
    """A request as it would be sent (``--dry-run``): prompts and the image, described."""

    system: str
    user: str
    image: str
    request: dict[str, Any]


def category_text(result: TagResult, names: Mapping[str, float], options: TagOptions) -> str:
    """Tags of one category as a prompt lists them: the caption's spelling (replacements,
    underscores) without weights or escapes, joined with ', '.

    >>> from tagger.tags import TagResult
    >>> r = TagResult({}, {}, {"long_hair": 0.9, "1girl": 0.99}, {"long_hair": 1, "1girl": 0})
    >>> category_text(r, r.general, TagOptions())
    '1girl, long hair'
    """
    from tagger.tags import TagResult as _TagResult
    from tagger.tags import caption_tags

    only = _TagResult({}, {}, dict(names), result.index)
    return ", ".join(caption_tags(only, prompt_tag_options(options)))


def prompt_tag_options(options: TagOptions) -> TagOptions:
    """The tag options a prompt's tags are written with: the run's, without weights, escapes,
    additional tags and rating tags (those are the caption file's business)."""
    from tagger.options import dump, parse

    data = dump(options)
    data.update(
        include_weights=False,
        escape_brackets=False,
        additional_tags=[],
        rating_tag="none",
        always_first_tags=[],
    )
    return parse(TagOptions, data)


def tag_fields(result: TagResult, options: TagOptions) -> dict[str, str]:
    """The tag fields of a prompt (``{tags}``, ``{general}``, ``{character}``, ``{copyright}``,
    ``{rating}``) for one image's kept tags.

    ``{copyright}`` comes from a ``copyright`` category when the tagger has one (WD14 taggers
    have none, so it stays empty).

    >>> from tagger.tags import TagResult
    >>> r = TagResult({"general": 0.9, "explicit": 0.1}, {"hatsune_miku": 0.95},
    ...               {"1girl": 0.99}, {"general": 0, "explicit": 1, "1girl": 2, "hatsune_miku": 3})
    >>> tag_fields(r, TagOptions())
    {'tags': '1girl, hatsune miku', 'general': '1girl', 'character': 'hatsune miku', \
'copyright': '', 'rating': 'general'}
    """
    from tagger.tags import caption_tags, top_rating

    written = prompt_tag_options(options)
    copyright_tags = getattr(result, "copyright", None) or {}
    return {
        "tags": ", ".join(caption_tags(result, written)),
        "general": category_text(result, result.general, options),
        "character": category_text(result, result.character, options),
        "copyright": category_text(result, copyright_tags, options) if copyright_tags else "",
        "rating": top_rating(result.rating) or "",
    }


def trim_cut_off(text: str, reply: str) -> str:
    """A reply cut off at the token limit, back to its last whole sentence (prose) or item
    (tags); '' when nothing whole is left.

    >>> trim_cut_off("A cat sleeps. It dreams of", "prose"), trim_cut_off("cat, red, fl", "tags")
    ('A cat sleeps.', 'cat, red')
    """
    if reply == "tags":
        items = [item.strip() for item in text.split(",")]
        return ", ".join(item for item in items[:-1] if item)
    ends = list(_SENTENCE_END.finditer(text))
    return text[: ends[-1].end()].strip() if ends else ""


def read_existing(path: Path) -> str:
    """The text of an existing caption file ('' when there is none), read strictly as UTF-8."""
    from tagger.safeio import read_text_file

    existing = read_text_file(path)
    return existing.text.strip() if existing is not None else ""


class VlmCaptioner(Captioner):
    """Base class of the VLM captioners: prompts, fields, cleaning; backends fill in
    ``_generate`` (and loading)."""

    family = "vlm"
    default_beams = 1
    #: Whether the template applies (Florence-2 takes a task token instead).
    uses_template = True

    def __init__(
        self,
        spec: ModelSpec,
        *,
        vlm: VlmOptions | None = None,
        guide: Captioner | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec, **kwargs)
        self.vlm = vlm or VlmOptions()
        self.guide = guide
        self.template: Template = resolve_template(
            self.vlm.template, self.vlm.prompt, self.vlm.system_prompt, self.vlm.reply
        )
        self.check_options()

    def load(self) -> VlmCaptioner:
        """Load the guide captioner, then the model."""
        if self.guide is not None:
            self.guide.load()
        super().load()
        return self

    def unload(self) -> None:
        """Unload the model and the guide captioner."""
        super().unload()
        if self.guide is not None:
            self.guide.unload()

    # -- options ----------------------------------------------------------------------------
    def check_options(self) -> None:
        """Refuse option combinations the backend cannot use (OptionsError)."""
        if "caption" in self.fields and self.guide is None:
            log.info("the prompt's {caption} field stays empty: no guide captioner was given")

    @property
    def fields(self) -> list[str]:
        """The fields the prompt uses."""
        if not self.uses_template:
            return []
        return template_fields(self.template.user) + template_fields(self.template.system)

    @property
    def wants_tags(self) -> bool:
        """True when the prompt names a tag field (the tagger of the pass must fill it)."""
        return bool(TAG_FIELDS & set(self.fields))

    @property
    def wants_context(self) -> bool:
        """True: the engine passes each image's file context to ``preprocess``."""
        return True

    @property
    def preferred_batch(self) -> int:
        """Images per forward the engine should use when its batch size is left automatic."""
        return 8

    # -- context and inputs -------------------------------------------------------------------
    def item_context(self, image_path: Path, caption_path: Path | None) -> dict[str, str]:
        """``{name}``, ``{folder}`` and, when the prompt uses it, ``{existing}`` for one image.

        ``{existing}`` is the caption file the run writes (``caption_path``), or with
        ``existing_extension`` the file ``<stem><extension>`` beside it, else beside the image.
        A file that is not UTF-8 fails the image (``OutputError``).
        """
        image_path = Path(image_path)
        context = {"name": image_path.stem, "folder": image_path.parent.name}
        if "existing" in self.fields:
            context["existing"] = self._existing(image_path, caption_path)
        return context

    def _existing(self, image_path: Path, caption_path: Path | None) -> str:
        """The ``{existing}`` text of one image."""
        extension = self.vlm.existing_extension
        if not extension:
            return read_existing(caption_path) if caption_path is not None else ""
        from tagger.batch import normalize_extension

        extension = normalize_extension(extension)
        places = []
        if caption_path is not None:
            places.append(caption_path.with_name(image_path.stem + extension))
        places.append(image_path.with_name(image_path.stem + extension))
        for place in places:
            try:
                text = read_existing(place)
            except OutputError:
                raise
            if text:
                return text
        return ""

    def prepare_image(self, image: Image.Image) -> Any:
        """The image as the backend takes it (CPU, any thread)."""
        return image.convert("RGB")

    def preprocess(self, image: Image.Image, context: Mapping[str, str] | None = None) -> VlmItem:
        """One RGB image (and its file context) -> a ``VlmItem``."""
        guide = self.guide.preprocess(image) if self.guide is not None else None
        return VlmItem(self.prepare_image(image), dict(context or {}), guide)

    def collate(self, tensors: Sequence[Any]) -> list[VlmItem]:  # type: ignore[override]
        """The items of a batch, as they are."""
        return list(tensors)

    def add_tags(
        self, items: Sequence[VlmItem], results: Sequence[TagResult], options: TagOptions
    ) -> None:
        """Fill each item's tag fields from the tagger's kept tags."""
        for item, result in zip(items, results, strict=True):
            item.fields.update(tag_fields(result, options))

    def _fill_guide(self, items: Sequence[VlmItem], options: CaptionOptions) -> None:
        """Run the guide captioner on the batch and fill ``{caption}``."""
        if self.guide is None:
            return
        ids = self.guide.forward(self.guide.collate([item.guide for item in items]), options)
        for item, row in zip(items, ids, strict=True):
            item.fields["caption"] = self.guide.postprocess(row, options)

    def field_values(self, item: VlmItem) -> dict[str, str]:
        """Every field's value for one item."""
        values = dict.fromkeys(("tags", "general", "character", "copyright", "rating"), "")
        values.update(item.fields)
        values["trigger"] = self.vlm.trigger
        return values

    def user_prompt(self, item: VlmItem) -> str:
        """The user prompt of one item, fields filled."""
        return render(self.template.user, self.field_values(item))

    def system_prompt(self, item: VlmItem) -> str:
        """The system prompt of one item ('' for none)."""
        return render(self.template.system, self.field_values(item)) if self.template.system else ""

    # -- the steps ------------------------------------------------------------------------
    def forward(self, batch: Sequence[VlmItem], options: CaptionOptions) -> list[VlmReply]:  # type: ignore[override]
        """One reply per item (guide caption first, when there is a guide)."""
        self.load()
        self._fill_guide(batch, options)
        return self._generate(list(batch))

    def _generate(self, items: list[VlmItem]) -> list[VlmReply]:
        """The backend's replies, one per item."""
        raise NotImplementedError

    def postprocess(self, ids: Any, options: CaptionOptions) -> str:  # type: ignore[override]
        """The cleaned caption of one reply; ``ImageFailedError`` when there is none."""
        reply: VlmReply = ids
        if reply.error is not None:
            raise ImageFailedError(reply.error, reply.usage)
        text = clean_reply(reply.text, self.template.reply)
        if reply.finish == "length":
            whole = trim_cut_off(text, self.template.reply)
            if not whole:
                raise ImageFailedError(
                    f"reply cut off at {self.vlm.max_tokens} tokens before one whole sentence: "
                    "raise --vlm-max-tokens",
                    reply.usage,
                )
            text = whole
        reason = rejection(text, check_language=self.vlm.check_language)
        if reason is not None:
            raise ImageFailedError(reason, reply.usage)
        return text

    def preview(self, items: Sequence[VlmItem]) -> list[PromptPreview]:
        """The requests a batch would send, without sending them (``--dry-run``)."""
        raise NotImplementedError

    def caption_image(
        self,
        image: Image.Image,
        *,
        tags: TagResult | None = None,
        tag_options: TagOptions | None = None,
        fields: Mapping[str, str] | None = None,
        options: CaptionOptions | None = None,
    ) -> VlmCaption:
        """Caption one image: ``tags`` (a tagger's kept tags) and ``fields`` (other prompt
        fields: name, folder, caption, existing) fill the prompt."""
        options = options or CaptionOptions()
        self.load()
        item = self.preprocess(image.convert("RGB"), fields)
        if tags is not None:
            self.add_tags([item], [tags], tag_options or TagOptions())
        reply = self.forward([item], options)[0]
        system = self.system_prompt(item)
        try:
            caption, failure = self.postprocess(reply, options), None
        except ImageFailedError as exc:
            caption, failure = None, exc.reason
        return VlmCaption(caption, failure, self.user_prompt(item), system, dict(reply.usage))

    def describe_image(self, image: Any) -> str:
        """The image of a preview, in words."""
        if hasattr(image, "describe"):
            return image.describe()
        return f"RGB {image.width}x{image.height}"


def require_template_free(captioner: VlmCaptioner) -> None:
    """Refuse a template for a model that takes a task token (Florence-2)."""
    vlm = captioner.vlm
    if vlm.prompt or vlm.system_prompt or vlm.template != "dense":
        raise OptionsError(
            f"{captioner.spec.key} takes a task token, not a prompt template: pass --vlm-task "
            "(e.g. <MORE_DETAILED_CAPTION>, <GENERATE_TAGS>) and leave --vlm-template, "
            "--vlm-prompt and --vlm-system out"
        )
