"""Tiny vision-language model folders built in the test session: Florence-2, LLaVA (JoyCaption's
layout: SigLIP vision tower, Llama language model) and Qwen2-VL / Qwen2.5-VL.

Random weights in transformers' own classes, saved with ``save_pretrained`` (config, weights,
processor, tokenizer, chat template), so they load as the Hub checkpoints do. The tokenizers are
byte-level BPEs over printable ASCII plus a few whole words; weights are drawn with a wide spread
so outputs depend on the image and the prompt.
"""

from __future__ import annotations

from pathlib import Path

from tiny_caption import _spread

WORDS = [
    *("a", "the", "dog", "cat", "on", "grass", "red", "blue", "sky", "man", "woman", "tree"),
    *("car", "house", "small", "large", "two", "people", "with", "and", "in", "is", "of"),
    *("describe", "this", "image", "write", "tags", "user", "assistant", "system", "photo"),
    *("girl", "smile"),
]
#: Byte-level BPE symbols: GPT-2's table restricted to printable ASCII and the newline.
ASCII_BYTES = [*range(32, 127), 10]


def _byte_table() -> dict[int, str]:
    """GPT-2's byte -> character table, as transformers defines it."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return bytes_to_unicode()


def bpe(specials: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """vocab and merges of a byte-level BPE spelling each of ``WORDS`` as one token, with and
    without a leading space (``Ġ``)."""
    table = _byte_table()
    vocab: dict[str, int] = {}
    for token in [*specials, *(table[b] for b in ASCII_BYTES)]:
        vocab.setdefault(token, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in WORDS:
        chars = [table[b] for b in word.encode()]
        current = chars[0]
        for char in chars[1:]:
            if (current, char) not in merges:
                merges.append((current, char))
            current += char
            vocab.setdefault(current, len(vocab))
    space = table[ord(" ")]
    for word in WORDS:
        token = "".join(table[b] for b in word.encode())
        merges.append((space, token))
        vocab.setdefault(space + token, len(vocab))
    return vocab, merges


CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}{{ image_marker }}{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|start|>assistant\n{% endif %}"
)


#: A template that places the image itself, in the first user message, and takes the prompt as
#: plain text (the way JoyCaption's model card uses its checkpoint).
PLACING_TEMPLATE = (
    "{{ bos_token }}{% set ns = namespace(placed=false) %}{% for m in messages %}"
    "<|start|>{{ m['role'] }}\n{% if m['role'] == 'user' and not ns.placed %}<image>"
    "{% set ns.placed = true %}{% endif %}{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|start|>assistant\n{% endif %}"
)


def make_florence2_dir(folder: Path, seed: int = 0) -> Path:
    """A Florence-2 folder: BART tokenizer, CLIP image processor (16 px), 1-stage DaViT."""
    import torch
    from transformers import (
        BartTokenizer,
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tokenizer = BartTokenizer(
        vocab=vocab, merges=merges, extra_special_tokens={"image_token": "<image>"}
    )
    images = CLIPImageProcessor(
        size={"height": 16, "width": 16}, crop_size={"height": 16, "width": 16}
    )
    images.do_center_crop = False
    images.image_seq_length = 17  # (16 / 4) ** 2 patches + 1
    parsers = ("pure_text", "description_with_bboxes", "description_with_polygons", "polygons")
    processor = Florence2Processor(
        image_processor=images,
        tokenizer=tokenizer,
        post_processor_config={name: {} for name in (*parsers, "bboxes")},
    )
    text = {
        "model_type": "bart",
        "vocab_size": len(tokenizer),
        "max_position_embeddings": 128,
        "encoder_layers": 1,
        "encoder_ffn_dim": 32,
        "encoder_attention_heads": 2,
        "decoder_layers": 2,
        "decoder_ffn_dim": 32,
        "decoder_attention_heads": 2,
        "d_model": 16,
        "eos_token_id": 2,
        "bos_token_id": 0,
        "pad_token_id": 1,
        "decoder_start_token_id": 2,
        "forced_bos_token_id": 0,
        "dropout": 0.0,
    }
    vision = {
        "depths": [1],
        "patch_size": [7],
        "patch_stride": [4],
        "patch_padding": [3],
        "patch_prenorm": [False],
        "embed_dim": [16],
        "num_heads": [1],
        "num_groups": [1],
        "window_size": 12,
        "projection_dim": 16,
        "drop_path_rate": 0.0,
    }
    config = Florence2Config(
        text_config=text, vision_config=vision, image_token_id=tokenizer.image_token_id
    )
    torch.manual_seed(seed)
    model = Florence2ForConditionalGeneration(config).eval()
    _spread(model, seed, std=0.4)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def make_llava_dir(folder: Path, *, placing: bool = False, seed: int = 0) -> Path:
    """A LLaVA folder shaped like JoyCaption's: SigLIP vision tower (16 px, patch 4), Llama
    language model, full-sequence vision features from the second-to-last layer. ``placing``:
    the chat template places the image itself (``PLACING_TEMPLATE``), else the image is a part
    of the message (the llava-hf templates)."""
    import torch
    from transformers import (
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        Qwen2Tokenizer,
        SiglipImageProcessor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    specials = ["<|begin|>", "<|end|>", "<|start|>", "<image>", "<pad>"]
    vocab, merges = bpe(specials)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        bos_token="<|begin|>",
        eos_token="<|end|>",
        pad_token="<pad>",
        unk_token=None,
        extra_special_tokens={"image_token": "<image>"},
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|start|>"]})
    template = (
        PLACING_TEMPLATE if placing else CHAT_TEMPLATE.replace("{{ image_marker }}", "<image>")
    )
    processor = LlavaProcessor(
        image_processor=SiglipImageProcessor(size={"height": 16, "width": 16}),
        tokenizer=tokenizer,
        patch_size=4,
        vision_feature_select_strategy="full",
        chat_template=template,
        num_additional_image_tokens=0,
    )
    vision = {
        "model_type": "siglip_vision_model",
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 16,
        "patch_size": 4,
    }
    text = {
        "model_type": "llama",
        "vocab_size": len(tokenizer),
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 512,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.image_token_id,
        vision_feature_select_strategy="full",
        vision_feature_layer=-2,
        projector_hidden_act="gelu",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    _spread(model, seed, std=0.4)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def make_qwen2vl_dir(folder: Path, *, v25: bool = False, seed: int = 0) -> Path:
    """A Qwen2-VL (or, ``v25``, Qwen2.5-VL) folder: patch 4, merge 2, images of 16 to 64 px."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2Tokenizer,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    specials = [
        "<|endoftext|>",
        "<|start|>",
        "<|end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
    ]
    vocab, merges = bpe(specials)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=merges, eos_token="<|end|>", pad_token="<|endoftext|>", unk_token=None
    )
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    template = CHAT_TEMPLATE.replace(
        "{{ image_marker }}", "<|vision_start|><|image_pad|><|vision_end|>"
    ).replace("{{ bos_token }}", "")
    sizes = {"patch_size": 4, "merge_size": 2, "temporal_patch_size": 2}
    processor_class = Qwen2_5_VLProcessor if v25 else Qwen2VLProcessor
    processor = processor_class(
        image_processor=Qwen2VLImageProcessor(min_pixels=16 * 16, max_pixels=64 * 64, **sizes),
        video_processor=Qwen2VLVideoProcessor(**sizes),
        tokenizer=tokenizer,
        chat_template=template,
    )
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in specials}
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 1024,
        "rope_parameters": {"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 1e4},
        "bos_token_id": None,
        "eos_token_id": ids["<|end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    common = {"depth": 2, "hidden_size": 16, "num_heads": 2, "patch_size": 4}
    common.update(spatial_merge_size=2, temporal_patch_size=2)
    if v25:
        vision = {**common, "intermediate_size": 32, "out_hidden_size": 16, "window_size": 16}
        vision["fullatt_block_indexes"] = [1]
        config_class, model_class = Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    else:
        vision = {**common, "embed_dim": 16, "mlp_ratio": 2}
        config_class, model_class = Qwen2VLConfig, Qwen2VLForConditionalGeneration
    config = config_class(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = model_class(config).eval()
    _spread(model, seed, std=0.4)
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.eos_token_id = ids["<|end|>"]
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
