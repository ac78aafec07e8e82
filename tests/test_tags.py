"""Tests of tagger.tags: labels, scores, thresholds, matching, selection and caption text."""

from __future__ import annotations

import copy
import doctest
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tagger.tags
from tagger.errors import LabelsError, ModelFilesMissingError, OptionsError
from tagger.options import TagOptions, dump
from tagger.tags import (
    KAOMOJIS,
    Labels,
    TagResult,
    above_threshold,
    caption_tags,
    category_threshold,
    dedupe,
    escape_brackets,
    format_tags,
    format_weight,
    label_index,
    labels_from_rows,
    load_labels,
    mcut_threshold,
    move_to_front,
    normalize_tag,
    replace_underscores,
    select_tags,
    sort_names,
    split_scores,
    tag_matches,
    tag_scores,
    top_rating,
)

RATING = {"general": 0.15, "sensitive": 0.8, "questionable": 0.04, "explicit": 0.01}
GENERAL = {
    "1girl": 0.99,
    "solo": 0.95,
    "long_hair": 0.9,
    "simple_background": 0.87,
    "smile": 0.5,
    "^_^": 0.45,
    "holding_[object]": 0.36,
    "open_mouth": 0.35,
    "blush": 0.2,
}
CHARACTER = {"kasumi_(pokemon)": 0.91, "hatsune_miku": 0.6, "misty_(pokemon)": 0.1}
INDEX = {name: position for position, name in enumerate([*RATING, *GENERAL, *CHARACTER])}


def select(**options: object) -> TagResult:
    """select_tags on the module's sample scores."""
    return select_tags(RATING, GENERAL, CHARACTER, INDEX, TagOptions(**options))


def result_of(
    general: dict[str, float],
    character: dict[str, float] | None = None,
    rating: dict[str, float] | None = None,
) -> TagResult:
    """A TagResult of exactly these tags, indexed in order: rating, general, character."""
    character = character or {}
    rating = rating if rating is not None else {"general": 0.9, "sensitive": 0.1}
    names = [*rating, *general, *character]
    return TagResult(
        rating=rating,
        character=character,
        general=general,
        index={name: position for position, name in enumerate(names)},
    )


def test_doctests() -> None:
    outcome = doctest.testmod(tagger.tags)
    assert outcome.attempted > 0
    assert outcome.failed == 0


# ---------------------------------------------------------------------------------- kaomoji


def test_kaomojis_are_exactly_the_nineteen() -> None:
    assert (
        frozenset(
            [
                "0_0",
                "(o)_(o)",
                "+_+",
                "+_-",
                "._.",
                "<o>_<o>",
                "<|>_<|>",
                "=_=",
                ">_<",
                "3_3",
                "6_9",
                ">_o",
                "@_@",
                "^_^",
                "o_o",
                "u_u",
                "x_x",
                "|_|",
                "||_||",
            ]
        )
        == KAOMOJIS
    )
    assert len(KAOMOJIS) == 19
    assert isinstance(KAOMOJIS, frozenset)


# ----------------------------------------------------------------------------------- labels


def test_labels_from_rows_groups_by_category() -> None:
    labels = labels_from_rows(
        [("general", 9), ("explicit", 9), ("1girl", 0), ("artist_name", 3), ("miku", 4), ("x", 0)]
    )
    assert labels == Labels(
        names=("general", "explicit", "1girl", "artist_name", "miku", "x"),
        rating=(0, 1),
        general=(2, 5),
        character=(4,),
    )


def test_labels_from_rows_rejects_empty_name() -> None:
    with pytest.raises(LabelsError, match=r"tag 1 has an empty name"):
        labels_from_rows([("1girl", 0), ("  ", 0)])


def test_labels_from_rows_empty_is_empty() -> None:
    assert labels_from_rows([]) == Labels((), (), (), ())


