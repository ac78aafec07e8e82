"""Sorting more strings than are worth holding at once: sorted runs in a temporary file.

A folder of a million images has a million names, and walking it in order means sorting them.
``bounded_sorted`` holds at most ``run`` of them in memory: each full run is sorted and written
to one temporary file, and the runs are merged back (``merge_blocks``) a block at a
time. A folder smaller than one run never touches the disk.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

#: Strings held in memory before a sorted run goes to the disk.
RUN = 4096
#: Runs merged at once; more are first merged into longer runs (each open run holds a block).
FAN_IN = 32
#: Bytes read from a run at a time, and strings written at a time.
BLOCK = 4096
WRITE = 1024

_ENCODING = ("utf-8", "surrogatepass")  # every str a file name can be, and back


class _RunFile:
    """Sorted runs, one after another in one temporary file (unnamed where the system allows),
    read and written at offsets through one descriptor: a merge of many runs holds one file
    open, not one per run."""

    def __init__(self, separator: str) -> None:
        import tempfile

        self.text_separator = separator
        self.separator = separator.encode(*_ENCODING)
        # unbuffered: each read and write goes straight to the file at the offset sought
        self.handle = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115 (closed by close())
        self.end = 0

    def write(self, items: Iterable[str]) -> tuple[int, int]:
        """Append one sorted run, written as it comes, ``WRITE`` strings at a time; its
        (offset, length)."""
        start = self.end
        source = iter(items)
        separator = self.text_separator
        while chunk := list(itertools.islice(source, WRITE)):
            if self.end > start:
                chunk.insert(0, "")  # the separator between this chunk and the last
            self._append(separator.join(chunk).encode(*_ENCODING))
        return start, self.end - start

    def _append(self, data: bytes) -> None:
        """Write ``data`` at the end of the runs (seek and write: ``os.pwrite`` is not on
        Windows)."""
        handle = self.handle
        handle.seek(self.end)
        view = memoryview(data)
        while view:
            done = handle.write(view) or 0
            self.end += done
            view = view[done:]

    def read(self, run: tuple[int, int]) -> Iterator[list[str]]:
        """The strings of one run, in order, a block's worth at a time."""
        offset, length = run
        end = offset + length
        tail = b""
        while offset < end:
            self.handle.seek(offset)
            block = self.handle.read(min(BLOCK, end - offset))
            if not block:
                raise OSError(f"the sort's temporary file ended early at byte {offset}")
            offset += len(block)
            parts = (tail + block).split(self.separator)
            tail = parts.pop() if offset < end else b""
            if parts:
                yield [part.decode(*_ENCODING) for part in parts]

    def close(self) -> None:
        """Close the file, which removes it (``TemporaryFile``: unnamed where the system
        allows, deleted on close elsewhere)."""
        self.handle.close()


def merge_blocks(runs: list[Iterator[list[str]]]) -> Iterator[list[str]]:
    """The strings of sorted ``runs`` (each given as sorted lists, blocks, one after another)
    in sorted order, as sorted lists: everything up to the smallest last string of the blocks
    at hand is taken from all of them and sorted together (in C; the pieces are sorted runs,
    which Python's sort merges in linear time). No string left in a run can sort before that
    bound, so each list comes out in its final place.

    >>> blocks = merge_blocks([iter([["a", "d"], ["e"]]), iter([["b", "c"], ["f"]])])
    >>> list(blocks)
    [['a', 'b', 'c'], ['d'], ['e'], ['f']]
    """
    from bisect import bisect_right

    heads: list[tuple[list[str], int, Iterator[list[str]]]] = []
    for run in runs:
        block = next(run, None)
        if block:
            heads.append((block, 0, run))
    while heads:
        bound = min(block[-1] for block, _, _ in heads)
        out: list[str] = []
        kept = []
        for block, start, run in heads:
            cut = bisect_right(block, bound, start)
            out += block[start:cut]
            if cut < len(block):
                kept.append((block, cut, run))
                continue
            following = next(run, None)
            if following:
                kept.append((following, 0, run))
        heads = kept
        out.sort()
        yield out


def bounded_sorted(
    items: Iterable[str], run: int | None = None, separator: str = "/"
) -> Iterator[str]:
    """``items`` in sorted order, holding at most ``run`` (``RUN``) of them, plus a block per
    run being merged; none of them may be empty or hold ``separator`` (no file name holds
    ``/``). The first ``run`` items are taken at once: where they are all, the answer is a
    plain sorted list's iterator.

    Raises ``OSError`` (when iterated) where a temporary file cannot be made or written, so
    that the caller decides what a walk does then.

    >>> list(bounded_sorted(["d", "b", "c", "a", "e"], run=2))
    ['a', 'b', 'c', 'd', 'e']
    """
    run = RUN if run is None else run
    if run < 1:
        raise ValueError(f"a sorted run holds at least one item, not {run}")
    source = iter(items)
    held = list(itertools.islice(source, run))
    more = list(itertools.islice(source, 1))
    if not more:
        held.sort()
        return iter(held)
    return itertools.chain.from_iterable(_spilled(held + more, source, run, separator))


def _spilled(
    held: list[str], source: Iterator[str], run: int, separator: str
) -> Iterator[list[str]]:
    """``bounded_sorted`` through a temporary file: sorted runs written, then merged."""
    spill = _RunFile(separator)
    try:
        runs = []
        while held:
            held.sort()
            runs.append(spill.write(held))
            held = list(itertools.islice(source, run))
        while len(runs) > FAN_IN:
            group, runs = runs[:FAN_IN], runs[FAN_IN:]
            merged = merge_blocks(list(map(spill.read, group)))
            runs.append(spill.write(itertools.chain.from_iterable(merged)))
        yield from merge_blocks(list(map(spill.read, runs)))
    finally:
        spill.close()
