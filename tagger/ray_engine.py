"""The batch engine on Ray Data: the same run, spread over the cores and GPUs of a Ray cluster.

The driver lists the images exactly as the local engine does (``find_images``, or a pyarrow
filesystem listing for ``s3://`` / ``gs://`` / ``file://`` URIs), plans every output file with the
local engine's rules (``tagger.planning``: an image named twice is tagged once, two images that
would write one file fail the second), and skips the ones already done. The rest become a Ray
dataset:

1. decoding and preprocessing run as plain map tasks (``load_image`` + ``prepare_image``); an
   image that cannot be read becomes a row carrying its reason, never an exception;
2. the model runs in a pool of actors (``map_batches`` with a callable class), one loaded
   model per actor, one GPU per actor when the cluster has GPUs; each actor also turns the
   scores into kept tags. The model is a ``WD14Tagger`` (``ModelConfig``) or, for captions and
   combined runs, an ``Interrogator`` (``InterrogatorConfig``: a tagger, a captioner and the CLIP
   filter, any of them). A captioner's and CLIP's own preprocessing needs their loaded
   processors, so for them the decode tasks ship the decoded RGB pixels and the actor finishes
   the preprocessing;
3. the results stream back to the driver in input order (``iter_batches``) and are written there
   with ``BatchRun.write``: the same caption files, JSON sidecars, manifest lines, existing-caption
   policy and atomic writes as the local engine.

A worker that dies is restarted and its batch retried by Ray; since every file is written once,
by the driver, from finished batches only, a dead worker leaves no partial or duplicate output.

Ray is imported only inside the functions of this module that need it, and this module is
imported only when ``--engine ray`` is used.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagger.batch import (
    BatchRun,
    FailureCallback,
    ImageItem,
    ProgressCallback,
    Summary,
    draft_side,
    find_images,
    write_failure,
)
from tagger.errors import (
    ImageLoadError,
    MissingDependencyError,
    OptionsError,
    OutputError,
    TaggerError,
)
from tagger.image import is_image_path
from tagger.interrogate import check_parts, part_outputs
from tagger.options import (
    BatchOptions,
    CaptionOptions,
    ClipFilterOptions,
    OutputOptions,
    TagOptions,
    dump,
    parse,
)
from tagger.planning import Plan, plan_outputs
from tagger.registry import ModelSpec
from tagger.tags import TagResult
from tagger.writers import Manifest

if TYPE_CHECKING:
    import numpy as np

    from tagger.batch import ImageResult
    from tagger.captioners.base import Captioner
    from tagger.captioners.clip_filter import ClipFilter
    from tagger.interrogate import Interrogator
    from tagger.wd14 import WD14Tagger

log = logging.getLogger("tagger")

#: Object-store and file URIs are read through pyarrow's filesystems.
URI_SCHEMES = ("s3://", "gs://", "gcs://", "file://", "hdfs://", "abfs://", "abfss://")
#: Rows per dataset block: small enough to spread a folder over the cluster, large enough to be
#: cheap to schedule.
ROWS_PER_BLOCK = 16
MAX_BLOCKS = 20_000
#: Rows per actor call (a multiple of the model's batch): fewer, larger calls cost less to
#: schedule; the model still runs batches of its own size.
ROWS_PER_CALL = 32


def is_uri(text: str) -> bool:
    """True for inputs read through pyarrow's filesystems (``s3://``, ``gs://``, ``file://``...).

    >>> is_uri("s3://bucket/images"), is_uri("images/a.png")
    (True, False)
    """
    return text.startswith(URI_SCHEMES)


def _require_ray() -> Any:
    """Import ray, or say how to install it."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise MissingDependencyError(
            f"--engine ray needs Ray Data ({exc}); install it with: pip install 'tagger[ray]'"
        ) from exc
    return ray


# -- the model, as the actors build it ---------------------------------------------------------


def _is_cpu(names: str | Sequence[str] | None) -> bool:
    """True when every name asks for the CPU (an onnxruntime provider list or a torch device).

    >>> _is_cpu("cpu"), _is_cpu(["CPUExecutionProvider"]), _is_cpu("auto"), _is_cpu(None)
    (True, True, False, False)
    """
    items = [names] if isinstance(names, str) or names is None else list(names)
    return all(str(n or "auto").strip().lower() in ("cpu", "cpuexecutionprovider") for n in items)


