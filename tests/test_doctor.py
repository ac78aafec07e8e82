"""tagger doctor, the ELF check behind it and the decision table it shares with install.py.

The library checks run on real ELF files: libraries compiled here with gcc (known sonames and
DT_NEEDED entries, some of them missing) and the installed onnxruntime's own libraries.
"""

from __future__ import annotations

import argparse
import doctest
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tagger.doctor
import tagger.gpulibs
import tagger.ort_table
from tagger import gpulibs, ort_table
from tagger.doctor import DoctorReport, add_doctor_command, collect
from tagger.ort_table import TorchBuild, choose

REPO = Path(__file__).resolve().parents[1]
EVIDENCE = REPO / "tools" / "ortgpu_evidence.json"
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build ELF files")
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF checks: Linux only")


def test_doctests() -> None:
    for module in (tagger.gpulibs, tagger.ort_table, tagger.doctor):
        result = doctest.testmod(module)
        assert result.failed == 0, module.__name__
        assert result.attempted >= 1, module.__name__


# -- the decision table ---------------------------------------------------------------------------
CUDNN9 = ("nvidia-cudnn-cu12==9.1.0.70",)
CUDA12_LIBS = (
    "nvidia-cuda-runtime-cu12==12.8.90",
    "nvidia-cublas-cu12==12.8.4.1",
    "nvidia-cufft-cu12==11.3.3.83",
)


#: What each row installs: (onnxruntime requirement, gpu-libs wheels).
INSTALLS = {
    "cuda11": ("onnxruntime-gpu==1.18.1", ()),
    "cuda12-cudnn8": ("onnxruntime-gpu==1.23.2", CUDNN9),
    "cuda12-cudnn9": ("onnxruntime-gpu==1.23.2", ()),
    "cuda12.8-cudnn9": ("onnxruntime-gpu==1.26.0", ()),
    "cuda13": ("onnxruntime-gpu==1.31.1", ()),
    "cuda13-py310": ("onnxruntime-gpu==1.23.2", CUDA12_LIBS),
    "rocm": ("onnxruntime>=1.17", ()),
    "cpu": ("onnxruntime>=1.17", ()),
    "macos": ("onnxruntime>=1.17", ()),
    "unknown-cuda": ("onnxruntime>=1.17", ()),
}
P310, P311, P313 = (3, 10), (3, 11), (3, 13)


@pytest.mark.parametrize(
    ("torch", "key"),
    [
        # AUTOMATIC1111 1.10.1 and Forge: CUDA 12.1, cuDNN 8.9, Python 3.10
        (TorchBuild("2.1.2+cu121", "12.1", 8902), "cuda12-cudnn8"),
        (TorchBuild("2.3.1+cu121", "12.1", 8902), "cuda12-cudnn8"),
        (TorchBuild("2.3.1+cu121", "12.1", None), "cuda12-cudnn8"),
        # CUDA 12 with cuDNN 9 below 12.8, or on Python 3.10
        (TorchBuild("2.5.1+cu124", "12.4", None), "cuda12-cudnn9"),
        (TorchBuild("2.7.1", "12.6", 90501, python=P311), "cuda12-cudnn9"),
        (TorchBuild("2.8.0", "12.8", 91002, python=P310), "cuda12-cudnn9"),
        # newer Forge builds: CUDA 12.8
        (TorchBuild("2.7.1+cu128", "12.8", 90701, python=P311), "cuda12.8-cudnn9"),
        (TorchBuild("2.8.0", "12.9", 91002, python=P313), "cuda12.8-cudnn9"),
        # CUDA 13
        (TorchBuild("2.14.1+cu130", "13.0", 92400, python=P311), "cuda13"),
        (TorchBuild("2.9.1+cu130", "13.0", 91300, python=P310), "cuda13-py310"),
        # CUDA 11.8
        (TorchBuild("2.1.2+cu118", "11.8", 8700), "cuda11"),
        (TorchBuild("2.1.2+cu118", "11.8", None), "cuda11"),
        # the rest: the CPU package
        (TorchBuild("2.3.1+rocm6.0", None, None, hip="6.0.32830"), "rocm"),
        (TorchBuild("2.3.1+cpu"), "cpu"),
        (TorchBuild(None), "cpu"),
        (TorchBuild("2.3.1", system="Darwin", machine="arm64"), "macos"),
        (TorchBuild("3.0.0+cu140", "14.0", 100000), "unknown-cuda"),
        (TorchBuild("2.8.0", "12.8", 91002, machine="aarch64"), "unknown-cuda"),
        (TorchBuild("2.1.2+cu118", "11.8", 8700, python=P313), "unknown-cuda"),
    ],
)
def test_decision_table_rows(torch: TorchBuild, key: str) -> None:
    row = choose(torch)
    assert (row.key, row.onnxruntime, row.gpu_libs) == (key, *INSTALLS[key])


