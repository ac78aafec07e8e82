"""HTTP batch jobs: the folder allow-list, progress, summary and cancel, on the tiny model."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from apiutil import client, make_app
from tiny import make_image

from tagger.api.jobs import JobModel
from tagger.options import BatchOptions, TagOptions
from tagger.registry import local_spec
from tagger.wd14 import WD14Tagger

JOBS = "/tagger/v1/jobs"


@pytest.fixture
def allowed(tmp_path: Path) -> Path:
    folder = tmp_path / "allowed"
    folder.mkdir()
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    make_image(folder / "secret.png", (20, 20), seed=7)
    (folder / "keep.txt").write_text("untouched\n")
    return folder


@pytest.fixture
def api(model_dir: Path, allowed: Path) -> Any:
    return client(make_app(models_dirs=[model_dir.parent], allowed_dirs=[allowed]))


def _images(folder: Path, count: int) -> list[Path]:
    return [make_image(folder / f"img{i:02d}.png", (24 + i, 30), seed=i) for i in range(count)]


def _wait(api: Any, job_id: str, timeout: float = 60) -> dict[str, Any]:
    """Poll a job until it has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = api.get(f"{JOBS}/{job_id}").json()
        if status["state"] not in ("queued", "counting", "running"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {status}")


def _start(api: Any, **body: Any) -> Any:
    return api.post(JOBS, json={"model": "tiny-v3", **body})


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


# -- jobs inside the allowed folders ---------------------------------------------------------------


def test_job_inside_allowed_folder_writes_what_the_engine_writes(
    api: Any, allowed: Path, model_dir: Path, tmp_path: Path
) -> None:
    images = _images(allowed / "set", 5)
    response = _start(
        api,
        inputs=[str(allowed / "set")],
        options={"general_threshold": 0.5},
        batch={"write_json": True, "output_dir": str(allowed / "out")},
    )
    assert response.status_code == 202, response.text
    started = response.json()
    assert started["state"] in ("queued", "counting", "running", "done")
    assert started["model"] == "tiny-v3"
    status = _wait(api, started["id"])
    assert status["state"] == "done", status
    assert status["progress"]["done"] == status["progress"]["total"] == 5
    summary = status["summary"]
    assert (summary["found"], summary["written"], summary["failed_count"]) == (5, 5, 0)
    assert summary["cancelled"] is False
    assert sum(summary["top_tags"].values()) > 0
    # The same run through the engine directly writes the same files.
    from tagger.batch import run_batch

    reference = tmp_path / "reference"
    tagger = WD14Tagger(local_spec(model_dir), providers="cpu").load()
    run_batch(
        [allowed / "set"],
        tagger,
        TagOptions(general_threshold=0.5),
        BatchOptions(write_json=True, output_dir=str(reference)),
    )
    assert _tree(allowed / "out") == _tree(reference)
    assert len(_tree(reference)) == 2 * len(images)
    listed = api.get(JOBS).json()["jobs"]
    assert [job["id"] for job in listed] == [started["id"]]


def test_job_with_glob_and_jsonl(api: Any, allowed: Path) -> None:
    _images(allowed / "a", 3)
    manifest = allowed / "meta" / "metadata.jsonl"
    response = _start(api, inputs=[str(allowed / "a" / "*.png")], batch={"jsonl": str(manifest)})
    assert response.status_code == 202, response.text
    assert _wait(api, response.json()["id"])["summary"]["written"] == 3
    lines = manifest.read_text().splitlines()
    assert [json.loads(line)["file_name"] for line in lines] == [
        "../a/img00.png",
        "../a/img01.png",
        "../a/img02.png",
    ]


# -- the allow-list ------------------------------------------------------------------------------


def test_no_allowed_folders_refuses_every_job(model_dir: Path, allowed: Path) -> None:
    _images(allowed, 1)
    api = client(make_app(models_dirs=[model_dir.parent]))
    response = _start(api, inputs=[str(allowed)])
    assert response.status_code == 403
    assert "--allow-dir" in response.json()["detail"]
    assert not (allowed / "img00.txt").exists()


def test_paths_outside_are_403(api: Any, allowed: Path, outside: Path) -> None:
    _images(allowed, 1)
    before = _tree(outside)
    cases = [
        {"inputs": [str(outside)]},
        {"inputs": [str(outside / "secret.png")]},
        {"inputs": [str(outside / "*.png")]},
        {"inputs": [str(allowed), str(outside)]},
        {"inputs": ["/"]},
        {"inputs": [str(allowed)], "batch": {"output_dir": str(outside)}},
        {"inputs": [str(allowed)], "batch": {"jsonl": str(outside / "m.jsonl")}},
    ]
    for body in cases:
        response = _start(api, **body)
        assert response.status_code == 403, (body, response.text)
        assert "outside the folders this server allows" in response.json()["detail"]
        assert str(allowed) in response.json()["detail"]
    assert _tree(outside) == before
    assert not (allowed / "img00.txt").exists()
    assert api.get(JOBS).json() == {"jobs": []}


def test_dotdot_is_403_even_when_it_stays_inside(api: Any, allowed: Path, outside: Path) -> None:
    _images(allowed / "sub", 1)
    for path in (
        f"{allowed}/../outside",
        f"{allowed}/sub/../sub",
        f"{allowed}/sub/..",
    ):
        response = _start(api, inputs=[path])
        assert response.status_code == 403, response.text
        assert "'..'" in response.json()["detail"]
    response = _start(api, inputs=[str(allowed)], batch={"output_dir": f"{allowed}/../outside"})
    assert response.status_code == 403


def test_symlink_escapes_are_refused(api: Any, allowed: Path, outside: Path) -> None:
    before = _tree(outside)
    (allowed / "link").symlink_to(outside, target_is_directory=True)
    (allowed / "file.png").symlink_to(outside / "secret.png")
    for body in (
        {"inputs": [str(allowed / "link")]},
        {"inputs": [str(allowed / "link" / "secret.png")]},
        {"inputs": [str(allowed / "file.png")]},
        {"inputs": [str(allowed / "link" / "*.png")]},
        {"inputs": [str(allowed)], "batch": {"output_dir": str(allowed / "link" / "out")}},
        {"inputs": [str(allowed)], "batch": {"jsonl": str(allowed / "link" / "m.jsonl")}},
    ):
        response = _start(api, **body)
        assert response.status_code == 403, (body, response.text)
    assert _tree(outside) == before


def test_symlinks_met_while_walking_fail_those_images_only(
    api: Any, allowed: Path, outside: Path
) -> None:
    """A folder inside the allowed one holding links outward: the links' images are not read,
    and an existing caption that is a link outward is not written through."""
    _images(allowed / "set", 2)
    (allowed / "set" / "zlink").symlink_to(outside, target_is_directory=True)
    (allowed / "set" / "zz.png").symlink_to(outside / "secret.png")
    (allowed / "set" / "img01.txt").symlink_to(outside / "keep.txt")
    before = _tree(outside)
    response = _start(
        api, inputs=[str(allowed / "set")], batch={"recursive": True, "on_existing": "overwrite"}
    )
    assert response.status_code == 202, response.text
    status = _wait(api, response.json()["id"])
    summary = status["summary"]
    assert (summary["written"], summary["failed_count"]) == (1, 3)
    reasons = {Path(f["path"]).name: f["reason"] for f in summary["failed"]}
    assert set(reasons) == {"img01.png", "secret.png", "zz.png"}
    assert "link leading outside" in reasons["img01.png"]
    assert "outside the allowed folders" in reasons["zz.png"]
    assert _tree(outside) == before
    assert (allowed / "set" / "img00.txt").is_file()


def test_relative_and_missing_paths_are_422(api: Any, allowed: Path) -> None:
    for body in (
        {"inputs": ["allowed"]},
        {"inputs": [str(allowed / "missing")]},
        {"inputs": []},
        {"inputs": [str(allowed)], "batch": {"output_dir": "out"}},
        {"inputs": [str(allowed)], "batch": {"caption_extension": "/x"}},
        {"inputs": [str(allowed)], "batch": {"batch_size": -1}},
        {"inputs": str(allowed)},
        {"inputs": [str(allowed)], "bogus": 1},
    ):
        response = _start(api, **body)
        assert response.status_code == 422, (body, response.text)


def test_job_with_unknown_or_unavailable_model(api: Any, allowed: Path) -> None:
    _images(allowed, 1)
    response = _start(api, inputs=[str(allowed)], model="nope")
    assert response.status_code == 404
    assert "tiny-v3" in response.json()["detail"]
    response = _start(api, inputs=[str(allowed)], model="wd14-vit-v2")
    assert response.status_code == 503
    assert "HF_HUB_OFFLINE" in response.json()["detail"]
    assert not (allowed / "img00.txt").exists()


def test_unknown_job_is_404(api: Any) -> None:
    assert api.get(f"{JOBS}/nope").status_code == 404
    assert api.post(f"{JOBS}/nope/cancel").status_code == 404


# -- progress and cancel -----------------------------------------------------------------------


def test_progress_and_cancel(api: Any, allowed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _images(allowed, 6)
    entered = threading.Event()
    release = threading.Event()
    forward = JobModel.forward

    def held(self: JobModel, batch: Any) -> Any:
        entered.set()
        assert release.wait(30)
        return forward(self, batch)

    monkeypatch.setattr(JobModel, "forward", held)
    response = _start(api, inputs=[str(allowed)], batch={"batch_size": 1})
    job_id = response.json()["id"]
    assert entered.wait(30)
    running = api.get(f"{JOBS}/{job_id}").json()
    assert running["state"] == "running"
    assert running["progress"]["total"] == 6
    assert running["progress"]["done"] == 0
    cancelled = api.post(f"{JOBS}/{job_id}/cancel")
    assert cancelled.status_code == 200
    release.set()
    status = _wait(api, job_id)
    assert status["state"] == "cancelled"
    assert status["summary"]["cancelled"] is True
    assert status["summary"]["written"] == 1  # the batch in progress is finished
    assert status["progress"]["done"] == 1
    assert sorted(p.name for p in allowed.glob("*.txt")) == ["img00.txt"]
    # Cancelling a finished job changes nothing.
    assert api.post(f"{JOBS}/{job_id}/cancel").json()["state"] == "cancelled"


def test_unload_between_batches_does_not_break_a_job(
    api: Any, allowed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _images(allowed, 4)
    calls: list[int] = []
    forward = JobModel.forward

    def unloading(self: JobModel, batch: Any) -> Any:
        calls.append(len(batch))
        result = forward(self, batch)
        self.service.unload()
        return result

    monkeypatch.setattr(JobModel, "forward", unloading)
    response = _start(api, inputs=[str(allowed)], batch={"batch_size": 1})
    status = _wait(api, response.json()["id"])
    assert status["state"] == "done"
    assert status["summary"]["written"] == 4
    assert calls == [1, 1, 1, 1]


def test_allowed_folder_given_through_a_symlink(model_dir: Path, tmp_path: Path) -> None:
    real = tmp_path / "real"
    _images(real, 2)
    link = tmp_path / "via"
    link.symlink_to(real, target_is_directory=True)
    api = client(make_app(models_dirs=[model_dir.parent], allowed_dirs=[link]))
    for folder in (link, real):
        response = _start(api, inputs=[str(folder)], batch={"on_existing": "overwrite"})
        assert response.status_code == 202, response.text
        assert _wait(api, response.json()["id"])["summary"]["written"] == 2
    assert os.path.realpath(link) == str(real)
