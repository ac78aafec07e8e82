"""Model folders that cannot load: a CSV that does not match its ONNX file is a 503 with the
reason on every route, never a 500; ``/interrogators`` leaves such folders out and ``/models``
marks them; the check reads the ONNX header only and follows the files when they change."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from apiutil import b64, client, fake_hub_cache, make_app, sample_image
from tiny import build_wd14_onnx, make_model_dir

import tagger.api.folders as folders
from tagger.api.folders import FolderChecks, OnnxHeaderError, TensorInfo, onnx_io

URL = "/tagger/v1"
MISMATCH = "the model has 25 outputs but selected_tags.csv lists 26 tags"


def _add_csv_row(folder: Path) -> None:
    """One tag more in the CSV than the model has outputs."""
    with open(folder / "selected_tags.csv", "a", encoding="utf-8") as handle:
        handle.write("9999,extra_tag,0,1\n")


@pytest.fixture
def models(tmp_path: Path, model_dir: Path) -> Path:
    """A models folder: tiny-v3 (good) and broken (CSV one row longer than the model)."""
    root = tmp_path / "models"
    shutil.copytree(model_dir, root / "tiny-v3")
    shutil.copytree(model_dir, root / "broken")
    _add_csv_row(root / "broken")
    return root


@pytest.fixture
def api(models: Path, tmp_path: Path) -> Any:
    allowed = tmp_path / "allowed"
    sample_image(allowed)
    return client(make_app(models_dirs=[models], allowed_dirs=[allowed]))


# -- the ONNX header reader ------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["model_dir", "fixed_model_dir"])
def test_onnx_io_reads_what_onnxruntime_reads(fixture: str, request: Any) -> None:
    import onnxruntime

    graph = request.getfixturevalue(fixture) / "model.onnx"
    inputs, outputs = onnx_io(graph)
    session = onnxruntime.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    assert [(i.name, list(i.dims)) for i in inputs] == [
        (i.name, list(i.shape)) for i in session.get_inputs()
    ]
    assert [(o.name, list(o.dims)) for o in outputs] == [
        (o.name, list(o.shape)) for o in session.get_outputs()
    ]


def test_onnx_io_exact_values(model_dir: Path, fixed_model_dir: Path) -> None:
    assert onnx_io(model_dir / "model.onnx") == (
        [TensorInfo("input_1:0", ("batch", 32, 32, 3))],
        [TensorInfo("predictions_sigmoid", ("batch", 25))],
    )
    assert onnx_io(fixed_model_dir / "model.onnx") == (
        [TensorInfo("input_1:0", (1, 48, 48, 3))],
        [TensorInfo("predictions_sigmoid", (1, 25))],
    )


def test_onnx_io_skips_the_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 38 MB model: the header is read, the weights are seeked past."""
    graph = tmp_path / "model.onnx"
    build_wd14_onnx(graph, 200_000, size=32)
    assert graph.stat().st_size > 38_000_000
    read = [0]
    real_open = open

    def counting_open(*args: Any, **kwargs: Any) -> Any:
        handle = real_open(*args, **kwargs)
        real_read = handle.read

        def counted(size: int = -1) -> bytes:
            data = real_read(size)
            read[0] += len(data)
            return data

        handle.read = counted
        return handle

    monkeypatch.setattr(folders, "open", counting_open, raising=False)
    _, outputs = onnx_io(graph)
    assert outputs == [TensorInfo("predictions_sigmoid", ("batch", 200_000))]
    assert read[0] < 10_000


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"tag_id,name,category,count\n1,a,0,1\n",
        b"\x08\x07\x3a\xff\xff\xff\xff\x0f",
        b"\xff" * 20,
    ],
)
def test_onnx_io_refuses_what_is_not_onnx(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(OnnxHeaderError):
        onnx_io(path)


def test_onnx_io_refuses_a_cut_file(model_dir: Path, tmp_path: Path) -> None:
    data = (model_dir / "model.onnx").read_bytes()
    path = tmp_path / "model.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(OnnxHeaderError, match=r"cut short|ends inside"):
        onnx_io(path)


# -- checks of folders -----------------------------------------------------------------------------


def test_folder_checks_follow_the_files(models: Path) -> None:
    checks = FolderChecks()
    broken = models / "broken"
    assert MISMATCH in checks.problem(broken, "broken")
    assert checks.problem(models / "tiny-v3", "tiny-v3") is None
    shutil.copyfile(models / "tiny-v3" / "selected_tags.csv", broken / "selected_tags.csv")
    assert checks.problem(broken, "broken") is None  # the CSV changed: read again
    (broken / "model.onnx").write_bytes(b"not onnx")
    assert "is not a readable ONNX model" in checks.problem(broken, "broken")


def test_a_folder_is_read_once_until_it_changes(
    models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    check = folders.folder_problem

    def counted(folder: Path, key: str) -> str | None:
        calls.append(folder)
        return check(folder, key)

    monkeypatch.setattr(folders, "folder_problem", counted)
    checks = FolderChecks()
    for _ in range(3):
        checks.problem(models / "broken", "broken")
    assert calls == [models / "broken"]
    stamp = time.time() + 5
    os.utime(models / "broken" / "model.onnx", (stamp, stamp))
    checks.problem(models / "broken", "broken")
    assert calls == [models / "broken"] * 2


# -- over HTTP -------------------------------------------------------------------------------------


def test_a_mismatched_folder_is_503_with_the_reason_on_every_route(
    api: Any, tmp_path: Path
) -> None:
    image = b64(sample_image(tmp_path))
    requests = [
        ("interrogate", {"image": image, "model": "broken"}),
        ("interrogate", {"image": image, "model": "broken", "queue": "", "name_in_queue": ""}),
        ("interrogate", {"image": image, "model": "broken", "queue": "q", "name_in_queue": "a"}),
        ("tag", {"image": image, "model": "broken"}),
        ("jobs", {"inputs": [str(tmp_path / "allowed")], "model": "broken"}),
    ]
    for route, body in requests:
        response = api.post(f"{URL}/{route}", json=body)
        assert response.status_code == 503, (route, response.text)
        assert response.json()["detail"] == (
            f"broken: {MISMATCH}; the two files come from different models"
        )
    assert api.get(f"{URL}/jobs").json() == {"jobs": []}  # no job was started


def test_interrogators_leave_out_what_cannot_load_and_models_marks_it(api: Any) -> None:
    names = api.get(f"{URL}/interrogators").json()["models"]
    assert names[0] == "tiny-v3"
    assert "broken" not in names
    models = {m["key"]: m for m in api.get(f"{URL}/models").json()["models"]}
    assert (models["broken"]["loadable"], models["broken"]["source"]) == (False, "local")
    assert MISMATCH in models["broken"]["error"]
    assert (models["tiny-v3"]["loadable"], models["tiny-v3"]["error"]) == (True, None)
    assert models["wd-vit-tagger-v3"]["loadable"] is True


def test_a_repaired_folder_is_offered_again(api: Any, models: Path, tmp_path: Path) -> None:
    assert "broken" not in api.get(f"{URL}/interrogators").json()["models"]
    shutil.copyfile(
        models / "tiny-v3" / "selected_tags.csv", models / "broken" / "selected_tags.csv"
    )
    assert "broken" in api.get(f"{URL}/interrogators").json()["models"]
    body = {"image": b64(sample_image(tmp_path)), "model": "broken"}
    assert api.post(f"{URL}/tag", json=body).status_code == 200


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda f: (f / "selected_tags.csv").write_text("tag_id,name\n1,a\n"), "category"),
        (lambda f: (f / "selected_tags.csv").write_bytes(b"\xff\xfe bad"), "not UTF-8"),
        (lambda f: (f / "model.onnx").write_bytes(b"\x00" * 10), "not a readable ONNX model"),
        (lambda f: make_model_dir(f, size=32, seed=3) and _add_csv_row(f), MISMATCH),
    ],
)
def test_every_kind_of_broken_folder_is_503(
    damage: Any, words: str, models: Path, api: Any, tmp_path: Path
) -> None:
    damage(models / "tiny-v3")
    response = api.post(
        f"{URL}/tag", json={"image": b64(sample_image(tmp_path)), "model": "tiny-v3"}
    )
    assert response.status_code == 503, response.text
    assert words in response.json()["detail"]


