"""install.py asks the webui's ``launch`` for exactly the packages that are missing, per host
torch, from the one decision table (tagger/ort_table.py), and never for a torch package."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import types
from pathlib import Path

import pytest
from conftest import REPO

BASE = {"open_clip_torch", "huggingface_hub", "tqdm"}
PY311 = sys.version_info >= (3, 11)


def load_installer():
    """Import install.py as a module (the host runs it as __main__)."""
    spec = importlib.util.spec_from_file_location("install", REPO / "install.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["install"] = module  # removed again by the launch_module fixture
    spec.loader.exec_module(module)
    return module


def fake_torch(
    monkeypatch: pytest.MonkeyPatch,
    version: str,
    cuda: str | None,
    cudnn: int | None = None,
    hip: str | None = None,
) -> None:
    """A stand-in torch whose build reports ``cuda``/``hip`` and ``backends.cudnn.version()``."""
    torch = types.ModuleType("torch")
    torch.__version__ = version
    torch.version = types.SimpleNamespace(cuda=cuda, hip=hip)
    torch.backends = types.SimpleNamespace(cudnn=types.SimpleNamespace(version=lambda: cudnn))
    monkeypatch.setitem(sys.modules, "torch", torch)


@pytest.fixture
def gpu_libs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tagger's gpu-libs folder, empty, under tmp_path."""
    folder = tmp_path / "gpu-libs"
    monkeypatch.setenv("TAGGER_GPU_LIBS", str(folder))
    return folder


def add_distribution(folder: Path, name: str, version: str) -> None:
    """A real installed-distribution record (``*.dist-info/METADATA``) in ``folder``."""
    info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def calls(launch_module) -> list[str]:
    """Each pip call: the requirement, prefixed with ``--target DIR`` for a target install."""
    asked = []
    for command, _ in launch_module.pip_calls:
        assert command.startswith("install ")
        requirement = command.split('"')[-2] if "--target" in command else command.split('"')[1]
        if "--target" in command:
            assert " --no-deps " in command  # nothing else comes along into the folder
            assert ' -c "' not in command
            asked.append(f"--target {command.split(chr(34))[1]} {requirement}")
        else:
            assert ' -c "' in command  # always constrained to the webui's pinned versions
            asked.append(requirement)
    for item in asked:  # never a torch package, never one of torch's NVIDIA wheels in place
        name = item.split()[-1]
        assert not name.startswith(("torch", "torchvision"))
        assert not name.startswith("nvidia-") or item.startswith("--target ")
    return asked


CUDNN9 = "nvidia-cudnn-cu12==9.1.0.70"


@pytest.mark.parametrize(
    ("version", "cuda", "cudnn"),
    [("2.1.2+cu121", "12.1", 8902), ("2.3.1+cu121", "12.1", 8902), ("2.3.1+cu121", "12.1", None)],
    ids=["a1111", "forge", "forge-cudnn-unknown"],
)
def test_cuda12_cudnn8_torch_gets_cuda12_onnxruntime_and_cudnn9_beside(
    launch_module, monkeypatch, gpu_libs, version, cuda, cudnn
) -> None:
    fake_torch(monkeypatch, version, cuda, cudnn)
    launch_module.installed.update(BASE)
    load_installer().main()
    assert calls(launch_module) == ["onnxruntime-gpu==1.23.2", f"--target {gpu_libs} {CUDNN9}"]


def test_cudnn9_already_in_the_folder_is_not_installed_again(
    launch_module, monkeypatch, gpu_libs
) -> None:
    fake_torch(monkeypatch, "2.1.2+cu121", "12.1", 8902)
    add_distribution(gpu_libs, "nvidia-cudnn-cu12", "9.1.0.70")
    launch_module.installed.update(BASE)
    load_installer().main()
    assert calls(launch_module) == ["onnxruntime-gpu==1.23.2"]


def test_another_cudnn_in_the_folder_is_replaced(launch_module, monkeypatch, gpu_libs) -> None:
    fake_torch(monkeypatch, "2.1.2+cu121", "12.1", 8902)
    add_distribution(gpu_libs, "nvidia-cudnn-cu12", "9.0.0.312")
    launch_module.installed.update({*BASE, "onnxruntime-gpu"})
    add_distribution(gpu_libs.parent / "site", "onnxruntime-gpu", "1.23.2")
    monkeypatch.syspath_prepend(str(gpu_libs.parent / "site"))
    load_installer().main()
    assert calls(launch_module) == [f"--target {gpu_libs} {CUDNN9}"]


@pytest.mark.parametrize(
    ("version", "cuda", "cudnn", "expected"),
    [
        ("2.7.1+cu126", "12.6", 90501, ["onnxruntime-gpu==1.23.2"]),
        (
            "2.8.0+cu128",
            "12.8",
            91002,
            ["onnxruntime-gpu==1.26.0" if PY311 else "onnxruntime-gpu==1.23.2"],
        ),
        ("2.1.2+cu118", "11.8", 8700, ["onnxruntime-gpu==1.18.1"]),
    ],
    ids=["cu126", "cu128", "cu118"],
)
def test_cuda_torch_with_every_library_gets_the_matching_build(
    launch_module, monkeypatch, gpu_libs, version, cuda, cudnn, expected
) -> None:
    fake_torch(monkeypatch, version, cuda, cudnn)
    launch_module.installed.update(BASE)
    load_installer().main()
    assert calls(launch_module) == expected
    assert not gpu_libs.exists()


