"""BLIP image-text matching through transformers (``BlipForImageTextRetrieval``).

For an image and a text, two scores:

- **ITM**: the image-text matching head's probability that the text describes the image
  (softmax of its two logits, the "match" one), from the text encoder cross-attending to the
  image (``use_itm_head=True``);
- **ITC**: the cosine of the image's and the text's projected embeddings, each from its own
  encoder (``use_itm_head=False``).

Both are what ``BlipForImageTextRetrieval`` computes; here the vision encoder runs once per image
for both scores and every text of the image, and pairs run in batches.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagger.captioners.base import TorchModel
from tagger.captioners.common import require
from tagger.errors import ModelNotFoundError
from tagger.registry import BLIP_FILES, ModelSpec, default_models_dirs

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger("tagger")

FAMILY = "blip-itm"
ARCHITECTURE = "BlipForImageTextRetrieval"
#: Image-text pairs per text-encoder run.
PAIR_BATCH = 64
DEFAULT_SCORER = "blip-itm-base-coco"

# Revisions follow ``main`` until a commit hash has been verified against the Hub.
ITM_ENTRIES: tuple[ModelSpec, ...] = (
    ModelSpec(
        key="blip-itm-base-coco",
        family=FAMILY,
        repo_id="Salesforce/blip-itm-base-coco",
        revision="main",
        files=BLIP_FILES,
        input_size=384,
        description="BLIP ViT-B/16 image-text matching, COCO",
        aliases=("blip-itm-base",),
    ),
    ModelSpec(
        key="blip-itm-large-coco",
        family=FAMILY,
        repo_id="Salesforce/blip-itm-large-coco",
        revision="main",
        files=BLIP_FILES,
        input_size=384,
        description="BLIP ViT-L/16 image-text matching, COCO",
        aliases=("blip-itm-large", "blip-itm"),
    ),
)
_BY_NAME = {name: spec for spec in ITM_ENTRIES for name in (spec.key, *spec.aliases)}


@dataclass(frozen=True)
class PairScore:
    """One image-text pair's scores."""

    itm: float
    itc: float

    def as_dict(self) -> dict[str, float]:
        """``{"itm": ..., "itc": ...}`` rounded to 6 digits."""
        return {"itm": round(self.itm, 6), "itc": round(self.itc, 6)}


def is_itm_folder(folder: Path) -> bool:
    """True for a transformers BLIP folder saved from ``BlipForImageTextRetrieval``."""
    config = folder / "config.json"
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(data, dict)
        and data.get("model_type") == "blip"
        and ARCHITECTURE in (data.get("architectures") or [])
    )


def itm_models(models_dirs: Iterable[str | os.PathLike[str]] | None = None) -> list[ModelSpec]:
    """Local BLIP ITM folders (by folder name), then the registry's."""
    seen: dict[str, ModelSpec] = {}
    for root in default_models_dirs() if models_dirs is None else models_dirs:
        folder = Path(root).expanduser()
        if not folder.is_dir():
            continue
        for child in sorted(folder.iterdir(), key=lambda p: p.name):
            if child.is_dir() and is_itm_folder(child):
                seen.setdefault(child.name, _local(child))
    return [*seen.values(), *(s for s in ITM_ENTRIES if s.key not in seen)]


def _local(folder: Path) -> ModelSpec:
    return ModelSpec(
        key=folder.name,
        family=FAMILY,
        path=folder.resolve(),
        files=BLIP_FILES,
        input_size=384,
        description=f"local BLIP ITM folder {folder}",
    )


def resolve_itm(
    name: str, models_dirs: Iterable[str | os.PathLike[str]] | None = None
) -> ModelSpec:
    """The BLIP ITM model a user named: a folder, a folder name under a models folder, or a
    registry key (``blip-itm-base-coco``, ``blip-itm-large-coco``)."""
    text = str(name).strip()
    if not text:
        raise ModelNotFoundError("no scorer named: use blip-itm-base-coco or a BLIP ITM folder")
    path = Path(text).expanduser()
    dirs = default_models_dirs() if models_dirs is None else list(models_dirs)
    for candidate in [path, *(Path(d).expanduser() / text for d in dirs)]:
        if candidate.is_dir():
            if is_itm_folder(candidate):
                return _local(candidate)
            if candidate == path and (os.sep in text or "/" in text or text.startswith(".")):
                raise ModelNotFoundError(
                    f"{text!r} is not a BLIP image-text matching folder: it needs config.json "
                    f"with model_type 'blip' and architectures [{ARCHITECTURE!r}], the weights, "
                    f"and the processor and tokenizer files (a save_pretrained folder)"
                )
    spec = _BY_NAME.get(text) or _BY_NAME.get(text.lower())
    if spec is not None:
        return spec
    valid = ", ".join(s.key for s in itm_models(dirs))
    raise ModelNotFoundError(f"unknown scorer {text!r}: use a BLIP ITM folder or one of: {valid}")


