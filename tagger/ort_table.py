"""Which onnxruntime build to install beside the host's torch: ONE table, read by ``install.py``
(inside the webui, before ``tagger`` is importable: it loads this file by path) and by
``tagger doctor``.

The CUDA provider of an ``onnxruntime-gpu`` release links one CUDA major and one cuDNN major
(read from the wheels on PyPI: ``ORT_BUILDS``). torch brings its own CUDA and cuDNN (NVIDIA's pip
wheels on Linux, DLLs in ``torch/lib`` on Windows). The provider loads only when every library
it needs exists with the same soname, so the choice follows torch's CUDA major and cuDNN major,
and, where the wheels differ, the Python version. Nothing torch depends on is ever changed:
a library torch lacks is installed with ``pip install --target`` into tagger's own folder
(``gpu_libs``, see ``tagger.gpulibs.gpu_libs_dir``) and loaded from there by path.

Every row was checked without a GPU by ``tools/ortgpu_evidence.py``: each library the chosen
provider needs resolves, soname and major version, among the wheels that torch pins plus the
row's ``gpu_libs`` (docs/onnxruntime-gpu.md has the table and the evidence).

Standard library only; no import of the rest of ``tagger``.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass

_CUDA12 = ("libcublasLt.so.12", "libcublas.so.12", "libcurand.so.10", "libcufft.so.11")

#: Distributions that each install the ``onnxruntime`` module (only one belongs in an
#: environment; the installer keeps whichever is there, the doctor names a second one).
ONNXRUNTIME_DISTRIBUTIONS = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-directml",
    "onnxruntime-rocm",
    "onnxruntime-migraphx",
    "onnxruntime-silicon",
    "onnxruntime-openvino",
    "onnxruntime-qnn",
    "ort-nightly-gpu",
)


@dataclass(frozen=True)
class OrtBuild:
    """Releases of onnxruntime-gpu on PyPI built alike (Linux x86_64 wheels, read with
    ``tools/ortgpu_evidence.py survey``).

    ``first``..``last`` are inclusive versions; ``needs`` the sonames the CUDA provider library
    links (``DT_NEEDED``, driver excluded); ``runtime_loaded`` the ones onnxruntime opens
    itself when the provider starts (not in ``DT_NEEDED``).
    """

    first: str
    last: str
    cuda_major: int
    cudnn_major: int
    needs: tuple[str, ...]
    runtime_loaded: tuple[str, ...] = ()
    built_with_cuda: str = ""

    def holds(self, version: str) -> bool:
        """True when ``version`` lies in this family's range.

        >>> ORT_BUILDS[0].holds("1.18.1"), ORT_BUILDS[0].holds("1.19.0")
        (True, False)
        """
        return version_tuple(self.first) <= version_tuple(version) <= version_tuple(self.last)


#: onnxruntime-gpu releases on PyPI, by build family (tools/ortgpu_evidence.json, "builds").
ORT_BUILDS: tuple[OrtBuild, ...] = (
    OrtBuild(
        "1.17.0",
        "1.18.1",
        11,
        8,
        (
            "libcublasLt.so.11",
            "libcublas.so.11",
            "libcudnn.so.8",
            "libcurand.so.10",
            "libcufft.so.10",
            "libcudart.so.11.0",
        ),
    ),
    OrtBuild("1.19.0", "1.19.2", 12, 9, (*_CUDA12, "libcudart.so.12", "libcudnn.so.9")),
    OrtBuild(
        "1.20.0",
        "1.20.2",
        12,
        9,
        (
            *_CUDA12,
            "libcudart.so.12",
            "libcudnn.so.9",
            "libcudnn_adv.so.9",
            "libcudnn_ops.so.9",
            "libcudnn_cnn.so.9",
            "libcudnn_graph.so.9",
            "libcudnn_engines_runtime_compiled.so.9",
            "libcudnn_engines_precompiled.so.9",
            "libcudnn_heuristic.so.9",
            "libnvrtc.so.12",
        ),
    ),
    OrtBuild(
        "1.21.0",
        "1.22.0",
        12,
        9,
        (*_CUDA12, "libcudart.so.12", "libcudnn.so.9", "libnvrtc.so.12"),
        built_with_cuda="12.2",
    ),
    OrtBuild(
        "1.23.0",
        "1.23.2",
        12,
        9,
        (*_CUDA12, "libcudart.so.12", "libcudnn.so.9"),
        built_with_cuda="12.2",
    ),
    OrtBuild(
        "1.24.0",
        "1.26.0",
        12,
        9,
        (*_CUDA12, "libcudart.so.12", "libcudnn.so.9"),
        built_with_cuda="12.8",
    ),
    OrtBuild(
        "1.27.0",
        "1.27.0",
        13,
        9,
        (
            "libcublasLt.so.13",
            "libcublas.so.13",
            "libcurand.so.10",
            "libcufft.so.12",
            "libcudart.so.13",
            "libnvrtc.so.13",
            "libcudnn.so.9",
        ),
        built_with_cuda="13.0",
    ),
    OrtBuild(
        "1.28.0",
        "1.31.1",
        13,
        9,
        ("libcublasLt.so.13", "libcublas.so.13", "libcurand.so.10", "libcudart.so.13"),
        runtime_loaded=("libcudnn.so.9", "libcufft.so.12"),
        built_with_cuda="13.0",
    ),
)


@dataclass(frozen=True)
class TorchBuild:
    """What the table is keyed on: torch's build and the interpreter.

    ``cuda`` is ``torch.version.cuda`` ("12.1"), ``cudnn`` ``torch.backends.cudnn.version()``
    (8902, 91002), ``hip`` ``torch.version.hip``; ``version`` is None when torch is absent.
    """

    version: str | None
    cuda: str | None = None
    cudnn: int | None = None
    hip: str | None = None
    python: tuple[int, int] = (3, 10)
    system: str = "Linux"
    machine: str = "x86_64"

    @property
    def cuda_major(self) -> int | None:
        """torch's CUDA major version (None: not a CUDA build).

        >>> TorchBuild("2.1.2+cu121", cuda="12.1").cuda_major
        12
        """
        if not self.cuda or self.hip:
            return None
        head = str(self.cuda).split(".")[0]
        return int(head) if head.isdigit() else None

    @property
    def cuda_minor(self) -> int:
        """torch's CUDA minor version (0 when unknown)."""
        parts = str(self.cuda or "").split(".")
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0

    @property
    def cudnn_major(self) -> int | None:
        """cuDNN's major version: from ``cudnn`` when torch reported it, else what torch of
        that version ships (cuDNN 8 up to torch 2.3, 9 from 2.4; CUDA 11 builds: 8).

        >>> TorchBuild("2.1.2", cuda="12.1", cudnn=8902).cudnn_major
        8
        >>> TorchBuild("2.8.0", cuda="12.8", cudnn=91002).cudnn_major
        9
        >>> TorchBuild("2.3.1+cu121", cuda="12.1").cudnn_major
        8
        """
        if self.cudnn:
            return self.cudnn // 10000 if self.cudnn >= 10000 else self.cudnn // 1000
        major = self.cuda_major
        if major is None:
            return None
        if major <= 11:
            return 8
        return 8 if version_tuple(self.version or "0")[:2] < (2, 4) else 9


