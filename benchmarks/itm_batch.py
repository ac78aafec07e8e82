"""``tagger score`` batched vs one image at a time: BLIP image-text matching over a folder.

    python benchmarks/itm_batch.py                 # the itm section of docs/benchmarks.md (CPU)
    python benchmarks/itm_batch.py --device cuda --images 256 --batch 32

The model has the shape of Salesforce/blip-itm-base-coco (``BlipConfig()``: ViT-B/16 at 384 px,
BERT-base text encoder with cross-attention) with random weights, built once into
benchmarks/.work/blip-itm-base. The folder holds COCO photos, each with one of its reference
captions as ``<stem>.txt``. Both runs are the whole command (``tagger score --json``: decoding,
batching, both scores, sidecars), in one process, interleaved; the sidecar scores of the two
runs are compared. A third run is the reference loop a script would write: per image, the
checkpoint's ``BlipProcessor`` and two ``BlipForImageTextRetrieval`` calls (``use_itm_head``
true for ITM, false for ITC: one forward gives one score), its scores written to a JSON file per
image (in benchmarks/.work/itm-reference) and compared with ours.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from interrogator import coco_captions  # noqa: E402
from run import ROOT, WORK, machine, replace_section  # noqa: E402


def make_itm_base(folder: Path) -> Path:
    """A random-weight BLIP ITM of the base shape with its processor, once."""
    if (folder / "model.safetensors").is_file():
        return folder
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForImageTextRetrieval,
        BlipImageProcessor,
        BlipProcessor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", *(f"[unused{i}]" for i in range(99)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted({w.lower().strip(".,") for _, c in coco_captions(80) for w in c.split()})
    vocab += words + [f"w{i}" for i in range(30522 - len(vocab) - len(words))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    BlipForImageTextRetrieval(BlipConfig()).eval().save_pretrained(folder)
    BlipProcessor(BlipImageProcessor(), BertTokenizer(str(folder / "vocab.txt"))).save_pretrained(
        folder
    )
    return folder


def dataset(count: int) -> Path:
    """``count`` COCO photos with a caption file each."""
    folder = WORK / f"itm-set-{count}"
    if folder.is_dir() and len(list(folder.glob("*.txt"))) == count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for path, caption in coco_captions(count):
        shutil.copyfile(path, folder / path.name)
        (folder / f"{path.stem}.txt").write_text(caption + "\n", encoding="utf-8")
    return folder


def score_run(folder: Path, model: Path, device: str, batch: int) -> tuple[float, dict]:
    """Seconds of one ``tagger score --json`` run, and the scores it wrote."""
    from tagger.cli import main

    for sidecar in folder.glob("*.json"):
        sidecar.unlink()
    start = time.perf_counter()
    argv = ["score", str(folder), "--model", str(model), "--device", device, "--json"]
    status = main([*argv, "--batch-size", str(batch), "--no-progress", "--worst", "0"])
    seconds = time.perf_counter() - start
    assert status == 0, status
    scores = {p.stem: json.loads(p.read_text("utf-8"))["score"] for p in folder.glob("*.json")}
    return seconds, scores


def reference_run(folder: Path, model: Path, device: str) -> tuple[float, dict]:
    """Seconds of the reference per-image loop over the folder, and its scores."""
    import torch
    from PIL import Image
    from transformers import BlipForImageTextRetrieval, BlipProcessor

    processor = BlipProcessor.from_pretrained(model)
    net = BlipForImageTextRetrieval.from_pretrained(model).to(device).eval()
    out = WORK / "itm-reference"
    out.mkdir(parents=True, exist_ok=True)
    scores = {}
    start = time.perf_counter()
    for image_path in sorted(folder.glob("*.jpg")):
        caption = image_path.with_suffix(".txt").read_text("utf-8").strip()
        image = Image.open(image_path).convert("RGB")
        inputs = processor(images=image, text=caption, return_tensors="pt").to(device)
        with torch.inference_mode():
            itm = net(**inputs, use_itm_head=True).itm_score.softmax(dim=-1)[0, 1].item()
            itc = net(**inputs, use_itm_head=False).itm_score[0, 0].item()
        scores[image_path.stem] = {"itm": itm, "itc": itc}
        (out / f"{image_path.stem}.json").write_text(json.dumps(scores[image_path.stem]), "utf-8")
    return time.perf_counter() - start, scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    import torch

    model = make_itm_base(WORK / "blip-itm-base")
    folder = dataset(args.images)
    score_run(folder, model, args.device, args.batch)  # warm-up: the model loads once
    batched, single, reference, same = [], [], [], True
    for _ in range(args.rounds):
        seconds, theirs = reference_run(folder, model, args.device)
        reference.append(seconds)
        seconds, many = score_run(folder, model, args.device, args.batch)
        batched.append(seconds)
        seconds, one = score_run(folder, model, args.device, 1)
        single.append(seconds)
        same &= all(
            abs(many[k]["itm"] - one[k]["itm"]) < 1e-4
            and abs(many[k]["itc"] - one[k]["itc"]) < 1e-4
            for k in many
        )
        same &= all(
            abs(many[k]["itm"] - theirs[k]["itm"]) < 1e-4
            and abs(many[k]["itc"] - theirs[k]["itc"]) < 1e-4
            for k in many
        )
    fast, slow = args.images / min(batched), args.images / min(single)
    loop = args.images / min(reference)
    m = machine()
    where = torch.cuda.get_device_name(0) if args.device == "cuda" else m["machine"]
    section = "\n".join(
        [
            "<!-- itm section: written by benchmarks/itm_batch.py -->",
            f"Measured {m['date']} on {where} (`--device {args.device}`); Python {m['python']}, "
            f"torch {torch.__version__}. Random-weight BLIP ITM of the base shape, "
            f"{args.images} COCO photos with their captions, `tagger score --json`, fastest of "
            f"{args.rounds} rounds:",
            "",
            "| run | images/s | against one by one | against the reference loop |",
            "|---|---|---|---|",
            f"| the reference loop: per image, `BlipProcessor` and two "
            f"`BlipForImageTextRetrieval` calls | {loop:.2f} | {loop / slow:.2f}x | 1 |",
            f"| `tagger score --batch-size 1` (one by one) | {slow:.2f} | 1 | {slow / loop:.2f}x |",
            f"| `tagger score --batch-size {args.batch}` | {fast:.2f} | {fast / slow:.2f}x | "
            f"{fast / loop:.2f}x |",
            "",
            f"Same scores in all three (within 1e-4): {'yes' if same else 'NO'}.",
            "<!-- end of itm section -->",
        ]
    )
    replace_section(args.out, section, "itm section")
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
