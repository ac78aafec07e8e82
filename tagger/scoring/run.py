"""``tagger score`` as a batch run: each image with its existing caption file, scored by BLIP
image-text matching, the scores written into ``<stem>.json`` (and the manifest), a report of the
captions that match worst.

It is the batch engine (``tagger.batch.BatchRun``): the same image finding, output planning,
decode threads, batching, atomic writes, manifest, failures with reasons and Ctrl-C handling.
What differs: the caption file is read, never written; the JSON sidecar is updated (its other
keys, a tag run's scores say, are kept); and nothing about an image is moved or deleted, whatever
its score.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagger.batch import BatchRun, ImageItem, ImageResult, Targets, output_base, write_failure
from tagger.errors import ImageLoadError, OptionsError, OutputError
from tagger.image import load_image
from tagger.safeio import atomic_write_text, link_error, read_text_file
from tagger.writers import sidecar_json

if TYPE_CHECKING:
    from tagger.scoring.itm import ItmScorer, PairScore

log = logging.getLogger("tagger")

SCORE_KEY = "score"
SORT_KEYS = ("itm", "itc")


class CaptionMissingError(ImageLoadError):
    """An image has no caption file to score (or one that cannot be read): the engine fails
    the image with the reason."""


def text_digest(text: str) -> str:
    """A short digest of a caption, stored with its score to see whether it changed since.

    >>> text_digest("a dog")
    '4a2d3cfba6a1d3e9'
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(order=True)
class Scored:
    """One scored image, for the report."""

    value: float
    path: str = field(compare=False)
    itm: float = field(compare=False)
    itc: float = field(compare=False)
    caption: str = field(compare=False)


class ScoreReport:
    """The worst ``worst`` images by ``sort`` and every image below ``below``, kept while a
    run goes (memory: the worst list and the images below the threshold only)."""

    def __init__(self, worst: int = 10, below: float | None = None, sort: str = "itm") -> None:
        if sort not in SORT_KEYS:
            raise OptionsError(f"sort by {sort!r}: use itm or itc")
        self.worst = worst
        self.below = below
        self.sort = sort
        self.count = 0
        self._heap: list[tuple[float, int, Scored]] = []  # the worst, as a max-heap by -value
        self.under: list[Scored] = []

    def add(self, path: Path | str, itm: float, itc: float, caption: str) -> None:
        """Record one image's scores."""
        value = itm if self.sort == "itm" else itc
        item = Scored(value, str(path), itm, itc, caption)
        self.count += 1
        if self.below is not None and value < self.below:
            self.under.append(item)
        if self.worst <= 0:
            return
        entry = (-value, -self.count, item)
        if len(self._heap) < self.worst:
            heapq.heappush(self._heap, entry)
        elif entry > self._heap[0]:
            heapq.heapreplace(self._heap, entry)

    def worst_items(self) -> list[Scored]:
        """The worst images, worst first (first scored first on a tie)."""
        return [item for _, _, item in sorted(self._heap, reverse=True)]

    def below_items(self) -> list[Scored]:
        """The images below the threshold, worst first."""
        return sorted(self.under, key=lambda s: s.value)


class ScoreModel:
    """A BLIP ITM scorer in the batch engine's model shape: (image, caption) -> scores."""

    outputs = ("score",)

    def __init__(self, scorer: ItmScorer) -> None:
        self.scorer = scorer

    @property
    def fixed_batch(self) -> int | None:
        """Any batch size."""
        return None

    @property
    def active_providers(self) -> list[str]:
        """Where the scorer runs."""
        return self.scorer.active_providers

    def load(self) -> ScoreModel:
        """Load the scorer."""
        self.scorer.load()
        return self

    def preprocess(self, image: Any) -> Any:
        """One RGB image -> the scorer's input."""
        return self.scorer.preprocess(image)

    def collate(self, items: Sequence[tuple[Any, str]]) -> tuple[Any, list[str]]:
        """Stack the images; keep the captions beside them."""
        return self.scorer.collate([pixels for pixels, _ in items]), [text for _, text in items]

    def forward(self, batch: tuple[Any, list[str]]) -> list[tuple[PairScore, str]]:
        """Each image's scores with its caption."""
        pixels, texts = batch
        scores = self.scorer.score(pixels, [[text] for text in texts])
        return [(row[0], text) for row, text in zip(scores, texts, strict=True)]

    def postprocess(self, row: tuple[PairScore, str], options: Any) -> ImageResult:
        """The scores as the sidecar's ``score`` record."""
        score, text = row
        record = {
            **score.as_dict(),
            "model": self.scorer.spec.key,
            "caption_sha256": text_digest(text),
        }
        return ImageResult(caption=text, extra={SCORE_KEY: record})


