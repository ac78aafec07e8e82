"""Counting the tags of many captions at once, over their bytes.

A statistics pass reads millions of captions. Split into Python strings, each tag costs a
string, a hash and several dictionary updates; counted here, a batch of captions costs a
few NumPy passes over its bytes, and only a tag never seen before becomes a string.

The byte-wise count takes captions written the way tagger writes them: printable ASCII tags
joined by a one-character separator and one space (``", "``), nothing around them but spaces,
tabs and line breaks (``counts``). Anything else returns None, and the caller counts the batch
as strings; so does a batch where two different tags happen to hash alike: every tag is
compared with its group's first tag and with the vocabulary's copy, byte for byte, so a hash
only ever decides how fast a count is, never what it is.

Each tag is keyed by its bytes in 8-byte words (``WORDS`` of them at most: tags up to
``LONGEST`` bytes); the words are read straight from the joined captions at each tag's
start and masked to its length, so a tag's key costs a few gathers, not a loop over its bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from tagger.dataset.tokens import TokenCounter

#: The longest tag (in bytes) counted byte-wise, in 8-byte words.
WORDS = 16
LONGEST = 8 * WORDS
#: Low bits of a tag's hash that grouping replaces with the tag's position (so one sort groups
#: equal hashes, first occurrence first): a batch counted byte-wise has fewer tags than this.
INDEX_BITS = 20
#: A tag's token counts before they are needed.
UNCOUNTED = -2
#: What may surround a caption's tags (as ``tagger.dataset.reader.split_tags_many`` strips).
LAYOUT = b" \t\n"
_PRINTABLE = bytes(range(0x20, 0x7F))
_MASK64 = (1 << 64) - 1
_MIX = 0x9E3779B97F4A7C15  # the 64-bit golden ratio


def _splitmix(x: int) -> int:
    """SplitMix64's output for state ``x``: well-mixed 64-bit constants.

    >>> hex(_splitmix(0))
    '0xe220a8397b1dcdaf'
    """
    z = (x + _MIX) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


#: One odd multiplier per word of a tag's key.
_MULTIPLIERS = [_splitmix(j) | 1 for j in range(WORDS)]
_SPACE = 0x20
_NEWLINE = 0x0A


def byte_separator(separator: str) -> int | None:
    """The separator's one character where captions joined by it can be counted byte-wise:
    one printable ASCII character other than a space, and one space after it (``", "``).

    >>> byte_separator(", "), byte_separator(" | "), byte_separator(","), byte_separator("& ")
    (44, None, None, None)
    """
    if len(separator) != 2 or separator[1] != " ":
        return None
    core = ord(separator[0])
    if not 0x20 < core < 0x7F or separator[0] == "&":  # "&" makes CLIP's cleaning unplain
        return None
    return core


class Vocabulary:
    """The tags of one pass, each numbered in the order first seen: its name (one string
    shared by every counter of the pass), its CLIP token counts (followed by the separator's
    character, and alone) and, once counted byte-wise, its hash and key words (tags only ever
    counted as strings take no key)."""

    def __init__(self, counter: TokenCounter, separator: str) -> None:
        import numpy as np

        self.counter = counter
        self.tail = separator.rstrip()
        self.names: list[str] = []
        self.ids: dict[str, int] = {}
        #: the hashes of the tags counted byte-wise at least once, ascending, with each tag's
        #: number and the row of its key in ``words`` (rows in the order the tags came)
        self.hashes = np.zeros(0, np.uint64)
        self.hashed = np.zeros(0, np.intp)
        self.rows = np.zeros(0, np.intp)
        self.words = np.zeros((256, 1), np.uint64)
        self.keys = 0
        #: token counts, ``UNCOUNTED`` until the byte-wise count needs them
        self.pieces = np.full(256, UNCOUNTED, np.int64)
        self.alone = np.full(256, UNCOUNTED, np.int64)

    def __len__(self) -> int:
        return len(self.names)

    def add(self, name: str) -> int:
        """The number of a tag new to the vocabulary."""
        import numpy as np

        number = len(self.names)
        if number == len(self.pieces):
            self.pieces = np.concatenate((self.pieces, np.full(number, UNCOUNTED, np.int64)))
            self.alone = np.concatenate((self.alone, np.full(number, UNCOUNTED, np.int64)))
        self.names.append(name)
        self.ids[name] = number
        return number

    def count_tokens(self, numbers: Sequence[int]) -> None:
        """Count the tokens of tags (``UNCOUNTED`` so far): followed by the separator's
        character (-1 where that is not plain: its captions are counted whole), and alone."""
        from tagger.dataset.tokens import is_plain

        count = self.counter.count
        for number in numbers:
            name = self.names[number]
            piece = name + self.tail
            self.pieces[number] = count(piece) if is_plain(piece) else -1
            self.alone[number] = count(name)

    def numbers(self, names: Sequence[str]) -> tuple[list[int], list[int]]:
        """The number of each name, and the positions of the names new to the vocabulary
        (numbered in that order; a name repeated after its first position is not new)."""
        numbers: list[Any] = list(map(self.ids.get, names))
        new: list[int] = []
        if None in numbers:
            for position, number in enumerate(numbers):
                if number is None:
                    known = self.ids.get(names[position])
                    if known is None:
                        known = self.add(names[position])
                        new.append(position)
                    numbers[position] = known
        return numbers, new

    def find(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The number of the tag of each hash and the row of its key in ``words`` (-1 and -1
        where no tag has that hash)."""
        import numpy as np

        if not len(self.hashes):
            none = np.full(len(hashes), -1, np.intp)
            return none, none
        at = np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)
        found = self.hashes[at] == hashes
        return np.where(found, self.hashed[at], -1), np.where(found, self.rows[at], -1)

    def remember(self, hashes: np.ndarray, numbers: np.ndarray, keys: np.ndarray) -> None:
        """Take the hashes of tags new to ``find``, their numbers and their keys (a row of
        words each)."""
        import numpy as np

        end = self.keys + len(hashes)
        if end > len(self.words):
            grow = max(end, 2 * len(self.words)) - len(self.words)
            more = np.zeros((grow, self.words.shape[1]), np.uint64)
            self.words = np.concatenate((self.words, more))
        self.widen(keys.shape[1])
        self.words[self.keys : end, : keys.shape[1]] = keys
        rows = np.arange(self.keys, end, dtype=np.intp)
        self.keys = end
        merged = np.concatenate((self.hashes, hashes))
        order = np.argsort(merged)
        self.hashes = merged[order]
        self.hashed = np.concatenate((self.hashed, numbers))[order]
        self.rows = np.concatenate((self.rows, rows))[order]

    def widen(self, width: int) -> None:
        """Room for keys of ``width`` words."""
        import numpy as np

        have = self.words.shape[1]
        if width > have:
            extra = np.zeros((len(self.words), width - have), np.uint64)
            self.words = np.concatenate((self.words, extra), axis=1)


