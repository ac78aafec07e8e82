"""``--engine ray``: a local Ray cluster writes exactly what the local engine writes.

One Ray instance (2 CPUs, a small object store) serves the whole module. Every test compares the
Ray engine's files byte for byte with ``tagger.batch.run_batch`` over a copy of the same images.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from trees import dataset, tree, twins  # noqa: E402

from tagger.batch import find_images, run_batch  # noqa: E402
from tagger.cli import main  # noqa: E402
from tagger.errors import OptionsError  # noqa: E402
from tagger.options import BatchOptions, TagOptions  # noqa: E402
from tagger.ray_engine import (  # noqa: E402
    ModelConfig,
    RayBatchRun,
    find_uri_images,
    run_batch_ray,
)
from tagger.registry import local_spec  # noqa: E402
from tagger.wd14 import WD14Tagger  # noqa: E402

ACTOR_TITLE = b"TaggerActor"
pytestmark = pytest.mark.usefixtures("ray_cluster")


def _options(root: Path, **extra) -> BatchOptions:
    """Recursive, with JSON sidecars and a manifest inside the tree."""
    return BatchOptions(recursive=True, write_json=True, jsonl=str(root / "meta.jsonl"), **extra)


def _relative_failures(summary, root: Path) -> list[tuple[str, str]]:
    """Failures with paths (in the image column and in the reasons) relative to ``root``."""
    return sorted(
        (Path(p).relative_to(root).as_posix(), why.replace(f"{root}{os.sep}", ""))
        for p, why in summary.failed
    )


@pytest.mark.parametrize("fixed", [False, True], ids=["dynamic-batch", "fixed-batch-1"])
def test_same_files_summary_and_failures_as_local(
    tmp_path: Path, model_dir: Path, fixed_model_dir: Path, fixed: bool
) -> None:
    folder = fixed_model_dir if fixed else model_dir
    local, remote = twins(tmp_path, 36)
    tags = TagOptions(character_tags_first=True, rating_tag="first")
    model = WD14Tagger(local_spec(folder), providers="cpu").load()
    extra = {"batch_size": 4} if not fixed else {}
    expected = run_batch([local], model, tags, _options(local, **extra))
    got = run_batch_ray(
        [remote], ModelConfig(local_spec(folder), providers="cpu"), tags, _options(remote, **extra)
    )
    assert tree(remote) == tree(local)
    assert (got.found, got.written, got.skipped, got.failed_count, got.tagged) == (
        expected.found,
        expected.written,
        expected.skipped,
        expected.failed_count,
        expected.tagged,
    )
    assert (got.found, got.written, got.failed_count) == (39, 37, 2)
    assert _relative_failures(got, remote) == _relative_failures(expected, local)
    assert [name for name, _ in _relative_failures(got, remote)] == ["a/broken.png", "c/same.png"]
    assert got.tag_counts == expected.tag_counts
    assert got.batch_size == (1 if fixed else 4)
    assert got.providers == ["CPUExecutionProvider"]
    assert not got.cancelled


def test_interrupted_then_resumed_equals_one_run(tmp_path: Path, model_dir: Path) -> None:
    local, remote = twins(tmp_path, 30)
    model = WD14Tagger(local_spec(model_dir), providers="cpu").load()
    run_batch([local], model, batch_options=_options(local))
    config = ModelConfig(local_spec(model_dir), providers="cpu")
    cancel = threading.Event()

    def stop_after_ten(progress) -> None:
        if progress.written >= 10:
            cancel.set()

    first = RayBatchRun(
        [remote], config, batch_options=_options(remote), progress=stop_after_ten, cancel=cancel
    ).run()
    assert first.cancelled
    assert first.written == 10  # stops after the image being written
    for _ in range(300):  # the cancelled run's actors go away
        if not _session_worker_pids():
            break
        time.sleep(0.1)
    assert not _session_worker_pids()
    assert not any(".tagger-tmp" in name for name in tree(remote))
    lines = (remote / "meta.jsonl").read_text().splitlines()
    assert len(lines) == first.written
    second = run_batch_ray([remote], config, batch_options=_options(remote))
    done = first.written
    assert (second.skipped, second.written, second.tagged) == (done, 31 - done, 31 - done)
    assert tree(remote) == tree(local)
    third = run_batch_ray([remote], config, batch_options=_options(remote))
    assert (third.skipped, third.written, third.failed_count) == (31, 0, 2)
    assert tree(remote) == tree(local)


def _session_worker_pids() -> set[int]:
    """PIDs of this Ray session's model actors (children of our raylet, titled by the class)."""
    node = ray._private.worker._global_node
    raylet = node.all_processes["raylet"][0].process.pid
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if ACTOR_TITLE in cmdline and parent == raylet:
            found.add(int(entry.name))
    return found


