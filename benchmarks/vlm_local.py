"""Local VLMs batched: images per second at batch 1, 4 and 16 through ``tagger.vlm``, against
the model cards' one-image-at-a-time ``generate()`` loop, one process.

    python benchmarks/vlm_local.py --device cpu    # the local VLM section of docs/benchmarks.md
    python benchmarks/vlm_local.py --device cuda   # the same on a GPU

The models are the tests' tiny random-weight Florence-2, LLaVA and Qwen2-VL (``tests/tiny_vlm``),
so the figures measure the code path (the processor's batching and padding, ``generate``, the
decoding and cleaning), not a real VLM's speed: a real 2-8 B model spends its time in the
language model, where batching pays off on a GPU. Every reply is forced to the same length
(``min_new_tokens``), so batched and one-by-one runs generate the same tokens.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import ROOT, WORK, machine, replace_section  # noqa: E402

TOKENS = 16
BATCHES = (1, 4, 16)


def pictures(count: int) -> list[object]:
    """Noise images of a few sizes."""
    import numpy as np
    from PIL import Image

    rng = np.random.RandomState(0)
    return [
        Image.fromarray((rng.rand(48 + i % 5 * 8, 64, 3) * 255).astype("uint8"))
        for i in range(count)
    ]


def folders() -> dict[str, Path]:
    """The tiny model folders, built once under benchmarks/.work."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_vlm import make_florence2_dir, make_llava_dir, make_qwen2vl_dir

    made = {}
    for name, make in (
        ("florence2", make_florence2_dir),
        ("llava", make_llava_dir),
        ("qwen2-vl", make_qwen2vl_dir),
    ):
        folder = WORK / f"tiny-vlm-{name}"
        if not (folder / "config.json").is_file():
            make(folder)
        made[name] = folder
    return made


def measure(folder: Path, device: str, images: list[object], rounds: int) -> dict[str, float]:
    """images/s of the captioner at each batch, and of the model card's loop, the fastest of
    ``rounds`` rounds; each round runs every batch size and the loop once, in turn, so a burst
    of load on a shared machine falls on all of them rather than on one."""
    import torch

    from tagger.captioners import get_captioner
    from tagger.options import CaptionOptions
    from tagger.vlm.options import VlmOptions

    prompt = None if "florence2" in folder.name else "describe this image"
    options = VlmOptions(max_tokens=TOKENS, prompt=prompt, check_language=False)
    captioner = get_captioner(str(folder), device=device, vlm=options).load()
    force = {"min_new_tokens": TOKENS}
    original = captioner.generate_kwargs
    captioner.generate_kwargs = lambda: {**original(), **force}  # same length every run
    model, processor = captioner.model, captioner.processor
    # The captioner's own generate() arguments, beams included (Florence-2's 3, as its card).
    card_kwargs = {**captioner.generate_kwargs(), **captioner.extra_generate_kwargs()}

    def ours(batch: int) -> None:
        for i in range(0, len(images), batch):
            items = [captioner.preprocess(p, {}) for p in images[i : i + batch]]
            captioner.forward(items, CaptionOptions())

    def card_loop() -> None:  # the model card's loop: one image at a time
        for picture in images:
            text = captioner.model_prompt(captioner.preprocess(picture, {}))
            inputs = processor(images=[picture], text=[text], return_tensors="pt").to(device)
            with torch.inference_mode():
                model.generate(**inputs, **card_kwargs)

    runs = {**{f"batch {b}": (lambda b=b: ours(b)) for b in BATCHES}, "direct": card_loop}
    captioner.forward([captioner.preprocess(images[0], {})], CaptionOptions())  # warm-up
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: len(images) / seconds for name, seconds in best.items()}


def section(device: str, rows: dict[str, dict[str, float]], count: int, rounds: int) -> str:
    """The local VLM section of docs/benchmarks.md."""
    import torch
    import transformers

    m = machine()
    where = torch.cuda.get_device_name(0) if device == "cuda" else m["machine"]
    head = " | ".join(f"{b} img/s" for b in ("batch 1", "batch 4", "batch 16"))
    lines = [
        "<!-- vlm local section: written by benchmarks/vlm_local.py -->",
        f"Measured {m['date']} on {where} (`--device {device}`); Python {m['python']}, torch "
        f"{torch.__version__}, transformers {transformers.__version__}. The tests' tiny "
        f"random-weight models, {count} images, {TOKENS} tokens per reply, fastest of {rounds}"
        " interleaved rounds (each round runs every column once; the code path, not a real"
        " model's speed). The model card loop calls `generate()` with the captioner's own"
        " arguments (Florence-2: 3 beams, as its model card; LLaVA and Qwen2-VL: greedy):",
        "",
        f"| model | {head} | model card loop img/s | batch 16 / loop |",
        "|---|---|---|---|---|---|",
        *(
            f"| {name} | {r['batch 1']:.1f} | {r['batch 4']:.1f} | {r['batch 16']:.1f} | "
            f"{r['direct']:.1f} | {r['batch 16'] / r['direct']:.2f}x |"
            for name, r in rows.items()
        ),
        "<!-- end of vlm local section -->",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    images = pictures(args.images)
    rows = {}
    for name, folder in folders().items():
        rows[name] = measure(folder, args.device, images, args.rounds)
        print(name, {k: round(v, 2) for k, v in rows[name].items()})
    text = section(args.device, rows, args.images, args.rounds)
    print(text)
    replace_section(args.out, text, "vlm local section")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
