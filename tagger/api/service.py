"""What the HTTP routes do, without HTTP: decode images, find models, run them, keep queues.

Nothing here imports FastAPI, so the behaviour is testable on its own and the routes stay thin.
Errors are the core's (``tagger.errors``); ``tagger.api.errors`` turns them into statuses.

Models run inside ``running()``: the host's lock (the webui's ``queue_lock``) when one was given,
plus a gate that lets requests run side by side but makes ``unload`` wait until none is running
(and new runs wait until the unload is done), so a model is never dropped under a request.

Memory under hostile input is bounded three ways (see ``Limits``): the request body's size
(checked by the routes before the body is read), the pixels of an image (read from its header
before it is decoded), and the images decoded at once (``DecodePool``): an image is decoded and
reduced to the model's input in one of a few decode threads, so parallel requests of small files
that decode to huge images wait their turn instead of holding one full-size copy each. Keeping
the decoding on a fixed set of threads also bounds what the C allocator keeps after an image is
freed (glibc gives each thread an arena of its own and keeps freed blocks there: decoding in the
request threads left up to 16 arenas on 2 cores each holding the memory of one huge image).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import io
import logging
import os
import re
import secrets
import string
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tagger.errors import (
    ImageLoadError,
    ImageTooLargeError,
    ModelFilesMissingError,
    ModelLoadError,
    ModelNotFoundError,
    OptionsError,
)
from tagger.options import CaptionOptions
from tagger.registry import (
    ModelSpec,
    default_models_dirs,
    find_captioner_by_name,
    find_model_by_name,
    list_captioners,
    list_models,
    name_problem,
)

if TYPE_CHECKING:
    from PIL import Image

    from tagger.api.folders import FolderChecks
    from tagger.options import TagOptions
    from tagger.tags import Labels, TagResult
    from tagger.wd14 import WD14Tagger

log = logging.getLogger("tagger")

T = TypeVar("T")

#: Pixel limit of images sent over HTTP: 4096 x 4096. The taggers see 448 x 448 pixels (BLIP
#: 384, CLIP 224), so a 4096-pixel side is already reduced more than 9 times; larger images
#: cost memory and decoding time and add nothing the models can see.
HTTP_MAX_PIXELS = 4096 * 4096
#: Peak memory of decoding one image and making it RGB on white, per pixel: measured 4.6
#: bytes (RGB PNG), 12 (RGBA), 16 (grey with alpha), 21 (16-bit grey); rounded up.
PEAK_BYTES_PER_PIXEL = 24
#: Memory the default decode pool aims to stay within (see ``default_max_decodes``).
DECODE_MEMORY = 1 << 30
#: What a request body holds besides its base64 image (model name, options): the body limit's
#: allowance on top of the image.
BODY_ALLOWANCE = 1 << 20
#: Request bodies of the largest size held at once (more wait before they are read): with the
#: copies made while parsing (JSON text, the base64 string, the file), about 700 MiB by default.
BODIES_IN_FLIGHT = 4
#: Images at least this large give their memory back to the system once freed (glibc).
TRIM_PIXELS = 4_000_000
#: Images one picobyte-style queue may hold before it must be finalised.
MAX_QUEUE_ITEMS = 100_000
#: Longest model name echoed in an error message.
_SHOWN_NAME = 100

_DATA_URL = re.compile(r"data:[^,]*,", re.IGNORECASE)
_BASE64_CHARS = re.compile(r"[A-Za-z0-9+/\-_]*")
_SPACE = re.compile(r"\s")
_QUEUE_NAME_CHARS = string.ascii_uppercase + string.digits


# -- limits -------------------------------------------------------------------------------------


def default_max_body_bytes(max_pixels: int) -> int:
    """The default request body limit for a pixel limit: the largest 8-bit RGB image the pixel
    limit admits, stored without compression (3 bytes a pixel, as BMP or an uncompressed PNG),
    in base64 (4 characters for 3 bytes: 4 bytes a pixel), plus 1 MiB for the rest of the JSON.

    >>> default_max_body_bytes(4096 * 4096)  # 65 MiB
    68157440
    """
    return 4 * max_pixels + BODY_ALLOWANCE


def default_max_decodes(max_pixels: int, cores: int | None = None) -> int:
    """How many images of the largest admitted size may be decoded at once by default: as
    many as fit in ``DECODE_MEMORY`` at ``PEAK_BYTES_PER_PIXEL``, at most one per core, at
    least one.

    >>> default_max_decodes(4096 * 4096, cores=16), default_max_decodes(1024 * 1024, cores=4)
    (2, 4)
    >>> default_max_decodes(178_956_970, cores=16)
    1
    """
    cores = cores or os.cpu_count() or 1
    fits = DECODE_MEMORY // max(1, max_pixels * PEAK_BYTES_PER_PIXEL)
    return max(1, min(cores, fits))


@dataclass(frozen=True)
class Limits:
    """What one request may cost: its body, its image's pixels, and the decodes at once.

    ``max_body_bytes`` and ``max_decodes`` of 0 take their defaults from ``max_pixels``
    (``default_max_body_bytes``, ``default_max_decodes``).
    """

    max_pixels: int = HTTP_MAX_PIXELS
    max_body_bytes: int = 0
    max_decodes: int = 0

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_body_bytes", "max_decodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise OptionsError(f"{name} must be a whole number of at least 0, got {value!r}")
        if self.max_pixels < 1:
            raise OptionsError(f"max_pixels must be at least 1, got {self.max_pixels}")
        if self.max_body_bytes == 0:
            object.__setattr__(self, "max_body_bytes", default_max_body_bytes(self.max_pixels))
        if self.max_decodes == 0:
            object.__setattr__(self, "max_decodes", default_max_decodes(self.max_pixels))

    @property
    def bodies_in_flight(self) -> int:
        """Bytes of request bodies held at once: four bodies of the largest size (any number
        of small ones); more wait before their body is read."""
        return BODIES_IN_FLIGHT * self.max_body_bytes

    @property
    def max_image_bytes(self) -> int:
        """Largest image file a body can carry: three quarters of the body (base64)."""
        return self.max_body_bytes * 3 // 4


class DecodePool:
    """Decode at most ``size`` images at once, each in one of ``size`` threads of this pool;
    callers wait their turn, first come first served. Threads start on first use."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise OptionsError(f"a decode pool needs at least 1 thread, got {size}")
        self.size = size
        self._lock = threading.Lock()
        self._executor: Any = None
        self._active = 0
        self._queued = 0
        #: The most images decoded at once since the pool was made (for tests and benchmarks).
        self.peak = 0

    @property
    def active(self) -> int:
        """Images being decoded now."""
        with self._lock:
            return self._active

    @property
    def waiting(self) -> int:
        """Requests waiting for a decode thread now."""
        with self._lock:
            return self._queued

    def _pool(self) -> Any:
        """The threads (made once)."""
        from concurrent.futures import ThreadPoolExecutor

        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.size, thread_name_prefix="tagger-decode")
            return self._executor

    def run(self, work: Callable[[], T]) -> T:
        """Run ``work`` in a decode thread and return its result (or raise its error)."""

        def job() -> T:
            with self._lock:
                self._queued -= 1
                self._active += 1
                self.peak = max(self.peak, self._active)
            try:
                return work()
            finally:
                with self._lock:
                    self._active -= 1

        pool = self._pool()
        with self._lock:
            self._queued += 1
        return pool.submit(job).result()

    def shutdown(self) -> None:
        """Stop the threads once their work is done."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None elsewhere (macOS, Windows, musl)."""
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Give the C allocator's free memory back to the system (glibc; elsewhere nothing), so a
    burst of huge images does not leave the server holding their memory."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