@dataclass(frozen=True)
class Row:
    """One decision: for the torch builds ``hosts`` describes, install ``onnxruntime`` (a pip
    requirement) and, with ``pip install --target`` into tagger's gpu-libs folder, ``gpu_libs``.

    ``provider`` names the GPU provider the row gives (``cuda``; None for a CPU row) and
    ``why`` says why this build, in a sentence users read in ``tagger doctor``.
    """

    key: str
    hosts: str
    onnxruntime: str
    gpu_libs: tuple[str, ...] = ()
    provider: str | None = "cuda"
    why: str = ""

    @property
    def ort_version(self) -> str | None:
        """The pinned onnxruntime-gpu version (None for a CPU row)."""
        name, _, version = self.onnxruntime.partition("==")
        return version if name == "onnxruntime-gpu" and version else None

    @property
    def build(self) -> OrtBuild | None:
        """The build family of the pinned version."""
        return build_of(self.ort_version) if self.ort_version else None


#: cuDNN 9 for CUDA 12, added beside a torch that ships cuDNN 8 (other soname: no clash).
CUDNN9_CU12 = "nvidia-cudnn-cu12==9.1.0.70"
#: The CUDA 12 runtime, cuBLAS and cuFFT a CUDA 12 onnxruntime needs beside a CUDA 13 torch.
CUDA12_RUNTIME = (
    "nvidia-cuda-runtime-cu12==12.8.90",
    "nvidia-cublas-cu12==12.8.4.1",
    "nvidia-cufft-cu12==11.3.3.83",
)

