"""The command line as a user runs it: real processes, real files, exit statuses."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tiny import make_image

from tagger.cli import build_parser, main
from tagger.cli.common import options_from_args
from tagger.option_text import parse_replacements
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


# -- what users see -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "count"),
    [(["tag", "x"], 0), (["tag", "x", "-v"], 1), (["-v", "tag", "x"], 1),
     (["-v", "tag", "x", "-vv"], 3), (["caption", "x", "--verbose"], 1), (["models", "-v"], 1),
     (["serve", "-v"], 1), (["ui", "-v"], 1)],
)  # fmt: skip
def test_verbose_before_or_after_the_sub_command(argv, count) -> None:
    from tagger.cli import verbosity

    assert verbosity(build_parser().parse_args(argv)) == count


def test_verbose_after_the_sub_command_shows_info(tmp_path: Path, model_dir: Path) -> None:
    make_image(tmp_path / "a.png", (20, 20), seed=1)
    quiet = tagger_cmd("tag", str(tmp_path), "--model", str(model_dir), "--no-progress")
    loud = tagger_cmd("tag", str(tmp_path), "--model", str(model_dir), "--no-progress", "-v")
    assert quiet.returncode == loud.returncode == 0
    assert "tagger: INFO: loaded tiny-v3" not in quiet.stderr
    assert "tagger: INFO: loaded tiny-v3" in loud.stderr


def test_no_images_names_recursive_when_sub_folders_hold_images(
    tmp_path: Path, model_dir: Path
) -> None:
    nested, empty = tmp_path / "nested", tmp_path / "empty"
    make_image(nested / "sub" / "a.png", (20, 20), seed=1)
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("not an image\n", encoding="utf-8")
    model = ["--model", str(model_dir), "--no-progress"]
    done = tagger_cmd("tag", str(nested), *model)
    assert done.returncode == 0
    assert (
        f"tagger: WARNING: no images found in {nested}; sub-folders hold images: add --recursive "
        "to tag them"
    ) in done.stderr.splitlines()
    assert not (nested / "sub" / "a.txt").exists()
    none = tagger_cmd("tag", str(empty), *model)
    assert f"tagger: WARNING: no images found in {empty}" in none.stderr.splitlines()
    assert "--recursive" not in none.stderr
    recursive = tagger_cmd("tag", str(nested), *model, "--recursive")
    assert recursive.returncode == 0
    assert "no images found" not in recursive.stderr
    assert (nested / "sub" / "a.txt").is_file()


def test_models_never_offers_a_download_it_cannot_do(tmp_path: Path, model_dir: Path) -> None:
    from tagger.cli.models import availability

    where = ["--models-dir", str(model_dir.parent), "--hf-cache", str(tmp_path / "cache")]
    rows = json.loads(tagger_cmd("models", *where, "--json").stdout)
    by_key = {row["key"]: row for row in rows}
    state = lambda row: (row["downloadable"], row["on_disk"], row["availability"])  # noqa: E731
    assert state(by_key["clipcap-coco"]) == (False, False, "missing")
    assert state(by_key["wd-vit-tagger-v3"]) == (True, False, "download")
    assert state(by_key[model_dir.name]) == (False, True, "on disk")
    for row in rows:
        assert row["availability"] == availability(row["on_disk"], row["downloadable"])
    text = tagger_cmd("models", *where).stdout
    columns = {row[0]: row[1:] for row in (re.split(r"\s{2,}", line) for line in text.splitlines())}
    assert columns["clipcap-coco"] == ["missing", "no download: put coco_weights.pt in "
                                       "models/clipcap-coco/"]  # fmt: skip
    assert columns["wd-vit-tagger-v3"] == ["download", "SmilingWolf/wd-vit-tagger-v3@main"]
    assert columns[model_dir.name] == ["on disk", str(model_dir)]
    assert {row[0] for row in columns.values()} <= {"on disk", "download", "missing"}


def test_an_output_that_cannot_be_made_is_one_line_and_exit_2(
    tmp_path: Path, model_dir: Path
) -> None:
    images = tmp_path / "images"
    make_image(images / "a.png", (20, 20), seed=1)
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way\n", encoding="utf-8")
    done = tagger_cmd("tag", str(images), "--model", str(model_dir), "--no-progress",
                      "--jsonl", str(blocker / "metadata.jsonl"))  # fmt: skip
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("tagger: error:")]
    assert len(errors) == 1
    assert str(blocker) in errors[0]
    assert not (images / "a.txt").exists()


def test_each_warning_is_printed_once(tmp_path: Path, model_dir: Path) -> None:
    """A real run that warns (fp16 on the CPU): each line once."""
    pytest.importorskip("onnx")
    make_image(tmp_path / "images" / "a.png", (20, 20), seed=1)
    env = {**os.environ, "TAGGER_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "tagger", "tag", str(tmp_path / "images"), "--model",
         str(model_dir), "--fp16", "--device", "cpu", "--no-progress"],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    warnings = [line for line in lines if line.startswith("tagger: WARNING:")]
    assert len(warnings) == 1, lines
    assert "float16 on the CPU" in warnings[0]
    assert len(lines) == len(set(lines)), lines


def test_a_library_with_its_own_handler_is_printed_once() -> None:
    """huggingface_hub gives its logger a stderr handler and lets records reach the root
    logger too: the command line's handler leaves such records to it."""
    code = textwrap.dedent(
        """
        import logging
        from huggingface_hub.utils import logging as hub_logging
        from tagger.cli.common import configure_logging

        restore = configure_logging(0)
        hub_logging.get_logger("huggingface_hub.file_download").warning("from the hub")
        logging.getLogger("tagger").warning("from tagger")
        logging.warning("from the root logger")
        own = logging.getLogger("somelib")
        own.addHandler(logging.StreamHandler())
        own.warning("from a library with a console handler")
        null = logging.getLogger("quietlib")
        null.addHandler(logging.NullHandler())
        null.warning("from a library with a null handler")
        logging.getLogger("tagger").info("not shown without -v")
        restore()
        logging.getLogger("tagger").warning("after the run")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "from the hub",
        "tagger: WARNING: from tagger",
        "tagger: WARNING: from the root logger",
        "from a library with a console handler",
        "tagger: WARNING: from a library with a null handler",
        "after the run",  # Python's last-resort handler: the configuration was put back
    ]
