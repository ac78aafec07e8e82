r"""From model scores to kept tags and caption text.

Everything here is pure standard-library Python: scores arrive as plain floats (or any sequence of
numbers, such as one row of a NumPy array), and every function returns new objects without
touching its arguments. The pipeline is::

    load_labels(csv) -> Labels
    split_scores(probs, labels) -> (rating, general, character)   # all scores, model order
    select_tags(rating, general, character, index, options) -> TagResult  # kept tags
    format_tags(result, options) -> "1girl, long hair, ..."

Tag names stay as written in ``selected_tags.csv`` (``long_hair``, ``kasumi_(pokemon)``) until
formatting. Matching (``keep_tags``, ``exclude_tags``, ``replace_tags``, ``always_first_tags``)
compares normalized text: any case, spaces or underscores, ``\(`` or ``(``, with ``*`` and ``?``
wildcards. Thresholds follow SmilingWolf's wd-tagger app: a tag is kept when its score is strictly
greater than the threshold, and MCut picks the middle of the largest gap between sorted scores.
"""

from __future__ import annotations

import csv
import fnmatch
import functools
import itertools
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from tagger.errors import LabelsError, ModelFilesMissingError, OptionsError
from tagger.options import Order, TagOptions

__all__ = [
    "CHARACTER_CATEGORY",
    "GENERAL_CATEGORY",
    "KAOMOJIS",
    "ORDERS",
    "RATING_CATEGORY",
    "Labels",
    "TagResult",
    "above_threshold",
    "caption_tags",
    "category_threshold",
    "dedupe",
    "escape_brackets",
    "expand_character_tag",
    "format_tags",
    "format_weight",
    "label_index",
    "labels_from_rows",
    "load_labels",
    "mcut_threshold",
    "move_to_front",
    "normalize_tag",
    "replace_underscores",
    "select_tags",
    "sort_names",
    "split_scores",
    "tag_matches",
    "tag_scores",
    "top_rating",
]

#: Tags written with their underscores kept: the underscore is part of the face.
KAOMOJIS: frozenset[str] = frozenset(
    {
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
    }
)

#: ``category`` values of ``selected_tags.csv``; rows of other categories belong to no group.
RATING_CATEGORY = 9
GENERAL_CATEGORY = 0
CHARACTER_CATEGORY = 4

#: The values ``sort_names`` accepts for ``order``.
ORDERS: tuple[str, ...] = ("confidence", "alphabetical", "model")

_REQUIRED_COLUMNS = ("name", "category")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_UNESCAPED_BRACKET = re.compile(r"(?<!\\)([()])")
_T = TypeVar("_T")


# --------------------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class Labels:
    """The tags of one model, as read from its ``selected_tags.csv``.

    ``names`` holds every tag name in model (CSV row) order; ``rating``, ``general`` and
    ``character`` hold the indices into ``names`` of each category's tags, ascending. Rows of
    other categories are in ``names`` (so indices line up with model outputs) but in no group.
    ``index`` maps each name to its first index; it is built once, not per image (read-only).
    """

    names: tuple[str, ...]
    rating: tuple[int, ...]
    general: tuple[int, ...]
    character: tuple[int, ...]
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, int] = {}
        for position, name in enumerate(self.names):
            index.setdefault(name, position)
        object.__setattr__(self, "index", index)


def labels_from_rows(rows: Iterable[tuple[str, int]]) -> Labels:
    """Build ``Labels`` from ``(name, category)`` pairs given in model order.

    Category 9 rows are ratings, 0 general tags and 4 characters; any other category is kept in
    ``names`` only. An empty (or blank) name raises ``LabelsError`` naming its 0-based position.

    >>> labels = labels_from_rows([("general", 9), ("1girl", 0), ("artist", 1), ("miku", 4)])
    >>> labels.names
    ('general', '1girl', 'artist', 'miku')
    >>> labels.rating, labels.general, labels.character
    ((0,), (1,), (3,))
    """
    names: list[str] = []
    groups: dict[int, list[int]] = {
        RATING_CATEGORY: [],
        GENERAL_CATEGORY: [],
        CHARACTER_CATEGORY: [],
    }
    for position, (name, category) in enumerate(rows):
        if not name or not name.strip():
            raise LabelsError(
                f"tag {position} has an empty name {name!r}; every tag needs a name "
                "(re-download selected_tags.csv)"
            )
        names.append(name)
        if category in groups:
            groups[category].append(position)
    return Labels(
        names=tuple(names),
        rating=tuple(groups[RATING_CATEGORY]),
        general=tuple(groups[GENERAL_CATEGORY]),
        character=tuple(groups[CHARACTER_CATEGORY]),
    )