def write_csv(tmp_path: Path, text: str, name: str = "selected_tags.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


CSV_TEXT = (
    "tag_id,name,category,count\n"
    "9999999,general,9,807691\n"
    "9999998,sensitive,9,110\n"
    "470575,1girl,0,4225150\n"
    "212816,solo,0,3493167\n"
    "1,some_meta_tag,3,12\n"
    "11,kasumi_(pokemon),4,3000\n"
    "12,^_^,0,500\n"
)


def test_load_labels_reads_all_categories(tmp_path: Path) -> None:
    labels = load_labels(write_csv(tmp_path, CSV_TEXT))
    assert labels == Labels(
        names=(
            "general",
            "sensitive",
            "1girl",
            "solo",
            "some_meta_tag",
            "kasumi_(pokemon)",
            "^_^",
        ),
        rating=(0, 1),
        general=(2, 3, 6),
        character=(5,),
    )
    assert 4 not in (*labels.rating, *labels.general, *labels.character)


def test_load_labels_accepts_str_path_bom_blank_lines_and_other_column_order(
    tmp_path: Path,
) -> None:
    text = "\ufeffcategory,count,name\n\n0,5,1girl\r\n4,2,miku\n\n"
    labels = load_labels(str(write_csv(tmp_path, text)))
    assert labels == Labels(names=("1girl", "miku"), rating=(), general=(0,), character=(1,))


def test_load_labels_keeps_names_raw(tmp_path: Path) -> None:
    labels = load_labels(write_csv(tmp_path, 'name,category\n"a,b_(c)",0\nnaïve_tag,0\n'))
    assert labels.names == ("a,b_(c)", "naïve_tag")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"selected_tags\.csv: the file is empty"),
        ("tag_id,name,category,count\n", r"selected_tags\.csv: no tags after the header \(row 1\)"),
        ("tag_id,category,count\n1,0,5\n", r"selected_tags\.csv: row 1 .* has no column name"),
        ("tag_id,name,count\n1,x,5\n", r"selected_tags\.csv: row 1 .* has no column category"),
        ("tag_id,count\n1,5\n", r"has no column name or category"),
        (
            "tag_id,name,category,count\n1,1girl,0,5\n2,solo,general,4\n",
            r"selected_tags\.csv: row 3: category 'general' of tag 'solo' is not an integer",
        ),
        (
            "tag_id,name,category,count\n1,1girl,0.5,5\n",
            r"row 2: category '0\.5' of tag '1girl' is not an integer",
        ),
        ("tag_id,name,category,count\n1,1girl,,5\n", r"row 2: category '' of tag '1girl'"),
        ("tag_id,name,category,count\n1,1girl\n", r"row 2: category '' of tag '1girl'"),
        (
            "tag_id,name,category,count\n1,1girl,0,5\n2,,0,5\n",
            r"selected_tags\.csv: row 3: the name is empty",
        ),
        ("tag_id,name,category,count\n1, ,0,5\n", r"row 2: the name is empty"),
    ],
)
def test_load_labels_errors_name_file_row_and_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write_csv(tmp_path, text)
    with pytest.raises(LabelsError, match=message) as caught:
        load_labels(path)
    assert str(path) in str(caught.value)


def test_load_labels_rejects_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "selected_tags.csv"
    path.write_bytes(b"name,category\n\xff\xfe,0\n")
    with pytest.raises(LabelsError, match=r"not UTF-8 text"):
        load_labels(path)


def test_load_labels_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFilesMissingError, match=r"file not found"):
        load_labels(tmp_path / "absent.csv")


def test_load_labels_directory_is_labels_error(tmp_path: Path) -> None:
    with pytest.raises(LabelsError, match=r"cannot be read"):
        load_labels(tmp_path)


def test_label_index_first_occurrence_wins() -> None:
    labels = labels_from_rows([("general", 9), ("1girl", 0), ("1girl", 0)])
    assert label_index(labels) == {"general": 0, "1girl": 1}


# ----------------------------------------------------------------------------------- scores


def test_split_scores_groups_in_model_order_as_floats() -> None:
    labels = labels_from_rows(
        [("general", 9), ("solo", 0), ("meta", 3), ("miku", 4), ("1girl", 0), ("explicit", 9)]
    )
    rating, general, character = split_scores(np.array([0.5, 0.25, 0.1, 1, 0.75, 0.0]), labels)
    assert rating == {"general": 0.5, "explicit": 0.0}
    assert general == {"solo": 0.25, "1girl": 0.75}
    assert list(general) == ["solo", "1girl"]
    assert character == {"miku": 1.0}
    assert all(type(value) is float for value in [*rating.values(), *character.values()])


def test_split_scores_duplicate_name_keeps_first() -> None:
    labels = labels_from_rows([("solo", 0), ("solo", 0)])
    assert split_scores([0.3, 0.9], labels)[1] == {"solo": 0.3}


def test_split_scores_length_mismatch() -> None:
    labels = labels_from_rows([("general", 9), ("1girl", 0), ("solo", 0), ("miku", 4)])
    with pytest.raises(LabelsError, match=r"model has 3 outputs but selected_tags\.csv has 4 tags"):
        split_scores([0.1, 0.2, 0.3], labels)


