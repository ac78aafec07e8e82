"""The captioners' decoding uses only transformers API that is current: no deprecation warning
with the installed version (the key/value cache is passed by the name and in the form it takes),
and BLIP's generate() arguments are the ones docs/captioners.md states."""

from __future__ import annotations

import inspect
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from PIL import Image
from tiny import make_image

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("open_clip")

from tagger.captioners import get_captioner  # noqa: E402
from tagger.captioners.clipcap import beam_decode, cache_keyword, greedy_decode  # noqa: E402
from tagger.options import CaptionOptions  # noqa: E402


def _images(folder: Path) -> list[Image.Image]:
    return [
        Image.open(make_image(folder / f"{i}.png", (40, 30), seed=i)).convert("RGB")
        for i in range(3)
    ]


def test_the_cache_keyword_is_the_one_forward_takes() -> None:
    from transformers import GPT2LMHeadModel

    parameters = inspect.signature(GPT2LMHeadModel.forward).parameters
    major = int(transformers.__version__.split(".", 1)[0])
    assert cache_keyword(GPT2LMHeadModel) == ("cache" if major >= 5 else "past_key_values")
    assert cache_keyword(GPT2LMHeadModel) in parameters


def test_clipcap_decoding_warns_nothing(clipcap_dir: Path, tmp_path: Path) -> None:
    captioner = get_captioner(str(clipcap_dir), device="cpu")
    images = _images(tmp_path)
    prefixes = captioner.prefix(captioner.collate([captioner.preprocess(i) for i in images]))
    gpt = captioner.model.gpt
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        greedy = greedy_decode(gpt, prefixes, captioner.stop_id, 12)
        beams = beam_decode(gpt, prefixes, captioner.stop_id, 3, 12)
    assert [str(w.message) for w in seen] == []
    assert len(greedy) == len(beams) == 3
    assert all(1 <= len(tokens) <= 12 for tokens in greedy)


@pytest.mark.parametrize("beams", ["1", "3"])
def test_tagger_caption_prints_no_deprecation(clipcap_dir: Path, tmp_path: Path, beams) -> None:
    """transformers logs its deprecations once per process: a fresh process shows them."""
    _images(tmp_path / "images")
    done = subprocess.run(
        [sys.executable, "-m", "tagger", "caption", str(tmp_path / "images"), "--model",
         str(clipcap_dir), "--num-beams", beams, "--max-length", "12", "--no-progress"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "deprecat" not in done.stderr.lower(), done.stderr
    assert "past_key_values" not in done.stderr
    assert len(list((tmp_path / "images").glob("*.caption"))) == 3


def test_blip_generate_arguments_are_the_documented_defaults(blip_dir: Path) -> None:
    captioner = get_captioner(str(blip_dir), device="cpu")
    assert captioner.generate_kwargs(CaptionOptions()) == {
        "max_new_tokens": 40,
        "min_new_tokens": 5,
        "repetition_penalty": 1.2,
        "no_repeat_ngram_size": 3,
        "do_sample": False,
        "num_beams": 3,
        "early_stopping": True,  # docs/captioners.md: beam search ends at 3 finished captions
    }
    assert "early_stopping" not in captioner.generate_kwargs(CaptionOptions(num_beams=1))
    reference = (Path(__file__).parents[1] / "docs" / "captioners.md").read_text(encoding="utf-8")
    assert "early_stopping=True" in reference
