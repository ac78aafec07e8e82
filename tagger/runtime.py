"""onnxruntime sessions with explicitly chosen execution providers.

onnxruntime silently runs on the CPU when a GPU provider cannot start (missing CUDA or cuDNN
libraries, a CPU-only build). Here a provider the user asked for is either used or reported:
``resolve_providers`` refuses providers this onnxruntime build lacks, and ``create_session``
checks that the session really got the provider it was given.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from tagger.errors import MissingDependencyError, ModelLoadError, ProviderError

if TYPE_CHECKING:
    import onnxruntime

log = logging.getLogger("tagger")

#: Short names users type, mapped to onnxruntime's provider names.
PROVIDER_NAMES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
#: GPU providers tried, in this order, by ``auto``. TensorRT is never picked implicitly: it
#: builds engines for minutes on first use.
AUTO_ORDER = ("cuda", "rocm", "migraphx", "directml", "coreml")
#: Providers that take a ``device_id`` option.
DEVICE_ID_PROVIDERS = frozenset({"cuda", "tensorrt", "rocm", "migraphx", "directml"})

_INSTALL_HINT = {
    "cuda": "pip install onnxruntime-gpu (and remove the CPU-only onnxruntime package)",
    "tensorrt": "pip install onnxruntime-gpu with TensorRT installed",
    "rocm": "install onnxruntime-rocm from AMD's ROCm wheels",
    "migraphx": "install onnxruntime-rocm from AMD's ROCm wheels",
    "directml": "pip install onnxruntime-directml (Windows)",
    "coreml": "use the standard onnxruntime package on macOS",
    "openvino": "pip install onnxruntime-openvino",
}


def import_onnxruntime() -> ModuleType:
    """Import onnxruntime, or explain how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError(
            "onnxruntime is not installed: pip install onnxruntime (CPU) or onnxruntime-gpu "
            "(NVIDIA CUDA); install exactly one of them"
        ) from exc
    return onnxruntime


def short_name(provider: str) -> str:
    """Map an onnxruntime provider name or a short name to the short name.

    >>> short_name("CUDAExecutionProvider"), short_name("CUDA")
    ('cuda', 'cuda')
    """
    lowered = provider.strip().lower()
    for short, full in PROVIDER_NAMES.items():
        if lowered in (short, full.lower()):
            return short
    if lowered == "dml":
        return "directml"
    valid = ", ".join(["auto", *PROVIDER_NAMES])
    raise ProviderError(f"unknown execution provider {provider!r}: use one of {valid}")


def parse_providers(text: str | Sequence[str] | None) -> list[str]:
    """Turn ``"cuda,cpu"`` (or a list) into short names; empty or ``auto`` means ``["auto"]``.

    >>> parse_providers("CUDA, cpu")
    ['cuda', 'cpu']
    """
    if text is None:
        return ["auto"]
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [item.strip() for item in items if item.strip()]
    if not names or [n.lower() for n in names] == ["auto"]:
        return ["auto"]
    if any(n.lower() == "auto" for n in names):
        raise ProviderError(
            f"'auto' cannot be combined with other providers ({', '.join(names)}): "
            "name the providers, or use auto alone"
        )
    return [short_name(name) for name in names]


def resolve_providers(
    requested: Sequence[str],
    available: Sequence[str],
    *,
    device_id: int = 0,
) -> list[tuple[str, dict[str, Any]]]:
    """Choose onnxruntime providers with their options.

    ``requested`` holds short names (see ``parse_providers``). ``auto`` takes the first GPU
    provider this build offers, else the CPU. An explicitly requested provider that the build
    lacks raises ``ProviderError`` naming what is available and how to get the missing one. The
    CPU provider is always last, for the few operators a GPU provider does not implement.

    >>> resolve_providers(["auto"], ["CPUExecutionProvider"])
    [('CPUExecutionProvider', {})]
    >>> resolve_providers(["cuda"], ["CUDAExecutionProvider", "CPUExecutionProvider"], device_id=1)
    [('CUDAExecutionProvider', {'device_id': 1}), ('CPUExecutionProvider', {})]
    """
    if device_id < 0:
        raise ProviderError(f"device id {device_id} is negative: use 0 for the first GPU")
    names = list(requested)
    if names == ["auto"]:
        names = [*[s for s in AUTO_ORDER if PROVIDER_NAMES[s] in available][:1], "cpu"]
    chosen: list[tuple[str, dict[str, Any]]] = []
    for short in sorted(names, key=lambda name: name == "cpu"):  # the CPU goes last
        full = PROVIDER_NAMES[short]
        if full not in available:
            offered = ", ".join(short_name(p) for p in available if p in PROVIDER_NAMES.values())
            raise ProviderError(
                f"execution provider {short!r} was requested but this onnxruntime offers only "
                f"{offered or 'none'}; {_INSTALL_HINT.get(short, 'install a build that has it')}, "
                "or choose --device cpu"
            )
        options = {"device_id": device_id} if short in DEVICE_ID_PROVIDERS else {}
        if all(full != c[0] for c in chosen):
            chosen.append((full, options))
    if all(c[0] != "CPUExecutionProvider" for c in chosen):
        chosen.append(("CPUExecutionProvider", {}))
    return chosen


