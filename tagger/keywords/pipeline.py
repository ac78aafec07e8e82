"""The keyword pipeline as one batch-engine model: caption -> KeyBERT -> CLIP filter.

``KeywordPipeline`` wraps an optional ``Interrogator`` (a tagger and/or a captioner, with the
CLIP filter of the tagger's tags) and adds, per image:

- the caption: read from ``<stem><caption_extension>`` beside the image (``--from-captions``),
  else the inner captioner's;
- its keyphrases (``KeywordExtractor``), minus the excluded tags;
- with a CLIP filter, only the keyphrases CLIP sees in the image (``absolute`` or ``mcut``, as
  for the tagger's tags; ``keep_tags`` are never dropped), their scores under ``"clip"``.

The keyphrases are the run's tags (``tagger keywords``), or follow the tagger's tags
(``tagger tag --keywords``). The image is decoded only when a part needs it: reading captions
and extracting keyphrases alone never opens it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from tagger.batch import ImageItem, ImageResult, normalize_extension
from tagger.errors import ImageLoadError, OptionsError, OutputError
from tagger.keywords.output import drop_excluded
from tagger.options import TagOptions
from tagger.tags import tag_matches

if TYPE_CHECKING:
    from PIL import Image

    from tagger.captioners.clip_filter import ClipFilter
    from tagger.interrogate import Interrogator
    from tagger.keywords.extract import KeywordExtractor

log = logging.getLogger("tagger")


class CaptionFileError(ImageLoadError):
    """An image's caption file is missing or unreadable (``--from-captions``)."""


def read_caption(item: ImageItem, extension: str) -> str:
    """The caption beside an image (``<stem><extension>``), read strictly as UTF-8."""
    from tagger.safeio import read_text_file

    path = item.path.with_suffix(extension)
    try:
        text = read_text_file(path)
    except OutputError as exc:
        raise CaptionFileError(str(path), exc.reason) from exc
    except OSError as exc:
        raise CaptionFileError(str(path), f"cannot read it: {exc.strerror or exc}") from exc
    if text is None:
        raise CaptionFileError(
            str(path), f"no caption file {path.name} beside the image (--from-captions {extension})"
        )
    return text.text.strip()


def clip_keep(scores: dict[str, float], clip_filter: ClipFilter, options: TagOptions) -> set[str]:
    """The keyphrases the filter keeps (its mode and threshold), plus the ``keep_tags``."""
    from tagger.captioners.clip_filter import keep_by_clip

    kept = set(keep_by_clip(scores, clip_filter.options.mode, clip_filter.options.threshold))
    return kept | {name for name in scores if tag_matches(name, options.keep_tags)}