# -- images ------------------------------------------------------------------------------------


def decode_base64_image(text: str, *, max_bytes: int) -> bytes:
    """Return the file bytes of an image sent as base64, as the webui's own decoder accepts it.

    A data URL prefix (``data:image/png;base64,``) is removed; whitespace and line breaks are
    ignored; missing ``=`` padding and the URL-safe alphabet (``-`` ``_``) are accepted. URLs are
    refused (this server never downloads). Raises ``ImageLoadError`` (or ``ImageTooLargeError``
    over ``max_bytes``) saying what is wrong.

    >>> decode_base64_image("data:image/png;base64,aGVsbG8", max_bytes=100)
    b'hello'
    """
    value = text.strip()
    if value.lower().startswith(("http://", "https://")):
        raise ImageLoadError(
            "image", "is a URL; this server does not download images: send the file as base64"
        )
    prefix = _DATA_URL.match(value)
    if prefix is not None:
        if ";base64" not in prefix.group(0).lower():
            raise ImageLoadError("image", "is a data URL without ';base64': send base64 data")
        value = value[prefix.end() :]
    compact = ("".join(value.split()) if _SPACE.search(value) else value).rstrip("=")
    if not compact:
        raise ImageLoadError("image", "is missing (empty): send the image file's bytes as base64")
    if len(compact) * 3 // 4 > max_bytes:
        raise ImageTooLargeError(
            "image",
            f"is over this server's limit of {max_bytes:,} bytes for an image file; send a "
            "smaller file (the server's owner sets the limit with tagger serve --max-body-bytes)",
        )
    if _BASE64_CHARS.fullmatch(compact) is None:
        bad = next(char for char in compact if _BASE64_CHARS.fullmatch(char) is None)
        raise ImageLoadError(
            "image", f"is not valid base64: it contains {bad!r} (send the file's bytes as base64)"
        )
    if len(compact) % 4 == 1:
        raise ImageLoadError("image", "is not valid base64: the data is cut off")
    standard = compact.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - ruled out above
        raise ImageLoadError("image", f"is not valid base64: {exc}") from None