def _session_workers_busy() -> set[int]:
    """PIDs of this session's model actors that are running a batch right now."""
    busy = set()
    for pid in _session_worker_pids():
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b".submit" in title:  # Ray titles an actor by the method it is running
            busy.add(pid)
    return busy


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the actor's process through /proc")
def test_killed_actor_is_replaced_and_files_are_the_same(tmp_path: Path, model_dir: Path) -> None:
    # The model actor is killed while it runs its first batch of images: nothing it computed
    # has reached the driver, and the whole run is left to the actor that replaces it.
    local, remote = twins(tmp_path, 90, side=700)
    model = WD14Tagger(local_spec(model_dir), providers="cpu").load()
    expected = run_batch([local], model, batch_options=_options(local))
    killed: list[tuple[int, int]] = []
    replacements: set[int] = set()
    written = [0]
    finished = threading.Event()

    def kill_first_busy_actor() -> None:
        while not finished.wait(0.005):
            if killed:
                replacements.update(_session_worker_pids() - {pid for pid, _ in killed})
                continue
            for pid in _session_workers_busy():
                os.kill(pid, signal.SIGKILL)
                killed.append((pid, written[0]))

    def count(progress) -> None:
        written[0] = progress.written

    watcher = threading.Thread(target=kill_first_busy_actor, daemon=True)
    watcher.start()
    try:
        got = RayBatchRun(
            [remote],
            ModelConfig(local_spec(model_dir), providers="cpu"),
            batch_options=_options(remote),
            progress=count,
        ).run()
    finally:
        finished.set()
        watcher.join()
    assert killed, "the model actor was never seen running a batch"
    assert all(done < expected.written for _, done in killed)  # really mid-way
    assert replacements  # a new actor process took over the work left
    assert (got.written, got.failed_count, got.tagged) == (expected.written, 2, expected.tagged)
    assert tree(remote) == tree(local)  # no duplicate manifest lines, no temp files


def test_file_uri_inputs_match_local_paths(tmp_path: Path, model_dir: Path) -> None:
    images = dataset(tmp_path / "images", 12)
    listed = [(i.path, i.root, i.conflict) for i in find_images([images], recursive=True)]
    by_uri = [(i.path, i.root, i.conflict) for i in find_uri_images(images.as_uri(), True)]
    assert by_uri == listed
    shallow = [i.path for i in find_uri_images(images.as_uri() + "/c", False)]
    assert shallow == [i.path for i in find_images([images / "c"])]

    model = WD14Tagger(local_spec(model_dir), providers="cpu").load()
    out_local, out_uri = tmp_path / "out-local", tmp_path / "out-uri"
    options = {"recursive": True, "write_json": True}
    run_batch([images], model, batch_options=BatchOptions(output_dir=str(out_local), **options))
    got = run_batch_ray(
        [images.as_uri()],
        ModelConfig(local_spec(model_dir), providers="cpu"),
        batch_options=BatchOptions(
            output_dir=str(out_uri), jsonl=str(out_uri / "meta.jsonl"), **options
        ),
    )
    files = tree(out_uri)
    manifest = files.pop("meta.jsonl").decode().splitlines()
    assert files == tree(out_local)
    assert (got.written, got.failed_count) == (13, 2)
    assert [line.split('"')[3] for line in manifest[:2]] == [
        (images / "a" / "img001.png").as_uri(),
        (images / "a" / "img004.png").as_uri(),
    ]


def test_parquet_output_holds_the_manifest_records(tmp_path: Path, model_dir: Path) -> None:
    import json

    import pyarrow.parquet as pq

    images = dataset(tmp_path / "images", 6)
    out = tmp_path / "out"
    table_uri = (tmp_path / "tables" / "tags.parquet").as_uri()
    got = RayBatchRun(
        [images.as_uri()],
        ModelConfig(local_spec(model_dir), providers="cpu"),
        batch_options=BatchOptions(recursive=True, output_dir=str(out), jsonl=str(out / "m.jsonl")),
        parquet=table_uri,
    ).run()
    assert got.written == 7
    rows = pq.read_table(tmp_path / "tables" / "tags.parquet").to_pylist()
    lines = [json.loads(line) for line in (out / "m.jsonl").read_text().splitlines()]
    assert rows == lines
    assert rows[0]["file_name"] == (images / "a" / "img001.png").as_uri()
    assert rows[0]["text"] + "\n" == (out / "a" / "img001.txt").read_text()
    assert not list((tmp_path / "tables").glob(".*"))


def test_model_that_fails_to_load_stops_the_run_with_exit_2(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken-model"
    shutil.copytree(model_dir, broken)
    (broken / "model.onnx").write_bytes(b"not an onnx file")
    images = dataset(tmp_path / "images", 3)
    args = ["tag", str(images), "--model", str(broken), "--recursive", "--engine", "ray"]
    assert main(args) == 2
    assert "tagger: error:" in capsys.readouterr().err
    assert not list(images.rglob("*.txt"))


def test_uri_inputs_need_an_output_dir(model_dir: Path) -> None:
    with pytest.raises(OptionsError, match="--output-dir"):
        RayBatchRun(["s3://bucket/images"], ModelConfig(local_spec(model_dir)))


def test_cli_engine_ray_same_files_and_exit_status(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local, remote = twins(tmp_path, 9)
    common = ["--model", str(model_dir), "--recursive", "--json", "--no-progress"]
    assert main(["tag", str(local), *common]) == 1
    local_err = capsys.readouterr().err
    assert main(["tag", str(remote), *common, "--engine", "ray"]) == 1
    ray_err = capsys.readouterr().err
    assert tree(remote) == tree(local)
    for err in (local_err, ray_err):
        assert "12 found, 10 written, 0 skipped, 2 failed" in err
        assert "broken.png: not an image" in err
    assert main(["tag", str(remote), *common, "--engine", "ray"]) == 1  # the conflict stays
    assert "12 found, 0 written, 10 skipped, 2 failed" in capsys.readouterr().err
    (remote / "c" / "same.png").unlink()
    (remote / "a" / "broken.png").unlink()
    assert main(["tag", str(remote), *common, "--engine", "ray"]) == 0
    assert "10 found, 0 written, 10 skipped, 0 failed" in capsys.readouterr().err
