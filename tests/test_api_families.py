"""HTTP: models of other families through /tag, batch jobs and /tag-ensemble; /families;
/cleanup (a TestClient on the real app, tiny models)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tiny_families as tf

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from apiutil import b64, client, make_app, sample_image

from tagger.cache import get_tagger
from tagger.image import load_image
from tagger.options import TagOptions
from tagger.registry import local_spec


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    tf.make_cl_tagger(root / "cl")
    tf.make_camie(root / "camie")
    import tiny

    tiny.make_model_dir(root / "wd")
    return root


def test_tag_route_serves_a_family_model_with_every_category(models: Path, tmp_path: Path) -> None:
    api = client(make_app(models_dirs=[models]))
    image = sample_image(tmp_path)
    thresholds = {"copyright": 0.0, "meta": 0.0, "artist": 2, "model": 2}
    options = {"general_threshold": 0.0, "quality_tag": "first", "category_thresholds": thresholds}
    reply = api.post(
        "/tagger/v1/tag", json={"image": b64(image), "model": "cl", "options": options}
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    tagger = get_tagger(local_spec(models / "cl"), providers="cpu")
    scores = tagger.forward(tagger.preprocess(load_image(image))[None])[0]
    expected = tagger.postprocess(scores, TagOptions(**options))
    assert body["general"] == pytest.approx(expected.general)
    assert set(body["other"]) == set(expected.other)
    for category, scores in expected.other.items():
        assert body["other"][category] == pytest.approx(scores)
    assert set(body["other"]) == {"copyright", "meta", "quality"}
    best = max(expected.other["quality"], key=expected.other["quality"].get)
    assert body["tags"][0] == best.replace("_", " ")


def test_families_route(models: Path) -> None:
    families = client(make_app(models_dirs=[models])).get("/tagger/v1/families").json()
    names = [row["family"] for row in families]
    assert names[:2] == ["wd14", "pixai"]
    assert {"cl_tagger", "camie", "z3d", "idolsankaku", "mldanbooru", "onnx"} <= set(names)


def test_ensemble_route_merges_two_families(models: Path, tmp_path: Path) -> None:
    api = client(make_app(models_dirs=[models]))
    image = sample_image(tmp_path, seed=5)
    reply = api.post(
        "/tagger/v1/tag-ensemble",
        json={"image": b64(image), "models": ["wd", "cl"], "mode": "max",
              "options": {"general_threshold": 0.1}},
    )  # fmt: skip
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["models"] == ["wd", "cl"]
    assert set(body["per_model"]) == {"wd", "cl"}
    wd = get_tagger(local_spec(models / "wd"), providers="cpu")
    cl = get_tagger(local_spec(models / "cl"), providers="cpu")
    rgb = load_image(image)
    raw = {}
    for model in (wd, cl):
        row = model.forward(model.preprocess(rgb)[None])[0]
        for i in model.labels.general:
            name = model.labels.names[i]
            raw[name] = max(raw.get(name, 0.0), float(row[i]))
    assert body["general"] == pytest.approx({n: s for n, s in raw.items() if s > 0.1})
    one = api.post("/tagger/v1/tag-ensemble", json={"image": b64(image), "models": ["wd"]})
    assert one.status_code == 422
    assert "at least two" in one.json()["detail"]


def test_cleanup_route() -> None:
    api = client(make_app())
    reply = api.post(
        "/tagger/v1/cleanup",
        json={"tags": ["hair", "chair", "long_hair", "tail", "ponytail", "red_eyes", "smile"],
              "drop_overlap": True, "blacklist": ["smile"]},
    )  # fmt: skip
    assert reply.json() == {"tags": ["chair", "long_hair", "tail", "ponytail", "red_eyes"]}
    chars = api.post("/tagger/v1/cleanup", json={"tags": ["red_eyes", "chair"],
                                                 "drop_character_tags": True})  # fmt: skip
    assert chars.json() == {"tags": ["chair"]}


def test_batch_job_with_a_family_model(models: Path, tmp_path: Path) -> None:
    import time

    folder = tmp_path / "data"
    for i in range(2):
        sample_image(folder, seed=i)
    api = client(make_app(models_dirs=[models], allowed_dirs=[tmp_path]))
    started = api.post(
        "/tagger/v1/jobs",
        json={"inputs": [str(folder)], "model": "camie", "batch": {"write_json": True},
              "options": {"category_thresholds": {"year": 0.0}}},
    )  # fmt: skip
    assert started.status_code == 202, started.text
    job = started.json()["id"]
    for _ in range(200):
        status = api.get(f"/tagger/v1/jobs/{job}").json()
        if status["state"] not in ("queued", "counting", "running"):
            break
        time.sleep(0.05)
    assert status["state"] == "done", status
    assert status["summary"]["written"] == 2
    record = json.loads((folder / "sample0.json").read_text())
    tagger = get_tagger(local_spec(models / "camie"), providers="cpu")
    rgb = load_image(folder / "sample0.png")
    row = tagger.forward(tagger.preprocess(rgb)[None])[0]
    assert record["year"] == {"year_2024": round(float(row[9]), 6)}
    assert np.isclose(record["rating"]["general"], float(row[0]), atol=1e-6)
