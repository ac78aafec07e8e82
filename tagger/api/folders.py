"""Can a local model folder load? Answered without loading it, cached per folder and file times.

``/tagger/v1/interrogators`` lists only folders that can load, and ``/models`` says why the
others cannot, so a client never picks a folder whose ``selected_tags.csv`` and ``model.onnx``
come from different models. Building an onnxruntime session takes seconds and gigabytes for
a real tagger; instead the CSV is parsed (as the loader parses it) and the ONNX file's input
and output shapes are read from its protobuf header, seeking past the weights (a few kB read
whatever the file's size). The checks are those the loader makes (``WD14Tagger._configure``):
one NHWC input with 3 channels and square sides, and as many outputs as the CSV has rows.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tagger.errors import ModelLoadError, TaggerError

Dims = tuple[int | str | None, ...]

# ONNX protobuf field numbers (onnx/onnx.proto).
_MODEL_GRAPH = 7
_GRAPH_INPUT, _GRAPH_OUTPUT = 11, 12
_VALUE_NAME, _VALUE_TYPE = 1, 2
_TYPE_TENSOR = 1
_TENSOR_SHAPE = 2
_SHAPE_DIM = 1
_DIM_VALUE, _DIM_PARAM = 1, 2
#: Largest input/output description read (a real one is well under 1 kB).
_MAX_VALUE_INFO = 1 << 20


class OnnxHeaderError(ValueError):
    """The file is not an ONNX model whose inputs and outputs can be read."""


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output: its name and dimensions (int, a symbolic name, or None)."""

    name: str
    dims: Dims | None


def _varint(stream: BinaryIO) -> int:
    """Read one base-128 varint from a stream (EOF inside one is an error)."""
    shift = result = 0
    while True:
        byte = stream.read(1)
        if not byte:
            raise OnnxHeaderError("the file ends inside a field")
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise OnnxHeaderError("a varint is longer than 10 bytes")


def _buffer_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Read one varint from ``data`` at ``pos``; returns (value, next position)."""
    shift = result = 0
    while True:
        if pos >= len(data):
            raise OnnxHeaderError("a message ends inside a field")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise OnnxHeaderError("a varint is longer than 10 bytes")


def _message_fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of every field of an in-memory protobuf message:
    an int for varints and fixed-size fields, the bytes of length-delimited ones."""
    pos = 0
    while pos < len(data):
        key, pos = _buffer_varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _buffer_varint(data, pos)
            yield field, wire, value
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            yield field, wire, int.from_bytes(data[pos : pos + size], "little")
            pos += size
        elif wire == 2:
            length, pos = _buffer_varint(data, pos)
            if pos + length > len(data):
                raise OnnxHeaderError("a field is longer than its message")
            yield field, wire, data[pos : pos + length]
            pos += length
        else:
            raise OnnxHeaderError(f"unsupported protobuf wire type {wire}")


def _signed(value: int) -> int:
    """An int64 read as an unsigned varint, as its signed value."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _dims(type_proto: bytes) -> Dims | None:
    """The dimensions of a TypeProto holding a tensor type (None when it has no shape)."""
    for field, wire, value in _message_fields(type_proto):
        if field != _TYPE_TENSOR or wire != 2:
            continue
        for tfield, twire, tvalue in _message_fields(value):  # type: ignore[arg-type]
            if tfield != _TENSOR_SHAPE or twire != 2:
                continue
            dims: list[int | str | None] = []
            for sfield, swire, dim in _message_fields(tvalue):  # type: ignore[arg-type]
                if sfield != _SHAPE_DIM or swire != 2:
                    continue
                entry: int | str | None = None
                for dfield, dwire, dvalue in _message_fields(dim):  # type: ignore[arg-type]
                    if dfield == _DIM_VALUE and dwire == 0:
                        entry = _signed(dvalue)  # type: ignore[arg-type]
                    elif dfield == _DIM_PARAM and dwire == 2:
                        entry = bytes(dvalue).decode("utf-8", "replace")  # type: ignore[arg-type]
                dims.append(entry)
            return tuple(dims)
    return None


def _value_info(data: bytes) -> TensorInfo:
    """A ValueInfoProto: name and dimensions."""
    name, dims = "", None
    for field, wire, value in _message_fields(data):
        if field == _VALUE_NAME and wire == 2:
            name = bytes(value).decode("utf-8", "replace")  # type: ignore[arg-type]
        elif field == _VALUE_TYPE and wire == 2:
            dims = _dims(value)  # type: ignore[arg-type]
    return TensorInfo(name, dims)


def _skip(stream: BinaryIO, wire: int) -> None:
    """Move past one field's value in a stream without reading it."""
    if wire == 0:
        _varint(stream)
    elif wire in (1, 5):
        stream.seek(8 if wire == 1 else 4, os.SEEK_CUR)
    elif wire == 2:
        stream.seek(_varint(stream), os.SEEK_CUR)
    else:
        raise OnnxHeaderError(f"unsupported protobuf wire type {wire}")


