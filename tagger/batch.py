"""The batch engine: find images, tag them in full batches, write caption files.

It streams. Paths are found lazily, images are decoded and preprocessed by a small thread pool a
bounded number of images ahead of the model, the model runs full batches, and each image's files
are written as soon as its batch is done. Memory therefore does not grow with the size of the
folder. One bad image never stops the run: it is reported with its reason and counted.

The engine knows nothing about the command line, the webui or HTTP: they pass a progress
callback and a cancel event.
"""

from __future__ import annotations

import glob
import logging
import os
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tagger.errors import (
    ImageFailedError,
    ImageLoadError,
    OptionsError,
    OutputError,
    RunAbortedError,
)
from tagger.image import is_image_path, load_image
from tagger.options import BatchOptions, OutputOptions, TagOptions
from tagger.planning import Plan, plan_outputs
from tagger.safeio import (
    NEW_FILE_STYLE,
    atomic_write_text,
    folder_lock,
    link_error,
    read_bytes_nofollow,
    read_text_file,
    remove_stale_temps,
    sniff_style,
    write_text_file,
)
from tagger.tags import TagResult, caption_tags, top_rating
from tagger.writers import Manifest, merge_caption, rounded, sidecar_json

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

log = logging.getLogger("tagger")

GLOB_CHARS = frozenset("*?[")
MAX_FAILURES_KEPT = 10_000
DECODE_NICENESS = 5
#: Seconds the engine waits for a decode thread before decoding in the main thread.
DECODE_STALL_SECONDS = 2.0
#: Logged when --fast-decode cannot apply: captioners and the CLIP filter see the full image.
FAST_DECODE_IGNORED = (
    "--fast-decode applies to tagger-only runs; a captioner or CLIP filter needs the full "
    "image, so every image is decoded at full size"
)


class BatchModel(Protocol):
    """What the engine needs from a model (``WD14Tagger`` is one)."""

    @property
    def fixed_batch(self) -> int | None: ...

    @property
    def active_providers(self) -> list[str]: ...

    def load(self) -> Any: ...

    def preprocess(self, image: Image.Image) -> np.ndarray: ...

    def forward(self, batch: np.ndarray) -> np.ndarray: ...

    def postprocess(self, scores: np.ndarray, options: TagOptions) -> TagResult | ImageResult: ...


@dataclass
class ImageResult:
    """What a model gives for one image: tags, a caption, or both (plus CLIP tag scores).

    A model's ``postprocess`` may return this or a bare ``TagResult`` (tags only). A model that
    returns it may also define ``collate(items)`` (how preprocessed images form a batch; default
    ``numpy.stack``) and ``outputs`` (the subset of ``("tags", "caption")`` it produces).
    ``usage`` holds what producing the caption cost (tokens, requests; ``tagger.vlm.usage``):
    it goes into the manifest line and is summed in the summary.

    Optional model hooks the engine uses when present: ``item_context(image_path,
    caption_path)`` (a dict handed to ``preprocess(image, context)``: the file's prompt fields),
    ``preferred_batch`` (the batch size when it is left automatic), ``pipelined`` (how many
    batches may run in the background while the engine writes, in input order, the results of
    the oldest: a VLM endpoint's, whose forward mostly waits for replies); ``postprocess`` may raise
    ``ImageFailedError`` (that image fails with its reason) and ``forward`` ``RunAbortedError``
    (the run stops).
    """

    tags: TagResult | None = None
    caption: str | None = None
    clip: dict[str, float] | None = None
    usage: dict[str, float] | None = None
    #: More of the sidecar JSON and the manifest line, by key (an ensemble's per-model scores:
    #: ``models``; SBG's keywords and candidates: ``sbg``; reranked caption candidates).
    extra: dict[str, Any] | None = None
    #: Keyphrases (KeyBERT) with their scores, in the extractor's order; written as tags after
    #: the model's tags (``tagger.keywords``).
    keywords: dict[str, float] | None = None


@dataclass(frozen=True)
class DeferredModel:
    """A model the run builds only once its outputs are planned (``BatchRun.prepare``), so that a
    run that cannot write, or has nothing to do, never loads one. ``outputs`` is what the built
    model will produce (``("tags",)``, ``("caption",)`` or both)."""

    build: Callable[[], BatchModel]
    outputs: tuple[str, ...] = ("tags",)


def as_image_result(result: TagResult | ImageResult) -> ImageResult:
    """Wrap a bare TagResult."""
    return result if isinstance(result, ImageResult) else ImageResult(tags=result)


# -- finding images ------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageItem:
    """One image to tag: its path, the folder its outputs mirror from, and a reason not to."""

    path: Path
    root: Path
    conflict: str | None = None


