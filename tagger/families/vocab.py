"""Vocabularies of every tagger family: tag names, their categories, and shipped thresholds.

Each family ships its tag list in its own format; the loaders here read them all into one
``Vocabulary`` (a ``tagger.tags.Labels`` with the other categories and the thresholds the
model ships), so the rest of tagger sees one shape:

- ``selected_tags.csv`` (SmilingWolf, PixAI, IdolSankaku; Camie's CSV export): ``name`` and an
  integer ``category`` column, read through a family's category map;
- ``tags-selected.csv`` (Z3D-E621): a ``name`` column, ``category`` optional (e621 numbers);
- ``tag_mapping.json`` (cl_tagger): ``{"0": {"tag": ..., "category": "General"}, ...}`` or
  ``{"idx_to_tag": {...}, "tag_to_category": {...}}``;
- Camie v2's ``*-metadata.json``: ``dataset_info.tag_mapping.idx_to_tag`` / ``tag_to_category``;
- ``classes.json`` (ML-Danbooru): a list of names (all general);
- ``labels.txt``: one name per line (all general), for declared ONNX classifiers;
- ``thresholds.csv``: per category (``category,name,threshold``, PixAI's export) or per tag
  (``name,threshold``).

Standard library only; every error names the file, the row and the fix.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tagger.errors import LabelsError, ModelFilesMissingError
from tagger.tags import Labels

#: The categories tagger knows by name, in caption order after characters.
CATEGORIES: tuple[str, ...] = (
    "rating",
    "character",
    "copyright",
    "artist",
    "general",
    "meta",
    "quality",
    "model",
    "year",
    "species",
    "lore",
)
#: Categories of which one tag is picked (the most likely), like ratings.
ARGMAX_CATEGORIES: tuple[str, ...] = ("rating", "quality")
#: Danbooru's category numbers (SmilingWolf's CSV; Camie's CSV export adds 10 for years).
DANBOORU_CATEGORIES: dict[int, str] = {
    0: "general",
    1: "artist",
    3: "copyright",
    4: "character",
    5: "meta",
    9: "rating",
    10: "year",
}
#: e621's category numbers (Z3D-E621).
E621_CATEGORIES: dict[int, str] = {
    0: "general",
    1: "artist",
    3: "copyright",
    4: "character",
    5: "species",
    6: "invalid",
    7: "meta",
    8: "lore",
    9: "rating",
}
CATEGORY_MAPS: dict[str, dict[int, str]] = {
    "danbooru": DANBOORU_CATEGORIES,
    "e621": E621_CATEGORIES,
}
_INTEGER = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class Vocabulary(Labels):
    """A model's tags with every category (``Labels`` holds rating, general and character).

    ``other`` maps each further category (copyright, artist, meta, quality, model, year,
    species...) to the indices of its tags, ascending. ``tag_thresholds`` (index -> threshold)
    and ``category_thresholds`` (category -> threshold) are the thresholds the model ships;
    ``profiles`` the named threshold sets of its card (category -> threshold, ``*`` for the
    rest). ``select`` makes ``tagger.tags.tag_scores`` use ``tagger.families.selection``.
    """

    other: Mapping[str, tuple[int, ...]] = field(default_factory=dict, repr=False)
    tag_thresholds: Mapping[int, float] = field(default_factory=dict, repr=False)
    category_thresholds: Mapping[str, float] = field(default_factory=dict, repr=False)
    profiles: Mapping[str, Mapping[str, float]] = field(default_factory=dict, repr=False)

    def category_of(self, position: int) -> str | None:
        """The category of the tag at ``position`` (None for a row of no known category)."""
        for name, indices in self.groups().items():
            if position in indices:
                return name
        return None

    def groups(self) -> dict[str, tuple[int, ...]]:
        """Every category with its tag indices: rating, general, character, then the others."""
        return {
            "rating": self.rating,
            "general": self.general,
            "character": self.character,
            **dict(self.other),
        }

    def select(self, probs: Sequence[float], options: Any) -> Any:
        """The kept tags of one image (``tagger.families.selection.select_vocabulary``)."""
        from tagger.families.selection import select_vocabulary

        return select_vocabulary(probs, self, options)


def vocabulary_from_rows(
    rows: Iterable[tuple[str, str | None]],
    *,
    tag_thresholds: Mapping[int, float] | None = None,
    category_thresholds: Mapping[str, float] | None = None,
    profiles: Mapping[str, Mapping[str, float]] | None = None,
) -> Vocabulary:
    """Build a ``Vocabulary`` from ``(name, category)`` pairs in model output order.

    A category of None (or ``invalid``) keeps the row in ``names`` only.

    >>> v = vocabulary_from_rows([("general", "rating"), ("1girl", "general"),
    ...                           ("miku", "character"), ("vocaloid", "copyright")])
    >>> v.rating, v.general, v.character, dict(v.other)
    ((0,), (1,), (2,), {'copyright': (3,)})
    """
    names: list[str] = []
    groups: dict[str, list[int]] = {}
    for position, (name, category) in enumerate(rows):
        if not name or not name.strip():
            raise LabelsError(f"tag {position} has an empty name {name!r}; every tag needs a name")
        names.append(name)
        if category and category != "invalid":
            groups.setdefault(category, []).append(position)
    base = {key: tuple(groups.pop(key, [])) for key in ("rating", "general", "character")}
    return Vocabulary(
        names=tuple(names),
        rating=base["rating"],
        general=base["general"],
        character=base["character"],
        other={key: tuple(value) for key, value in groups.items()},
        tag_thresholds=dict(tag_thresholds or {}),
        category_thresholds=dict(category_thresholds or {}),
        profiles={k: dict(v) for k, v in (profiles or {}).items()},
    )


def with_thresholds(
    vocabulary: Vocabulary,
    *,
    tag_thresholds: Mapping[int, float] | None = None,
    category_thresholds: Mapping[str, float] | None = None,
    profiles: Mapping[str, Mapping[str, float]] | None = None,
) -> Vocabulary:
    """The same vocabulary with shipped thresholds and profiles added (new object)."""
    from dataclasses import replace

    return replace(
        vocabulary,
        tag_thresholds={**vocabulary.tag_thresholds, **(tag_thresholds or {})},
        category_thresholds={**vocabulary.category_thresholds, **(category_thresholds or {})},
        profiles={**vocabulary.profiles, **{k: dict(v) for k, v in (profiles or {}).items()}},
    )


# ------------------------------------------------------------------------------------ reading


def _read_text(path: str | os.PathLike[str]) -> str:
    """A vocabulary file's text (UTF-8, BOM accepted), with errors naming the file."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8-sig", newline="") as handle:
            return handle.read()
    except FileNotFoundError as exc:
        raise ModelFilesMissingError(
            f"{source}: file not found; download the model again or point to the folder that "
            "holds it"
        ) from exc
    except UnicodeDecodeError as exc:
        raise LabelsError(f"{source}: not UTF-8 text ({exc.reason}); re-download it") from exc
    except OSError as exc:
        raise LabelsError(f"{source}: cannot be read ({exc.strerror or exc})") from exc