@dataclass(frozen=True)
class ModelConfig:
    """How every actor builds its ``WD14Tagger`` (picklable: sent to the workers)."""

    spec: ModelSpec
    providers: str | list[str] | None = None
    device_id: int = 0
    threads: int = 0
    cache_dir: str | None = None
    revision: str | None = None
    precision: str = "fp32"

    def build(self, providers: str | list[str] | None = None) -> WD14Tagger:
        """A new (not yet loaded) tagger; ``providers`` overrides the configured ones."""
        from tagger.wd14 import WD14Tagger

        return WD14Tagger(
            self.spec,
            providers=providers if providers is not None else self.providers,
            device_id=self.device_id,
            threads=self.threads,
            cache_dir=self.cache_dir,
            revision=self.revision,
            precision=self.precision,
        )

    @property
    def outputs(self) -> tuple[str, ...]:
        """What the model produces (the engine's output files follow it)."""
        return ("tags",)

    @property
    def needs_pixels(self) -> bool:
        """False: the decode tasks do all of the tagger's preprocessing."""
        return False

    @property
    def wants_cpu(self) -> bool:
        """True when the user asked for the CPU only."""
        return _is_cpu(self.providers)

    def on_gpu_actor(self) -> ModelConfig:
        """The config for an actor given one GPU (which it sees as device 0)."""
        return dataclasses.replace(self, device_id=0)

    def probe(self) -> tuple[int, int | None]:
        """Load the model on the CPU once: (input side, fixed batch or None)."""
        model = self.build(providers="cpu").load()
        return model.input_size, model.fixed_batch


@dataclass(frozen=True)
class CaptionerConfig:
    """How every actor builds its captioner (BLIP or CLIP-prefix GPT-2)."""

    spec: ModelSpec
    device: str | None = "auto"
    device_id: int = 0
    half: bool = True
    cache_dir: str | None = None
    revision: str | None = None

    def build(self, device: str | None = None) -> Captioner:
        """A new (not yet loaded) captioner; ``device`` overrides the configured one."""
        from tagger.captioners import captioner_class

        return captioner_class(self.spec.family)(
            self.spec,
            device=device if device is not None else self.device,
            device_id=self.device_id,
            half=self.half,
            cache_dir=self.cache_dir,
            revision=self.revision,
        )


@dataclass(frozen=True)
class ClipFilterConfig:
    """How every actor builds its CLIP relevance filter (``options``: ``ClipFilterOptions``)."""

    options: dict[str, Any]
    device: str | None = "auto"
    device_id: int = 0
    half: bool = True
    hf_cache: str | None = None

    def build(self, device: str | None = None) -> ClipFilter:
        """A new (not yet loaded) filter; ``device`` overrides the configured one."""
        from tagger.captioners.clip_filter import ClipFilter

        return ClipFilter(
            parse(ClipFilterOptions, self.options),
            device=device if device is not None else self.device,
            device_id=self.device_id,
            half=self.half,
            hf_cache=self.hf_cache,
        )


