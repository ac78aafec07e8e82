"""Fidelity against deepghs/imgutils itself (the reference package), where it is installed:
its character-tag rules, its blacklist matching, its preprocess.json stage runner (PixAI's
export) and ML-Danbooru's preprocessing. Skipped without ``dghs-imgutils`` (CI installs it in
a stage of its own, see .ci/run)."""

from __future__ import annotations

import numpy as np
import pytest

imgutils_tagging = pytest.importorskip("imgutils.tagging")
from PIL import Image  # noqa: E402

from tagger.cleanup import (  # noqa: E402
    CHARACTER_PREFIXES,
    CHARACTER_SUFFIXES,
    CHARACTER_WHITELIST_PREFIXES,
    CHARACTER_WHITELIST_SUFFIXES,
    drop_blacklisted,
    is_character_tag,
)
from tagger.families.preprocess import Preprocess, prepare, prepare_stages  # noqa: E402


def _rule_tags() -> list[str]:
    """Every rule word, alone, after another word, in both number forms, and the classic traps."""
    from tagger.cleanup import plural, singular

    tags = [
        "chair",
        "hear",
        "dress",
        "cat",
        "solo",
        "1girl",
        "armchair",
        "ponytails",
        "tails",
        "hairs",
        "pubic_hair",
        "drill",
        "drills",
        "twin_drills",
        "holding_hat",
        "hat_ribbon",
    ]
    for entry in (
        *CHARACTER_SUFFIXES,
        *CHARACTER_PREFIXES,
        *CHARACTER_WHITELIST_SUFFIXES,
        *CHARACTER_WHITELIST_PREFIXES,
    ):
        words = entry.replace("_", " ").split()
        last = words[-1]
        for form in {last, singular(last), plural(last)}:
            text = " ".join([*words[:-1], form])
            tags += [text, f"red {text}", f"{text} ornament", text.replace(" ", "_")]
    return sorted(set(tags))


def test_character_rules_equal_imgutils() -> None:
    tags = _rule_tags()
    ours = {tag: is_character_tag(tag) for tag in tags}
    theirs = {tag: imgutils_tagging.is_basic_character_tag(tag) for tag in tags}
    assert ours == theirs


def test_blacklist_equals_imgutils() -> None:
    tags = _rule_tags()
    blacklist = ["hat", "red_eyes", "chair", "ribbons", "cosplay"]
    theirs = imgutils_tagging.drop_blacklisted_tags(tags, use_presets=False,
                                                    custom_blacklist=blacklist)  # fmt: skip
    assert drop_blacklisted(tags, blacklist) == theirs


def _image(size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (7, 5, 3), dtype=np.uint8), "RGB").resize(size)


@pytest.mark.parametrize("size", [(640, 480), (300, 700), (448, 448), (200, 100)])
def test_pixai_stages_equal_imgutils(size: tuple[int, int]) -> None:
    from imgutils.preprocess import create_pillow_transforms

    stages = [
        {"type": "resize", "size": [448, 448], "interpolation": "bilinear", "max_size": None,
         "antialias": True},
        {"type": "to_tensor"},
        {"type": "normalize", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    ]  # fmt: skip
    image = _image(size, sum(size))
    theirs = create_pillow_transforms(stages)(image)
    np.testing.assert_array_equal(prepare_stages(image, stages), theirs)
    short = [{"type": "resize", "size": 384, "interpolation": "bicubic"},
             {"type": "center_crop", "size": [384, 384]}, {"type": "to_tensor"}]  # fmt: skip
    np.testing.assert_array_equal(
        prepare_stages(image, short), create_pillow_transforms(short)(image)
    )


@pytest.mark.parametrize("size", [(640, 480), (300, 700), (450, 450)])
def test_mldanbooru_equals_imgutils(size: tuple[int, int]) -> None:
    from imgutils.tagging.mldanbooru import _resize_align, _to_tensor

    from tagger.families.spec import MLDANBOORU_PREPROCESS

    image = _image(size, size[0])
    theirs = _to_tensor(_resize_align(image, 448, keep_ratio=False))
    np.testing.assert_array_equal(prepare(image, MLDANBOORU_PREPROCESS, 448), theirs)
    _ = Preprocess
