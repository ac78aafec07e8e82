"""The command line as a user runs it: real processes, real files, exit statuses."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny import make_image

from tagger.cli import build_parser, main, options_from_args, parse_replacements
from tagger.options import BatchOptions, TagOptions, field_names


def tagger_cmd(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tagger", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_every_option_has_a_flag() -> None:
    parser = build_parser()
    tag = parser._subparsers._group_actions[0].choices["tag"]
    dests = {action.dest for action in tag._actions}
    assert set(field_names(TagOptions)) <= dests
    assert set(field_names(BatchOptions)) <= dests


def test_flags_map_to_options() -> None:
    args = build_parser().parse_args(
        ["tag", "x", "--thresh", "0.5", "--character-threshold", "0.9", "--undesired-tags",
         "a, b_c", "--use-rating-tags-as-last-tag", "--keep-underscore", "--append-tags",
         "--tag-replacement", "cat ears,animal ears", "--caption-extension", "caption"]
    )  # fmt: skip
    tag, batch = options_from_args(args)
    assert tag.general_threshold == 0.5
    assert tag.character_threshold == 0.9
    assert tag.exclude_tags == ["a", "b_c"]
    assert tag.rating_tag == "last"
    assert tag.replace_underscores is False
    assert tag.replace_tags == {"cat ears": "animal ears"}
    assert batch.on_existing == "append"
    assert batch.caption_extension == "caption"
    defaults_tag, defaults_batch = options_from_args(build_parser().parse_args(["tag", "x"]))
    assert defaults_tag == TagOptions()
    assert defaults_batch == BatchOptions()


def test_parse_replacements_escapes() -> None:
    assert parse_replacements(r"a\,b,c;d,e\;f") == {"a,b": "c", "d": "e;f"}
    with pytest.raises(Exception, match="not 'source,replacement'"):
        parse_replacements("lonely")


def test_tag_folder_with_broken_files_exits_1(tmp_path: Path, model_dir: Path) -> None:
    make_image(tmp_path / "good.png", (40, 30), seed=1)
    make_image(tmp_path / "sub" / "good2.png", (30, 40), seed=2)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    done = tagger_cmd("tag", str(tmp_path), "--model", str(model_dir), "--recursive", "--json",
                      "--no-progress")  # fmt: skip
    assert done.returncode == 1
    assert f"failed: {tmp_path / 'bad.png'}:" in done.stderr
    assert "1 failed" in done.stderr
    assert "most frequent tags:" in done.stderr
    assert (tmp_path / "good.txt").is_file()
    assert (tmp_path / "sub" / "good2.json").is_file()
    assert not (tmp_path / "bad.txt").exists()


def test_all_written_exits_0_and_rerun_skips(tmp_path: Path, model_dir: Path) -> None:
    make_image(tmp_path / "a.png", (40, 30), seed=1)
    first = tagger_cmd("tag", str(tmp_path), "--model", str(model_dir), "--no-progress")
    assert first.returncode == 0, first.stderr
    second = tagger_cmd("tag", str(tmp_path), "--model", str(model_dir), "--no-progress")
    assert second.returncode == 0
    assert "0 written, 1 skipped" in second.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["--general-threshold", "1.5"], "outside 0..1"),
        (["--on-existing", "explode"], "invalid choice"),
        (["--json", "--caption-extension", ".json"], "collide"),
    ],
)
def test_bad_arguments_exit_2(tmp_path: Path, model_dir: Path, args, message) -> None:
    make_image(tmp_path / "a.png", (10, 10), seed=1)
    base = ["tag", str(tmp_path)] + ([] if "--model" in args else ["--model", str(model_dir)])
    done = tagger_cmd(*base, *args, "--no-progress")
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "a.txt").exists()


def test_missing_input_exits_2(tmp_path: Path, model_dir: Path) -> None:
    assert main(["tag", str(tmp_path / "nope"), "--model", str(model_dir)]) == 2


def test_offline_registry_model_fails_at_once_with_instructions(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png", (10, 10), seed=1)
    done = tagger_cmd("tag", str(tmp_path), "--model", "wd-vit-tagger-v3", "--hf-cache",
                      str(tmp_path / "cache"), "--no-progress")  # fmt: skip
    assert done.returncode == 2
    for needle in ("model.onnx", "selected_tags.csv", "SmilingWolf/wd-vit-tagger-v3", "--model"):
        assert needle in done.stderr


def test_models_lists_local_and_registry(tmp_path: Path, model_dir: Path) -> None:
    done = tagger_cmd("models", "--models-dir", str(model_dir.parent), "--json")
    assert done.returncode == 0
    rows = json.loads(done.stdout)
    local = [row for row in rows if row["key"] == model_dir.name]
    assert len(local) == 1
    assert local[0]["on_disk"] is True
    assert rows[0]["key"] == model_dir.name  # local models first
    assert {"wd-vit-tagger-v3", "wd-v1-4-moat-tagger-v2"} <= {row["key"] for row in rows}
    text = tagger_cmd("models", "--models-dir", str(model_dir.parent))
    assert "wd-eva02-large-tagger-v3" in text.stdout


def test_model_by_name_from_models_dir(tmp_path: Path, model_dir: Path) -> None:
    make_image(tmp_path / "a.png", (10, 10), seed=1)
    done = tagger_cmd("tag", str(tmp_path), "--model", model_dir.name, "--models-dir",
                      str(model_dir.parent), "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_killed_run_leaves_no_partial_file_and_rerun_completes(
    tmp_path: Path, model_dir: Path
) -> None:
    """SIGKILL mid-run, rerun: the result is byte-identical to an uninterrupted run."""
    source = tmp_path / "source"
    for i in range(160):
        make_image(source / f"d{i % 4}" / f"img{i:03d}.png", (900, 700), seed=i)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    shutil.copytree(source, killed)
    shutil.copytree(source, clean)
    args = ["--model", str(model_dir), "--recursive", "--json", "--no-progress",
            "--batch-size", "1", "--workers", "1"]  # fmt: skip

    proc = subprocess.Popen(
        [sys.executable, "-m", "tagger", "tag", str(killed), "--jsonl",
         str(killed / "metadata.jsonl"), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while len(list(killed.rglob("*.txt"))) < 10 and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written_at_kill = len(list(killed.rglob("*.txt")))
    assert 10 <= written_at_kill < 160, "the run was not killed mid-way"
    for caption in killed.rglob("*.txt"):  # every file there is whole
        assert caption.read_text(encoding="utf-8").endswith("\n")
    for sidecar in killed.rglob("*.json"):
        json.loads(sidecar.read_text(encoding="utf-8"))

    rerun = tagger_cmd("tag", str(killed), "--jsonl", str(killed / "metadata.jsonl"), *args)
    assert rerun.returncode == 0, rerun.stderr
    full = tagger_cmd("tag", str(clean), "--jsonl", str(clean / "metadata.jsonl"), *args)
    assert full.returncode == 0, full.stderr
    assert _tree(killed) == _tree(clean)
    assert len(list(clean.rglob("*.txt"))) == 160
