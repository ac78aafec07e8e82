"""Our preprocessing and scores against a plain re-statement of SmilingWolf's wd-tagger app."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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


@given(
    width=st.integers(1, 700),
    height=st.integers(1, 700),
    target=st.sampled_from([32, 64, 448]),
    seed=st.integers(0, 2**16),
    blocky=st.booleans(),
)
@settings(max_examples=150)
def test_preprocessing_equals_reference_on_any_shape(width, height, target, seed, blocky) -> None:
    """Pixel-identical to the reference for wide, tall, square, up- and downscaled images."""
    rng = np.random.default_rng(seed)
    if blocky:  # flat areas and sharp edges, like drawings
        cells = rng.integers(0, 256, size=(height // 9 + 1, width // 9 + 1, 3), dtype=np.uint8)
        pixels = cells.repeat(9, axis=0).repeat(9, axis=1)[:height, :width]
    else:
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    np.testing.assert_array_equal(prepare_image(image, target), reference_prepare(image, target)[0])


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
