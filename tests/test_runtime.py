"""Tests of tagger.runtime: provider names, provider choice and checked session creation."""

from __future__ import annotations

import doctest
import logging
from pathlib import Path
from typing import ClassVar

import numpy as np
import onnxruntime
import pytest

import tagger.runtime
from tagger.errors import ModelLoadError, ProviderError
from tagger.runtime import (
    PROVIDER_NAMES,
    create_session,
    parse_providers,
    resolve_providers,
    short_name,
)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
ROCM = "ROCMExecutionProvider"
DML = "DmlExecutionProvider"
COREML = "CoreMLExecutionProvider"
TRT = "TensorrtExecutionProvider"


def test_doctests() -> None:
    result = doctest.testmod(tagger.runtime)
    assert result.attempted >= 4
    assert result.failed == 0


# -- names ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "short"),
    [
        ("cpu", "cpu"),
        ("CPU", "cpu"),
        (" cuda ", "cuda"),
        ("CUDAExecutionProvider", "cuda"),
        ("cudaexecutionprovider", "cuda"),
        ("TensorrtExecutionProvider", "tensorrt"),
        ("ROCm", "rocm"),
        ("MIGraphXExecutionProvider", "migraphx"),
        ("dml", "directml"),
        ("DML", "directml"),
        ("DmlExecutionProvider", "directml"),
        ("DirectML", "directml"),
        ("CoreML", "coreml"),
        ("OpenVINOExecutionProvider", "openvino"),
    ],
)
def test_short_name(text: str, short: str) -> None:
    assert short_name(text) == short


def test_every_full_name_maps_back() -> None:
    for short, full in PROVIDER_NAMES.items():
        assert short_name(full) == short
        assert short_name(short) == short


@pytest.mark.parametrize("text", ["gpu", "cuda0", "", "CUDAProvider"])
def test_short_name_of_an_unknown_provider(text: str) -> None:
    with pytest.raises(ProviderError) as info:
        short_name(text)
    message = str(info.value)
    assert f"unknown execution provider {text!r}" in message
    assert message.endswith(
        "use one of auto, cpu, cuda, tensorrt, rocm, migraphx, directml, coreml, openvino"
    )


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (None, ["auto"]),
        ("", ["auto"]),
        (" , ", ["auto"]),
        ("auto", ["auto"]),
        ("AUTO", ["auto"]),
        (" Auto ", ["auto"]),
        (["auto"], ["auto"]),
        ([], ["auto"]),
        ("cpu", ["cpu"]),
        ("CUDA, cpu", ["cuda", "cpu"]),
        ("cuda,,dml", ["cuda", "directml"]),
        (["CUDAExecutionProvider", " cpu "], ["cuda", "cpu"]),
        (("tensorrt", "cuda"), ["tensorrt", "cuda"]),
    ],
)
def test_parse_providers(text, names: list[str]) -> None:
    assert parse_providers(text) == names


def test_parse_providers_refuses_an_unknown_name() -> None:
    with pytest.raises(ProviderError, match="'vulkan'"):
        parse_providers("cuda,vulkan")


# -- choosing providers --------------------------------------------------------------------------
def test_auto_with_the_cpu_only() -> None:
    assert resolve_providers(["auto"], [CPU]) == [(CPU, {})]
    assert resolve_providers(["auto"], ["AzureExecutionProvider", CPU]) == [(CPU, {})]


def test_auto_picks_cuda_when_available() -> None:
    assert resolve_providers(["auto"], [TRT, CUDA, CPU], device_id=2) == [
        (CUDA, {"device_id": 2}),
        (CPU, {}),
    ]


def test_auto_follows_the_auto_order() -> None:
    assert resolve_providers(["auto"], [CPU, DML, ROCM]) == [(ROCM, {"device_id": 0}), (CPU, {})]
    assert resolve_providers(["auto"], [COREML, CPU]) == [(COREML, {}), (CPU, {})]
    assert resolve_providers(["auto"], [TRT, CPU]) == [(CPU, {})]


def test_explicit_cpu() -> None:
    assert resolve_providers(["cpu"], [CUDA, CPU], device_id=3) == [(CPU, {})]


def test_explicit_cuda() -> None:
    assert resolve_providers(["cuda"], [CUDA, CPU]) == [(CUDA, {"device_id": 0}), (CPU, {})]


def test_explicit_cuda_not_available() -> None:
    with pytest.raises(ProviderError) as info:
        resolve_providers(["cuda"], ["AzureExecutionProvider", CPU])
    message = str(info.value)
    assert "'cuda' was requested" in message
    assert "offers only cpu;" in message
    assert "pip install onnxruntime-gpu" in message
    assert "--device cpu" in message


def test_explicit_provider_not_available_names_all_offered() -> None:
    with pytest.raises(ProviderError, match="offers only directml, cpu; install onnxruntime-rocm"):
        resolve_providers(["rocm"], [DML, CPU])


def test_explicit_provider_with_nothing_offered() -> None:
    with pytest.raises(ProviderError, match="offers only none"):
        resolve_providers(["cpu"], [])


