"""Batch sizes, fp16 and input transfer on an execution provider (made for a GPU), in one run.

    python benchmarks/device.py --device cuda         # the device section of docs/benchmarks.md
    python benchmarks/device.py --device cpu --quick  # a smoke run of the same code on the CPU

For each model (random-weight WD v3 ViT and ConvNeXt, see benchmarks/models.py) and each batch
size (1, 8, 32, 64), interleaved round by round in one process:

- ceiling: the session alone on pre-processed tensors (NumPy input, copied to the device by
  onnxruntime at each run);
- resident: the same session on input already on the device (an ``OrtValue`` bound with IO
  binding): ceiling / resident bounds what pinned memory or IO binding could give;
- ours: ``tagger.batch.BatchRun`` end to end (find, decode, preprocess, infer, write), with the
  engine's decode threads and with one per core;
- loop: the per-image loop of benchmarks/run.py (today's extensions) on the same provider;
- fp16: the float16 copy of the model (``--fp16``): ceiling and ours at the best batch size,
  and its score drift against float32 over the 32 distinct photos (largest change, and how many
  tag decisions at 0.35 flip).

Photos are the real COCO photos (about 640 px), repeated to ``--images`` files.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import (  # noqa: E402
    ROOT,
    SHARED,
    WORK,
    ceiling,
    extension_loop,
    interleave,
    machine,
    make_wd_model,
    ours,
    photos,
    replace_section,
)

BATCHES = (1, 8, 32, 64)


def repeated_photos(count: int) -> Path:
    """``count`` files: the 32 COCO photos copied over and over (distinct names)."""
    source = sorted(photos(32, None).glob("*.jpg"))
    folder = WORK / f"photos-repeated-{count}"
    if folder.is_dir() and len(list(folder.glob("*.jpg"))) == count:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i in range(count):
        shutil.copyfile(source[i % len(source)], folder / f"{i:05d}.jpg")
    return folder


def resident_ceiling(session, name: str, tensors: list[np.ndarray], batch: int, device: str):
    """A function timing the session on input already on ``device`` (IO binding), per batch."""
    import onnxruntime as ort

    kind = "cuda" if device == "cuda" else "cpu"
    values = [
        ort.OrtValue.ortvalue_from_numpy(np.stack(tensors[i : i + batch]), kind, 0)
        for i in range(0, len(tensors), batch)
    ]
    output = session.get_outputs()[0].name

    def run() -> float:
        start = time.perf_counter()
        for value in values:
            binding = session.io_binding()
            binding.bind_ortvalue_input(name, value)
            binding.bind_output(output, "cpu")
            session.run_with_iobinding(binding)
            binding.copy_outputs_to_cpu()
        return time.perf_counter() - start

    return run


def fp16_drift(full, half, tensors: list[np.ndarray], threshold: float = 0.35) -> dict:
    """Largest score change of the float16 model, and tag decisions that flip at ``threshold``."""
    steps = range(0, len(tensors), 8)
    a = np.concatenate([full.forward(np.stack(tensors[i : i + 8])) for i in steps])
    b = np.concatenate([half.forward(np.stack(tensors[i : i + 8])) for i in steps])
    flips = int(np.count_nonzero((a >= threshold) != (b >= threshold)))
    return {
        "max_score_drift": float(np.abs(a - b).max()),
        "mean_score_drift": float(np.abs(a - b).mean()),
        "flipped_decisions": flips,
        "decisions": int(a.size),
        "images": int(a.shape[0]),
    }


def gpu_name() -> str:
    """The GPU's name from nvidia-smi, or '' without one."""
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout else ""


