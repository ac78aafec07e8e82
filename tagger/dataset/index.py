"""An in-memory index of a dataset for browsing: filter, page, all tags, one caption at a time.

The gallery of the tab (and anything else that pages through a dataset) scans the dataset once
(``DatasetIndex.scan``: each image's entry, caption and tags, one string per distinct tag for
the whole index: about 1 KB an image with 30 tags) and then answers every filter and page from
memory; thumbnails come from the disk cache (``tagger.dataset.thumbs``), so a page after the
first scan costs a look-up per image shown. A caption edited through the index (or re-read
with ``refresh``) updates it in place.
"""

# Paths stay strings here (os.path): a dataset walk handles millions of them.
# ruff: noqa: PTH112, PTH120

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tagger.dataset.filters import Record, compile_filter
from tagger.dataset.options import DatasetOptions
from tagger.dataset.reader import Entry, iter_entries, split_tags, split_tags_many
from tagger.dataset.tokens import token_counter
from tagger.errors import OutputError
from tagger.safeio import read_bytes_nofollow, read_text_file

PAGE_SIZE = 24


@dataclass
class Item:
    """One image of a page: its entry, caption text and thumbnail file (None: no preview)."""

    index: int
    entry: Entry
    caption: str
    thumbnail: Path | None


@dataclass
class DatasetIndex:
    """The images of a dataset with their captions (see the module docstring)."""

    paths: list[str]
    dataset: DatasetOptions = field(default_factory=DatasetOptions)
    entries: list[Entry] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    tags: list[tuple[str, ...]] = field(default_factory=list)
    unreadable: dict[int, str] = field(default_factory=dict)
    _sizes: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: One string per distinct tag, shared by every image's tags.
    _names: dict[str, str] = field(default_factory=dict)

    @property
    def root(self) -> str:
        """The dataset folder (the first path; an image's folder)."""
        first = self.paths[0]
        return first if os.path.isdir(first) else os.path.dirname(first)

    def scan(self, progress: Callable[[int], None] | None = None) -> DatasetIndex:
        """Read every image and caption of the dataset (again): a folder's captions a batch
        at a time, as the statistics pass reads them (``tagger.dataset.stats.read_ahead``),
        each decoded and split as ``refresh`` does one."""
        from tagger.dataset.stats import decode_captions, read_ahead

        self.entries, self.captions, self.tags = [], [], []
        self.unreadable.clear()
        self._sizes.clear()
        self._names.clear()
        walk = iter_entries(
            self.paths,
            extension=self.dataset.caption_extension,
            recursive=self.dataset.recursive,
            orphans=False,
        )
        share = self._names.setdefault
        for batch, reads in read_ahead(walk):
            start = len(self.entries)
            texts = [""] * len(batch)
            got = [i for i, read in enumerate(reads) if isinstance(read, bytes)]
            decoded = decode_captions([reads[i] for i in got], [batch[i] for i in got])
            for i, text in zip(got, decoded, strict=True):
                if isinstance(text, str):
                    texts[i] = text.strip()
                else:
                    self.unreadable[start + i] = str(text)
            if len(got) < len(batch):
                for i, read in enumerate(reads):
                    if read is not None and not isinstance(read, bytes):  # a link, a failed read
                        self.unreadable[start + i] = str(read)
            tag_lists, _ = split_tags_many(texts, self.dataset.separator)
            self.entries += batch
            self.captions += texts
            self.tags += [tuple(map(share, tags, tags)) for tags in tag_lists]
            for index, entry in enumerate(batch, start):
                if not entry.has_caption:  # what is there, if anything (a folder?): as refresh
                    self._read(index)
            if progress is not None and len(self.entries) // 1000 > start // 1000:
                progress(len(self.entries) // 1000 * 1000)
        return self

    def _read(self, index: int) -> None:
        """(Re-)read one caption into the index."""
        entry = self.entries[index]
        self.unreadable.pop(index, None)
        try:
            text = read_text_file(entry.caption)
        except (OutputError, OSError) as exc:
            self.unreadable[index] = str(exc)
            text = None
        caption = text.text.strip() if text is not None else ""
        self.captions[index] = caption
        tags = split_tags(caption, self.dataset.separator)
        self.tags[index] = tuple(map(self._names.setdefault, tags, tags))

    def refresh(self, index: int) -> None:
        """Re-read one caption (after it was written)."""
        self._read(index)

    def find(self, relative: str) -> int | None:
        """The index of an image by its relative path."""
        for i, entry in enumerate(self.entries):
            if entry.relative == relative:
                return i
        return None

    def size(self, index: int) -> tuple[int, int]:
        """An image's width and height (read from its header once; 0 x 0 when unreadable)."""
        found = self._sizes.get(index)
        if found is None:
            from PIL import Image

            try:
                with Image.open(self.entries[index].image) as image:
                    found = image.size
            except Exception:  # any unreadable image: no size
                found = (0, 0)
            self._sizes[index] = found
        return found

    def record(self, index: int) -> Record:
        """What the filter language sees of one image."""
        count = token_counter().count
        caption = self.captions[index]
        return Record(
            self.entries[index].relative,
            self.tags[index],
            caption,
            tokens=lambda: count(caption),
            size=lambda: self.size(index),
        )

    def select(self, where: str = "") -> list[int]:
        """The indices of the images matching a filter (all for an empty one)."""
        if not where.strip():
            return list(range(len(self.entries)))
        match = compile_filter(where)
        return [i for i in range(len(self.entries)) if match(self.record(i))]

    def page(
        self,
        selected: Sequence[int],
        number: int,
        size: int = PAGE_SIZE,
        *,
        side: int = 256,
        cache: Path | None = None,
    ) -> list[Item]:
        """Page ``number`` (from 0) of the selected images, with their cached thumbnails."""
        from tagger.dataset.thumbs import thumbnail

        chosen = selected[number * size : (number + 1) * size]
        return [
            Item(
                i, self.entries[i], self.captions[i], thumbnail(self.entries[i].image, side, cache)
            )
            for i in chosen
        ]

    def pages(self, selected: Sequence[int], size: int = PAGE_SIZE) -> int:
        """How many pages the selection fills (at least one)."""
        return max(1, -(-len(selected) // size))

    def tag_counts(self, selected: Sequence[int] | None = None) -> list[tuple[str, int]]:
        """Images per tag over the selection (all images by default), most frequent first, then
        by name."""
        counts: Counter[str] = Counter()
        for i in selected if selected is not None else range(len(self.entries)):
            counts.update(dict.fromkeys(self.tags[i]).keys())
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    def caption_bytes(self, index: int) -> bytes:
        """The caption file's bytes now (``b""`` when there is none): what an editor started
        from, so a save can tell whether someone else changed it meanwhile."""
        return read_bytes_nofollow(self.entries[index].caption) or b""
