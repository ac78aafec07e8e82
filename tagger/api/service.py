"""What the HTTP routes do, without HTTP: decode images, find models, run them, keep queues.

Nothing here imports FastAPI, so the behaviour is testable on its own and the routes stay thin.
Errors are the core's (``tagger.errors``); ``tagger.api.errors`` turns them into statuses.

Models run inside ``running()``: the host's lock (the webui's ``queue_lock``) when one was given,
plus a gate that lets requests run side by side but makes ``unload`` wait until none is running
(and new runs wait until the unload is done), so a model is never dropped under a request.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import os
import re
import secrets
import string
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagger.errors import ImageLoadError, ImageTooLargeError, ModelNotFoundError, OptionsError
from tagger.image import DEFAULT_MAX_PIXELS
from tagger.options import CaptionOptions
from tagger.registry import (
    ModelSpec,
    default_models_dirs,
    is_tagger_folder,
    is_wd14_folder,
    list_models,
    local_spec,
    registry_lookup,
)

if TYPE_CHECKING:
    from PIL import Image

    from tagger.options import TagOptions
    from tagger.tags import Labels, TagResult
    from tagger.wd14 import WD14Tagger

log = logging.getLogger("tagger")

#: Largest decoded image file accepted in a request body (base64 is a third larger).
MAX_IMAGE_BYTES = 64 * 1024 * 1024
#: Pixel limit of images sent over HTTP (decompression-bomb guard).
MAX_PIXELS = DEFAULT_MAX_PIXELS
#: Images one picobyte-style queue may hold before it must be finalised.
MAX_QUEUE_ITEMS = 100_000

_DATA_URL = re.compile(r"data:[^,]*,", re.IGNORECASE)
_BASE64_CHARS = re.compile(r"[A-Za-z0-9+/\-_]*")
_QUEUE_NAME_CHARS = string.ascii_uppercase + string.digits


# -- images ------------------------------------------------------------------------------------


def decode_base64_image(text: str, *, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """Return the file bytes of an image sent as base64, as the webui's own decoder accepts it.

    A data URL prefix (``data:image/png;base64,``) is removed; whitespace and line breaks are
    ignored; missing ``=`` padding and the URL-safe alphabet (``-`` ``_``) are accepted. URLs are
    refused (this server never downloads). Raises ``ImageLoadError`` (or ``ImageTooLargeError``
    over ``max_bytes``) saying what is wrong.

    >>> decode_base64_image("data:image/png;base64,aGVsbG8")
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
    compact = "".join(value.split()).rstrip("=")
    if not compact:
        raise ImageLoadError("image", "is missing (empty): send the image file's bytes as base64")
    if len(compact) * 3 // 4 > max_bytes:
        raise ImageTooLargeError(
            "image", f"is over {max_bytes // (1024 * 1024)} MiB; send a smaller file"
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


def load_request_image(text: str, *, max_pixels: int | None = None) -> tuple[Image.Image, bytes]:
    """Decode a request's base64 image into an RGB image; returns it with the file's bytes."""
    from tagger.image import load_image

    data = decode_base64_image(text)
    return load_image(data, max_pixels=max_pixels or MAX_PIXELS), data


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


def looks_like_path(name: str) -> bool:
    """True for a model name that points somewhere (``/``, ``\\``, ``:``, a leading ``.``, NUL):
    over HTTP clients name models, they never point at server folders.

    >>> looks_like_path("wd-vit-tagger-v3"), looks_like_path("../models/x")
    (False, True)
    """
    return any(c in name for c in ("\x00", "/", "\\", ":")) or name.startswith(".")


class TaggerService:
    """Everything one mounted API needs: where models are, how they run, and its queues."""

    def __init__(
        self,
        *,
        lock: Any = None,
        models_dirs: Iterable[str | os.PathLike[str]] = (),
        hf_cache: str | os.PathLike[str] | None = None,
        providers: str | list[str] | None = "auto",
        device_id: int = 0,
    ) -> None:
        dirs = [Path(d).expanduser() for d in models_dirs]
        self.models_dirs: list[Path] = dirs or default_models_dirs()
        self.hf_cache = hf_cache
        self.providers = providers
        self.device_id = device_id
        self.host_lock = lock
        self.gate = RunGate()
        self.queues = Queues()
        self.input_sizes: dict[str, int] = {}  # read from each model when it is loaded

    # -- models ----------------------------------------------------------------------------
    def models(self) -> list[ModelSpec]:
        """Local model folders (first found wins per name), then the registry entries."""
        return list_models(self.models_dirs)

    def model_keys(self) -> list[str]:
        """The names clients can use (aliases of registry keys are accepted too)."""
        return [spec.key for spec in self.models()]

    def resolve(self, name: str) -> ModelSpec:
        """The model a client named: a local folder's name, a registry key or an alias.

        Paths are refused: a client names models, it does not point at server folders.
        """
        text = str(name).strip()
        valid = ", ".join(self.model_keys())
        if not text:
            raise ModelNotFoundError(f"no model named: use one of {valid}")
        if looks_like_path(text):
            raise ModelNotFoundError(
                f"model {text!r} looks like a path; over HTTP name a model by its key or by the "
                f"name of a folder in the server's models folders: {valid}"
            )
        for folder in self.models_dirs:
            path = folder / text
            if is_wd14_folder(path) or is_tagger_folder(path):
                return local_spec(path)
        spec = registry_lookup(text)
        if spec is not None:
            return spec
        raise ModelNotFoundError(f"unknown model {text!r}: use one of {valid}")

    def resolve_captioner(self, name: str) -> ModelSpec:
        """The captioner a client named: a registry key or alias, or a folder's name in the
        models folders (paths are refused, as for taggers)."""
        from tagger.registry import list_captioners, resolve_captioner

        text = str(name).strip()
        valid = ", ".join(spec.key for spec in list_captioners(self.models_dirs))
        if not text or looks_like_path(text):
            raise ModelNotFoundError(
                f"captioner {text!r} is not a captioner name; use one of {valid}"
            )
        try:
            return resolve_captioner(text, self.models_dirs)
        except ModelNotFoundError:
            raise ModelNotFoundError(f"unknown captioner {text!r}: use one of {valid}") from None

    def caption(self, spec: ModelSpec, image: Image.Image, options: CaptionOptions) -> str:
        """Caption one image (the captioner loaded once, shared with the CLI's cache)."""
        from tagger.captioners import get_captioner
        from tagger.captioners.common import torch_device_for

        providers = (
            self.providers if isinstance(self.providers, str) else ",".join(self.providers or [])
        )
        with self.running():
            captioner = get_captioner(
                spec,
                device=torch_device_for(providers),
                device_id=self.device_id,
                half=options.half,
                cache_dir=self.hf_cache,
                models_dirs=self.models_dirs,
            )
            return captioner.caption([image], options)[0]

    def tagger(self, spec: ModelSpec) -> WD14Tagger:
        """The loaded model (loaded once, shared through ``tagger.cache``)."""
        from tagger.cache import get_tagger

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

    def scores(self, spec: ModelSpec, image: Image.Image) -> Scores:
        """Run the model on one image and return all its scores."""
        from tagger.tags import label_index, split_scores

        with self.running():
            model = self.tagger(spec)
            batch = model.preprocess(image)[None]
            row = model.forward(batch)[0]
            labels = model.labels
        probs = [float(value) for value in row.tolist()]
        rating, general, character = split_scores(probs, labels)
        return Scores(spec.key, rating, general, character, label_index(labels), probs, labels)


def model_info(service: TaggerService, spec: ModelSpec, loaded: Iterable[str]) -> dict[str, Any]:
    """The metadata the model list shows for one model."""
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
    }


def scores_record(scores: Mapping[str, float]) -> dict[str, float]:
    """Scores as plain floats (a JSON object)."""
    return {name: float(value) for name, value in scores.items()}
