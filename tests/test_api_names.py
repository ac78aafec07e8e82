"""Model and captioner names over HTTP are names: never a folder on the server.

Real folders are planted where a name could lead if it were taken as a path (the server's
working directory, the home folder, an absolute path) and every route that takes a name is
asked for them: the 404 must be byte for byte the one given once the folders are gone.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from apiutil import b64, client, make_app, sample_image

from tagger.registry import find_captioner_by_name, find_model_by_name, name_problem

URL = "/tagger/v1"


def _plant_tagger(folder: Path, model_dir: Path) -> None:
    """A real, loadable tiny WD14 model in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("model.onnx", "selected_tags.csv"):
        shutil.copyfile(model_dir / name, folder / name)


def _plant_captioners(folder: Path) -> None:
    """What makes a folder a BLIP folder and a CLIP-prefix folder to the registry."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "blip"}), encoding="utf-8")
    (folder / "clipcap.json").write_text(json.dumps({"checkpoint": "model.pt"}), "utf-8")


@pytest.fixture
def world(tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A server whose models folder holds tiny-v3, run from a working directory and with a
    home folder where folders can be planted."""
    models = tmp_path / "models"
    _plant_tagger(models / "tiny-v3", model_dir)
    cwd = tmp_path / "cwd"
    (cwd / "sub").mkdir(parents=True)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(cwd / "sub")
    monkeypatch.setenv("HOME", str(home))
    allowed = tmp_path / "allowed"
    image = sample_image(allowed)
    app = make_app(models_dirs=[models], allowed_dirs=[allowed])
    return {"api": client(app), "cwd": cwd, "home": home, "image": image, "allowed": allowed}


def _plant_everywhere(world: dict[str, Any], model_dir: Path) -> list[Path]:
    """Model folders (tagger and captioner) wherever a path-like name could lead."""
    planted = [
        world["cwd"] / "sub" / "planted",  # a relative name in the working directory
        world["cwd"] / "planted",  # ../planted
        world["home"],  # ~
        world["home"] / "planted",  # ~/planted
        world["cwd"] / "sub" / "planted.",  # a name ending with a dot (Windows drops it)
    ]
    for folder in planted:
        _plant_tagger(folder, model_dir)
        _plant_captioners(folder)
    return planted


def _remove(planted: list[Path], home: Path) -> None:
    for folder in planted:
        if folder == home:
            for child in folder.iterdir():
                if child.is_file():
                    child.unlink()
        elif folder.exists():
            shutil.rmtree(folder)


def _names(world: dict[str, Any]) -> list[str]:
    cwd, home = world["cwd"], world["home"]
    return [
        "planted",
        "./planted",
        "../planted",
        "planted/",
        "planted.",
        "~",
        "~/planted",
        f"~{home.name}",
        str(cwd / "sub" / "planted"),
        str(home),
        "..\\planted",
        "C:planted",
        "C:\\planted",
        "planted\x00",
        "NUL",
    ]


def _requests(world: dict[str, Any]) -> dict[str, Callable[[str], Any]]:
    """Every route that takes a model or captioner name, as a function of the name."""
    api, image = world["api"], b64(world["image"])
    return {
        "interrogate": lambda name: api.post(
            f"{URL}/interrogate", json={"image": image, "model": name}
        ),
        "interrogate queue": lambda name: api.post(
            f"{URL}/interrogate",
            json={"image": image, "model": name, "queue": "q", "name_in_queue": "a"},
        ),
        "tag": lambda name: api.post(f"{URL}/tag", json={"image": image, "model": name}),
        "caption": lambda name: api.post(f"{URL}/caption", json={"image": image, "model": name}),
        "jobs": lambda name: api.post(
            f"{URL}/jobs", json={"inputs": [str(world["allowed"])], "model": name}
        ),
    }


def test_path_like_names_get_the_404_of_an_absent_name(
    world: dict[str, Any], model_dir: Path
) -> None:
    planted = _plant_everywhere(world, model_dir)
    names = _names(world)
    routes = _requests(world)
    with_folders = {
        (route, name): (reply.status_code, reply.content)
        for route, call in routes.items()
        for name in names
        for reply in [call(name)]
    }
    _remove(planted, world["home"])
    without = {
        (route, name): (reply.status_code, reply.content)
        for route, call in routes.items()
        for name in names
        for reply in [call(name)]
    }
    assert with_folders == without
    assert {status for status, _ in with_folders.values()} == {404}
    # The same reply for tagger names, whatever the name points at: only the name differs.
    detail = json.loads(with_folders[("tag", "planted")][1])["detail"]
    assert detail.startswith("unknown model 'planted': name a model by its key")
    assert "paths are not accepted over HTTP" in detail
    assert "tiny-v3" in detail
    assert "wd-vit-tagger-v3" in detail
    caption = json.loads(with_folders[("caption", "~")][1])["detail"]
    assert caption.startswith("unknown captioner '~': name a captioner by its key")


def test_the_same_folder_in_the_models_folder_is_found(
    world: dict[str, Any], model_dir: Path, tmp_path: Path
) -> None:
    """The planted folders are real models: named through the models folder, they run."""
    _plant_everywhere(world, model_dir)
    api = client(make_app(models_dirs=[world["cwd"] / "sub"]))
    image = b64(world["image"])
    reply = api.post(f"{URL}/tag", json={"image": image, "model": "planted"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == "planted"


def test_a_long_name_is_echoed_cut_short(world: dict[str, Any]) -> None:
    name = "x" * 5000
    reply = world["api"].post(f"{URL}/tag", json={"image": "QUJD", "model": name})
    assert reply.status_code == 404
    detail = reply.json()["detail"]
    assert detail.startswith("unknown model '" + "x" * 100 + "'…:")
    assert len(reply.content) < 2000


@pytest.mark.parametrize(
    "name",
    [
        "",
        "~",
        "~root",
        "~/x",
        ".",
        "..",
        ".hidden",
        "a/b",
        "a\\b",
        "/etc",
        "C:",
        "c:\\x",
        "x:stream",
        "a\x00b",
        "tab\there",
        "x.",
        "CON",
        "com1.onnx",
        "x" * 256,
    ],
)
def test_name_problem_refuses(name: str) -> None:
    assert name_problem(name) is not None


@pytest.mark.parametrize(
    "name", ["wd-vit-tagger-v3", "wd14-vit.v2", "tiny-v3", "my model", "模型", "x" * 255, "a~b"]
)
def test_name_problem_accepts(name: str) -> None:
    assert name_problem(name) is None


def test_find_by_name_reads_only_the_models_folders(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    _plant_tagger(models / "tiny", model_dir)
    _plant_captioners(models / "cap")
    _plant_tagger(tmp_path / "planted", model_dir)
    _plant_captioners(tmp_path / "planted")
    monkeypatch.chdir(tmp_path)
    assert find_model_by_name("tiny", [models]).path == (models / "tiny").resolve()
    assert find_captioner_by_name("cap", [models]).path == (models / "cap").resolve()
    assert find_model_by_name("wd14-vit.v2", [models]).key == "wd-v1-4-vit-tagger-v2"
    assert find_captioner_by_name("blip", [models]).key == "blip-large"
    for name in ("planted", "../planted", str(tmp_path / "planted"), "~"):
        assert find_model_by_name(name, [models]) is None
        assert find_captioner_by_name(name, [models]) is None
