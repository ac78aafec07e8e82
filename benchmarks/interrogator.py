"""The CLIP Interrogator against the clip-interrogator package, on the same CLIP and banks.

    python benchmarks/interrogator.py              # the interrogator section of docs/benchmarks.md
    python benchmarks/interrogator.py --device cuda --intermediate 2048 --max-flavors 32

CLIP is open_clip's ViT-L-14 (the default model) with random weights (the real ones cannot be
downloaded here), on the CPU in float32. The banks are the clip-interrogator package's own data
files (111,867 terms for fast and best); their text embeddings are random unit vectors, written
once into the library's cache layout, which both the package and tagger read (embedding 111,867
texts with ViT-L-14 on a CPU would take hours, and the values do not change how long a ranking
takes). Images are COCO photos, each with a fixed caption (no caption model runs).

Measured, in one process, interleaved:

- ``fast`` and ``classic``: the time of the ranking (everything after the image features)
  against the time of CLIP's image encoding;
- ``best``: the package's ``interrogate()`` and tagger's, with the same prompt required. The
  package's chain re-encodes every full candidate text at every step; tagger's scores only each
  candidate's own tokens against the prompt's cached keys and values. ``--intermediate`` and
  ``--max-flavors`` shrink the chain on the CPU (the package needs about 2 minutes per chain
  step with the defaults, 2048 candidates); both sides do the same work either way.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import ROOT, SHARED, WORK, machine, replace_section  # noqa: E402

CLIP_NAME = "ViT-L-14/openai"
CACHE_NAME = "ViT-L-14_openai"


def shared_data() -> Path:
    """The shared data folder (beside the checkout, or one level up for a worktree)."""
    for folder in (SHARED, ROOT.parent.parent / "shared" / "data"):
        if (folder / "coco-mini").is_dir():
            return folder
    raise SystemExit(f"no coco-mini photos in {SHARED}")


def coco_captions(count: int) -> list[tuple[Path, str]]:
    """``count`` COCO photos, each with its first reference caption."""
    folder = shared_data() / "coco-mini"
    notes = json.loads((folder / "annotations" / "captions_train2017.json").read_text("utf-8"))
    names = {image["id"]: image["file_name"] for image in notes["images"]}
    captions: dict[str, str] = {}
    for note in notes["annotations"]:
        captions.setdefault(names.get(note["image_id"], ""), note["caption"].strip())
    photos = sorted((folder / "train2017").glob("*.jpg"))[:count]
    return [(p, captions.get(p.name, "a photo")) for p in photos]


def random_banks(cache: Path, banks: dict[str, list[str]], dim: int) -> None:
    """Random unit-vector embeddings for every bank in the library's cache layout, once."""
    import numpy as np

    from tagger.interrogator.banks import terms_hash, write_embeddings

    rng = np.random.default_rng(0)
    for name, terms in banks.items():
        path = cache / f"{CACHE_NAME}_{name}.safetensors"
        if path.is_file():
            continue
        embeds = rng.standard_normal((len(terms), dim)).astype(np.float32)
        embeds /= np.linalg.norm(embeds, axis=1, keepdims=True)
        write_embeddings(path, embeds.astype(np.float16), terms_hash(terms))


def setup(device: str, chunk: int, intermediate: int) -> tuple:
    """(tagger's engine, the package's Interrogator, the options) on one ViT-L-14."""
    import open_clip
    import torch

    from tagger.captioners.openclip import ClipModel
    from tagger.interrogator import banks
    from tagger.interrogator.engine import ClipInterrogator
    from tagger.registry import resolve_captioner

    torch.manual_seed(0)
    model, _, transform = open_clip.create_model_and_transforms("ViT-L-14", pretrained=None)
    model = model.to(device).eval()
    clip = ClipModel(
        "ViT-L-14",
        model,
        transform,
        open_clip.get_tokenizer("ViT-L-14"),
        torch.device(device),
        torch.float32,
    )
    data = banks.data_dir()
    all_banks = {
        name: banks.load_bank(name, data)
        for name in ("artists", "flavors", "mediums", "movements", "trendings", "negative")
    }
    cache = WORK / "ci-cache"
    random_banks(cache, all_banks, int(model.text_projection.shape[1]))
    engine = ClipInterrogator.from_clip(
        resolve_captioner("clip-interrogator"),
        clip,
        CACHE_NAME,
        device=device,
        data_dir=data,
        cache_dir=cache,
        download=False,
    )
    from clip_interrogator import Config, Interrogator

    config = Config(
        clip_model_name=CLIP_NAME,
        cache_path=str(cache),
        download_cache=False,
        data_path=str(data),
        chunk_size=chunk,
        flavor_intermediate_count=intermediate,
        quiet=True,
        device=device,
    )
    config.clip_model, config.clip_preprocess, config.caption_model_name = model, transform, None
    package = Interrogator(config)
    return engine, package


