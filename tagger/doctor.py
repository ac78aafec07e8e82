"""``tagger doctor``: why onnxruntime does (or does not) run on the GPU here, and the fix.

``collect()`` gathers, without running a model: the onnxruntime package installed (and a second
one, which breaks both), its build (CUDA version), its providers, the CUDA provider library with
the CUDA/cuDNN libraries it needs and where each resolves (read from the ELF file, see
``tagger.gpulibs``), torch's version/CUDA/cuDNN when torch is importable, the decision-table
row for that torch (``tagger.ort_table``, the same table ``install.py`` uses) and the one command
that fixes what is wrong. ``DoctorReport.format()`` is the text, ``as_dict()`` the JSON.

``cuda_hint()`` is what ``tagger.runtime`` adds to its error when a CUDA provider fails to
start, and ``preload_cuda()`` loads the provider's libraries from torch's and tagger's folders
before a CUDA session is created.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import platform
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from tagger import gpulibs, ort_table

log = logging.getLogger("tagger")

ONNXRUNTIME_DISTRIBUTIONS = ort_table.ONNXRUNTIME_DISTRIBUTIONS
CUDA_PROVIDER = "CUDAExecutionProvider"


@dataclass
class DoctorReport:
    """Everything ``tagger doctor`` reports (see the module docstring); ``ok`` is True when
    the provider the decision table gives for this torch can start here."""

    python: str
    platform: str
    onnxruntime_packages: list[str] = field(default_factory=list)
    onnxruntime_package: str | None = None
    onnxruntime_version: str | None = None
    onnxruntime_cuda: str | None = None
    providers: list[str] = field(default_factory=list)
    provider_library: str | None = None
    libraries: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    torch_version: str | None = None
    torch_cuda: str | None = None
    torch_cudnn: int | None = None
    torch_hip: str | None = None
    row: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    fix: str | None = None
    ok: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data."""
        return asdict(self)

    def format(self) -> str:
        """The report as text, one fact a line, the fix last."""
        lines = [f"python       {self.python} ({self.platform})"]
        if self.onnxruntime_package:
            cuda = f", built for CUDA {self.onnxruntime_cuda}" if self.onnxruntime_cuda else ""
            lines.append(
                f"onnxruntime  {self.onnxruntime_package} {self.onnxruntime_version}{cuda}"
            )
        else:
            lines.append("onnxruntime  not installed")
        if len(self.onnxruntime_packages) > 1:
            lines.append(f"             installed together: {', '.join(self.onnxruntime_packages)}")
        lines.append(f"providers    {', '.join(self.providers) or '-'}")
        if self.provider_library:
            lines.append(f"provider     {self.provider_library}")
            width = max((len(lib["name"]) for lib in self.libraries), default=0)
            for lib in self.libraries:
                where = f"{lib['path']}  ({lib['from']})" if lib["path"] else "MISSING"
                lines.append(f"  {lib['name']:<{width}}  {where}")
        if self.torch_version:
            gpu = f"CUDA {self.torch_cuda}" if self.torch_cuda else "no CUDA"
            if self.torch_hip:
                gpu = f"ROCm {self.torch_hip}"
            cudnn = f", cuDNN {_cudnn_text(self.torch_cudnn)}" if self.torch_cudnn else ""
            lines.append(f"torch        {self.torch_version} ({gpu}{cudnn})")
        else:
            lines.append("torch        not importable")
        if self.row:
            lines.append(f"table row    {self.row['key']}: {self.row['hosts']}")
            lines.append(f"             wants {self.row['onnxruntime']}")
            for lib in self.row.get("gpu_libs", []):
                lines.append(f"             + {lib} in {gpulibs.gpu_libs_dir()}")
            if self.row.get("why"):
                lines.append(f"             ({self.row['why']})")
        lines += [f"problem      {p}" for p in self.problems]
        lines += [f"note         {n}" for n in self.notes]
        if self.fix:
            lines.append(f"fix          {self.fix}")
        lines.append(
            "status       " + ("ok" if self.ok else "needs the fix above" if self.fix else "not ok")
        )
        return "\n".join(lines)


def _cudnn_text(version: int | None) -> str:
    """cuDNN's version number as torch reports it, as text (8902 -> 8.9.2, 91002 -> 9.10.2).

    >>> _cudnn_text(8902), _cudnn_text(91002)
    ('8.9.2', '9.10.2')
    """
    if not version:
        return "-"
    if version >= 10000:
        return f"{version // 10000}.{version // 100 % 100}.{version % 100}"
    return f"{version // 1000}.{version // 100 % 10}.{version % 100}"


