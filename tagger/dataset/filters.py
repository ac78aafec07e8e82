"""The filter language of the gallery and of ``--where``: taggui's, with tagger's tag matching.

A filter is a list of terms combined with ``AND``, ``OR`` and ``NOT`` (in that order of
precedence, highest first: ``NOT``, ``AND``, ``OR``) and parentheses; two terms side by side
mean ``AND``. A term is:

- ``tag:long_hair`` — the image has the tag, compared as tagger compares tags (any case, ``_``
  or space, ``*`` and ``?`` wildcards: ``tag:*_hair``);
- ``caption:"red car"`` — the caption text contains it (any case, wildcards);
- ``name:cat`` / ``path:set1/`` — the file name / path (relative to the dataset) contains it;
- ``tags:<5``, ``chars:>200``, ``tokens:>75``, ``width:<512``, ``height:>=1024`` — a number
  compared with ``=`` (or ``==``), ``!=``, ``<``, ``>``, ``<=``, ``>=``;
- a bare word or quoted text — the caption or the path contains it.

Values with spaces or parentheses are quoted (``"..."`` or ``'...'``). The operators are
upper case, as in taggui (``and`` is a word to search for).

>>> match = compile_filter('tag:cat AND NOT (tags:>3 OR name:draft)')
>>> match(Record("a/cat1.png", ["cat", "solo"], "cat, solo"))
True
>>> match(Record("a/draft.png", ["cat"], "cat"))
False
"""

from __future__ import annotations

import fnmatch
import functools
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tagger.errors import OptionsError
from tagger.tags import normalize_tag

NUMERIC_KEYS = ("tags", "chars", "tokens", "width", "height")
TEXT_KEYS = ("tag", "caption", "name", "path")
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "=": operator.eq,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}
_TOKEN = re.compile(
    r"""\s*(?:(?P<open>\()|(?P<close>\))|"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'"""
    r"""|(?P<key>[A-Za-z]+:)(?=["'])|(?P<word>[^\s()"]+))"""
)
_NUMBER = re.compile(r"^(==|!=|<=|>=|=|<|>)\s*(-?[0-9]+(?:\.[0-9]+)?)$")


@dataclass
class Record:
    """What a filter looks at for one image; ``tokens`` and ``size`` are computed on demand."""

    path: str
    tags: Sequence[str]
    caption: str = ""
    tokens: Callable[[], int] | None = None
    size: Callable[[], tuple[int, int]] | None = None
    _cache: dict[str, object] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        """The file name."""
        return self.path.rsplit("/", 1)[-1]


Predicate = Callable[[Record], bool]


