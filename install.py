"""Installer the webui runs (in its own process, before starting; skipped with --skip-install).

It adds only what is missing and never changes what the webui pins (torch and its NVIDIA
wheels, transformers, gradio, numpy, pydantic, fastapi ...): each pip call carries a constraints
file holding their installed versions, so pip stops instead of replacing them. When everything
is present it makes no pip call at all.

onnxruntime: the build comes from the decision table in ``tagger/ort_table.py`` (the same table
``tagger doctor`` reports from), keyed on torch's CUDA major, cuDNN major and the Python
version: an onnxruntime-gpu release whose CUDA provider loads beside this torch's CUDA/cuDNN
libraries, plus, where torch lacks one (cuDNN 9 beside torch's cuDNN 8, say), NVIDIA's wheel
for it installed with ``pip install --target`` into tagger's gpu-libs folder, never into
``site-packages`` where it would replace torch's. An installed onnxruntime build of any other
flavour (-directml, -rocm, -openvino, the plain CPU package ...) is kept; an installed
onnxruntime-gpu built for another CUDA or cuDNN major than torch's (its provider can never
load here) is replaced by the table's build.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import launch

log = logging.getLogger("tagger")
HERE = Path(__file__).resolve().parent


def _load(name: str) -> ModuleType:
    """Import ``tagger/<name>.py`` by path (``tagger`` is not importable yet in the webui)."""
    spec = importlib.util.spec_from_file_location(
        f"_tagger_install_{name}", HERE / "tagger" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]  (dataclasses look it up)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


ort_table = _load("ort_table")
gpulibs = _load("gpulibs")

#: Any of these distributions provides the ``onnxruntime`` module: keep whichever is there.
ONNXRUNTIME_BUILDS = ort_table.ONNXRUNTIME_DISTRIBUTIONS
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
    """One package to add when missing: pip requirement, names that count as present, why.

    ``target`` set: installed with ``pip install --target`` into that folder (no dependencies).
    """

    requirement: str
    provided_by: tuple[str, ...]
    reason: str
    target: str | None = None


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name`` (None when absent)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def target_versions(folder: Path) -> dict[str, str]:
    """``name -> version`` of the distributions installed in a ``--target`` folder."""
    if not folder.is_dir():
        return {}
    found = {}
    for dist in importlib.metadata.distributions(path=[str(folder)]):
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        found[name] = dist.version
    return found


def onnxruntime_requirements(torch: Callable[[], object]) -> list[Requirement]:
    """What to install for onnxruntime with this torch. torch is consulted only when no
    onnxruntime is installed or the installed one is onnxruntime-gpu (whose build must fit)."""
    present = [name for name in ONNXRUNTIME_BUILDS if launch.is_installed(name)]
    if present and "onnxruntime-gpu" not in present:
        return []  # another flavour (CPU, DirectML, ROCm, OpenVINO...): the user's choice
    row = ort_table.choose(torch())
    todo: list[Requirement] = []
    if not present:
        todo.append(Requirement(row.onnxruntime, ONNXRUNTIME_BUILDS, f"{row.hosts}: {row.why}"))
    elif row.ort_version:
        version = installed_version("onnxruntime-gpu")
        have = ort_table.build_of(version) if version else None
        want = row.build
        if (
            have
            and want
            and (have.cuda_major, have.cudnn_major) != (want.cuda_major, want.cudnn_major)
        ):
            log.warning(
                "tagger: onnxruntime-gpu %s is built for CUDA %s / cuDNN %s, so its CUDA provider "
                "cannot load beside this torch (the build for it is CUDA %s / cuDNN %s); "
                "installing %s",
                version,
                have.cuda_major,
                have.cudnn_major,
                want.cuda_major,
                want.cudnn_major,
                row.onnxruntime,
            )
            todo.append(Requirement(row.onnxruntime, (), f"replaces onnxruntime-gpu {version}"))
    if row.gpu_libs:
        folder = gpulibs.gpu_libs_dir()
        have_libs = target_versions(folder)
        for wheel in row.gpu_libs:
            name, _, version = wheel.partition("==")
            if have_libs.get(name.lower()) != version:
                todo.append(
                    Requirement(wheel, (), f"{row.key}: beside torch's libraries", str(folder))
                )
    if row.key in ("rocm", "unknown-cuda") and not present:
        log.warning("tagger: %s: installing the CPU onnxruntime (%s)", row.hosts, row.why)
    return todo


def requirements() -> list[Requirement]:
    """The declarative table of what the extension needs besides onnxruntime."""
    return [
        Requirement("open_clip_torch", ("open_clip_torch", "open_clip"), "CLIP relevance filter"),
        Requirement("huggingface_hub>=0.20", ("huggingface_hub",), "model downloads"),
        Requirement("tqdm", ("tqdm",), "progress on the console"),
    ]


def is_present(names: tuple[str, ...]) -> bool:
    """True when any of these distributions (or modules) is installed."""
    return any(launch.is_installed(name) for name in names)


def missing(
    table: list[Requirement], torch: Callable[[], object] = ort_table.torch_build
) -> list[Requirement]:
    """onnxruntime's rows (see ``onnxruntime_requirements``), then the rows of ``table`` with
    nothing installed that provides them."""
    todo = onnxruntime_requirements(torch)
    return todo + [row for row in table if not is_present(row.provided_by)]


def protected_constraints() -> list[str]:
    """``name==version`` for every protected package installed here, and torch's NVIDIA wheels."""
    pins = []
    for name in PROTECTED:
        version = installed_version(name)
        if version:
            pins.append(f"{name}=={version}")
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] or ""
        if name.lower().startswith("nvidia-") and f"{name}==" not in "\n".join(pins):
            pins.append(f"{name}=={dist.version}")
    return pins


def install(todo: list[Requirement]) -> None:
    """One pip call per missing package, each constrained to keep the webui's versions (a
    ``--target`` install goes to tagger's own folder with ``--no-deps`` instead)."""
    pins = protected_constraints()
    with tempfile.TemporaryDirectory(prefix="tagger-install-") as folder:
        constraints = Path(folder) / "constraints.txt"
        constraints.write_text("\n".join(pins) + "\n", encoding="utf-8")
        for row in todo:
            if row.target:  # outside site-packages, no dependencies: nothing of torch's moves
                command = f'install --target "{row.target}" --no-deps --upgrade "{row.requirement}"'
            else:
                command = f'install "{row.requirement}" -c "{constraints}"'
            launch.run_pip(command, f"tagger requirement: {row.requirement} ({row.reason})")


def main() -> None:
    """Install what is missing."""
    todo = missing(requirements())
    if todo:
        install(todo)


if __name__ == "__main__":
    main()