def installed_onnxruntime() -> list[tuple[str, str]]:
    """``(distribution, version)`` of every onnxruntime distribution installed."""
    found = []
    for name in ONNXRUNTIME_DISTRIBUTIONS:
        try:
            found.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def provider_library(ort: ModuleType) -> Path | None:
    """The CUDA provider library of this onnxruntime (None when the build has none)."""
    capi = Path(ort.__file__).parent / "capi"
    name = (
        "onnxruntime_providers_cuda.dll"
        if sys.platform == "win32"
        else "libonnxruntime_providers_cuda.so"
    )
    path = capi / name
    return path if path.is_file() else None


def build_cuda(ort: ModuleType) -> str | None:
    """The CUDA version this onnxruntime was built with (from its package info, else the
    table's survey), None for a build without CUDA."""
    try:
        from onnxruntime.capi import build_and_package_info as info  # type: ignore[import-not-found]

        cuda = getattr(info, "cuda_version", None)
        if cuda:
            return str(cuda)
    except Exception:
        pass
    family = ort_table.build_of(getattr(ort, "__version__", "0"))
    if family and provider_library(ort):
        return family.built_with_cuda or f"{family.cuda_major}.x"
    return None


def check_cuda_provider(ort: ModuleType) -> gpulibs.ProviderCheck | None:
    """Where each library of the CUDA provider resolves (None: no CUDA provider library, or
    not Linux, where this check does not apply)."""
    path = provider_library(ort)
    if path is None or not sys.platform.startswith("linux"):
        return None
    family = ort_table.build_of(getattr(ort, "__version__", "0"))
    runtime = family.runtime_loaded if family else ()
    return gpulibs.check_provider(path, runtime_loaded=runtime)


def preload_cuda(ort: ModuleType) -> gpulibs.ProviderCheck | None:
    """Load the CUDA provider's libraries found in torch's NVIDIA folders and tagger's
    gpu-libs folder, so that onnxruntime finds them by soname; returns the check (with what is
    still missing), None where it does not apply. Never raises: a library that fails to load
    is logged and left to onnxruntime's own error."""
    if sys.platform == "win32":
        _preload_windows(ort)
        return None
    try:
        check = check_cuda_provider(ort)
    except (OSError, gpulibs.ElfError) as exc:
        log.debug("cannot read the CUDA provider's libraries: %s", exc)
        return None
    if check is None:
        return None
    try:
        loaded = gpulibs.preload(check)
    except OSError as exc:
        log.warning("could not preload a CUDA library for onnxruntime: %s", exc)
        return check
    if loaded:
        log.debug("preloaded for onnxruntime's CUDA provider: %s", ", ".join(loaded))
    return check


def _preload_windows(ort: ModuleType) -> None:
    """Windows: load cuDNN from tagger's gpu-libs folder with onnxruntime's own
    ``preload_dlls`` (1.21+), by full path, before the provider DLL looks for it by name."""
    preload = getattr(ort, "preload_dlls", None)
    for folder in gpulibs.nvidia_dirs([gpulibs.gpu_libs_dir()]):
        if preload is not None and os.sep + "cudnn" + os.sep in folder + os.sep:
            try:
                preload(cuda=False, cudnn=True, msvc=False, directory=folder)
            except Exception as exc:
                log.warning("could not preload cuDNN from %s: %s", folder, exc)


def fix_command(
    row: ort_table.Row,
    *,
    remove: tuple[str, ...] = (),
    libs_only: bool = False,
    extra_libs: list[str] | tuple[str, ...] = (),
) -> str:
    """The one shell command that installs ``row`` (after removing ``remove``), with this
    interpreter's pip. ``libs_only``: only the gpu-libs step (the row's wheels and
    ``extra_libs``)."""
    python = shlex.quote(sys.executable)
    commands = ort_table.install_commands(row, str(gpulibs.gpu_libs_dir()), extra_libs)
    if libs_only:
        commands = commands[1:]
    steps = [f"{python} -m pip uninstall -y {' '.join(remove)}"] if remove else []
    steps += [f"{python} -m pip {c}" for c in commands]
    return " && ".join(steps)


