"""The CLIP Interrogator's and the scorers' modules import without the host, without Gradio and
without any heavy library (torch, open_clip, transformers, the clip-interrogator package...)."""

from __future__ import annotations

from isolation import assert_light_imports

MODULES = [
    "tagger.interrogator", "tagger.interrogator.options", "tagger.interrogator.banks",
    "tagger.interrogator.rules", "tagger.interrogator.textenc", "tagger.interrogator.engine",
    "tagger.interrogator.captioner", "tagger.scoring", "tagger.scoring.itm",
    "tagger.scoring.clipscore", "tagger.scoring.rerank", "tagger.scoring.run",
    "tagger.cli.score", "tagger.cli.captioner_flags", "tagger.api.interrogator",
    "tagger.ui.interrogator",
]  # fmt: skip
HEAVY = ["torch", "transformers", "open_clip", "safetensors", "numpy", "PIL", "onnxruntime",
         "clip_interrogator", "fastapi", "gradio", "huggingface_hub", "torchvision"]  # fmt: skip


def test_modules_import_with_host_and_gradio_blocked_and_nothing_heavy() -> None:
    assert_light_imports(MODULES, HEAVY)


def test_pure_rules_need_no_model() -> None:
    from tagger.interrogator.rules import caption_and_terms, chunk_plan, classic_prompt

    assert chunk_plan(111_867, 2048)[1] == 37  # the library's banks: 55 chunks of 37 terms
    assert len(chunk_plan(111_867, 2048)[0]) == 55
    assert chunk_plan(2048, 2048) == ([(0, 2048)], 0)
    assert (
        classic_prompt("a cat", None, "by X", None, "cubism", ["soft"])
        == "a cat, by X, cubism, soft"
    )
    assert classic_prompt(None, "a photo", None, "Y", None, None) == "a photo, Y"
    assert classic_prompt("", "a photo", None, "Y", None, None) == ", a photo, Y"  # the library's
    assert caption_and_terms("a cat", []) == "a cat"
