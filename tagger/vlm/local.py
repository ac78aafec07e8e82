"""Local vision-language models on the webui's torch, through transformers' own classes.

- **Florence-2** (``Florence2ForConditionalGeneration``, transformers' native port; the
  ``florence-community`` checkpoints): prompted by a task token (``<MORE_DETAILED_CAPTION>``;
  PromptGen's ``<GENERATE_TAGS>``, ``<MIXED_CAPTION>``...), encoder-decoder, 3 beams as the model
  card runs it unless ``num_beams`` says otherwise.
- **LLaVA** (``LlavaForConditionalGeneration``): JoyCaption and the llava-hf checkpoints; the
  prompt goes through the checkpoint's chat template with the image first.
- **Qwen2-VL / Qwen2.5-VL** (``Qwen2VLForConditionalGeneration`` /
  ``Qwen2_5_VLForConditionalGeneration``): the same, with the processor's dynamic resolution
  (images reduced to at most a megapixel first, which bounds the image tokens).

A batch is one ``generate`` call on the processor's padded batch (left padding for the
decoder-only models), greedy unless ``temperature`` is set (then sampled, ``seed`` first). The
caption is the decoded new tokens, special tokens removed, then cleaned like an endpoint's reply.
On CUDA the weights are bfloat16 where the GPU supports it, else float16 (``dtype``); float32 on
the CPU or with ``--no-half``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tagger.captioners.common import require
from tagger.errors import OptionsError
from tagger.vlm.base import PromptPreview, VlmCaptioner, VlmItem, VlmReply, require_template_free

if TYPE_CHECKING:
    import torch

log = logging.getLogger("tagger")

#: Florence-2 tasks that give text (the others give boxes or polygons, not captions).
FLORENCE_TEXT_TASKS = ("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>", "<OCR>")
FLORENCE_BOX_TASKS = (
    "<OD>",
    "<DENSE_REGION_CAPTION>",
    "<REGION_PROPOSAL>",
    "<CAPTION_TO_PHRASE_GROUNDING>",
    "<REFERRING_EXPRESSION_SEGMENTATION>",
    "<REGION_TO_SEGMENTATION>",
    "<OPEN_VOCABULARY_DETECTION>",
    "<OCR_WITH_REGION>",
)
DEFAULT_FLORENCE_TASK = "<MORE_DETAILED_CAPTION>"
#: Qwen2-VL images are reduced to at most this many pixels.
QWEN_MAX_PIXELS = 1024 * 1024


class LocalVlmCaptioner(VlmCaptioner):
    """A transformers VLM in a save folder or a Hub repository (pinned revision)."""

    family = "vlm-local"
    #: The transformers model class (by name) that loads the checkpoint.
    model_class = "AutoModelForImageTextToText"
    #: Decoder-only models continue the prompt (left padding; new tokens are after it).
    decoder_only = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model: Any = None
        self.processor: Any = None

    @property
    def dtype(self) -> torch.dtype:
        """float32 on the CPU or without ``half``; on CUDA ``dtype`` (auto: bfloat16 where
        supported, else float16)."""
        torch = require("torch")
        if self.device is None or self.device.type != "cuda" or not self.half:
            return torch.float32
        chosen = self.vlm.dtype
        if chosen == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return getattr(torch, chosen)

    def _load(self) -> None:
        """Processor and model from the folder or the Hub."""
        transformers = require("transformers")
        require("torch")
        processor, model = self._pretrained(
            lambda source, kwargs: (
                transformers.AutoProcessor.from_pretrained(source, **kwargs),
                getattr(transformers, self.model_class).from_pretrained(
                    source, dtype=self.dtype, **kwargs
                ),
            )
        )
        if self.decoder_only:
            processor.tokenizer.padding_side = "left"
        self.processor = processor
        self.model = model.to(self.device).eval()

    def _release(self) -> None:
        self.model = None
        self.processor = None

    @property
    def preferred_batch(self) -> int:
        """1 on the CPU, 8 on a GPU."""
        return 8 if self.device is not None and self.device.type == "cuda" else 1

    # -- prompts -----------------------------------------------------------------------------
    def chat(self, item: VlmItem) -> list[dict[str, Any]]:
        """The chat messages of one item: the system prompt, then the image and the prompt."""
        messages: list[dict[str, Any]] = []
        system = self.system_prompt(item)
        if system:
            messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
        messages.append(
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": self.user_prompt(item)}],
            }
        )
        return messages

    def model_prompt(self, item: VlmItem) -> str:
        """The text the processor gets for one item: the checkpoint's chat template applied.

        Templates differ in where the image goes. JoyCaption's model card passes the prompt as
        plain text and its template places the image; the llava-hf and Qwen templates take the
        image as a part of the message (``{"type": "image"}``). The plain form is used when the
        template places the image itself, else the parts form; a template that places no image
        either way gets the image token before the prompt (LLaVA 1.5's convention).
        """
        image_token = getattr(self.processor, "image_token", None) or "<image>"
        plain = [
            {"role": m["role"], "content": "".join(p.get("text", "") for p in m["content"])}
            for m in self.chat(item)
        ]
        text = self._apply_template(plain)
        if image_token in text:
            return text
        text = self._apply_template(self.chat(item))
        if image_token in text:
            return text
        plain[-1]["content"] = f"{image_token}\n{plain[-1]['content']}"
        return self._apply_template(plain)

    def _apply_template(self, messages: list[dict[str, Any]]) -> str:
        """The chat template applied to ``messages`` ('' when it cannot render them)."""
        try:
            return self.processor.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
        except Exception:  # a template that does not take this message form
            return ""

    def preview(self, items: Sequence[VlmItem]) -> list[PromptPreview]:
        """The prompts of these items."""
        self.load()
        return [
            PromptPreview(
                self.system_prompt(item),
                self.user_prompt(item),
                self.describe_image(item.image),
                {"prompt": self.model_prompt(item)},
            )
            for item in items
        ]

    # -- generation -----------------------------------------------------------------------------
    def generate_kwargs(self) -> dict[str, Any]:
        """``generate()`` arguments: greedy, or sampled when a temperature is set."""
        kwargs: dict[str, Any] = {"max_new_tokens": self.vlm.max_tokens}
        if self.vlm.temperature:
            kwargs.update(do_sample=True, temperature=self.vlm.temperature)
            if self.vlm.top_p is not None:
                kwargs["top_p"] = self.vlm.top_p
        else:
            kwargs["do_sample"] = False
        return kwargs

    def inputs(self, items: Sequence[VlmItem]) -> Any:
        """The processor's padded batch for the items, on the model's device."""
        texts = [self.model_prompt(item) for item in items]
        inputs = self.processor(
            images=[item.image for item in items], text=texts, padding=True, return_tensors="pt"
        )
        inputs = inputs.to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        return inputs

    def _generate(self, items: list[VlmItem]) -> list[VlmReply]:
        """One batched ``generate`` call; one reply per item."""
        torch = require("torch")
        inputs = self.inputs(items)
        kwargs = self.generate_kwargs()
        kwargs.update(self.extra_generate_kwargs())
        if kwargs.get("do_sample") and self.vlm.seed is not None:
            torch.manual_seed(self.vlm.seed)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        prompt_lengths = inputs["attention_mask"].sum(dim=1).tolist()
        new = out[:, inputs["input_ids"].shape[1] :] if self.decoder_only else out
        replies = []
        for row, prompt_length, item in zip(new, prompt_lengths, items, strict=True):
            ids = self.trim(row.tolist())
            finished = self._ends(ids)
            text = self.decode(ids, item)
            usage = {"prompt_tokens": float(prompt_length), "completion_tokens": float(len(ids))}
            replies.append(
                VlmReply(
                    text=text,
                    usage=usage,
                    finish=None if finished else "length",
                    prompt=self.user_prompt(item),
                )
            )
        return replies

    def extra_generate_kwargs(self) -> dict[str, Any]:
        """Family-specific ``generate()`` arguments."""
        return {"num_beams": 1}

    def _stop_ids(self) -> set[int]:
        """Token ids that end a reply (the generation config's and the tokenizer's)."""
        config = getattr(self.model, "generation_config", None)
        eos = getattr(config, "eos_token_id", None)
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        tokenizer = self.processor.tokenizer
        if tokenizer.eos_token_id is not None:
            ids.add(tokenizer.eos_token_id)
        return ids

    def trim(self, ids: list[int]) -> list[int]:
        """Generated ids up to the first stop token (included) and without padding after it."""
        stops = self._stop_ids()
        for position, token in enumerate(ids):
            if token in stops:
                return ids[: position + 1]
        pad = self.processor.tokenizer.pad_token_id
        while ids and pad is not None and ids[-1] == pad and pad not in stops:
            ids = ids[:-1]
        return ids

    def _ends(self, ids: list[int]) -> bool:
        """True when the reply ended by itself (with a stop token), not at the token limit."""
        return bool(ids) and ids[-1] in self._stop_ids()

    def decode(self, ids: list[int], item: VlmItem) -> str:
        """Generated ids -> text, special tokens removed (as the model cards decode)."""
        return self.processor.tokenizer.decode(
            ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
        ).strip()


class LlavaCaptioner(LocalVlmCaptioner):
    """LLaVA checkpoints (JoyCaption Beta One, llava-hf)."""

    family = "llava"
    model_class = "LlavaForConditionalGeneration"


class QwenVlCaptioner(LocalVlmCaptioner):
    """Qwen2-VL and Qwen2.5-VL (the checkpoint's config names which)."""

    family = "qwen2-vl"

    def prepare_image(self, image: Any) -> Any:
        """The RGB image, reduced to at most ``QWEN_MAX_PIXELS`` pixels (the processor's dynamic
        resolution would otherwise spend an image token on every 28 x 28 pixels of it)."""
        from PIL import Image

        rgb = image.convert("RGB")
        pixels = rgb.width * rgb.height
        if pixels <= QWEN_MAX_PIXELS:
            return rgb
        scale = (QWEN_MAX_PIXELS / pixels) ** 0.5
        size = (max(1, int(rgb.width * scale)), max(1, int(rgb.height * scale)))
        return rgb.resize(size, Image.Resampling.BICUBIC)


class Florence2Captioner(LocalVlmCaptioner):
    """Florence-2 (native transformers checkpoints), prompted by a task token."""

    family = "florence2"
    model_class = "Florence2ForConditionalGeneration"
    decoder_only = False
    uses_template = False
    default_beams = 3

    def check_options(self) -> None:
        """A task token, never a template; a task that gives text."""
        require_template_free(self)
        task = self.task
        if task in FLORENCE_BOX_TASKS:
            raise OptionsError(
                f"Florence-2 task {task} gives boxes or regions, not a caption: use "
                f"{', '.join(FLORENCE_TEXT_TASKS)} (or a PromptGen task such as <GENERATE_TAGS>)"
            )
        if not (task.startswith("<") and task.endswith(">")):
            raise OptionsError(
                f"Florence-2 task {task!r} is not a task token such as <MORE_DETAILED_CAPTION>"
            )

    def _load(self) -> None:
        """Refuse, with the fix, a folder in Florence-2's original remote-code layout."""
        if self.spec.path is not None and is_remote_code_florence(self.spec.path):
            from tagger.errors import ModelLoadError

            raise ModelLoadError(
                f"{self.spec.path} holds Florence-2 in its original remote-code layout, which "
                "transformers' native Florence-2 does not load (and tagger never runs remote "
                "code): convert it with transformers' convert_florence2_original_pytorch_to_hf.py "
                "and use the converted folder (docs/vlm.md, PromptGen)"
            )
        super()._load()

    @property
    def task(self) -> str:
        """The task token (``--vlm-task``, default ``<MORE_DETAILED_CAPTION>``)."""
        return (self.vlm.task or "").strip() or DEFAULT_FLORENCE_TASK

    def user_prompt(self, item: VlmItem) -> str:
        """The task token."""
        return self.task

    def system_prompt(self, item: VlmItem) -> str:
        """Florence-2 has no system prompt."""
        return ""

    def model_prompt(self, item: VlmItem) -> str:
        """The task token, as the processor takes it."""
        return self.task

    def extra_generate_kwargs(self) -> dict[str, Any]:
        """3 beams, as the model card runs it."""
        return {"num_beams": self.num_beams}

    @property
    def num_beams(self) -> int:
        """Beams for generate (the model card's 3, unless sampling)."""
        return 1 if self.vlm.temperature else self.default_beams

    def decode(self, ids: list[int], item: VlmItem) -> str:
        """Generated ids -> the task's answer, as the model card reads it (decoded with the
        special tokens, then ``post_process_generation``)."""
        text = self.processor.tokenizer.decode(ids, skip_special_tokens=False)
        try:
            answer = self.processor.post_process_generation(
                text, task=self.task, image_size=item.image.size
            )[self.task]
        except (ValueError, KeyError):  # a processor saved without its post-processing config
            return self.processor.tokenizer.decode(ids, skip_special_tokens=True).strip()
        return answer if isinstance(answer, str) else str(answer)

    def _ends(self, ids: list[int]) -> bool:
        """BART's generation forces an end token at the token limit, so a reply of
        ``max_tokens`` tokens was cut there."""
        return super()._ends(ids) and len(ids) < self.vlm.max_tokens

    def trim(self, ids: list[int]) -> list[int]:
        """The decoder's ids after its start token, up to the first end token."""
        start = getattr(self.model.config, "decoder_start_token_id", None)
        if start is None:
            start = getattr(self.model.config.text_config, "decoder_start_token_id", None)
        if ids and start is not None and ids[0] == start:
            ids = ids[1:]
        return super().trim(ids)


def is_remote_code_florence(folder: Any) -> bool:
    """True for a Florence-2 folder in the original remote-code layout (``auto_map`` in its
    config, or a ``florence2_language`` text config), which the native class cannot load."""
    import json
    from pathlib import Path

    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    text = config.get("text_config") or {}
    return bool(config.get("auto_map")) or text.get("model_type") == "florence2_language"