class ItmScorer(TorchModel):
    """A loaded BLIP image-text matching model: preprocess (CPU) -> score (device)."""

    kind = "scorer"

    def __init__(self, spec: ModelSpec, **kwargs: Any) -> None:
        super().__init__(spec, **kwargs)
        self.model: Any = None
        self.processor: Any = None

    # -- lifetime -------------------------------------------------------------------------
    def _load(self) -> None:
        """Load processor and model from the folder or the Hub."""
        transformers = require("transformers")
        processor, model = self._pretrained(
            lambda source, kwargs: (
                transformers.BlipProcessor.from_pretrained(source, **kwargs),
                transformers.BlipForImageTextRetrieval.from_pretrained(source, **kwargs),
            )
        )
        self.processor = processor
        self.model = model.to(self.device, self.dtype).eval()

    def _release(self) -> None:
        self.model = None
        self.processor = None

    # -- steps ------------------------------------------------------------------------------
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One RGB image -> ``[3, H, W]`` pixel values (the checkpoint's processor)."""
        self.load()
        return self.processor.image_processor(image, return_tensors="pt")["pixel_values"][0]

    def collate(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """Stack preprocessed images."""
        torch = require("torch")
        return torch.stack(list(tensors))

    def tokens(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask for texts (padded to the longest, cut to the model's
        limit)."""
        limit = int(self.model.config.text_config.max_position_embeddings)
        encoded = self.processor.tokenizer(
            list(texts), padding=True, truncation=True, max_length=limit, return_tensors="pt"
        )
        return {k: encoded[k].to(self.device) for k in ("input_ids", "attention_mask")}

    def score(self, pixels: torch.Tensor, texts: Sequence[Sequence[str]]) -> list[list[PairScore]]:
        """ITM and ITC of each image (``pixels`` ``[N, 3, H, W]``) with each of its texts."""
        torch = require("torch")
        self.load()
        model = self.model
        pairs = [(i, text) for i, group in enumerate(texts) for text in group]
        out: list[list[PairScore]] = [[] for _ in texts]
        if not pairs:
            return out
        with torch.inference_mode():
            vision = model.vision_model(pixel_values=pixels.to(self.device, self.dtype))
            embeds = vision.last_hidden_state
            image_feat = torch.nn.functional.normalize(model.vision_proj(embeds[:, 0, :]), dim=-1)
            for start in range(0, len(pairs), PAIR_BATCH):
                chunk = pairs[start : start + PAIR_BATCH]
                index = torch.tensor([i for i, _ in chunk], device=self.device)
                tokens = self.tokens([text for _, text in chunk])
                image_embeds = embeds[index]
                image_atts = torch.ones(
                    image_embeds.shape[:-1], dtype=torch.long, device=self.device
                )
                matched = model.text_encoder(
                    **tokens,
                    encoder_hidden_states=image_embeds,
                    encoder_attention_mask=image_atts,
                ).last_hidden_state
                itm = model.itm_head(matched[:, 0, :]).float().softmax(dim=-1)[:, 1]
                alone = model.text_encoder(**tokens).last_hidden_state
                text_feat = torch.nn.functional.normalize(model.text_proj(alone[:, 0, :]), dim=-1)
                itc = (image_feat[index] * text_feat).sum(dim=-1).float()
                for (i, _), p, c in zip(chunk, itm.tolist(), itc.tolist(), strict=True):
                    out[i].append(PairScore(float(p), float(c)))
        return out

    def score_images(
        self, images: Sequence[Image.Image], texts: Sequence[Sequence[str]]
    ) -> list[list[PairScore]]:
        """``score`` for RGB PIL images."""
        if not images:
            return []
        batch = self.collate([self.preprocess(image.convert("RGB")) for image in images])
        return self.score(batch, texts)