#: NVIDIA's wheel that ships each soname, per CUDA major of the onnxruntime build, at the
#: versions the proofs used (torch 2.8.0's CUDA 12.8 set, torch 2.14.1's CUDA 13 set, torch's
#: CUDA 11.8 pins). A soname in a CUDA 12 build's list comes from the ``-cu12`` wheel, and so on.
LIBRARY_WHEELS: dict[int, dict[str, str]] = {
    11: {
        "libcudart.so.11.0": "nvidia-cuda-runtime-cu11==11.8.89",
        "libcublas.so.11": "nvidia-cublas-cu11==11.11.3.6",
        "libcublasLt.so.11": "nvidia-cublas-cu11==11.11.3.6",
        "libcufft.so.10": "nvidia-cufft-cu11==10.9.0.58",
        "libcurand.so.10": "nvidia-curand-cu11==10.3.0.86",
        "libcudnn.so.8": "nvidia-cudnn-cu11==8.7.0.84",
    },
    12: {
        "libcudart.so.12": "nvidia-cuda-runtime-cu12==12.8.90",
        "libcublas.so.12": "nvidia-cublas-cu12==12.8.4.1",
        "libcublasLt.so.12": "nvidia-cublas-cu12==12.8.4.1",
        "libcufft.so.11": "nvidia-cufft-cu12==11.3.3.83",
        "libcurand.so.10": "nvidia-curand-cu12==10.3.9.90",
        "libnvrtc.so.12": "nvidia-cuda-nvrtc-cu12==12.8.93",
        "libcudnn.so.9": CUDNN9_CU12,
    },
    13: {
        "libcudart.so.13": "nvidia-cuda-runtime==13.0.96",
        "libcublas.so.13": "nvidia-cublas==13.1.1.3",
        "libcublasLt.so.13": "nvidia-cublas==13.1.1.3",
        "libcufft.so.12": "nvidia-cufft==12.0.0.61",
        "libcurand.so.10": "nvidia-curand==10.4.0.35",
        "libnvrtc.so.13": "nvidia-cuda-nvrtc==13.0.88",
        "libcudnn.so.9": "nvidia-cudnn-cu13==9.24.0.43",
    },
}


def wheels_for(missing: list[str] | tuple[str, ...], cuda_major: int) -> list[str]:
    """NVIDIA wheels (``name==version``) that ship the ``missing`` sonames for an onnxruntime
    built for ``cuda_major``; cuDNN's sub-libraries come with ``libcudnn.so.9``'s wheel.
    Sonames no wheel here ships (the driver's ``libcuda.so.1``) are left out.

    >>> wheels_for(["libcudnn.so.9", "libcudnn_ops.so.9", "libcuda.so.1"], 12)
    ['nvidia-cudnn-cu12==9.1.0.70']
    """
    table = LIBRARY_WHEELS.get(cuda_major, {})
    wheels: list[str] = []
    for name in missing:
        key = "libcudnn.so." + name.rsplit(".so.", 1)[-1] if name.startswith("libcudnn") else name
        wheel = table.get(key)
        if wheel and wheel not in wheels:
            wheels.append(wheel)
    return wheels


