"""Throughput of the local engine and the Ray engine on the same tiny model and images.

    .venv/bin/python benchmarks/ray_engine.py [--images 400] [--side 512] [--cpus 2]

Builds a tiny random-weight WD14 model (tests/tiny.py) and a folder of PNG images in a temporary
folder, tags the folder with ``tagger.batch.run_batch`` and with ``tagger.ray_engine`` on a local
Ray cluster of ``--cpus`` CPUs (default batch sizes, JSON sidecars), checks that both wrote the
same bytes, and prints images per second. The model is tiny, so the numbers measure the engines
(listing, decoding, scheduling, writing), not a real tagger's inference.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under root -> its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def main() -> None:
    """Run both engines and print their throughput."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--side", type=int, default=512, help="image side in pixels")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import ray
    from tiny import make_image, make_model_dir

    from tagger.batch import run_batch
    from tagger.options import BatchOptions
    from tagger.ray_engine import ModelConfig, run_batch_ray
    from tagger.registry import local_spec
    from tagger.wd14 import WD14Tagger

    work = Path(tempfile.mkdtemp(prefix="tagger-ray-bench-"))
    try:
        model_dir = make_model_dir(work / "model")
        local = work / "local"
        for i in range(args.images):
            make_image(local / f"d{i % 10}" / f"{i:05d}.png", (args.side, args.side), seed=i)
        remote = work / "ray"
        shutil.copytree(local, remote)
        options = {"recursive": True, "write_json": True}

        model = WD14Tagger(local_spec(model_dir), providers="cpu").load()
        local_summary = run_batch([local], model, batch_options=BatchOptions(**options))

        started = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        init = time.perf_counter() - started
        config = ModelConfig(local_spec(model_dir), providers="cpu")
        stamps: list[float] = []
        ray_summary = run_batch_ray(
            [remote],
            config,
            batch_options=BatchOptions(**options),
            progress=lambda progress: stamps.append(time.perf_counter()),
        )
        run_start = stamps[-1] - ray_summary.elapsed
        ray.shutdown()
        same = _tree(local) == _tree(remote)
        cores = os.cpu_count()
        print(f"{args.images} images of {args.side}x{args.side} px, tiny model, {cores} cores")
        print(
            f"local engine: {local_summary.images_per_second:.1f} images/s "
            f"({local_summary.elapsed:.1f} s, batch {local_summary.batch_size})"
        )
        print(
            f"ray engine:   {ray_summary.images_per_second:.1f} images/s "
            f"({ray_summary.elapsed:.1f} s on a started cluster, +{init:.1f} s ray.init, "
            f"batch {ray_summary.batch_size}, {args.cpus} CPUs)"
        )
        print(f"ray engine: first image written {stamps[0] - run_start:.1f} s after the start")
        print(f"same files: {same}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
