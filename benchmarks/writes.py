"""What the safe writer costs: one image's outputs (caption + JSON sidecar) written three ways.

- **plain**: ``open(tmp, "w")`` with a fixed temporary name, then ``os.replace`` (the writer
  tagger had before: redirectable by a planted link, no fsync);
- **safe, no fsync**: ``tagger.safeio`` (exclusive temporary file in the target's folder opened
  through the folder's descriptor, permission bits, rename) with ``--no-fsync``;
- **safe**: the same with ``fsync`` before the rename (the default).

Each round writes ``--images`` new pairs and then replaces them (a rerun with ``overwrite``);
the variants run interleaved, round by round, in fresh folders on the same disk. Prints the
microseconds per image and the ratios to the plain writer.

    python benchmarks/writes.py --images 1000 --rounds 5 --folder /path/on/the/disk
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tagger.safeio import atomic_write_text, write_text_file

CAPTION = "1girl, solo, long hair, smile, looking at viewer, outdoors, sky, cloud, blue eyes"
SIDECAR = json.dumps({"general": dict.fromkeys(CAPTION.split(", "), 0.5)}, indent=2) + "\n"


def plain(path: Path, text: str, fsync: bool) -> None:
    """The old writer: a fixed temporary name, plain open, rename."""
    tmp = path.with_name(f".{path.name}.tagger-tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
    os.replace(tmp, path)


def safe(path: Path, text: str, fsync: bool) -> None:
    """tagger's writer."""
    if path.suffix == ".json":
        atomic_write_text(path, text, fsync=fsync)
    else:
        write_text_file(path, text, fsync=fsync)


def one_round(folder: Path, images: int, write: Callable[..., None], fsync: bool) -> float:
    """Seconds per image for writing every pair new, then replacing every pair."""
    folder.mkdir()
    start = time.perf_counter()
    for _ in range(2):  # new files, then replacements
        for index in range(images):
            write(folder / f"img{index:06d}.txt", CAPTION, fsync)
            write(folder / f"img{index:06d}.json", SIDECAR, fsync)
    elapsed = time.perf_counter() - start
    shutil.rmtree(folder)
    return elapsed / (2 * images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--folder", default=None, help="a folder on the disk to measure")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="tagger-writes-", dir=args.folder))
    variants = {
        "plain": (plain, False),
        "safe, no fsync": (safe, False),
        "safe (default)": (safe, True),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(args.rounds):
        for name, (write, fsync) in variants.items():
            times[name].append(one_round(base / f"{round_}-{len(times[name])}-{name[:4]}",
                                         args.images, write, fsync))  # fmt: skip
    shutil.rmtree(base)
    base_line = statistics.median(times["plain"])
    print(f"{args.images} images (caption + JSON sidecar) x {args.rounds} rounds, new + replaced")
    print("| writer | µs per image | ratio to plain |")
    print("| --- | ---: | ---: |")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median * 1e6:.0f} | {median / base_line:.2f} |")


if __name__ == "__main__":
    main()