def test_a_registry_model_whose_files_do_not_match_is_503(model_dir: Path, tmp_path: Path) -> None:
    """Checked when it loads (the cheap check covers local folders): still a 503, not a 500."""
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    _add_csv_row(bad)
    cache = fake_hub_cache(tmp_path / "hf", "SmilingWolf/wd-vit-tagger-v3", "main", bad)
    api = client(make_app(models_dirs=[tmp_path / "none"], hf_cache=cache))
    body = {"image": b64(sample_image(tmp_path)), "model": "wd-vit-tagger-v3"}
    for route in ("interrogate", "tag"):
        response = api.post(f"{URL}/{route}", json=body)
        assert response.status_code == 503, response.text
        assert MISMATCH in response.json()["detail"]


@pytest.mark.parametrize("damage", ["garbage checkpoint", "bad config"])
def test_a_captioner_folder_that_cannot_load_is_503(
    damage: str, clipcap_dir: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    shutil.copytree(clipcap_dir, models / "my-clipcap")
    if damage == "garbage checkpoint":
        (models / "my-clipcap" / "model.pt").write_bytes(b"this is not a checkpoint")
    else:
        (models / "my-clipcap" / "clipcap.json").write_text("{not json", encoding="utf-8")
    api = client(make_app(models_dirs=[models]))
    body = {"image": b64(sample_image(tmp_path)), "model": "my-clipcap"}
    response = api.post(f"{URL}/caption", json=body)
    assert response.status_code == 503, response.text
    assert "my-clipcap" in response.json()["detail"] or "clipcap.json" in response.json()["detail"]
    assert "internal error" not in response.text
