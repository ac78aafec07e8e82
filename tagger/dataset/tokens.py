"""Caption length in CLIP tokens: what Stable Diffusion's text encoder sees (75 per chunk).

The count is exactly that of CLIP's byte-pair tokenizer (OpenAI's ``simple_tokenizer``, which
open_clip ships and transformers' ``CLIPTokenizer`` follows), without the start and end tokens:
the text is cleaned (ftfy when installed, HTML entities unescaped twice, whitespace collapsed,
lower case), split into words by CLIP's pattern, and each word is byte-pair merged by the
merge ranks. Only the number of pieces is needed, so each distinct word is merged once and
remembered: no word spans whitespace, so counting a whole dataset costs a split on whitespace
and a dictionary look-up per chunk.

The merge list is read from open_clip's package (``bpe_simple_vocab_16e6.txt.gz``, without
importing open_clip or torch) or from a cached ``openai/clip-vit-large-patch14`` tokenizer (the
one the webui's Stable Diffusion models load). Without either, ``estimate_tokens`` counts the
words and punctuation runs: a lower bound, reported as an estimate.
"""

from __future__ import annotations

import functools
import gzip
import html
import importlib.util
import itertools
import logging
import operator
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger("tagger")

#: Tokens one chunk of a Stable Diffusion prompt holds (77 less the start and end tokens).
CLIP_TOKEN_LIMIT = 75
#: The number of merges CLIP uses (49152 - 256 - 2 lines after the header of the file).
MERGE_COUNT = 49152 - 256 - 2
_OPEN_CLIP_FILE = "bpe_simple_vocab_16e6.txt.gz"
_HF_REPO = "openai/clip-vit-large-patch14"
_ASCII_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+"
_UNICODE_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@functools.lru_cache(maxsize=1)
def byte_alphabet() -> tuple[str, ...]:
    """CLIP's (and GPT-2's) printable stand-in for each of the 256 byte values.

    >>> alphabet = byte_alphabet(); alphabet[ord("a")], alphabet[ord(" ")], len(set(alphabet))
    ('a', 'Ġ', 256)
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return tuple(table[b] for b in range(256))


def find_merges_file() -> Path | None:
    """CLIP's merge list on this machine: open_clip's packaged file, else a cached
    ``openai/clip-vit-large-patch14`` ``merges.txt``; None when neither is there."""
    spec = importlib.util.find_spec("open_clip")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            path = Path(folder) / _OPEN_CLIP_FILE
            if path.is_file():
                return path
    if importlib.util.find_spec("huggingface_hub") is not None:
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(_HF_REPO, "merges.txt")
        except Exception:  # a cache that cannot be read is no cache
            found = None
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def read_merges(path: str | os.PathLike[str]) -> dict[tuple[str, str], int]:
    """The merge ranks of a merge file (gzip or plain; its first line is a header)."""
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:  # type: ignore[operator]
        lines = handle.read().split("\n")
    pairs = (line.split() for line in lines[1 : MERGE_COUNT + 1])
    return {(p[0], p[1]): rank for rank, p in enumerate(pairs) if len(p) == 2}


def bpe_length(word: str, ranks: dict[tuple[str, str], int]) -> int:
    """How many pieces byte-pair merging leaves of one word (already in the byte alphabet):
    the pair of lowest rank is merged everywhere, again and again, until none is left.

    >>> ranks = {("l", "o"): 0, ("lo", "w</w>"): 1}
    >>> bpe_length("low", ranks), bpe_length("lot", ranks), bpe_length("x", ranks)
    (1, 2, 1)
    """
    symbols = [*word[:-1], word[-1] + "</w>"]
    while len(symbols) > 1:
        best = None
        best_rank = None
        for pair in itertools.pairwise(symbols):
            rank = ranks.get(pair)
            if rank is not None and (best_rank is None or rank < best_rank):
                best, best_rank = pair, rank
        if best is None:
            break
        first, second = best
        merged: list[str] = []
        i = 0
        while i < len(symbols):
            if i < len(symbols) - 1 and symbols[i] == first and symbols[i + 1] == second:
                merged.append(first + second)
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return len(symbols)


def clean_text(text: str) -> str:
    """CLIP's text cleaning: ftfy (when installed, and only where it can change something),
    HTML entities unescaped twice, whitespace collapsed, lower case.

    >>> clean_text("  Long &amp;amp; HAIR\\n")
    'long & hair'
    """
    if not text.isascii() or _CONTROL.search(text):
        try:
            import ftfy
        except ImportError:
            pass
        else:
            text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).strip().lower()


def is_plain(text: str) -> bool:
    """Whether CLIP's cleaning only lower-cases ``text`` and collapses its whitespace: ASCII
    with no control character (ftfy's domain) and no ``&`` (HTML entities).

    >>> is_plain("long hair, 1girl"), is_plain("café"), is_plain("&amp;"), is_plain("a\\x0b")
    (True, False, False, False)
    """
    return text.isascii() and "&" not in text and not _CONTROL.search(text)


#: Tags whose counts ``count_joined`` remembers before it starts again.
_REMEMBERED_TAGS = 1 << 17


class _JoinedCounts:
    """``count_joined``: token counts of many tag lists from each distinct tag's count."""

    def __init__(self) -> None:
        # the separator's part before its final whitespace, and for each tag seen: its count
        # followed by that part (-1: not plain), and its count alone
        self._tail: str | None = None
        self._pieces: dict[str, int] = {}
        self._lasts: dict[str, int] = {}

    def count(self, text: str) -> int:
        """CLIP tokens of a text (each counter's own)."""
        raise NotImplementedError

    def count_joined(self, tag_lists: Sequence[list[str]], separator: str) -> list[int]:
        """``[self.count(separator.join(tags)) for tags in tag_lists]``, counting each
        distinct tag once.

        No word of CLIP's pattern spans whitespace, so where the separator ends with
        whitespace, ``a, b, c`` counts as ``"a,"`` + ``"b,"`` + ``"c"``; and where each such
        piece is plain (``is_plain``), cleaning the whole text cleans each piece alone. A
        caption's count is then a sum of remembered counts, and the tags of all the lists
        are looked up in one pass. A caption with a tag that is not plain is counted whole.
        """
        tail = separator.rstrip()
        if not separator[-1:].isspace() or not is_plain(separator):
            return [self.count(separator.join(tags)) for tags in tag_lists]
        if tail != self._tail or len(self._pieces) > _REMEMBERED_TAGS:
            self._tail, self._pieces, self._lasts = tail, {}, {}
        pieces, lasts = self._pieces, self._lasts
        flat = list(itertools.chain.from_iterable(tag_lists))
        values = list(map(pieces.get, flat))
        if None in values:
            for i, tag in enumerate(flat):
                if values[i] is None:
                    piece = tag + tail
                    value = pieces[tag] = self.count(piece) if is_plain(piece) else -1
                    values[i] = value
        if not all(tag_lists) or -1 in values:  # an empty list, or a tag that is not plain
            return self._count_each(tag_lists, separator, values)
        # the sum of each list's pieces, less its last one's, plus its last tag alone (the
        # last tag has no separator after it): a few passes over all the lists at once
        ends = list(itertools.accumulate(map(len, tag_lists)))
        sums = list(itertools.accumulate(values, initial=0))
        totals = map(
            operator.sub, map(sums.__getitem__, ends), map(sums.__getitem__, [0, *ends[:-1]])
        )
        last_tags = list(map(operator.itemgetter(-1), tag_lists))
        alone = list(map(lasts.get, last_tags))
        if None in alone:
            alone = [self._alone(tag) for tag in last_tags]
        last_pieces = map(pieces.__getitem__, last_tags)
        return list(map(operator.add, map(operator.sub, totals, last_pieces), alone))

    def _alone(self, tag: str) -> int:
        """A tag's count (remembered)."""
        count = self._lasts.get(tag)
        if count is None:
            count = self._lasts[tag] = self.count(tag)
        return count

    def _count_each(
        self, tag_lists: Sequence[list[str]], separator: str, values: list[int]
    ) -> list[int]:
        """``count_joined`` list by list, from the pieces' ``values`` (-1: not plain)."""
        counts: list[int] = []
        start = 0
        for tags in tag_lists:
            end = start + len(tags)
            if not tags:
                counts.append(self.count(""))
            elif -1 in values[start:end]:
                counts.append(self.count(separator.join(tags)))  # counted whole
            else:
                last = tags[-1]
                counts.append(sum(values[start:end]) - self._pieces[last] + self._alone(last))
            start = end
        return counts


class ClipTokenCounter(_JoinedCounts):
    """Counts CLIP tokens exactly (``count``), remembering each distinct word's length."""

    exact = True

    def __init__(self, ranks: dict[tuple[str, str], int], source: str = "") -> None:
        super().__init__()
        self.ranks = ranks
        self.source = source
        self._lengths: dict[str, int] = {}
        self._chunks: dict[str, int] = {}
        self._ascii = re.compile(_ASCII_PATTERN)
        try:
            import regex
        except ImportError:
            self._unicode: Callable[[str], list[str]] | None = None
        else:
            self._unicode = regex.compile(_UNICODE_PATTERN, regex.IGNORECASE).findall
        self._alphabet = byte_alphabet()

    def words(self, text: str) -> list[str]:
        """The cleaned text split into CLIP's words."""
        cleaned = clean_text(text)
        if cleaned.isascii() or self._unicode is None:
            return self._ascii.findall(cleaned)
        return self._unicode(cleaned)

    def word_length(self, word: str) -> int:
        """The tokens of one word (remembered)."""
        length = self._lengths.get(word)
        if length is None:
            encoded = "".join(self._alphabet[b] for b in word.encode("utf-8"))
            length = bpe_length(encoded, self.ranks)
            self._lengths[word] = length
        return length

    def count(self, text: str) -> int:
        """CLIP tokens of a caption, without the start and end tokens.

        No word of CLIP's pattern spans whitespace, so the count is the sum over the
        whitespace-separated chunks of the cleaned text, and each distinct chunk is counted once.
        """
        # what cleaning leaves of plain text is the text in lower case
        text = text.lower() if is_plain(text) else clean_text(text)
        chunks = text.split()
        lengths = list(map(self._chunks.get, chunks))
        if None in lengths:  # words not seen before: count them once
            for i, chunk in enumerate(chunks):
                if lengths[i] is None:
                    length = sum(self.word_length(word) for word in self.words(chunk))
                    self._chunks[chunk] = length
                    lengths[i] = length
        return sum(lengths)  # type: ignore[arg-type]


class EstimatedTokenCounter(_JoinedCounts):
    """A lower bound when no CLIP merge list is available: one token per word, number and run
    of punctuation (long or rare words take several tokens in CLIP)."""

    exact = False
    source = "estimate (no CLIP tokenizer found: install open_clip_torch for exact counts)"

    def __init__(self) -> None:
        super().__init__()
        self._ascii = re.compile(_ASCII_PATTERN)

    def count(self, text: str) -> int:
        """Words, digits and punctuation runs of the cleaned text."""
        return len(self._ascii.findall(clean_text(text)))


TokenCounter = ClipTokenCounter | EstimatedTokenCounter


@functools.lru_cache(maxsize=1)
def token_counter() -> TokenCounter:
    """The best counter available here (built once)."""
    path = find_merges_file()
    if path is None:
        log.info("no CLIP merge list found; caption token counts are estimates")
        return EstimatedTokenCounter()
    return ClipTokenCounter(read_merges(path), source=str(path))
