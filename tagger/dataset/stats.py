"""Statistics of a dataset's captions, in one streaming pass.

What a dataset builder looks at first: how often each tag occurs (over the dataset and per
folder), which tags occur together with a given tag and on which images, how long the captions
are in CLIP tokens (Stable Diffusion reads 75 per chunk: longer captions are cut or split),
which images have no tags, which tags occur only once (typos, one-off tags a model cannot learn)
and which tags are written several ways (``long_hair`` and ``long hair``).

Memory stays flat with the number of files: the pass keeps counters over the tag vocabulary and
a bounded number of example paths for each finding (``examples``), never a record per file.
Captions are read by a few threads a little ahead of the parsing (a disk answers several reads
at once) and decoded strictly, as ``tagger.safeio.read_text_file`` does. Batches written the way
tagger writes captions are counted over their bytes (``tagger.dataset.tally``), any other batch
as strings; both number the tags in one vocabulary and count them in arrays over it, so the
results are the same either way.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tagger.dataset.reader import (
    DEFAULT_EXTENSION,
    DEFAULT_SEPARATOR,
    Entry,
    iter_entries,
    split_tags_many,
)
from tagger.dataset.tally import Tally, Vocabulary, byte_separator
from tagger.dataset.tally import counts as tally_counts
from tagger.dataset.tokens import CLIP_TOKEN_LIMIT, token_counter
from tagger.errors import OutputError
from tagger.safeio import UTF8_BOM, decode_body, read_many_nofollow, sniff_style
from tagger.tags import normalize_tag

if TYPE_CHECKING:
    import numpy as np

#: Example paths kept per finding unless told otherwise.
DEFAULT_EXAMPLES = 20


@dataclass
class Examples:
    """A count and the first ``limit`` examples of a finding."""

    limit: int
    count: int = 0
    items: list[Any] = field(default_factory=list)

    def add(self, item: Any) -> None:
        """Count one more; keep it while there is room."""
        self.count += 1
        if self.limit < 0 or len(self.items) < self.limit:
            self.items.append(item)

    def extend(self, count: int, items: Iterable[Any]) -> None:
        """Count ``count`` more, keeping the first of ``items`` while there is room (only
        those are taken from it: an example can cost something to make).

        >>> e = Examples(2); e.extend(3, iter("abc")); e.count, e.items
        (3, ['a', 'b'])
        """
        self.count += count
        room = count if self.limit < 0 else min(count, self.limit - len(self.items))
        if room > 0:
            self.items.extend(itertools.islice(items, room))

    def to_dict(self) -> dict[str, Any]:
        """``{"count", "examples"}``."""
        return {"count": self.count, "examples": list(self.items)}


@dataclass
class DatasetStats:
    """The statistics of one pass (``dataset_stats``)."""

    examples: int = DEFAULT_EXAMPLES
    token_limit: int = CLIP_TOKEN_LIMIT
    images: int = 0
    captioned: int = 0
    sidecars: int = 0
    #: Images per tag (a tag repeated in one caption counts once), as written.
    tag_images: Counter[str] = field(default_factory=Counter)
    #: The same per folder (relative to the dataset root, "" for the root).
    folders: dict[str, Counter[str]] = field(default_factory=dict)
    folder_images: Counter[str] = field(default_factory=Counter)
    #: Captions by their CLIP token count, and by their number of tags.
    token_lengths: Counter[int] = field(default_factory=Counter)
    tag_lengths: Counter[int] = field(default_factory=Counter)
    #: For each tag asked about: the tags on the same images, and those images.
    cooccurrence: dict[str, Counter[str]] = field(default_factory=dict)
    tag_examples: dict[str, Examples] = field(default_factory=dict)
    first_seen: dict[str, str] = field(default_factory=dict)
    untagged: Examples = field(default_factory=lambda: Examples(DEFAULT_EXAMPLES))
    over_limit: Examples = field(default_factory=lambda: Examples(DEFAULT_EXAMPLES))
    repeated: Examples = field(default_factory=lambda: Examples(DEFAULT_EXAMPLES))
    orphans: Examples = field(default_factory=lambda: Examples(DEFAULT_EXAMPLES))
    unreadable: Examples = field(default_factory=lambda: Examples(DEFAULT_EXAMPLES))
    shared: Examples = field(default_factory=lambda: Examples(DEFAULT_EXAMPLES))
    token_counter: str = ""
    tokens_exact: bool = True

    def __post_init__(self) -> None:
        for name in ("untagged", "over_limit", "repeated", "orphans", "unreadable", "shared"):
            getattr(self, name).limit = self.examples

    # -- derived ---------------------------------------------------------------------------------
    def once(self) -> list[tuple[str, str]]:
        """Tags on exactly one image, with that image, in the order they were first seen."""
        return [(tag, self.first_seen[tag]) for tag, n in self.tag_images.items() if n == 1]

    def variants(self) -> dict[str, list[str]]:
        """Tags written in more than one way (case, ``_`` or space), by their normalized form.

        >>> s = DatasetStats(); s.tag_images.update(["long_hair", "long hair", "solo"])
        >>> s.variants()
        {'long hair': ['long hair', 'long_hair']}
        """
        forms: dict[str, list[str]] = {}
        for tag in self.tag_images:
            forms.setdefault(normalize_tag(tag), []).append(tag)
        return {key: sorted(found) for key, found in sorted(forms.items()) if len(found) > 1}

    def length_histogram(self, width: int = 5) -> list[tuple[int, int]]:
        """Captions per token-count bin ``[start, start + width)``, ascending.

        >>> s = DatasetStats(); s.token_lengths.update([3, 4, 7, 80])
        >>> s.length_histogram(5)
        [(0, 2), (5, 1), (80, 1)]
        """
        bins: Counter[int] = Counter()
        for length, n in self.token_lengths.items():
            bins[length // width * width] += n
        return sorted(bins.items())

    def to_dict(self, top: int = 0) -> dict[str, Any]:
        """Everything as plain JSON values; ``top`` > 0 keeps only the most frequent tags."""
        frequency = self.tag_images.most_common(top or None)
        return {
            "images": self.images,
            "captioned": self.captioned,
            "sidecars": self.sidecars,
            "unique_tags": len(self.tag_images),
            "tag_total": sum(self.tag_images.values()),
            "frequency": [[tag, n] for tag, n in frequency],
            "per_folder": {
                folder: {
                    "images": self.folder_images[folder],
                    "frequency": [[t, n] for t, n in counts.most_common(top or None)],
                }
                for folder, counts in sorted(self.folders.items())
            },
            "cooccurrence": {
                tag: {
                    "images": self.tag_examples[tag].to_dict(),
                    "with": [[t, n] for t, n in counts.most_common(top or None)],
                }
                for tag, counts in self.cooccurrence.items()
            },
            "tokens": {
                "counter": self.token_counter,
                "exact": self.tokens_exact,
                "limit": self.token_limit,
                "histogram": [[start, n] for start, n in self.length_histogram()],
                "over_limit": self.over_limit.to_dict(),
            },
            "tags_per_image": [[n, c] for n, c in sorted(self.tag_lengths.items())],
            "untagged": self.untagged.to_dict(),
            "once": {
                "count": sum(1 for n in self.tag_images.values() if n == 1),
                "examples": [
                    [t, p] for t, p in self.once()[: self.examples if self.examples >= 0 else None]
                ],
            },
            "variants": self.variants(),
            "repeated_tags": self.repeated.to_dict(),
            "orphan_captions": self.orphans.to_dict(),
            "unreadable_captions": self.unreadable.to_dict(),
            "shared_captions": self.shared.to_dict(),
        }


#: Threads reading caption files ahead of the parsing (a disk serves several reads at once),
#: each a batch of at most ``BATCH`` files of one folder, at most ``AHEAD`` batches early.
READERS = 4
BATCH = 256
AHEAD = 8
#: A caption read faster than this came from the page cache.
CACHED_SECONDS = 40e-6

#: What reading a caption gave: its bytes, None (no caption to read, or gone), or the error.
Read = bytes | OutputError | OSError | None


def _folder_batches(entries: Iterable[Entry]) -> Iterator[list[Entry]]:
    """Consecutive entries in lists of at most ``BATCH``, each list of one folder (an entry
    the walk did not place in a folder of its root is a list of its own)."""
    batch: list[Entry] = []
    root: str | None = None
    folder: str | None = None
    for entry in entries:
        if batch and (
            len(batch) >= BATCH
            or entry.rel_folder is None
            or entry.rel_folder != folder
            or entry.root != root
        ):
            yield batch
            batch = []
        if not batch:
            root, folder = entry.root, entry.rel_folder
        batch.append(entry)
    if batch:
        yield batch


def _read_batch(batch: list[Entry]) -> list[Read]:
    """The caption of each entry of one folder's batch (None where there is none to read)."""
    folder = os.path.dirname(batch[0].caption)  # noqa: PTH120 (paths stay strings here)
    cut = len(folder) if folder.endswith(os.sep) else len(folder) + 1
    names = [e.caption[cut:] if e.has_caption and e.image else None for e in batch]
    return read_many_nofollow(folder, names)


