"""The dataset workbench's speed and memory goals, measured in one run on this machine.

1. ``stats`` over N caption files against the time to just read those files once (a walk with
   ``os.scandir`` and one ``open().read()`` per caption), with the files in the page cache and
   read from the disk (each file dropped from the cache first): the ratios, and the Python
   heap peak of ``stats`` (``tracemalloc``) at 10,000 and 100,000 files, which must not grow
   with N: split into what the returned statistics hold (counters over the tag vocabulary,
   per folder: they grow with the tags a folder has, not with its files) and the rest, the
   pass's working memory.
2. The gallery's first page on a 100,000-image dataset after the first scan: the disk-cached
   thumbnails of the page plus the index's selection and page (``DatasetIndex``); and the
   index's memory per image (``tracemalloc``, in a scan of its own).
3. Near-duplicate search over 64-bit hashes (multi-index hashing, ``tagger.dataset.neardup``)
   at 10,000 and 100,000 hashes against comparing all pairs (NumPy, row by row), with the
   pairs checked identical; and what the pHash itself costs per real photo.

Captions are drawn from the real WD v3 tag list (``../shared/data``): 15 to 45 tags each, in
10 folders; images are empty files named ``.png`` (the walk reads names only), except the
first page's, which are real COCO photos (for the thumbnails). Rounds alternate the variants.

    python benchmarks/dataset.py                 # about 4 minutes on 2 cores
    python benchmarks/dataset.py --sizes 10000   # quicker
"""

from __future__ import annotations

import argparse
import csv
import gc
import itertools
import os
import random
import shutil
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: ``../shared/data`` beside the checkout (``$TAGGER_SHARED_DATA`` elsewhere).
SHARED = Path(os.environ.get("TAGGER_SHARED_DATA", ROOT.parent / "shared" / "data"))
FOLDERS = 10


#: Distinct tags of the generated datasets: a dataset's vocabulary is a few thousand tags, all
#: of them seen within the first 10,000 captions, so memory measured at 10,000 and 100,000
#: files compares the cost per file, not a growing vocabulary.
VOCABULARY = 3000


def vocabulary() -> list[str]:
    """The first WD v3 tag names (general and character), or made-up ones without the file."""
    path = SHARED / "wd-v3-selected_tags.csv"
    if not path.is_file():
        return [f"tag_{i}" for i in range(VOCABULARY)]
    with path.open(encoding="utf-8") as handle:
        names = [row["name"] for row in csv.DictReader(handle) if row["category"] != "9"]
    return names[:VOCABULARY]