def _read_json(path: str | os.PathLike[str]) -> Any:
    """A JSON vocabulary file, with errors naming the file and the position."""
    text = _read_text(path)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise LabelsError(f"{os.fspath(path)}: not valid JSON ({exc}); re-download it") from exc


def _csv_rows(path: str | os.PathLike[str]) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header (stripped) and the non-blank data rows with their 1-based row numbers."""
    source = os.fspath(path)
    try:
        rows = list(csv.reader(_read_text(path).splitlines()))
    except csv.Error as exc:
        raise LabelsError(f"{source}: not a readable CSV file ({exc}); re-download it") from exc
    if not rows:
        raise LabelsError(f"{source}: the file is empty; re-download it")
    header = [column.strip() for column in rows[0]]
    body = [(n, r) for n, r in enumerate(rows[1:], start=2) if any(c.strip() for c in r)]
    if not body:
        raise LabelsError(f"{source}: no tags after the header (row 1); re-download it")
    return header, body


def load_tags_csv(
    path: str | os.PathLike[str], category_map: str | Mapping[int, str] = "danbooru"
) -> Vocabulary:
    """Read a ``selected_tags.csv`` / ``tags-selected.csv``: a ``name`` column and an optional
    integer ``category`` column mapped to names (``danbooru`` or ``e621`` numbers, or a map);
    without a category column every tag is general. Numbers the map lacks stay uncategorised.

    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder, "tags.csv")
    ...     text = "name,category\\nsafe,9\\n1girl,0\\nvocaloid,3\\n"
    ...     _ = path.write_text(text, encoding="utf-8")
    ...     v = load_tags_csv(path)
    >>> v.names, v.rating, v.general, dict(v.other)
    (('safe', '1girl', 'vocaloid'), (0,), (1,), {'copyright': (2,)})
    """
    source = os.fspath(path)
    table = CATEGORY_MAPS[category_map] if isinstance(category_map, str) else category_map
    header, body = _csv_rows(path)
    if "name" not in header:
        raise LabelsError(f"{source}: row 1 (header {','.join(header)!r}) has no column name")
    name_at = header.index("name")
    category_at = header.index("category") if "category" in header else None
    rows: list[tuple[str, str | None]] = []
    for number, fields in body:
        name = fields[name_at] if name_at < len(fields) else ""
        if not name.strip():
            raise LabelsError(f"{source}: row {number}: the name is empty; give the tag a name")
        if category_at is None:
            rows.append((name.strip(), "general"))
            continue
        text = fields[category_at].strip() if category_at < len(fields) else ""
        if not _INTEGER.fullmatch(text):
            raise LabelsError(
                f"{source}: row {number}: category {text!r} of tag {name!r} is not an integer"
            )
        rows.append((name.strip(), table.get(int(text))))
    return vocabulary_from_rows(rows)


def _category_name(value: Any, source: str, where: str) -> str:
    """A category written as text (``General``, ``character``...) in tagger's lower case."""
    if not isinstance(value, str) or not value.strip():
        raise LabelsError(f"{source}: {where}: the category {value!r} is not a name")
    return value.strip().lower()