def read_ahead(entries: Iterable[Entry]) -> Iterator[tuple[list[Entry], list[Read]]]:
    """The entries in batches of one folder (``_folder_batches``), each with what reading
    their captions gave (``Read``).

    The first batch is read here and timed: files that come from the page cache (faster than
    ``CACHED_SECONDS`` each) are read here, batch by batch, files that come from the disk by
    reader threads a few batches ahead of the caller (a disk answers several reads at once;
    threads cost more than they save on cached files).
    """
    from concurrent.futures import ThreadPoolExecutor

    batches = _folder_batches(entries)
    first = next(batches, None)
    if first is None:
        return
    start = time.perf_counter()
    reads = _read_batch(first)
    elapsed = time.perf_counter() - start
    yield first, reads
    wanted = sum(e.has_caption and bool(e.image) for e in first)
    if not wanted or elapsed / wanted < CACHED_SECONDS:
        for batch in batches:
            yield batch, _read_batch(batch)
        return
    window: deque[tuple[list[Entry], Future[list[Read]]]] = deque()
    with ThreadPoolExecutor(READERS, thread_name_prefix="tagger-read") as pool:
        while True:
            batch = next(batches, None)
            if batch is not None:
                window.append((batch, pool.submit(_read_batch, batch)))
            if window and (batch is None or len(window) > AHEAD):
                done, reading = window.popleft()
                yield done, reading.result()
            if batch is None and not window:
                return