@dataclass(frozen=True)
class InterrogatorConfig:
    """How every actor builds an ``Interrogator``: a tagger, a captioner, the CLIP filter.

    ``tagger caption`` is a captioner alone; ``tagger tag --captioner/--clip-filter`` adds them
    to the tagger. ``caption_options`` is a dumped ``CaptionOptions``.
    """

    tagger: ModelConfig | None = None
    captioner: CaptionerConfig | None = None
    caption_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    clip_filter: ClipFilterConfig | None = None

    def __post_init__(self) -> None:
        check_parts(self.tagger, self.captioner, self.clip_filter)

    @property
    def outputs(self) -> tuple[str, ...]:
        """``tags``, ``caption`` or both (the engine's output files follow it)."""
        return part_outputs(self.tagger, self.captioner)

    @property
    def needs_pixels(self) -> bool:
        """True when a part preprocesses the decoded image itself (captioner, CLIP)."""
        return self.captioner is not None or self.clip_filter is not None

    @property
    def wants_cpu(self) -> bool:
        """True when every part was asked to run on the CPU."""
        devices = [self.tagger.wants_cpu] if self.tagger is not None else []
        devices += [_is_cpu(p.device) for p in (self.captioner, self.clip_filter) if p is not None]
        return all(devices)

    def on_gpu_actor(self) -> InterrogatorConfig:
        """The config for an actor given one GPU (which it sees as device 0)."""
        return dataclasses.replace(
            self,
            tagger=self.tagger.on_gpu_actor() if self.tagger else None,
            captioner=dataclasses.replace(self.captioner, device_id=0) if self.captioner else None,
            clip_filter=(
                dataclasses.replace(self.clip_filter, device_id=0) if self.clip_filter else None
            ),
        )

    def build(self) -> Interrogator:
        """A new (not yet loaded) interrogator."""
        from tagger.interrogate import Interrogator

        return Interrogator(
            self.tagger.build() if self.tagger else None,
            self.captioner.build() if self.captioner else None,
            parse(CaptionOptions, self.caption_options),
            self.clip_filter.build() if self.clip_filter else None,
        )

    def probe(self) -> tuple[int, int | None]:
        """Load every model on the CPU once, so that a model that cannot load stops the run
        with its own error before any actor starts: (tagger input side or 0, fixed batch)."""
        if self.captioner is not None:
            self.captioner.build(device="cpu").load().unload()
        if self.clip_filter is not None:
            self.clip_filter.build(device="cpu").load().unload()
        return self.tagger.probe() if self.tagger is not None else (0, None)


RunConfig = ModelConfig | InterrogatorConfig


def _probe_model(config: RunConfig) -> tuple[int, int | None]:
    """Run on a worker: the config's ``probe()``."""
    return config.probe()


def encode_result(result: TagResult | ImageResult) -> str:
    """A model's result as JSON text (floats round-trip exactly, dict order is kept)."""
    from tagger.batch import as_image_result

    image = as_image_result(result)
    tags = image.tags
    encoded = [tags.rating, tags.character, tags.general, tags.index] if tags else None
    return json.dumps(
        {"tags": encoded, "caption": image.caption, "clip": image.clip, "extra": image.extra}
    )


def decode_result(text: str) -> ImageResult:
    """The ``ImageResult`` that ``encode_result`` wrote.

    >>> r = TagResult({"general": 0.5}, {}, {"smile": 0.25}, {"general": 0, "smile": 5})
    >>> decode_result(encode_result(r)).tags == r
    True
    """
    from tagger.batch import ImageResult

    data = json.loads(text)
    tags = TagResult(*data["tags"]) if data["tags"] is not None else None
    return ImageResult(tags, data["caption"], data["clip"], data.get("extra"))