def session_options(ort: ModuleType, *, threads: int = 0) -> onnxruntime.SessionOptions:
    """Session options: full graph optimisation, thread pools that sleep instead of spinning;
    ``threads`` > 0 caps intra-op threads.

    A spinning pool keeps every core busy between operators, so the threads decoding the next
    images (and the rest of the host, e.g. the webui) only get the CPU by preempting it.
    Sleeping threads leave those cycles free: measured in ``benchmarks/``, end-to-end batch
    runs are as fast or faster (up to 6 % at 4096 px) without spinning, while a bare session run
    one image at a time can be up to ~10 % slower (docs/benchmarks.md).
    """
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if threads > 0:
        opts.intra_op_num_threads = threads
    return opts


def create_session(
    model_path: str | os.PathLike[str],
    providers: Sequence[str] | str | None = None,
    *,
    device_id: int = 0,
    threads: int = 0,
) -> onnxruntime.InferenceSession:
    """Open an ONNX model on the chosen providers and verify they are the ones in use.

    Before a CUDA session, the CUDA provider's libraries are loaded from torch's NVIDIA wheels
    and tagger's gpu-libs folder (``tagger.doctor.preload_cuda``). When a requested CUDA
    provider is missing or cannot start, the error names the libraries it lacks and the one
    command that fixes it (``tagger doctor`` has the full report).
    """
    ort = import_onnxruntime()
    requested = parse_providers(providers)
    try:
        chosen = resolve_providers(requested, ort.get_available_providers(), device_id=device_id)
    except ProviderError as exc:
        hint = _cuda_hint(ort) if {"cuda", "tensorrt"} & set(requested) else ""
        if not hint:
            raise
        raise ProviderError(f"{exc}. {hint}") from exc
    wants_cuda = any(name in _CUDA_PROVIDERS for name, _ in chosen)
    if wants_cuda:
        from tagger.doctor import preload_cuda

        preload_cuda(ort)
    try:
        session = ort.InferenceSession(
            os.fspath(model_path),
            sess_options=session_options(ort, threads=threads),
            providers=[name for name, _ in chosen],
            provider_options=[opts for _, opts in chosen],
        )
    except Exception as exc:
        about_libraries = re.search(r"cuda|cudnn|cublas|\.so|\.dll|provider", str(exc), re.I)
        hint = _cuda_hint(ort) if wants_cuda and about_libraries else ""
        raise ModelLoadError(
            f"onnxruntime cannot load {os.fspath(model_path)!r}: {exc}"
            + (f". {hint}" if hint else "")
        ) from exc
    active = session.get_providers()
    dropped = [name for name, _ in chosen if name not in active]
    if dropped:
        message = (
            f"{', '.join(short_name(n) for n in dropped)} could not start (its libraries, e.g. "
            f"CUDA/cuDNN, are missing or do not match this onnxruntime {ort.__version__}); "
            f"running on {', '.join(short_name(n) for n in active)}"
        )
        hint = _cuda_hint(ort) if any(n in _CUDA_PROVIDERS for n in dropped) else ""
        if hint:
            message += f". {hint}"
        if requested != ["auto"]:
            raise ProviderError(message + ". Fix the GPU libraries or choose --device cpu.")
        log.warning("%s", message)
    return session


#: Providers that load onnxruntime's CUDA provider library (and so its CUDA/cuDNN libraries).
_CUDA_PROVIDERS = frozenset({"CUDAExecutionProvider", "TensorrtExecutionProvider"})


def _cuda_hint(ort: ModuleType) -> str:
    """``tagger doctor``'s verdict in one sentence: the missing libraries and the fix."""
    from tagger.doctor import cuda_hint

    return cuda_hint(ort)
