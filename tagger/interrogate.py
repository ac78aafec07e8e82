"""One model for the batch engine made of a tagger, a captioner and a CLIP filter (any of them).

``Interrogator`` has the engine's model shape: ``preprocess`` gives each part its own input,
``collate`` stacks them, ``forward`` runs the tagger, the captioner and CLIP on the batch, and
``postprocess`` returns an ``ImageResult`` (tags after the CLIP filter, the caption, the CLIP
scores). So ``tagger tag --captioner`` and ``tagger caption`` are the same engine run.

A captioner whose prompt names the tagger's tags (a vision-language model, ``tagger.vlm``) gets
them in the same forward: the tagger runs first, its kept tags (after the CLIP filter, with
``tag_options``) go into the captioner's inputs (``add_tags``), then the captioner runs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tagger.batch import ImageResult
from tagger.errors import OptionsError
from tagger.options import CaptionOptions, TagOptions
from tagger.tags import TagResult, tag_matches, tag_scores

if TYPE_CHECKING:
    from PIL import Image

    from tagger.captioners.base import Captioner
    from tagger.captioners.clip_filter import ClipFilter
    from tagger.wd14 import WD14Tagger

log = logging.getLogger("tagger")


def check_parts(tagger: object, captioner: object, clip_filter: object) -> None:
    """Refuse a combination that cannot run: no model at all, or a CLIP filter without a tagger
    (it filters the tagger's tags). Parts are models or their configs; None means absent."""
    if tagger is None and captioner is None:
        raise OptionsError("nothing to run: give a tagger, a captioner or both")
    if clip_filter is not None and tagger is None:
        raise OptionsError("the CLIP filter filters a tagger's tags: give a tagger too")


def part_outputs(tagger: object, captioner: object) -> tuple[str, ...]:
    """What a run with these parts produces: ``tags``, ``caption`` or both.

    >>> part_outputs("a tagger", None), part_outputs(None, "a captioner")
    (('tags',), ('caption',))
    """
    return tuple(
        name for name, part in (("tags", tagger), ("caption", captioner)) if part is not None
    )


class Interrogator:
    """Tagger + captioner + CLIP filter as one batch model."""

    def __init__(
        self,
        tagger: WD14Tagger | None = None,
        captioner: Captioner | None = None,
        caption_options: CaptionOptions | None = None,
        clip_filter: ClipFilter | None = None,
        tag_options: TagOptions | None = None,
    ) -> None:
        check_parts(tagger, captioner, clip_filter)
        self.tagger = tagger
        self.captioner = captioner
        self.caption_options = caption_options or CaptionOptions()
        self.clip_filter = clip_filter
        #: The tag options of the run: the tags a captioner's prompt is given (``add_tags``).
        self.tag_options = tag_options or TagOptions()
        if getattr(captioner, "wants_tags", False) and tagger is None:
            own = getattr(getattr(captioner, "template", None), "name", "") == "custom"
            log.log(
                logging.WARNING if own else logging.INFO,
                "the prompt's tag fields ({tags}, {general}, {character}, {copyright}, {rating}) "
                "stay empty, and their lines are left out: no tagger runs (for tag-guided "
                "captions run `tagger tag --captioner ... --caption-template separate`)",
            )

    @property
    def outputs(self) -> tuple[str, ...]:
        """What this model produces: ``tags``, ``caption`` or both."""
        return part_outputs(self.tagger, self.captioner)

    @property
    def fixed_batch(self) -> int | None:
        """The tagger's fixed batch size, if any."""
        return self.tagger.fixed_batch if self.tagger is not None else None

    @property
    def pipelined(self) -> int:
        """Batches the engine may keep in flight (an endpoint captioner's ``pipelined``); one
        when a tagger or the CLIP filter runs too, so that each part runs one batch at a
        time."""
        depth = int(getattr(self.captioner, "pipelined", 0) or 0)
        return min(depth, 1) if self.tagger is not None or self.clip_filter is not None else depth

    @property
    def preferred_batch(self) -> int | None:
        """The captioner's preferred batch size, if it has one (a VLM's)."""
        return getattr(self.captioner, "preferred_batch", None)

    def item_context(self, image_path: Any, caption_path: Any) -> dict[str, str] | None:
        """The captioner's file context of one image (its prompt fields), if it takes one."""
        context = getattr(self.captioner, "item_context", None)
        return context(image_path, caption_path) if context is not None else None

    @property
    def active_providers(self) -> list[str]:
        """Where each part runs."""
        out: list[str] = []
        for part in (self.tagger, self.captioner, self.clip_filter):
            if part is not None:
                out += [p for p in part.active_providers if p not in out]
        return out

    def load(self, *, captioner: bool = True) -> Interrogator:
        """Load every part (``captioner=False``: all but the captioner); the filter embeds the
        tagger's vocabulary (cached on disk)."""
        if self.tagger is not None:
            self.tagger.load()
        if self.captioner is not None and captioner:
            self.captioner.load()
        if self.clip_filter is not None and self.tagger is not None:
            self.clip_filter.load()
            labels = self.tagger.labels
            groups = {"general": labels.general, "character": labels.character}
            vocabulary = [
                labels.names[i]
                for category in self.clip_filter.options.categories
                for i in groups.get(category, ())
            ]
            self.clip_filter.set_vocabulary(vocabulary)
        return self

    def unload(self) -> None:
        """Unload every part."""
        for part in (self.tagger, self.captioner, self.clip_filter):
            if part is not None:
                part.unload()

    # -- the three steps ------------------------------------------------------------------------
    def preprocess(
        self, image: Image.Image, context: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """One RGB image (and the captioner's file context) -> each part's input."""
        out: dict[str, Any] = {}
        if self.tagger is not None:
            out["tags"] = self.tagger.preprocess(image)
        if self.captioner is not None:
            if context is not None:
                out["caption"] = self.captioner.preprocess(image, context)  # type: ignore[call-arg]
            else:
                out["caption"] = self.captioner.preprocess(image)
        if self.clip_filter is not None:
            out["clip"] = self.clip_filter.preprocess(image)
        return out

    def collate(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Stack each part's inputs."""
        import numpy as np

        batch: dict[str, Any] = {}
        if self.tagger is not None:
            batch["tags"] = np.stack([item["tags"] for item in items])
        if self.captioner is not None:
            batch["caption"] = self.captioner.collate([item["caption"] for item in items])
        if self.clip_filter is not None:
            import torch

            batch["clip"] = torch.stack([item["clip"] for item in items])
        return batch

    def _captions(self, pixels: Any) -> list[list[int]]:
        """Caption token ids, ``caption_options.batch_size`` images per captioner run."""
        if self.captioner is None:
            return []
        count = len(pixels)
        step = self.caption_options.batch_size or count
        ids: list[list[int]] = []
        for start in range(0, count, step):
            ids += self.captioner.forward(pixels[start : start + step], self.caption_options)
        return ids

    def forward(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Run every part on a batch; one dict of raw outputs per image."""
        count = len(next(iter(batch.values())))
        rows: list[dict[str, Any]] = [{} for _ in range(count)]
        if self.tagger is not None:
            for row, scores in zip(rows, self.tagger.forward(batch["tags"]), strict=True):
                row["scores"] = scores
        if self.clip_filter is not None:
            embeddings = self.clip_filter.image_embeddings(batch["clip"])
            for row, embedding in zip(rows, embeddings, strict=True):
                row["clip"] = embedding
        if self.captioner is not None:
            add_tags = getattr(self.captioner, "add_tags", None)
            if add_tags is not None and self.tagger is not None and self.captioner.wants_tags:
                for row in rows:  # the kept tags, as postprocess writes them
                    row["tag_result"] = self._tags(row, self.tag_options)
                add_tags(batch["caption"], [row["tag_result"][1] for row in rows], self.tag_options)
            for row, ids in zip(rows, self._captions(batch["caption"]), strict=True):
                row["ids"] = ids
        return rows

    def _tags(
        self, row: dict[str, Any], options: TagOptions
    ) -> tuple[TagOptions, TagResult, dict[str, float] | None]:
        """(options, kept tags after the CLIP filter, CLIP scores) of one image."""
        assert self.tagger is not None
        tags = tag_scores(row["scores"].tolist(), self.tagger.labels, options)
        if self.clip_filter is None:
            return options, tags, None
        kept, clip = self.clip_filter.filter(
            {"general": tags.general, "character": tags.character}, row["clip"]
        )
        for category, scores in (("general", tags.general), ("character", tags.character)):
            kept[category] = {  # --keep-tags stay whatever CLIP says
                name: score
                for name, score in scores.items()
                if name in kept[category] or tag_matches(name, options.keep_tags)
            }
        return options, TagResult(tags.rating, kept["character"], kept["general"], tags.index), clip

    def postprocess(self, row: dict[str, Any], options: TagOptions) -> ImageResult:
        """Raw outputs -> kept tags (CLIP-filtered), caption text and CLIP scores."""
        result = ImageResult()
        if self.captioner is not None:  # first: a refused caption fails the image (no files)
            raw = row["ids"]
            result.caption = self.captioner.postprocess(raw, self.caption_options)
            result.usage = getattr(raw, "usage", None) or None
            # SBG's keywords and candidates, the CLIP Interrogator's parts, reranked candidates
            result.extra = self.captioner.details(raw, self.caption_options)
        if self.tagger is not None:
            done = row.get("tag_result")
            if done is None or done[0] != options:
                done = self._tags(row, options)
            _, result.tags, result.clip = done
        return result