class TaggerActor:
    """One loaded model in a Ray actor: ``map_batches`` calls it with batches of decoded images.

    A batch holds ``id``, ``image`` (the tagger's preprocessed arrays), ``pixels`` (decoded RGB,
    when a captioner or CLIP preprocesses it) and ``error`` (empty, or why the image could not be
    read). It returns ``id``, ``error`` and ``result`` (``encode_result`` text) and the providers
    the model runs on. A batch the model rejects is retried one image at a time; an image it
    still rejects gets an error, as in the local engine.
    """

    def __init__(self, config: RunConfig, tag_options: dict[str, Any], batch_size: int) -> None:
        self.model: WD14Tagger | Interrogator = config.build().load()
        self.options = TagOptions(**tag_options)
        self.batch_size = batch_size
        self.providers = ",".join(self.model.active_providers)

    def _inputs(self, batch: dict[str, np.ndarray], rows: list[int]) -> list[Any]:
        """The model's input for each row (a failure: the reason, as text)."""
        return list(batch["image"][rows])

    def _collate(self, inputs: list[Any]) -> Any:
        """Stack inputs into one batch."""
        import numpy as np

        return np.stack(inputs)

    def _forward(self, inputs: list[Any]) -> list[Any]:
        """Raw outputs per input, or the model's error (text) for an image it fails on."""
        out: list[Any] = []
        for start in range(0, len(inputs), self.batch_size):
            chunk = inputs[start : start + self.batch_size]
            try:
                out.extend(self.model.forward(self._collate(chunk)))
            except Exception as exc:
                if len(chunk) == 1:
                    out.append(f"the model failed on it: {type(exc).__name__}: {exc}")
                    continue
                log.warning("a batch of %d failed (%s); retrying one by one", len(chunk), exc)
                for one in range(len(chunk)):
                    out.extend(self._forward(chunk[one : one + 1]))
        return out

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on the readable images of a batch; pass the failures through."""
        import numpy as np

        errors = [str(e) for e in batch["error"]]
        results = [""] * len(errors)
        ok = [i for i, error in enumerate(errors) if not error]
        inputs = self._inputs(batch, ok) if ok else []
        for i, item in zip(ok, inputs, strict=True):
            if isinstance(item, str):
                errors[i] = item
        ready = [(i, item) for i, item in zip(ok, inputs, strict=True) if not isinstance(item, str)]
        if ready:
            outputs = self._forward([item for _, item in ready])
            for (i, _), raw in zip(ready, outputs, strict=True):
                if isinstance(raw, str):
                    errors[i] = raw
                else:
                    results[i] = encode_result(self.model.postprocess(raw, self.options))
        return {
            "id": batch["id"],
            "error": np.array(errors, dtype=object),
            "result": np.array(results, dtype=object),
            "providers": np.array([self.providers] * len(errors), dtype=object),
        }


class InterrogatorActor(TaggerActor):
    """``TaggerActor`` for an ``Interrogator``: the captioner's and CLIP's preprocessing of the
    decoded pixels runs here, where their processors are loaded."""

    model: Interrogator

    def _inputs(self, batch: dict[str, np.ndarray], rows: list[int]) -> list[Any]:
        """Each part's input for each row, as ``Interrogator.preprocess`` makes them."""
        from PIL import Image

        model = self.model
        inputs: list[Any] = []
        for i in rows:
            item: dict[str, Any] = {}
            try:
                if model.tagger is not None:
                    item["tags"] = batch["image"][i]
                if model.captioner is not None or model.clip_filter is not None:
                    image = Image.fromarray(batch["pixels"][i])
                    if model.captioner is not None:
                        item["caption"] = model.captioner.preprocess(image)
                    if model.clip_filter is not None:
                        item["clip"] = model.clip_filter.preprocess(image)
            except Exception as exc:
                inputs.append(f"{type(exc).__name__}: {exc}")
                continue
            inputs.append(item)
        return inputs

    def _collate(self, inputs: list[Any]) -> Any:
        """Each part's inputs stacked."""
        return self.model.collate(inputs)


# -- reading images ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _filesystem(uri: str) -> tuple[Any, str]:
    """The pyarrow filesystem and path of a URI (filesystems cached per bucket)."""
    from pyarrow import fs

    return fs.FileSystem.from_uri(uri)


def _read_bytes(uri: str) -> bytes:
    """The bytes of a file named by a URI."""
    scheme, path = fs_path(uri)
    bucket = "" if scheme == "file://" else path.split("/", 1)[0]
    filesystem, _ = _filesystem(f"{scheme}{bucket}/")
    with filesystem.open_input_file(path) as handle:
        return handle.readall()


def fs_path(uri: str) -> tuple[str, str]:
    """Split a URI into its scheme prefix and the filesystem path pyarrow uses.

    >>> fs_path("s3://bucket/a/b.png"), fs_path("file:///data/a.png")
    (('s3://', 'bucket/a/b.png'), ('file://', '/data/a.png'))
    """
    scheme, _, rest = uri.partition("://")
    return f"{scheme}://", rest