def test_every_row_is_listed() -> None:
    assert sorted(r.key for r in ort_table.ROWS) == sorted(INSTALLS)


def test_windows_uses_the_same_cuda_rows() -> None:
    torch = TorchBuild("2.1.2+cu121", "12.1", 8902, system="Windows", machine="AMD64")
    assert choose(torch).key == "cuda12-cudnn8"


@pytest.mark.parametrize(
    ("version", "family"),
    [
        ("1.17.0", (11, 8)),
        ("1.18.1", (11, 8)),
        ("1.19.0", (12, 9)),
        ("1.23.2", (12, 9)),
        ("1.26.0", (12, 9)),
        ("1.27.0", (13, 9)),
        ("1.31.1", (13, 9)),
        ("1.16.3", None),
        ("1.40.0", None),
    ],
)
def test_build_families(version: str, family: tuple | None) -> None:
    build = ort_table.build_of(version)
    assert (build and (build.cuda_major, build.cudnn_major)) == family


def test_every_gpu_row_pins_a_surveyed_release_of_its_family() -> None:
    expected = {
        "cuda11": (11, 8),
        "cuda12-cudnn8": (12, 9),
        "cuda12.8-cudnn9": (12, 9),
        "cuda12-cudnn9": (12, 9),
        "cuda13": (13, 9),
        "cuda13-py310": (12, 9),
    }
    rows = {r.key: r for r in ort_table.ROWS if r.ort_version}
    assert set(rows) == set(expected)
    for key, majors in expected.items():
        assert (rows[key].build.cuda_major, rows[key].build.cudnn_major) == majors, key


def test_unknown_row_names_the_valid_ones() -> None:
    with pytest.raises(KeyError, match="no decision-table row 'cuda99': use one of cuda11, "):
        ort_table.row("cuda99")


def test_install_commands() -> None:
    assert ort_table.install_commands(ort_table.row("cuda13-py310"), "/g") == [
        'install "onnxruntime-gpu==1.23.2"',
        'install --target "/g" --no-deps --upgrade "nvidia-cuda-runtime-cu12==12.8.90" '
        '"nvidia-cublas-cu12==12.8.4.1" "nvidia-cufft-cu12==11.3.3.83"',
    ]
    assert ort_table.install_commands(ort_table.row("cpu"), "/g") == ['install "onnxruntime>=1.17"']


# -- the recorded evidence agrees with the table ---------------------------------------------------
@pytest.fixture(scope="module")
def evidence() -> dict:
    return json.loads(EVIDENCE.read_text(encoding="utf-8"))


def test_survey_of_pypi_agrees_with_the_table(evidence: dict) -> None:
    assert evidence["table_vs_survey"] == []
    for build in evidence["builds"]:
        family = ort_table.build_of(build["version"])
        needed = [n for n in build["needed"] if n != gpulibs.DRIVER_LIBRARY]
        assert sorted(needed) == sorted(family.needs), build["version"]
        assert sorted(build["opened_at_run_time"]) == sorted(family.runtime_loaded)
    surveyed = {b["version"] for b in evidence["builds"]}
    for row in ort_table.ROWS:
        assert row.ort_version is None or row.ort_version in surveyed, row.key