def _indexed(mapping: Mapping[str, Any], source: str) -> list[tuple[int, Any]]:
    """``{"0": x, "1": y}`` as ``[(0, x), (1, y)]``; indices must run 0..N-1 without gaps."""
    items = []
    for key, value in mapping.items():
        if not _INTEGER.fullmatch(str(key)):
            raise LabelsError(f"{source}: key {key!r} is not a tag index")
        items.append((int(key), value))
    items.sort(key=lambda item: item[0])
    expected = list(range(len(items)))
    if [index for index, _ in items] != expected:
        missing = sorted(set(expected) - {index for index, _ in items})
        raise LabelsError(
            f"{source}: tag indices must run 0..{len(items) - 1}; missing or extra: "
            f"{missing[:5] or [items[-1][0]]}"
        )
    return items


def load_tag_mapping(path: str | os.PathLike[str]) -> Vocabulary:
    """Read cl_tagger's ``tag_mapping.json`` (both of its layouts).

    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder, "tag_mapping.json")
    ...     _ = path.write_text('{"0": {"tag": "general", "category": "Rating"},'
    ...                         ' "1": {"tag": "masterpiece", "category": "Quality"}}')
    ...     v = load_tag_mapping(path)
    >>> v.rating, dict(v.other)
    ((0,), {'quality': (1,)})
    """
    source = os.fspath(path)
    data = _read_json(path)
    if isinstance(data, Mapping) and "idx_to_tag" in data:
        categories = data.get("tag_to_category") or {}
        rows = [
            (str(name), _category_name(categories.get(name, "General"), source, f"tag {name!r}"))
            for _, name in _indexed(data["idx_to_tag"], source)
        ]
        return vocabulary_from_rows(rows)
    if not isinstance(data, Mapping):
        raise LabelsError(f"{source}: expected an object of tag index -> {{tag, category}}")
    rows = []
    for index, entry in _indexed(data, source):
        if not isinstance(entry, Mapping) or "tag" not in entry:
            raise LabelsError(f"{source}: entry {index} has no 'tag'; re-download it")
        category = _category_name(entry.get("category", "General"), source, f"entry {index}")
        rows.append((str(entry["tag"]), category))
    return vocabulary_from_rows(rows)


