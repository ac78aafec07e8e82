"""Throughput, start-up and memory of the WD14 pipeline, measured as ratios in one run.

    python benchmarks/run.py                      # everything, writes docs/benchmarks.md
    python benchmarks/run.py --quick              # 8 images, 1 round, ViT only: a smoke run

Models are random-weight ONNX graphs of the real WD v3 ViT-B/16 and ConvNeXt-Base at 448 px with
the real 10,861-tag list (built once into benchmarks/.work/). Images are the real photos in
../shared/data/coco-mini (about 640 px) and the same photos upscaled to 4096 px. Every variant of
a measurement runs in the same process, interleaved round by round, because these machines'
speed drifts by up to 13 % within minutes.

Variants:
- ceiling: onnxruntime alone on pre-decoded, pre-processed tensors, with the same session as
  ours and with a session on onnxruntime's defaults (what our session options cost or give);
- ours: ``tagger.batch.BatchRun`` end to end (find, decode, preprocess, infer, write captions),
  and at 4096 px also with ``fast_decode`` (reduced-size JPEG decoding, with its drift);
- loop: a per-image loop the way today's webui extensions do it (PIL + OpenCV, one image per
  call, every tag's score in a dict, write; onnxruntime's default session).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
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
ROOT = HERE.parent
WORK = HERE / ".work"
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

from models import make_wd_model  # noqa: E402

# -- inputs ---------------------------------------------------------------------------------


def photos(count: int, side: int | None) -> Path:
    """``count`` COCO photos, as they are (side None) or upscaled so the long side is ``side``."""
    from PIL import Image

    source = sorted((SHARED / "coco-mini" / "train2017").glob("*.jpg"))[:count]
    folder = WORK / f"photos-{side or 'orig'}-{count}"
    if folder.is_dir() and len(list(folder.glob("*.jpg"))) == count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for path in source:
        if side is None:
            shutil.copyfile(path, folder / path.name)
            continue
        with Image.open(path) as image:
            scale = side / max(image.size)
            big = image.convert("RGB").resize(
                (round(image.width * scale), round(image.height * scale)), Image.BICUBIC
            )
            big.save(folder / path.name, quality=92)
    return folder


# -- the variants ---------------------------------------------------------------------------


def ceiling(session, input_name: str, tensors: list[np.ndarray], batch: int) -> float:
    """Seconds for the session alone over pre-processed tensors."""
    start = time.perf_counter()
    for i in range(0, len(tensors), batch):
        session.run(None, {input_name: np.stack(tensors[i : i + batch])})
    return time.perf_counter() - start


def ours(
    folder: Path, tagger, out: Path, batch: int, fast_decode: bool = False, workers: int = 0
) -> float:
    """Seconds for the batch engine end to end, writing captions under ``out`` (``workers``:
    decode threads, 0 for the engine's default)."""
    from tagger.batch import run_batch
    from tagger.options import BatchOptions

    shutil.rmtree(out, ignore_errors=True)
    options = BatchOptions(
        output_dir=str(out),
        batch_size=batch,
        workers=workers,
        on_existing="overwrite",
        fast_decode=fast_decode,
    )
    start = time.perf_counter()
    summary = run_batch([folder], tagger, batch_options=options)
    elapsed = time.perf_counter() - start
    if summary.failed_count:
        raise RuntimeError(f"benchmark images failed: {summary.failed[:3]}")
    return elapsed


def extension_loop(folder: Path, session, input_name: str, names: list[str], out: Path) -> float:
    """Seconds for a per-image loop written the way today's webui extensions do it."""
    import cv2
    from PIL import Image

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    size = session.get_inputs()[0].shape[1]
    start = time.perf_counter()
    for path in sorted(folder.glob("*.jpg")):
        image = Image.open(path)
        image = image.convert("RGBA")
        canvas = Image.new("RGBA", image.size, (255, 255, 255))
        canvas.paste(image, mask=image)
        array = np.asarray(canvas.convert("RGB"))[:, :, ::-1]
        side = max(array.shape[0], array.shape[1], size)
        top = (side - array.shape[0]) // 2
        left = (side - array.shape[1]) // 2
        array = cv2.copyMakeBorder(
            array,
            top,
            side - array.shape[0] - top,
            left,
            side - array.shape[1] - left,
            cv2.BORDER_CONSTANT,
            value=[255, 255, 255],
        )
        if side > size:
            array = cv2.resize(array, (size, size), interpolation=cv2.INTER_AREA)
        tensor = np.expand_dims(array.astype(np.float32), 0)
        probs = session.run(None, {input_name: tensor})[0][0]
        scores = dict(zip(names, probs.tolist(), strict=True))
        tags = {name: score for name, score in list(scores.items())[4:] if score >= 0.35}
        text = ", ".join(
            name.replace("_", " ") for name, _ in sorted(tags.items(), key=lambda kv: -kv[1])
        )
        (out / f"{path.stem}.txt").write_text(text, encoding="utf-8")
    return time.perf_counter() - start


def interleave(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Run every variant once per round, in turn; return the seconds of each run."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            times[name].append(run())
    return times


def ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of time(b) / time(a): the throughput of ``a`` relative to ``b``."""
    return statistics.median(tb / ta for ta, tb in zip(times[a], times[b], strict=True))


# -- fixed cost and memory --------------------------------------------------------------------


def first_caption_seconds(
    command: list[str], caption: Path, env: dict[str, str] | None = None
) -> float:
    """Seconds from starting ``command`` until ``caption`` exists (the process must succeed)."""
    caption.unlink(missing_ok=True)
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    seen = None
    while proc.poll() is None:
        if seen is None and caption.exists():
            seen = time.perf_counter() - start
        time.sleep(0.002)
    if seen is None and caption.exists():
        seen = time.perf_counter() - start
    if proc.returncode != 0 or seen is None:
        raise RuntimeError(f"{command} failed: {proc.stderr.read().decode()[-2000:]}")
    return seen


#: Runs a command and prints its peak RSS. A child forked straight from this (large) benchmark
#: process would report the parent's pages inherited before exec; a small wrapper does not.
_RSS_WRAPPER = (
    "import resource, subprocess, sys; "
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
)


def peak_rss_of(command: list[str]) -> int:
    """Run ``command`` and return its peak resident memory in KiB."""
    done = subprocess.run(
        [sys.executable, "-c", _RSS_WRAPPER, *command],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command} failed: {done.stderr[-2000:]}")
    return int(done.stdout.strip().splitlines()[-1])


def small_images(count: int) -> Path:
    """``count`` small PNGs (64 px) in nested folders, for the streaming-memory measurement."""
    from tiny import make_image

    folder = WORK / f"small-{count}"
    marker = folder / ".complete"
    if marker.exists():
        return folder
    for i in range(count):
        make_image(folder / f"d{i % 50:02d}" / f"{i:06d}.png", (64, 64), seed=i)
    marker.write_text("ok")
    return folder


def tagger_cli(*args: str) -> list[str]:
    """The command line of our CLI."""
    return [sys.executable, "-m", "tagger", "tag", *args, "--no-progress"]


# -- session options ------------------------------------------------------------------------------


def session_option_sweep(model: Path, tensors: list[np.ndarray], rounds: int) -> dict[str, float]:
    """images/s of the bare session under a few SessionOptions variants (interleaved)."""
    import onnxruntime as ort

    def make(**changes) -> Callable[[], float]:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        for key, value in changes.items():
            if key == "spinning":
                opts.add_session_config_entry("session.intra_op.allow_spinning", value)
                opts.add_session_config_entry("session.inter_op.allow_spinning", value)
            else:
                setattr(opts, key, value)
        session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda: ceiling(session, name, tensors, 1)

    variants = {
        "onnxruntime defaults (all optimisations, its threads, spinning, arena)": make(),
        f"intra_op_num_threads={os.cpu_count()}": make(intra_op_num_threads=os.cpu_count() or 1),
        "allow_spinning=0 (ours)": make(spinning="0"),
        "graph optimisation BASIC": make(
            graph_optimization_level=ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        ),
        "enable_cpu_mem_arena=False": make(enable_cpu_mem_arena=False),
    }
    times = interleave(variants, rounds)
    return {name: len(tensors) / statistics.median(t) for name, t in times.items()}


# -- the report -----------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """The machine and library versions, for the report."""
    import onnxruntime
    import PIL

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, "
        f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "Pillow": PIL.__version__,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models", default="vit,convnext")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--memory-images", type=int, default=10_000)
    parser.add_argument(
        "--kohya", type=Path, help="a checkout of kohya-ss/sd-scripts to compare start-up with"
    )
    parser.add_argument(
        "--kohya-python", default=sys.executable, help="the Python of an environment for kohya"
    )
    parser.add_argument(
        "--quick", action="store_true", help="8 images, 1 round, ViT, 2,000 small images"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument(
        "--captioners",
        action="store_true",
        help="only the captioner figures (needs the caption extra): ClipCap greedy decoding "
        "with the KV cache vs the reference full-recompute loop at 67 tokens, GPT-2 124M shape",
    )
    args = parser.parse_args()
    if args.quick:
        args.images, args.rounds, args.models, args.memory_images = 8, 1, "vit", 2_000
    if args.captioners:
        return captioner_figures(args)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    WORK.mkdir(exist_ok=True)
    tags_csv = SHARED / "wd-v3-selected_tags.csv"
    results: dict = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}}
    photos_640 = photos(args.images, None)
    photos_4096 = photos(args.images, 4096)

    import onnxruntime as ort
    from PIL import Image

    from tagger.image import load_image
    from tagger.registry import local_spec
    from tagger.wd14 import WD14Tagger, prepare_image

    for arch in args.models.split(","):
        folder = make_wd_model(WORK / arch, arch, tags_csv)
        tagger = WD14Tagger(local_spec(folder), providers="cpu").load()
        session, name = tagger._session, tagger._input_name
        # onnxruntime's own defaults (spinning thread pools), as the other tools create it.
        plain = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        with open(folder / "selected_tags.csv", encoding="utf-8") as handle:
            names = [row["name"] for row in csv.DictReader(handle)]
        tensors = [prepare_image(load_image(p), 448) for p in sorted(photos_640.glob("*.jpg"))]
        ceiling(session, name, tensors[:2], 1)  # warm-up
        ceiling(plain, name, tensors[:2], 1)
        out = Path(tempfile.mkdtemp(prefix="tagger-bench-"))
        print(f"[{arch}] 640 px: ceilings / ours / loop, {args.rounds} rounds", flush=True)
        t640 = interleave(
            {
                "ceiling": lambda: ceiling(session, name, tensors, args.batch_size),
                "ceiling_ort_defaults": lambda: ceiling(plain, name, tensors, args.batch_size),
                "ours": lambda: ours(photos_640, tagger, out / "ours", args.batch_size),
                "loop": lambda: extension_loop(photos_640, plain, name, names, out / "loop"),
            },
            args.rounds,
        )
        print(f"[{arch}] 4096 px: ceiling / ours / ours --fast-decode / loop", flush=True)
        big = [prepare_image(load_image(p), 448) for p in sorted(photos_4096.glob("*.jpg"))]
        t4096 = interleave(
            {
                # inference alone: what any preprocessing, however fast, could reach
                "ceiling": lambda: ceiling(session, name, big, args.batch_size),
                "ours": lambda: ours(photos_4096, tagger, out / "ours4096", args.batch_size),
                "ours_fast_decode": lambda: ours(
                    photos_4096, tagger, out / "fast4096", args.batch_size, fast_decode=True
                ),
                "loop": lambda: extension_loop(photos_4096, plain, name, names, out / "loop4096"),
            },
            args.rounds,
        )
        # Large images keep the reference scores: compare with the reference preprocessing.
        # --fast-decode does not: its drift (scores of this random-weight model, and the input
        # pixels, which say more about a real model) is measured on the same images.
        from reference import reference_prepare

        drift = fast_drift = pixel_drift = 0.0
        for path in sorted(photos_4096.glob("*.jpg"))[:8]:
            reference = reference_prepare(Image.open(path), 448)
            ref = session.run(None, {name: reference})[0]
            got = tagger.forward(prepare_image(load_image(path), 448)[None])
            drift = max(drift, float(np.abs(ref - got).max()))
            fast_input = prepare_image(load_image(path, draft=448), 448)[None]
            fast_drift = max(fast_drift, float(np.abs(ref - tagger.forward(fast_input)).max()))
            pixel_drift = max(pixel_drift, float(np.abs(reference - fast_input).mean()))
        n = args.images
        results[arch] = {
            "images_per_s": {k: n / statistics.median(v) for k, v in t640.items()},
            # the ceiling: the same session; onnxruntime's defaults show what the session's
            # options cost or give
            "ours_vs_ceiling": ratio(t640, "ours", "ceiling"),
            "ours_vs_ort_defaults_ceiling": ratio(t640, "ours", "ceiling_ort_defaults"),
            "loop_vs_ceiling": ratio(t640, "loop", "ceiling_ort_defaults"),
            "images_per_s_4096": {k: n / statistics.median(v) for k, v in t4096.items()},
            "ours_vs_loop_4096": ratio(t4096, "ours", "loop"),
            "fast_decode_vs_loop_4096": ratio(t4096, "ours_fast_decode", "loop"),
            "ceiling_vs_loop_4096": ratio(t4096, "ceiling", "loop"),
            "max_score_drift_4096_vs_reference": drift,
            "fast_decode_max_score_drift_4096": fast_drift,
            "fast_decode_mean_pixel_drift_4096": pixel_drift,
            "peak_rss_mib_batch1": peak_rss_of(
                tagger_cli(
                    str(photos_640),
                    "--model",
                    str(folder),
                    "--output-dir",
                    str(out / "rss"),
                    "--on-existing",
                    "overwrite",
                )
            )
            / 1024,
        }
        print(json.dumps(results[arch], indent=2), flush=True)
        shutil.rmtree(out, ignore_errors=True)
        tagger.unload()

    # Fixed cost: process start to the first caption written, and a bare session's creation.
    first = WORK / "first"
    first.mkdir(exist_ok=True)
    one = first / "one.jpg"
    shutil.copyfile(sorted(photos_640.glob("*.jpg"))[0], one)
    model = WORK / args.models.split(",")[0]
    import onnxruntime as ort

    start = time.perf_counter()
    ort.InferenceSession(str(model / "model.onnx"), providers=["CPUExecutionProvider"])
    session_seconds = time.perf_counter() - start
    ours_first = [
        first_caption_seconds(
            tagger_cli(str(one), "--model", str(model), "--on-existing", "overwrite"),
            one.with_suffix(".txt"),
        )
        for _ in range(args.rounds + 1)
    ]
    results["fixed_cost"] = {
        "session_creation_s": session_seconds,
        "ours_first_caption_s": statistics.median(ours_first),
    }
    if args.kohya:
        # kohya reads <model_dir>/<repo_id with / as _>/{model.onnx,selected_tags.csv}.
        kohya_models = WORK / "kohya-models"
        location = kohya_models / "local_model"
        location.mkdir(parents=True, exist_ok=True)
        for file in ("model.onnx", "selected_tags.csv"):
            link = location / file
            if not link.exists():
                link.symlink_to(model / file)
        kohya_first = [
            first_caption_seconds(
                [
                    args.kohya_python,
                    str(args.kohya / "finetune" / "tag_images_by_wd14_tagger.py"),
                    str(first),
                    "--onnx",
                    "--repo_id",
                    "local/model",
                    "--model_dir",
                    str(kohya_models),
                    "--batch_size",
                    "1",
                ],
                one.with_suffix(".txt"),
                env={**os.environ, "PYTHONPATH": str(args.kohya)},
            )
            for _ in range(args.rounds + 1)
        ]
        results["fixed_cost"]["kohya_first_caption_s"] = statistics.median(kohya_first)
    print(json.dumps(results["fixed_cost"], indent=2), flush=True)

    # Session options, on the bare session.
    tensors = [prepare_image(load_image(p), 448) for p in sorted(photos_640.glob("*.jpg"))[:8]]
    results["session_options"] = session_option_sweep(
        model / "model.onnx", tensors, max(1, args.rounds)
    )
    print(json.dumps(results["session_options"], indent=2), flush=True)

    # Streaming memory: peak RSS over 1/10 and all of a folder of small images (tiny model).
    from tiny import make_model_dir

    tiny = make_model_dir(WORK / "tiny-model", size=64)
    big = small_images(args.memory_images)
    subset = WORK / f"small-{args.memory_images // 10}-subset"
    if not subset.exists():
        subset.mkdir()
        for d in sorted(big.glob("d*"))[:5]:
            (subset / d.name).symlink_to(d, target_is_directory=True)
    rss = {}
    for label, folder in (("small", subset), ("large", big)):
        out = Path(tempfile.mkdtemp(prefix="tagger-mem-"))
        rss[label] = (
            peak_rss_of(
                tagger_cli(
                    str(folder),
                    "--model",
                    str(tiny),
                    "--recursive",
                    "--output-dir",
                    str(out),
                    "--jsonl",
                    str(out / "metadata.jsonl"),
                )
            )
            / 1024
        )
        shutil.rmtree(out, ignore_errors=True)
    results["memory"] = {
        "images_small": args.memory_images // 10,
        "images_large": args.memory_images,
        "peak_rss_mib_small": rss["small"],
        "peak_rss_mib_large": rss["large"],
        "growth": rss["large"] / rss["small"] - 1,
    }
    print(json.dumps(results["memory"], indent=2), flush=True)
    (WORK / "results.json").write_text(json.dumps(results, indent=2))
    write_report(results, args.out)
    print(f"wrote {args.out}")
    return 0


def captioner_figures(args: argparse.Namespace) -> int:
    """ClipCap decoding: tokens/s with the KV cache vs the reference loop (same tokens)."""
    from clipcap_decode import SIZES, measure

    rows = []
    for batch in (1, 8):
        cached, recompute, same = measure(SIZES["gpt2 124M shape"], batch, max(1, args.rounds))
        rows.append((batch, cached, recompute, same))
        print(
            f"batch {batch}: cached {cached:.1f} tok/s, reference {recompute:.1f} tok/s, "
            f"same tokens: {same}",
            flush=True,
        )
    m = machine()
    lines = [
        "<!-- captioner section: written by benchmarks/run.py --captioners -->",
        f"Measured {m['date']} on {m['machine']}; Python {m['python']}.",
        "",
        "ClipCap greedy decoding, random-weight GPT-2 124M shape, prefix 10, 67 tokens (CPU):",
        "",
        "| batch | ours (KV cache) tokens/s | reference loop tokens/s | ratio | same tokens |",
        "|---|---|---|---|---|",
        *(
            f"| {b} | {c:.1f} | {r:.1f} | {c / r:.1f}x | {'yes' if same else 'NO'} |"
            for b, c, r, same in rows
        ),
        "<!-- end of captioner section -->",
    ]
    replace_section(args.out, "\n".join(lines), "captioner section")
    print(f"wrote {args.out}")
    return 0


def replace_section(path: Path, section: str, name: str) -> None:
    """Put ``section`` (which starts with ``<!-- NAME: ...`` and ends with its end marker)
    into the report, replacing the previous one."""
    begin, end = f"<!-- {name}:", f"<!-- end of {name} -->"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def write_report(results: dict, path: Path) -> None:
    """Write the figures as the measured section of docs/benchmarks.md."""
    m = results["machine"]
    lines = [
        "<!-- measured section: written by benchmarks/run.py -->",
        f"Measured {m['date']} on {m['machine']}; Python {m['python']}, onnxruntime "
        f"{m['onnxruntime']}, NumPy {m['numpy']}, Pillow {m['Pillow']}. "
        f"Arguments: {results['args']}.",
        "",
        "640 px photos (ceiling: inference alone on pre-processed photos, with the same session "
        "as ours and with a session on onnxruntime's defaults; the loop uses onnxruntime's "
        "defaults, as the other tools do, and is compared with that ceiling):",
        "",
        "| model | ceiling img/s (same session / ORT defaults) | ours img/s | loop img/s "
        "| ours / ceiling (same session / ORT defaults) | loop / ceiling | peak RSS (batch 1) |",
        "|---|---|---|---|---|---|---|",
    ]
    archs = [arch for arch in ("vit", "convnext") if results.get(arch)]
    for arch in archs:
        r = results[arch]
        s = r["images_per_s"]
        lines.append(
            f"| {arch} | {s['ceiling']:.2f} / {s['ceiling_ort_defaults']:.2f} | "
            f"{s['ours']:.2f} | {s['loop']:.2f} | {r['ours_vs_ceiling']:.3f} / "
            f"{r['ours_vs_ort_defaults_ceiling']:.3f} | {r['loop_vs_ceiling']:.3f} | "
            f"{r['peak_rss_mib_batch1']:.0f} MiB |"
        )
    lines += [
        "",
        "The same photos upscaled to 4096 px (ceiling: inference alone on the pre-processed "
        "photos, the bound for any preprocessing; `--fast-decode`: reduced-size JPEG decoding, "
        "its drift is the largest score change of this random-weight model over 8 photos and "
        "the largest per-photo mean change of the model input, in 0..255 levels):",
        "",
        "| model | ceiling img/s | ours img/s | ours --fast-decode img/s | loop img/s "
        "| ceiling / loop | ours / loop | --fast-decode / loop | ours: score drift "
        "| --fast-decode: score drift, input drift |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arch in archs:
        r = results[arch]
        b = r["images_per_s_4096"]
        lines.append(
            f"| {arch} | {b['ceiling']:.2f} | {b['ours']:.2f} | {b['ours_fast_decode']:.2f} | "
            f"{b['loop']:.2f} | {r['ceiling_vs_loop_4096']:.2f} | "
            f"{r['ours_vs_loop_4096']:.2f} | {r['fast_decode_vs_loop_4096']:.2f} | "
            f"{r['max_score_drift_4096_vs_reference']:.1e} | "
            f"{r['fast_decode_max_score_drift_4096']:.1e}, "
            f"{r['fast_decode_mean_pixel_drift_4096']:.2f} levels |"
        )
    f = results["fixed_cost"]
    lines += [
        "",
        f"Fixed cost: process start to first caption {f['ours_first_caption_s']:.2f} s "
        f"(creating the bare onnxruntime session alone: {f['session_creation_s']:.2f} s)"
        + (
            f"; kohya: {f['kohya_first_caption_s']:.2f} s." if "kohya_first_caption_s" in f else "."
        ),
        "",
        "Session options (bare session, images/s, interleaved):",
        "",
        *(f"- {name}: {value:.2f}" for name, value in results["session_options"].items()),
        "",
        "Streaming memory (tiny model): peak RSS "
        f"{results['memory']['peak_rss_mib_small']:.0f} MiB "
        f"over {results['memory']['images_small']:,} images, "
        f"{results['memory']['peak_rss_mib_large']:.0f} MiB over "
        f"{results['memory']['images_large']:,} ({results['memory']['growth']:+.1%}).",
        "<!-- end of measured section -->",
    ]
    replace_section(path, "\n".join(lines), "measured section")


if __name__ == "__main__":
    sys.exit(main())
