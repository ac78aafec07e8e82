"""The CLIP Interrogator and reranking with ``--engine ray``: a local Ray cluster writes exactly
what the local engine writes (tiny CLIP, BLIP and ITM models built in the session)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ray")
pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("open_clip")

from trees import tree, twins

from tagger.cli import main

pytestmark = [
    pytest.mark.usefixtures("ray_cluster"),
    pytest.mark.filterwarnings("ignore:.*torch.cuda.amp.autocast:FutureWarning"),
]


def test_interrogator_and_rerank_on_ray_write_what_the_local_engine_writes(
    tmp_path: Path, ci_clip_dir: Path, ci_data_dir: Path, blip_dir: Path, itm_dir: Path, capsys
) -> None:
    local, remote = twins(tmp_path, 5)
    common = [
        "--device", "cpu", "--recursive", "--json", "--no-progress", "--batch-size", "2",
        "--max-length", "6",
    ]  # fmt: skip
    ci = [
        "--model", "clip-interrogator", "--ci-mode", "best", "--ci-clip-model", str(ci_clip_dir),
        "--ci-caption-model", str(blip_dir), "--ci-data", str(ci_data_dir),
        "--ci-cache", str(tmp_path / "cache"), "--ci-chunk-size", "64",
        "--ci-intermediate-count", "24", "--ci-max-flavors", "10",
    ]  # fmt: skip
    assert main(["caption", str(local), *common, *ci]) == 1  # the twins hold a broken image
    local_err = capsys.readouterr().err
    assert main(["caption", str(remote), *common, *ci, "--engine", "ray"]) == 1
    ray_err = capsys.readouterr().err
    assert tree(remote) == tree(local)
    assert " 0 written" not in local_err
    assert "broken.png" in ray_err
    rerank = ["--model", str(blip_dir), "--rerank", "itm", "--rerank-itm-model", str(itm_dir)]
    rerank += [
        "--rerank-candidates",
        "2",
        "--caption-extension",
        ".rr",
        "--on-existing",
        "overwrite",
    ]
    assert main(["caption", str(local), *common, *rerank]) == 1
    assert main(["caption", str(remote), *common, *rerank, "--engine", "ray"]) == 1
    assert tree(remote) == tree(local)
    assert any('"candidates"' in p.read_text("utf-8") for p in remote.rglob("*.json"))
