"""BLIP captions batched vs one by one: a random-weight BLIP of the real base shape, one process.

    python benchmarks/blip_batch.py --device cuda   # the BLIP section of docs/benchmarks.md
    python benchmarks/blip_batch.py --device cpu    # the same on the CPU (minutes)

The model has ``BlipConfig()``'s shape (ViT-B/16 at 384 px, BERT-base text decoder, 30,524
tokens), random weights, and a BERT-layout vocabulary of placeholder words; it is built once
into benchmarks/.work/blip-base. Every caption is forced to the same length
(``min_new_tokens == max_new_tokens``), so batched and one-by-one runs generate the same number
of tokens and the figure is images per second through ``tagger.captioners`` (preprocessing,
``generate``, decoding), greedy and with BLIP's default 3 beams; on CUDA in float16 as the
captioners run by default.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import ROOT, WORK, machine, photos, replace_section  # noqa: E402

TOKENS = 20


def make_blip_base(folder: Path) -> Path:
    """Save a random-weight BLIP base (captioning) with its processor into ``folder``, once."""
    if (folder / "model.safetensors").is_file():
        return folder
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    # BERT's layout: [PAD] 0, [unused*], [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103, words.
    vocab = ["[PAD]", *(f"[unused{i}]" for i in range(99)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [f"w{i}" for i in range(30522 - len(vocab))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    BlipForConditionalGeneration(BlipConfig()).eval().save_pretrained(folder)
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]")
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    BlipProcessor(BlipImageProcessor(), tokenizer).save_pretrained(folder)
    return folder


def measure(
    device: str, images: int, batch: int, rounds: int, beams: int
) -> tuple[float, float, bool]:
    """(batched images/s, one-by-one images/s, same captions) on ``images`` photos."""
    from tagger.captioners import get_captioner
    from tagger.image import load_image
    from tagger.options import CaptionOptions

    files = sorted(photos(32, None).glob("*.jpg"))
    pictures = [load_image(files[i % len(files)]) for i in range(images)]
    captioner = get_captioner(str(make_blip_base(WORK / "blip-base")), device=device).load()
    options = CaptionOptions(num_beams=beams, min_new_tokens=TOKENS, max_new_tokens=TOKENS)
    captioner.caption(pictures[:batch], options)  # warm-up
    batched_s, single_s = [], []
    for _ in range(rounds):  # interleaved
        start = time.perf_counter()
        batched = [
            text
            for i in range(0, images, batch)
            for text in captioner.caption(pictures[i : i + batch], options)
        ]
        batched_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        single = [captioner.caption([picture], options)[0] for picture in pictures]
        single_s.append(time.perf_counter() - start)
    return images / min(batched_s), images / min(single_s), batched == single


def section(device: str, rows: list[tuple[str, int, float, float, bool]]) -> str:
    """The BLIP section of docs/benchmarks.md."""
    m = machine()
    import torch

    where = torch.cuda.get_device_name(0) if device == "cuda" else m["machine"]
    lines = [
        "<!-- blip section: written by benchmarks/blip_batch.py -->",
        f"Measured {m['date']} on {where} (`--device {device}`); Python {m['python']}, torch "
        f"{torch.__version__}. Random-weight BLIP base shape, {TOKENS} tokens per caption, "
        "fastest of the rounds:",
        "",
        "| decoding | batch | batched img/s | one by one img/s | ratio | same captions |",
        "|---|---|---|---|---|---|",
        *(
            f"| {mode} | {b} | {fast:.2f} | {slow:.2f} | {fast / slow:.2f}x | "
            f"{'yes' if same else 'no'} |"
            for mode, b, fast, slow, same in rows
        ),
        "<!-- end of blip section -->",
    ]
    return "\n".join(lines)


def figures(device: str, images: int, batch: int, rounds: int, out: Path) -> None:
    """Measure greedy and 3-beam decoding and write the section."""
    rows = []
    for mode, beams in (("greedy", 1), ("3 beams", 3)):
        fast, slow, same = measure(device, images, batch, rounds, beams)
        print(f"{mode}: batched {fast:.2f} img/s, one by one {slow:.2f} img/s, same {same}")
        rows.append((mode, batch, fast, slow, same))
    replace_section(out, section(device, rows), "blip section")
    print(f"wrote {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--images", type=int, default=0, help="default: 64 on CUDA, 8 on CPU")
    parser.add_argument("--batch", type=int, default=0, help="default: 32 on CUDA, 8 on CPU")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    gpu = args.device != "cpu"
    figures(
        args.device,
        args.images or (64 if gpu else 8),
        args.batch or (32 if gpu else 8),
        args.rounds,
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