def load_labels(path: str | os.PathLike[str]) -> Labels:
    """Read SmilingWolf's ``selected_tags.csv`` (header ``tag_id,name,category,count``).

    Only the ``name`` and ``category`` columns are used; the file is read as UTF-8 (a leading
    byte-order mark is accepted) and blank lines are skipped. A missing column, an empty name, a
    non-integer category, an empty file or a header without rows raises ``LabelsError`` naming
    the file, the row (the header is row 1) and the problem; a missing file raises
    ``ModelFilesMissingError``.

    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder, "selected_tags.csv")
    ...     text = "tag_id,name,category,count\\n1,general,9,9\\n2,1girl,0,8\\n3,miku,4,7\\n"
    ...     _ = path.write_text(text, encoding="utf-8")
    ...     load_labels(path)
    Labels(names=('general', '1girl', 'miku'), rating=(0,), general=(1,), character=(2,))
    """
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8-sig", newline="") as handle:
            rows = _parse_label_rows(source, csv.reader(handle))
    except FileNotFoundError as exc:
        raise ModelFilesMissingError(
            f"{source}: file not found; download the model again or point to the folder that "
            "holds its selected_tags.csv"
        ) from exc
    except UnicodeDecodeError as exc:
        raise LabelsError(
            f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "re-download selected_tags.csv"
        ) from exc
    except csv.Error as exc:
        raise LabelsError(f"{source}: not a readable CSV file ({exc}); re-download it") from exc
    except OSError as exc:
        raise LabelsError(f"{source}: cannot be read ({exc.strerror or exc})") from exc
    return labels_from_rows(rows)


def _parse_label_rows(source: str, reader: Iterator[list[str]]) -> list[tuple[str, int]]:
    """Check the header and turn each data row into ``(name, category)``, naming bad rows."""
    header = next(reader, None)
    if header is None:
        raise LabelsError(
            f"{source}: the file is empty; expected the header tag_id,name,category,count "
            "(re-download selected_tags.csv)"
        )
    columns = [column.strip() for column in header]
    missing = [column for column in _REQUIRED_COLUMNS if column not in columns]
    if missing:
        raise LabelsError(
            f"{source}: row 1 (header {','.join(header)!r}) has no column {' or '.join(missing)}; "
            "expected the header tag_id,name,category,count (re-download selected_tags.csv)"
        )
    name_at, category_at = columns.index("name"), columns.index("category")
    rows: list[tuple[str, int]] = []
    for number, fields in enumerate(reader, start=2):
        if not any(field.strip() for field in fields):
            continue
        name = fields[name_at] if name_at < len(fields) else ""
        category = fields[category_at].strip() if category_at < len(fields) else ""
        if not name.strip():
            raise LabelsError(f"{source}: row {number}: the name is empty; give the tag a name")
        if not _INTEGER.fullmatch(category):
            raise LabelsError(
                f"{source}: row {number}: category {category!r} of tag {name!r} is not an "
                "integer; use 9 (rating), 0 (general) or 4 (character)"
            )
        rows.append((name, int(category)))
    if not rows:
        raise LabelsError(
            f"{source}: no tags after the header (row 1); re-download selected_tags.csv"
        )
    return rows


def label_index(labels: Labels) -> dict[str, int]:
    """Map each tag name to its model index (the first one, should a name appear twice).

    >>> label_index(labels_from_rows([("general", 9), ("1girl", 0)]))
    {'general': 0, '1girl': 1}
    """
    return labels.index


# --------------------------------------------------------------------------------------- scores


@dataclass(frozen=True)
class TagResult:
    """The tags kept for one image, with their scores.

    ``rating`` holds every rating score (model order); ``character`` and ``general`` hold the kept
    tags, best score first (ties: lower model index first); ``index`` maps each name present in
    the dicts to its model (CSV row) index. Names are raw CSV names, with underscores.
    """

    rating: dict[str, float]
    character: dict[str, float]
    general: dict[str, float]
    index: dict[str, int]
    #: Further categories (copyright, artist, meta, quality, ...; ``tagger.families``): kept
    #: tags best first; ``quality`` holds every quality score, like ``rating``.
    other: dict[str, dict[str, float]] = field(default_factory=dict)