def too_many_pixels(described: str, max_pixels: int) -> ImageTooLargeError:
    """The error for an image over the server's pixel limit, naming the limit and the flag."""
    return ImageTooLargeError(
        "image",
        f"{described}, over this server's limit of {max_pixels:,} pixels; send a smaller "
        f"image (the server's owner sets the limit with tagger serve --max-pixels N, or "
        f"mount(max_pixels=N))",
    )


def image_pixels(data: bytes, max_pixels: int) -> int:
    """The pixel count of an image file, read from its header without decoding the pixels.

    Raises ``ImageTooLargeError`` over ``max_pixels`` (naming the server's limit), or the
    loader's own ``ImageLoadError`` for bytes that are not an image.
    """
    from PIL import Image

    from tagger.image import load_image, register_format_plugins

    register_format_plugins()
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Image.DecompressionBombError:  # over Pillow's own limit, far above any server's
        raise too_many_pixels("has more than 178,956,970 pixels", max_pixels) from None
    except Exception:
        load_image(data, max_pixels=max_pixels)  # raises the loader's reason (not an image...)
        return max_pixels  # pragma: no cover - the loader opens what Pillow could not
    if width * height > max_pixels:
        described = f"has {width}\N{MULTIPLICATION SIGN}{height} = {width * height:,} pixels"
        raise too_many_pixels(described, max_pixels)
    return width * height


# -- concurrency ----------------------------------------------------------------------------------


class RunGate:
    """Many model runs at once, or one unload alone (a readers-writer gate).

    An unload waits for the runs in progress and blocks new ones until it is done.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._runs = 0
        self._exclusive = False

    @contextlib.contextmanager
    def run(self) -> Iterator[None]:
        """Hold the gate shared, while a model runs."""
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._runs += 1
        try:
            yield
        finally:
            with self._cond:
                self._runs -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the gate alone (no model runs meanwhile)."""
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._exclusive = True
            while self._runs:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


# -- scores ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    """Every score of one image, split by category in model order, with the labels' index."""

    model: str
    rating: dict[str, float]
    general: dict[str, float]
    character: dict[str, float]
    index: dict[str, int]
    probs: list[float]
    labels: Labels

    def tags_by_index(self) -> dict[str, float]:
        """General and character scores together, in model (CSV) order."""
        merged = {**self.general, **self.character}
        return {name: merged[name] for name in sorted(merged, key=self.index.__getitem__)}

    def tags_by_score(self) -> dict[str, float]:
        """General and character scores together, best first (ties: model order)."""
        merged = self.tags_by_index()
        return {name: merged[name] for name in sorted(merged, key=lambda n: -merged[n])}

    def select(self, options: TagOptions) -> TagResult:
        """The kept tags under ``options`` (thresholds, MCut, keep/exclude, max tags)."""
        from tagger.tags import tag_scores

        return tag_scores(self.probs, self.labels, options)


def toriato_caption(scores: Scores, threshold: float) -> dict[str, float]:
    """toriato's ``caption``: the rating scores, then general and character tags scoring at
    least ``threshold``, best first, raw names.

    >>> from tagger.tags import labels_from_rows, label_index, split_scores
    >>> labels = labels_from_rows([("general", 9), ("solo", 0), ("1girl", 0), ("miku", 4)])
    >>> r, g, c = split_scores([0.7, 0.35, 0.9, 0.2], labels)
    >>> s = Scores("m", r, g, c, label_index(labels), [0.7, 0.35, 0.9, 0.2], labels)
    >>> toriato_caption(s, 0.35)
    {'general': 0.7, '1girl': 0.9, 'solo': 0.35}
    """
    kept = {name: score for name, score in scores.tags_by_score().items() if score >= threshold}
    return {**scores.rating, **kept}


