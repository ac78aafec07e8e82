"""``tagger caption --engine ray`` and ``tagger tag --captioner/--clip-filter --engine ray``:
a local Ray cluster writes exactly what the local engine writes (tiny BLIP, CLIP-prefix GPT-2
and CLIP models built in the session)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("open_clip")

from trees import tree, twins

from tagger.batch import run_batch
from tagger.captioners import get_captioner
from tagger.cli import main
from tagger.errors import ModelNotFoundError
from tagger.interrogate import Interrogator
from tagger.options import BatchOptions, CaptionOptions, dump
from tagger.ray_engine import CaptionerConfig, InterrogatorConfig, run_batch_ray
from tagger.registry import resolve_captioner

pytestmark = pytest.mark.usefixtures("ray_cluster")


def _summary_line(err: str) -> str:
    """The summary's counts ("11 found, 9 written, ...")."""
    line = next(line for line in err.splitlines() if " found, " in line)
    return line.split(" in ")[0].removeprefix("done: ")


def test_caption_cli_same_files_and_parquet_as_local(
    tmp_path: Path, blip_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pyarrow.parquet as pq

    local, remote = twins(tmp_path, 8)
    common = ["--model", str(blip_dir), "--device", "cpu", "--recursive", "--json",
              "--max-length", "6", "--batch-size", "3", "--no-progress"]  # fmt: skip
    assert main(["caption", str(local), *common, "--jsonl", str(local / "m.jsonl")]) == 1
    local_err = capsys.readouterr().err
    table = tmp_path / "captions.parquet"
    ray_args = ["caption", str(remote), *common, "--jsonl", str(remote / "m.jsonl"),
                "--engine", "ray", "--parquet", str(table)]  # fmt: skip
    assert main(ray_args) == 1
    ray_err = capsys.readouterr().err
    assert tree(remote) == tree(local)
    assert (
        _summary_line(ray_err)
        == _summary_line(local_err)
        == ("11 found, 9 written, 0 skipped, 2 failed")
    )
    assert "broken.png: not an image" in ray_err
    captions = sorted(remote.rglob("*.caption"))
    assert len(captions) == 9
    assert all(path.read_text().strip() for path in captions)
    lines = [json.loads(line) for line in (remote / "m.jsonl").read_text().splitlines()]
    rows = pq.read_table(table).to_pylist()
    assert [row["caption"] for row in rows] == [line["caption"] for line in lines]
    assert [row["text"] for row in rows] == [line["text"] for line in lines]
    assert set(rows[0]) == {"file_name", "text", "caption"}
    # Resume: everything done is skipped, nothing is rewritten.
    assert main(ray_args) == 1
    assert "11 found, 0 written, 9 skipped, 2 failed" in capsys.readouterr().err
    assert tree(remote) == tree(local)


def test_tags_caption_and_clip_filter_in_one_ray_run_same_as_local(
    tmp_path: Path, model_dir: Path, clipcap_dir: Path, clip_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    local, remote = twins(tmp_path, 7)
    common = ["--model", str(model_dir), "--device", "cpu", "--recursive", "--json",
              "--no-progress", "--captioner", clipcap_dir.name,
              "--models-dir", str(clipcap_dir.parent), "--caption-template", "separate",
              "--caption-max-length", "8", "--clip-filter", "mcut", "--clip-model",
              str(clip_dir), "--clip-cache", str(tmp_path / "clip-cache")]  # fmt: skip
    assert main(["tag", str(local), *common]) == 1
    local_err = capsys.readouterr().err
    assert main(["tag", str(remote), *common, "--engine", "ray"]) == 1
    ray_err = capsys.readouterr().err
    assert tree(remote) == tree(local)
    assert (
        _summary_line(ray_err)
        == _summary_line(local_err)
        == ("10 found, 8 written, 0 skipped, 2 failed")
    )
    sidecars = [json.loads(p.read_text()) for p in sorted(remote.rglob("*.json"))]
    assert len(sidecars) == 8
    assert all(record["caption"] and "clip" in record for record in sidecars)
    assert all(set(record["general"]) <= set(record["clip"]) for record in sidecars)
    assert len(list(remote.rglob("*.caption"))) == len(list(remote.rglob("*.txt"))) == 8


def test_caption_config_api_matches_local_interrogator(tmp_path: Path, blip_dir: Path) -> None:
    local, remote = twins(tmp_path, 5)
    options = CaptionOptions(max_new_tokens=5, num_beams=2)
    batch = BatchOptions(recursive=True, caption_extension=".caption", batch_size=2)
    captioner = get_captioner(str(blip_dir), device="cpu")
    expected = run_batch([local], Interrogator(None, captioner, options), batch_options=batch)
    config = InterrogatorConfig(
        captioner=CaptionerConfig(resolve_captioner(str(blip_dir)), device="cpu"),
        caption_options=dump(options),
    )
    got = run_batch_ray([remote], config, batch_options=batch)
    assert tree(remote) == tree(local)
    assert (got.written, got.failed_count, got.batch_size) == (expected.written, 2, 2)
    assert got.providers == ["torch-cpu"]


def test_missing_captioner_stops_before_ray_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    twins(tmp_path, 2)
    args = ["caption", str(tmp_path / "ray"), "--model", "no-such-captioner",
            "--models-dir", str(tmp_path), "--engine", "ray", "--no-progress"]  # fmt: skip
    assert main(args) == 2
    assert "no-such-captioner" in capsys.readouterr().err
    assert not list((tmp_path / "ray").rglob("*.caption"))
    with pytest.raises(ModelNotFoundError):
        resolve_captioner("no-such-captioner", [str(tmp_path)])
