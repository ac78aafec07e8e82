"""The dataset routes over HTTP: the same statistics, edits (dry run, undo) and checks as the
command line, confined to the allowed folders like batch jobs (outside paths, ``..``,
relative paths and symbolic links leading out are refused or left out)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from apiutil import client, make_app
from dataset_util import PHOTOS, faulty_dataset
from trees import tree

PREFIX = "/tagger/v1/dataset"


@pytest.fixture
def served(tmp_path: Path) -> tuple[object, Path]:
    """A client of an app allowing ``tmp_path/allowed``, and the dataset folder inside it."""
    folder, _ = faulty_dataset(tmp_path / "allowed")
    app = make_app(allowed_dirs=[tmp_path / "allowed"])
    return client(app), folder


def user_files(folder: Path) -> dict[str, bytes]:
    return {k: v for k, v in tree(folder).items() if not k.startswith(".tagger/")}


def test_stats_equal_the_core_statistics(served: tuple[object, Path]) -> None:
    from tagger.dataset.stats import dataset_stats

    api, folder = served
    reply = api.post(f"{PREFIX}/stats", json={"inputs": [str(folder)], "tags": ["outdoors"]})
    assert reply.status_code == 200
    assert reply.json() == dataset_stats([folder], cooccurrence=["outdoors"]).to_dict()


def test_edit_dry_run_then_apply_then_undo(served: tuple[object, Path]) -> None:
    api, folder = served
    before = user_files(folder)
    body = {"inputs": [str(folder)], "edit": {"trigger": "ohwx", "remove": ["outdoors"]}}
    dry = api.post(f"{PREFIX}/edit", json={**body, "dry_run": True}).json()
    assert dry["changed"] == len(PHOTOS)
    assert dry["journal"] is None
    assert user_files(folder) == before
    change = next(c for c in dry["changes"] if c["path"].endswith(PHOTOS[1][:-4] + ".txt"))
    assert change == {
        "path": str(folder / PHOTOS[1]).replace(".jpg", ".txt"),
        "before": "child, road, leaves, outdoors",
        "after": "ohwx, child, road, leaves",
    }
    done = api.post(f"{PREFIX}/edit", json=body).json()
    assert done["changed"] == len(PHOTOS)
    assert (folder / PHOTOS[1]).with_suffix(".txt").read_text() == "ohwx, child, road, leaves"
    journals = api.post(f"{PREFIX}/journals", json={"inputs": [str(folder)]}).json()["journals"]
    assert [j["id"] for j in journals] == [done["journal"]]
    undone = api.post(f"{PREFIX}/undo", json={"inputs": [str(folder)]}).json()
    assert undone["restored"] == len(PHOTOS)
    assert user_files(folder) == before
    again = api.post(f"{PREFIX}/undo", json={"inputs": [str(folder)]})
    assert again.status_code == 422
    assert "nothing to undo" in again.json()["detail"]


def test_checks_run_in_the_background(served: tuple[object, Path]) -> None:
    api, folder = served
    report = folder.parent / "report.html"
    started = api.post(
        f"{PREFIX}/checks",
        json={
            "inputs": [str(folder)],
            "options": {"checks": ["duplicates", "broken", "small"], "min_side": 100},
            "report": str(report),
        },
    )
    assert started.status_code == 202
    ident = started.json()["id"]
    for _ in range(200):
        job = api.get(f"{PREFIX}/checks/{ident}").json()
        if job["state"] != "running":
            break
        time.sleep(0.05)
    assert job["state"] == "done", job
    assert job["result"]["counts"] == {"duplicates": 2, "broken": 2, "small": 1}
    assert report.is_file()
    assert api.get(f"{PREFIX}/checks/nope").status_code == 404
    moved = api.post(f"{PREFIX}/trash", json={"inputs": [str(folder)], "files": ["cut.jpg"]})
    assert moved.status_code == 200
    assert not (folder / "cut.jpg").exists()
    assert api.post(f"{PREFIX}/undo", json={"inputs": [str(folder)]}).json()["restored"] == 1
    assert (folder / "cut.jpg").exists()


def test_paths_outside_the_allowed_folders_are_refused(
    served: tuple[object, Path], tmp_path: Path
) -> None:
    api, folder = served
    outside, _ = faulty_dataset(tmp_path / "outside")
    for route, extra in (
        ("stats", {}),
        ("edit", {"edit": {"trigger": "x"}}),
        ("undo", {}),
        ("journals", {}),
        ("trash", {"files": ["cut.jpg"]}),
        ("checks", {}),
    ):
        reply = api.post(f"{PREFIX}/{route}", json={"inputs": [str(outside)], **extra})
        assert reply.status_code == 403, (route, reply.text)
        assert "outside the folders this server allows" in reply.json()["detail"]
    assert api.post(f"{PREFIX}/stats", json={"inputs": ["relative/path"]}).status_code == 422
    dotted = api.post(f"{PREFIX}/stats", json={"inputs": [f"{folder}/../dataset"]})
    assert dotted.status_code == 403
    escape = api.post(f"{PREFIX}/trash", json={"inputs": [str(folder)], "files": ["../x.jpg"]})
    assert escape.status_code == 422
    report = api.post(
        f"{PREFIX}/checks", json={"inputs": [str(folder)], "report": str(tmp_path / "r.html")}
    )
    assert report.status_code == 403
    assert (outside / "cut.jpg").exists()


def test_links_inside_an_allowed_folder_that_lead_out_are_left_out(
    served: tuple[object, Path], tmp_path: Path
) -> None:
    api, folder = served
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "private.png").write_bytes((folder / PHOTOS[0]).read_bytes())
    (secret / "private.txt").write_text("secret_tag", encoding="utf-8")
    (folder / "link").symlink_to(secret, target_is_directory=True)
    (folder / "tiny.txt").symlink_to(secret / "private.txt")
    stats = api.post(f"{PREFIX}/stats", json={"inputs": [str(folder)]}).json()
    assert "secret_tag" not in dict(stats["frequency"])
    edit = api.post(f"{PREFIX}/edit", json={"inputs": [str(folder)], "edit": {"trigger": "x"}})
    assert edit.status_code == 200
    assert (secret / "private.txt").read_text(encoding="utf-8") == "secret_tag"


def test_routes_are_off_without_allowed_folders(tmp_path: Path) -> None:
    folder, _ = faulty_dataset(tmp_path)
    api = client(make_app())
    reply = api.post(f"{PREFIX}/stats", json={"inputs": [str(folder)]})
    assert reply.status_code == 403
    assert "turned off" in reply.json()["detail"]


def test_invalid_requests_get_422(served: tuple[object, Path]) -> None:
    api, folder = served
    bad = [
        {"inputs": [str(folder)], "edit": {}},  # an edit that changes nothing
        {"inputs": [str(folder)], "edit": {"order": "sideways"}},
        {"inputs": [str(folder)], "edit": {"trigger": "x"}, "where": "(("},
        {"inputs": [str(folder)], "edit": {"trigger": "x"}, "unknown": 1},
        {"inputs": [], "edit": {"trigger": "x"}},
    ]
    for body in bad:
        reply = api.post(f"{PREFIX}/edit", json=body)
        assert reply.status_code == 422, (body, reply.text)
        assert isinstance(reply.json()["detail"], str)
    unknown = api.post(f"{PREFIX}/checks", json={"inputs": [str(folder)], "options": {
        "checks": ["nope"]}})  # fmt: skip
    assert unknown.status_code == 422
