"""The checks find what was planted in real photos (tests/data/coco): identical copies,
resized and re-encoded copies, truncated and non-image files, tiny and extreme images, text
(real OCR with RapidOCR's shipped models, on a photo of a sign and a rendered poster, not on
photos without text); the near-duplicate index gives exactly the all-pairs answer; the CLIP
checks' numbers equal open_clip's; moving findings to the trash is undone exactly."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from dataset_util import PHOTOS, faulty_dataset, text_dataset
from hypothesis import given
from hypothesis import strategies as st
from trees import tree

from tagger.dataset.checks import expand_checks, polygon_area, run_checks
from tagger.dataset.fixes import to_trash, trash_findings
from tagger.dataset.journal import journal_dir, undo
from tagger.dataset.neardup import all_pairs, groups, near_pairs, popcount
from tagger.dataset.options import CheckOptions
from tagger.dataset.scoring import outlier_scores, register_scorer, similar_pairs
from tagger.errors import OptionsError

BASIC = ["duplicates", "broken", "small", "aspect", "captions"]


def found(result: object, check: str) -> set[str]:
    """The paths a check reported."""
    return {f.path for f in result.findings if f.check == check}  # type: ignore[attr-defined]


# -- the near-duplicate index ------------------------------------------------------------------


def planted_hashes(count: int, copies: int, distance: int, seed: int) -> np.ndarray:
    """Random 64-bit hashes with ``copies`` near copies (up to ``distance + 2`` flipped bits)."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**63, size=count, dtype=np.uint64) * np.uint64(2)
    hashes |= rng.integers(0, 2, size=count, dtype=np.uint64)
    for _ in range(copies):
        source, target = rng.integers(count, size=2)
        value = int(hashes[source])
        for bit in rng.choice(64, size=rng.integers(0, distance + 3), replace=False):
            value ^= 1 << int(bit)
        hashes[target] = np.uint64(value)
    return hashes


@pytest.mark.parametrize("distance", [0, 3, 4, 6, 9, 12])
def test_index_finds_exactly_the_pairs_all_pairs_finds(distance: int) -> None:
    hashes = planted_hashes(2500, 300, distance, seed=distance)
    expected = all_pairs(hashes, distance)
    assert len(expected) > 50  # the planted copies are there
    assert np.array_equal(near_pairs(hashes, distance), expected)


@given(st.lists(st.integers(0, 2**64 - 1), min_size=0, max_size=40), st.integers(0, 16))
def test_index_equals_all_pairs_on_any_hashes(values: list[int], distance: int) -> None:
    hashes = np.array(values, dtype=np.uint64)
    assert np.array_equal(near_pairs(hashes, distance), all_pairs(hashes, distance))


def test_popcount_without_bitwise_count(monkeypatch: pytest.MonkeyPatch) -> None:
    values = np.array([0, 1, 0xFF, 2**63, 2**64 - 1, 0x0F0F0F0F0F0F0F0F], dtype=np.uint64)
    assert popcount(values).tolist() == [0, 1, 8, 1, 64, 32]
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    assert popcount(values).tolist() == [0, 1, 8, 1, 64, 32]


def test_groups_join_chains() -> None:
    pairs = np.array([[0, 3, 1], [3, 7, 2], [1, 2, 0]])
    assert groups(8, pairs) == [[0, 3, 7], [1, 2]]


# -- checks on real photos with planted faults ---------------------------------------------------


def test_basic_checks_find_the_planted_faults(tmp_path: Path) -> None:
    folder, planted = faulty_dataset(tmp_path)
    result = run_checks([folder], CheckOptions(checks=BASIC, min_side=100))
    assert result.images == len(PHOTOS) + 7
    assert found(result, "duplicates") == set(planted["duplicates"])
    assert found(result, "broken") == set(planted["broken"])
    assert found(result, "small") == {"tiny.jpg"}  # 48 x 32; the 960 x 120 banner too:
    assert found(result, "aspect") == set(planted["aspect"])
    reasons = {f.path: f.detail for f in result.findings if f.check == "broken"}
    assert "truncated" in reasons["cut.jpg"]
    assert "not an image" in reasons["not-an-image.png"]
    assert found(result, "captions") == {
        "more/copy.jpg", "more/small.jpg", "more/lossy.jpg", "cut.jpg", "not-an-image.png",
        "tiny.jpg", "banner.jpg",
    }  # fmt: skip
    groups_of = {f.path: f.group for f in result.findings if f.check == "duplicates"}
    assert groups_of[PHOTOS[0]] == groups_of["more/copy.jpg"] == 1
    # a short side of 120 is small too at the default 256
    wide = run_checks([folder], CheckOptions(checks=["small"]))
    assert {"tiny.jpg", "banner.jpg"} <= found(wide, "small")