def build(root: Path, count: int, photos: list[Path]) -> Path:
    """``count`` images (empty files; the first ones real photos) with captions."""
    rng = random.Random(count)
    names = vocabulary()
    # frequent tags are frequent (Zipf), cumulated once: choices() would sum them per call
    cumulated = list(itertools.accumulate(1 / (i + 1) for i in range(len(names))))
    folder = root / f"ds{count}"
    for f in range(FOLDERS):
        (folder / f"part{f}").mkdir(parents=True)
    for i in range(count):
        sub = folder / f"part{i % FOLDERS}"
        image = sub / f"img{i:07d}.png"
        if i < len(photos) * FOLDERS and i % FOLDERS == 0:
            shutil.copy(photos[(i // FOLDERS) % len(photos)], image)
        else:
            image.touch()
        tags = rng.choices(names, cum_weights=cumulated, k=rng.randint(15, 45))
        text = ", ".join(t.replace("_", " ") for t in dict.fromkeys(tags))
        (sub / f"img{i:07d}.txt").write_text(text, encoding="utf-8")
    return folder


def read_once(folder: Path) -> int:
    """The baseline: walk the folders and read every caption file once."""
    total = 0
    pending = [str(folder)]
    while pending:
        with os.scandir(pending.pop()) as scan:
            for entry in scan:
                if entry.is_dir():
                    pending.append(entry.path)
                elif entry.name.endswith(".txt"):
                    with open(entry.path, "rb") as handle:
                        total += len(handle.read())
    return total


def evict(folder: Path) -> None:
    """Drop the dataset's files from the page cache (``POSIX_FADV_DONTNEED``, file by file: no
    privileges needed, other files untouched), so the next pass reads them from the disk."""
    os.sync()
    for dirpath, _, names in os.walk(folder):
        for name in names:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)  # noqa: PTH118
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def ours(folder: Path) -> int:
    """``tagger dataset stats``'s pass."""
    from tagger.dataset.stats import dataset_stats

    return dataset_stats([folder]).images


def distinct(folder: Path) -> int:
    """Distinct tags of the dataset (what the statistics' counters hold)."""
    from tagger.dataset.stats import dataset_stats

    return len(dataset_stats([folder]).tag_images)


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def heap(folder: Path) -> tuple[int, int, int]:
    """Peak Python heap (bytes) during one ``stats`` pass, what its statistics still hold
    after it (their counters over the tags, per folder), and their per-folder entries."""
    from tagger.dataset.stats import dataset_stats

    gc.collect()
    tracemalloc.start()
    result = dataset_stats([folder])
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, held, sum(map(len, result.folders.values()))


def bench_stats(root: Path, sizes: list[int], rounds: int, photos: list[Path]) -> dict:
    from tagger.dataset.tokens import token_counter

    counter = token_counter()
    results = {}
    for size in sizes:
        folder = build(root, size, photos)
        os.sync()  # the new files written back first, not during the rounds
        read_once(folder)  # the page cache holds the files for both variants
        ours(folder)  # and the token counter knows the vocabulary's words
        ratios, base_times, our_times = [], [], []
        cold_ratios, cold_base, cold_ours = [], [], []
        for _ in range(rounds):
            base = timed(read_once, folder)
            mine = timed(ours, folder)
            base_times.append(base)
            our_times.append(mine)
            ratios.append(mine / base)
            evict(folder)
            base = timed(read_once, folder)
            evict(folder)
            mine = timed(ours, folder)
            cold_base.append(base)
            cold_ours.append(mine)
            cold_ratios.append(mine / base)
        peak, held, entries = heap(folder)
        results[size] = {
            "read_once_s": statistics.median(base_times),
            "stats_s": statistics.median(our_times),
            "ratio": statistics.median(ratios),
            "ratios": [round(r, 2) for r in ratios],
            "cold_read_once_s": statistics.median(cold_base),
            "cold_stats_s": statistics.median(cold_ours),
            "cold_ratio": statistics.median(cold_ratios),
            "heap_peak_mb": peak / 1e6,
            "statistics_mb": held / 1e6,
            "working_mb": (peak - held) / 1e6,
            "folder_tag_entries": entries,
            "distinct_tags": distinct(folder),
            "counter": "exact" if counter.exact else "estimate",
        }
        print(f"stats {size}: {results[size]}", flush=True)
    return results


def bench_gallery(root: Path, size: int, photos: list[Path], rounds: int) -> dict:
    from tagger.dataset.index import DatasetIndex

    folder = root / f"ds{size}"
    if not folder.is_dir():
        folder = build(root, size, photos)
    cache = root / "thumbs"
    start = time.perf_counter()
    index = DatasetIndex([str(folder)]).scan()
    scan = time.perf_counter() - start
    start = time.perf_counter()
    index.page(index.select(""), 0, cache=cache)  # makes the thumbnails: the first visit
    first_visit = time.perf_counter() - start
    pages = []
    for _ in range(rounds):
        start = time.perf_counter()
        items = index.page(index.select(""), 0, cache=cache)
        for item in items:  # what the tab sends: each thumbnail's bytes
            if item.thumbnail is not None:
                item.thumbnail.read_bytes()
        pages.append(time.perf_counter() - start)
    tag = index.tags[0][0]
    start = time.perf_counter()
    chosen = index.select(f'tag:"{tag}"')
    index.page(chosen, 0, cache=cache)
    filtered = time.perf_counter() - start
    thumbnails = sum(item.thumbnail is not None for item in items)
    del index, chosen, items
    gc.collect()
    tracemalloc.start()  # what the index holds (a scan of its own: tracing slows it)
    index = DatasetIndex([str(folder)]).scan()
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    result = {
        "images": len(index.entries),
        "index_bytes_per_image": held / len(index.entries),
        "first_scan_s": scan,
        "first_page_first_visit_s": first_visit,
        "first_page_cached_s": statistics.median(pages),
        "filtered_page_s": filtered,
        "thumbnails": thumbnails,
    }
    print(f"gallery: {result}", flush=True)
    return result


def planted(count: int, seed: int) -> np.ndarray:
    """Random 64-bit hashes, 1 % of them near copies (0 to 6 bits flipped) of others."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**63, size=count, dtype=np.uint64) * np.uint64(2)
    for _ in range(count // 100):
        source, target = rng.integers(count, size=2)
        value = int(hashes[source])
        for bit in rng.choice(64, size=rng.integers(0, 7), replace=False):
            value ^= 1 << int(bit)
        hashes[target] = np.uint64(value)
    return hashes


def bench_near(sizes: list[int], distance: int, photos: list[Path]) -> dict:
    from tagger.dataset.neardup import all_pairs, near_pairs

    results = {}
    for size in sizes:
        hashes = planted(size, size)
        start = time.perf_counter()
        fast = near_pairs(hashes, distance)
        mine = time.perf_counter() - start
        start = time.perf_counter()
        slow = all_pairs(hashes, distance)
        base = time.perf_counter() - start
        results[size] = {
            "index_s": mine,
            "all_pairs_s": base,
            "speedup": base / mine,
            "pairs": len(fast),
            "identical": bool(np.array_equal(fast, slow)),
        }
        print(f"near duplicates {size}: {results[size]}", flush=True)
    try:
        from tagger.dataset.checks import perceptual_hash
        from tagger.image import load_image

        images = [load_image(p) for p in photos]
        start = time.perf_counter()
        for image in images:
            perceptual_hash(image)
        results["phash_ms_per_photo"] = (time.perf_counter() - start) / len(images) * 1e3
    except ImportError:
        pass
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--distance", type=int, default=6)
    parser.add_argument("--folder", help="Where the datasets are built (default: a temp dir).")
    args = parser.parse_args()
    photos = sorted((SHARED / "coco-mini" / "train2017").glob("*.jpg"))[:24]
    if not photos:
        photos = sorted((ROOT / "tests" / "data" / "coco").glob("*.jpg"))
    root = Path(tempfile.mkdtemp(prefix="tagger-dataset-bench-", dir=args.folder))
    os.environ.setdefault("TAGGER_CACHE_DIR", str(root / "cache"))
    try:
        stats = bench_stats(root, args.sizes, args.rounds, photos)
        gallery = bench_gallery(root, max(args.sizes), photos, args.rounds)
        near = bench_near(args.sizes, args.distance, photos)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("\nstats (median of rounds):")
    for size, row in stats.items():
        print(
            f"  {size:>7} files, cached: read once {row['read_once_s']:.2f} s, stats "
            f"{row['stats_s']:.2f} s, ratio {row['ratio']:.2f}; from the disk: read once "
            f"{row['cold_read_once_s']:.2f} s, stats {row['cold_stats_s']:.2f} s, ratio "
            f"{row['cold_ratio']:.2f}; heap peak {row['heap_peak_mb']:.2f} MB: the pass "
            f"{row['working_mb']:.2f} MB, its statistics {row['statistics_mb']:.2f} MB for "
            f"{row['distinct_tags']} distinct tags, {row['folder_tag_entries']} per folder "
            f"({row['counter']})"
        )
    print(
        f"gallery on {gallery['images']} images: first scan {gallery['first_scan_s']:.1f} s, "
        f"first page {gallery['first_page_cached_s'] * 1e3:.0f} ms cached "
        f"({gallery['first_page_first_visit_s'] * 1e3:.0f} ms making its thumbnails), "
        f"a filtered page {gallery['filtered_page_s'] * 1e3:.0f} ms; the index holds "
        f"{gallery['index_bytes_per_image']:.0f} bytes an image"
    )
    for size in args.sizes:
        row = near[size]
        print(
            f"near duplicates {size}: index {row['index_s']:.2f} s, all pairs "
            f"{row['all_pairs_s']:.2f} s ({row['speedup']:.1f}x), {row['pairs']} pairs, "
            f"identical {row['identical']}"
        )
    if "phash_ms_per_photo" in near:
        print(f"pHash: {near['phash_ms_per_photo']:.1f} ms per decoded photo")


if __name__ == "__main__":
    main()
