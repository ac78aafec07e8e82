"""Checks of a dataset's images: what to remove or fix before training.

One pass reads every image once (decode threads ahead of the main thread, like the batch
engine) and records its facts; the checks are then decided over all of them:

- ``duplicates``: identical files (BLAKE2b of the bytes);
- ``near_duplicates``: resized, re-encoded or lightly edited copies: 64-bit perceptual hashes
  (``imagehash.phash``) within ``hash_distance`` bits, found by multi-index hashing
  (``tagger.dataset.neardup``) instead of comparing every pair;
- ``broken``: files that do not decode (truncated, corrupt, not an image, over the pixel limit);
- ``small``: short side under ``min_side``; ``aspect``: long side / short side over
  ``max_aspect``;
- ``text``: images whose text (found by RapidOCR's PP-OCR ONNX models, shipped inside
  ``rapidocr-onnxruntime``) covers more than ``text_area`` of the image: a model trained on
  them learns to draw text;
- ``clip_duplicates``: CLIP image embeddings at least ``clip_similarity`` alike;
- ``outliers``: images far from the dataset's CLIP centroid (cosine distance above mean +
  ``outlier_sigma`` standard deviations);
- ``mismatch``: captions that do not describe their image (image-text score below
  ``mismatch_score``; CLIP cosine, or another scorer registered in ``tagger.dataset.scoring``);
- ``captions``: images without a caption, empty captions, captions that are not UTF-8 or are
  links, captions without an image, images that share one caption file.

Checks whose library is missing are skipped with the reason (``pip install 'tagger[dataset]'``
for imagehash and RapidOCR; the ``caption`` extra for the CLIP checks).
"""

from __future__ import annotations

# Paths stay strings here (os.path): a dataset walk handles millions of them.
import hashlib
import importlib.util
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tagger.dataset.options import CheckOptions, DatasetOptions
from tagger.dataset.reader import Entry, iter_entries
from tagger.errors import ImageLoadError, MissingDependencyError, OptionsError, OutputError
from tagger.safeio import read_text_file

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

log = logging.getLogger("tagger")

IMAGE_CHECKS = ("duplicates", "near_duplicates", "broken", "small", "aspect", "text")
CLIP_CHECKS = ("clip_duplicates", "outliers", "mismatch")
ALL_CHECKS = (*IMAGE_CHECKS, *CLIP_CHECKS, "captions")
#: The side images are shrunk to (a copy) for the CLIP checks' preprocessing and for OCR.
WORK_SIDE = 1024


@dataclass
class Finding:
    """One problem: the check, the image (relative to the dataset root), why, a value to sort
    by, and the group it belongs to (duplicates)."""

    check: str
    path: str
    detail: str
    value: float | None = None
    group: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {
            "check": self.check,
            "path": self.path,
            "detail": self.detail,
            "value": self.value,
            "group": self.group,
        }


@dataclass
class Facts:
    """What the pass learned about one image."""

    entry: Entry
    size: int = 0
    digest: str = ""
    width: int = 0
    height: int = 0
    error: str = ""
    phash: int | None = None
    text_area: float | None = None
    text: str = ""
    caption: str | None = None