def measure_model(arch: str, args: argparse.Namespace, folder_in: Path) -> dict:
    """Every figure of one model."""
    import onnxruntime as ort

    from tagger.image import load_image
    from tagger.registry import local_spec
    from tagger.wd14 import WD14Tagger, prepare_image

    folder = make_wd_model(WORK / arch, arch, SHARED / "wd-v3-selected_tags.csv")
    spec = local_spec(folder)
    tagger = WD14Tagger(spec, providers=args.device).load()
    half = WD14Tagger(spec, providers=args.device, precision="fp16").load()
    session, name = tagger._session, tagger._input_name
    plain = ort.InferenceSession(  # onnxruntime's defaults, as the other tools create it
        str(folder / "model.onnx"), providers=tagger.active_providers
    )
    with open(folder / "selected_tags.csv", encoding="utf-8") as handle:
        names = [row["name"] for row in csv.DictReader(handle)]
    files = sorted(folder_in.glob("*.jpg"))
    # one tensor per distinct photo, repeated like the files
    distinct = [prepare_image(load_image(p), 448) for p in files[:32]]
    tensors = [distinct[i % len(distinct)] for i in range(len(files))]
    out = Path(tempfile.mkdtemp(prefix="tagger-device-"))
    cores = os.cpu_count() or 1
    result: dict = {"providers": tagger.active_providers, "batches": {}}
    for batch in args.batches:
        ceiling(session, name, tensors[: batch * 2], batch)  # warm-up (and CUDA's autotuning)
        print(f"[{arch}] batch {batch}", flush=True)
        variants: dict[str, Callable[[], float]] = {
            "ceiling": lambda: ceiling(session, name, tensors, batch),
            "resident": resident_ceiling(session, name, tensors, batch, args.device),
            "ours": lambda: ours(folder_in, tagger, out / "ours", batch),
            f"ours_workers_{cores}": lambda: ours(
                folder_in, tagger, out / "ours", batch, workers=cores
            ),
        }
        times = interleave(variants, args.rounds)
        result["batches"][batch] = {k: len(files) / statistics.median(v) for k, v in times.items()}
        print(json.dumps(result["batches"][batch]), flush=True)
    print(f"[{arch}] per-image loop and fp16", flush=True)
    best = max(args.batches, key=lambda b: result["batches"][b]["ceiling"])
    ceiling(half._session, name, tensors[: best * 2], best)
    times = interleave(
        {
            "loop": lambda: extension_loop(folder_in, plain, name, names, out / "loop"),
            "ceiling_fp32": lambda: ceiling(session, name, tensors, best),
            "ceiling_fp16": lambda: ceiling(half._session, name, tensors, best),
            "ours_fp16": lambda: ours(folder_in, half, out / "half", best),
        },
        args.rounds,
    )
    result["best_batch"] = best
    result["other"] = {k: len(files) / statistics.median(v) for k, v in times.items()}
    result["fp16_drift"] = fp16_drift(tagger, half, distinct)
    print(json.dumps({k: result[k] for k in ("other", "fp16_drift")}), flush=True)
    shutil.rmtree(out, ignore_errors=True)
    return result


def write_section(results: dict, path: Path) -> None:
    """The device section of docs/benchmarks.md."""
    m = results["machine"]
    lines = [
        "<!-- device section: written by benchmarks/device.py -->",
        f"Measured {m['date']} with `--device {results['device']}` on "
        f"{results['gpu'] or 'no GPU'}; {m['machine']}; Python {m['python']}, onnxruntime "
        f"{m['onnxruntime']}. {results['images']} files (the COCO photos, repeated past 32), "
        f"{results['rounds']} interleaved rounds; images/s.",
        "",
    ]
    for arch, r in results["models"].items():
        cols = list(next(iter(r["batches"].values())))
        lines += [
            f"{arch} on {', '.join(r['providers'])}:",
            "",
            "| batch | " + " | ".join(cols) + " | ours / ceiling | ceiling / resident |",
            "|---|" + "---|" * (len(cols) + 2),
        ]
        for batch, row in r["batches"].items():
            cells = [f"{row[c]:.3g}" for c in cols]
            cells.append(f"{row['ours'] / row['ceiling']:.3f}")
            cells.append(f"{row['ceiling'] / row['resident']:.3f}")
            lines.append(f"| {batch} | " + " | ".join(cells) + " |")
        o, d, best = r["other"], r["fp16_drift"], r["best_batch"]
        top = max(max(row["ours"], row[cols[-1]]) for row in r["batches"].values())
        lines += [
            "",
            f"Per-image loop {o['loop']:.3g} img/s: ours at its best is "
            f"{top / o['loop']:.2f}x the loop. fp16 at batch {best}: ceiling "
            f"{o['ceiling_fp16']:.3g} vs {o['ceiling_fp32']:.3g} img/s in fp32 "
            f"({o['ceiling_fp16'] / o['ceiling_fp32']:.2f}x), ours {o['ours_fp16']:.3g}; score "
            f"drift over {d['images']} photos: largest {d['max_score_drift']:.1e}, mean "
            f"{d['mean_score_drift']:.1e}, {d['flipped_decisions']} of {d['decisions']:,} tag "
            "decisions at 0.35 flip (random-weight model: a real tagger's drift must be "
            "measured on it).",
            "",
        ]
    lines.append("<!-- end of device section -->")
    replace_section(path, "\n".join(lines), "device section")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="execution provider (default cuda)")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", default="vit,convnext")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--quick", action="store_true", help="16 images, batches 1 and 8, 1 round")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    if args.quick:
        args.images, args.rounds, args.models, args.batches = 16, 1, "vit", "1,8"
    args.batches = [int(b) for b in str(args.batches).split(",")]
    if args.images < 2 * max(args.batches):
        parser.error(f"--images {args.images}: give at least two batches of the largest size")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TAGGER_CACHE_DIR", str(WORK / "cache"))
    WORK.mkdir(exist_ok=True)
    folder = repeated_photos(args.images)
    results = {
        "machine": machine(),
        "gpu": gpu_name(),
        "device": args.device,
        "images": args.images,
        "rounds": args.rounds,
        "models": {arch: measure_model(arch, args, folder) for arch in args.models.split(",")},
    }
    (WORK / f"device-{args.device}.json").write_text(json.dumps(results, indent=2))
    write_section(results, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
