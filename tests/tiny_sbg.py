"""A tiny Selective Blind Guessing folder built in the test session.

The published layout with small data: ``all_labels.pkl`` and ``encyclopedia.pkl`` (pickled as the
paper's notebook pickles them), a random-weight GPT-2 generator saved by transformers with the
published config's ``task_specific_params``, GPT-2 tokenizer files, a tiny open_clip CLIP and
``sbg.json``.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

#: (keyword, part of speech, frequency), most frequent first, as all_labels.pkl holds them.
LABELS = [
    ("a", "NOUN", 900),
    ("in", "ADV", 800),
    ("be", "VERB", 700),
    ("dog", "NOUN", 600),
    ("man", "NOUN", 500),
    ("white", "ADJ", 450),
    ("grass", "NOUN", 400),
    ("run", "VERB", 380),
    ("black", "ADJ", 350),
    ("water", "NOUN", 300),
    ("two", "NUM", 280),
    ("street", "NOUN", 250),
    ("young", "ADJ", 240),
    ("ball", "NOUN", 230),
    ("down", "ADV", 220),
    ("beach", "NOUN", 210),
    ("red", "ADJ", 200),
    ("shirt", "NOUN", 190),
    ("snow", "NOUN", 180),
    ("child", "NOUN", 170),
    ("up", "ADV", 160),
    ("boy", "NOUN", 150),
    ("small", "ADJ", 140),
    ("field", "NOUN", 130),
    ("girl", "NOUN", 120),
    ("over", "ADV", 110),
    ("bike", "NOUN", 100),
    ("brown", "ADJ", 90),
    ("crowd", "NOUN", 80),
    ("rock", "NOUN", 70),
]

#: The published structure with few members; "rural landscape" has none, as can happen.
ENCYCLOPEDIA = {
    "scenery": {
        "sky": ["air", "cloud", "sun"],
        "mountain": ["mountain", "hill", "rock"],
        "beach": ["beach", "shore"],
        "city landscape": ["building", "street"],
        "rural landscape": [],
        "indoor": ["room", "kitchen", "table", "bed"],
    },
    "human": ["man", "boy", "girl", "woman", "people", "child", "skier"],
    "animal": {
        "mammal": ["dog", "horse", "cat"],
        "bird": ["bird", "duck"],
        "fish": ["fish"],
    },
    "plant": {"tree": ["tree", "branch"], "flower": ["flower", "rose"], "grass": ["grass"]},
    "object": {
        "vehicle": ["bike", "car", "boat"],
        "tool": ["ball", "racket"],
        "clothing and fashion": ["shirt", "hat"],
        "food": [],
    },
    "activity": {
        "moving": ["run", "jump", "walk"],
        "holding": ["hold", "carry"],
        "leisure activity": ["play", "swim", "ski"],
    },
    "weather": {"sunny": ["shine"], "snowy": ["snow"], "rainy": ["rain", "pour"]},
    "time": {"morning": ["day"], "evening": [], "night": ["dark"]},
    "number": ["two", "one"],
    "adverb": ["in", "down"],
    "adjective": ["white", "black"],
}

GENERATOR_CONFIG = {
    "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}}
}


def make_sbg_dir(
    folder: Path, clip_dir: Path, *, seed: int = 0, max_length: int = 40, json_labels: bool = False
) -> Path:
    """A complete SBG folder (see the module docstring); returns it."""
    import torch
    from tiny_caption import _spread, write_gpt2_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    folder.mkdir(parents=True, exist_ok=True)
    if json_labels:
        (folder / "all_labels.json").write_text(json.dumps(LABELS), encoding="utf-8")
        (folder / "encyclopedia.json").write_text(json.dumps(ENCYCLOPEDIA), encoding="utf-8")
    else:
        with (folder / "all_labels.pkl").open("wb") as handle:
            pickle.dump(LABELS, handle)
        with (folder / "encyclopedia.pkl").open("wb") as handle:
            pickle.dump(ENCYCLOPEDIA, handle)
    vocab_size = write_gpt2_tokenizer(folder)
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab_size,
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=128,
        bos_token_id=vocab_size - 1,
        eos_token_id=vocab_size - 1,
        **GENERATOR_CONFIG,
    )
    generator = GPT2LMHeadModel(config).eval()
    _spread(generator, seed, std=0.15)
    generator.save_pretrained(folder / "top_hierarchy")
    shutil.copytree(clip_dir, folder / "clip", dirs_exist_ok=True)
    settings = {"clip_model": "clip", "clip_pretrained": None, "max_length": max_length}
    (folder / "sbg.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
    return folder