def test_every_host_was_proven_with_its_rows_choice(evidence: dict) -> None:
    """Each host's recorded environment used exactly the row the table gives today, and every
    library the provider needs resolved there (only the driver may be missing)."""
    proven = [r for r in evidence["rows"] if r["row"]]
    assert {r["host"] for r in proven} == {
        "a1111", "forge", "cu126", "cu128", "cu128-py310", "cu130", "cu130-py310", "cu118",
    }  # fmt: skip
    for result in proven:
        row = ort_table.row(result["row"])
        assert (result["onnxruntime"], tuple(result["gpu_libs"])) == (row.onnxruntime, row.gpu_libs)
        assert result["ok"], (result["host"], result["problems"])
        assert result["undefined_count"] == 0
        for name, lib in result["libraries"].items():
            if name != gpulibs.DRIVER_LIBRARY:
                assert lib["path"], (result["host"], name)
                assert lib["soname"] == name, (result["host"], name)
                assert gpulibs.soname_major(lib["soname"]) == gpulibs.soname_major(name)


def test_the_old_choice_fails_where_the_evidence_says(evidence: dict) -> None:
    """A CUDA 13 build beside AUTOMATIC1111's CUDA 12 torch: libcudart.so.13 and co. missing."""
    old = next(
        r for r in evidence["rows"] if r["host"] == "a1111" and r["onnxruntime"].endswith("1.31.1")
    )
    assert not old["ok"]
    assert "libcudart.so.13 missing" in old["problems"]


# -- ELF reading and resolution on real files -----------------------------------------------------
def compile_library(path: Path, soname: str, needed: list[Path] = (), runpath: str = "") -> Path:
    """A real shared library with ``soname`` and one ``DT_NEEDED`` entry per file in ``needed``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    source = path.parent / f"{path.name}.c"
    symbol = re.sub(r"\W", "_", soname)
    source.write_text(f"int tagger_test_{symbol}(void) {{ return 7; }}\n")
    command = ["gcc", "-shared", "-fPIC", "-o", str(path), str(source), f"-Wl,-soname,{soname}"]
    command.append("-Wl,--no-as-needed")
    for lib in needed:
        command += [f"-L{lib.parent}", f"-l:{lib.name}"]
    if runpath:
        command.append(f"-Wl,-rpath,{runpath}")
    subprocess.run(command, check=True, capture_output=True)
    return path


@pytest.fixture
def provider(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in CUDA provider linked like onnxruntime-gpu 1.23.2's, and its site-packages:
    every library present in NVIDIA's wheel layout except cuDNN 9 (cuDNN 8 is there)."""
    build = tmp_path / "build"
    names = {
        "libcublasLt.so.12": "cublas",
        "libcublas.so.12": "cublas",
        "libcurand.so.10": "curand",
        "libcufft.so.11": "cufft",
        "libcudart.so.12": "cuda_runtime",
        "libcudnn.so.9": "cudnn",
    }
    linked = [compile_library(build / name, name) for name in names]
    library = compile_library(
        tmp_path / "site-packages" / "onnxruntime" / "capi" / "libonnxruntime_providers_cuda.so",
        "libonnxruntime_providers_cuda.so",
        linked,
        runpath="$ORIGIN",
    )
    site = tmp_path / "site-packages"
    for lib in linked:
        if lib.name != "libcudnn.so.9":
            target = site / "nvidia" / names[lib.name] / "lib" / lib.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(lib, target)
    compile_library(site / "nvidia" / "cudnn" / "lib" / "libcudnn.so.8", "libcudnn.so.8")
    return library, site


@needs_gcc
@linux
def test_read_elf_of_a_compiled_library(provider: tuple[Path, Path]) -> None:
    library, _ = provider
    info = gpulibs.read_elf(library)
    assert info.soname == "libonnxruntime_providers_cuda.so"
    assert info.needed == (
        "libcublasLt.so.12",
        "libcublas.so.12",
        "libcurand.so.10",
        "libcufft.so.11",
        "libcudart.so.12",
        "libcudnn.so.9",
        "libc.so.6",
    )
    assert (info.runpath, info.rpath) == ("$ORIGIN", "")


