"""float16 copies of WD14 models: converted once, cached, float32 in and out, small score drift."""

from __future__ import annotations

import doctest
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny import make_image, make_model_dir

import tagger.fp16
from tagger.cache import get_tagger
from tagger.errors import MissingDependencyError, ModelLoadError, OptionsError
from tagger.fp16 import cached_name, fp16_model
from tagger.registry import local_spec
from tagger.wd14 import WD14Tagger

onnx = pytest.importorskip("onnx")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$TAGGER_CACHE_DIR`` in the test's folder; the fp16 copies land in its ``fp16``."""
    monkeypatch.setenv("TAGGER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "fp16"


@pytest.fixture
def photos(tmp_path: Path) -> list:
    """Six RGB images of different shapes, opened."""
    from PIL import Image

    paths = [
        make_image(tmp_path / "img" / f"{i}.png", size, seed=i)
        for i, size in enumerate([(32, 32), (64, 40), (40, 90), (33, 33), (100, 100), (20, 50)])
    ]
    return [Image.open(p).convert("RGB") for p in paths]


def test_doctests() -> None:
    assert doctest.testmod(tagger.fp16).failed == 0


def test_the_copy_is_float16_inside_with_float32_input_and_output(
    model_dir: Path, cache: Path
) -> None:
    path = fp16_model(model_dir / "model.onnx")
    assert path.parent == cache
    assert path.name == cached_name(model_dir / "model.onnx")
    model = onnx.load(str(path))
    kinds = {init.name: init.data_type for init in model.graph.initializer}
    assert kinds["weight"] == onnx.TensorProto.FLOAT16
    assert kinds["bias"] == onnx.TensorProto.FLOAT16
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [p.name for p in cache.iterdir()] == [path.name]  # no temporary file left


def test_converted_once_then_reused(
    model_dir: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = fp16_model(model_dir / "model.onnx")
    stamp = first.stat().st_mtime_ns

    def refuse(source, target) -> None:
        raise AssertionError("converted twice")

    monkeypatch.setattr(tagger.fp16, "convert_to_fp16", refuse)
    assert fp16_model(model_dir / "model.onnx") == first
    assert first.stat().st_mtime_ns == stamp


def test_a_changed_model_is_converted_again(tmp_path: Path, cache: Path) -> None:
    folder = make_model_dir(tmp_path / "m", seed=3)
    first = fp16_model(folder / "model.onnx")
    make_model_dir(folder, seed=4)  # new weights in the same file
    os.utime(folder / "model.onnx", ns=(1, first.stat().st_mtime_ns + 10**9))
    second = fp16_model(folder / "model.onnx")
    assert second != first
    weights = [
        onnx.numpy_helper.to_array(
            next(i for i in onnx.load(str(p)).graph.initializer if i.name == "weight")
        )
        for p in (first, second)
    ]
    assert not np.array_equal(weights[0], weights[1])


def test_scores_drift_by_float16_rounding_only(model_dir: Path, cache: Path, photos) -> None:
    spec = local_spec(model_dir)
    full = WD14Tagger(spec, providers="cpu").load()
    half = WD14Tagger(spec, providers="cpu", precision="fp16").load()
    batch = np.stack([full.preprocess(image) for image in photos])
    a, b = full.forward(batch), half.forward(batch)
    assert b.dtype == np.float32
    assert b.shape == a.shape
    drift = np.abs(a - b).max()
    assert 0 < drift < 5e-3  # a different graph ran, and only rounding separates the two


def test_a_cpu_run_warns(model_dir: Path, cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tagger"):
        WD14Tagger(local_spec(model_dir), providers="cpu", precision="fp16").load()
    assert "float16 on the CPU" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tagger"):
        WD14Tagger(local_spec(model_dir), providers="cpu").load()
    assert "float16" not in caplog.text


def test_an_unknown_precision_is_refused(model_dir: Path) -> None:
    with pytest.raises(OptionsError, match=r"'bf16'.*fp32, fp16"):
        WD14Tagger(local_spec(model_dir), precision="bf16")


def test_the_model_cache_keeps_precisions_apart(model_dir: Path, cache: Path) -> None:
    spec = local_spec(model_dir)
    full = get_tagger(spec, providers="cpu")
    half = get_tagger(spec, providers="cpu", precision="fp16")
    assert full is not half
    assert (full.precision, half.precision) == ("fp32", "fp16")
    assert get_tagger(spec, providers="cpu", precision="fp16") is half


def test_a_corrupt_model_fails_clearly_and_leaves_nothing(tmp_path: Path, cache: Path) -> None:
    bad = tmp_path / "bad" / "model.onnx"
    bad.parent.mkdir()
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(ModelLoadError, match=r"cannot convert .*model\.onnx.*\(without --fp16\)"):
        fp16_model(bad)
    assert list(cache.iterdir()) == []


def test_without_onnx_the_error_says_what_to_install(
    model_dir: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MissingDependencyError, match="pip install onnx"):
        fp16_model(model_dir / "model.onnx")


def test_an_unwritable_cache_is_named(model_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ModelLoadError, match="TAGGER_CACHE_DIR"):
        fp16_model(model_dir / "model.onnx", blocker / "fp16")


def test_cli_fp16_writes_the_same_tags_as_float32(
    model_dir: Path, cache: Path, tmp_path: Path
) -> None:
    import json
    import subprocess

    for i in range(4):
        make_image(tmp_path / "in" / f"{i}.png", (48, 48), seed=10 + i)
    runs = {}
    for flag in ([], ["--fp16"]):
        out = tmp_path / ("half" if flag else "full")
        done = subprocess.run(
            [sys.executable, "-m", "tagger", "tag", str(tmp_path / "in"), "--model",
             str(model_dir), "--device", "cpu", "--output-dir", str(out), "--json", *flag],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert ("float16 on the CPU" in done.stderr) == bool(flag)
        runs[bool(flag)] = {p.name: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert len(runs[True]) == 4
    assert len(list(cache.glob("*.onnx"))) == 1
    for name, full in runs[False].items():
        half = runs[True][name]
        assert half["rating"].keys() == full["rating"].keys()
        for rating, score in full["rating"].items():
            assert half["rating"][rating] == pytest.approx(score, abs=5e-3)


def test_ray_model_config_carries_the_precision(model_dir: Path) -> None:
    from tagger.ray_engine import ModelConfig

    config = ModelConfig(local_spec(model_dir), providers="cpu", precision="fp16")
    assert config.build().precision == "fp16"


def test_the_cache_folder_follows_xdg_without_tagger_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tagger.hub import tagger_cache_dir

    monkeypatch.delenv("TAGGER_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tagger_cache_dir("fp16") == tmp_path / "xdg" / "tagger" / "fp16"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert tagger_cache_dir("clip") == tmp_path / "home" / ".cache" / "tagger" / "clip"
    monkeypatch.setenv("TAGGER_CACHE_DIR", str(tmp_path / "mine"))
    assert tagger_cache_dir("fp16") == tmp_path / "mine" / "fp16"


def test_tagger_ui_settings_choose_the_precision(model_dir: Path, cache: Path) -> None:
    from tagger.ui.actions import load_tagger
    from tagger.ui.host import RuntimeSettings

    folders = [model_dir.parent]
    half = load_tagger(
        model_dir.name, RuntimeSettings(models_dirs=folders, providers="cpu", precision="fp16")
    )
    full = load_tagger(model_dir.name, RuntimeSettings(models_dirs=folders, providers="cpu"))
    assert (half.precision, full.precision) == ("fp16", "fp32")
    assert half.loaded
    assert list(cache.glob("*.onnx"))