def test_cuda13_torch(launch_module, monkeypatch, gpu_libs) -> None:
    fake_torch(monkeypatch, "2.14.1+cu130", "13.0", 92400)
    launch_module.installed.update(BASE)
    load_installer().main()
    if PY311:
        assert calls(launch_module) == ["onnxruntime-gpu==1.31.1"]
    else:  # no CUDA 13 onnxruntime-gpu has Python 3.10 wheels
        assert calls(launch_module) == [
            "onnxruntime-gpu==1.23.2",
            f"--target {gpu_libs} nvidia-cuda-runtime-cu12==12.8.90",
            f"--target {gpu_libs} nvidia-cublas-cu12==12.8.4.1",
            f"--target {gpu_libs} nvidia-cufft-cu12==11.3.3.83",
        ]


def test_a_cuda13_build_left_on_a_cuda12_torch_is_replaced(
    launch_module, monkeypatch, gpu_libs, tmp_path, caplog
) -> None:
    """The build an older installer put beside AUTOMATIC1111's torch can never load: replace it."""
    fake_torch(monkeypatch, "2.1.2+cu121", "12.1", 8902)
    add_distribution(tmp_path / "site", "onnxruntime-gpu", "1.31.1")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    launch_module.installed.update({*BASE, "onnxruntime-gpu"})
    load_installer().main()
    assert calls(launch_module) == ["onnxruntime-gpu==1.23.2", f"--target {gpu_libs} {CUDNN9}"]
    assert "onnxruntime-gpu 1.31.1 is built for CUDA 13 / cuDNN 9" in caplog.text


def test_a_fitting_gpu_build_is_kept(launch_module, monkeypatch, gpu_libs, tmp_path) -> None:
    fake_torch(monkeypatch, "2.7.1+cu126", "12.6", 90501)
    add_distribution(tmp_path / "site", "onnxruntime-gpu", "1.20.2")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    launch_module.installed.update({*BASE, "onnxruntime-gpu"})
    load_installer().main()
    assert launch_module.pip_calls == []


@pytest.mark.parametrize(
    ("version", "cuda", "hip"),
    [
        ("2.3.1+cpu", None, None),
        ("2.3.1+rocm6.0", None, "6.0.32830"),
        ("2.14.1+cu140", "14.0", None),
    ],
    ids=["cpu", "rocm", "unknown-cuda-major"],
)
def test_cpu_rocm_or_unknown_torch_gets_plain_onnxruntime(
    launch_module, monkeypatch, version, cuda, hip
) -> None:
    fake_torch(monkeypatch, version, cuda, hip=hip)
    load_installer().main()
    assert calls(launch_module) == [
        "onnxruntime>=1.17",
        "open_clip_torch",
        "huggingface_hub>=0.20",
        "tqdm",
    ]


def test_no_torch_gets_plain_onnxruntime(launch_module, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    launch_module.installed.update(BASE)
    load_installer().main()
    assert calls(launch_module) == ["onnxruntime>=1.17"]


@pytest.mark.parametrize(
    "build", ["onnxruntime-directml", "onnxruntime-silicon", "onnxruntime", "onnxruntime-openvino"]
)
def test_existing_onnxruntime_build_is_kept(launch_module, monkeypatch, build) -> None:
    torch = types.ModuleType("torch")  # importing torch would be a mistake here
    torch.__getattr__ = lambda name: pytest.fail("torch was consulted")
    monkeypatch.setitem(sys.modules, "torch", torch)
    launch_module.installed.update({build, "huggingface_hub", "tqdm"})
    load_installer().main()
    assert calls(launch_module) == ["open_clip_torch"]


def test_all_present_makes_no_pip_call(launch_module, monkeypatch, tmp_path) -> None:
    fake_torch(monkeypatch, "2.8.0+cu128", "12.8", 91002)
    add_distribution(tmp_path / "site", "onnxruntime-gpu", "1.26.0" if PY311 else "1.23.2")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    launch_module.installed.update({"onnxruntime-gpu", *BASE})
    load_installer().main()
    assert launch_module.pip_calls == []


def test_the_installer_and_the_doctor_read_one_table(launch_module) -> None:
    """install.py loads tagger/ort_table.py by path: the same rows as ``tagger.ort_table``."""
    import tagger.ort_table

    installer = load_installer()
    assert installer.ort_table.__file__ == tagger.ort_table.__file__
    assert [r.key for r in installer.ort_table.ROWS] == [r.key for r in tagger.ort_table.ROWS]


def test_constraints_pin_installed_protected_packages(launch_module) -> None:
    installer = load_installer()
    pins = installer.protected_constraints()
    import pydantic

    assert f"pydantic=={pydantic.VERSION}" in pins
    assert all("==" in pin for pin in pins)
    nvidia = sorted(
        f"{d.metadata['Name']}=={d.version}"
        for d in importlib.metadata.distributions()
        if (d.metadata["Name"] or "").lower().startswith("nvidia-")
    )
    assert sorted(p for p in pins if p.lower().startswith("nvidia-")) == sorted(set(nvidia))