def _has_glob(text: str) -> bool:
    """True when an input contains glob characters."""
    return any(char in GLOB_CHARS for char in text)


def _glob_root(pattern: str) -> Path:
    """The folder before the first glob component of a pattern (outputs mirror from it)."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts:
        if _has_glob(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path()


def check_inputs(inputs: Sequence[str | os.PathLike[str]]) -> None:
    """Refuse inputs that are neither existing paths nor glob patterns (a usage error)."""
    if not inputs:
        raise OptionsError("no input given: pass image files, folders or glob patterns")
    for item in inputs:
        text = os.fspath(item)
        if not _has_glob(text) and not os.path.lexists(text):
            raise OptionsError(f"input {text!r} does not exist (pass a file, folder or glob)")


def _walk(
    folder: Path, root: Path, recursive: bool, seen: set[tuple[int, int]]
) -> Iterator[ImageItem]:
    """Yield the images of one folder in name order, then (if recursive) its sub-folders.

    Hidden entries (names starting with ".") are skipped. Folders reached twice (symlink loops)
    are visited once. Images that would write one output file (``a.jpg`` and ``a.png``) are
    found by the run's output plan (``tagger.planning``), whatever input they come from.
    """
    try:
        info = folder.stat()
        if (info.st_dev, info.st_ino) in seen:
            return
        seen.add((info.st_dev, info.st_ino))
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda e: e.name)
    except OSError as exc:
        log.warning("cannot list %s: %s", folder, exc.strerror or exc)
        return
    subfolders: list[Path] = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            subfolders.append(Path(entry.path))
            continue
        if not is_image_path(entry.name):
            continue
        yield ImageItem(Path(entry.path), root)
    if recursive:
        for sub in subfolders:
            yield from _walk(sub, root, recursive, seen)


def find_images(
    inputs: Sequence[str | os.PathLike[str]], recursive: bool = False
) -> Iterator[ImageItem]:
    """Yield every image named by ``inputs`` (files, folders, glob patterns), in input order.

    A folder's outputs mirror from the folder itself; a file's from its own folder; a glob's from
    the part of the pattern before the first wildcard. ``**`` in a glob matches sub-folders when
    ``recursive`` is set. An image named by several inputs is yielded each time; a run's output
    plan (``BatchRun.prepare``) keeps the first.
    """
    seen_dirs: set[tuple[int, int]] = set()
    for item in inputs:
        text = os.fspath(item)
        if _has_glob(text):
            root = _glob_root(text)
            for match in sorted(glob.iglob(text, recursive=recursive)):
                path = Path(match)
                if path.is_dir():
                    yield from _walk(path, root, recursive, seen_dirs)
                elif is_image_path(path.name) and not path.name.startswith("."):
                    yield ImageItem(path, root)
        else:
            path = Path(text)
            if path.is_dir():
                yield from _walk(path, path, recursive, seen_dirs)
            else:
                yield ImageItem(path, path.parent)


def count_images(inputs: Sequence[str | os.PathLike[str]], recursive: bool = False) -> int:
    """Count the distinct images ``inputs`` name (an image named twice counts once)."""
    return plan_outputs(lambda: find_images(inputs, recursive), lambda item: ()).total


def writable_reason(folder: Path) -> str | None:
    """Why files cannot be written in ``folder`` (created as needed), or None when they can.

    The nearest existing folder on the way must be a folder this process may write in (a
    read-only disk counts as not writable).

    >>> writable_reason(Path("/proc/no-such-folder")) is not None
    True
    """
    current = folder
    while not os.path.lexists(current):
        if current.parent == current:
            break
        current = current.parent
    if not current.is_dir():
        return f"{current} is a file, not a folder"
    if not os.access(current, os.W_OK | os.X_OK):
        return f"cannot write in {current} (read-only or no permission)"
    return None


# -- where outputs go ------------------------------------------------------------------------


def normalize_extension(extension: str) -> str:
    """Return a caption extension with its leading dot.

    >>> normalize_extension("caption"), normalize_extension(".txt")
    ('.caption', '.txt')
    """
    text = extension.strip()
    if not text or text in {".", ".."} or "/" in text or "\\" in text:
        raise OptionsError(f"caption extension {extension!r} is not a file extension (e.g. .txt)")
    return text if text.startswith(".") else f".{text}"


def output_base(image: Path, root: Path, output_dir: Path | None) -> Path:
    """The path of an image's outputs without extension: beside it, or mirrored under output_dir.

    >>> output_base(Path("in/a/b.png"), Path("in"), Path("out")).as_posix()
    'out/a/b'
    >>> output_base(Path("in/a/b.png"), Path("in"), None).as_posix()
    'in/a/b'
    """
    if output_dir is None:
        return image.with_suffix("")
    try:
        relative = image.relative_to(root)
    except ValueError:
        relative = Path(image.name)
    return output_dir / relative.with_suffix("")


@dataclass(frozen=True)
class Targets:
    """The files one image produces."""

    caption: Path
    json: Path | None
    caption_file: Path | None = None  # the caption when tags and caption go to separate files


# -- results ----------------------------------------------------------------------------------


@dataclass
class Progress:
    """A snapshot passed to the progress callback after each image."""

    done: int
    total: int | None
    written: int
    skipped: int
    failed: int
    current: Path | None


@dataclass
class Summary:
    """What a run did."""

    found: int = 0
    written: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    failed_count: int = 0
    tagged: int = 0
    elapsed: float = 0.0
    cancelled: bool = False
    tag_counts: Counter[str] = field(default_factory=Counter)
    batch_size: int = 1
    providers: list[str] = field(default_factory=list)
    #: Tokens, requests and cost summed over the run (models that report usage: VLMs).
    usage: dict[str, float] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        """Images run through the model per second of wall time."""
        return self.tagged / self.elapsed if self.elapsed > 0 else 0.0

    def most_common(self, count: int = 20) -> list[tuple[str, int]]:
        """The most frequent tags written in this run."""
        return self.tag_counts.most_common(count)

    def add_failure(self, path: Path | str, reason: str) -> None:
        """Record a failed image (the first MAX_FAILURES_KEPT keep their reasons)."""
        self.failed_count += 1
        if len(self.failed) < MAX_FAILURES_KEPT:
            self.failed.append((str(path), reason))


ProgressCallback = Callable[[Progress], None]
FailureCallback = Callable[[Path, str], None]
#: Called with each image and its output files before the image is read; a returned reason
#: fails the image without reading or writing anything (the HTTP API's folder allow-list).
CheckCallback = Callable[[ImageItem, Targets], "str | None"]


# -- the engine -------------------------------------------------------------------------------


def default_batch_size(model: BatchModel) -> int:
    """Batch size for the device: the model's fixed size, else the model's ``preferred_batch``
    when it has one, else 1 on the CPU and 32 on a GPU."""
    if model.fixed_batch:
        return model.fixed_batch
    preferred = getattr(model, "preferred_batch", None)
    if preferred:
        return int(preferred)
    return 1 if on_cpu(model) else 32


def default_workers() -> int:
    """Decode threads: enough to keep ahead of the model without taking its cores."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def _lower_thread_priority(idle: bool = False) -> None:
    """Run this decode thread at a lower CPU priority than the model (Linux only).

    ``idle``: the ``SCHED_IDLE`` policy, for a model on the CPU: decoding then runs only on
    cycles nothing else wants (between inference runs, while onnxruntime's threads wait), never
    by preempting an inference thread. Otherwise a per-thread nice of ``DECODE_NICENESS``: a
    model on a GPU waits for its images, so decoding must keep a fair share. Either way, when
    the model waits for an image the decode thread gets the CPU.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        if idle:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # 0: this thread
        else:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DECODE_NICENESS)
    except (OSError, AttributeError):  # not permitted: decode at normal priority
        pass


def _decode(
    item: ImageItem,
    model: BatchModel,
    max_pixels: int,
    draft: int = 0,
    caption_path: Path | None = None,
) -> np.ndarray:
    """Load and preprocess one image (runs in a worker thread, or inline after a stall).

    A model with ``preprocess_item(item, load)`` gets the item and a function that decodes its
    image, so it can read files beside it and decode the image only when it needs it. A model
    with ``item_context`` gets the image's file context (the prompt fields of a VLM).
    """
    read = getattr(model, "preprocess_item", None)
    if read is not None:
        return read(item, lambda: load_image(item.path, max_pixels=max_pixels, draft=draft))
    image = load_image(item.path, max_pixels=max_pixels, draft=draft)
    context = getattr(model, "item_context", None)
    if context is not None:
        return model.preprocess(image, context(item.path, caption_path))  # type: ignore[call-arg]
    return model.preprocess(image)


def draft_side(fast_decode: bool, size: int) -> int:
    """The JPEG draft side ``load_image`` gets: with ``fast_decode``, ``size`` (the tagger's input
    side) when the images go to a tagger alone; 0 (full decoding) otherwise. ``size`` 0 means
    a captioner or the CLIP filter sees the images too: then --fast-decode cannot apply, and
    that is logged.
    """
    if not fast_decode:
        return 0
    if not size:
        log.warning("%s", FAST_DECODE_IGNORED)
    return size


def on_cpu(model: BatchModel) -> bool:
    """True when every part of the model runs on the CPU."""
    return all(p in {"CPUExecutionProvider", "torch-cpu"} for p in model.active_providers)


def write_failure(exc: BaseException) -> str:
    """A failed write's reason for the summary."""
    if isinstance(exc, OutputError):
        return str(exc)
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"cannot write output: {exc.strerror or exc}{where}"
    return f"{type(exc).__name__}: {exc}"