def collect() -> DoctorReport:
    """Gather the report (imports onnxruntime and, when installed, torch)."""
    report = DoctorReport(
        python=platform.python_version(),
        platform=f"{platform.system()} {platform.machine()}",
        environment=environment_summary(),
    )
    torch = ort_table.torch_build()
    report.torch_version = torch.version
    report.torch_cuda, report.torch_cudnn, report.torch_hip = torch.cuda, torch.cudnn, torch.hip
    row = ort_table.choose(torch)
    report.row = {
        "key": row.key,
        "hosts": row.hosts,
        "onnxruntime": row.onnxruntime,
        "gpu_libs": list(row.gpu_libs),
        "provider": row.provider,
        "why": row.why,
    }
    packages = installed_onnxruntime()
    report.onnxruntime_packages = [f"{name} {version}" for name, version in packages]
    try:
        import onnxruntime as ort
    except Exception as exc:
        ort = None
        if packages:
            report.problems.append(f"onnxruntime is installed but does not import: {exc}")
    if ort is not None:
        version = getattr(ort, "__version__", "?")
        report.onnxruntime_version = version
        report.onnxruntime_package = next(
            (name for name, v in packages if v.split("+")[0] == version.split("+")[0]),
            packages[0][0] if packages else "onnxruntime",
        )
        report.onnxruntime_cuda = build_cuda(ort)
        try:
            report.providers = list(ort.get_available_providers())
        except Exception as exc:
            report.problems.append(f"onnxruntime cannot list its providers: {exc}")
        try:
            check = check_cuda_provider(ort)
        except (OSError, gpulibs.ElfError) as exc:
            check = None
            report.problems.append(f"cannot read the CUDA provider library: {exc}")
        if check is not None:
            resolved = list(check.resolved)
            if all(r.name != gpulibs.DRIVER_LIBRARY for r in resolved):
                # older providers load the driver through the CUDA runtime, not DT_NEEDED
                resolved.append(gpulibs.resolve(gpulibs.DRIVER_LIBRARY, gpulibs.search_dirs()))
            report.provider_library = check.provider
            report.libraries = [
                {"name": r.name, "path": r.path, "from": r.origin} for r in resolved
            ]
            report.missing = [r.name for r in resolved if not r.found]
        elif provider_library(ort) is not None:
            report.provider_library = str(provider_library(ort))
            report.notes.append("the library check reads ELF files: it runs on Linux only")
    diagnose(report, row, [name for name, _ in packages])
    return report


def diagnose(report: DoctorReport, row: ort_table.Row, packages: list[str]) -> None:
    """Fill ``problems``, ``fix`` and ``ok`` of ``report`` from the facts gathered in it, for
    the table's ``row`` and the onnxruntime distributions ``packages`` installed."""
    others = [p for p in packages if p != report.onnxruntime_package]
    if len(packages) > 1:
        report.problems.append(
            f"{' and '.join(packages)} are installed together; they overwrite each other's "
            "onnxruntime module, so which one runs is an accident: keep one"
        )
    missing = [m for m in report.missing if m != gpulibs.DRIVER_LIBRARY]
    if gpulibs.DRIVER_LIBRARY in report.missing:
        report.notes.append(
            "libcuda.so.1 (the NVIDIA driver's library) was not found: without a driver no GPU "
            "provider can start; install the NVIDIA driver (no pip package provides it)"
        )
    if report.onnxruntime_package is None:
        report.problems.append("onnxruntime is not installed")
        report.fix = fix_command(row)
        return
    if row.provider != "cuda":
        if report.onnxruntime_package == "onnxruntime-gpu" and missing:
            report.problems.append(
                f"onnxruntime-gpu's CUDA provider needs {', '.join(missing)}, which this "
                "environment lacks (there is no CUDA torch here to bring them)"
            )
            report.fix = (
                f"{shlex.quote(sys.executable)} -m pip install "
                f'"onnxruntime-gpu[cuda,cudnn]=={report.onnxruntime_version}"'
            )
            return
        report.ok = not others
        if report.ok and row.key == "rocm":
            report.notes.append(row.why)
        if others:
            report.fix = fix_command(row, remove=tuple(packages))
        return
    gpu_row = row.ort_version
    if report.onnxruntime_package != "onnxruntime-gpu":
        if report.onnxruntime_package in ("onnxruntime-directml", "onnxruntime-openvino"):
            report.notes.append(
                f"{report.onnxruntime_package} is kept: it is a GPU build of its own"
            )
            report.ok = not others
            return
        report.problems.append(
            f"{report.onnxruntime_package} has no CUDA provider: tagging runs on the CPU"
        )
        report.fix = fix_command(row, remove=tuple(packages))
        return
    if others:
        report.fix = fix_command(row, remove=tuple(packages))
        return
    version = report.onnxruntime_version or ""
    family = ort_table.build_of(version)
    if missing:
        what = family and f"CUDA {family.cuda_major} / cuDNN {family.cudnn_major}"
        report.problems.append(
            f"the CUDA provider of onnxruntime-gpu {version}"
            + (f" (built for {what})" if what else "")
            + f" cannot load: {', '.join(missing)} not found"
        )
        if version.split("+")[0] != gpu_row:
            report.fix = fix_command(row)
            return
        # the table's build is installed: add what is missing to the gpu-libs folder (the
        # row's wheels, and NVIDIA's wheel for any other missing soname: a torch that keeps
        # its CUDA libraries in torch/lib under renamed sonames hides them from onnxruntime)
        extra = ort_table.wheels_for(missing, family.cuda_major) if family else []
        if row.gpu_libs or extra:
            report.fix = fix_command(row, libs_only=True, extra_libs=extra)
        else:
            report.fix = fix_command(row)
        return
    if version.split("+")[0] != gpu_row:
        report.notes.append(
            f"onnxruntime-gpu {version} is not the build the table gives for this torch "
            f"({row.onnxruntime}); its libraries resolve here, so it is kept"
        )
    if CUDA_PROVIDER not in report.providers:
        report.problems.append("this onnxruntime-gpu does not list the CUDA provider")
        report.fix = fix_command(row)
        return
    report.ok = gpulibs.DRIVER_LIBRARY not in report.missing