def picobyte_caption(scores: Scores, threshold: float) -> dict[str, dict[str, float]]:
    """picobyte's single-image ``caption``: ``{"tag": {...}, "rating": {...}}`` with the general
    and character tags scoring above ``threshold`` in model order, raw names."""
    tags = {name: score for name, score in scores.tags_by_index().items() if score > threshold}
    return {"tag": tags, "rating": dict(scores.rating)}


def picobyte_queue_entry(scores: Scores, threshold: float) -> dict[str, float]:
    """One image's entry in a finalised picobyte queue: tags above ``threshold`` and the
    ratings as ``rating:<name>``."""
    single = picobyte_caption(scores, threshold)
    return {**single["tag"], **{f"rating:{k}": v for k, v in single["rating"].items()}}


# -- picobyte's queues -----------------------------------------------------------------------------


class Queues:
    """picobyte's named queues: images added one request at a time, results read all at once.

    Each image is tagged when it is added (the request waits for it, as picobyte's did); its
    result waits in the queue until a request with the queue's name and no image name takes
    them all. Queues are independent of each other and of single requests.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: dict[str, dict[str, dict[str, float]]] = {}
        self._counts: dict[str, dict[str, float]] = {}

    def new_name(self) -> str:
        """A random 8-character queue name not in use (picobyte's alphabet)."""
        with self._lock:
            while True:
                name = "".join(secrets.choice(_QUEUE_NAME_CHARS) for _ in range(8))
                if name not in self._results:
                    self._results[name] = {}
                    return name

    def reserve(self, queue: str, name: str, data: bytes) -> str | None:
        """Claim the name an image will be stored under, or None to skip it.

        ``<sha256>`` names it by the SHA-256 of its file bytes (an image already in the queue
        under that name is not tagged again); a name already used gets ``#0``, ``#1``...
        """
        with self._lock:
            results = self._results.setdefault(queue, {})
            if len(results) >= MAX_QUEUE_ITEMS:
                raise OptionsError(
                    f"queue {queue!r} holds {MAX_QUEUE_ITEMS} images: read its results (send the "
                    "queue name with an empty name_in_queue) before adding more"
                )
            if name == "<sha256>":
                name = hashlib.sha256(data).hexdigest()
                if name in results:
                    return None
            elif name in results:
                number = 0
                while f"{name}#{number}" in results:
                    number += 1
                name = f"{name}#{number}"
            results[name] = {}
            return name

    def release(self, queue: str, name: str) -> None:
        """Give back a reserved name whose image could not be tagged."""
        with self._lock:
            self._results.get(queue, {}).pop(name, None)

    def store(self, model: str, queue: str, name: str, entry: dict[str, float]) -> None:
        """Keep one image's result and count it."""
        with self._lock:
            self._results.setdefault(queue, {})[name] = entry
            per_model = self._counts.setdefault(model, {})
            per_model[queue] = per_model.get(queue, 0.0) + 1.0

    def counts(self, model: str, queue: str) -> dict[str, dict[str, float]]:
        """picobyte's reply to an added image: ``{model: {queue: images added}}``."""
        with self._lock:
            return {model: {queue: self._counts.get(model, {}).get(queue, 0.0)}}

    def finish(self, model: str, queue: str) -> dict[str, dict[str, float]]:
        """Take (and forget) every result of a queue: ``{name: {tag: score, "rating:x": s}}``."""
        with self._lock:
            self._counts.get(model, {}).pop(queue, None)
            return self._results.pop(queue, {})


# -- the service -----------------------------------------------------------------------------------


def shown_name(name: str) -> str:
    """A client's model name as error messages echo it: quoted, escaped, at most 100 chars.

    >>> shown_name("tiny"), shown_name("a" * 120)[-5:]
    ("'tiny'", "aaa'…")
    """
    text = repr(name[:_SHOWN_NAME])
    return text + "…" if len(name) > _SHOWN_NAME else text


class TaggerService:
    """Everything one mounted API needs: where models are, how they run, its limits, queues."""

    def __init__(
        self,
        *,
        lock: Any = None,
        models_dirs: Iterable[str | os.PathLike[str]] = (),
        hf_cache: str | os.PathLike[str] | None = None,
        providers: str | list[str] | None = "auto",
        device_id: int = 0,
        limits: Limits | None = None,
    ) -> None:
        from tagger.api.folders import FolderChecks

        dirs = [Path(d).expanduser() for d in models_dirs]
        self.models_dirs: list[Path] = dirs or default_models_dirs()
        self.hf_cache = hf_cache
        self.providers = providers
        self.device_id = device_id
        self.host_lock = lock
        self.limits = limits or Limits()
        self.decodes = DecodePool(self.limits.max_decodes)
        self.gate = RunGate()
        self.queues = Queues()
        self.folders: FolderChecks = FolderChecks()
        self.input_sizes: dict[str, int] = {}  # read from each model when it is loaded

    # -- models ----------------------------------------------------------------------------
    def models(self) -> list[ModelSpec]:
        """Local model folders (first found wins per name), then the registry entries."""
        return list_models(self.models_dirs)

    def problem(self, spec: ModelSpec) -> str | None:
        """Why a local model folder cannot load (cheap, cached), or None; None for registry
        models (their files are checked when they load)."""
        if spec.path is None or spec.family != "wd14":
            return None
        return self.folders.problem(spec.path, spec.key)

    def model_keys(self) -> list[str]:
        """The names ``/interrogators`` offers: local folders that can load, then the registry
        keys (their aliases are accepted too)."""
        return [spec.key for spec in self.models() if self.problem(spec) is None]

    def _unknown(self, kind: str, name: str, valid: Iterable[str]) -> ModelNotFoundError:
        """The one 404 for a name that names nothing: the same whatever exists on the disk."""
        return ModelNotFoundError(
            f"unknown {kind} {shown_name(name)}: name a {kind} by its key or by the name of a "
            f"folder in the server's models folders (paths are not accepted over HTTP); "
            f"one of: {', '.join(valid)}"
        )

    def resolve(self, name: str) -> ModelSpec:
        """The tagger a client named: a folder's name in the server's models folders, a
        registry key or an alias. The only way an HTTP request's tagger name reaches the disk.

        A name that is not a plain name (``name_problem``: paths, ``~``, drives...) or that
        names nothing gets the same 404; a folder that cannot load raises ``ModelLoadError``
        with the reason.
        """
        text = str(name).strip()
        spec = find_model_by_name(text, self.models_dirs) if name_problem(text) is None else None
        if spec is None:
            raise self._unknown("model", text, self.model_keys())
        problem = self.problem(spec)
        if problem is not None:
            raise ModelLoadError(problem)
        return spec

    def resolve_captioner(self, name: str) -> ModelSpec:
        """The captioner a client named: a registry key or alias, or a folder's name in the
        server's models folders; the same rules and the same 404 as ``resolve``."""
        text = str(name).strip()
        spec = None
        if name_problem(text) is None:
            spec = find_captioner_by_name(text, self.models_dirs)
        if spec is None:
            valid = [spec.key for spec in list_captioners(self.models_dirs)]
            raise self._unknown("captioner", text, valid)
        return spec

    @contextlib.contextmanager
    def where_to_put(self, spec: ModelSpec) -> Iterator[None]:
        """Add to a registry model's missing-files error where this server looks for it."""
        try:
            yield
        except ModelFilesMissingError as exc:
            if spec.is_local or not self.models_dirs:
                raise
            folder = self.models_dirs[0] / spec.key
            raise ModelFilesMissingError(
                f"{exc} On this server, a folder {str(folder)!r} holding them is used for "
                f"{spec.key!r} (no download needed)."
            ) from exc

    def tagger(self, spec: ModelSpec) -> WD14Tagger:
        """The loaded model (loaded once, shared through ``tagger.cache``)."""
        from tagger.cache import get_tagger

        with self.where_to_put(spec):
            model = get_tagger(
                spec, providers=self.providers, device_id=self.device_id, cache_dir=self.hf_cache
            )
        self.input_sizes[spec.key] = model.input_size
        return model

    def is_downloaded(self, spec: ModelSpec) -> bool:
        """Whether the model's files are on disk (never touches the network)."""
        from tagger.hub import is_downloaded

        return is_downloaded(spec, cache_dir=self.hf_cache)

    def _host(self) -> Any:
        """The host's lock, or a context that does nothing."""
        return self.host_lock if self.host_lock is not None else contextlib.nullcontext()

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Held while a model loads or runs: the host's lock, then the gate (shared)."""
        with self._host(), self.gate.run():
            yield

    def unload(self) -> int:
        """Unload every model once no request is running one; returns how many were loaded."""
        from tagger.cache import unload_all

        with self._host(), self.gate.exclusive():
            return unload_all()

    # -- images ----------------------------------------------------------------------------
    def image_bytes(self, text: str) -> bytes:
        """A request's base64 image as file bytes, its size and pixels checked (not decoded)."""
        data = decode_base64_image(text, max_bytes=self.limits.max_image_bytes)
        image_pixels(data, self.limits.max_pixels)
        return data

    def prepared(self, data: bytes, prepare: Callable[[Image.Image], T]) -> T:
        """Decode checked file bytes into an RGB image and return ``prepare(image)``, both in
        a decode thread (``DecodePool``): the full-size image exists only there, at most
        ``max_decodes`` at once; ``prepare`` reduces it to what the model takes."""
        from tagger.image import load_image

        limit = self.limits.max_pixels

        def work() -> T:
            try:
                image = load_image(data, max_pixels=limit)
            except ImageTooLargeError as exc:  # Pillow's own limit, if a plugin reports late
                raise too_many_pixels(exc.reason, limit) from None
            pixels = image.width * image.height
            try:
                return prepare(image)
            finally:
                image.close()
                del image
                if pixels >= TRIM_PIXELS:
                    release_free_memory()

        return self.decodes.run(work)

    def scores(self, spec: ModelSpec, data: bytes) -> Scores:
        """Run the tagger on one image file and return all its scores.

        The model is loaded first; the image is decoded and reduced to the model's input in a
        decode thread, and the model runs after the full-size image is gone.
        """
        from tagger.tags import label_index, split_scores

        with self.running():
            model = self.tagger(spec)
            labels = model.labels
        # the family's own preprocessing (WD14's, PixAI's stages, Camie's...), in a decode thread
        batch = self.prepared(data, model.preprocess)[None]
        with self.running():
            row = self.tagger(spec).forward(batch)[0]
        probs = [float(value) for value in row.tolist()]
        rating, general, character = split_scores(probs, labels)
        return Scores(spec.key, rating, general, character, label_index(labels), probs, labels)

    def caption(self, spec: ModelSpec, data: bytes, options: CaptionOptions) -> str:
        """Caption one image file (the captioner loaded once, shared with the CLI's cache);
        the image is decoded and preprocessed in a decode thread, as for ``scores``."""
        from tagger.captioners import get_captioner
        from tagger.captioners.common import torch_device_for

        providers = (
            self.providers if isinstance(self.providers, str) else ",".join(self.providers or [])
        )

        def loaded() -> Any:
            with self.where_to_put(spec):
                return get_captioner(
                    spec,
                    device=torch_device_for(providers),
                    device_id=self.device_id,
                    half=options.half,
                    cache_dir=self.hf_cache,
                    models_dirs=self.models_dirs,
                )

        with self.running():
            captioner = loaded()
        with self.gate.run():  # an unload waits: the captioner's processor is used here
            pixels = self.prepared(data, captioner.preprocess)
        with self.running():
            captioner = loaded()
            ids = captioner.forward(captioner.collate([pixels]), options)
            return captioner.postprocess(ids[0], options)


def model_info(service: TaggerService, spec: ModelSpec, loaded: Iterable[str]) -> dict[str, Any]:
    """The metadata the model list shows for one model."""
    problem = service.problem(spec)
    return {
        "key": spec.key,
        "family": spec.family,
        "description": "local model folder" if spec.is_local else spec.description,
        "source": "local" if spec.is_local else "hub",
        "repo_id": spec.repo_id,
        "revision": spec.revision,
        "input_size": service.input_sizes.get(spec.key, None if spec.is_local else spec.input_size),
        "batch_dynamic": spec.batch_dynamic,
        "general_threshold": spec.general_threshold,
        "character_threshold": spec.character_threshold,
        "aliases": list(spec.aliases),
        "downloaded": service.is_downloaded(spec),
        "loaded": spec.key in set(loaded),
        "loadable": problem is None,
        "error": problem,
    }


def scores_record(scores: Mapping[str, float]) -> dict[str, float]:
    """Scores as plain floats (a JSON object)."""
    return {name: float(value) for name, value in scores.items()}
