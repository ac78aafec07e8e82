"""Shared pieces of the torch captioners: optional imports, device choice, safe checkpoints.

Nothing here imports torch at module import time; every function imports what it needs.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagger.errors import (
    MissingDependencyError,
    ModelLoadError,
    ProviderError,
    UnsafeCheckpointError,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger("tagger")

INSTALL_HINT = (
    "install the captioner extra: pip install 'tagger[caption]' "
    "(torch, torchvision, transformers, open_clip_torch, safetensors)"
)


def require(module: str) -> Any:
    """Import an optional library of the ``caption`` extra, or raise MissingDependencyError."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(f"{module} is not installed: {INSTALL_HINT}") from exc


def torch_device_for(providers: str | None) -> str:
    """The torch device for onnxruntime provider names (cuda/rocm/tensorrt -> cuda, all cpu ->
    cpu, else auto), so one ``--device`` setting drives taggers and captioners.

    >>> torch_device_for("cuda,cpu"), torch_device_for("cpu"), torch_device_for("auto")
    ('cuda', 'cpu', 'auto')
    """
    names = [p.strip().lower() for p in (providers or "").split(",") if p.strip()]
    if any(n in {"cuda", "rocm", "tensorrt"} for n in names):
        return "cuda"
    if names and all(n == "cpu" for n in names):
        return "cpu"
    return "auto"


def pick_device(device: str | None = "auto", device_id: int = 0) -> torch.device:
    """The torch device for a ``--device`` value.

    ``auto`` (or None) takes CUDA (or ROCm, which torch also calls cuda) when available, else the
    CPU. A list such as ``cuda,cpu`` takes its first usable entry. A GPU requested explicitly but
    not usable raises ProviderError; there is no silent CPU fallback.
    """
    torch = require("torch")
    names = [part.strip().lower() for part in (device or "auto").split(",") if part.strip()]
    names = names or ["auto"]
    for index, name in enumerate(names):
        if name == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda", device_id)
            return torch.device("cpu")
        if name == "cpu":
            return torch.device("cpu")
        if name in {"cuda", "rocm", "gpu"} or name.startswith("cuda:"):
            if torch.cuda.is_available():
                return torch.device(name if ":" in name else f"cuda:{device_id}")
            if index + 1 < len(names):
                continue
            raise ProviderError(
                f"device {name!r} was requested but torch sees no CUDA/ROCm GPU "
                f"(torch {torch.__version__}); install a CUDA build of torch or pass --device cpu"
            )
        if name == "mps":
            if torch.backends.mps.is_available():
                return torch.device("mps")
            raise ProviderError("device 'mps' was requested but torch cannot use it here")
    raise ProviderError(
        f"device {device!r} is not usable by the torch captioners: use auto, cpu, cuda or mps"
    )


def device_label(device: torch.device) -> str:
    """How a torch device is named in run summaries (``torch-cpu``, ``torch-cuda:0``)."""
    return f"torch-{device}"


def _unwrap(data: Any, path: Path) -> dict[str, Any]:
    """The tensor dict of a checkpoint (a plain state dict, or one under state_dict/model)."""
    torch = require("torch")
    if isinstance(data, dict):
        for key in ("state_dict", "model"):
            inner = data.get(key)
            if isinstance(inner, dict) and all(torch.is_tensor(v) for v in inner.values()):
                return inner
        if all(torch.is_tensor(v) for v in data.values()):
            return data
    raise ModelLoadError(
        f"{path}: not a state dict of tensors (got {type(data).__name__}); save the weights "
        f"with torch.save(model.state_dict(), ...) or as .safetensors"
    )


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a checkpoint's tensors without ever executing pickled code.

    ``.safetensors`` files are read with safetensors; anything else with
    ``torch.load(weights_only=True)``, which refuses pickles that would call functions or build
    arbitrary objects: such a file raises UnsafeCheckpointError.
    """
    file = Path(path)
    if not file.is_file():
        raise ModelLoadError(f"checkpoint {str(file)!r} does not exist")
    if file.suffix == ".safetensors":
        safetensors_torch = require("safetensors.torch")
        try:
            return dict(safetensors_torch.load_file(str(file), device="cpu"))
        except Exception as exc:
            raise ModelLoadError(f"{file}: not a readable safetensors file: {exc}") from exc
    torch = require("torch")
    import pickle

    try:
        data = torch.load(str(file), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"{file}: refused to load: the checkpoint is a pickle that would run code or build "
            f"objects other than tensors ({str(exc).splitlines()[0][:200]}). Only plain state "
            f"dicts are loaded; convert a trusted copy to .safetensors."
        ) from exc
    except Exception as exc:
        raise ModelLoadError(f"{file}: cannot read the checkpoint: {exc}") from exc
    return _unwrap(data, file)