# ------------------------------------------------------------------------------- thresholds


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([0.9, 0.85, 0.3, 0.2], 0.575),
        ([0.2, 0.9, 0.3, 0.85], 0.575),
        ([1.0, 0.5, 0.0], 0.75),  # equal gaps: the first (highest) one
        ([0.6, 0.6, 0.1], 0.35),
        ([0.7, 0.3], 0.5),
        ([0.5, 0.5], 0.5),
        ([0.4], 0.0),
        ([], 0.0),
    ],
)
def test_mcut_threshold_known_values(scores: list[float], expected: float) -> None:
    assert mcut_threshold(scores) == pytest.approx(expected)


def test_mcut_threshold_does_not_mutate() -> None:
    scores = [0.2, 0.9, 0.3]
    mcut_threshold(scores)
    assert scores == [0.2, 0.9, 0.3]


def test_category_threshold() -> None:
    scores = [0.9, 0.85, 0.3, 0.2]
    assert category_threshold(scores, 0.35, use_mcut=False) == 0.35
    assert category_threshold(scores, 0.35, use_mcut=True) == pytest.approx(0.575)
    assert category_threshold(scores, 0.35, use_mcut=True, floor=0.7) == 0.7
    assert category_threshold([0.12, 0.1, 0.02], 0.85, use_mcut=True, floor=0.15) == 0.15
    assert category_threshold([0.12, 0.1, 0.02], 0.85, use_mcut=False, floor=0.15) == 0.85


@pytest.mark.parametrize(
    ("threshold", "floor", "message"),
    [
        (1.5, 0.0, r"threshold 1\.5 is outside 0\.\.1"),
        (-0.1, 0.0, r"threshold -0\.1 is outside"),
        (float("nan"), 0.0, r"threshold nan is outside"),
        (0.5, 2.0, r"floor 2\.0 is outside"),
    ],
)
def test_category_threshold_rejects_bad_values(
    threshold: float, floor: float, message: str
) -> None:
    with pytest.raises(OptionsError, match=message):
        category_threshold([0.5], threshold, use_mcut=False, floor=floor)


def test_above_threshold_is_strict_and_keeps_order() -> None:
    scores = {"b": 0.36, "a": 0.35, "c": 0.9, "d": 0.34}
    kept = above_threshold(scores, 0.35)
    assert kept == {"b": 0.36, "c": 0.9}
    assert list(kept) == ["b", "c"]
    assert above_threshold(scores, 1.0) == {}
    assert above_threshold({"z": 0.0}, 0.0) == {}
    assert scores == {"b": 0.36, "a": 0.35, "c": 0.9, "d": 0.34}


# --------------------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("long_hair", "long hair"),
        ("  Long  Hair ", "long hair"),
        ("LONG__HAIR", "long hair"),
        (r"kasumi_\(pokemon\)", "kasumi (pokemon)"),
        ("Kasumi (Pokemon)", "kasumi (pokemon)"),
        ("^_^", "^_^"),
        (" ^_^ ", "^_^"),
        ("||_||", "||_||"),
        ("(o)_(o)", "(o)_(o)"),
        (r"\(o\)_\(o\)", "(o)_(o)"),
        ("O_O", "o_o"),
        ("^ ^", "^ ^"),
        ("holding_[object]", "holding [object]"),
        ("", ""),
    ],
)
def test_normalize_tag(tag: str, expected: str) -> None:
    assert normalize_tag(tag) == expected


@pytest.mark.parametrize(
    ("tag", "patterns", "expected"),
    [
        ("long_hair", ["long hair"], True),
        ("long_hair", ["LONG_HAIR"], True),
        ("long_hair", ["  Long Hair  "], True),
        ("long_hair", ["short_hair"], False),
        ("long_hair", [], False),
        ("long_hair", ["", "   "], False),
        ("very_long_hair", ["*_hair"], True),
        ("very_long_hair", ["* HAIR"], True),
        ("long_hair", ["long_*"], True),
        ("hair", ["*_hair"], False),
        ("1girl", ["?girl"], True),
        ("1girl", ["?"], False),
        ("10girls", ["?girl"], False),
        ("kasumi_(pokemon)", [r"kasumi_\(pokemon\)"], True),
        ("kasumi_(pokemon)", ["kasumi (pokemon)"], True),
        ("kasumi_(pokemon)", [r"*_\(pokemon\)"], True),
        ("misty_(pokemon)", ["*(pokemon)"], True),
        ("holding_[object]", ["holding_[object]"], True),
        ("holding_[object]", ["holding [o*"], True),
        ("holding_o", ["holding [o]"], False),
        ("holding_o", ["holding_[o]*"], False),
        ("^_^", ["^_^"], True),
        ("^_^", ["^ ^"], False),
        ("smile", ["frown", "smile"], True),
    ],
)
def test_tag_matches(tag: str, patterns: list[str], expected: bool) -> None:
    assert tag_matches(tag, patterns) is expected


