"""Tests of tagger.cache (shared loaded models) and of loading WD14Tagger from tiny models."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from tiny import build_wd14_onnx, make_image, write_labels

import tagger.cache
import tagger.runtime
from tagger.cache import get_tagger, loaded_models, unload_all
from tagger.errors import ModelFilesMissingError, ModelLoadError
from tagger.options import TagOptions
from tagger.registry import REGISTRY, local_spec
from tagger.wd14 import WD14Tagger

COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture
def load_count(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count create_session calls (WD14Tagger.load imports it from tagger.runtime at call time)."""
    real = tagger.runtime.create_session
    calls: list[str] = []

    def counting(model_path, *args, **kwargs):
        calls.append(str(model_path))
        time.sleep(0.05)  # widen the window in which concurrent callers could load twice
        return real(model_path, *args, **kwargs)

    monkeypatch.setattr(tagger.runtime, "create_session", counting)
    return calls


def corrupt_model_dir(folder: Path) -> Path:
    """A folder with valid labels and a model.onnx that is not an ONNX file."""
    folder.mkdir(parents=True)
    write_labels(folder / "selected_tags.csv")
    (folder / "model.onnx").write_bytes(b"garbage, not protobuf \x00\x01\x02" * 8)
    return folder


def save_model(path: Path, inputs: list, n_out: int = 25) -> None:
    """Save a small ONNX model whose input(s) have the given shapes: sum -> [N, n_out] output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = []
    values = []
    for index, shape in enumerate(inputs):
        name = f"in{index}"
        values.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        nodes.append(helper.make_node("ReduceSum", [name], [f"s{index}"], keepdims=0))
    nodes.append(helper.make_node("Expand", ["s0", "out_shape"], ["out"]))
    graph = helper.make_graph(
        nodes,
        "odd",
        values,
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, n_out])],
        initializer=[numpy_helper.from_array(np.array([1, n_out], dtype=np.int64), "out_shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def odd_model_dir(folder: Path, inputs: list) -> Path:
    folder.mkdir(parents=True)
    write_labels(folder / "selected_tags.csv")
    save_model(folder / "model.onnx", inputs)
    return folder


# -- the shared cache ----------------------------------------------------------------------------
def test_get_tagger_loads_once(model_dir: Path, load_count: list[str]) -> None:
    spec = local_spec(model_dir)
    first = get_tagger(spec, providers="cpu")
    second = get_tagger(local_spec(model_dir), providers="cpu")
    assert first is second
    assert first.loaded
    assert load_count == [str(model_dir.resolve() / "model.onnx")]
    assert loaded_models() == ["tiny-v3"]


def test_get_tagger_per_device(model_dir: Path, load_count: list[str]) -> None:
    spec = local_spec(model_dir)
    on_cpu = get_tagger(spec, providers="cpu")
    on_auto = get_tagger(spec, providers="auto")
    on_other_id = get_tagger(spec, providers="cpu", device_id=1)
    assert on_cpu is not on_auto
    assert on_cpu is not on_other_id
    assert on_auto is not on_other_id
    assert len(load_count) == 3
    assert get_tagger(spec, providers="cpu") is on_cpu
    assert len(load_count) == 3
    assert loaded_models() == ["tiny-v3", "tiny-v3", "tiny-v3"]


def test_get_tagger_per_model(model_dir: Path, fixed_model_dir: Path) -> None:
    dynamic = get_tagger(local_spec(model_dir), providers="cpu")
    fixed = get_tagger(local_spec(fixed_model_dir), providers="cpu")
    assert dynamic is not fixed
    assert sorted(loaded_models()) == ["tiny-v2", "tiny-v3"]


def test_concurrent_first_requests_load_once(model_dir: Path, load_count: list[str]) -> None:
    spec = local_spec(model_dir)
    barrier = threading.Barrier(16)
    results: list[WD14Tagger] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(get_tagger(spec, providers="cpu"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(results) == 16
    assert all(result is results[0] for result in results)
    assert results[0].loaded
    assert len(load_count) == 1
    assert loaded_models() == ["tiny-v3"]


def test_unload_all(model_dir: Path, fixed_model_dir: Path) -> None:
    one = get_tagger(local_spec(model_dir), providers="cpu")
    two = get_tagger(local_spec(fixed_model_dir), providers="cpu")
    assert unload_all() == 2
    assert loaded_models() == []
    assert not one.loaded
    assert not two.loaded
    assert one.active_providers == []
    assert unload_all() == 0


def test_get_tagger_after_unload_loads_again(model_dir: Path, load_count: list[str]) -> None:
    spec = local_spec(model_dir)
    first = get_tagger(spec, providers="cpu")
    unload_all()
    second = get_tagger(spec, providers="cpu")
    assert second is not first
    assert second.loaded
    assert len(load_count) == 2


def test_a_failed_load_is_not_cached(tmp_path: Path, load_count: list[str]) -> None:
    spec = local_spec(corrupt_model_dir(tmp_path / "broken"))
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load"):
        get_tagger(spec, providers="cpu")
    assert tagger.cache._taggers._models == {}
    assert loaded_models() == []
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load"):
        get_tagger(spec, providers="cpu")
    assert len(load_count) == 2
    assert tagger.cache._taggers._models == {}
    assert unload_all() == 0


def test_a_fixed_model_loads_after_a_failure(tmp_path: Path, model_dir: Path) -> None:
    folder = corrupt_model_dir(tmp_path / "mend")
    spec = local_spec(folder)
    with pytest.raises(ModelLoadError):
        get_tagger(spec, providers="cpu")
    shutil.copyfile(model_dir / "model.onnx", folder / "model.onnx")
    assert get_tagger(spec, providers="cpu").loaded
    assert loaded_models() == ["mend"]


def test_missing_registry_files_are_not_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAGGER_HF_CACHE", str(tmp_path))
    with pytest.raises(ModelFilesMissingError, match="SmilingWolf/wd-vit-tagger-v3"):
        get_tagger(REGISTRY["wd-vit-tagger-v3"], providers="cpu")
    assert tagger.cache._taggers._models == {}


def test_get_tagger_from_the_hf_cache(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = tmp_path / "models--SmilingWolf--wd-vit-tagger-v3" / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (tmp_path / "models--SmilingWolf--wd-vit-tagger-v3" / "refs").mkdir()
    (tmp_path / "models--SmilingWolf--wd-vit-tagger-v3" / "refs" / "main").write_text(COMMIT)
    for name in ("model.onnx", "selected_tags.csv"):
        shutil.copyfile(model_dir / name, snapshot / name)
    loaded = get_tagger(REGISTRY["wd-vit-tagger-v3"], providers="cpu", cache_dir=tmp_path)
    assert loaded.input_size == 32
    assert loaded.fixed_batch is None
    assert loaded_models() == ["wd-vit-tagger-v3"]


# -- WD14Tagger -----------------------------------------------------------------------------------
def test_tagger_reads_a_dynamic_model(model_dir: Path) -> None:
    model = WD14Tagger(local_spec(model_dir), providers="cpu")
    assert not model.loaded
    assert model.input_size == 448  # the spec's informative value until loaded
    assert model.fixed_batch is None
    assert model.active_providers == []
    assert model.load() is model
    assert model.loaded
    assert model.input_size == 32
    assert model.fixed_batch is None
    assert model._input_name == "input_1:0"
    assert len(model.labels.names) == 25
    assert model.active_providers == ["CPUExecutionProvider"]


def test_tagger_reads_a_fixed_model(fixed_model_dir: Path) -> None:
    model = WD14Tagger(local_spec(fixed_model_dir), providers="cpu").load()
    assert model.input_size == 48
    assert model.fixed_batch == 1


def test_labels_load_the_model(model_dir: Path) -> None:
    model = WD14Tagger(local_spec(model_dir), providers="cpu")
    assert model.labels.names[:5] == ("general", "sensitive", "questionable", "explicit", "1girl")
    assert model.loaded


def test_forward_splits_a_batch_for_a_fixed_model(fixed_model_dir: Path) -> None:
    model = WD14Tagger(local_spec(fixed_model_dir), providers="cpu").load()
    rng = np.random.default_rng(7)
    batch = rng.uniform(0, 255, size=(3, 48, 48, 3)).astype(np.float32)
    scores = model.forward(batch)
    assert scores.shape == (3, 25)
    singles = np.concatenate([model.forward(batch[i : i + 1]) for i in range(3)], axis=0)
    np.testing.assert_array_equal(scores, singles)
    assert not np.array_equal(scores[0], scores[1])


def test_forward_on_a_dynamic_model(model_dir: Path) -> None:
    model = WD14Tagger(local_spec(model_dir), providers="cpu")
    rng = np.random.default_rng(8)
    batch = rng.uniform(0, 255, size=(4, 32, 32, 3)).astype(np.float32)
    scores = model.forward(batch)  # loads on first use
    assert model.loaded
    assert scores.shape == (4, 25)
    assert ((scores > 0) & (scores < 1)).all()
    np.testing.assert_allclose(scores[2:3], model.forward(batch[2:3]), rtol=1e-6, atol=1e-7)


def test_forward_fills_a_partial_last_run_of_a_fixed_batch_model(tmp_path: Path) -> None:
    folder = tmp_path / "batch2"
    folder.mkdir()
    rows = write_labels(folder / "selected_tags.csv")
    build_wd14_onnx(folder / "model.onnx", len(rows), size=32, fixed_batch=2, seed=3)
    model = WD14Tagger(local_spec(folder), providers="cpu").load()
    assert model.fixed_batch == 2
    rng = np.random.default_rng(9)
    batch = rng.uniform(0, 255, size=(4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        model.forward(batch), np.concatenate([model.forward(batch[:2]), model.forward(batch[2:])])
    )
    three = model.forward(batch[:3])
    assert three.shape == (3, 25)
    np.testing.assert_array_equal(three[:2], model.forward(batch[:2]))
    np.testing.assert_array_equal(three[2:], model.forward(batch[2:4])[:1])


def rgb_images(folder: Path, count: int) -> list:
    from PIL import Image

    return [
        Image.open(make_image(folder / f"{i}.png", (40 + i * 7, 32), seed=i)).convert("RGB")
        for i in range(count)
    ]


def test_tag_batch(model_dir: Path, tmp_path: Path) -> None:
    model = WD14Tagger(local_spec(model_dir), providers="cpu").load()
    options = TagOptions()
    assert model.tag_batch([], options) == []
    images = rgb_images(tmp_path, 2)
    results = model.tag_batch(images, options)
    assert len(results) == 2
    scores = model.forward(np.stack([model.preprocess(image) for image in images]))
    assert results == [model.postprocess(row, options) for row in scores]


def test_tag_batch_loads_before_preprocessing(model_dir: Path, tmp_path: Path) -> None:
    model = WD14Tagger(local_spec(model_dir), providers="cpu")
    results = model.tag_batch(rgb_images(tmp_path, 2), TagOptions())
    assert len(results) == 2


def test_output_count_must_match_the_labels(tmp_path: Path, load_count: list[str]) -> None:
    folder = tmp_path / "mismatch"
    folder.mkdir()
    rows = write_labels(folder / "selected_tags.csv")
    assert len(rows) == 25
    build_wd14_onnx(folder / "model.onnx", 5, size=32)
    spec = local_spec(folder)
    with pytest.raises(ModelLoadError) as info:
        get_tagger(spec, providers="cpu")
    message = str(info.value)
    assert "the model has 5 outputs" in message
    assert "selected_tags.csv lists 25 tags" in message
    assert tagger.cache._taggers._models == {}
    model = WD14Tagger(spec, providers="cpu")
    with pytest.raises(ModelLoadError, match="5 outputs"):
        model.load()
    assert not model.loaded


def test_a_two_dimensional_input_is_refused(tmp_path: Path) -> None:
    spec = local_spec(odd_model_dir(tmp_path / "flat", [["n", 10]]))
    model = WD14Tagger(spec, providers="cpu")
    with pytest.raises(ModelLoadError) as info:
        model.load()
    message = str(info.value)
    assert message.startswith("flat: expected one NHWC image input")
    assert "('in0', ['n', 10])" in message
    assert not model.loaded


def test_two_inputs_are_refused(tmp_path: Path) -> None:
    spec = local_spec(odd_model_dir(tmp_path / "two", [[1, 32, 32, 3], [1, 32, 32, 3]]))
    with pytest.raises(ModelLoadError, match="expected one NHWC image input"):
        WD14Tagger(spec, providers="cpu").load()


def test_an_nchw_input_is_refused(tmp_path: Path) -> None:
    spec = local_spec(odd_model_dir(tmp_path / "nchw", [[1, 3, 32, 32]]))
    with pytest.raises(ModelLoadError, match=r"input \[1, 3, 32, 32\] is not NHWC with 3 channels"):
        WD14Tagger(spec, providers="cpu").load()


def test_a_non_square_input_is_refused(tmp_path: Path) -> None:
    spec = local_spec(odd_model_dir(tmp_path / "wide", [[1, 32, 48, 3]]))
    with pytest.raises(ModelLoadError, match=r"input \[1, 32, 48, 3\] is not square"):
        WD14Tagger(spec, providers="cpu").load()


def test_symbolic_sides_keep_the_spec_size(tmp_path: Path) -> None:
    spec = local_spec(odd_model_dir(tmp_path / "free", [["n", "h", "w", 3]]))
    model = WD14Tagger(spec, providers="cpu").load()
    assert model.input_size == 448
    assert model.fixed_batch is None