def decode_captions(datas: list[bytes], entries: list[Entry]) -> list[str | OutputError]:
    """The text of each caption (``decode_body``), or its decoding error: files without a
    byte order mark or carriage return, the usual ones, are decoded in one pass."""
    blob = b"".join(datas)
    if b"\r" not in blob and UTF8_BOM not in blob:
        try:
            return list(map(bytes.decode, datas))
        except UnicodeDecodeError:
            pass  # one of them is not UTF-8: which one, and the error that names it, below
    texts: list[str | OutputError] = []
    for data, entry in zip(datas, entries, strict=True):
        try:
            texts.append(decode_body(data, sniff_style(data), entry.caption))
        except OutputError as exc:
            texts.append(exc)
    return texts


class _Counts:
    """What a ``Counter`` keyed by tag would hold, over the pass's tag numbers: a count per
    number and the numbers in order of first sight (NumPy arrays: a batch's counts are
    added in a few array operations, not one dictionary update per tag)."""

    def __init__(self) -> None:
        import numpy as np

        self.table = np.zeros(256, np.int64)
        self.order: list[np.ndarray] = []

    def _room(self, size: int) -> None:
        """A count for each of ``size`` numbers."""
        import numpy as np

        if len(self.table) < size:
            more = max(size, 2 * len(self.table)) - len(self.table)
            self.table = np.concatenate((self.table, np.zeros(more, np.int64)))

    def add(self, numbers: np.ndarray, counts: np.ndarray, size: int) -> None:
        """Add ``counts`` to ``numbers`` (distinct, in order of first sight; all below
        ``size``)."""
        self._room(size)
        fresh = numbers[self.table[numbers] == 0]
        if len(fresh):
            self.order.append(fresh)
        self.table[numbers] += counts

    def add_each(self, numbers: np.ndarray, size: int) -> None:
        """Count each of ``numbers`` (in order of sight, repeats counted each time)."""
        import numpy as np

        self._room(size)
        fresh = self.table[numbers] == 0
        if fresh.any():
            new, at = np.unique(numbers[fresh], return_index=True)
            self.order.append(new[np.argsort(at)])
        found, times = np.unique(numbers, return_counts=True)
        self.table[found] += times

    def load(self, counts: Counter[str], vocabulary: Vocabulary) -> None:
        """Take up a counter's counts again (its tags numbered in ``vocabulary``)."""
        import numpy as np

        if counts:
            numbers, _ = vocabulary.numbers(list(counts))
            values = np.array(list(counts.values()), np.int64)
            self.add(np.array(numbers, np.intp), values, len(vocabulary))

    def take(self, names: Sequence[str]) -> Counter[str]:
        """The counts as a ``Counter`` of ``names`` in order of first sight, and start
        again from nothing."""
        import numpy as np

        order = np.concatenate(self.order) if self.order else np.zeros(0, np.intp)
        counts = self.table[order]
        taken = Counter(
            dict(zip(map(names.__getitem__, order.tolist()), counts.tolist(), strict=True))
        )
        self.table[order] = 0
        self.order = []
        return taken


