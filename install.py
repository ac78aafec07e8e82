"""Installer the webui runs (in its own process, before starting; skipped with --skip-install).

It adds only what is missing, from the table below, and never upgrades what the webui pins
(torch, transformers, gradio, numpy, pydantic, fastapi ...): the pip call carries a constraints
file holding their installed versions, so pip stops instead of replacing them. When everything
is present it makes no pip call at all.

onnxruntime: an existing build of any flavour (-gpu, -directml, -rocm, -silicon, -openvino) is
kept. Otherwise, with a CUDA build of torch, onnxruntime-gpu matching torch's CUDA major version
(12: the current release on PyPI; 11: the 1.17/1.18 releases, the last built for CUDA 11.8 on
PyPI); with any other torch, the plain (CPU) onnxruntime. The tagger tells at run time when a GPU
provider is missing, and names the package to install.
"""

from __future__ import annotations

import importlib.metadata
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import launch

log = logging.getLogger("tagger")

#: Any of these distributions provides the ``onnxruntime`` module: keep whichever is there.
ONNXRUNTIME_BUILDS = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-directml",
    "onnxruntime-rocm",
    "onnxruntime-silicon",
    "onnxruntime-openvino",
    "ort-nightly-gpu",
)
#: Packages the webui pins: never upgraded or downgraded by this installer.
PROTECTED = (
    "torch",
    "torchvision",
    "transformers",
    "gradio",
    "gradio_client",
    "numpy",
    "pydantic",
    "fastapi",
    "starlette",
    "Pillow",
    "huggingface_hub",
    "protobuf",
    "timm",
)


@dataclass(frozen=True)
class Requirement:
    """One package to add when missing: pip requirement, names that count as present, why."""

    requirement: str
    provided_by: tuple[str, ...]
    reason: str


def torch_cuda_major() -> int | None:
    """The CUDA major version torch was built for (None: CPU, ROCm, MPS or no torch)."""
    try:
        import torch
    except Exception:
        return None
    version = getattr(getattr(torch, "version", None), "cuda", None)
    if not version or getattr(torch.version, "hip", None):
        return None
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return None


def onnxruntime_requirement(cuda_major: Callable[[], int | None]) -> Requirement:
    """The onnxruntime build to add for this torch (asked only when none is installed)."""
    major = cuda_major()
    if major is not None and major >= 12:
        return Requirement(
            "onnxruntime-gpu>=1.19",
            ONNXRUNTIME_BUILDS,
            f"torch is built for CUDA {major}: onnxruntime-gpu (CUDA 12 build)",
        )
    if major == 11:
        log.warning(
            "tagger: torch is built for CUDA 11; installing onnxruntime-gpu 1.18, the last "
            "release built for CUDA 11.8 on PyPI. For a newer one, install onnxruntime-gpu from "
            "onnxruntime's CUDA 11 package index (see onnxruntime.ai, 'Install ONNX Runtime', "
            "CUDA 11.x), or use a CUDA 12 build of torch."
        )
        return Requirement(
            "onnxruntime-gpu>=1.17,<1.19",
            ONNXRUNTIME_BUILDS,
            "torch is built for CUDA 11: onnxruntime-gpu 1.18 (CUDA 11.8 build)",
        )
    return Requirement("onnxruntime>=1.17", ONNXRUNTIME_BUILDS, "no CUDA torch: CPU onnxruntime")


def requirements(cuda_major: Callable[[], int | None] = torch_cuda_major) -> list[Requirement]:
    """The declarative table of what the extension needs (onnxruntime decided lazily)."""
    return [
        _LazyOnnxruntime(cuda_major),  # type: ignore[list-item]
        Requirement("open_clip_torch", ("open_clip_torch", "open_clip"), "CLIP relevance filter"),
        Requirement("huggingface_hub>=0.20", ("huggingface_hub",), "model downloads"),
        Requirement("tqdm", ("tqdm",), "progress on the console"),
    ]


class _LazyOnnxruntime:
    """The onnxruntime row: which build to add is only worked out (importing torch) if needed."""

    provided_by = ONNXRUNTIME_BUILDS

    def __init__(self, cuda_major: Callable[[], int | None]) -> None:
        self._cuda_major = cuda_major

    def resolve(self) -> Requirement:
        """The concrete requirement."""
        return onnxruntime_requirement(self._cuda_major)


def is_present(names: tuple[str, ...]) -> bool:
    """True when any of these distributions (or modules) is installed."""
    return any(launch.is_installed(name) for name in names)


def missing(table: list) -> list[Requirement]:
    """The rows of ``table`` with nothing installed that provides them."""
    todo = []
    for row in table:
        if is_present(row.provided_by):
            continue
        todo.append(row.resolve() if isinstance(row, _LazyOnnxruntime) else row)
    return todo


def protected_constraints() -> list[str]:
    """``name==version`` for every protected package installed here."""
    pins = []
    for name in PROTECTED:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def install(todo: list[Requirement]) -> None:
    """One pip call per missing package, each constrained to keep the webui's versions."""
    pins = protected_constraints()
    with tempfile.TemporaryDirectory(prefix="tagger-install-") as folder:
        constraints = Path(folder) / "constraints.txt"
        constraints.write_text("\n".join(pins) + "\n", encoding="utf-8")
        for row in todo:
            launch.run_pip(
                f'install "{row.requirement}" -c "{constraints}"',
                f"tagger requirement: {row.requirement} ({row.reason})",
            )


def main() -> None:
    """Install what is missing."""
    todo = missing(requirements())
    if todo:
        install(todo)


if __name__ == "__main__":
    main()
