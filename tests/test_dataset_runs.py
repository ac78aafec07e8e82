"""Sorting a folder's names in runs on disk (``tagger.dataset.runs``) and the walk built on it."""

from __future__ import annotations

import gc
import random
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagger.dataset import runs
from tagger.dataset.reader import iter_entries
from tagger.dataset.stats import dataset_stats

#: What a file name can hold: dots, a NUL-sorting neighbour, non-ASCII, a surrogate escape.
NAME_CHARS = st.sampled_from(["a", "b", ".", "-", " ", "0", "é", "\udcff", "\x01", "z"])


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(st.text(NAME_CHARS, min_size=1, max_size=8), max_size=120),
    run=st.integers(1, 12),
    block=st.integers(1, 24),
    write=st.integers(1, 5),
    fan_in=st.integers(2, 4),
)
def test_bounded_sorted_is_sorted(
    items: list[str], run: int, block: int, write: int, fan_in: int
) -> None:
    """Any strings, duplicates included, with runs, blocks and writes small enough that every
    path (in memory, one merge, merges of merges, strings across blocks) is taken."""
    saved = runs.BLOCK, runs.WRITE, runs.FAN_IN
    runs.BLOCK, runs.WRITE, runs.FAN_IN = block, write, fan_in
    try:
        assert list(runs.bounded_sorted(items, run=run)) == sorted(items)
    finally:
        runs.BLOCK, runs.WRITE, runs.FAN_IN = saved


def test_merge_blocks_takes_equal_strings_across_blocks() -> None:
    blocks = [iter([["a", "b"], ["b", "b"], ["c"]]), iter([["b"], ["b", "d"]]), iter([])]
    merged = list(runs.merge_blocks(blocks))
    assert merged == [["a", "b", "b"], ["b", "b", "b"], ["c"], ["d"]]


def test_bounded_sorted_refuses_an_empty_run() -> None:
    with pytest.raises(ValueError, match="at least one item, not 0"):
        list(runs.bounded_sorted(["a"], run=0))


def _peak_while_consuming(sorter, count: int) -> int:
    """Heap peak (bytes) of sorting ``count`` made-up names, the output consumed as it comes."""
    rng = random.Random(3)
    names = (f"img{rng.randrange(10**9):09d}.png" for _ in range(count))
    gc.collect()
    tracemalloc.start()
    last = ""
    for name in sorter(names):
        assert name >= last
        last = name
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def test_bounded_sorted_holds_the_same_for_four_times_the_names() -> None:
    """Sorting in runs of 1,000 (60 and 240 runs: merges of merges) holds about the same for
    240,000 names as for 60,000, and a small part of what sorting the whole list holds."""

    def bounded(names):
        return runs.bounded_sorted(names, run=1000)

    small, large = _peak_while_consuming(bounded, 60_000), _peak_while_consuming(bounded, 240_000)
    whole = _peak_while_consuming(sorted, 240_000)
    assert large < 1.25 * small, (small, large)
    assert large < whole / 8, (large, whole)


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(40):
        (folder / f"{i:03d}.png").write_bytes(b"")
        if i % 3:
            (folder / f"{i:03d}.txt").write_text(f"tag{i % 5}, shared", encoding="utf-8")
    (folder / "zz.txt").write_text("orphan", encoding="utf-8")
    (folder / "sub").mkdir()
    (folder / "sub" / "x.png").write_bytes(b"")
    return folder


def _walk(folder: Path) -> list[tuple[str, bool, bool]]:
    return [(e.relative, e.has_caption, e.is_orphan) for e in iter_entries([folder])]


def test_the_walk_is_the_same_in_memory_on_disk_and_without_a_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs of 7 names put the folder's names on disk; where no temporary file can be made
    the walk sorts them in memory instead: the same entries, in the same order, each time."""
    folder = _folder(tmp_path)
    expected = _walk(folder)
    assert expected[0] == ("000.png", False, False)
    assert expected[-2:] == [("zz.txt", True, True), ("sub/x.png", False, False)]
    monkeypatch.setattr(runs, "RUN", 7)
    assert _walk(folder) == expected

    def no_temporary_file(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/tmp")

    monkeypatch.setattr("tempfile.TemporaryFile", no_temporary_file)
    assert _walk(folder) == expected


def test_per_folder_counters_share_one_string_per_tag(tmp_path: Path) -> None:
    """Each folder's counter is keyed by the pass's own tag strings, so the vocabulary is held
    once, not once per folder (what keeps the statistics' memory to the tags they count)."""
    for name in ("a", "b", "c"):
        sub = tmp_path / name
        sub.mkdir()
        for i in range(3):
            (sub / f"{i}.png").write_bytes(b"")
            (sub / f"{i}.txt").write_text(f"solo, tag {name}{i}, 1girl", encoding="utf-8")
    stats = dataset_stats([tmp_path])
    objects: dict[str, set[int]] = {}
    for counts in stats.folders.values():
        for tag in counts:
            objects.setdefault(tag, set()).add(id(tag))
    assert {tag: len(ids) for tag, ids in objects.items() if len(ids) > 1} == {}
    assert stats.folders["a"] == {"solo": 3, "1girl": 3, "tag a0": 1, "tag a1": 1, "tag a2": 1}
    assert stats.tag_images["solo"] == 9