def _first_each(numbers: np.ndarray, captions: np.ndarray, size: int) -> np.ndarray:
    """``numbers`` (tag numbers below ``size``, each with its caption) with every repeat of
    a number within one caption left out, in order."""
    import numpy as np

    pairs = captions.astype(np.int64) * size + numbers
    if len(pairs) < 1 << 20 and int(pairs.max()) < 1 << 43:  # the position fits beside it
        keyed = np.sort((pairs << 20) | np.arange(len(pairs), dtype=np.int64))
        same = (keyed[1:] >> 20) == (keyed[:-1] >> 20)
        firsts = np.sort(keyed[np.concatenate(([True], ~same))] & ((1 << 20) - 1))
    else:
        firsts = np.sort(np.unique(pairs, return_index=True)[1])
    return numbers[firsts]


class _Pass:
    """The running state of ``dataset_stats``: entries go in in walk order, and every list of
    examples comes out in that order (captions wait in ``pending`` to be counted together,
    and are counted before an entry that adds to a list they could add to)."""

    def __init__(
        self,
        stats: DatasetStats,
        separator: str,
        per_folder: bool,
        cooccurrence: Iterable[str],
    ) -> None:
        import numpy as np

        self.stats = stats
        self.separator = separator
        self.per_folder = per_folder
        self.counter = token_counter()
        stats.token_counter = self.counter.source
        stats.tokens_exact = self.counter.exact
        self.wanted = {normalize_tag(tag): tag for tag in cooccurrence if tag.strip()}
        for key in self.wanted.values():
            stats.cooccurrence[key] = Counter()
            stats.tag_examples[key] = Examples(stats.examples)
        #: For each tag asked about: the images of the tags beside it.
        self.beside = [_Counts() for _ in self.wanted]
        self.folder: str | None = None
        self.pending: list[Entry] = []
        self.pending_data: list[bytes] = []
        #: Every tag of the pass, numbered; captions written tagger's way are counted
        #: byte-wise (``tagger.dataset.tally``).
        self.vocabulary = Vocabulary(self.counter, separator)
        self.core = byte_separator(separator)
        #: Over the vocabulary: which tag asked about each tag is (its place in ``wanted``), -1
        #: for none.
        self.wanted_numbers = np.zeros(0, np.intp)
        #: The folder's images per tag.
        self.folder_counts = _Counts()

    def add_batch(self, entries: list[Entry], reads: list[Read]) -> None:
        """Count the entries of one folder (``read_ahead``'s batches): where all are images
        whose captions were read, the usual case, as a whole."""
        if not entries:
            return
        if self.folder is None or not _all_bytes(reads) or not all(map(_IMAGE, entries)):
            for entry, read in zip(entries, reads, strict=True):
                self.add(entry, read)
            return
        first = entries[0]
        folder = first.folder if self.per_folder else ""
        if folder != self.folder:
            self.add(first, reads[0])  # starts the folder
            entries, reads = entries[1:], reads[1:]
        stats = self.stats
        stats.images += len(entries)
        stats.sidecars += len(entries) - list(map(_SIDECAR, entries)).count(None)
        if any(map(_SHARED, entries)):
            for entry in entries:
                if entry.shared:
                    stats.shared.add(entry.relative)
        stats.folder_images[folder] += len(entries)
        self.pending += entries
        self.pending_data += reads  # type: ignore[arg-type]
        if len(self.pending) >= BATCH:
            self.flush()

    def add(self, entry: Entry, read: Read) -> None:
        """Count one entry and what reading its caption gave."""
        stats = self.stats
        if entry.is_orphan:
            stats.orphans.add(entry.relative)
            return
        stats.images += 1
        if entry.sidecar is not None:
            stats.sidecars += 1
        if entry.shared:
            stats.shared.add(entry.relative)
        folder = entry.folder if self.per_folder else ""
        if folder != self.folder:
            self.flush()
            self.close_folder()
            self.open_folder(folder)
        stats.folder_images[folder] += 1
        if isinstance(read, bytes):
            self.pending.append(entry)
            self.pending_data.append(read)
            if len(self.pending) >= BATCH:
                self.flush()
            return
        self.flush()
        if not entry.has_caption or read is None:  # no caption, or removed since the listing
            stats.untagged.add(entry.relative)
            if not entry.has_caption:
                stats.tag_lengths[0] += 1
        else:
            stats.unreadable.add([entry.relative, str(read)])

    def flush(self) -> None:
        """Count the pending captions (all of one folder): byte-wise where they are written
        tagger's way, else as strings."""
        entries, datas = self.pending, self.pending_data
        if not entries:
            return
        self.pending, self.pending_data = [], []
        if self.core is not None:
            tally = tally_counts(datas, self.vocabulary, self.core)
            if tally is not None:
                self._add_tally(entries, tally)
                if self.wanted:
                    self._cooccurrence(entries, tally.each, tally.caption)
                return
        self._add_strings(entries, datas)

    def _add_tally(self, entries: list[Entry], tally: Tally) -> None:
        """Take what the byte-wise count of the entries' captions found."""
        stats = self.stats
        stats.captioned += len(entries)
        lengths = tally.tags.tolist()
        stats.tag_lengths.update(lengths)
        tokens = tally.tokens.tolist()
        stats.token_lengths.update(tokens)
        if 0 in lengths:
            for entry, n in zip(entries, lengths, strict=True):
                if not n:
                    stats.untagged.add(entry.relative)
        for i in tally.repeated:
            stats.repeated.add(entries[i].relative)
        self._over_limit(entries, tokens)
        self.folder_counts.add(tally.numbers, tally.counts, len(self.vocabulary))
        if tally.new:
            names = self.vocabulary.names
            self._first_seen(entries, [names[number] for number in tally.new], tally.first)

    def _cooccurrence(self, entries: list[Entry], each: np.ndarray, caption: np.ndarray) -> None:
        """The tags beside each tag asked about, and its images, from a batch's tags (their
        numbers ``each``, in order, and their captions): the captions with the tag in any
        spelling, and over those captions every other tag once per caption."""
        import numpy as np

        stats, names = self.stats, self.vocabulary.names
        known = len(self.wanted_numbers)
        if known < len(names):  # which tag asked about each new tag is (-1: none)
            keys = list(self.wanted)
            more = [normalize_tag(name) for name in names[known:]]
            index = [keys.index(key) if key in self.wanted else -1 for key in more]
            self.wanted_numbers = np.concatenate((self.wanted_numbers, np.array(index, np.intp)))
        matches = self.wanted_numbers[each]
        for k, name in enumerate(self.wanted.values()):
            on_key = matches == k
            if not on_key.any():
                continue
            hits = np.unique(caption[on_key])
            stats.tag_examples[name].extend(len(hits), (entries[i].relative for i in hits.tolist()))
            beside = np.flatnonzero(np.isin(caption, hits) & ~on_key)
            if len(beside):
                numbers = _first_each(each[beside], caption[beside], len(names))
                self.beside[k].add_each(numbers, len(names))

    def _add_strings(self, entries: list[Entry], datas: list[bytes]) -> None:
        """Count the entries' captions as strings (any caption, any separator)."""
        import numpy as np

        stats = self.stats
        texts = decode_captions(datas, entries)
        if set(map(type, texts)) != {str}:
            good = []
            for entry, text in zip(entries, texts, strict=True):
                if isinstance(text, str):
                    good.append((entry, text))
                else:
                    stats.unreadable.add([entry.relative, str(text)])
            entries = [entry for entry, _ in good]
            texts = [text for _, text in good]
        stats.captioned += len(texts)
        tag_lists, joined = split_tags_many(texts, self.separator)  # type: ignore[arg-type]
        lengths = list(map(len, tag_lists))
        stats.tag_lengths.update(lengths)
        if joined:  # each text is its tags joined: counted from the tags
            tokens = self.counter.count_joined(tag_lists, self.separator)
        else:
            count = self.counter.count
            tokens = [count(t) if n else 0 for t, n in zip(texts, lengths, strict=True)]  # type: ignore[arg-type]
        stats.token_lengths.update(tokens)
        distinct = list(map(len, map(set, tag_lists)))
        once = tag_lists  # each caption's tags, a repeated one once
        if 0 in lengths or distinct != lengths:
            once = []
            for entry, tags, n in zip(entries, tag_lists, distinct, strict=True):
                if not tags:
                    stats.untagged.add(entry.relative)
                elif n != len(tags):  # a tag repeated in one caption counts once
                    stats.repeated.add(entry.relative)
                    tags = list(dict.fromkeys(tags))
                once.append(tags)
        self._over_limit(entries, tokens)
        flat = list(itertools.chain.from_iterable(once))
        numbers, new = self.vocabulary.numbers(flat)
        if new:  # tags new to the pass: the caption each is first seen on
            ends = list(itertools.accumulate(map(len, once)))
            captions = [bisect.bisect_right(ends, position) for position in new]
            self._first_seen(entries, [flat[position] for position in new], captions)
        if numbers:
            each = np.array(numbers, np.intp)
            self.folder_counts.add_each(each, len(self.vocabulary))
            if self.wanted:
                caption = np.repeat(np.arange(len(once)), list(map(len, once)))
                self._cooccurrence(entries, each, caption)

    def _first_seen(self, entries: list[Entry], tags: list[str], captions: list[int]) -> None:
        """Note where tags new to the pass are first seen (``captions``: an index into
        ``entries`` for each), with one path string per caption."""
        first_seen = self.stats.first_seen
        relative = {i: entries[i].relative for i in set(captions)}
        for tag, i in zip(tags, captions, strict=True):
            first_seen[tag] = relative[i]

    def _over_limit(self, entries: list[Entry], tokens: list[int]) -> None:
        """Note the captions longer than the token limit."""
        limit = self.stats.token_limit
        if max(tokens, default=0) > limit:
            long = [i for i, n in enumerate(tokens) if n > limit]
            self.stats.over_limit.extend(
                len(long), ([entries[i].relative, tokens[i]] for i in long)
            )

    def open_folder(self, folder: str) -> None:
        """Start counting a folder (again, where the walk has been in it before)."""
        self.folder = folder
        self.folder_counts.load(self.stats.folders.setdefault(folder, Counter()), self.vocabulary)

    def close_folder(self) -> None:
        """The folder's counter, keyed by the pass's own tag strings (one string per tag for
        all folders)."""
        if self.folder is not None:
            self.stats.folders[self.folder] = self.folder_counts.take(self.vocabulary.names)

    def close(self) -> None:
        """The counters still held as arrays: the last folder's and the co-occurrences."""
        self.flush()
        self.close_folder()
        for name, counts in zip(self.wanted.values(), self.beside, strict=True):
            self.stats.cooccurrence[name] = counts.take(self.vocabulary.names)