@linux
@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs binutils' readelf")
def test_read_elf_agrees_with_readelf_on_onnxruntime() -> None:
    import onnxruntime

    capi = Path(onnxruntime.__file__).parent / "capi"
    files = sorted(capi.glob("*.so*"))
    assert files
    for path in files:
        out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True).stdout
        info = gpulibs.read_elf(path)
        assert list(info.needed) == re.findall(r"\(NEEDED\).*\[(.*)\]", out), path.name
        assert [info.soname] == (re.findall(r"\(SONAME\).*\[(.*)\]", out) or [""]), path.name


def test_read_elf_refuses_other_files(tmp_path: Path) -> None:
    path = tmp_path / "libcudnn.so.9"
    path.write_text("not a library")
    with pytest.raises(gpulibs.ElfError, match=r"libcudnn.so.9 is not an ELF file"):
        gpulibs.read_elf(path)


@needs_gcc
@linux
def test_check_finds_each_library_and_names_the_missing_one(provider: tuple[Path, Path]) -> None:
    library, site = provider
    dirs = gpulibs.search_dirs(roots=[site], extra=[], environ={})
    check = gpulibs.check_provider(library, dirs=dirs, loaded={})
    assert check.needed == [
        "libcublasLt.so.12",
        "libcublas.so.12",
        "libcurand.so.10",
        "libcufft.so.11",
        "libcudart.so.12",
        "libcudnn.so.9",
    ]
    assert check.missing == ["libcudnn.so.9"]
    found = {r.name: (r.path, r.origin) for r in check.resolved if r.found}
    assert found["libcudart.so.12"] == (
        str(site / "nvidia" / "cuda_runtime" / "lib" / "libcudart.so.12"),
        "site-packages",
    )
    assert found["libcublasLt.so.12"][0] == str(
        site / "nvidia" / "cublas" / "lib" / "libcublasLt.so.12"
    )


@needs_gcc
@linux
def test_a_file_named_like_the_library_but_of_another_soname_does_not_count(
    provider: tuple[Path, Path], tmp_path: Path
) -> None:
    library, site = provider
    # a copy of cuDNN 8 renamed to the cuDNN 9 file name is not cuDNN 9
    shutil.copy(site / "nvidia" / "cudnn" / "lib" / "libcudnn.so.8", tmp_path / "libcudnn.so.9")
    dirs = [*gpulibs.search_dirs(roots=[site], extra=[], environ={}), (str(tmp_path), "x")]
    assert gpulibs.check_provider(library, dirs=dirs, loaded={}).missing == ["libcudnn.so.9"]


@needs_gcc
@linux
def test_gpu_libs_folder_completes_the_set(provider: tuple[Path, Path], tmp_path: Path) -> None:
    library, site = provider
    gpu_libs = tmp_path / "gpu-libs"
    compile_library(gpu_libs / "nvidia" / "cudnn" / "lib" / "libcudnn.so.9", "libcudnn.so.9")
    dirs = gpulibs.search_dirs(roots=[site], extra=[gpu_libs], environ={})
    check = gpulibs.check_provider(library, dirs=dirs, loaded={})
    assert check.missing == []
    cudnn = check.resolved[check.needed.index("libcudnn.so.9")]
    assert (cudnn.path, cudnn.origin) == (
        str(gpu_libs / "nvidia" / "cudnn" / "lib" / "libcudnn.so.9"),
        "gpu-libs",
    )


@needs_gcc
@linux
def test_the_providers_runpath_is_searched(provider: tuple[Path, Path]) -> None:
    library, _ = provider
    compile_library(library.parent / "libcudnn.so.9", "libcudnn.so.9")  # beside it: $ORIGIN
    check = gpulibs.check_provider(library, dirs=[], loaded={})
    cudnn = check.resolved[check.needed.index("libcudnn.so.9")]
    assert (cudnn.path, cudnn.origin) == (str(library.parent / "libcudnn.so.9"), "provider rpath")