def decode_row(
    row: dict[str, Any], *, size: int, max_pixels: int, pixels: bool = False, draft: int = 0
) -> dict[str, Any]:
    """Load and preprocess one image (a Ray map task); a failure becomes the row's ``error``.

    ``image`` is the tagger's input (``size`` 0: no tagger, an empty placeholder); with
    ``pixels`` the row also carries the decoded RGB image (``uint8``, height x width x 3) for
    the parts that preprocess it in the actor. ``draft``: ``load_image``'s reduced JPEG decode.
    """
    import numpy as np

    from tagger.image import load_image
    from tagger.wd14 import prepare_image

    path = str(row["path"])
    error = ""
    array = rgb = None
    try:
        source: str | bytes = _read_bytes(path) if is_uri(path) else path
        image = load_image(source, max_pixels=max_pixels, draft=draft)
        if size:
            array = prepare_image(image, size)
        if pixels:
            rgb = np.asarray(image)
    except ImageLoadError as exc:
        error = exc.reason
    except OSError as exc:  # reading from an object store
        error = f"cannot read: {exc.strerror or exc}"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    if error or array is None:
        array = np.zeros((size or 1, size or 1, 3), dtype=np.float32)
    out = {"id": row["id"], "image": array, "error": error}
    if pixels:
        out["pixels"] = np.zeros((1, 1, 3), dtype=np.uint8) if error or rgb is None else rgb
    return out


# -- listing object stores -------------------------------------------------------------------------


def find_uri_images(uri: str, recursive: bool = False) -> Iterator[ImageItem]:
    """Yield the images under a URI with the local engine's rules (``find_images``).

    Name order, a folder's files before its sub-folders, hidden names skipped (same-stem images
    are found by the run's output plan). Items keep the URI's filesystem path in ``path`` and
    ``root``; ``uri_of`` turns them back into URIs.
    """
    from pyarrow import fs

    filesystem, base = _filesystem(uri)
    base = base.rstrip("/") or base
    info = filesystem.get_file_info(base)
    if info.type == fs.FileType.File:
        yield ImageItem(Path(base), Path(base).parent)
        return
    if info.type != fs.FileType.Directory:
        raise OptionsError(f"input {uri!r} does not exist (pass a file or folder URI)")
    listing = filesystem.get_file_info(fs.FileSelector(base, recursive=recursive))
    files: dict[str, list[str]] = {}
    folders: dict[str, list[str]] = {}
    for entry in listing:
        parent, _, name = entry.path.rstrip("/").rpartition("/")
        if entry.type == fs.FileType.Directory:
            folders.setdefault(parent, []).append(entry.path.rstrip("/"))
        elif entry.type == fs.FileType.File:
            files.setdefault(parent, []).append(name)
    yield from _walk_listing(base, Path(base), files, folders, recursive)


def _walk_listing(
    folder: str,
    root: Path,
    files: dict[str, list[str]],
    folders: dict[str, list[str]],
    recursive: bool,
) -> Iterator[ImageItem]:
    """``tagger.batch._walk`` over a listing held in memory."""
    for name in sorted(files.get(folder, [])):
        if name.startswith(".") or not is_image_path(name):
            continue
        yield ImageItem(Path(folder) / name, root)
    if recursive:
        for sub in sorted(folders.get(folder, [])):
            if not sub.rpartition("/")[2].startswith("."):
                yield from _walk_listing(sub, root, files, folders, recursive)


class _UriManifest(Manifest):
    """A manifest whose ``file_name`` for object-store images is their full URI."""

    uris: dict[Path, str]

    def file_name(self, image: Path) -> str:
        """The URI of an object-store image; else the local rule."""
        uri = self.uris.get(image)
        return uri if uri is not None else super().file_name(image)


class ParquetSink:
    """The manifest's records as a Parquet file: a local path or an object-store URI.

    Rows are buffered and written in row groups. A local file is written under a temporary name
    and renamed when closed; an object-store object becomes visible only when its upload
    completes on close. Either way a reader never sees half a file.
    """

    def __init__(
        self, target: str, outputs: Sequence[str] = ("tags",), rows_per_group: int = 10_000
    ) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.target = target
        self.rows_per_group = rows_per_group
        fields = [("file_name", pa.string()), ("text", pa.string())]
        if "tags" in outputs:
            fields += [
                ("rating", pa.string()),
                ("character", pa.list_(pa.string())),
                ("general", pa.list_(pa.string())),
            ]
        if "caption" in outputs:
            fields.append(("caption", pa.string()))
        self.schema = pa.schema(fields)
        self.columns = tuple(name for name, _ in fields)
        self._rows: list[dict[str, Any]] = []
        self.count = 0
        if is_uri(target):
            from pyarrow import fs

            filesystem, path = _filesystem(target)
            if isinstance(filesystem, fs.LocalFileSystem):  # object stores have no folders
                filesystem.create_dir(path.rpartition("/")[0], recursive=True)
            self._tmp: AtomicFile | None = None
            self._writer = pq.ParquetWriter(path, self.schema, filesystem=filesystem)
        else:
            from tagger.safeio import AtomicFile

            self._tmp = AtomicFile(target)
            self._writer = pq.ParquetWriter(self._tmp.handle, self.schema)

    def add(self, record: dict[str, Any]) -> None:
        """Buffer one record (written with the next full row group)."""
        self._rows.append({name: record.get(name) for name in self.columns})
        self.count += 1
        if len(self._rows) >= self.rows_per_group:
            self._flush()

    def _flush(self) -> None:
        """Write the buffered rows as one row group."""
        import pyarrow as pa

        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self.schema))
            self._rows = []

    def close(self) -> None:
        """Write what is left and put the file in place."""
        try:
            self._flush()
            self._writer.close()
        except BaseException:
            if self._tmp is not None:
                self._tmp.abort()
            raise
        if self._tmp is not None:
            self._tmp.commit()


