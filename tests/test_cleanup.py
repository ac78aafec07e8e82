"""Tag clean-up: exact expectations, including the substring traps (hair / chair, tail /
ponytail), singular and plural, and imgutils' published examples restated."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagger.cleanup import (
    clean_result,
    drop_blacklisted,
    drop_character_tags,
    drop_less_specific,
    drop_overlapping,
    frequencies_csv,
    is_character_tag,
    is_less_specific,
    load_overlap_table,
    tag_frequencies,
)
from tagger.options import TagOptions
from tagger.tags import TagResult


@pytest.mark.parametrize(
    ("tag", "other", "expected"),
    [
        ("shirt", "white_shirt", True),
        ("long_hair", "very_long_hair", True),
        ("hair", "chair", False),
        ("tail", "ponytail", False),
        ("hair", "hair", False),
        ("ear", "cat_ears", True),  # plural-aware
        ("breasts", "large_breasts", True),
        ("long_hair", "hair_between_eyes", False),  # not contiguous
        ("Long Hair", "very long_hair", True),
        ("cat", "catgirl", False),
    ],
)
def test_less_specific_by_whole_words(tag: str, other: str, expected: bool) -> None:
    assert is_less_specific(tag, other) is expected


def test_drop_less_specific_keeps_the_order_and_the_traps() -> None:
    tags = ["1girl", "hair", "chair", "shirt", "white_shirt", "tail", "ponytail", "long_hair",
            "very_long_hair"]  # fmt: skip
    assert drop_less_specific(tags) == [
        "1girl",
        "chair",
        "white_shirt",
        "tail",
        "ponytail",
        "very_long_hair",
    ]


def test_overlap_table_rule() -> None:
    table = {"breasts": ["medium_breasts"], "thighhighs": ["black_thighhighs"]}
    tags = ["1girl", "breasts", "medium breasts", "thighhighs"]
    assert drop_overlapping(tags, table) == ["1girl", "medium breasts", "thighhighs"]


def test_overlap_table_offline_is_none_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path, caplog
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    load_overlap_table.cache_clear()
    assert load_overlap_table(str(tmp_path)) is None
    assert "overlap table" in caplog.text
    assert "HF_HUB_OFFLINE is set" in caplog.text
    load_overlap_table.cache_clear()


def test_overlap_table_is_read_from_the_hub_cache(tmp_path, monkeypatch) -> None:
    """A cached copy (huggingface_hub's cache layout) is used offline."""
    import json

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = tmp_path / "datasets--alea31415--tag_filtering" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "overlap_tags_simplified.json").write_text(json.dumps({"hat": ["witch_hat"]}))
    refs = tmp_path / "datasets--alea31415--tag_filtering" / "refs"
    refs.mkdir()
    (refs / "main").write_text("abc")
    load_overlap_table.cache_clear()
    assert load_overlap_table(str(tmp_path)) == {"hat": ["witch_hat"]}
    load_overlap_table.cache_clear()


# imgutils.tagging.character's docstring examples, restated.
@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("red hair", True),
        ("red_hair", True),
        ("cat ears", True),
        ("cat ear", True),
        ("chair", False),
        ("hear", False),
        ("dress", False),
        ("blue_eyes", True),
        ("closed_eyes", False),  # whitelisted
        ("holding_hat", False),  # whitelisted prefix
        ("hair_over_one_eye", True),
        ("drill", False),  # whitelisted word
        ("twin_drills", True),
        ("horns", True),
        ("ponytail", True),
        ("tail", True),
        ("pubic_hair", False),
    ],
)
def test_character_tags(tag: str, expected: bool) -> None:
    assert is_character_tag(tag) is expected


def test_drop_character_tags_example() -> None:
    tags = ["1girl", "solo", "red_hair", "cat ears", "chair", "hear"]
    assert drop_character_tags(tags) == ["1girl", "solo", "chair", "hear"]


def test_blacklist_whole_words_singular_plural() -> None:
    tags = ["cosplay", "no_eyewear", "chairs", "armchair", "Red Hair"]
    assert drop_blacklisted(tags, ["chair", "red_hairs", "cosplay"]) == ["no_eyewear", "armchair"]


@given(
    st.lists(
        st.sampled_from(
            [
                "hair",
                "long_hair",
                "chair",
                "shirt",
                "white shirt",
                "tail",
                "ponytail",
                "1girl",
                "solo",
                "cat_ears",
                "ears",
            ]
        ),
        max_size=8,
    )
)
def test_clean_up_only_removes(tags: list[str]) -> None:  # fmt: skip
    for function in (drop_less_specific, drop_character_tags):
        kept = function(tags)
        assert [t for t in tags if t in kept] == kept  # a subsequence, order kept
    assert "chair" not in tags or "chair" in drop_less_specific(tags)


def test_clean_result_acts_per_category() -> None:
    result = TagResult(
        rating={"general": 0.9},
        character={"hatsune_miku": 0.9},
        general={"shirt": 0.5, "white_shirt": 0.8, "red_hair": 0.7, "chair": 0.6},
        index={},
        other={"copyright": {"vocaloid": 0.8}},
    )
    options = TagOptions(drop_overlap=True, drop_character_tags=True, blacklist=["vocaloid"])
    cleaned = clean_result(result, options, table={"chair": ["armchair"]})
    assert cleaned.general == {"white_shirt": 0.8, "chair": 0.6}
    assert cleaned.character == {"hatsune_miku": 0.9}
    assert cleaned.other == {"copyright": {}}


def test_frequencies() -> None:
    counts = {"solo": 2, "1girl": 3, "hat": 2}
    assert tag_frequencies(counts) == [("1girl", 3), ("hat", 2), ("solo", 2)]
    assert frequencies_csv(counts) == "tag,count\n1girl,3\nhat,2\nsolo,2\n"