def _tokenize(text: str) -> list[tuple[str, str]]:
    """``(kind, text)`` pieces: ``open``, ``close``, ``quoted``, ``word``."""
    pieces: list[tuple[str, str]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise OptionsError(f"filter {text!r}: cannot read it from position {position}")
        position = match.end()
        if match.group("open"):
            pieces.append(("open", "("))
        elif match.group("close"):
            pieces.append(("close", ")"))
        elif match.group("dq") is not None or match.group("sq") is not None:
            value = match.group("dq") if match.group("dq") is not None else match.group("sq")
            pieces.append(("quoted", value))
        elif match.group("key"):  # key:"quoted value": the key, then a quoted piece
            pieces.append(("word", match.group("key")))
        else:
            pieces.append(("word", match.group("word")))
        while position < len(text) and text[position].isspace():
            position += 1
    return pieces


def _contains(pattern: str) -> Callable[[str], bool]:
    """Case-insensitive containment with ``*`` and ``?`` wildcards."""
    lowered = pattern.lower()
    if not any(ch in lowered for ch in "*?["):
        return lambda text: lowered in text.lower()
    wildcard = "".join({"[": "[[]", "]": "[]]"}.get(ch, ch) for ch in lowered)
    wildcard = f"*{wildcard}*"
    return lambda text: fnmatch.fnmatchcase(text.lower(), wildcard)


@functools.lru_cache(maxsize=1 << 16)
def _normalized(tag: str) -> str:
    """``normalize_tag``, remembered (a dataset has few distinct tags, many times over)."""
    return normalize_tag(tag)


def _tag_term(value: str) -> Predicate:
    """``tag:`` as tagger matches tags (``tag_matches``): the pattern normalized once, each
    tag's normal form remembered."""
    pattern = normalize_tag(value)
    if "*" not in pattern and "?" not in pattern:
        return lambda r: any(_normalized(tag) == pattern for tag in r.tags)
    wildcard = "".join({"[": "[[]", "]": "[]]"}.get(ch, ch) for ch in pattern)
    return lambda r: any(fnmatch.fnmatchcase(_normalized(tag), wildcard) for tag in r.tags)


def _term(key: str | None, value: str) -> Predicate:
    """A predicate for one term."""
    if key is None:
        contains = _contains(value)
        return lambda r: contains(r.caption) or contains(r.path)
    if key == "tag":
        return _tag_term(value)
    if key in ("caption", "name", "path"):
        contains = _contains(value)
        if key == "caption":
            return lambda r: contains(r.caption)
        if key == "name":
            return lambda r: contains(r.name)
        return lambda r: contains(r.path)
    match = _NUMBER.match(value.strip())
    if match is None:
        raise OptionsError(
            f"filter term {key}:{value}: expected a comparison and a number, e.g. {key}:<5"
        )
    compare = COMPARISONS[match.group(1)]
    number = float(match.group(2))
    if key == "tags":
        return lambda r: compare(len(r.tags), number)
    if key == "chars":
        return lambda r: compare(len(r.caption), number)
    if key == "tokens":
        return lambda r: r.tokens is not None and compare(r.tokens(), number)
    index = 0 if key == "width" else 1
    return lambda r: r.size is not None and compare(r.size()[index], number)


class _Parser:
    """Recursive descent over the pieces."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pieces = _tokenize(text)
        self.at = 0

    def peek(self) -> tuple[str, str] | None:
        return self.pieces[self.at] if self.at < len(self.pieces) else None

    def take(self) -> tuple[str, str]:
        piece = self.pieces[self.at]
        self.at += 1
        return piece

    def fail(self, why: str) -> OptionsError:
        return OptionsError(
            f"filter {self.text!r}: {why} (e.g. tag:cat AND NOT tag:dog, tags:<5, "
            f'caption:"red car")'
        )

    def parse(self) -> Predicate:
        if not self.pieces:
            return lambda r: True
        predicate = self.parse_or()
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return predicate

    def parse_or(self) -> Predicate:
        parts = [self.parse_and()]
        while self.peek() == ("word", "OR"):
            self.take()
            parts.append(self.parse_and())
        if len(parts) == 1:
            return parts[0]
        return lambda r: any(p(r) for p in parts)

    def parse_and(self) -> Predicate:
        parts = [self.parse_not()]
        while True:
            piece = self.peek()
            if piece is None or piece == ("word", "OR") or piece[0] == "close":
                break
            if piece == ("word", "AND"):
                self.take()
            parts.append(self.parse_not())
        if len(parts) == 1:
            return parts[0]
        return lambda r: all(p(r) for p in parts)

    def parse_not(self) -> Predicate:
        if self.peek() == ("word", "NOT"):
            self.take()
            inner = self.parse_not()
            return lambda r: not inner(r)
        return self.parse_atom()

    def parse_atom(self) -> Predicate:
        piece = self.peek()
        if piece is None:
            raise self.fail("a term is missing at the end")
        kind, text = self.take()
        if kind == "open":
            inner = self.parse_or()
            if self.peek() is None or self.peek()[0] != "close":  # type: ignore[index]
                raise self.fail("a ')' is missing")
            self.take()
            return inner
        if kind == "close":
            raise self.fail("unexpected ')'")
        if kind == "quoted":
            return _term(None, text)
        if text in ("AND", "OR"):
            raise self.fail(f"{text} needs a term on each side")
        key, colon, value = text.partition(":")
        if colon and key.lower() in (*TEXT_KEYS, *NUMERIC_KEYS):
            if not value:
                following = self.peek()
                if following is None or following[0] != "quoted":
                    raise self.fail(f"{key}: needs a value")
                value = self.take()[1]
            return _term(key.lower(), value)
        return _term(None, text)


def compile_filter(text: str) -> Predicate:
    """The predicate of a filter (``OptionsError`` naming the problem for a malformed one);
    an empty filter matches everything."""
    return _Parser(text or "").parse()