# -- the run -------------------------------------------------------------------------------------


class RayBatchRun(BatchRun):
    """``BatchRun`` on Ray Data: same inputs, options, outputs, summary and callbacks.

    ``model`` is a ``ModelConfig`` or an ``InterrogatorConfig`` (each actor builds its own
    model from it; ``output_options`` places a caption written beside the tags). ``address`` is
    passed to ``ray.init`` when Ray is not initialised yet (``None``: a local cluster on this
    machine, ``"auto"``: the cluster this machine belongs to, ``"ray://host:10001"``: Ray Client).
    ``actors`` is the model pool's size (default: one per GPU, else half the CPUs). ``parquet``
    (a path or URI) also writes every tagged image's manifest record to one Parquet file.
    """

    def __init__(
        self,
        inputs: Sequence[str | os.PathLike[str]],
        model: RunConfig,
        tag_options: TagOptions | None = None,
        batch_options: BatchOptions | None = None,
        *,
        output_options: OutputOptions | None = None,
        address: str | None = None,
        actors: int = 0,
        parquet: str | None = None,
        progress: ProgressCallback | None = None,
        on_failure: FailureCallback | None = None,
        cancel: threading.Event | None = None,
        total: int | None = None,
    ) -> None:
        super().__init__(
            inputs,
            model,  # type: ignore[arg-type]  # the actors build the real model from it
            tag_options,
            batch_options,
            progress=progress,
            on_failure=on_failure,
            cancel=cancel,
            total=total,
            output_options=output_options,
        )
        if importlib.util.find_spec("ray") is None:
            _require_ray()
        self.config = model
        self.address = address
        self.actors = actors
        self.uris: dict[Path, str] = {}
        self._listed: list[ImageItem] | None = None
        self.parquet_target = parquet
        self.parquet: ParquetSink | None = None
        if any(is_uri(os.fspath(i)) for i in self.inputs) and self.output_dir is None:
            raise OptionsError(
                "images read from URIs need --output-dir DIR (a local folder) for their caption "
                "files; add --jsonl FILE for one manifest of every result"
            )

    def write(
        self, item: ImageItem, targets: Any, result: TagResult | ImageResult
    ) -> dict[str, Any]:
        """``BatchRun.write``, plus the image's record in the Parquet file when there is one."""
        record = super().write(item, targets, result)
        if self.parquet is not None:
            name = self.uris.get(item.path) or Path(os.path.abspath(item.path)).as_posix()
            self.parquet.add({"file_name": name, **record})
        return record

    # -- listing --------------------------------------------------------------------------------
    def _items(self) -> Iterator[ImageItem]:
        """Every input image, local paths and URIs, in input order."""
        for entry in self.inputs:
            text = os.fspath(entry)
            if not is_uri(text):
                yield from find_images([text], self.options.recursive)
                continue
            scheme, _ = fs_path(text)
            for item in find_uri_images(text, self.options.recursive):
                self.uris[item.path] = scheme + item.path.as_posix()
                yield item

    def items(self) -> Iterator[ImageItem]:
        """``_items`` listed once (an object-store listing is not repeated by the planning)."""
        if self._listed is None:
            self._listed = list(self._items())
        return iter(self._listed)

    def _plan_outputs(
        self,
        outputs: Callable[[ImageItem], list[tuple[str, Path]]],
        reserved: dict[Path, str],
    ) -> Plan:
        """The local plan, with object-store images identified by their URIs."""
        return plan_outputs(
            self.items, outputs, reserved=reserved, identity=lambda item: self.uris.get(item.path)
        )

    def _open_manifest(self) -> Manifest:
        """A manifest naming object-store images by their URIs."""
        manifest = _UriManifest(
            self.options.jsonl,  # type: ignore[arg-type]
            resume=self.options.on_existing == "skip",
            fsync=self.options.fsync,
        )
        manifest.uris = self.uris
        return manifest

    def _plan(self) -> list[ImageItem]:
        """Plan the outputs, report conflicts, count done images, return the images to tag."""
        apply = self.prepare().walker()
        todo: list[ImageItem] = []  # targets are computed again when writing: less memory
        for listed in self.items():
            item = apply(listed)
            if item is None:  # named again by another input: tagged once
                continue
            self.summary.found += 1
            targets = self.targets(item)
            reason = item.conflict
            if reason is None and not self.is_done(item, targets):
                reason = self.precheck(targets)
                if reason is None:
                    todo.append(item)
                    continue
            if reason is not None:
                self._fail(item.path, reason)
            else:
                self.summary.skipped += 1
                self._report(item.path)
        self._listed = None
        return todo

    # -- Ray -----------------------------------------------------------------------------------
    def _connect(self) -> tuple[Any, bool]:
        """``ray.init`` unless already connected; returns (ray, whether we started it)."""
        ray = _require_ray()
        if ray.is_initialized():
            return ray, False
        if self.address:
            ray.init(address=self.address)
        else:
            ray.init(include_dashboard=False)
        return ray, True

    def _use_gpus(self, ray: Any) -> int:
        """GPUs to run the model on: the cluster's, unless the CPU was asked for."""
        if self.config.wants_cpu:
            return 0
        return int(ray.cluster_resources().get("GPU", 0))

    def _batch_size(self, fixed: int | None, gpus: int) -> int:
        """The local engine's rule: the option, else the model's fixed batch; 1 CPU, 32 GPU."""
        size = self.options.batch_size or fixed or (32 if gpus else 1)
        if fixed and size % fixed:
            log.warning("the model runs batches of %d; using batch size %d", fixed, fixed)
            size = fixed
        return size

    def _dataset(self, ray: Any, todo: list[ImageItem]) -> Any:
        """The Ray dataset of results: listing -> decode tasks -> model actors."""
        from ray.data import DataContext

        context = DataContext.get_current()
        context.execution_options.preserve_order = True  # manifest lines in input order
        context.enable_progress_bars = False  # the command line shows its own
        # Retries: worker deaths are retried by Ray (below); exceptions raised by our own code are
        # bugs, not bad images (those are rows with an error), so they are not retried and a
        # block that fails stops the run instead of silently dropping its images.
        context.max_errored_blocks = 0
        context.retried_map_errors = False
        context.actor_task_retry_on_errors = False
        context.actor_init_max_retries = 3  # a model that fails to load is tried 3 times

        probe = ray.remote(num_cpus=1, max_retries=3)(_probe_model)
        size, fixed = _get(ray, probe.remote(self.config))
        gpus = self._use_gpus(ray)
        batch_size = self._batch_size(fixed, gpus)
        self.summary.batch_size = batch_size
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = self.actors or (gpus if gpus else max(1, cpus // 2))
        rows = [
            {"id": i, "path": self.uris.get(item.path, str(item.path))}
            for i, item in enumerate(todo)
        ]
        blocks = max(1, min(-(-len(rows) // ROWS_PER_BLOCK), MAX_BLOCKS))
        dataset = ray.data.from_items(rows, override_num_blocks=blocks)
        # Ray Data runs a map task again when its worker dies (``max_retries=-1`` is its
        # default); an unreadable image is a row with an error, so no user error is retried.
        dataset = dataset.map(
            decode_row,
            fn_kwargs={
                "size": size,
                "max_pixels": self.options.max_pixels,
                "pixels": self.config.needs_pixels,
                # --fast-decode: for a tagger alone, as in the local engine
                "draft": draft_side(
                    self.options.fast_decode, 0 if self.config.needs_pixels else size
                ),
            },
            num_cpus=1,
        )
        with warnings.catch_warnings():
            # Ray >= 2.60 warns that remote args passed this way will go; they are its defaults
            # there and are spelled out for the older releases this works with.
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            return self._model_stage(dataset, batch_size, actors, gpus)

    def _model_stage(self, dataset: Any, batch_size: int, actors: int, gpus: int) -> Any:
        """The actor pool that runs the model (restarted and retried when a worker dies)."""
        from ray.data import ActorPoolStrategy

        rows_per_call = batch_size * max(1, ROWS_PER_CALL // batch_size)
        actor = InterrogatorActor if isinstance(self.config, InterrogatorConfig) else TaggerActor
        return dataset.map_batches(
            actor,
            fn_constructor_kwargs={
                # Ray gives each GPU actor one GPU, which it sees as device 0.
                "config": self.config.on_gpu_actor() if gpus else self.config,
                "tag_options": dump(self.tag_options),
                "batch_size": batch_size,
            },
            batch_size=rows_per_call,
            batch_format="numpy",
            compute=ActorPoolStrategy(size=actors),
            num_gpus=1 if gpus else 0,
            num_cpus=0 if gpus else 1,
            max_restarts=-1,  # a dead actor is replaced...
            max_task_retries=-1,  # ...and its batch runs again on the new one
        )

    def run(self) -> Summary:
        """Tag every input image on the Ray cluster and return the summary."""
        start = time.perf_counter()
        ray, started = None, False
        try:
            todo = self._plan()
            if todo and not self.cancel.is_set():  # Ray starts only when there is work
                ray, started = self._connect()
                if self.parquet_target:
                    self.parquet = ParquetSink(self.parquet_target, self.config.outputs)
                self._consume(self._dataset(ray, todo), todo)
            if self.cancel.is_set():
                self.summary.cancelled = True
        finally:
            self._close_manifest()
            if self.parquet is not None:
                self.parquet.close()
            if started:
                ray.shutdown()
            self.summary.elapsed = time.perf_counter() - start
        return self.summary

    def _consume(self, dataset: Any, todo: list[ImageItem]) -> None:
        """Write results as they stream back, each image once."""
        written = bytearray(len(todo))  # guards against a result delivered twice
        batches = dataset.iter_batches(batch_format="numpy", batch_size=None)
        try:
            self._write_results(batches, todo, written)
        finally:
            close = getattr(batches, "close", None)
            if close is not None:  # stops the dataset's execution and its actors at once
                close()

    def _write_results(self, batches: Any, todo: list[ImageItem], written: bytearray) -> None:
        """Write each result row of the streamed batches (until cancelled)."""
        for batch in batches:
            providers = next((str(p) for p in batch["providers"] if p), "")
            if providers and not self.summary.providers:
                self.summary.providers = providers.split(",")
            for index, error, result in zip(
                batch["id"], batch["error"], batch["result"], strict=True
            ):
                if self.cancel.is_set():
                    return
                index = int(index)
                if written[index]:
                    continue
                written[index] = 1
                item = todo[index]
                if error:
                    self._fail(item.path, str(error))
                    continue
                self.summary.tagged += 1
                try:
                    self.write(item, self.targets(item), decode_result(str(result)))
                except (OutputError, OSError) as exc:
                    self._fail(item.path, write_failure(exc))
                    continue
                self.summary.written += 1
                self._report(item.path)


def _get(ray: Any, ref: Any) -> Any:
    """``ray.get`` that re-raises the core's own errors (a missing model, a bad provider)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, TaggerError):
            raise cause from None
        raise


def run_batch_ray(
    inputs: Sequence[str | os.PathLike[str]],
    model: RunConfig,
    tag_options: TagOptions | None = None,
    batch_options: BatchOptions | None = None,
    **kwargs: Any,
) -> Summary:
    """Tag ``inputs`` on Ray and write the outputs; see ``RayBatchRun``."""
    return RayBatchRun(inputs, model, tag_options, batch_options, **kwargs).run()