@dataclass
class Tally:
    """What ``counts`` found in a batch of captions (arrays are NumPy's)."""

    #: The distinct tags' numbers in order of first occurrence, and the captions each is on.
    numbers: np.ndarray
    counts: np.ndarray
    #: The tags new to the vocabulary (their numbers) and the caption each first occurs in.
    new: list[int]
    first: list[int]
    #: Per caption: tags (a repeated tag counted each time) and CLIP tokens.
    tags: np.ndarray
    tokens: np.ndarray
    #: Captions with a tag written more than once, ascending.
    repeated: list[int]
    #: Every tag as written, in order: its number and its caption.
    each: np.ndarray
    caption: np.ndarray


def _keys(buffer: bytes, starts: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """Each tag's bytes as ``width`` little-endian words (zero past its end): tags are
    printable, never a zero byte, so equal words are equal tags. ``buffer`` has at least
    ``8 * width`` bytes after every tag's start."""
    import numpy as np

    # every byte offset of the buffer as the start of a word: the view costs nothing
    view = np.ndarray((len(buffer) - 7,), dtype="<u8", buffer=buffer, strides=(1,))
    masks = np.array([(1 << (8 * n)) - 1 for n in range(9)], dtype=np.uint64)
    words = np.empty((width, len(starts)), np.uint64)
    for j in range(width):
        np.bitwise_and(view[starts + 8 * j], masks[np.clip(lengths - 8 * j, 0, 8)], out=words[j])
    return words


def _hashes(words: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each key (column of ``words``): a sum of its words, each times its
    own multiplier (so zero words past a tag's end change nothing), then mixed so that every
    bit of the key reaches the high bits ``_group`` sorts on."""
    import numpy as np

    h = np.zeros(words.shape[1], np.uint64)
    for j in range(words.shape[0]):
        h += words[j] * np.uint64(_MULTIPLIERS[j])
    h ^= h >> np.uint64(31)
    h *= np.uint64(_MIX)
    h ^= h >> np.uint64(29)
    return h


def _group(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tags grouped by the high bits of their hash: each tag's group, and each group's first
    tag, groups numbered in order of their first tag."""
    import numpy as np

    count = len(h)
    low = np.uint64((1 << INDEX_BITS) - 1)
    keyed = np.sort((h & ~low) | np.arange(count, dtype=np.uint64))
    order = (keyed & low).astype(np.intp)
    high = keyed >> np.uint64(INDEX_BITS)
    starts = np.empty(count, bool)
    starts[0] = True
    np.not_equal(high[1:], high[:-1], out=starts[1:])
    firsts = order[starts]  # ascending positions within a group: its first tag first
    rank = np.argsort(firsts)
    relabel = np.empty(len(firsts), np.intp)
    relabel[rank] = np.arange(len(firsts))
    group = np.empty(count, np.intp)
    group[order] = relabel[np.cumsum(starts) - 1]
    return group, firsts[rank]


def counts(datas: Sequence[bytes], vocabulary: Vocabulary, core: int) -> Tally | None:
    """Count a batch of caption files byte-wise (see the module), adding its new tags to
    ``vocabulary``; None where a caption is not written the way this takes (count it as
    strings instead). ``core`` is ``byte_separator``'s character."""
    import numpy as np

    stripped = [data.strip(LAYOUT) for data in datas]
    blob = b"\n".join(stripped)
    captions = len(stripped)
    if blob.translate(None, _PRINTABLE) != b"\n" * (captions - 1):  # one line each, printable
        return None
    buffer = blob + b"\n" + bytes(LONGEST + 8)
    size = len(blob) + 1
    chars = np.frombuffer(buffer, np.uint8, count=size)
    ends = np.flatnonzero((chars == core) | (chars == _NEWLINE))  # where each tag ends
    is_line = chars[ends] == _NEWLINE
    cores = ends[~is_line]
    if len(cores) and (
        cores[0] == 0
        or (chars[cores + 1] != _SPACE).any()  # the core, one space, then a tag
        or (chars[cores + 2] == _SPACE).any()
        or np.isin(chars[cores - 1], (_SPACE, _NEWLINE)).any()  # after a tag
    ):
        return None
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + np.where(is_line[:-1], 1, 2)  # past a line break, or ", "
    caption = np.concatenate(([0], np.cumsum(is_line[:-1])))
    lengths = ends - starts
    if not lengths.all():  # empty captions: no tags
        keep = lengths > 0
        starts, ends, lengths, caption = starts[keep], ends[keep], lengths[keep], caption[keep]
    tags = np.bincount(caption, minlength=captions)
    total = len(starts)
    if not total:
        none = np.zeros(0, np.intp)
        return Tally(none, none, [], [], tags, tags.copy(), [], none, none)
    longest = int(lengths.max())
    if longest > LONGEST or total >= 1 << INDEX_BITS:
        return None
    width = (longest + 7) // 8
    words = _keys(buffer, starts, lengths, width)
    h = _hashes(words)
    group, firsts = _group(h)
    first_of = firsts[group]
    for row in words:  # row by row: no copy of all the keys at once
        if (row[first_of] != row).any():  # unequal tags in one group
            return None
    vocabulary.widen(width)
    numbers, rows = vocabulary.find(h[firsts])
    known = numbers >= 0
    stored = vocabulary.words[rows[known]]
    if (stored[:, :width] != words[:, firsts[known]].T).any() or stored[:, width:].any():
        return None  # a tag hashed like another one of the vocabulary
    new: list[int] = []
    seen_on: list[int] = []
    if not known.all():
        unknown = np.flatnonzero(~known)
        for g in unknown.tolist():
            first = int(firsts[g])
            name = blob[starts[first] : ends[first]].decode("ascii")
            number = vocabulary.ids.get(name)  # counted as a string before
            if number is None:
                number = vocabulary.add(name)
                new.append(number)
                seen_on.append(int(caption[first]))
            numbers[g] = number
        vocabulary.remember(h[firsts[unknown]], numbers[unknown], words[:, firsts[unknown]].T)
    distinct = len(firsts)
    pairs = np.sort(caption * distinct + group)
    twice = pairs[1:] == pairs[:-1]
    repeated: list[int] = []
    if twice.any():
        repeated = np.unique(pairs[1:][twice] // distinct).tolist()
        once = np.concatenate(([True], ~twice))
        on = np.bincount(pairs[once] % distinct, minlength=distinct)
    else:
        on = np.bincount(group, minlength=distinct)
    each = numbers[group]
    tokens = _tokens(vocabulary, each, caption, tags, stripped)
    return Tally(numbers, on, new, seen_on, tags, tokens, repeated, each, caption)


def _tokens(
    vocabulary: Vocabulary,
    numbers: np.ndarray,
    caption: np.ndarray,
    tags: np.ndarray,
    stripped: Sequence[bytes],
) -> np.ndarray:
    """Each caption's CLIP tokens: the sum of its tags' counts followed by the separator's
    character, less the last one's, plus the last tag alone (``count_joined``'s sum, for
    every caption at once); a caption with a tag that is not plain is counted whole."""
    import numpy as np

    tokens = np.zeros(len(tags), np.int64)
    pieces = vocabulary.pieces[numbers]
    if (pieces == UNCOUNTED).any():
        vocabulary.count_tokens(np.unique(numbers[pieces == UNCOUNTED]).tolist())
        pieces = vocabulary.pieces[numbers]
    firsts = np.flatnonzero(np.concatenate(([True], caption[1:] != caption[:-1])))
    lasts = np.concatenate((firsts[1:], [len(numbers)])) - 1
    sums = np.add.reduceat(pieces, firsts)
    tokens[caption[firsts]] = sums - pieces[lasts] + vocabulary.alone[numbers[lasts]]
    if (pieces < 0).any():
        count = vocabulary.counter.count
        for c in np.unique(caption[pieces < 0]).tolist():
            tokens[c] = count(stripped[c].decode("ascii"))
    return tokens