# -------------------------------------------------------------------------------- selection


def test_select_tags_defaults() -> None:
    result = select()
    assert result.rating == RATING
    assert list(result.rating) == list(RATING)
    assert result.character == {"kasumi_(pokemon)": 0.91}
    assert list(result.general) == [
        "1girl",
        "solo",
        "long_hair",
        "simple_background",
        "smile",
        "^_^",
        "holding_[object]",
    ]
    assert "open_mouth" not in result.general  # 0.35 is not above 0.35
    assert result.index == {
        name: INDEX[name] for name in [*RATING, *result.character, *result.general]
    }


def test_select_tags_threshold_is_strict() -> None:
    result = select_tags(
        {},
        {"a": 0.5, "b": 0.50000001},
        {"c": 0.5},
        {},
        TagOptions(general_threshold=0.5, character_threshold=0.5),
    )
    assert result.general == {"b": 0.50000001}
    assert result.character == {}


def test_select_tags_orders_by_score_then_index() -> None:
    general = {"z": 0.5, "y": 0.9, "x": 0.5, "w": 0.7}
    index = {"z": 3, "y": 0, "x": 1, "w": 2}
    result = select_tags({}, general, {}, index, TagOptions())
    assert list(result.general) == ["y", "w", "x", "z"]
    assert result.index == index


def test_select_tags_mcut_general() -> None:
    general = {"a": 0.9, "b": 0.85, "c": 0.3, "d": 0.2}
    result = select_tags({}, general, {}, {}, TagOptions(mcut_general=True))
    assert result.general == {"a": 0.9, "b": 0.85}


def test_select_tags_mcut_character_uses_floor() -> None:
    character = {"a": 0.14, "b": 0.12, "c": 0.01, "d": 0.5}
    result = select_tags({}, {}, character, {}, TagOptions(mcut_character=True))
    # MCut alone: largest gap 0.5 -> 0.14, threshold 0.32; floor 0.15 lower, no effect.
    assert result.character == {"d": 0.5}
    low = {"a": 0.14, "b": 0.12, "c": 0.01, "e": 0.001}
    # MCut alone would be (0.12 + 0.01) / 2 = 0.065; the floor 0.15 wins, nothing kept.
    assert select_tags({}, {}, low, {}, TagOptions(mcut_character=True)).character == {}
    floored = TagOptions(mcut_character=True, character_mcut_floor=0.05)
    assert select_tags({}, {}, low, {}, floored).character == {"a": 0.14, "b": 0.12}


def test_select_tags_keep_adds_back_whatever_score() -> None:
    result = select(keep_tags=["Blush", "misty (pokemon)", "not_a_tag"])
    assert result.general["blush"] == 0.2
    assert list(result.general)[-1] == "blush"
    assert result.character == {"kasumi_(pokemon)": 0.91, "misty_(pokemon)": 0.1}
    assert result.index["misty_(pokemon)"] == INDEX["misty_(pokemon)"]


def test_select_tags_keep_wildcards() -> None:
    result = select(keep_tags=["*_(pokemon)", "b?ush"])
    assert list(result.character) == ["kasumi_(pokemon)", "misty_(pokemon)"]
    assert "blush" in result.general


def test_select_tags_exclude_wins_over_keep() -> None:
    result = select(
        keep_tags=["blush", "misty_(pokemon)"],
        exclude_tags=["BLUSH", "1girl", r"kasumi_\(pokemon\)", "*_background", "holding [object]"],
    )
    assert "blush" not in result.general
    assert result.character == {"misty_(pokemon)": 0.1}
    assert list(result.general) == ["solo", "long_hair", "smile", "^_^"]
    assert "1girl" not in result.index
    assert "kasumi_(pokemon)" not in result.index


def test_select_tags_exclude_kaomoji() -> None:
    assert "^_^" not in select(exclude_tags=["^_^"]).general
    assert "^_^" in select(exclude_tags=["^ ^"]).general