class KeywordPipeline:
    """Captions (read or generated) -> keyphrases -> CLIP filter, as one batch model."""

    def __init__(
        self,
        extractor: KeywordExtractor,
        inner: Interrogator | None = None,
        *,
        clip_filter: ClipFilter | None = None,
        caption_extension: str | None = None,
        write_caption: bool = True,
    ) -> None:
        if inner is None and caption_extension is None:
            raise OptionsError("keyphrases need captions: read them from files or give a captioner")
        if inner is not None and caption_extension is None and inner.captioner is None:
            raise OptionsError("keyphrases need a caption: give a captioner (or --from-captions)")
        self.extractor = extractor
        self.inner = inner
        self.caption_extension = (
            normalize_extension(caption_extension) if caption_extension else None
        )
        shared = inner.clip_filter if inner is not None else None
        self.clip_filter = clip_filter or shared
        self._own_clip = self.clip_filter is not None and self.clip_filter is not shared
        self.write_caption = write_caption and self.caption_extension is None

    # -- what the engine reads -------------------------------------------------------------------
    @property
    def outputs(self) -> tuple[str, ...]:
        """``tags`` (the keyphrases, and the tagger's), and ``caption`` when it is written."""
        inner = self.inner.outputs if self.inner is not None else ()
        caption = ("caption",) if self.write_caption and "caption" in inner else ()
        return ("tags", *caption)

    @property
    def fixed_batch(self) -> int | None:
        """The inner tagger's fixed batch size, if any."""
        return self.inner.fixed_batch if self.inner is not None else None

    @property
    def active_providers(self) -> list[str]:
        """Where each part runs."""
        parts: list[Any] = [
            self.inner,
            self.extractor,
            self.clip_filter if self._own_clip else None,
        ]
        out: list[str] = []
        for part in parts:
            if part is not None:
                out += [p for p in part.active_providers if p not in out]
        return out

    def load(self) -> KeywordPipeline:
        """Load every part."""
        if self.inner is not None:
            self.inner.load()
        self.extractor.load()
        if self._own_clip and self.clip_filter is not None:
            self.clip_filter.load()
        return self

    def unload(self) -> None:
        """Unload every part."""
        for part in (self.inner, self.extractor, self.clip_filter if self._own_clip else None):
            if part is not None:
                part.unload()

    # -- the three steps ---------------------------------------------------------------------------
    def needs_image(self) -> bool:
        """True when a part looks at the pixels (a tagger, a captioner, CLIP)."""
        return self.inner is not None or self._own_clip

    def preprocess(self, image: Image.Image) -> dict[str, Any]:
        """One RGB image -> each part's input (captions must come from the inner captioner)."""
        if self.caption_extension is not None:
            raise OptionsError("captions are read from files: this model needs the image's path")
        return self._inputs(lambda: image)

    def preprocess_item(self, item: ImageItem, load: Callable[[], Image.Image]) -> dict[str, Any]:
        """The image's caption file (``--from-captions``) and, when a part needs them, its
        pixels (``load`` decodes the image)."""
        out: dict[str, Any] = {}
        if self.caption_extension is not None:
            out["text"] = read_caption(item, self.caption_extension)
        if self.needs_image():
            out.update(self._inputs(load))
        return out

    def _inputs(self, load: Callable[[], Image.Image]) -> dict[str, Any]:
        """The inner model's and the own CLIP's inputs for a decoded image."""
        image = load().convert("RGB")
        out: dict[str, Any] = {}
        if self.inner is not None:
            out["inner"] = self.inner.preprocess(image)
        if self._own_clip and self.clip_filter is not None:
            out["clip"] = self.clip_filter.preprocess(image)
        return out

    def collate(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Each part's inputs stacked."""
        batch: dict[str, Any] = {"count": len(items)}
        if self.caption_extension is not None:
            batch["text"] = [item["text"] for item in items]
        if self.inner is not None:
            batch["inner"] = self.inner.collate([item["inner"] for item in items])
        if self._own_clip:
            import torch

            batch["clip"] = torch.stack([item["clip"] for item in items])
        return batch

    def forward(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Run the parts on a batch; the keyphrases of every caption come from one call."""
        count = batch["count"]
        rows: list[dict[str, Any]] = [{} for _ in range(count)]
        if self.inner is not None:
            for row, inner in zip(rows, self.inner.forward(batch["inner"]), strict=True):
                row["inner"] = inner
        if self.caption_extension is not None:
            captions = list(batch["text"])
        else:
            assert self.inner is not None
            assert self.inner.captioner is not None
            captioner, options = self.inner.captioner, self.inner.caption_options
            captions = [captioner.postprocess(row["inner"]["ids"], options) for row in rows]
        for row, caption, keyphrases in zip(
            rows, captions, self.extractor.extract(captions), strict=True
        ):
            row["caption"], row["keyphrases"] = caption, keyphrases
        if self._own_clip and self.clip_filter is not None:
            embeddings = self.clip_filter.image_embeddings(batch["clip"])
            for row, embedding in zip(rows, embeddings, strict=True):
                row["clip"] = embedding
        elif self.clip_filter is not None:
            for row in rows:
                row["clip"] = row["inner"]["clip"]
        return rows

    def postprocess(self, row: dict[str, Any], options: TagOptions) -> ImageResult:
        """Raw outputs -> the inner result, plus the keyphrases (CLIP-filtered)."""
        result = self.inner.postprocess(row["inner"], options) if self.inner else ImageResult()
        keywords = drop_excluded(row["keyphrases"], options.exclude_tags)
        if self.clip_filter is not None and keywords:
            scores = self.clip_filter.scores(row["clip"], list(keywords))
            keep = clip_keep(scores, self.clip_filter, options)
            keywords = {name: score for name, score in keywords.items() if name in keep}
            result.clip = {**(result.clip or {}), **scores}
        result.keywords = keywords
        if not self.write_caption:
            result.caption = None
            result.extra = {**(result.extra or {}), "caption": row["caption"]}
        return result