def cuda_hint(ort: ModuleType) -> str:
    """One sentence for a CUDA provider that is missing or failed to start: the libraries it
    lacks and the fix command (empty when the check finds nothing to say)."""
    try:
        report = collect()
    except Exception as exc:  # the hint must never hide the original error
        log.debug("tagger doctor failed: %s", exc)
        return ""
    parts = list(report.problems)
    if gpulibs.DRIVER_LIBRARY in report.missing:
        parts.append("libcuda.so.1 (the NVIDIA driver) is missing")
    fix = report.fix
    if report.ok and report.row.get("provider") != "cuda":
        # the table gives the CPU for this torch, but the CUDA provider was asked for
        parts.append("there is no CUDA torch here, so onnxruntime-gpu needs its own CUDA libraries")
        remove = " ".join(p for p in ("onnxruntime",) if report.onnxruntime_package == p)
        python = shlex.quote(sys.executable)
        fix = (f"{python} -m pip uninstall -y {remove} && " if remove else "") + (
            f'{python} -m pip install "onnxruntime-gpu[cuda,cudnn]"'
        )
    if not parts and not fix:
        return ""
    text = "; ".join(parts)
    if fix:
        text += f". Fix: {fix}"
    return text + " (details: tagger doctor)"


def cmd_doctor(args: argparse.Namespace) -> int:
    """Run ``tagger doctor``: 0 when the GPU provider the table gives can start (or the
    table gives the CPU and all is in order), 1 otherwise."""
    report = collect()
    if getattr(args, "json", False):
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.format())
    return 0 if report.ok else 1


def add_doctor_command(sub: Any) -> None:
    """Add ``tagger doctor`` to the command line's sub-commands."""
    doctor = sub.add_parser(
        "doctor",
        help="check onnxruntime's GPU provider beside torch and print the fix",
        description=(
            "Report the onnxruntime build, its providers, the CUDA/cuDNN libraries its CUDA "
            "provider needs and where each resolves, torch's CUDA/cuDNN, the onnxruntime "
            "build that fits this torch, and the one command that fixes what is wrong. "
            "Exit status 0 when the provider can start, 1 when something needs fixing."
        ),
    )
    doctor.add_argument("--json", action="store_true", help="Print the report as JSON.")
    doctor.set_defaults(handler=cmd_doctor)


def environment_summary() -> dict[str, str]:
    """The environment variables that change where libraries are found (for bug reports)."""
    names = ("LD_LIBRARY_PATH", "TAGGER_GPU_LIBS", "TAGGER_CACHE_DIR", "CUDA_VISIBLE_DEVICES")
    return {n: os.environ[n] for n in names if n in os.environ}