def test_select_tags_max_tags_combined_with_ties_by_index() -> None:
    general = {"g1": 0.9, "g2": 0.8, "g3": 0.8}
    character = {"c1": 0.8, "c2": 0.95}
    index = {"g1": 0, "g2": 3, "g3": 1, "c1": 2, "c2": 4}
    options = TagOptions(max_tags=3, character_threshold=0.5)
    result = select_tags({"general": 1.0}, general, character, index, options)
    assert result.character == {"c2": 0.95}
    assert result.general == {"g1": 0.9, "g3": 0.8}
    assert result.index == {"c2": 4, "g1": 0, "g3": 1}
    options = TagOptions(max_tags=4, character_threshold=0.5)
    result = select_tags({}, general, character, index, options)
    assert result.character == {"c2": 0.95, "c1": 0.8}
    assert result.general == {"g1": 0.9, "g3": 0.8}


def test_select_tags_max_tags_larger_than_kept_and_zero() -> None:
    assert select(max_tags=100) == select()
    assert select(max_tags=0) == select()
    assert len(select(max_tags=1).general) + len(select(max_tags=1).character) == 1


def test_select_tags_max_tags_after_keep_and_exclude() -> None:
    result = select(max_tags=2, keep_tags=["blush"], exclude_tags=["1girl"])
    assert result.general == {"solo": 0.95}
    assert result.character == {"kasumi_(pokemon)": 0.91}


def test_select_tags_names_missing_from_index_sort_last() -> None:
    general = {"unknown": 0.9, "known": 0.9}
    result = select_tags({}, general, {}, {"known": 5}, TagOptions())
    assert list(result.general) == ["known", "unknown"]
    assert result.index == {"known": 5}


def test_tag_scores_builds_index_from_labels() -> None:
    labels = labels_from_rows(
        [("general", 9), ("sensitive", 9), ("1girl", 0), ("solo", 0), ("meta", 3), ("miku", 4)]
    )
    result = tag_scores([0.7, 0.3, 0.99, 0.2, 0.99, 0.9], labels, TagOptions())
    assert result == TagResult(
        rating={"general": 0.7, "sensitive": 0.3},
        character={"miku": 0.9},
        general={"1girl": 0.99},
        index={"general": 0, "sensitive": 1, "miku": 5, "1girl": 2},
    )


# ------------------------------------------------------------------------------- formatting


def test_replace_underscores() -> None:
    assert replace_underscores("long_hair") == "long hair"
    assert replace_underscores("kasumi_(pokemon)") == "kasumi (pokemon)"
    assert replace_underscores("^_^") == "^_^"
    assert replace_underscores("||_||") == "||_||"
    assert replace_underscores("1girl") == "1girl"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kasumi (pokemon)", r"kasumi \(pokemon\)"),
        (r"kasumi \(pokemon\)", r"kasumi \(pokemon\)"),
        (r"kasumi \(pokemon)", r"kasumi \(pokemon\)"),
        ("(o)_(o)", r"\(o\)_\(o\)"),
        ("no brackets", "no brackets"),
        ("[x]", "[x]"),
    ],
)
def test_escape_brackets(text: str, expected: str) -> None:
    assert escape_brackets(text) == expected
    assert escape_brackets(escape_brackets(text)) == expected


def test_format_weight() -> None:
    assert format_weight("simple background", 0.8712) == "(simple background:0.87)"
    assert format_weight(r"kasumi \(pokemon\)", 0.905) == r"(kasumi \(pokemon\):0.91)"
    assert format_weight("1girl", 1.0) == "(1girl:1.00)"


def test_top_rating() -> None:
    assert top_rating(RATING) == "sensitive"
    assert top_rating({"general": 0.5, "sensitive": 0.5}) == "general"
    assert top_rating({"sensitive": 0.5, "general": 0.5}) == "sensitive"
    assert top_rating({}) is None


def test_sort_names_every_order() -> None:
    scores = {"b_tag": 0.5, "A_tag": 0.9, "c": 0.5, "a tag": 0.1}
    index = {"b_tag": 3, "A_tag": 2, "c": 1, "a tag": 0}
    assert sort_names(scores, index, "confidence") == ["A_tag", "c", "b_tag", "a tag"]
    assert sort_names(scores, index, "alphabetical") == ["a tag", "A_tag", "b_tag", "c"]
    assert sort_names(scores, index, "model") == ["a tag", "c", "A_tag", "b_tag"]
    assert sort_names({}, {}, "model") == []


def test_sort_names_rejects_unknown_order() -> None:
    with pytest.raises(OptionsError, match=r"order 'random' is not one of confidence"):
        sort_names({"a": 1.0}, {"a": 0}, "random")  # type: ignore[arg-type]