@dataclass
class CheckResult:
    """Every check's findings, the checks skipped (with why) and per-image scores."""

    root: str
    checks: list[str]
    images: int = 0
    findings: list[Finding] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    #: Per-check values of every image (for the report's histograms): check -> values.
    scores: dict[str, list[float]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def by_check(self) -> dict[str, list[Finding]]:
        """Findings grouped by check, in the order the checks ran."""
        grouped: dict[str, list[Finding]] = {name: [] for name in self.checks}
        for finding in self.findings:
            grouped.setdefault(finding.check, []).append(finding)
        return grouped

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        grouped = self.by_check()
        return {
            "root": self.root,
            "images": self.images,
            "checks": self.checks,
            "counts": {name: len(found) for name, found in grouped.items()},
            "skipped": dict(self.skipped),
            "findings": [f.to_dict() for f in self.findings],
            "scores": {k: list(v) for k, v in self.scores.items()},
            "options": self.options,
        }


def expand_checks(names: Iterable[str]) -> list[str]:
    """The checks named (``all`` for every one), in their canonical order; unknown names raise
    ``OptionsError``.

    >>> expand_checks(["small", "duplicates"])
    ['duplicates', 'small']
    """
    wanted = {name.strip().replace("-", "_") for name in names if name.strip()}
    if "all" in wanted:
        return list(ALL_CHECKS)
    unknown = sorted(wanted - set(ALL_CHECKS))
    if unknown:
        raise OptionsError(
            f"unknown check {', '.join(unknown)}; known: {', '.join(ALL_CHECKS)} (or all)"
        )
    return [name for name in ALL_CHECKS if name in wanted]


def available(name: str) -> str | None:
    """Why a check cannot run here (a missing library), or None."""
    if name == "near_duplicates" and importlib.util.find_spec("imagehash") is None:
        return "needs imagehash: pip install 'tagger[dataset]'"
    if name == "text" and importlib.util.find_spec("rapidocr_onnxruntime") is None:
        return "needs rapidocr-onnxruntime: pip install 'tagger[dataset]'"
    if name in CLIP_CHECKS:
        for module in ("torch", "open_clip"):
            if importlib.util.find_spec(module) is None:
                return f"needs {module} (CLIP): pip install 'tagger[caption]'"
    return None


# -- per image -------------------------------------------------------------------------------


def file_digest(path: str) -> tuple[int, str]:
    """Size and BLAKE2b-256 of a file (not following a link)."""
    from tagger.safeio import open_nofollow

    handle = open_nofollow(path)
    if handle is None:
        raise FileNotFoundError(2, "no such file", path)
    digest = hashlib.blake2b(digest_size=32)
    size = 0
    with handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def shrink(image: Image.Image, side: int) -> Image.Image:
    """A copy no larger than ``side`` on its long side (the image itself when smaller)."""
    if max(image.size) <= side:
        return image
    copy = image.copy()
    copy.thumbnail((side, side))
    return copy


def perceptual_hash(image: Image.Image) -> int:
    """The 64-bit pHash of an image (``imagehash.phash``, 8 x 8 DCT bits) as an integer."""
    import imagehash

    from tagger.dataset.neardup import hash_to_int

    return hash_to_int(imagehash.phash(image))


class TextDetector:
    """RapidOCR (PP-OCRv4 detection and recognition, ONNX, on the CPU) behind a lock."""

    def __init__(self, options: CheckOptions) -> None:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:
            raise MissingDependencyError(
                f"the text check needs rapidocr-onnxruntime ({exc}): pip install 'tagger[dataset]'"
            ) from None
        self.options = options
        self.engine = RapidOCR()
        self.lock = threading.Lock()

    def measure(self, image: Image.Image) -> tuple[float, str]:
        """(Fraction of the image covered by confidently recognised text boxes, that text)."""
        import numpy as np

        small = shrink(image, self.options.ocr_side)
        bgr = np.ascontiguousarray(np.asarray(small.convert("RGB"))[:, :, ::-1])
        with self.lock:
            found, _ = self.engine(bgr, use_cls=False)
        area = 0.0
        texts = []
        for box, text, score in found or []:
            if float(score) < self.options.text_score or not str(text).strip():
                continue
            area += polygon_area(box)
            texts.append(str(text))
        total = float(small.size[0] * small.size[1]) or 1.0
        return min(1.0, area / total), " ".join(texts)


def polygon_area(points: Sequence[Sequence[float]]) -> float:
    """The area of a polygon (the shoelace formula).

    >>> polygon_area([[0, 0], [4, 0], [4, 3], [0, 3]])
    12.0
    """
    total = 0.0
    for (x1, y1), (x2, y2) in zip(points, [*points[1:], points[0]], strict=True):
        total += x1 * y2 - x2 * y1
    return abs(total) / 2.0


def _caption_text(entry: Entry) -> str | None:
    """The caption's text, or None when it has none or it cannot be read."""
    if not entry.has_caption:
        return None
    try:
        text = read_text_file(entry.caption)
    except (OutputError, OSError):
        return None
    return text.text.strip() if text is not None else None


def inspect_image(
    entry: Entry, options: CheckOptions, want_hash: bool, keep_pixels: bool
) -> tuple[Facts, Image.Image | None]:
    """One image's facts (size, digest, dimensions, decode error, pHash) and, when
    ``keep_pixels``, a copy shrunk to ``WORK_SIDE`` for the later checks."""
    from tagger.image import load_image

    facts = Facts(entry)
    try:
        facts.size, facts.digest = file_digest(entry.image)
    except (OSError, OutputError) as exc:
        facts.error = f"cannot read: {exc}"
        return facts, None
    try:
        image = load_image(entry.image, max_pixels=options.max_pixels)
    except ImageLoadError as exc:
        facts.error = exc.reason
        return facts, None
    facts.width, facts.height = image.size
    if want_hash:
        facts.phash = perceptual_hash(image)
    return facts, shrink(image, WORK_SIDE) if keep_pixels else None


# -- the pass ----------------------------------------------------------------------------------


def run_checks(
    paths: Sequence[str | os.PathLike[str]],
    options: CheckOptions | None = None,
    dataset: DatasetOptions | None = None,
    *,
    entries: Callable[[], Iterable[Entry]] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    cancel: threading.Event | None = None,
    scorer: Any = None,
) -> CheckResult:
    """Run the checks of ``options`` over the dataset; see the module's docstring.

    ``progress(done, total)`` is called after each image; ``cancel`` stops the pass early
    (the findings so far are returned). ``scorer`` replaces the image-text scorer of the
    mismatch check (``tagger.dataset.scoring``).
    """
    options = options or CheckOptions()
    dataset = dataset or DatasetOptions()
    names = expand_checks(options.checks)
    root = os.fspath(paths[0]) if paths else ""
    result = CheckResult(root=root, checks=names, options=_dump(options))
    for name in names:
        reason = available(name)
        if reason is not None:
            result.skipped[name] = reason
    active = [name for name in names if name not in result.skipped]

    def walk() -> Iterable[Entry]:
        if entries is not None:
            return entries()
        return iter_entries(paths, extension=dataset.caption_extension, recursive=dataset.recursive)

    clip = _load_clip(result, active, options) if set(CLIP_CHECKS) & set(active) else None
    active = [name for name in active if name not in result.skipped]
    want_hash = "near_duplicates" in active
    want_text = "text" in active
    want_clip = clip is not None
    detector = TextDetector(options) if want_text else None
    facts: list[Facts] = []
    embeddings: list[np.ndarray] = []
    embedded: list[int] = []
    pending_clip: list[tuple[int, Image.Image]] = []
    captions_check = "captions" in active
    cancel = cancel or threading.Event()

    def flush_clip() -> None:
        if clip is None or not pending_clip:
            return
        vectors = clip.embed([image for _, image in pending_clip])
        embeddings.extend(vectors)
        embedded.extend(index for index, _ in pending_clip)
        pending_clip.clear()

    workers = options.workers or max(1, min(4, (os.cpu_count() or 2) // 2))
    images = (e for e in walk() if not e.is_orphan or captions_check)
    with ThreadPoolExecutor(workers, thread_name_prefix="tagger-check") as pool:
        window: deque[tuple[Entry, Future[Any] | None]] = deque()
        source = iter(images)
        exhausted = False
        while not cancel.is_set():
            while not exhausted and len(window) < workers * 4:
                try:
                    entry = next(source)
                except StopIteration:
                    exhausted = True
                    break
                future = None
                if not entry.is_orphan:
                    future = pool.submit(
                        inspect_image, entry, options, want_hash, want_text or want_clip
                    )
                window.append((entry, future))
            if not window:
                break
            entry, future = window.popleft()
            if future is None:  # an orphan caption: only the captions check sees it
                result.findings.append(
                    Finding("captions", entry.relative, "a caption file without an image")
                )
                continue
            fact, pixels = future.result()
            index = len(facts)
            facts.append(fact)
            if pixels is not None and detector is not None:
                fact.text_area, fact.text = detector.measure(pixels)
            if "mismatch" in active or captions_check:
                fact.caption = _caption_text(entry)
            if pixels is not None and clip is not None:
                pending_clip.append((index, pixels))
                if len(pending_clip) >= clip.batch_size:
                    flush_clip()
            if progress is not None:
                progress(len(facts), None)
        for _, future in window:
            if future is not None:
                future.cancel()
    flush_clip()
    result.images = len(facts)
    _decide(result, facts, active, options)
    if clip is not None and embeddings:
        from tagger.dataset.scoring import clip_findings

        clip_findings(result, facts, embedded, embeddings, active, options, clip, scorer=scorer)
    order = {name: i for i, name in enumerate(names)}
    result.findings.sort(key=lambda f: (order.get(f.check, 99), f.group or 0, f.path))
    return result


def _load_clip(result: CheckResult, active: list[str], options: CheckOptions) -> Any:
    """The CLIP embedder, loaded now (so a missing model is known before the pass); when it
    cannot load, the CLIP checks are skipped with the reason and the others still run."""
    from tagger.dataset.scoring import ClipEmbedder
    from tagger.errors import ModelFilesMissingError, ModelLoadError

    try:
        clip = ClipEmbedder(options)
        clip.filter.load()
    except (ModelFilesMissingError, ModelLoadError, MissingDependencyError) as exc:
        log.warning("the CLIP checks are skipped: %s", exc)
        for name in CLIP_CHECKS:
            if name in active:
                result.skipped[name] = str(exc)
        return None
    return clip


def _dump(options: CheckOptions) -> dict[str, Any]:
    from tagger.options import dump

    return dump(options)


def _decide(
    result: CheckResult, facts: list[Facts], active: list[str], options: CheckOptions
) -> None:
    """The checks that need only the facts."""
    add = result.findings.append
    if "broken" in active:
        for fact in facts:
            if fact.error:
                add(Finding("broken", fact.entry.relative, fact.error))
    good = [f for f in facts if not f.error]
    if "duplicates" in active:
        by_digest: dict[tuple[int, str], list[Facts]] = {}
        for fact in facts:
            if fact.digest:
                by_digest.setdefault((fact.size, fact.digest), []).append(fact)
        group = 0
        for members in by_digest.values():
            if len(members) > 1:
                group += 1
                first = members[0].entry.relative
                for i, fact in enumerate(members):
                    detail = "the first copy" if i == 0 else f"identical to {first}"
                    add(Finding("duplicates", fact.entry.relative, detail, fact.size, group))
    if "near_duplicates" in active:
        _near_duplicates(result, good, options)
    if "small" in active:
        for fact in good:
            short = min(fact.width, fact.height)
            if short < options.min_side:
                detail = f"{fact.width}x{fact.height}: short side {short} < {options.min_side}"
                add(Finding("small", fact.entry.relative, detail, float(short)))
    if "aspect" in active:
        for fact in good:
            ratio = max(fact.width, fact.height) / max(1, min(fact.width, fact.height))
            result.scores.setdefault("aspect", []).append(round(ratio, 4))
            if ratio > options.max_aspect:
                detail = f"{fact.width}x{fact.height}: aspect {ratio:.2f} > {options.max_aspect:g}"
                add(Finding("aspect", fact.entry.relative, detail, round(ratio, 4)))
    if "text" in active:
        for fact in good:
            if fact.text_area is None:
                continue
            result.scores.setdefault("text", []).append(round(fact.text_area, 5))
            chars = len("".join(fact.text.split()))
            if fact.text_area > options.text_area and chars >= options.text_chars:
                shown = fact.text if len(fact.text) <= 80 else fact.text[:77] + "..."
                detail = f"text covers {fact.text_area:.1%}: {shown}"
                add(Finding("text", fact.entry.relative, detail, round(fact.text_area, 5)))
    if "captions" in active:
        for fact in facts:
            entry = fact.entry
            if entry.shared:
                add(Finding("captions", entry.relative, "shares its caption with another image"))
            if not entry.has_caption:
                add(Finding("captions", entry.relative, "no caption file"))
            elif fact.caption is None:
                add(Finding("captions", entry.relative, _unreadable_reason(entry)))
            elif not fact.caption:
                add(Finding("captions", entry.relative, "the caption is empty"))


def _unreadable_reason(entry: Entry) -> str:
    """Why a caption cannot be read."""
    try:
        read_text_file(entry.caption)
    except (OutputError, OSError) as exc:
        return f"the caption cannot be read: {exc}"
    return "the caption cannot be read"


def _near_duplicates(result: CheckResult, good: list[Facts], options: CheckOptions) -> None:
    """Group images whose pHashes are within ``hash_distance`` (identical files count once)."""
    import numpy as np

    from tagger.dataset.neardup import groups, near_pairs

    hashed = [f for f in good if f.phash is not None]
    seen: dict[str, int] = {}
    unique: list[Facts] = []
    for fact in hashed:
        if fact.digest not in seen:
            seen[fact.digest] = len(unique)
            unique.append(fact)
    values = np.array([f.phash for f in unique], dtype=np.uint64)
    pairs = near_pairs(values, options.hash_distance)
    distance = {(int(i), int(j)): int(d) for i, j, d in pairs.tolist()}
    for number, members in enumerate(groups(len(unique), pairs), start=1):
        first = unique[members[0]].entry.relative
        for k, index in enumerate(members):
            fact = unique[index]
            if k == 0:
                detail, value = f"{len(members)} similar images", 0.0
            else:
                bits = distance.get((members[0], index))
                value = float(bits) if bits is not None else None
                near = f"{bits} bits from" if bits is not None else "similar to (via others)"
                detail = f"{near} {first}"
            result.findings.append(
                Finding("near_duplicates", fact.entry.relative, detail, value, number)
            )
