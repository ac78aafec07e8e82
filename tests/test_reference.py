"""Our preprocessing and scores against a plain re-statement of SmilingWolf's wd-tagger app."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from reference import KAOMOJIS, reference_predict, reference_prepare
from tiny import make_image

from tagger.image import load_image
from tagger.wd14 import prepare_image

SHAPES = [
    ((32, 32), "RGB"),  # already the model's side: no resize
    ((17, 40), "RGB"),  # tall, odd padding, upscaled
    ((90, 31), "RGBA"),  # wide with alpha, downscaled
    ((8, 8), "LA"),  # tiny, grey with alpha, upscaled
    ((301, 299), "P"),  # palette, nearly square, downscaled
    ((640, 480), "RGB"),  # a photo-sized image
]


@pytest.mark.parametrize(("size", "mode"), SHAPES)
@pytest.mark.parametrize("target", [32, 448])
def test_preprocessing_equals_reference(tmp_path: Path, size, mode, target) -> None:
    path = make_image(tmp_path / "x.png", size, seed=sum(size), mode=mode)
    ours = prepare_image(load_image(path), target)
    theirs = reference_prepare(Image.open(path), target)[0]
    assert ours.dtype == np.float32
    assert ours.shape == (target, target, 3)
    np.testing.assert_array_equal(ours, theirs)


def _spaced(name: str) -> str:
    return name if name in KAOMOJIS else name.replace("_", " ")


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tagger", "tag", *args, "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("mcut", [False, True])
@pytest.mark.parametrize("fixture", ["model_dir", "fixed_model_dir"])
def test_cli_json_matches_reference(tmp_path: Path, request, mcut: bool, fixture: str) -> None:
    model = request.getfixturevalue(fixture)
    images = tmp_path / "images"
    for i, (size, mode) in enumerate(SHAPES):
        make_image(images / f"img{i}.png", size, seed=100 + i, mode=mode)
    flags = ["--mcut-general", "--mcut-character"] if mcut else []
    done = _run_cli(str(images), "--model", str(model), "--json", *flags)
    assert done.returncode == 0, done.stderr
    compared_tags = 0
    for i in range(len(SHAPES)):
        path = images / f"img{i}.png"
        record = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        rating, general, character = reference_predict(
            model, Image.open(path), general_mcut=mcut, character_mcut=mcut
        )
        assert set(record) == {"rating", "character", "general"}
        for ours, theirs in (
            (record["rating"], rating),
            (record["general"], general),
            (record["character"], character),
        ):
            assert {_spaced(name) for name in ours} == set(theirs)
            for name, score in ours.items():
                assert score == pytest.approx(theirs[_spaced(name)], abs=1e-4)
            compared_tags += len(ours)
        text = path.with_suffix(".txt").read_text(encoding="utf-8").strip()
        expected = sorted({**general, **character}.items(), key=lambda kv: -kv[1])
        assert text == ", ".join(name for name, _ in expected)
    assert compared_tags > 4 * len(SHAPES)  # ratings alone would be 4 per image