def load_camie_metadata(path: str | os.PathLike[str]) -> Vocabulary:
    """Read Camie v2's metadata JSON (``dataset_info.tag_mapping``).

    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder, "camie-tagger-v2-metadata.json")
    ...     _ = path.write_text('{"dataset_info": {"tag_mapping": {"idx_to_tag": {"0": "1girl", '
    ...         '"1": "year_2020"}, "tag_to_category": {"1girl": "general", '
    ...         '"year_2020": "year"}}}}')
    ...     v = load_camie_metadata(path)
    >>> v.general, dict(v.other)
    ((0,), {'year': (1,)})
    """
    source = os.fspath(path)
    data = _read_json(path)
    try:
        mapping = data["dataset_info"]["tag_mapping"]
        idx_to_tag, tag_to_category = mapping["idx_to_tag"], mapping["tag_to_category"]
    except (KeyError, TypeError):
        raise LabelsError(
            f"{source}: no dataset_info.tag_mapping.idx_to_tag / tag_to_category; this is not a "
            "Camie metadata file"
        ) from None
    rows = [
        (str(name), _category_name(tag_to_category.get(name, "general"), source, f"{name!r}"))
        for _, name in _indexed(idx_to_tag, source)
    ]
    return vocabulary_from_rows(rows)


def load_classes(path: str | os.PathLike[str]) -> Vocabulary:
    """Read a list of class names: ``classes.json`` (a JSON list, or index -> name) or a text
    file with one name per line. Every tag is general.

    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder, "classes.json")
    ...     _ = path.write_text('["1girl", "solo"]')
    ...     load_classes(path).general
    (0, 1)
    """
    source = os.fspath(path)
    if source.endswith(".json"):
        data = _read_json(path)
        if isinstance(data, Mapping):
            names = [str(name) for _, name in _indexed(data, source)]
        elif isinstance(data, list):
            names = [str(name) for name in data]
        else:
            raise LabelsError(f"{source}: expected a list of class names")
    else:
        names = [line.strip() for line in _read_text(path).splitlines() if line.strip()]
    if not names:
        raise LabelsError(f"{source}: no class names; re-download it")
    return vocabulary_from_rows((name, "general") for name in names)


def _threshold(text: str, source: str, number: int) -> float:
    """A threshold cell: a number from 0 upwards (above 1 turns its tags off)."""
    try:
        value = float(text)
    except ValueError:
        raise LabelsError(f"{source}: row {number}: threshold {text!r} is not a number") from None
    if not value >= 0.0:
        raise LabelsError(f"{source}: row {number}: threshold {value} is negative")
    return value


def load_thresholds(path: str | os.PathLike[str], vocabulary: Vocabulary) -> Vocabulary:
    """Add a ``thresholds.csv`` to a vocabulary: per category (columns ``category`` and
    ``threshold``, the category given by number, with ``name`` its name: PixAI's export) or per
    tag (``name`` or ``tag``, and ``threshold``). Tags the vocabulary lacks are an error.

    >>> import pathlib, tempfile
    >>> v = vocabulary_from_rows([("1girl", "general"), ("miku", "character")])
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder, "thresholds.csv")
    ...     _ = path.write_text("category,name,threshold\\n0,general,0.3\\n4,character,0.85\\n")
    ...     dict(load_thresholds(path, v).category_thresholds)
    {'general': 0.3, 'character': 0.85}
    """
    source = os.fspath(path)
    header, body = _csv_rows(path)
    if "threshold" not in header:
        raise LabelsError(f"{source}: row 1 has no column threshold")
    at = header.index("threshold")
    if "category" in header:
        name_at = header.index("name") if "name" in header else None
        category_at = header.index("category")
        per_category: dict[str, float] = {}
        for number, fields in body:
            cell = fields[category_at].strip()
            named = fields[name_at].strip().lower() if name_at is not None else ""
            category = named or (
                DANBOORU_CATEGORIES.get(int(cell)) if _INTEGER.fullmatch(cell) else cell.lower()
            )
            if not category:
                raise LabelsError(f"{source}: row {number}: category {cell!r} is unknown")
            per_category.setdefault(category, _threshold(fields[at].strip(), source, number))
        return with_thresholds(vocabulary, category_thresholds=per_category)
    column = "name" if "name" in header else "tag" if "tag" in header else None
    if column is None:
        raise LabelsError(f"{source}: row 1 needs a category, name or tag column")
    name_at = header.index(column)
    per_tag: dict[int, float] = {}
    for number, fields in body:
        name = fields[name_at].strip()
        if name not in vocabulary.index:
            raise LabelsError(f"{source}: row {number}: tag {name!r} is not in the model's tags")
        per_tag[vocabulary.index[name]] = _threshold(fields[at].strip(), source, number)
    return with_thresholds(vocabulary, tag_thresholds=per_tag)
