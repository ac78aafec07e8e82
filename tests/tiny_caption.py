"""Tiny captioner folders built in the test session: BLIP, CLIP-prefix GPT-2 and open_clip CLIP.

Random weights, real architectures, the documented folder layouts, no downloads. Weights are
initialised with a large spread so that outputs depend on the image.
"""

from __future__ import annotations

import json
from pathlib import Path

BLIP_WORDS = " ".join(
    [
        "a picture of the dog cat on grass in jungle tree red blue sky water man woman",
        "with and sitting standing running field street car house small large two people",
    ]
).split()
GPT2_WORDS = ["Ġa", "Ġdog", "Ġcat", "Ġon", "Ġthe", "Ġgrass", "Ġman", "Ġred", "Ġin", "Ġsky"]
CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def make_blip_dir(folder: Path, seed: int = 0) -> Path:
    """A transformers BLIP save folder (config, weights, processor, BERT tokenizer)."""
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *BLIP_WORDS]
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
        "bos_token_id": vocab.index("[DEC]"),
        "eos_token_id": vocab.index("[SEP]"),
        "sep_token_id": vocab.index("[SEP]"),
        "pad_token_id": 0,
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
    config = BlipConfig(text_config=text, vision_config=vision, projection_dim=16)
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()
    _spread(model, seed)
    model.save_pretrained(folder)
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    tokenizer = BertTokenizer(str(vocab_file), do_lower_case=True, bos_token="[DEC]")
    BlipProcessor(image_processor, tokenizer).save_pretrained(folder)
    return folder


def _spread(model: object, seed: int, std: float = 0.3) -> None:
    """Re-draw every weight matrix with a wide normal so outputs depend on the input."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():  # type: ignore[attr-defined]
            if param.dim() >= 2 and "norm" not in name:
                param.copy_(torch.randn(param.shape, generator=generator) * std)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (the published byte-level BPE mapping)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def write_gpt2_tokenizer(folder: Path) -> int:
    """vocab.json + merges.txt of a tiny byte-level BPE; returns the vocabulary size."""
    symbols = list(bytes_to_unicode().values())
    merges: list[str] = []
    words: list[str] = []
    for word in GPT2_WORDS:
        current = word[0]
        for char in word[1:]:
            merges.append(f"{current} {char}")
            current += char
            words.append(current)
    vocab = {token: i for i, token in enumerate(dict.fromkeys([*symbols, *words]))}
    vocab["<|endoftext|>"] = len(vocab)
    merges = list(dict.fromkeys(merges))
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", "utf-8")
    return len(vocab)


def write_clip_dir(
    folder: Path, name: str, cfg: dict, seed: int = 0, spread: float | None = None
) -> Path:
    """An open_clip folder in the Hub layout (its config and open_clip_model.safetensors) of a
    model config registered as ``name``; ``spread``: weights drawn wider (``_spread``)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}), encoding="utf-8"
    )
    open_clip.factory._MODEL_CONFIGS[name] = cfg
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    if spread is not None:
        _spread(model, seed, std=spread)
    state = {k: v.contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return folder


def make_clip_dir(folder: Path, seed: int = 0) -> Path:
    """An open_clip folder in the Hub layout: its config and open_clip_model.safetensors."""
    return write_clip_dir(folder, "tiny-test-clip", CLIP_CFG, seed)


def make_clipcap_dir(
    folder: Path,
    clip_dir: Path,
    *,
    mapper: str = "mlp",
    normalize: bool = True,
    stale_keys: bool = True,
    seed: int = 0,
    file_name: str = "model.pt",
) -> Path:
    """A CLIP-prefix folder: original-format .pt (with the stale attn.bias keys old files
    carry), clipcap.json, GPT-2 tokenizer files, and a CLIP folder inside it."""
    import shutil

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from tagger.captioners import clipcap_nn

    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = write_gpt2_tokenizer(folder)
    shutil.copytree(clip_dir, folder / "clip", dirs_exist_ok=True)
    prefix_length, prefix_size = 4, CLIP_CFG["embed_dim"]
    torch.manual_seed(seed)
    gpt = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=vocab_size,
            n_embd=32,
            n_layer=2,
            n_head=2,
            n_positions=128,
            bos_token_id=vocab_size - 1,
            eos_token_id=vocab_size - 1,
        )
    )
    _spread(gpt, seed, std=0.2)
    if mapper == "mlp":
        project = clipcap_nn.MLPMapper([prefix_size, 32 * prefix_length // 2, 32 * prefix_length])
    else:
        project = clipcap_nn.TransformerMapper(prefix_size, 32, prefix_length, 3, num_layers=2)
    model = clipcap_nn.ClipCaptionModel(gpt, project, prefix_length).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    if stale_keys:  # what transformers 4.11-era GPT-2 saved as persistent buffers
        for layer in range(2):
            state[f"gpt.transformer.h.{layer}.attn.bias"] = torch.tril(torch.ones(1, 1, 128, 128))
            state[f"gpt.transformer.h.{layer}.attn.masked_bias"] = torch.tensor(-1e4)
    if file_name.endswith(".safetensors"):
        from safetensors.torch import save_file

        state.pop("gpt.lm_head.weight")  # tied to wte; safetensors refuses shared tensors
        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / file_name))
    else:
        torch.save(state, folder / file_name)
    config = {
        "checkpoint": file_name,
        "mapper": mapper,
        "prefix_length": prefix_length,
        "prefix_size": prefix_size,
        "normalize": normalize,
        "clip_model": "clip",
        "clip_pretrained": None,
        "clip_length": 3,
        "num_layers": 2,
        "gpt2": {"n_head": 2},
    }
    (folder / "clipcap.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return folder
