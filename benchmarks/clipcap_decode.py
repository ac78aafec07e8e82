"""CLIP-prefix greedy decoding: key/value cache vs full recompute (the reference generate2).

Random-weight GPT-2 models (no download): the tiny test size and the real GPT-2 124M shape.
Both loops produce the same tokens; the figure is tokens per second at 67 generated tokens
(the reference length; no stop token is forced, so every run generates exactly 67).

    .venv/bin/python benchmarks/clipcap_decode.py [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from reference_caption import reference_generate2

from tagger.captioners.clipcap import greedy_decode

SIZES = {
    "tiny (32-d, 2 layers)": {"n_embd": 32, "n_layer": 2, "n_head": 2, "vocab_size": 285},
    "gpt2 124M shape": {"n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257},
}


def measure(config: dict[str, int], batch: int, repeats: int) -> tuple[float, float, bool]:
    """(cached tokens/s, recompute tokens/s, same tokens) for one model size."""
    torch.manual_seed(0)
    last = config["vocab_size"] - 1
    gpt = GPT2LMHeadModel(
        GPT2Config(n_positions=128, bos_token_id=last, eos_token_id=last, **config)
    ).eval()
    prefix = torch.randn(batch, 10, config["n_embd"])
    stop = -1  # never stops: exactly 67 tokens
    start = time.perf_counter()
    for _ in range(repeats):
        cached = greedy_decode(gpt, prefix, stop, 67)
    cached_s = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    for _ in range(repeats):
        full = [reference_generate2(gpt, prefix[i : i + 1], stop, 67) for i in range(batch)]
    full_s = (time.perf_counter() - start) / repeats
    tokens = 67 * batch
    return tokens / cached_s, tokens / full_s, cached == full


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print("model | batch | cached tok/s | recompute tok/s | speed-up | same tokens")
    for name, config in SIZES.items():
        for batch in (1, 8):
            cached, full, same = measure(config, batch, args.repeats)
            print(f"{name} | {batch} | {cached:.0f} | {full:.0f} | {cached / full:.1f}x | {same}")


if __name__ == "__main__":
    main()