def test_dedupe() -> None:
    texts = ["long hair", "1girl", "Long_Hair", "1girl", r"a \(b\)", "a (b)", "^_^", "^ ^"]
    assert dedupe(texts) == ["long hair", "1girl", r"a \(b\)", "^_^", "^ ^"]
    assert dedupe([]) == []


def test_move_to_front() -> None:
    texts = ["smile", "solo", "1girl", "long hair", "Solo"]
    assert move_to_front(texts, ["1girl", "solo", "absent", ""]) == [
        "1girl",
        "solo",
        "Solo",
        "smile",
        "long hair",
    ]
    assert move_to_front(texts, []) == texts
    assert move_to_front([r"kasumi \(pokemon\)", "x"], ["x", "kasumi_(pokemon)"]) == [
        "x",
        r"kasumi \(pokemon\)",
    ]
    assert texts == ["smile", "solo", "1girl", "long hair", "Solo"]


# ---------------------------------------------------------------------------------- caption


def test_caption_defaults_confidence_merged() -> None:
    assert caption_tags(select(), TagOptions()) == [
        "1girl",
        "solo",
        "kasumi (pokemon)",
        "long hair",
        "simple background",
        "smile",
        "^_^",
        "holding [object]",
    ]


def test_format_tags_joins_with_separator() -> None:
    result = result_of({"1girl": 0.99, "long_hair": 0.9})
    assert format_tags(result, TagOptions()) == "1girl, long hair"
    assert format_tags(result, TagOptions(separator=" | ")) == "1girl | long hair"
    assert format_tags(result_of({}), TagOptions()) == ""


def test_caption_character_first() -> None:
    result = result_of({"1girl": 0.99, "smile": 0.5}, {"hatsune_miku": 0.9, "kasumi": 0.95})
    assert caption_tags(result, TagOptions(character_tags_first=True)) == [
        "kasumi",
        "hatsune miku",
        "1girl",
        "smile",
    ]
    assert caption_tags(result, TagOptions()) == ["1girl", "kasumi", "hatsune miku", "smile"]


def test_caption_orders() -> None:
    result = result_of({"smile": 0.9, "Blush": 0.5, "1girl": 0.99}, {"aqua": 0.6})
    # index: general 0, sensitive 1, smile 2, Blush 3, 1girl 4, aqua 5
    assert caption_tags(result, TagOptions(order="confidence")) == [
        "1girl",
        "smile",
        "aqua",
        "Blush",
    ]
    assert caption_tags(result, TagOptions(order="alphabetical")) == [
        "1girl",
        "aqua",
        "Blush",
        "smile",
    ]
    assert caption_tags(result, TagOptions(order="model")) == ["smile", "Blush", "1girl", "aqua"]
    ordered = TagOptions(order="alphabetical", character_tags_first=True)
    assert caption_tags(result, ordered) == ["aqua", "1girl", "Blush", "smile"]
    ordered = TagOptions(order="model", character_tags_first=True)
    assert caption_tags(result, ordered) == ["aqua", "smile", "Blush", "1girl"]


def test_caption_rating_placement() -> None:
    result = result_of({"1girl": 0.99}, rating={"general": 0.2, "sensitive": 0.75})
    assert caption_tags(result, TagOptions()) == ["1girl"]
    assert caption_tags(result, TagOptions(rating_tag="first")) == ["sensitive", "1girl"]
    assert caption_tags(result, TagOptions(rating_tag="last")) == ["1girl", "sensitive"]
    no_rating = result_of({"1girl": 0.99}, rating={})
    assert caption_tags(no_rating, TagOptions(rating_tag="first")) == ["1girl"]


def test_caption_rating_first_before_additional() -> None:
    result = result_of({"1girl": 0.99})
    options = TagOptions(rating_tag="first", additional_tags=["my_trigger"])
    assert caption_tags(result, options) == ["general", "my_trigger", "1girl"]


def test_caption_additional_verbatim() -> None:
    result = result_of({"1girl": 0.99, "long_hair": 0.9})
    options = TagOptions(
        additional_tags=["  my_trigger ", "", "  ", "Style (v2)"],
        escape_brackets=True,
        include_weights=True,
    )
    assert caption_tags(result, options) == [
        "my_trigger",
        "Style (v2)",
        "(1girl:0.99)",
        "(long hair:0.90)",
    ]