ROWS: tuple[Row, ...] = (
    Row(
        "cuda11",
        "CUDA 11 torch (e.g. 2.1.2+cu118; cuDNN 8)",
        "onnxruntime-gpu==1.18.1",
        why="1.18.1 is the last onnxruntime-gpu on PyPI built for CUDA 11 and cuDNN 8 (it links "
        "libcudart.so.11.0 and libcudnn.so.8), the libraries torch's CUDA 11 builds ship",
    ),
    Row(
        "cuda12-cudnn8",
        "CUDA 12 torch with cuDNN 8 (AUTOMATIC1111 1.10.1: 2.1.2+cu121; Forge: 2.3.1+cu121)",
        "onnxruntime-gpu==1.23.2",
        gpu_libs=(CUDNN9_CU12,),
        why="no onnxruntime-gpu on PyPI is built for CUDA 12 with cuDNN 8 (1.17-1.18 are CUDA "
        "11, 1.19+ need cuDNN 9); 1.23.2 runs on torch's CUDA 12.1 libraries with cuDNN 9 "
        "added in tagger's gpu-libs folder (libcudnn.so.9 beside torch's libcudnn.so.8)",
    ),
    Row(
        "cuda12.8-cudnn9",
        "CUDA 12.8+ torch with cuDNN 9 on Python 3.11+ (newer Forge builds, torch 2.7+cu128)",
        "onnxruntime-gpu==1.26.0",
        why="1.26.0 is the newest onnxruntime-gpu built for CUDA 12 (12.8, cuDNN 9)",
    ),
    Row(
        "cuda12-cudnn9",
        "CUDA 12 torch with cuDNN 9 (torch 2.4+, e.g. 2.7.1 cu126), or 12.8+ on Python 3.10",
        "onnxruntime-gpu==1.23.2",
        why="1.23.2 is the newest onnxruntime-gpu built with CUDA 12.2, so it runs on every "
        "CUDA 12 torch's libraries, and the newest with Python 3.10 wheels",
    ),
    Row(
        "cuda13",
        "CUDA 13 torch (2.9+cu130 ... 2.14.1) on Python 3.11+",
        "onnxruntime-gpu==1.31.1",
        why="1.27+ are built for CUDA 13 with cuDNN 9, the libraries torch's CUDA 13 builds ship",
    ),
    Row(
        "cuda13-py310",
        "CUDA 13 torch on Python 3.10",
        "onnxruntime-gpu==1.23.2",
        gpu_libs=CUDA12_RUNTIME,
        why="no CUDA 13 onnxruntime-gpu has Python 3.10 wheels; 1.23.2 (CUDA 12) runs with the "
        "CUDA 12 runtime, cuBLAS and cuFFT added in tagger's gpu-libs folder (other sonames "
        "than torch's CUDA 13 ones) and torch's cuDNN 9 and cuRAND",
    ),
    Row(
        "rocm",
        "ROCm torch",
        "onnxruntime>=1.17",
        provider=None,
        why="PyPI has no ROCm onnxruntime that matches torch's ROCm; AMD publishes "
        "onnxruntime-rocm and onnxruntime-migraphx builds for each ROCm release",
    ),
    Row(
        "macos",
        "macOS",
        "onnxruntime>=1.17",
        provider="coreml",
        why="the standard onnxruntime wheel for macOS has the CoreML provider",
    ),
    Row("cpu", "CPU-only torch, or no torch", "onnxruntime>=1.17", provider=None),
    Row(
        "unknown-cuda",
        "a CUDA torch this table has no onnxruntime-gpu for",
        "onnxruntime>=1.17",
        provider=None,
        why="no onnxruntime-gpu on PyPI is known to load beside this torch's CUDA libraries",
    ),
)
_BY_KEY = {row.key: row for row in ROWS}