@needs_gcc
@linux
def test_the_environments_library_comes_before_the_providers_runpath(
    provider: tuple[Path, Path],
) -> None:
    """A RUNPATH naming a system CUDA (onnxruntime's name /usr/local/cuda-12.2/lib) must not
    shadow torch's wheels; it still comes before LD_LIBRARY_PATH and the system folders."""
    library, site = provider
    compile_library(library.parent / "libcudart.so.12", "libcudart.so.12")
    dirs = gpulibs.search_dirs(roots=[site], extra=[], environ={})
    check = gpulibs.check_provider(library, dirs=dirs, loaded={})
    cudart = check.resolved[check.needed.index("libcudart.so.12")]
    assert cudart.path == str(site / "nvidia" / "cuda_runtime" / "lib" / "libcudart.so.12")
    origins = [origin for _, origin in dirs]
    assert origins.index("system") > origins.index("site-packages")


def test_a_loaded_library_wins() -> None:
    resolved = gpulibs.resolve("libcudnn.so.9", [], loaded={"libcudnn.so.9": "/x/libcudnn.so.9"})
    assert (resolved.path, resolved.origin) == ("/x/libcudnn.so.9", "loaded")


def test_runtime_loaded_libraries_are_checked_too(tmp_path: Path) -> None:
    import onnxruntime

    capi = Path(onnxruntime.__file__).parent / "capi"
    library = next(iter(sorted(capi.glob("libonnxruntime.so*"))), None)
    if library is None or not sys.platform.startswith("linux"):
        pytest.skip("needs onnxruntime's Linux library")
    check = gpulibs.check_provider(
        library, runtime_loaded=("libcudnn.so.9", "libcufft.so.12"), dirs=[], loaded={}
    )
    assert check.needed[-2:] == ["libcudnn.so.9", "libcufft.so.12"]
    assert check.missing[-2:] == ["libcudnn.so.9", "libcufft.so.12"]


def test_gpu_libs_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TAGGER_GPU_LIBS", raising=False)
    monkeypatch.setenv("TAGGER_CACHE_DIR", str(tmp_path))
    assert gpulibs.gpu_libs_dir() == tmp_path / "gpu-libs"
    monkeypatch.setenv("TAGGER_GPU_LIBS", str(tmp_path / "mine"))
    assert gpulibs.gpu_libs_dir() == tmp_path / "mine"


# -- tagger doctor on a stand-in onnxruntime-gpu layout (subprocess: its own onnxruntime/torch) ---
FAKE_ORT = """
__version__ = "1.23.2"
def get_available_providers():
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]
"""
FAKE_TORCH = """
import types
__version__ = "2.1.2+cu121"
version = types.SimpleNamespace(cuda="12.1", hip=None)
backends = types.SimpleNamespace(cudnn=types.SimpleNamespace(version=lambda: 8902))
"""