def split_scores(
    probs: Sequence[float], labels: Labels
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Split one image's model outputs into ``(rating, general, character)`` score dicts.

    Each dict holds every score of its category in model order, as plain ``float``. Should a name
    appear twice in a category, its first score is kept. Raises ``LabelsError`` when the number of
    outputs differs from the number of tags.

    >>> labels = labels_from_rows([("general", 9), ("explicit", 9), ("1girl", 0), ("miku", 4)])
    >>> split_scores([0.8, 0.1, 0.99, 0.5], labels)
    ({'general': 0.8, 'explicit': 0.1}, {'1girl': 0.99}, {'miku': 0.5})
    """
    if len(probs) != len(labels.names):
        raise LabelsError(
            f"model has {len(probs)} outputs but selected_tags.csv has {len(labels.names)} tags; "
            "use the selected_tags.csv that belongs to this model"
        )

    def group(indices: tuple[int, ...]) -> dict[str, float]:
        scores: dict[str, float] = {}
        for position in indices:
            scores.setdefault(labels.names[position], float(probs[position]))
        return scores

    return group(labels.rating), group(labels.general), group(labels.character)


# ----------------------------------------------------------------------------------- thresholds


def mcut_threshold(scores: Sequence[float]) -> float:
    """Return the MCut threshold (Largeron et al., 2012) of a list of scores.

    The scores are sorted descending, the largest drop between neighbours is found (the first
    one on ties, like ``numpy.argmax``) and the threshold is the middle of that drop, so tags
    above the gap are kept. Fewer than two scores have no gap: the threshold is then ``0.0``,
    which keeps a lone tag (any tag scoring above zero).

    >>> mcut_threshold([0.9, 0.85, 0.3, 0.2])
    0.575
    >>> mcut_threshold([0.4])
    0.0
    """
    ordered = sorted((float(score) for score in scores), reverse=True)
    if len(ordered) < 2:
        return 0.0
    gaps = [high - low for high, low in itertools.pairwise(ordered)]
    widest = gaps.index(max(gaps))
    return (ordered[widest] + ordered[widest + 1]) / 2


def category_threshold(
    scores: Sequence[float], threshold: float, use_mcut: bool, floor: float = 0.0
) -> float:
    """Return one category's threshold: the fixed ``threshold``, or MCut of its ``scores``.

    With ``use_mcut`` the MCut threshold of ``scores`` is used, never below ``floor``; else
    ``threshold`` as it is. ``threshold`` and ``floor`` must lie in ``[0, 1]``; anything else
    raises ``OptionsError``.

    >>> category_threshold([0.9, 0.85, 0.3, 0.2], 0.35, use_mcut=False)
    0.35
    >>> category_threshold([0.9, 0.85, 0.3, 0.2], 0.35, use_mcut=True)
    0.575
    >>> category_threshold([0.12, 0.1, 0.02], 0.85, use_mcut=True, floor=0.15)
    0.15
    """
    for label, value in (("threshold", threshold), ("floor", floor)):
        if not 0.0 <= value <= 1.0:
            raise OptionsError(f"{label} {value!r} is outside 0..1; pick a value from 0 to 1")
    if not use_mcut:
        return threshold
    return max(floor, mcut_threshold(scores))


def above_threshold(scores: Mapping[str, float], threshold: float) -> dict[str, float]:
    """Keep the scores strictly greater than ``threshold``, in their given order.

    >>> above_threshold({"1girl": 0.99, "solo": 0.35, "smile": 0.36}, 0.35)
    {'1girl': 0.99, 'smile': 0.36}
    """
    return {name: score for name, score in scores.items() if score > threshold}


# ------------------------------------------------------------------------------------- matching


def normalize_tag(tag: str) -> str:
    r"""Return the form of a tag used for matching and de-duplication.

    The text is stripped, ``\(`` and ``\)`` are unescaped and it is lowercased; a kaomoji (see
    ``KAOMOJIS``) is then returned as it is; any other tag has underscores written as spaces and
    runs of whitespace collapsed to one space.

    >>> normalize_tag("  Kasumi_\\(Pokemon\\) ")
    'kasumi (pokemon)'
    >>> normalize_tag("long__hair"), normalize_tag("^_^")
    ('long hair', '^_^')
    """
    text = tag.strip().replace("\\(", "(").replace("\\)", ")").lower()
    if text in KAOMOJIS:
        return text
    return " ".join(text.replace("_", " ").split())


_normalized = functools.lru_cache(maxsize=1 << 16)(normalize_tag)


def _wildcard(pattern: str) -> str:
    """Make ``[`` and ``]`` literal in an fnmatch pattern (``*`` and ``?`` stay wildcards)."""
    return "".join({"[": "[[]", "]": "[]]"}.get(char, char) for char in pattern)


def _compile_patterns(patterns: Iterable[str]) -> tuple[tuple[str, str | None], ...]:
    """Normalize patterns once: ``(normalized, fnmatch pattern or None)``; blank ones dropped."""
    compiled = []
    for pattern in patterns:
        if not pattern.strip():
            continue
        text = _normalized(pattern)
        compiled.append((text, _wildcard(text) if "*" in text or "?" in text else None))
    return tuple(compiled)


def _matches(normalized: str, compiled: tuple[tuple[str, str | None], ...]) -> bool:
    """True when a normalized tag equals or wildcard-matches one compiled pattern."""
    return any(
        normalized == text or (wildcard is not None and fnmatch.fnmatchcase(normalized, wildcard))
        for text, wildcard in compiled
    )


def tag_matches(tag: str, patterns: Sequence[str]) -> bool:
    """True when ``tag`` matches one of ``patterns`` (any case, spaces or underscores).

    Both sides are compared as ``normalize_tag`` writes them, either for equality or as a
    wildcard pattern where ``*`` is any run of characters and ``?`` one character (``[`` and
    ``]`` are literal). Patterns that are blank are ignored.

    >>> tag_matches("long_hair", ["Long Hair"]), tag_matches("very_long_hair", ["*_hair"])
    (True, True)
    >>> tag_matches("holding_[object]", ["holding [o*"]), tag_matches("1girl", ["", "solo"])
    (True, False)
    """
    compiled = _compile_patterns(patterns)
    return bool(compiled) and _matches(_normalized(tag), compiled)


# ------------------------------------------------------------------------------------ selection


def _position(index: Mapping[str, int], name: str) -> int:
    """A name's model index, or after every indexed name when the index lacks it."""
    return index.get(name, sys.maxsize)


def _kept(
    scores: Mapping[str, float],
    threshold: float,
    keep: tuple[tuple[str, str | None], ...],
    exclude: tuple[tuple[str, str | None], ...],
) -> dict[str, float]:
    """Scores above the threshold, plus keep matches, minus exclude matches (exclude wins)."""
    kept = above_threshold(scores, threshold)
    if keep:
        kept.update(
            (name, score)
            for name, score in scores.items()
            if name not in kept and _matches(_normalized(name), keep)
        )
    if exclude:
        kept = {
            name: score for name, score in kept.items() if not _matches(_normalized(name), exclude)
        }
    return kept


def _by_confidence(scores: Mapping[str, float], index: Mapping[str, int]) -> dict[str, float]:
    """The same scores ordered best first, ties by model index."""
    return {name: scores[name] for name in sort_names(scores, index, "confidence")}


def select_tags(
    rating: Mapping[str, float],
    general: Mapping[str, float],
    character: Mapping[str, float],
    index: Mapping[str, int],
    options: TagOptions,
) -> TagResult:
    """Choose the kept tags of one image from its category scores (as from ``split_scores``).

    In order: general tags above ``general_threshold`` (or MCut when ``mcut_general``); character
    tags above ``character_threshold`` (or MCut, never below ``character_mcut_floor``, when
    ``mcut_character``); tags matching ``keep_tags`` added back whatever their score; tags
    matching ``exclude_tags`` dropped (exclude wins over keep); then, when ``max_tags`` > 0, only
    the best ``max_tags`` character and general tags together (ties: lower index first). Names
    missing from ``index`` sort after indexed ones and are left out of the result's ``index``.

    >>> result = select_tags(
    ...     {"general": 0.9, "explicit": 0.1},
    ...     {"1girl": 0.99, "long_hair": 0.9, "solo": 0.2},
    ...     {"hatsune_miku": 0.95},
    ...     {"general": 0, "explicit": 1, "1girl": 2, "long_hair": 3, "solo": 4, "hatsune_miku": 5},
    ...     TagOptions(max_tags=2),
    ... )
    >>> result.character, result.general
    ({'hatsune_miku': 0.95}, {'1girl': 0.99})
    """
    keep = _compile_patterns(options.keep_tags)
    exclude = _compile_patterns(options.exclude_tags)
    general_threshold = category_threshold(
        list(general.values()), options.general_threshold, options.mcut_general
    )
    character_threshold = category_threshold(
        list(character.values()),
        options.character_threshold,
        options.mcut_character,
        options.character_mcut_floor,
    )
    general_kept = _kept(general, general_threshold, keep, exclude)
    character_kept = _kept(character, character_threshold, keep, exclude)
    if options.max_tags > 0:
        ranked = sorted(
            [
                *((CHARACTER_CATEGORY, name, score) for name, score in character_kept.items()),
                *((GENERAL_CATEGORY, name, score) for name, score in general_kept.items()),
            ],
            key=lambda item: (-item[2], _position(index, item[1])),
        )
        best = {(category, name) for category, name, _ in ranked[: options.max_tags]}
        general_kept = {
            name: score for name, score in general_kept.items() if (GENERAL_CATEGORY, name) in best
        }
        character_kept = {
            name: score
            for name, score in character_kept.items()
            if (CHARACTER_CATEGORY, name) in best
        }
    names = [*rating, *character_kept, *general_kept]
    result = TagResult(
        rating=dict(rating),
        character=_by_confidence(character_kept, index),
        general=_by_confidence(general_kept, index),
        index={name: index[name] for name in names if name in index},
    )
    return _cleaned(result, options)


def _cleaned(result: TagResult, options: TagOptions) -> TagResult:
    """The result after the clean-up options (``tagger.cleanup``), when any is set."""
    if not (options.drop_overlap or options.drop_character_tags or options.blacklist):
        return result
    from tagger.cleanup import clean_result

    return clean_result(result, options)


def tag_scores(probs: Sequence[float], labels: Labels, options: TagOptions) -> TagResult:
    """Split one image's model outputs and select its tags: ``split_scores`` + ``select_tags``.

    >>> labels = labels_from_rows([("general", 9), ("1girl", 0), ("solo", 0), ("miku", 4)])
    >>> tag_scores([0.9, 0.99, 0.2, 0.95], labels, TagOptions()).general
    {'1girl': 0.99}
    """
    select = getattr(labels, "select", None)
    if select is not None:  # a vocabulary with more categories (tagger.families)
        return select(probs, options)
    rating, general, character = split_scores(probs, labels)
    return select_tags(rating, general, character, label_index(labels), options)


# ----------------------------------------------------------------------------------- formatting


def replace_underscores(tag: str) -> str:
    """Write a tag's underscores as spaces, except in a kaomoji (``^_^`` stays ``^_^``).

    >>> replace_underscores("long_hair"), replace_underscores("^_^")
    ('long hair', '^_^')
    """
    if tag.strip() in KAOMOJIS:
        return tag
    return tag.replace("_", " ")


def escape_brackets(text: str) -> str:
    r"""Escape ``(`` and ``)`` as ``\(`` and ``\)``; brackets already escaped are left alone.

    >>> escape_brackets("kasumi (pokemon)")
    'kasumi \\(pokemon\\)'
    >>> escape_brackets("kasumi \\(pokemon)")
    'kasumi \\(pokemon\\)'
    """
    return _UNESCAPED_BRACKET.sub(r"\\\1", text)


def format_weight(text: str, score: float) -> str:
    """Write a tag with its score as a prompt weight, ``(text:0.87)``.

    >>> format_weight("simple background", 0.8712)
    '(simple background:0.87)'
    """
    return f"({text}:{score:.2f})"


def top_rating(rating: Mapping[str, float]) -> str | None:
    """Return the best-scoring rating (the first one on ties), or ``None`` when there is none.

    >>> top_rating({"general": 0.2, "sensitive": 0.7, "explicit": 0.7}), top_rating({})
    ('sensitive', None)
    """
    if not rating:
        return None
    return max(rating, key=lambda name: rating[name])


def sort_names(scores: Mapping[str, float], index: Mapping[str, int], order: Order) -> list[str]:
    """Return the names of ``scores`` in ``order``: confidence, alphabetical or model.

    ``confidence`` is best score first, ``alphabetical`` compares ``normalize_tag`` text and
    ``model`` follows the model index; ties always go to the lower model index. Names missing
    from ``index`` come after indexed ones, in their given order. Another ``order`` raises
    ``OptionsError``.

    >>> scores = {"solo": 0.5, "1girl": 0.99, "Long_hair": 0.5}
    >>> index = {"1girl": 0, "solo": 1, "Long_hair": 2}
    >>> sort_names(scores, index, "confidence"), sort_names(scores, index, "alphabetical")
    (['1girl', 'solo', 'Long_hair'], ['1girl', 'Long_hair', 'solo'])
    >>> sort_names(scores, index, "model")
    ['1girl', 'solo', 'Long_hair']
    """
    if order == "confidence":
        return sorted(scores, key=lambda name: (-scores[name], _position(index, name)))
    if order == "alphabetical":
        return sorted(scores, key=lambda name: (_normalized(name), _position(index, name)))
    if order == "model":
        return sorted(scores, key=lambda name: _position(index, name))
    raise OptionsError(f"order {order!r} is not one of {', '.join(ORDERS)}; pick one of those")


def _dedupe_by(items: Sequence[_T], text: Callable[[_T], str]) -> list[_T]:
    """Keep the first item of each ``normalize_tag`` text."""
    seen: set[str] = set()
    kept: list[_T] = []
    for item in items:
        key = _normalized(text(item))
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


def dedupe(texts: Sequence[str]) -> list[str]:
    """Drop repeated tags, keeping the first; tags compare as ``normalize_tag`` writes them.

    >>> dedupe(["long hair", "1girl", "Long_Hair", "1girl"])
    ['long hair', '1girl']
    """
    return _dedupe_by(texts, str)


def _move_to_front_by(
    items: Sequence[_T], first: Sequence[str], text: Callable[[_T], str]
) -> list[_T]:
    """Move items whose normalized text equals an entry of ``first`` to the front, in its order."""
    wanted = [_normalized(entry) for entry in first if entry.strip()]
    front: list[_T] = []
    taken: set[int] = set()
    for key in wanted:
        for position, item in enumerate(items):
            if position not in taken and _normalized(text(item)) == key:
                front.append(item)
                taken.add(position)
    return front + [item for position, item in enumerate(items) if position not in taken]


def move_to_front(texts: Sequence[str], first: Sequence[str]) -> list[str]:
    """Move the texts that equal an entry of ``first`` to the front (compared normalized).

    Texts compare as ``normalize_tag`` writes them. Moved texts come in the order of ``first``;
    the others keep their order. Blank entries of ``first`` are ignored.

    >>> move_to_front(["smile", "solo", "1girl", "long hair"], ["1girl", "Solo", "absent"])
    ['1girl', 'solo', 'smile', 'long hair']
    """
    return _move_to_front_by(texts, first, str)


def _written(name: str, options: TagOptions) -> str:
    """The caption text of a model tag name: its replacement, or the name reformatted."""
    for key, value in options.replace_tags.items():
        if tag_matches(name, [key]):
            return value.strip()
    text = replace_underscores(name) if options.replace_underscores else name
    return escape_brackets(text) if options.escape_brackets else text


#: Categories of ``TagResult.other`` written like ratings (the best one, when asked).
PICKED_CATEGORIES = frozenset({"quality"})


def _model_pairs(result: TagResult, options: TagOptions) -> list[tuple[str, float]]:
    """Character, general and other-category tags as ``(name, score)`` in caption order."""
    others: dict[str, float] = {}
    for category, scores in result.other.items():
        if category not in PICKED_CATEGORIES:
            others.update(scores)
    groups = (
        [result.character, {**result.general, **others}]
        if options.character_tags_first
        else [{**result.character, **result.general, **others}]
    )
    return [
        (name, group[name])
        for group in groups
        for name in sort_names(group, result.index, options.order)
    ]


def expand_character_tag(name: str) -> list[str]:
    """kohya's ``--character_tag_expand``: ``name_(series)`` -> ``name``, ``series``; only the
    last bracket is split off (``name_(costume)_(series)`` -> ``name_(costume)``, ``series``).

    >>> expand_character_tag("kasumi_(pokemon)"), expand_character_tag("hatsune_miku")
    (['kasumi', 'pokemon'], ['hatsune_miku'])
    >>> expand_character_tag("a_(b)_(c)")
    ['a_(b)', 'c']
    """
    if not name.endswith(")") or "(" not in name:
        return [name]
    head, _, tail = name.rpartition("(")
    head = head[:-1] if head.endswith("_") else head
    return [head, tail[:-1]] if head else [name]


def _picked(scores: dict[str, float], options: TagOptions) -> list[tuple[str, float | None]]:
    """The best tag of a picked category (rating, quality), written, with its score."""
    best = top_rating(scores)
    return [] if best is None else [(_written(best, options), scores[best])]


def caption_tags(result: TagResult, options: TagOptions) -> list[str]:
    """Return the caption of one image as a list of tag texts.

    The order is: (a) tags matching ``always_first_tags``, in that order; (b) the best rating
    when ``rating_tag`` is ``"first"``; (c) ``additional_tags`` verbatim (stripped, blank ones
    dropped); (d) the model's tags: character then general when ``character_tags_first``, else
    both merged, each group ordered by ``order``; (e) the best rating when ``rating_tag`` is
    ``"last"``. Blank texts and repeated tags (as ``normalize_tag`` writes them) are then dropped,
    the first kept.
    A model tag (the rating included) matching a ``replace_tags`` key is written as its value
    (the first matching key wins; an empty value drops the tag), else with underscores as spaces
    (``replace_underscores``) and brackets escaped (``escape_brackets``). With
    ``include_weights`` model and rating tags are written as ``(text:0.87)``. Tags of further
    categories (``TagResult.other``: copyright, artist, meta...) go with the general tags; the
    best quality tag is placed like the rating (``quality_tag``, inside the rating), and
    ``character_tag_expand`` writes ``name_(series)`` as ``name``, ``series``.

    >>> result = TagResult(
    ...     rating={"general": 0.9, "sensitive": 0.1},
    ...     character={"kasumi_(pokemon)": 0.91},
    ...     general={"1girl": 0.99, "simple_background": 0.87},
    ...     index={"general": 0, "sensitive": 1, "1girl": 2, "simple_background": 3,
    ...            "kasumi_(pokemon)": 4},
    ... )
    >>> caption_tags(result, TagOptions(rating_tag="last", additional_tags=["my_trigger"]))
    ['my_trigger', '1girl', 'kasumi (pokemon)', 'simple background', 'general']
    """
    rating: list[tuple[str, float | None]] = []
    if options.rating_tag != "none":
        best = top_rating(result.rating)
        if best is not None:
            rating = [(_written(best, options), result.rating[best])]
    additional: list[tuple[str, float | None]] = [
        (text.strip(), None) for text in options.additional_tags
    ]
    model: list[tuple[str, float | None]] = [
        (_written(part, options), score)
        for name, score in _model_pairs(result, options)
        for part in (
            expand_character_tag(name)
            if options.character_tag_expand and name in result.character
            else [name]
        )
    ]
    quality: list[tuple[str, float | None]] = []
    if options.quality_tag != "none" and result.other.get("quality"):
        quality = _picked(result.other["quality"], options)
    pairs = [
        *(rating if options.rating_tag == "first" else []),
        *(quality if options.quality_tag == "first" else []),
        *additional,
        *model,
        *(quality if options.quality_tag == "last" else []),
        *(rating if options.rating_tag == "last" else []),
    ]
    pairs = [pair for pair in pairs if pair[0].strip()]
    pairs = _move_to_front_by(pairs, options.always_first_tags, lambda pair: pair[0])
    pairs = _dedupe_by(pairs, lambda pair: pair[0])
    return [
        format_weight(text, score) if options.include_weights and score is not None else text
        for text, score in pairs
    ]


def format_tags(result: TagResult, options: TagOptions) -> str:
    """Return the caption of one image: ``caption_tags`` joined with ``options.separator``.

    >>> result = TagResult(
    ...     rating={"general": 0.9},
    ...     character={},
    ...     general={"1girl": 0.99, "long_hair": 0.8},
    ...     index={"general": 0, "1girl": 1, "long_hair": 2},
    ... )
    >>> format_tags(result, TagOptions(rating_tag="first", include_weights=True))
    '(general:0.90), (1girl:0.99), (long hair:0.80)'
    """
    return options.separator.join(caption_tags(result, options))
