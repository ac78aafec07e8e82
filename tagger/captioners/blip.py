"""BLIP captioning through transformers (``BlipForConditionalGeneration`` + ``BlipProcessor``).

Preprocessing is the checkpoint's own ``BlipImageProcessor`` (384 px bicubic squash, CLIP mean
and std). With a conditional prompt (default "a picture of", the prompt the captioners were
trained with) the prompt is given to the decoder and stripped from the output, as the original
BLIP does. Decoding options come from ``CaptionOptions``; their defaults (3 beams, repetition
penalty 1.2, no repeated 3-grams, 5..40 new tokens) stop the known repetition loops. With more
than one beam, beam search ends as soon as that many finished captions exist (transformers'
``early_stopping=True``; the original BLIP code leaves transformers' default, which keeps
searching while a longer caption could still score better), as docs/captioners.md states.
Only transformers API present in 4.30 (AUTOMATIC1111) and 4.46+ (Forge) is used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tagger.captioners.base import Captioner
from tagger.captioners.common import require
from tagger.options import CaptionOptions

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger("tagger")


def strip_prompt(text: str, prompt: str) -> str:
    """Remove a leading conditional prompt from a decoded caption (any case and spacing).

    >>> strip_prompt("a picture of a dog on the grass", "a picture of")
    'a dog on the grass'
    >>> strip_prompt("two cats", "a picture of")
    'two cats'
    """
    words, lead = text.split(), prompt.split()
    if lead and [w.lower() for w in words[: len(lead)]] == [w.lower() for w in lead]:
        words = words[len(lead) :]
    return " ".join(words)


class BlipCaptioner(Captioner):
    """A BLIP captioning model: a transformers save folder or a Hub repository."""

    family = "blip"
    default_beams = 3
    default_max_tokens = 40

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model: Any = None
        self.processor: Any = None

    def _load(self) -> None:
        """Load processor and model from the folder or the Hub (pinned revision)."""
        transformers = require("transformers")
        require("torch")
        processor, model = self._pretrained(
            lambda source, kwargs: (
                transformers.BlipProcessor.from_pretrained(source, **kwargs),
                transformers.BlipForConditionalGeneration.from_pretrained(source, **kwargs),
            )
        )
        self.processor = processor
        self.model = model.to(self.device, self.dtype).eval()

    def _release(self) -> None:
        self.model = None
        self.processor = None

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One RGB image -> ``[3, H, W]`` float32 pixel values (the checkpoint's processor)."""
        self.load()
        return self.processor.image_processor(image, return_tensors="pt")["pixel_values"][0]

    def generate_kwargs(self, options: CaptionOptions) -> dict[str, Any]:
        """generate() arguments for the options (beams, lengths, penalties, or sampling)."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_tokens(options),
            "min_new_tokens": min(options.min_new_tokens, self.max_tokens(options)),
            "repetition_penalty": options.repetition_penalty,
            "no_repeat_ngram_size": options.no_repeat_ngram_size,
        }
        if options.sample:
            kwargs.update(do_sample=True, top_p=options.top_p, temperature=options.temperature)
            kwargs["num_beams"] = 1
        else:
            kwargs.update(do_sample=False, num_beams=self.beams(options))
            if self.beams(options) > 1:
                kwargs["early_stopping"] = True  # stop at num_beams finished captions
        return kwargs

    def forward(self, batch: torch.Tensor, options: CaptionOptions) -> list[list[int]]:
        """Generate for ``[N, 3, H, W]`` pixel values; returns the new token ids per image."""
        torch = require("torch")
        self.load()
        pixels = batch.to(self.device, self.dtype)
        count = pixels.shape[0]
        inputs: dict[str, Any] = {}
        if options.prompt.strip():
            encoded = self.processor.tokenizer(options.prompt.strip(), return_tensors="pt")
            ids = encoded["input_ids"].repeat(count, 1).to(self.device)
            inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if options.sample and options.seed is not None:
            torch.manual_seed(options.seed)
        with torch.inference_mode():
            out = self.model.generate(
                pixel_values=pixels, **inputs, **self.generate_kwargs(options)
            )
        return [row.tolist() for row in out]

    def postprocess(self, ids: Sequence[int], options: CaptionOptions) -> str:
        """Token ids -> text without special tokens and without the conditional prompt."""
        text = self.processor.tokenizer.decode(list(ids), skip_special_tokens=True)
        return strip_prompt(text.strip(), options.prompt)