def _all_bytes(reads: list[Read]) -> bool:
    """Whether every read gave bytes (one pass over the types, in C)."""
    return not reads or set(map(type, reads)) == {bytes}


_IMAGE = operator.attrgetter("image")
_SIDECAR = operator.attrgetter("sidecar")
_SHARED = operator.attrgetter("shared")


def dataset_stats(
    paths: Sequence[str | os.PathLike[str]],
    *,
    extension: str = DEFAULT_EXTENSION,
    recursive: bool = True,
    separator: str = DEFAULT_SEPARATOR,
    cooccurrence: Iterable[str] = (),
    per_folder: bool = True,
    token_limit: int = CLIP_TOKEN_LIMIT,
    examples: int = DEFAULT_EXAMPLES,
    entries: Iterable[Entry] | None = None,
    progress: Callable[[int], None] | None = None,
) -> DatasetStats:
    """One pass over the dataset's captions (``entries``, else ``iter_entries(paths)``).

    ``cooccurrence`` names tags (matched as tagger matches tags: any case, ``_`` or space) whose
    co-occurring tags and images are collected. ``examples`` bounds every list of paths (-1:
    no bound, which makes memory grow with the dataset). ``progress`` is called with the
    number of entries read, every 1,000 entries.
    """
    stats = DatasetStats(examples=examples, token_limit=token_limit)
    state = _Pass(stats, separator, per_folder, cooccurrence)
    walk = entries
    if walk is None:
        walk = iter_entries(paths, extension=extension, recursive=recursive)
    seen = 0
    for batch, reads in read_ahead(walk):
        state.add_batch(batch, reads)
        if progress is not None and (seen + len(batch)) // 1000 > seen // 1000:
            progress((seen + len(batch)) // 1000 * 1000)
        seen += len(batch)
    state.close()
    for counts in stats.folders.values():
        stats.tag_images.update(counts)
    return stats
