"""CLIP similarity as a caption score: the cosine of open_clip's L2-normalised image and text
embeddings (the CLIP filter's model, texts as they are, no template)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tagger.options import ClipFilterOptions

if TYPE_CHECKING:
    import torch
    from PIL import Image


class ClipScorer:
    """Scores texts against images with an open_clip CLIP (``ClipFilterOptions`` name it)."""

    def __init__(
        self,
        options: ClipFilterOptions | None = None,
        *,
        device: str | None = "auto",
        device_id: int = 0,
        half: bool = True,
        hf_cache: str | os.PathLike[str] | None = None,
    ) -> None:
        from tagger.captioners.clip_filter import ClipFilter
        from tagger.registry import ModelSpec

        options = options or ClipFilterOptions()
        self.filter = ClipFilter(
            options, device=device, device_id=device_id, half=half, hf_cache=hf_cache
        )
        self.spec = ModelSpec(key=f"clip:{options.model}/{options.pretrained}", family="clip")

    @property
    def loaded(self) -> bool:
        """True once CLIP is loaded."""
        return self.filter.loaded

    def load(self) -> ClipScorer:
        """Load CLIP (once)."""
        self.filter.load()
        return self

    def unload(self) -> None:
        """Drop CLIP."""
        self.filter.unload()

    @property
    def active_providers(self) -> list[str]:
        """Where CLIP runs."""
        return self.filter.active_providers

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One RGB image -> CLIP's input."""
        return self.filter.preprocess(image)

    def collate(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """Stack preprocessed images."""
        import torch

        return torch.stack(list(tensors))

    def score(self, pixels: torch.Tensor, texts: Sequence[Sequence[str]]) -> list[list[Any]]:
        """Cosine of each image with each of its texts."""
        images = self.filter.image_embeddings(pixels)
        out: list[list[Any]] = []
        for embedding, group in zip(images, texts, strict=True):
            if not group:
                out.append([])
                continue
            sims = self.filter.encode_texts(list(group)) @ embedding
            out.append([float(s) for s in sims])
        return out
