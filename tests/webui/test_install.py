"""install.py asks the webui's ``launch`` for exactly the packages that are missing."""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest
from conftest import REPO

BASE = {"open_clip_torch", "huggingface_hub", "tqdm"}


def load_installer():
    """Import install.py as a module (the host runs it as __main__)."""
    spec = importlib.util.spec_from_file_location("install", REPO / "install.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["install"] = module  # removed again by the launch_module fixture
    spec.loader.exec_module(module)
    return module


def fake_torch(monkeypatch: pytest.MonkeyPatch, cuda: str | None, hip: str | None = None) -> None:
    """A stand-in torch whose build reports ``cuda``/``hip``."""
    torch = types.ModuleType("torch")
    torch.version = types.SimpleNamespace(cuda=cuda, hip=hip)
    monkeypatch.setitem(sys.modules, "torch", torch)


def requirements_asked(launch_module) -> list[str]:
    """The requirement of each pip call, in order."""
    asked = []
    for command, _ in launch_module.pip_calls:
        assert command.startswith("install ")
        assert ' -c "' in command  # always constrained to the webui's pinned versions
        asked.append(command.split('"')[1])
    return asked


def test_cuda12_torch_gets_onnxruntime_gpu(launch_module, monkeypatch) -> None:
    fake_torch(monkeypatch, "12.1")
    launch_module.installed.update(BASE)
    load_installer().main()
    assert requirements_asked(launch_module) == ["onnxruntime-gpu>=1.19"]


def test_cuda11_torch_gets_the_last_cuda11_build(launch_module, monkeypatch, caplog) -> None:
    fake_torch(monkeypatch, "11.8")
    launch_module.installed.update(BASE)
    load_installer().main()
    assert requirements_asked(launch_module) == ["onnxruntime-gpu>=1.17,<1.19"]
    assert "CUDA 11" in caplog.text


@pytest.mark.parametrize(("cuda", "hip"), [(None, None), (None, "5.7.31921")])
def test_cpu_or_rocm_torch_gets_plain_onnxruntime(launch_module, monkeypatch, cuda, hip) -> None:
    fake_torch(monkeypatch, cuda, hip)
    load_installer().main()
    assert requirements_asked(launch_module) == [
        "onnxruntime>=1.17",
        "open_clip_torch",
        "huggingface_hub>=0.20",
        "tqdm",
    ]


@pytest.mark.parametrize(
    "build", ["onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-silicon", "onnxruntime"]
)
def test_existing_onnxruntime_build_is_kept(launch_module, monkeypatch, build) -> None:
    torch = types.ModuleType("torch")  # importing torch would be a mistake here
    torch.__getattr__ = lambda name: pytest.fail("torch was consulted")
    monkeypatch.setitem(sys.modules, "torch", torch)
    launch_module.installed.update({build, "huggingface_hub", "tqdm"})
    load_installer().main()
    assert requirements_asked(launch_module) == ["open_clip_torch"]


def test_all_present_makes_no_pip_call(launch_module, monkeypatch) -> None:
    fake_torch(monkeypatch, "12.4")
    launch_module.installed.update({"onnxruntime-gpu", *BASE})
    load_installer().main()
    assert launch_module.pip_calls == []


def test_constraints_pin_installed_protected_packages(launch_module) -> None:
    installer = load_installer()
    pins = installer.protected_constraints()
    import pydantic

    assert f"pydantic=={pydantic.VERSION}" in pins
    assert all("==" in pin for pin in pins)
