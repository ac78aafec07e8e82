"""Statistics of a dataset's captions, in one streaming pass.

What a dataset builder looks at first: how often each tag occurs (over the dataset and per
folder), which tags occur together with a given tag and on which images, how long the captions
are in CLIP tokens (Stable Diffusion reads 75 per chunk: longer captions are cut or split),
which images have no tags, which tags occur only once (typos, one-off tags a model cannot learn)
and which tags are written several ways (``long_hair`` and ``long hair``).

Memory stays flat with the number of files: the pass keeps counters over the tag vocabulary and
a bounded number of example paths for each finding (``examples``), never a record per file.
Captions are read by a few threads a little ahead of the parsing (a disk answers several reads
at once) and decoded strictly, as ``tagger.safeio.read_text_file`` does.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from tagger.dataset.reader import (
    DEFAULT_EXTENSION,
    DEFAULT_SEPARATOR,
    Entry,
    iter_entries,
    split_tags,
)
from tagger.dataset.tokens import CLIP_TOKEN_LIMIT, token_counter
from tagger.errors import OutputError
from tagger.safeio import decode_body, read_bytes_nofollow, sniff_style
from tagger.tags import normalize_tag

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
#: each a batch of ``BATCH`` files, at most ``AHEAD`` batches early.
READERS = 4
BATCH = 64
AHEAD = 8
#: A caption read faster than this came from the page cache.
CACHED_SECONDS = 40e-6


class _Read:
    """A caption's bytes as read by a reader thread (or the error that read raised)."""

    __slots__ = ("data", "error")

    def __init__(self, data: bytes | None, error: BaseException | None) -> None:
        self.data = data
        self.error = error

    def result(self) -> bytes | None:
        if self.error is not None:
            raise self.error
        return self.data


def _read_one(path: str | None) -> _Read | None:
    """Read one caption (``read_bytes_nofollow``); None when there is none to read."""
    if path is None:
        return None
    try:
        return _Read(read_bytes_nofollow(path), None)
    except (OutputError, OSError) as exc:
        return _Read(None, exc)


def _read_batch(paths: list[str | None]) -> list[_Read | None]:
    """Read each caption; None where there is none to read."""
    return [_read_one(path) for path in paths]


def read_ahead(entries: Iterable[Entry]) -> Iterator[tuple[Entry, _Read | None]]:
    """Each entry with the bytes of its caption (None for entries without one).

    The first batch is read here and timed: files that come from the page cache (faster than
    ``CACHED_SECONDS`` each) are read here one by one, files that come from the disk by reader
    threads in batches a little ahead of the caller (a disk answers several reads at once;
    threads cost more than they save on cached files).
    """
    from concurrent.futures import ThreadPoolExecutor

    source = iter(entries)
    first = list(itertools.islice(source, BATCH))
    start = time.perf_counter()
    reads = _read_batch(_caption_paths(first))
    elapsed = time.perf_counter() - start
    yield from zip(first, reads, strict=True)
    wanted = sum(path is not None for path in _caption_paths(first))
    if not wanted or elapsed / wanted < CACHED_SECONDS:
        for entry in source:
            yield entry, _read_one(_caption_path(entry))
        return
    window: deque[tuple[list[Entry], Future[list[_Read | None]]]] = deque()
    with ThreadPoolExecutor(READERS, thread_name_prefix="tagger-read") as pool:
        while True:
            batch = list(itertools.islice(source, BATCH))
            if batch:
                window.append((batch, pool.submit(_read_batch, _caption_paths(batch))))
            if window and (not batch or len(window) > AHEAD):
                done, reading = window.popleft()
                yield from zip(done, reading.result(), strict=True)
            if not batch and not window:
                return


def _caption_path(entry: Entry) -> str | None:
    """The caption to read of an entry (None: nothing to read)."""
    return entry.caption if entry.has_caption and entry.image else None


def _caption_paths(batch: list[Entry]) -> list[str | None]:
    """The caption to read of each entry (None: nothing to read)."""
    return [_caption_path(e) for e in batch]


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
    counter = token_counter()
    stats = DatasetStats(examples=examples, token_limit=token_limit)
    stats.token_counter = counter.source
    stats.tokens_exact = counter.exact
    wanted = {normalize_tag(tag): tag for tag in cooccurrence if tag.strip()}
    for key in wanted.values():
        stats.cooccurrence[key] = Counter()
        stats.tag_examples[key] = Examples(examples)
    count = counter.count
    first_seen = stats.first_seen
    tag_images = stats.tag_images
    walk = entries
    if walk is None:
        walk = iter_entries(paths, extension=extension, recursive=recursive)
    current_folder: str | None = None
    folder_counts: Counter[str] = Counter()
    seen = 0
    for entry, read in read_ahead(walk):
        seen += 1
        if progress is not None and seen % 1000 == 0:
            progress(seen)
        if entry.is_orphan:
            stats.orphans.add(entry.relative)
            continue
        stats.images += 1
        if entry.sidecar is not None:
            stats.sidecars += 1
        if entry.shared:
            stats.shared.add(entry.relative)
        folder = entry.folder if per_folder else ""
        if folder != current_folder:
            current_folder = folder
            folder_counts = stats.folders.setdefault(folder, Counter())
        stats.folder_images[folder] += 1
        if not entry.has_caption:
            stats.untagged.add(entry.relative)
            stats.tag_lengths[0] += 1
            continue
        try:
            data = read.result()  # type: ignore[union-attr]
            text = None if data is None else decode_body(data, sniff_style(data), entry.caption)
        except (OutputError, OSError) as exc:
            stats.unreadable.add([entry.relative, str(exc)])
            continue
        if text is None:  # removed since the folder was listed
            stats.untagged.add(entry.relative)
            continue
        stats.captioned += 1
        tags = split_tags(text, separator)
        stats.tag_lengths[len(tags)] += 1
        if not tags:
            stats.untagged.add(entry.relative)
            stats.token_lengths[0] += 1
            continue
        unique = dict.fromkeys(tags)
        if len(unique) != len(tags):
            stats.repeated.add(entry.relative)
        folder_counts.update(unique.keys())
        if not unique.keys() <= first_seen.keys():  # a tag not seen before (a set test in C)
            relative = entry.relative
            for tag in unique:
                first_seen.setdefault(tag, relative)
        tokens = count(text)
        stats.token_lengths[tokens] += 1
        if tokens > token_limit:
            stats.over_limit.add([entry.relative, tokens])
        if wanted:
            keys = {normalize_tag(tag) for tag in unique}
            for key, name in wanted.items():
                if key in keys:
                    stats.tag_examples[name].add(entry.relative)
                    stats.cooccurrence[name].update(t for t in unique if normalize_tag(t) != key)
    for counts in stats.folders.values():
        tag_images.update(counts)
    return stats
