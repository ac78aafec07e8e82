"""Tiny models and small banks for the CLIP Interrogator and the image-text scorers, built in
the test session: an open_clip CLIP with CLIP's full 77-token context, clip-interrogator data
files of made-up terms, a BLIP image-text matching folder, and the clip-interrogator package
driven with the same models.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tiny_caption import BLIP_WORDS, _spread, write_clip_dir


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch on one thread: tiny models run many small operations, which on a shared 2-core
    machine go many times faster without intra-op threads waiting for each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


#: A tiny CLIP whose text tower has CLIP's real context (77), so chains run many steps.
CI_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
WORDS = [
    "red",
    "blue",
    "green",
    "golden",
    "dark",
    "light",
    "soft",
    "sharp",
    "glossy",
    "matte",
    "ancient",
    "modern",
    "tiny",
    "huge",
    "cute",
    "eerie",
    "calm",
    "wild",
    "bright",
    "dim",
    "misty",
    "sunny",
    "rainy",
    "neon",
    "pastel",
    "vivid",
    "moody",
    "grainy",
    "detailed",
    "painterly",
    "cinematic",
    "dramatic",
    "serene",
    "cozy",
    "gloomy",
    "ornate",
    "minimal",
    "surreal",
    "rustic",
]
NAMES = [
    "anna",
    "bruno",
    "carla",
    "dmitri",
    "elena",
    "felix",
    "greta",
    "hugo",
    "ines",
    "jonas",
    "kira",
    "luca",
    "mara",
    "nils",
]


def make_ci_clip_dir(folder: Path, seed: int = 0) -> Path:
    """An open_clip folder (Hub layout) holding the tiny 77-token CLIP, weights spread wide."""
    return write_clip_dir(folder, "tiny-ci-clip", CI_CLIP_CFG, seed, spread=0.2)


def terms(count: int, seed: int, longest: int = 3, names: bool = False) -> list[str]:
    """``count`` distinct made-up terms of 1..``longest`` words."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < count:
        pool = NAMES if names else WORDS
        words = [rng.choice(pool) for _ in range(rng.randint(1, longest))]
        term = " ".join(words).title() if names else " ".join(words)
        if term not in out:
            out.append(term)
    return out


BANK_SIZES = {"artists": 40, "flavors": 400, "mediums": 12, "movements": 15, "negative": 10}


#: Flavors that tie or tokenize unusually: case variants (the same tokens: an exact tie the
#: library breaks by set order), a repeat, punctuation and non-ASCII at the join.
ODD_FLAVORS = [
    "Misty Neon",
    "misty neon",
    "MISTY NEON",
    "misty neon",
    "rock & roll",
    "artist's dream",
    "café—noir",
    "8k!",
    "trending on artstation",
    "by Anna Bruno",
]


def make_banks(folder: Path, sizes: dict[str, int] | None = None) -> Path:
    """clip-interrogator data files (artists.txt ... negative.txt) of made-up terms."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, (name, count) in enumerate((sizes or BANK_SIZES).items()):
        artists = name == "artists"
        items = terms(count, seed=index, longest=2 if artists else 3, names=artists)
        if name == "flavors":
            items = [*items[: count // 2], *ODD_FLAVORS, *items[count // 2 :]]
        (folder / f"{name}.txt").write_text("\n".join(items) + "\n", encoding="utf-8")
    return folder


def package_interrogator(
    clip: Any,
    data: Path,
    cache: Path,
    *,
    caption_model: Any = None,
    caption_processor: Any = None,
    chunk_size: int = 64,
    intermediate: int = 48,
) -> Any:
    """clip-interrogator's own ``Interrogator`` on a loaded ``ClipModel`` (``clip``) and the
    banks in ``data``, caching embeddings in ``cache``, never downloading."""
    from clip_interrogator import Config, Interrogator

    config = Config(
        clip_model_name=f"{clip.name}/none",
        cache_path=str(cache),
        download_cache=False,
        data_path=str(data),
        chunk_size=chunk_size,
        flavor_intermediate_count=intermediate,
        quiet=True,
        device="cpu",
    )
    config.clip_model = clip.model
    config.clip_preprocess = clip.transform
    config.caption_model_name = "blip-large" if caption_model is not None else None
    config.caption_model = caption_model
    config.caption_processor = caption_processor
    return Interrogator(config)


def make_itm_dir(folder: Path, seed: int = 0) -> Path:
    """A transformers BLIP image-text matching folder (BlipForImageTextRetrieval)."""
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForImageTextRetrieval,
        BlipImageProcessor,
        BlipProcessor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]", *BLIP_WORDS, *WORDS]
    vocab = list(dict.fromkeys(vocab))
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    text = {
        "vocab_size": len(vocab),
        "hidden_size": 32,
        "encoder_hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 64,
        "pad_token_id": 0,
        "sep_token_id": vocab.index("[SEP]"),
        "bos_token_id": vocab.index("[DEC]"),
        "projection_dim": 16,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
        "projection_dim": 16,
    }
    config = BlipConfig(
        text_config=text, vision_config=vision, projection_dim=16, image_text_hidden_size=16
    )
    torch.manual_seed(seed)
    model = BlipForImageTextRetrieval(config).eval()
    _spread(model, seed, std=0.2)
    model.save_pretrained(folder)
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    tokenizer = BertTokenizer(str(vocab_file), do_lower_case=True)
    BlipProcessor(image_processor, tokenizer).save_pretrained(folder)
    return folder
