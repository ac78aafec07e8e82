"""Dense captions from vision-language models (VLMs), guided by the tagger's tags.

Two backends behind the captioner interface of ``tagger.captioners``:

- any OpenAI-compatible chat-completions endpoint (``tagger.vlm.api``: OpenAI, Gemini,
  OpenRouter, vLLM, llama.cpp's server, Ollama, LM Studio), many requests in flight under
  requests- and tokens-per-minute limits, retried on 429 / 5xx / timeouts;
- local transformers models (``tagger.vlm.local``: Florence-2, LLaVA / JoyCaption, Qwen2-VL and
  Qwen2.5-VL), one batched ``generate`` per batch.

Prompts are templates (``tagger.vlm.templates``) filled from the run (the tagger's tags, another
captioner's caption, the file's name, the caption already there); replies are cleaned and
refusals rejected by documented rules (``tagger.vlm.clean``). Options: ``tagger.vlm.options``.
Nothing heavy is imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tagger.vlm.base import VlmCaptioner

#: Captioner families served by this package.
VLM_FAMILIES = ("vlm-api", "florence2", "llava", "qwen2-vl")


def is_vlm_family(family: str) -> bool:
    """True for a captioner family of this package.

    >>> is_vlm_family("florence2"), is_vlm_family("blip")
    (True, False)
    """
    return family in VLM_FAMILIES


def vlm_class(family: str) -> type[VlmCaptioner]:
    """The captioner class of a VLM family."""
    if family == "vlm-api":
        from tagger.vlm.api import ApiCaptioner

        return ApiCaptioner
    from tagger.vlm import local

    classes = {
        "florence2": local.Florence2Captioner,
        "llava": local.LlavaCaptioner,
        "qwen2-vl": local.QwenVlCaptioner,
    }
    return classes[family]
