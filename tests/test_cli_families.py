"""The command line with other tagger families, every category, ensembles, clean-up and the
frequency file (real runs on tiny models, in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tiny_families as tf
from tiny import make_image

from tagger.cli import build_parser, main
from tagger.cli.common import options_from_args
from tagger.cli.families import resolve_thresholds


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    for i in range(3):
        make_image(folder / f"img{i}.png", (48, 32 + 4 * i), seed=i)
    return folder


def test_camie_folder_writes_every_category(images: Path, tmp_path: Path) -> None:
    camie = tf.make_camie(tmp_path / "camie")
    freq = tmp_path / "freq.csv"
    code = main(["tag", str(images), "--model", str(camie), "--json", "--no-progress",
                 "--jsonl", str(tmp_path / "m.jsonl"), "--category-threshold", "year=0.0",
                 "--copyright-threshold", "0", "--artist-threshold", "2", "--meta-threshold", "0",
                 "--general-threshold", "0.0", "--character-threshold", "0",
                 "--frequency-file", str(freq)])  # fmt: skip
    assert code == 0
    record = json.loads((images / "img0.json").read_text())
    assert set(record) == {"rating", "character", "general", "copyright", "meta", "year"}
    assert list(record["general"])
    assert "artist" not in record
    text = (images / "img0.txt").read_text()
    assert "year 2024" in text
    assert "vocaloid" in text
    assert "some artist" not in text
    lines = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert lines[0]["year"] == ["year_2024"]
    rows = freq.read_text().splitlines()
    assert rows[0] == "tag,count"
    assert "year_2024,3" in rows


def test_explicit_thresholds_turn_shipped_ones_off() -> None:
    parser = build_parser()
    args = parser.parse_args(["tag", "x", "--general-threshold", "0.5"])
    resolve_thresholds(args)
    assert options_from_args(args)[0].model_thresholds is False
    plain = parser.parse_args(["tag", "x"])
    resolve_thresholds(plain)
    assert options_from_args(plain)[0].model_thresholds is True


def test_ensemble_from_the_command_line(images: Path, tmp_path: Path, model_dir: Path) -> None:
    cl = tf.make_cl_tagger(tmp_path / "cl")
    code = main(["tag", str(images), "--model", str(model_dir), "--model", str(cl),
                 "--ensemble", "votes", "--min-votes", "1", "--json", "--no-progress"])  # fmt: skip
    assert code == 0
    record = json.loads((images / "img1.json").read_text())
    assert set(record["models"]) == {model_dir.name, "cl"}
    kept = set(record["models"][model_dir.name]["general"]) | set(record["models"]["cl"]["general"])
    assert set(record["general"]) == kept  # votes >= 1: the union of both models' kept tags


def test_ensemble_refuses_a_captioner(
    images: Path, tmp_path: Path, model_dir: Path, capsys
) -> None:
    cl = tf.make_cl_tagger(tmp_path / "cl")
    code = main(["tag", str(images), "--model", str(model_dir), "--model", str(cl),
                 "--captioner", "blip-base"])  # fmt: skip
    assert code == 2
    assert "ensemble" in capsys.readouterr().err


def test_clean_up_flags(images: Path, tmp_path: Path, model_dir: Path) -> None:
    out = tmp_path / "out"
    code = main(["tag", str(images), "--model", str(model_dir), "--general-threshold", "0",
                 "--drop-character-tags", "--blacklist", "smile,hats", "--output-dir", str(out),
                 "--no-progress"])  # fmt: skip
    assert code == 0
    tags = (out / "img0.txt").read_text().split(", ")
    assert "1girl" in tags
    for gone in ("long hair", "blue eyes", "short hair", "cat ears", "smile", "hat"):
        assert gone not in tags


def test_models_lists_the_families(capsys) -> None:
    assert main(["models", "--families", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["family"] for r in rows] == [
        "wd14", "pixai", "cl_tagger", "camie", "z3d", "idolsankaku", "mldanbooru", "onnx",
    ]  # fmt: skip
    assert main(["models"]) == 0
    listed = capsys.readouterr().out
    for key in ("pixai-tagger-v0.9", "cl-tagger-1.02", "camie-tagger-v2", "z3d-e621-convnext",
                "idolsankaku-swinv2-tagger-v1", "ml-danbooru-caformer"):  # fmt: skip
        assert key in listed


def test_ray_engine_refuses_other_families(images: Path, tmp_path: Path, capsys) -> None:
    cl = tf.make_cl_tagger(tmp_path / "cl")
    assert main(["tag", str(images), "--model", str(cl), "--engine", "ray"]) == 2
    assert "--engine ray runs WD14 models" in capsys.readouterr().err
