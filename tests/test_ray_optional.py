"""``--engine ray`` is optional: without Ray the command says how to install it (exit 2)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tiny import make_image

import tagger.ray_engine
from tagger.cli import main


def test_engine_ray_without_ray_is_a_usage_error(
    tmp_path: Path,
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_image(tmp_path / "a.png", (20, 20), seed=0)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.setattr(tagger.ray_engine.importlib.util, "find_spec", lambda name: None)
    code = main(["tag", str(tmp_path), "--model", str(model_dir), "--engine", "ray"])
    assert code == 2
    assert "pip install 'tagger[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "a.txt").exists()


def test_parquet_needs_engine_ray(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_image(tmp_path / "a.png", (20, 20), seed=0)
    args = ["tag", str(tmp_path), "--model", str(model_dir), "--parquet", str(tmp_path / "t.pq")]
    assert main(args) == 2
    assert "--parquet needs --engine ray" in capsys.readouterr().err
    assert not (tmp_path / "a.txt").exists()


def test_caption_parquet_needs_engine_ray(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_image(tmp_path / "a.png", (20, 20), seed=0)
    args = ["caption", str(tmp_path), "--model", "blip-base", "--parquet", str(tmp_path / "t.pq")]
    assert main(args) == 2
    assert "--parquet needs --engine ray" in capsys.readouterr().err
    assert not list(tmp_path.glob("a.*[!g]"))


def test_ray_engine_doctests_and_result_round_trip() -> None:
    import doctest

    from tagger.batch import ImageResult
    from tagger.ray_engine import decode_result, encode_result
    from tagger.tags import TagResult

    result = doctest.testmod(tagger.ray_engine)
    assert result.attempted >= 5
    assert result.failed == 0
    tags = TagResult({"general": 0.1 + 0.2}, {"x (y)": 1 / 3}, {"smile": 0.25}, {"smile": 5})
    for value in (
        ImageResult(tags, "a cat, on a mat", {"smile": 0.2123456789}),
        ImageResult(None, 'ünïcode "quoted"', None),
        ImageResult(tags, None, None),
    ):
        assert decode_result(encode_result(value)) == value
    assert decode_result(encode_result(tags)) == ImageResult(tags)
