"""float16 copies of WD14 ONNX models, for GPU providers (an explicit option, never a default).

SmilingWolf publishes float32 graphs only. ``fp16_model`` converts one with onnxruntime's own
converter (``onnxruntime.transformers.float16``), keeping the float32 input and output so the
rest of the pipeline is unchanged, and caches the result under ``$TAGGER_CACHE_DIR/fp16`` (or
``~/.cache/tagger/fp16``): a file per source model, named by a hash of the source's real path,
size and modification time, so a changed model is converted again. The copy is written to a
temporary file and renamed, so a killed conversion never leaves a truncated model behind.

Half precision changes the scores a little (docs/benchmarks.md gives the measured drift); on the
CPU it is also slower than float32 (onnxruntime's CPU kernels are float32), so ``WD14Tagger``
warns when an fp16 model ends up on the CPU.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from tagger.errors import MissingDependencyError, ModelLoadError, OptionsError

log = logging.getLogger("tagger")

#: Precisions a tagger runs in: the published float32 graph, or a float16 copy of it.
PRECISIONS = ("fp32", "fp16")
#: Bumped when the conversion changes, so old cached copies are not reused.
CONVERSION_VERSION = 1


def check_precision(precision: str) -> str:
    """Return ``precision`` if it is one of ``PRECISIONS``, else raise naming the choices.

    >>> check_precision("fp16")
    'fp16'
    """
    if precision not in PRECISIONS:
        raise OptionsError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    return precision


def cached_name(source: str | os.PathLike[str]) -> str:
    """File name of the float16 copy of ``source``: the model's folder and a hash of its real
    path, size and modification time (a changed or different file gets a different name)."""
    real = Path(os.path.realpath(source))
    stat = real.stat()
    key = f"{real}\0{stat.st_size}\0{stat.st_mtime_ns}\0{CONVERSION_VERSION}"
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    folder = Path(os.path.abspath(source)).parent.name or "model"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in folder)
    return f"{safe}-{Path(source).stem}-{digest}.onnx"


def convert_to_fp16(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Write a float16 copy of the ONNX model ``source`` to ``target`` (float32 input/output)."""
    try:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as exc:
        raise MissingDependencyError(
            f"--fp16 converts the model with the onnx package ({exc}): pip install onnx"
        ) from exc
    try:
        model = onnx.load(os.fspath(source))
        converted = convert_float_to_float16(model, keep_io_types=True)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot convert {os.fspath(source)!r} to float16: {exc}; run it in float32 "
            "(without --fp16)"
        ) from exc
    from tagger.safeio import AtomicFile

    data = converted.SerializeToString()  # taggers are far below protobuf's 2 GB limit
    with AtomicFile(target) as out:  # a killed conversion never leaves a truncated model
        out.write(data)


def fp16_model(
    source: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Path of the float16 copy of ``source``, converting it on first use.

    ``cache_dir`` defaults to ``$TAGGER_CACHE_DIR/fp16`` (``~/.cache/tagger/fp16``).
    """
    from tagger.hub import tagger_cache_dir

    folder = Path(cache_dir) if cache_dir is not None else tagger_cache_dir("fp16")
    target = folder / cached_name(source)
    if target.is_file():
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelLoadError(
            f"cannot create the float16 cache folder {os.fspath(folder)!r} ({exc}); set "
            "TAGGER_CACHE_DIR to a writable folder"
        ) from exc
    log.info("converting %s to float16 (once) into %s", os.fspath(source), target)
    convert_to_fp16(source, target)
    return target