class BatchRun:
    """One run over a set of inputs. Use ``run()``; ``cancel`` stops after the current batch."""

    def __init__(
        self,
        inputs: Sequence[str | os.PathLike[str]],
        model: BatchModel,
        tag_options: TagOptions | None = None,
        batch_options: BatchOptions | None = None,
        *,
        progress: ProgressCallback | None = None,
        on_failure: FailureCallback | None = None,
        cancel: threading.Event | None = None,
        total: int | None = None,
        check: CheckCallback | None = None,
        output_options: OutputOptions | None = None,
    ) -> None:
        self.inputs = list(inputs)
        self.model = model
        self.tag_options = tag_options or TagOptions()
        self.options = batch_options or BatchOptions()
        self.progress = progress
        self.on_failure = on_failure
        self.cancel = cancel or threading.Event()
        self.total = total
        self.check = check
        self.extension = normalize_extension(self.options.caption_extension)
        if self.options.write_json and self.extension == ".json":
            raise OptionsError("caption extension .json would collide with --json sidecars")
        self.output_dir = Path(self.options.output_dir) if self.options.output_dir else None
        self.output = output_options or OutputOptions()
        self.caption_file_extension: str | None = None
        if self.output.template == "separate" and {"tags", "caption"} <= set(
            getattr(model, "outputs", ("tags",))
        ):
            self.caption_file_extension = normalize_extension(self.output.caption_file_extension)
            if self.caption_file_extension in (self.extension, ".json"):
                raise OptionsError(
                    f"caption file extension {self.caption_file_extension} collides with "
                    f"another output; pick another (e.g. .caption)"
                )
        self.summary = Summary()
        self.manifest: Manifest | None = None
        self.plan: Plan | None = None
        self.unwritable: dict[Path, str] = {}  # output folders that cannot be written
        self.draft = 0  # JPEG draft side (fast_decode), set when the run starts
        self._inline = False  # decode in the main thread (the decode threads stalled)
        self._forwards: ThreadPoolExecutor | None = None  # a pipelined model's forward threads
        self._depth = 0
        self._inflight: deque[tuple[list[Any], Future[Any]]] = deque()

    # -- planning ----------------------------------------------------------------------------
    def targets(self, item: ImageItem) -> Targets:
        """The files this image would produce."""
        base = output_base(item.path, item.root, self.output_dir)
        caption = base.with_name(base.name + self.extension)
        json_path = base.with_name(base.name + ".json") if self.options.write_json else None
        extra = None
        if self.caption_file_extension is not None:
            extra = base.with_name(base.name + self.caption_file_extension)
        return Targets(caption, json_path, extra)

    def outputs(self, item: ImageItem) -> list[tuple[str, Path]]:
        """The files this image would write, each with what it is (for messages)."""
        targets = self.targets(item)
        named = [("caption", targets.caption)]
        if targets.json is not None:
            named.append(("JSON sidecar", targets.json))
        if targets.caption_file is not None:
            named.append(("caption file", targets.caption_file))
        return named

    def items(self) -> Iterator[ImageItem]:
        """Every image the inputs name, in input order (repeats included; see ``prepare``)."""
        return find_images(self.inputs, self.options.recursive)

    def check_output_places(self) -> None:
        """Refuse, before any model work, a run whose ``output_dir`` or manifest cannot be
        written (``OptionsError``: exit status 2 on the command line)."""
        if self.output_dir is not None:
            if self.output_dir.exists() and not self.output_dir.is_dir():
                raise OptionsError(f"output folder {self.output_dir} is a file, not a folder")
            reason = writable_reason(self.output_dir)
            if reason is not None:
                raise OptionsError(f"cannot write the outputs into {self.output_dir}: {reason}")
        if self.options.jsonl:
            manifest = Path(self.options.jsonl)
            if manifest.is_symlink():
                raise OptionsError(
                    f"manifest {manifest} is a symbolic link; tagger never writes through a link"
                )
            if manifest.is_dir():
                raise OptionsError(f"manifest {manifest} is a folder; name a file (.jsonl)")
            reason = writable_reason(manifest.parent)
            if reason is None and manifest.exists() and not os.access(manifest, os.W_OK):
                reason = f"{manifest} is read-only"
            if reason is not None:
                raise OptionsError(f"cannot write the manifest {manifest}: {reason}")

    def prepare(self) -> Plan:
        """Check where the run writes and plan its outputs, before any model work.

        Raises ``OptionsError`` when the output folder or the manifest cannot be written, or
        when no image that needs writing could be written. Sets ``total`` (the distinct
        images) when it was not given. Called by ``run``; callers may call it first to learn
        the total.
        """
        if self.plan is not None:
            return self.plan
        self.check_output_places()
        if self.options.jsonl:
            self.manifest = self._open_manifest()  # reads what is done; writes nothing yet
        folders: set[Path] = set()

        def outputs(item: ImageItem) -> list[tuple[str, Path]]:
            named = self.outputs(item)
            folders.update(path.parent for _, path in named)
            return named

        reserved = {Path(self.options.jsonl): "the --jsonl manifest"} if self.options.jsonl else {}
        plan = self._plan_outputs(outputs, reserved)
        self.unwritable = {
            folder: reason for folder in folders if (reason := writable_reason(folder)) is not None
        }
        stale = sum(remove_stale_temps(folder) for folder in folders if folder.is_dir())
        if stale:
            log.info("removed %d temporary files left by killed runs", stale)
        if self.unwritable and len(self.unwritable) == len(folders):
            self._refuse_if_nothing_writable(plan)
        self.plan = plan
        if self.total is None:
            self.total = plan.total
        return plan

    def _plan_outputs(
        self,
        outputs: Callable[[ImageItem], list[tuple[str, Path]]],
        reserved: dict[Path, str],
    ) -> Plan:
        """``tagger.planning.plan_outputs`` over this run's images (the Ray engine names its
        object-store images by URI)."""
        return plan_outputs(self.items, outputs, reserved=reserved)

    def _open_manifest(self) -> Manifest:
        """The run's manifest (kept lines and done names when skipping)."""
        return Manifest(
            self.options.jsonl,  # type: ignore[arg-type]
            resume=self.options.on_existing == "skip",
            fsync=self.options.fsync,
        )

    def _refuse_if_nothing_writable(self, plan: Plan) -> None:
        """Every output folder is unwritable: stop unless no image needs writing."""
        apply = plan.walker()
        for listed in self.items():
            item = apply(listed)
            if item is None or item.conflict is not None:
                continue
            if not self.is_done(item, self.targets(item)):
                folders = sorted(self.unwritable, key=str)
                more = f" (and {len(folders) - 1} other folders)" if len(folders) > 1 else ""
                raise OptionsError(
                    f"cannot write any output: {self.unwritable[folders[0]]}{more}; write them "
                    f"elsewhere with --output-dir"
                )

    def is_done(self, item: ImageItem, targets: Targets) -> bool:
        """True when ``skip`` applies and every requested output is already there."""
        if self.options.on_existing != "skip" or not targets.caption.exists():
            return False
        if targets.json is not None and not targets.json.exists():
            return False
        if targets.caption_file is not None and not targets.caption_file.exists():
            return False
        return not (
            self.manifest is not None
            and self.manifest.file_name(item.path) not in self.manifest.done
        )

    def precheck(self, targets: Targets) -> str | None:
        """Why this image's outputs cannot be written, found before it is decoded: an output
        folder that is not writable, an existing output that is a link, an existing caption
        that must be read (to merge, or to report what ``skip`` kept) but is not UTF-8."""
        paths = [p for p in (targets.caption, targets.json, targets.caption_file) if p]
        for path in paths:
            reason = self.unwritable.get(path.parent)
            if reason is not None:
                return reason
            if path.is_symlink():
                return str(link_error(path))
        if self.options.on_existing != "overwrite":
            for path in (targets.caption, targets.caption_file):
                if path is None:
                    continue
                try:
                    read_text_file(path)
                except (OutputError, OSError) as exc:
                    return write_failure(exc)
        return None

    # -- writing -------------------------------------------------------------------------------
    def write(
        self, item: ImageItem, targets: Targets, result: TagResult | ImageResult
    ) -> dict[str, Any]:
        """Write one image's outputs: JSON sidecar, caption file(s), manifest line, in order.

        Returns the image's record (the manifest line without ``file_name``). Its ``text`` is
        the first text file's content after this write (an existing file kept by ``skip``
        included), so the manifest describes the dataset on disk. Raises ``OutputError`` (an
        output is a link, an existing caption is not UTF-8) or ``OSError``; nothing is
        half-written either way.
        """
        image = as_image_result(result)
        self.add_usage(image.usage)  # spent, whether or not the files can be written
        policy = self.options.on_existing
        tags = caption_tags(image.tags, self.tag_options) if image.tags is not None else []
        if image.keywords is not None:
            from tagger.keywords.output import with_keywords

            names = []
            if image.tags is not None:  # every tag name the caption may hold
                names = [*image.tags.character, *image.tags.general]
                names += [n for c, s in image.tags.other.items() if c != "quality" for n in s]
            tags = with_keywords(
                tags, image.keywords, self.tag_options, alone=image.tags is None, names=names
            )
        files = self.files(targets, image, tags)
        if policy != "overwrite":  # every existing file can be read before anything changes
            for path, _ in files:
                read_text_file(path)
        if targets.json is not None and not (policy == "skip" and targets.json.exists()):
            atomic_write_text(
                targets.json, sidecar_json(self.json_record(image)), fsync=self.options.fsync
            )
        texts = [self._write_locked(path, items) for path, items in files]
        record: dict[str, Any] = {"text": texts[0] if texts else ""}
        if image.tags is not None:
            record["rating"] = top_rating(image.tags.rating)
            record["character"] = list(image.tags.character)
            record["general"] = list(image.tags.general)
            for category, scores in image.tags.other.items():
                record[category] = top_rating(scores) if category == "quality" else list(scores)
        if image.caption is not None:
            record["caption"] = image.caption
        if image.keywords is not None:
            record["keywords"] = list(image.keywords)
        if image.usage:
            record["usage"] = dict(image.usage)
        record.update(image.extra or {})
        if self.manifest is not None:
            self.manifest.write({"file_name": self.manifest.file_name(item.path), **record})
        if image.tags is not None:
            self.summary.tag_counts.update(image.tags.character.keys())
            self.summary.tag_counts.update(image.tags.general.keys())
            for category, scores in image.tags.other.items():
                if category != "quality":
                    self.summary.tag_counts.update(scores.keys())
        if image.keywords is not None:
            self.summary.tag_counts.update(image.keywords.keys())
        return record

    def add_usage(self, usage: dict[str, float] | None) -> None:
        """Add one image's usage (tokens, requests, cost) to the summary's totals."""
        for key, value in (usage or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.summary.usage[key] = self.summary.usage.get(key, 0) + value

    def json_record(self, image: ImageResult) -> dict[str, Any]:
        """The sidecar: kept tag scores by category, the caption, and CLIP scores if any."""
        record: dict[str, Any] = {}
        if image.tags is not None:
            record["rating"] = rounded(image.tags.rating)
            record["character"] = rounded(image.tags.character)
            record["general"] = rounded(image.tags.general)
            for category, scores in image.tags.other.items():  # copyright, artist, ...
                record[category] = rounded(scores)
        if image.caption is not None:
            record["caption"] = image.caption
        if image.keywords is not None:
            record["keywords"] = rounded(image.keywords)
        if image.clip is not None:
            record["clip"] = rounded(image.clip)
        if image.extra:
            record.update(image.extra)
        return record

    def files(
        self, targets: Targets, image: ImageResult, tags: list[str]
    ) -> list[tuple[Path, list[str]]]:
        """Each text file and the items it holds, by the output template."""
        caption = [image.caption] if image.caption else []
        if image.tags is None and image.keywords is None:
            return [(targets.caption, caption)]
        if image.caption is None:
            return [(targets.caption, tags)]
        if targets.caption_file is not None:
            return [(targets.caption, tags), (targets.caption_file, caption)]
        if self.output.template == "tags_then_caption":
            return [(targets.caption, [*tags, *caption])]
        return [(targets.caption, [*caption, *tags])]

    def _write_locked(self, path: Path, items: list[str]) -> str:
        """``_write_items`` holding the folder's lock (``tagger.safeio.folder_lock``), so an edit
        of the dataset workbench and this run never lose each other's write."""
        with folder_lock(path.parent):
            return self._write_items(path, items)

    def _write_items(self, path: Path, items: list[str]) -> str:
        """Write one text file by the existing-file policy; returns the file's text after it.

        An existing file keeps its byte order mark and line endings. ``skip`` and the merges
        read it strictly as UTF-8 (``TextEncodingError`` otherwise: the file is left as it is);
        ``overwrite`` replaces whatever it holds.
        """
        policy = self.options.on_existing
        separator = self.tag_options.separator
        text = separator.join(items)
        style = NEW_FILE_STYLE
        if policy == "overwrite":
            data = read_bytes_nofollow(path)
            if data is not None:
                style = sniff_style(data)
        else:
            existing = read_text_file(path)
            if existing is not None:
                if policy == "skip":  # kept as it is; report what the file holds
                    return existing.text.strip()
                text = merge_caption(existing.text, items, policy, separator)
                style = existing.style
        write_text_file(path, text, style, fsync=self.options.fsync)
        return text

    # -- the loop --------------------------------------------------------------------------------
    def _report(self, current: Path | None) -> None:
        """Send a progress snapshot to the callback."""
        if self.progress is None:
            return
        s = self.summary
        done = s.written + s.skipped + s.failed_count
        self.progress(Progress(done, self.total, s.written, s.skipped, s.failed_count, current))

    def _fail(self, path: Path, reason: str) -> None:
        """Record and report a failed image."""
        self.summary.add_failure(path, reason)
        log.debug("failed %s: %s", path, reason)
        if self.on_failure is not None:
            self.on_failure(path, reason)
        self._report(path)

    def _pending(
        self, pool: ThreadPoolExecutor
    ) -> Iterator[tuple[ImageItem, Targets, Future[Any] | None]]:
        """Yield (item, targets, future) in input order; future is None for images not to tag."""
        apply = self.prepare().walker()
        for listed in self.items():
            item = apply(listed)
            if item is None:  # named again by another input: tagged once
                continue
            self.summary.found += 1
            targets = self.targets(item)
            if item.conflict is not None:
                yield item, targets, None
                continue
            refused = self.check(item, targets) if self.check is not None else None
            if refused is None and not self.is_done(item, targets):
                refused = self.precheck(targets)
                if refused is None:
                    yield item, targets, pool.submit(self._decode_item, item, targets)
                    continue
            if refused is not None:
                yield replace(item, conflict=refused), targets, None
                continue
            yield item, targets, None

    def _decode_item(self, item: ImageItem, targets: Targets | None = None) -> np.ndarray:
        """Load and preprocess one image with this run's options (any thread)."""
        caption = None
        if targets is not None:
            caption = targets.caption_file or targets.caption
        return _decode(item, self.model, self.options.max_pixels, self.draft, caption)

    def _decoded(self, item: ImageItem, future: Future[Any]) -> Any:
        """The decode thread's result; after ``DECODE_STALL_SECONDS`` of waiting for an image
        the thread has not finished (other programs leave the idle-priority decode threads no
        CPU), this and every later unfinished image is decoded here instead."""
        if not self._inline:
            wait([future], timeout=DECODE_STALL_SECONDS)
            if not future.done():
                log.info(
                    "a decode thread did not finish an image within %g s (other programs may be "
                    "using every core): decoding in the main thread from now on",
                    DECODE_STALL_SECONDS,
                )
                self._inline = True
        if self._inline and not future.done():
            future.cancel()  # when already running, its result is simply not used
            return self._decode_item(item, self.targets(item))
        return future.result()

    def run(self) -> Summary:
        """Tag every input image and return the summary."""
        start = time.perf_counter()
        try:
            self.prepare()
            if isinstance(self.model, DeferredModel):
                self.model = self.model.build()
            self.model.load()
        except BaseException:
            self._close_manifest()
            raise
        batch_size = self.options.batch_size or default_batch_size(self.model)
        fixed = self.model.fixed_batch
        if fixed and batch_size % fixed:
            log.warning("the model runs batches of %d; using batch size %d", fixed, fixed)
            batch_size = fixed
        self.summary.batch_size = batch_size
        self.summary.providers = list(self.model.active_providers)
        workers = self.options.workers or default_workers()
        ahead = batch_size * 2 + workers
        cpu = on_cpu(self.model)
        # only a tagger alone has an input side (an Interrogator's parts need the full image)
        self.draft = draft_side(self.options.fast_decode, getattr(self.model, "input_size", 0))
        batch: list[tuple[ImageItem, Targets, np.ndarray]] = []
        depth = int(getattr(self.model, "pipelined", 0) or 0)
        if depth > 0:  # batches in flight while the engine writes
            self._forwards = ThreadPoolExecutor(depth, thread_name_prefix="tagger-forward")
            self._depth = depth
        try:
            with ThreadPoolExecutor(
                workers,
                thread_name_prefix="tagger-decode",
                initializer=_lower_thread_priority,
                initargs=(cpu,),
            ) as pool:
                pending = self._pending(pool)
                window: deque[tuple[ImageItem, Targets, Future[Any] | None]] = deque()
                exhausted = False
                while not self.cancel.is_set():
                    while not exhausted and len(window) < ahead:
                        try:
                            window.append(next(pending))
                        except StopIteration:
                            exhausted = True
                    if not window:
                        break
                    item, targets, future = window.popleft()
                    if future is None:
                        if item.conflict is not None:
                            self._fail(item.path, item.conflict)
                        else:
                            self.summary.skipped += 1
                            self._report(item.path)
                        continue
                    try:
                        batch.append((item, targets, self._decoded(item, future)))
                    except (ImageLoadError, OutputError) as exc:
                        self._fail(item.path, exc.reason)
                        continue
                    except Exception as exc:
                        self._fail(item.path, f"{type(exc).__name__}: {exc}")
                        continue
                    if len(batch) == batch_size:
                        self._dispatch(batch)
                        batch = []
                if batch and not self.cancel.is_set():
                    self._dispatch(batch)
                    batch = []
                while self._inflight:  # their requests were sent: their results are written
                    self._finish_inflight()
                if self.cancel.is_set():
                    self.summary.cancelled = True
                    for _, _, future in window:
                        if future is not None:
                            future.cancel()
        finally:
            if self._forwards is not None:
                self._forwards.shutdown(wait=False, cancel_futures=True)
                self._forwards = None
            self._inflight.clear()
            self._close_manifest()
            self.summary.elapsed = time.perf_counter() - start
        return self.summary

    def _dispatch(self, batch: list[tuple[ImageItem, Targets, np.ndarray]]) -> None:
        """Run a full batch: at once, or for a pipelined model (``pipelined`` = N: a VLM
        endpoint, whose forward is mostly waiting for replies) in the background, up to N
        batches at a time, while the oldest batch's results are written here: requests stay in
        flight during the writes and across batch boundaries. Results are written in input
        order either way, by this thread."""
        if self._forwards is None:
            self._run_batch(batch)
            return
        self._inflight.append((batch, self._forwards.submit(self._forward_batch, batch)))
        while len(self._inflight) > self._depth:
            self._finish_inflight()

    def _finish_inflight(self) -> None:
        """Wait for the oldest batch in flight (a pipelined model's) and write its results."""
        if not self._inflight:
            return
        batch, future = self._inflight.popleft()
        self._write_or_fail(batch, future.result)

    def _close_manifest(self) -> None:
        """Finish the manifest (once)."""
        if self.manifest is not None:
            manifest, self.manifest = self.manifest, None
            manifest.close()

    def _run_batch(self, batch: list[tuple[ImageItem, Targets, np.ndarray]]) -> None:
        """Run the model on a batch and write each image's outputs."""
        self._write_or_fail(batch, lambda: self._forward_batch(batch))

    def _write_or_fail(
        self, batch: list[tuple[ImageItem, Targets, np.ndarray]], outputs: Callable[[], Any]
    ) -> None:
        """Write the batch's results from ``outputs()``, or record every image of it as failed
        with what ``outputs()`` raised (an aborted run stops)."""
        try:
            scores = outputs()
        except RunAbortedError:
            raise
        except Exception as exc:
            self._forward_failed(batch, exc)
            return
        self._write_batch(batch, scores)

    def _forward_batch(self, batch: list[tuple[ImageItem, Targets, np.ndarray]]) -> Any:
        """The model's raw outputs for a batch (any thread; raises what the model raises)."""
        import numpy as np

        collate = getattr(self.model, "collate", np.stack)
        return self.model.forward(collate([array for _, _, array in batch]))

    def _forward_failed(
        self, batch: list[tuple[ImageItem, Targets, np.ndarray]], exc: Exception
    ) -> None:
        """A batch the model rejected: its image fails, or each image is run on its own."""
        if len(batch) == 1:
            item = batch[0][0]
            self._fail(item.path, f"the model failed on it: {type(exc).__name__}: {exc}")
            return
        log.warning("a batch of %d failed (%s); retrying one by one", len(batch), exc)
        for one in batch:
            self._run_batch([one])

    def _write_batch(self, batch: list[tuple[ImageItem, Targets, np.ndarray]], scores: Any) -> None:
        """Postprocess and write each image of a batch the model ran."""
        self.summary.tagged += len(batch)
        for (item, targets, _), row in zip(batch, scores, strict=True):
            try:
                result = self.model.postprocess(row, self.tag_options)
                self.write(item, targets, result)
            except ImageFailedError as exc:
                self.add_usage(exc.usage)
                self._fail(item.path, exc.reason)
                continue
            except (OutputError, OSError) as exc:
                self._fail(item.path, write_failure(exc))
                continue
            self.summary.written += 1
            self._report(item.path)


def run_batch(
    inputs: Sequence[str | os.PathLike[str]],
    model: BatchModel,
    tag_options: TagOptions | None = None,
    batch_options: BatchOptions | None = None,
    **kwargs: Any,
) -> Summary:
    """Tag ``inputs`` with ``model`` and write the outputs; see ``BatchRun``."""
    return BatchRun(inputs, model, tag_options, batch_options, **kwargs).run()