def row(key: str) -> Row:
    """The row named ``key``; unknown keys list the valid ones."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"no decision-table row {key!r}: use one of {', '.join(_BY_KEY)}") from None


def choose(torch: TorchBuild) -> Row:
    """The row for this torch: which onnxruntime build (and extra libraries) to install.

    >>> choose(TorchBuild("2.1.2+cu121", cuda="12.1", cudnn=8902)).key
    'cuda12-cudnn8'
    >>> choose(TorchBuild("2.14.1+cu130", cuda="13.0", cudnn=92400, python=(3, 11))).key
    'cuda13'
    >>> choose(TorchBuild(None)).onnxruntime
    'onnxruntime>=1.17'
    """
    if torch.system == "Darwin":
        return _BY_KEY["macos"]
    if torch.version is None:
        return _BY_KEY["cpu"]
    if torch.hip:
        return _BY_KEY["rocm"]
    major = torch.cuda_major
    if major is None:
        return _BY_KEY["cpu"]
    if torch.machine.lower() not in ("x86_64", "amd64") or torch.system not in ("Linux", "Windows"):
        return _BY_KEY["unknown-cuda"]
    cudnn = torch.cudnn_major
    if major == 11 and cudnn == 8 and torch.python < (3, 13):
        return _BY_KEY["cuda11"]
    if major == 12 and cudnn == 8:
        return _BY_KEY["cuda12-cudnn8"]
    if major == 12 and cudnn == 9:
        if torch.cuda_minor >= 8 and torch.python >= (3, 11):
            return _BY_KEY["cuda12.8-cudnn9"]
        return _BY_KEY["cuda12-cudnn9"]
    if major == 13 and cudnn == 9:
        return _BY_KEY["cuda13"] if torch.python >= (3, 11) else _BY_KEY["cuda13-py310"]
    return _BY_KEY["unknown-cuda"]


def build_of(version: str) -> OrtBuild | None:
    """The build family of an onnxruntime-gpu version (None: not in the survey).

    >>> build_of("1.23.2").cuda_major, build_of("1.31.1").runtime_loaded
    (12, ('libcudnn.so.9', 'libcufft.so.12'))
    """
    base = version.split("+")[0]
    return next((b for b in ORT_BUILDS if b.holds(base)), None)


def version_tuple(version: str) -> tuple[int, ...]:
    """``"1.23.2"`` -> ``(1, 23, 2)``; a non-numeric tail (``rc1``, ``+cu121``) is dropped.

    >>> version_tuple("2.1.2+cu121"), version_tuple("1.20.0rc1")
    ((2, 1, 2), (1, 20, 0))
    """
    parts = []
    for piece in version.split("+")[0].split("."):
        digits = ""
        for char in piece:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) < len(piece):
            break
    return tuple(parts)


def install_commands(
    chosen: Row, gpu_libs_dir: str, extra_libs: list[str] | tuple[str, ...] = ()
) -> list[str]:
    """The pip commands (arguments after ``pip``) that install ``chosen`` (and ``extra_libs``,
    more wheels for the gpu-libs folder).

    >>> install_commands(row("cuda12-cudnn8"), "/x/gpu-libs")  # doctest: +NORMALIZE_WHITESPACE
    ['install "onnxruntime-gpu==1.23.2"',
     'install --target "/x/gpu-libs" --no-deps --upgrade "nvidia-cudnn-cu12==9.1.0.70"']
    """
    commands = [f'install "{chosen.onnxruntime}"']
    libs = [*chosen.gpu_libs, *(w for w in extra_libs if w not in chosen.gpu_libs)]
    if libs:
        wheels = " ".join(f'"{w}"' for w in libs)
        commands.append(f'install --target "{gpu_libs_dir}" --no-deps --upgrade {wheels}')
    return commands


def torch_build() -> TorchBuild:
    """This interpreter's key for the table: torch's build, imported if installed (None
    version when torch is missing or broken)."""
    python = sys.version_info[:2]
    system, machine = platform.system(), platform.machine()
    try:
        import torch
    except Exception:
        return TorchBuild(None, python=python, system=system, machine=machine)
    versions = getattr(torch, "version", None)
    cuda = getattr(versions, "cuda", None)
    hip = getattr(versions, "hip", None)
    try:
        cudnn = torch.backends.cudnn.version() if cuda and not hip else None
    except Exception:
        cudnn = None
    return TorchBuild(
        str(getattr(torch, "__version__", "") or "0"),
        cuda=str(cuda) if cuda else None,
        cudnn=int(cudnn) if cudnn else None,
        hip=str(hip) if hip else None,
        python=python,
        system=system,
        machine=machine,
    )