class ScoreRun(BatchRun):
    """Score the images of ``inputs`` against their caption files (``caption_extension``)."""

    def __init__(
        self,
        *args: Any,
        report: ScoreReport | None = None,
        model_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if self.options.on_existing not in ("skip", "overwrite"):
            raise OptionsError(
                f"--on-existing {self.options.on_existing}: scores are written (overwrite) or "
                f"kept when the caption has not changed (skip)"
            )
        if self.extension == ".json":
            raise OptionsError("the captions cannot be the .json sidecars")
        self.report = report or ScoreReport()
        self.model_key = model_key  # stored scores of another model are not reused

    # -- planning ------------------------------------------------------------------------
    def targets(self, item: ImageItem) -> Targets:
        """The caption read (``caption``) and the sidecar written (``json``)."""
        base = output_base(item.path, item.root, self.output_dir)
        caption = base.with_name(base.name + self.extension)
        json_path = base.with_name(base.name + ".json") if self.options.write_json else None
        return Targets(caption, json_path)

    def outputs(self, item: ImageItem) -> list[tuple[str, Path]]:
        """The files written: the sidecar, if any (the caption is only read)."""
        targets = self.targets(item)
        return [("JSON sidecar", targets.json)] if targets.json is not None else []

    def stored_score(self, targets: Targets, caption: str) -> dict[str, Any] | None:
        """The score a sidecar holds for this caption and model, if any."""
        if targets.json is None or not targets.json.is_file():
            return None
        try:
            data = json.loads(targets.json.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        record = data.get(SCORE_KEY) if isinstance(data, dict) else None
        if not isinstance(record, dict) or record.get("caption_sha256") != text_digest(caption):
            return None
        if self.model_key is not None and record.get("model") != self.model_key:
            return None
        if not all(isinstance(record.get(k), (int, float)) for k in SORT_KEYS):
            return None
        return record

    def is_done(self, item: ImageItem, targets: Targets) -> bool:
        """``skip``: the sidecar already holds this caption's score from this model (it goes
        into the report as it is)."""
        if self.options.on_existing != "skip" or targets.json is None:
            return False
        if (
            self.manifest is not None
            and self.manifest.file_name(item.path) not in self.manifest.done
        ):
            return False
        try:
            found = read_text_file(targets.caption)
        except (OutputError, OSError):
            return False
        if found is None:
            return False
        caption = found.text.strip()
        record = self.stored_score(targets, caption)
        if record is None:
            return False
        self.report.add(item.path, float(record["itm"]), float(record["itc"]), caption)
        return True

    def precheck(self, targets: Targets) -> str | None:
        """Why this image cannot be scored before it is decoded: no caption, a caption that is
        a link, a sidecar that cannot be written."""
        if targets.json is not None:
            reason = self.unwritable.get(targets.json.parent)
            if reason is not None:
                return reason
            if targets.json.is_symlink():
                return str(link_error(targets.json))
        if targets.caption.is_symlink():
            return str(link_error(targets.caption))
        if not targets.caption.is_file():
            return f"no caption file {targets.caption}"
        return None

    # -- per image --------------------------------------------------------------------------
    def _decode_item(self, item: ImageItem, targets: Targets | None = None) -> tuple[Any, str]:
        """The image's scorer input and its caption's text (read strictly as UTF-8)."""
        targets = targets if targets is not None else self.targets(item)
        try:
            found = read_text_file(targets.caption)
        except (OutputError, OSError) as exc:
            raise CaptionMissingError(str(item.path), write_failure(exc)) from exc
        if found is None:
            raise CaptionMissingError(str(item.path), f"no caption file {targets.caption}")
        text = found.text.strip()
        if not text:
            raise CaptionMissingError(str(item.path), f"caption file {targets.caption} is empty")
        image = load_image(item.path, max_pixels=self.options.max_pixels)
        return self.model.preprocess(image), text

    def write(self, item: ImageItem, targets: Targets, result: Any) -> dict[str, Any]:
        """Put the score into the sidecar (keeping its other keys) and the manifest."""
        image: ImageResult = result
        record = dict((image.extra or {}).get(SCORE_KEY, {}))
        if targets.json is not None:
            data: dict[str, Any] = {}
            existing = read_text_file(targets.json)
            if existing is not None and existing.text.strip():
                try:
                    data = json.loads(existing.text)
                except ValueError as exc:
                    raise OutputError(
                        str(targets.json), f"not JSON ({exc}); left as it is"
                    ) from exc
                if not isinstance(data, dict):
                    raise OutputError(str(targets.json), "not a JSON object; left as it is")
            data[SCORE_KEY] = record
            atomic_write_text(targets.json, sidecar_json(data), fsync=self.options.fsync)
        line = {"text": image.caption or "", **{k: record[k] for k in ("itm", "itc", "model")}}
        if self.manifest is not None:
            self.manifest.write({"file_name": self.manifest.file_name(item.path), **line})
        self.report.add(item.path, float(record["itm"]), float(record["itc"]), image.caption or "")
        return line