def timed(work: Any) -> tuple[Any, float]:
    """(what ``work()`` returns, seconds it took)."""
    start = time.perf_counter()
    value = work()
    return value, time.perf_counter() - start


def measure(args: argparse.Namespace) -> dict:
    """Every figure of the section."""
    from PIL import Image

    from tagger.interrogator.options import InterrogatorOptions

    engine, package = setup(args.device, args.chunk, args.intermediate)
    base = {"chunk_size": args.chunk, "intermediate_count": args.intermediate}
    images = [(Image.open(p).convert("RGB"), c) for p, c in coco_captions(args.images)]
    for name in ("artists", "flavors", "mediums", "movements", "trendings"):
        engine.bank(name, args.chunk)  # load the banks before timing
    rows: dict[str, list] = {"encode": [], "fast": [], "classic": [], "best": []}
    same = True
    for image, caption in images:
        features, encode_s = timed(lambda: engine.image_features(engine.preprocess(image)[None]))
        rows["encode"].append(encode_s)
        for mode in ("fast", "classic"):
            options = InterrogatorOptions(mode=mode, **base)
            ours, ours_s = timed(lambda: engine.prompt(features, caption, options))
            method = package.interrogate_fast if mode == "fast" else package.interrogate_classic
            theirs = method(image, caption=caption)
            same &= ours == theirs
            rows[mode].append(ours_s)
        options = InterrogatorOptions(
            mode="best", min_flavors=args.min_flavors, max_flavors=args.max_flavors, **base
        )
        theirs, theirs_s = timed(
            lambda: package.interrogate(
                image, min_flavors=args.min_flavors, max_flavors=args.max_flavors, caption=caption
            )
        )
        ours, ours_s = timed(
            lambda: engine.prompt(
                engine.image_features(engine.preprocess(image)[None]), caption, options
            )
        )
        best_same = ours == theirs
        same &= best_same
        rows["best"].append((theirs_s, ours_s, best_same, len(theirs)))
        print(
            f"best: package {theirs_s:.1f} s, tagger {ours_s:.1f} s, same {best_same}", flush=True
        )
    return {"rows": rows, "same": same}


def section(args: argparse.Namespace, result: dict) -> str:
    """The interrogator section of docs/benchmarks.md."""
    import torch

    m = machine()
    rows = result["rows"]
    encode = sum(rows["encode"]) / len(rows["encode"])
    fast = sum(rows["fast"]) / len(rows["fast"])
    classic = sum(rows["classic"]) / len(rows["classic"])
    theirs = sum(r[0] for r in rows["best"])
    ours = sum(r[1] for r in rows["best"])
    lines = [
        "<!-- interrogator section: written by benchmarks/interrogator.py -->",
        f"Measured {m['date']} on {m['machine']} (`--device {args.device}`); Python "
        f"{m['python']}, torch {torch.__version__}. open_clip ViT-L-14 with random weights "
        f"(float32), the package's 111,867 fast/best terms with cached (random) embeddings, "
        f"{len(rows['encode'])} COCO photos with a fixed caption, chunk size {args.chunk}, "
        f"{args.intermediate} chain candidates, {args.min_flavors} to {args.max_flavors} "
        "chained terms.",
        "",
        "| what | time per image | ratio |",
        "|---|---|---|",
        f"| CLIP image encoding | {encode:.3f} s | 1 |",
        f"| `fast` ranking after it | {fast:.3f} s | +{fast / encode:.1%} |",
        f"| `classic` ranking after it | {classic:.3f} s | +{classic / encode:.1%} |",
        f"| `best`, clip-interrogator's `interrogate()` | {theirs / len(rows['best']):.1f} s | 1 |",
        f"| `best`, tagger (image encoding included) | {ours / len(rows['best']):.1f} s | "
        f"{theirs / ours:.1f}x faster |",
        "",
        f"Same prompts as the package in every mode and image: "
        f"{'yes' if result['same'] else 'NO'}.",
        "<!-- end of interrogator section -->",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--intermediate", type=int, default=64)
    parser.add_argument("--min-flavors", type=int, default=8)
    parser.add_argument("--max-flavors", type=int, default=12)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    result = measure(args)
    replace_section(args.out, section(args, result), "interrogator section")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