def test_near_duplicates_are_the_resized_and_reencoded_copies(tmp_path: Path) -> None:
    pytest.importorskip("imagehash")
    folder, planted = faulty_dataset(tmp_path)
    result = run_checks([folder], CheckOptions(checks=["near_duplicates"]))
    assert found(result, "near_duplicates") == set(planted["near_duplicates"])
    by_group: dict[int, set[str]] = {}
    for finding in result.findings:
        by_group.setdefault(finding.group or 0, set()).add(finding.path)
    assert sorted(map(sorted, by_group.values())) == [
        sorted([PHOTOS[1], "more/small.jpg"]),
        sorted([PHOTOS[2], "more/lossy.jpg"]),
    ]
    # pHash equals imagehash's on the decoded image
    import imagehash

    from tagger.dataset.checks import perceptual_hash
    from tagger.image import load_image

    image = load_image(folder / PHOTOS[1])
    assert perceptual_hash(image) == int(str(imagehash.phash(image)), 16)
    # distance 0: only identical hashes (the resized copy differs in a few bits)
    strict = run_checks([folder], CheckOptions(checks=["near_duplicates"], hash_distance=0))
    assert len(found(strict, "near_duplicates")) < 4


def test_text_check_reads_text_with_the_real_ocr_models(tmp_path: Path) -> None:
    pytest.importorskip("rapidocr_onnxruntime")
    from PIL import ImageFont

    try:
        ImageFont.load_default(size=20)
    except TypeError:
        pytest.skip("Pillow < 10.1 has no scalable default font to render the poster")
    folder, with_text = text_dataset(tmp_path)
    result = run_checks([folder], CheckOptions(checks=["text"]))
    assert found(result, "text") == set(with_text)
    details = {f.path: f.detail for f in result.findings}
    assert "ARDNAMURCHAN" in details["000000107438.jpg"]  # the sign's words, read
    assert "SALE" in details["poster.jpg"]
    assert len(result.scores["text"]) == result.images == 6  # every image measured


def test_unknown_checks_and_missing_libraries_are_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(OptionsError, match="unknown check dupes"):
        expand_checks(["dupes"])
    assert expand_checks(["all"])[0] == "duplicates"
    folder, _ = faulty_dataset(tmp_path)
    real = importlib.util.find_spec

    def missing(name: str, *args: object) -> object:
        return None if name in ("imagehash", "rapidocr_onnxruntime") else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", missing)
    result = run_checks([folder], CheckOptions(checks=["near_duplicates", "text", "broken"]))
    assert "pip install 'tagger[dataset]'" in result.skipped["near_duplicates"]
    assert "rapidocr" in result.skipped["text"]
    assert found(result, "broken") == {"cut.jpg", "not-an-image.png"}


def test_polygon_area() -> None:
    assert polygon_area([[0, 0], [10, 0], [10, 5], [0, 5]]) == 50.0
    assert polygon_area([[0, 0], [4, 0], [0, 3]]) == 6.0


def test_trash_moves_the_findings_and_undo_brings_them_back(tmp_path: Path) -> None:
    folder, _ = faulty_dataset(tmp_path)
    (folder / "more" / "copy.txt").write_text("copy caption", encoding="utf-8")
    before = tree(folder)
    result = run_checks([folder], CheckOptions(checks=["duplicates", "broken"]))
    assert to_trash(result, ["duplicates"]) == ["more/copy.jpg"]  # the first copy stays
    moved = trash_findings([folder], result, ["duplicates", "broken"])
    assert sorted(Path(p).name for p in moved["moved"]) == [
        "copy.jpg", "copy.txt", "cut.jpg", "not-an-image.png"
    ]  # fmt: skip
    assert not (folder / "more" / "copy.jpg").exists()
    trash = folder / ".tagger" / "trash"
    assert (trash / "more" / "copy.jpg").read_bytes() == before["more/copy.jpg"]
    assert (trash / "more" / "copy.txt").read_bytes() == b"copy caption"
    assert (folder / PHOTOS[0]).exists()
    done = undo(journal_dir([folder]))
    assert done.restored == 4
    after = {k: v for k, v in tree(folder).items() if not k.startswith(".tagger/")}
    assert after == before