def onnx_io(path: str | os.PathLike[str]) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """The graph inputs and outputs of an ONNX file, in order, read without loading it.

    Only the model's graph is entered; its nodes and weights are skipped by seeking, so this
    reads a few kB of a file of any size. Raises ``OnnxHeaderError`` for a file that is not an
    ONNX model (or is cut short before its inputs and outputs), ``OSError`` if unreadable.
    Graph inputs of old files (IR version < 4) may include the weights' names, as in the file.
    """
    size = Path(path).stat().st_size
    with open(path, "rb") as stream:
        while stream.tell() < size:
            key = _varint(stream)
            field, wire = key >> 3, key & 7
            if field == 0:
                raise OnnxHeaderError("field number 0: not a protobuf message")
            if field != _MODEL_GRAPH or wire != 2:
                _skip(stream, wire)
                continue
            length = _varint(stream)
            end = stream.tell() + length
            if end > size:
                raise OnnxHeaderError("the graph is cut short (the file is incomplete)")
            inputs: list[TensorInfo] = []
            outputs: list[TensorInfo] = []
            while stream.tell() < end:
                key = _varint(stream)
                field, wire = key >> 3, key & 7
                if field in (_GRAPH_INPUT, _GRAPH_OUTPUT) and wire == 2:
                    length = _varint(stream)
                    if length > _MAX_VALUE_INFO:
                        raise OnnxHeaderError("an input or output description is too large")
                    info = _value_info(stream.read(length))
                    (inputs if field == _GRAPH_INPUT else outputs).append(info)
                else:
                    _skip(stream, wire)
            if stream.tell() != end:
                raise OnnxHeaderError("the graph's fields overrun it")
            return inputs, outputs
    raise OnnxHeaderError("no graph found: not an ONNX model")


def wd14_shape_problem(
    key: str, inputs: list[TensorInfo], outputs: list[TensorInfo], tags: int
) -> str | None:
    """Why a WD14 graph with these inputs and outputs cannot run with ``tags`` CSV rows, in
    the loader's words, or None. Unknown dimensions are not held against the model.

    >>> image = TensorInfo("input_1:0", ("batch", 448, 448, 3))
    >>> wd14_shape_problem("m", [image], [TensorInfo("out", ("batch", 10861))], 10861) is None
    True
    >>> print(wd14_shape_problem("m", [image], [TensorInfo("o", ("batch", 9083))], 10861))
    ... # doctest: +ELLIPSIS
    m: the model has 9083 outputs but selected_tags.csv lists 10861 tags; the two files come ...
    """
    # Several inputs: an old file listing its weights as inputs; the loader decides.
    if len(inputs) == 1:
        dims = inputs[0].dims
        if dims is not None and len(dims) != 4:
            return f"{key}: expected one NHWC image input, got {[(inputs[0].name, list(dims))]}"
        if dims is not None:
            _, height, width, channels = dims
            if isinstance(channels, int) and channels != 3:
                return f"{key}: input {list(dims)} is not NHWC with 3 channels"
            if isinstance(height, int) and isinstance(width, int) and height != width:
                return f"{key}: input {list(dims)} is not square"
    if not outputs:
        return f"{key}: the model has no outputs"
    count = outputs[0].dims[-1] if outputs[0].dims else None
    if isinstance(count, int) and count != tags:
        return (
            f"{key}: the model has {count} outputs but selected_tags.csv lists {tags} tags; "
            "the two files come from different models"
        )
    return None


def folder_problem(folder: Path, key: str) -> str | None:
    """Why the WD14 model folder ``folder`` (named ``key``) cannot load, or None."""
    from tagger.tags import load_labels

    try:
        tags = len(load_labels(folder / "selected_tags.csv").names)
    except TaggerError as exc:
        return str(exc)
    graph = folder / "model.onnx"
    try:
        inputs, outputs = onnx_io(graph)
    except OnnxHeaderError as exc:
        return f"{key}: {graph} is not a readable ONNX model ({exc}); download it again"
    except OSError as exc:
        return f"{key}: {graph} cannot be read ({exc.strerror or exc})"
    return wd14_shape_problem(key, inputs, outputs, tags)


def _signature(folder: Path) -> tuple[tuple[int, int], ...] | None:
    """Size and modification time of the folder's two files (None if one is missing)."""
    try:
        stats = [(folder / name).stat() for name in ("model.onnx", "selected_tags.csv")]
    except OSError:
        return None
    return tuple((stat.st_size, stat.st_mtime_ns) for stat in stats)


class FolderChecks:
    """``folder_problem`` per folder, cached until one of its files changes (size or time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[Path, tuple[tuple[tuple[int, int], ...] | None, str | None]] = {}

    def problem(self, folder: Path, key: str) -> str | None:
        """Why the folder cannot load, or None (read again only after its files changed)."""
        signature = _signature(folder)
        with self._lock:
            known = self._known.get(folder)
        if known is not None and known[0] == signature:
            return known[1]
        problem = folder_problem(folder, key)
        with self._lock:
            self._known[folder] = (signature, problem)
        return problem

    def require(self, folder: Path, key: str) -> None:
        """Raise ``ModelLoadError`` with the reason when the folder cannot load."""
        problem = self.problem(folder, key)
        if problem is not None:
            raise ModelLoadError(problem)