def run_doctor(site: Path, gpu_libs: Path, code: str) -> dict:
    """Run ``code`` (which prints JSON) in a fresh interpreter whose only site-packages is
    ``site`` (``-S``: not this environment's, which has its own onnxruntime and torch)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]),
        "TAGGER_GPU_LIBS": str(gpu_libs),
        "LD_LIBRARY_PATH": "",
    }
    done = subprocess.run(
        [sys.executable, "-S", "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@needs_gcc
@linux
def test_doctor_on_an_automatic1111_layout_names_cudnn9_and_the_fix(
    provider: tuple[Path, Path], tmp_path: Path
) -> None:
    library, site = provider
    (site / "onnxruntime" / "__init__.py").write_text(FAKE_ORT)
    (site / "onnxruntime_gpu-1.23.2.dist-info").mkdir()
    (site / "onnxruntime_gpu-1.23.2.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: onnxruntime-gpu\nVersion: 1.23.2\n"
    )
    (site / "torch").mkdir()
    (site / "torch" / "__init__.py").write_text(FAKE_TORCH)
    gpu_libs = tmp_path / "gpu-libs"
    code = "import json; from tagger.doctor import collect; print(json.dumps(collect().as_dict()))"
    report = run_doctor(site, gpu_libs, code)
    assert report["onnxruntime_package"] == "onnxruntime-gpu"
    assert report["onnxruntime_version"] == "1.23.2"
    assert report["onnxruntime_cuda"] == "12.2"
    assert report["provider_library"] == str(library)
    assert report["torch_version"] == "2.1.2+cu121"
    assert (report["torch_cuda"], report["torch_cudnn"]) == ("12.1", 8902)
    assert report["row"]["key"] == "cuda12-cudnn8"
    driver = next(lib for lib in report["libraries"] if lib["name"] == "libcuda.so.1")
    no_driver = ["libcuda.so.1"] if driver["path"] is None else []
    assert report["missing"] == ["libcudnn.so.9", *no_driver]
    assert {lib["name"]: lib["from"] for lib in report["libraries"]} == {
        "libcublasLt.so.12": "site-packages",
        "libcublas.so.12": "site-packages",
        "libcurand.so.10": "site-packages",
        "libcufft.so.11": "site-packages",
        "libcudart.so.12": "site-packages",
        "libcudnn.so.9": "",
        "libcuda.so.1": driver["from"],  # the driver: found in the system's folders, or not
    }
    assert report["fix"] == (
        f'{sys.executable} -m pip install --target "{gpu_libs}" --no-deps --upgrade '
        '"nvidia-cudnn-cu12==9.1.0.70"'
    )
    assert not report["ok"]

    # the fix done (cuDNN 9 in the gpu-libs folder): nothing missing, and preloading loads
    # each library from where the check found it
    compile_library(gpu_libs / "nvidia" / "cudnn" / "lib" / "libcudnn.so.9", "libcudnn.so.9")
    code = """
        import json, onnxruntime
        from tagger import gpulibs
        from tagger.doctor import collect, preload_cuda
        report = collect()
        check = preload_cuda(onnxruntime)
        loaded = gpulibs.loaded_libraries()
        print(json.dumps({"report": report.as_dict(), "loaded": {
            r.name: loaded.get(r.name) for r in check.resolved}}))
    """
    after = run_doctor(site, gpu_libs, code)
    assert after["report"]["missing"] == no_driver
    assert after["report"]["fix"] is None
    assert after["report"]["ok"] == (not no_driver)  # without a driver no provider starts
    assert after["loaded"]["libcudnn.so.9"] == str(
        gpu_libs / "nvidia" / "cudnn" / "lib" / "libcudnn.so.9"
    )
    assert after["loaded"]["libcudart.so.12"] == str(
        site / "nvidia" / "cuda_runtime" / "lib" / "libcudart.so.12"
    )


# -- tagger doctor on this machine ----------------------------------------------------------------
def test_doctor_here_reports_the_cpu_build_and_the_fix_for_a_gpu() -> None:
    import onnxruntime

    report = collect()
    assert report.onnxruntime_version == onnxruntime.__version__
    assert report.providers == onnxruntime.get_available_providers()
    has_torch = importlib.util.find_spec("torch") is not None
    python = sys.executable
    if report.onnxruntime_package != "onnxruntime":
        pytest.skip(f"this environment has {report.onnxruntime_package}, not the CPU package")
    assert report.provider_library is None
    if has_torch and report.torch_cuda:
        import torch

        expected = choose(ort_table.torch_build())
        assert report.torch_version == torch.__version__
        assert report.row["key"] == expected.key
        assert "onnxruntime has no CUDA provider: tagging runs on the CPU" in report.problems
        assert report.fix.startswith(f"{python} -m pip uninstall -y onnxruntime && ")
        assert f'{python} -m pip install "{expected.onnxruntime}"' in report.fix
        assert not report.ok
    else:
        assert report.row["key"] == "cpu"
        assert report.ok
        assert report.fix is None
    text = report.format()
    assert f"onnxruntime  onnxruntime {onnxruntime.__version__}" in text
    assert f"table row    {report.row['key']}: " in text
    assert json.loads(json.dumps(report.as_dict())) == report.as_dict()


def test_doctor_command_prints_json_and_exits_with_the_verdict(capsys) -> None:
    parser = argparse.ArgumentParser()
    add_doctor_command(parser.add_subparsers())
    args = parser.parse_args(["doctor", "--json"])
    status = args.handler(args)
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == set(DoctorReport("", "").as_dict())
    assert status == (0 if printed["ok"] else 1)
    args = parser.parse_args(["doctor"])
    assert args.handler(args) == status
    assert capsys.readouterr().out.splitlines()[0].startswith("python       ")


# -- the diagnosis from facts ---------------------------------------------------------------------
def diagnosed(
    row: str, package: str, version: str, missing: list[str], packages=None
) -> DoctorReport:
    """``tagger.doctor.diagnose`` on a report holding these facts."""
    report = DoctorReport("3.10.6", "Linux x86_64", onnxruntime_package=package,
                          onnxruntime_version=version, missing=list(missing),
                          providers=["CUDAExecutionProvider", "CPUExecutionProvider"])  # fmt: skip
    tagger.doctor.diagnose(report, ort_table.row(row), packages or [package])
    return report


def test_diagnose_a_cuda13_build_on_a_cuda12_torch(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TAGGER_GPU_LIBS", str(tmp_path))
    missing = ["libcublasLt.so.13", "libcublas.so.13", "libcudart.so.13", "libcudnn.so.9"]
    report = diagnosed("cuda12-cudnn8", "onnxruntime-gpu", "1.31.1", missing)
    py = sys.executable
    assert report.problems == [
        "the CUDA provider of onnxruntime-gpu 1.31.1 (built for CUDA 13 / cuDNN 9) cannot load: "
        "libcublasLt.so.13, libcublas.so.13, libcudart.so.13, libcudnn.so.9 not found"
    ]
    assert report.fix == (
        f'{py} -m pip install "onnxruntime-gpu==1.23.2" && {py} -m pip install --target '
        f'"{tmp_path}" --no-deps --upgrade "nvidia-cudnn-cu12==9.1.0.70"'
    )
    assert not report.ok


def test_diagnose_two_onnxruntime_packages() -> None:
    report = diagnosed(
        "cuda13", "onnxruntime-gpu", "1.31.1", [], ["onnxruntime", "onnxruntime-gpu"]
    )
    py = sys.executable
    assert report.problems[0].startswith("onnxruntime and onnxruntime-gpu are installed together")
    assert report.fix == (
        f"{py} -m pip uninstall -y onnxruntime onnxruntime-gpu && "
        f'{py} -m pip install "onnxruntime-gpu==1.31.1"'
    )


def test_diagnose_only_the_driver_missing() -> None:
    report = diagnosed("cuda13", "onnxruntime-gpu", "1.31.1", ["libcuda.so.1"])
    assert report.fix is None
    assert not report.ok
    assert report.notes[0].startswith("libcuda.so.1 (the NVIDIA driver's library) was not found")


def test_diagnose_all_resolved() -> None:
    report = diagnosed("cuda12-cudnn9", "onnxruntime-gpu", "1.23.2", [])
    assert (report.ok, report.fix, report.problems) == (True, None, [])


def test_diagnose_no_onnxruntime() -> None:
    report = diagnosed("cuda11", None, None, [], [])
    assert report.problems == ["onnxruntime is not installed"]
    assert report.fix == f'{sys.executable} -m pip install "onnxruntime-gpu==1.18.1"'


# -- the runtime's error when the CUDA provider is missing or cannot start ------------------------
def test_requesting_cuda_on_the_cpu_package_names_the_fix(tmp_path: Path) -> None:
    import onnxruntime

    from tagger.errors import ProviderError
    from tagger.runtime import create_session

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(ProviderError) as info:
        create_session(tmp_path / "model.onnx", "cuda")
    message = str(info.value)
    assert message.startswith("execution provider 'cuda' was requested but this onnxruntime")
    py = sys.executable
    torch = ort_table.torch_build()
    if torch.cuda_major:
        wanted = choose(torch).onnxruntime
        assert (
            f'Fix: {py} -m pip uninstall -y onnxruntime && {py} -m pip install "{wanted}"'
            in message
        )
    else:
        assert (
            "there is no CUDA torch here, so onnxruntime-gpu needs its own CUDA libraries"
            in message
        )
        fix = f'{py} -m pip install "onnxruntime-gpu[cuda,cudnn]"'
        assert f"Fix: {py} -m pip uninstall -y onnxruntime && {fix}" in message
    assert message.endswith("(details: tagger doctor)")


FAKE_ORT_SESSIONS = (
    FAKE_ORT
    + '''
class SessionOptions:
    def add_session_config_entry(self, key, value):
        pass

class GraphOptimizationLevel:
    ORT_ENABLE_ALL = 99

class InferenceSession:
    """onnxruntime-gpu 1.23.2 without cuDNN 9: the CUDA provider does not start."""
    def __init__(self, path, sess_options=None, providers=None, provider_options=None):
        pass
    def get_providers(self):
        return ["CPUExecutionProvider"]
'''
)


@needs_gcc
@linux
def test_a_cuda_provider_that_cannot_start_names_the_missing_library_and_the_fix(
    provider: tuple[Path, Path], tmp_path: Path
) -> None:
    _, site = provider
    (site / "onnxruntime" / "__init__.py").write_text(FAKE_ORT_SESSIONS)
    (site / "onnxruntime_gpu-1.23.2.dist-info").mkdir()
    (site / "onnxruntime_gpu-1.23.2.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: onnxruntime-gpu\nVersion: 1.23.2\n"
    )
    (site / "torch").mkdir()
    (site / "torch" / "__init__.py").write_text(FAKE_TORCH)
    gpu_libs = tmp_path / "gpu-libs"
    code = """
        import json
        from tagger.errors import ProviderError
        from tagger.runtime import create_session
        try:
            create_session("model.onnx", "cuda")
        except ProviderError as exc:
            print(json.dumps(str(exc)))
    """
    message = run_doctor(site, gpu_libs, code)
    assert message.startswith("cuda could not start")
    assert (
        "the CUDA provider of onnxruntime-gpu 1.23.2 (built for CUDA 12 / cuDNN 9) cannot load: "
        "libcudnn.so.9 not found"
    ) in message
    assert (
        f'. Fix: {sys.executable} -m pip install --target "{gpu_libs}" --no-deps --upgrade '
        '"nvidia-cudnn-cu12==9.1.0.70" (details: tagger doctor)'
    ) in message
    assert message.endswith("Fix the GPU libraries or choose --device cpu.")


def test_diagnose_a_torch_that_hides_its_cuda_runtime(monkeypatch, tmp_path) -> None:
    """The table's build is installed but torch keeps libcudart under another soname: NVIDIA's
    wheel for each missing soname goes to the gpu-libs folder, beside the row's own."""
    monkeypatch.setenv("TAGGER_GPU_LIBS", str(tmp_path))
    missing = ["libcublasLt.so.12", "libcublas.so.12", "libcudart.so.12", "libcudnn.so.9"]
    report = diagnosed("cuda12-cudnn8", "onnxruntime-gpu", "1.23.2", missing)
    assert report.fix == (
        f'{sys.executable} -m pip install --target "{tmp_path}" --no-deps --upgrade '
        '"nvidia-cudnn-cu12==9.1.0.70" "nvidia-cublas-cu12==12.8.4.1" '
        '"nvidia-cuda-runtime-cu12==12.8.90"'
    )


def test_library_wheels_cover_every_build_family() -> None:
    for build in ort_table.ORT_BUILDS:
        assert len(ort_table.wheels_for(build.needs + build.runtime_loaded, build.cuda_major)) >= 4
        for name in build.needs + build.runtime_loaded:
            assert ort_table.wheels_for([name], build.cuda_major), (build.first, name)


def test_core_modules_import_light() -> None:
    """tagger.doctor, tagger.gpulibs and tagger.ort_table import nothing heavy and no host."""
    code = textwrap.dedent(
        """
        import importlib, sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"modules", "gradio", "launch"}:
                    raise ImportError(f"blocked: {name}")
                return None

        sys.meta_path.insert(0, Block())
        for name in ("tagger.doctor", "tagger.gpulibs", "tagger.ort_table"):
            importlib.import_module(name)
        heavy = [m for m in ("onnxruntime", "torch", "numpy", "PIL") if m in sys.modules]
        print("ok" if not heavy else heavy)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout.strip() == "ok", done.stderr