# -- CLIP checks ------------------------------------------------------------------------------


def test_similar_pairs_and_outliers_on_known_vectors() -> None:
    vectors = np.array([[1, 0, 0], [0.999, 0.0447, 0], [0, 1, 0], [0, 0.999, 0.0447]], float)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert similar_pairs(vectors, 0.99, block=3).tolist() == [[0, 1], [2, 3]]
    assert similar_pairs(vectors, 0.9999).tolist() == []
    scores = outlier_scores(np.array([[1.0, 0], [1.0, 0], [1.0, 0], [0, 1.0]]))
    centroid = np.array([0.75, 0.25]) / np.linalg.norm([0.75, 0.25])
    assert np.allclose(scores, 1 - np.array([[1.0, 0], [1, 0], [1, 0], [0, 1]]) @ centroid)
    assert scores.argmax() == 3


def test_clip_checks_compute_what_open_clip_computes(tmp_path: Path, clip_dir: Path) -> None:
    import open_clip
    import torch

    from tagger.captioners.openclip import load_clip
    from tagger.image import load_image

    folder, _ = faulty_dataset(tmp_path)
    options = CheckOptions(
        checks=["clip_duplicates", "outliers", "mismatch"],
        clip_model=str(clip_dir),
        mismatch_score=1.0,  # every caption is flagged: every score is listed
        outlier_sigma=0.0,
    )
    result = run_checks([folder], options)
    assert not result.skipped
    # the reference: open_clip's own encoders on the same images and captions
    clip = load_clip(str(clip_dir), device=torch.device("cpu"))
    tokenizer = open_clip.get_tokenizer(clip.name)
    scores = {f.path: f.value for f in result.findings if f.check == "mismatch"}
    assert set(scores) == set(PHOTOS)
    for name in PHOTOS:
        image = load_image(folder / name)
        image.thumbnail((1024, 1024))
        with torch.no_grad():
            vision = clip.model.encode_image(clip.transform(image)[None])
            caption = (folder / name).with_suffix(".txt").read_text(encoding="utf-8")
            text = clip.model.encode_text(tokenizer([caption]))
        vision = vision / vision.norm(dim=-1, keepdim=True)
        text = text / text.norm(dim=-1, keepdim=True)
        assert scores[name] == pytest.approx(float((vision * text).sum()), abs=1e-4)
    assert len(result.scores["outliers"]) == result.images - 2  # the broken two have none
    assert found(result, "outliers")  # sigma 0: everything above the mean distance


def test_a_registered_scorer_replaces_clip_for_mismatch(tmp_path: Path, clip_dir: Path) -> None:
    seen: list[str] = []

    class Lengths:
        """A scorer that scores a caption by its length (to see it is the one used)."""

        def __init__(self, options: CheckOptions) -> None:
            self.options = options

        def score(self, images: list[object], texts: list[str]) -> list[float]:
            seen.extend(texts)
            return [len(text) / 100 for text in texts]

    register_scorer("lengths", Lengths)
    folder, _ = faulty_dataset(tmp_path)
    options = CheckOptions(
        checks=["mismatch"], clip_model=str(clip_dir), scorer="lengths", mismatch_score=0.25
    )
    result = run_checks([folder], options)
    flagged = {f.path: f.value for f in result.findings}
    assert len(seen) == len(PHOTOS)
    assert flagged == {
        name: len((folder / name).with_suffix(".txt").read_text(encoding="utf-8")) / 100
        for name in PHOTOS
        if len((folder / name).with_suffix(".txt").read_text(encoding="utf-8")) < 25
    }