def test_caption_dedupes_additional_against_model() -> None:
    result = result_of({"1girl": 0.99, "long_hair": 0.9})
    options = TagOptions(additional_tags=["Long_Hair", "x", "X"], include_weights=True)
    assert caption_tags(result, options) == ["Long_Hair", "x", "(1girl:0.99)"]


def test_caption_escaping_and_weights() -> None:
    result = result_of({"simple_background": 0.8712}, {"kasumi_(pokemon)": 0.9149})
    options = TagOptions(escape_brackets=True, include_weights=True)
    assert format_tags(result, options) == (r"(kasumi \(pokemon\):0.91), (simple background:0.87)")
    options = TagOptions(escape_brackets=True)
    assert caption_tags(result, options) == [r"kasumi \(pokemon\)", "simple background"]


def test_caption_without_replacing_underscores() -> None:
    result = result_of({"simple_background": 0.87, "^_^": 0.5}, {"kasumi_(pokemon)": 0.91})
    options = TagOptions(replace_underscores=False, escape_brackets=True)
    assert caption_tags(result, options) == [
        r"kasumi_\(pokemon\)",
        "simple_background",
        "^_^",
    ]


def test_caption_kaomoji_kept() -> None:
    result = result_of({"^_^": 0.9, "o_o": 0.8, "smile": 0.7, "(o)_(o)": 0.6})
    assert caption_tags(result, TagOptions()) == ["^_^", "o_o", "smile", "(o)_(o)"]
    assert caption_tags(result, TagOptions(escape_brackets=True))[-1] == r"\(o\)_\(o\)"


def test_caption_replace_to_text_and_to_empty() -> None:
    result = result_of(
        {"1girl": 0.99, "long_hair": 0.9, "smile": 0.5, "open_mouth": 0.4},
        {"kasumi_(pokemon)": 0.91},
    )
    options = TagOptions(
        replace_tags={
            "1GIRL": "one_girl",
            "long hair": "",
            r"kasumi_\(pokemon\)": "Kasumi (Pokemon)",
            "*_mouth": "mouth open",
            "open_*": "never used",
        },
        escape_brackets=True,
        include_weights=True,
    )
    assert caption_tags(result, options) == [
        "(one_girl:0.99)",
        "(Kasumi (Pokemon):0.91)",
        "(smile:0.50)",
        "(mouth open:0.40)",
    ]


def test_caption_replace_rating_and_collisions_deduped() -> None:
    result = result_of({"smile": 0.9, "grin": 0.8}, rating={"general": 0.9})
    options = TagOptions(rating_tag="last", replace_tags={"general": "safe", "grin": "smile"})
    assert caption_tags(result, options) == ["smile", "safe"]
    options = TagOptions(rating_tag="first", replace_tags={"general": ""})
    assert caption_tags(result, options) == ["smile", "grin"]


def test_caption_always_first() -> None:
    result = result_of({"1girl": 0.99, "solo": 0.95, "long_hair": 0.9}, {"kasumi_(pokemon)": 0.91})
    options = TagOptions(
        always_first_tags=["Kasumi_(Pokemon)", "long_hair", "absent", "  "],
        additional_tags=["trigger"],
        rating_tag="first",
        escape_brackets=True,
        include_weights=True,
    )
    assert caption_tags(result, options) == [
        r"(kasumi \(pokemon\):0.91)",
        "(long hair:0.90)",
        "(general:0.90)",
        "trigger",
        "(1girl:0.99)",
        "(solo:0.95)",
    ]


def test_caption_always_first_matches_written_text_and_additional() -> None:
    result = result_of({"1girl": 0.99, "smile": 0.5})
    options = TagOptions(
        additional_tags=["my_trigger"],
        always_first_tags=["smile", "my trigger"],
        replace_tags={"1girl": "one girl"},
    )
    assert caption_tags(result, options) == ["smile", "my_trigger", "one girl"]
    options = TagOptions(always_first_tags=["1girl"], replace_tags={"1girl": "one girl"})
    assert caption_tags(result, options) == ["one girl", "smile"]


def test_caption_does_not_mutate() -> None:
    result = select()
    before = copy.deepcopy(result)
    options = TagOptions(rating_tag="first", always_first_tags=["solo"], max_tags=3)
    options_before = copy.deepcopy(options)
    caption_tags(result, options)
    assert result == before
    assert options == options_before


