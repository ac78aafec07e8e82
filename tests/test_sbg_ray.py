"""``tagger caption --model <SBG> --engine ray``: a local Ray cluster writes exactly what the local
engine writes, the SBG sidecar (keywords, candidates) included."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tiny_sbg import make_sbg_dir
from trees import tree, twins

from tagger.cli import main

pytest.importorskip("ray")
pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def _cache_env(tmp_path_factory: pytest.TempPathFactory):
    """The SBG text-embedding cache in a temporary folder, for the Ray workers too (they
    inherit the environment of the cluster, started after this)."""
    previous = os.environ.get("TAGGER_CACHE_DIR")
    os.environ["TAGGER_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("TAGGER_CACHE_DIR", None)
    else:
        os.environ["TAGGER_CACHE_DIR"] = previous


pytestmark = pytest.mark.usefixtures("_cache_env", "ray_cluster")


def test_sbg_on_ray_writes_what_the_local_engine_writes(tmp_path: Path, clip_dir: Path) -> None:
    sbg = make_sbg_dir(tmp_path / "models" / "tiny-sbg", clip_dir)
    local, remote = twins(tmp_path, 4)
    common = ["--model", str(sbg), "--device", "cpu", "--recursive", "--json", "--no-progress"]
    common += ["--candidates", "3", "--batch-size", "2"]
    assert main(["caption", str(local), *common]) == 1  # the tree holds broken images
    assert main(["caption", str(remote), *common, "--engine", "ray"]) == 1
    assert tree(remote) == tree(local)
    sidecars = sorted(remote.rglob("*.json"))
    assert sidecars
    assert all('"sbg"' in path.read_text(encoding="utf-8") for path in sidecars)