def test_negative_device_id() -> None:
    with pytest.raises(ProviderError, match="device id -1 is negative"):
        resolve_providers(["cpu"], [CPU], device_id=-1)
    with pytest.raises(ProviderError, match="negative"):
        resolve_providers(["auto"], [CUDA, CPU], device_id=-2)


def test_duplicates_are_removed() -> None:
    assert resolve_providers(["cuda", "cuda", "cpu", "cpu"], [CUDA, CPU], device_id=1) == [
        (CUDA, {"device_id": 1}),
        (CPU, {}),
    ]


def test_cpu_is_appended_once() -> None:
    assert resolve_providers(["tensorrt", "cuda"], [TRT, CUDA, CPU]) == [
        (TRT, {"device_id": 0}),
        (CUDA, {"device_id": 0}),
        (CPU, {}),
    ]
    assert resolve_providers(["cuda", "cpu"], [CUDA, CPU]) == [
        (CUDA, {"device_id": 0}),
        (CPU, {}),
    ]


def test_cpu_is_always_last() -> None:
    chosen = resolve_providers(["cpu", "cuda"], [CUDA, CPU])
    assert chosen[-1] == (CPU, {})
    assert len(chosen) == 2


# -- sessions -----------------------------------------------------------------------------------
def test_create_session_on_the_cpu(model_dir: Path) -> None:
    session = create_session(model_dir / "model.onnx", "cpu")
    assert session.get_providers() == [CPU]
    inputs = session.get_inputs()
    assert [i.name for i in inputs] == ["input_1:0"]
    batch = np.zeros((2, 32, 32, 3), dtype=np.float32)
    scores = session.run(None, {"input_1:0": batch})[0]
    assert scores.shape == (2, 25)


def test_create_session_with_threads(model_dir: Path) -> None:
    session = create_session(str(model_dir / "model.onnx"), ["cpu"], threads=1)
    assert session.get_providers() == [CPU]
    assert session.get_session_options().intra_op_num_threads == 1


def test_session_thread_pools_sleep_instead_of_spinning(model_dir: Path) -> None:
    options = create_session(model_dir / "model.onnx", "cpu").get_session_options()
    for pool in ("intra_op", "inter_op"):
        assert options.get_session_config_entry(f"session.{pool}.allow_spinning") == "0"
    assert options.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_create_session_auto_on_a_cpu_build(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CPU])
    assert create_session(model_dir / "model.onnx").get_providers() == [CPU]


def test_create_session_refuses_a_provider_the_build_lacks(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CPU])
    with pytest.raises(ProviderError, match="onnxruntime-gpu"):
        create_session(model_dir / "model.onnx", "cuda")


def test_create_session_on_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"this is not an onnx model\x00\xff" * 10)
    with pytest.raises(ModelLoadError) as info:
        create_session(path, "cpu")
    assert f"onnxruntime cannot load {str(path)!r}" in str(info.value)
    assert info.value.__cause__ is not None


def test_create_session_on_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.onnx"
    with pytest.raises(ModelLoadError, match=r"absent\.onnx"):
        create_session(path, "cpu")


class CpuOnlySession:
    """A stand-in InferenceSession that silently fell back to the CPU."""

    created: ClassVar[list[dict]] = []

    def __init__(self, path, sess_options=None, providers=None, provider_options=None) -> None:
        CpuOnlySession.created.append(
            {"path": path, "providers": providers, "provider_options": provider_options}
        )

    def get_providers(self) -> list[str]:
        return [CPU]


@pytest.fixture
def cuda_drops(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """onnxruntime claims CUDA, but every session it opens runs on the CPU only."""
    CpuOnlySession.created = []
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(onnxruntime, "InferenceSession", CpuOnlySession)
    return CpuOnlySession.created


def test_a_requested_provider_that_cannot_start(
    cuda_drops: list[dict], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ProviderError) as info:
        create_session(tmp_path / "model.onnx", "cuda", device_id=1)
    message = str(info.value)
    assert message.startswith("cuda could not start")
    assert f"onnxruntime {onnxruntime.__version__}" in message
    assert "running on cpu" in message
    assert message.endswith("Fix the GPU libraries or choose --device cpu.")
    assert cuda_drops == [
        {
            "path": str(tmp_path / "model.onnx"),
            "providers": [CUDA, CPU],
            "provider_options": [{"device_id": 1}, {}],
        }
    ]


def test_auto_warns_when_the_gpu_cannot_start(
    cuda_drops: list[dict], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="tagger"):
        session = create_session(tmp_path / "model.onnx", "auto")
    assert isinstance(session, CpuOnlySession)
    warnings = [r for r in caplog.records if r.name == "tagger" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage().startswith("cuda could not start")
    assert "running on cpu" in warnings[0].getMessage()
    assert cuda_drops[0]["providers"] == [CUDA, CPU]


def test_explicit_cpu_is_not_affected_by_a_dropping_gpu(
    cuda_drops: list[dict], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="tagger"):
        session = create_session(tmp_path / "model.onnx", "cpu")
    assert isinstance(session, CpuOnlySession)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert cuda_drops[0]["providers"] == [CPU]