# ---------------------------------------------------------------------------------- properties

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
tag_names = st.sampled_from(
    [
        "1girl",
        "solo",
        "long_hair",
        "Long Hair",
        "long__hair",
        "^_^",
        "^ ^",
        "o_o",
        "kasumi_(pokemon)",
        r"kasumi_\(pokemon\)",
        "holding_[object]",
        "smile",
        "Smile",
        "a?b",
        "*",
    ]
) | st.text(alphabet="ab_ ()\\*?[]^", min_size=1, max_size=6).filter(lambda s: s.strip())
score_dicts = st.dictionaries(tag_names, unit, max_size=8)
patterns = st.lists(tag_names | st.sampled_from(["*hair", "?girl", "*", "", "s*e"]), max_size=3)


@st.composite
def options_strategy(draw: st.DrawFn) -> TagOptions:
    return TagOptions(
        general_threshold=draw(unit),
        character_threshold=draw(unit),
        mcut_general=draw(st.booleans()),
        mcut_character=draw(st.booleans()),
        character_mcut_floor=draw(unit),
        max_tags=draw(st.integers(min_value=0, max_value=5)),
        keep_tags=draw(patterns),
        exclude_tags=draw(patterns),
        additional_tags=draw(st.lists(tag_names, max_size=3)),
        replace_tags=draw(st.dictionaries(tag_names, tag_names | st.just(""), max_size=2)),
        always_first_tags=draw(patterns),
        character_tags_first=draw(st.booleans()),
        rating_tag=draw(st.sampled_from(["none", "first", "last"])),
        replace_underscores=draw(st.booleans()),
        escape_brackets=draw(st.booleans()),
        include_weights=draw(st.booleans()),
        order=draw(st.sampled_from(["confidence", "alphabetical", "model"])),
    )


def index_for(*groups: dict[str, float]) -> dict[str, int]:
    index: dict[str, int] = {}
    for group in groups:
        for name in group:
            index.setdefault(name, len(index))
    return index


@given(st.lists(unit, min_size=2, max_size=30))
def test_mcut_between_min_and_max(scores: list[float]) -> None:
    assert min(scores) <= mcut_threshold(scores) <= max(scores)


@given(st.lists(unit, min_size=2, max_size=30))
def test_mcut_matches_numpy_reference(scores: list[float]) -> None:
    probs = np.array(scores, dtype=np.float64)
    ordered = probs[probs.argsort()[::-1]]
    gaps = ordered[:-1] - ordered[1:]
    t = gaps.argmax()
    assert mcut_threshold(scores) == (ordered[t] + ordered[t + 1]) / 2


@given(score_dicts, score_dicts, unit, unit, st.integers(min_value=0, max_value=4))
def test_raising_general_threshold_never_adds_tags(
    general: dict[str, float],
    character: dict[str, float],
    low: float,
    high: float,
    max_tags: int,
) -> None:
    low, high = min(low, high), max(low, high)
    index = index_for(general, character)
    kept = {}
    for threshold in (low, high):
        options = TagOptions(general_threshold=threshold, exclude_tags=["smile"], max_tags=max_tags)
        kept[threshold] = select_tags({}, general, character, index, options).general
    assert set(kept[high]) <= set(kept[low])


@given(score_dicts, score_dicts, score_dicts, options_strategy())
@settings(max_examples=200)
def test_select_tags_never_mutates_inputs(
    rating: dict[str, float],
    general: dict[str, float],
    character: dict[str, float],
    options: TagOptions,
) -> None:
    index = index_for(rating, general, character)
    before = copy.deepcopy((rating, general, character, index))
    options_before = copy.deepcopy(options)
    result = select_tags(rating, general, character, index, options)
    assert (rating, general, character, index) == before
    assert options == options_before
    assert result.rating is not rating
    assert set(result.general) <= set(general)
    assert set(result.character) <= set(character)
    assert set(result.index) == {*result.rating, *result.general, *result.character}
    if options.max_tags:
        assert len(result.general) + len(result.character) <= options.max_tags


@given(score_dicts, score_dicts, score_dicts, options_strategy())
@settings(max_examples=200)
def test_caption_never_has_duplicate_normalized_tags(
    rating: dict[str, float],
    general: dict[str, float],
    character: dict[str, float],
    options: TagOptions,
) -> None:
    index = index_for(rating, general, character)
    result = select_tags(rating, general, character, index, options)
    unweighted = TagOptions(**{**dump(options), "include_weights": False})
    texts = caption_tags(result, unweighted)
    normalized = [normalize_tag(text) for text in texts]
    assert len(normalized) == len(set(normalized))
    assert all(text.strip() for text in texts)
    assert format_tags(result, options) == options.separator.join(caption_tags(result, options))
    assert len(caption_tags(result, options)) == len(texts)
