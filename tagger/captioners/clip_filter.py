"""The CLIP relevance filter: drop kept tags that CLIP does not see in the image.

Each tag is written into a prompt template ("a photo of {}", underscores as spaces) and scored by
the cosine similarity of the image's and the text's L2-normalised CLIP embeddings. A tag is kept
when its score is at least an absolute threshold, or (``mcut``) above the middle of the widest gap
between the image's own sorted scores. The scores go into the JSON output.

Text embeddings of a whole vocabulary (a tagger's tag list) are computed once and cached on disk
as ``<cache>/<model>-<hash>.npy``, the hash covering the model, its weights, the template and the
vocabulary; tags outside the vocabulary are embedded when first seen and kept in memory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagger.captioners.common import device_label, pick_device
from tagger.options import ClipFilterOptions
from tagger.tags import mcut_threshold, replace_underscores

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

log = logging.getLogger("tagger")

TEXT_BATCH = 256


def keep_by_clip(scores: Mapping[str, float], mode: str, threshold: float) -> list[str]:
    """The tags to keep, in the given order.

    ``absolute`` keeps scores >= ``threshold``; ``mcut`` keeps scores strictly above the MCut
    threshold of the scores (a single tag is kept when its score is above 0).

    >>> keep_by_clip({"cat": 0.31, "dog": 0.12, "hat": 0.29}, "absolute", 0.2)
    ['cat', 'hat']
    >>> keep_by_clip({"cat": 0.31, "dog": 0.12, "hat": 0.29}, "mcut", 0.2)
    ['cat', 'hat']
    """
    if mode == "absolute":
        return [tag for tag, score in scores.items() if score >= threshold]
    if mode == "mcut":
        cut = mcut_threshold(list(scores.values()))
        return [tag for tag, score in scores.items() if score > cut]
    raise ValueError(f"clip filter mode must be 'absolute' or 'mcut', not {mode!r}")


def prompt_text(tag: str, template: str) -> str:
    """The text CLIP scores for a tag.

    >>> prompt_text("long_hair", "a photo of {}")
    'a photo of long hair'
    """
    return template.replace("{}", replace_underscores(tag))


def default_cache_dir() -> Path:
    """``$TAGGER_CACHE_DIR/clip`` or ``~/.cache/tagger/clip``."""
    from tagger.hub import tagger_cache_dir

    return tagger_cache_dir("clip")


class ClipFilter:
    """A CLIP model with cached text embeddings; scores and filters tags per image."""

    def __init__(
        self,
        options: ClipFilterOptions | None = None,
        *,
        device: str | None = "auto",
        device_id: int = 0,
        half: bool = True,
        hf_cache: str | os.PathLike[str] | None = None,
    ) -> None:
        self.options = options or ClipFilterOptions()
        self.device_name = device
        self.device_id = device_id
        self.half = half
        self.hf_cache = hf_cache
        self.clip: Any = None
        self._texts: dict[str, np.ndarray] = {}

    # -- lifetime ------------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        """True once the CLIP model is loaded."""
        return self.clip is not None

    def load(self) -> ClipFilter:
        """Load the CLIP model (once)."""
        if self.clip is None:
            from tagger.captioners.openclip import load_clip

            self.clip = load_clip(
                self.options.model,
                self.options.pretrained,
                device=pick_device(self.device_name, self.device_id),
                half=self.half,
                cache_dir=self.hf_cache,
            )
        return self

    def unload(self) -> None:
        """Drop the CLIP model (text embeddings stay cached on disk)."""
        self.clip = None
        self._texts.clear()

    @property
    def active_providers(self) -> list[str]:
        """Where CLIP runs."""
        return [device_label(self.clip.device)] if self.clip is not None else []

    # -- embeddings ------------------------------------------------------------------------------
    def model_id(self) -> str:
        """What identifies the model's text embeddings: name, weights (size, mtime), template."""
        parts = [self.options.model, str(self.options.pretrained), self.options.template]
        for name in (self.options.model, self.options.pretrained):
            path = Path(str(name)).expanduser()
            files = sorted(path.iterdir()) if path.is_dir() else [path] if path.is_file() else []
            parts += [f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in files]
        return "\n".join(parts)

    def cache_file(self, vocabulary: Sequence[str]) -> Path:
        """The .npy file for a vocabulary's text embeddings."""
        digest = hashlib.sha256(
            (self.model_id() + "\n\n" + "\n".join(vocabulary)).encode("utf-8")
        ).hexdigest()[:20]
        folder = Path(self.options.cache_dir) if self.options.cache_dir else default_cache_dir()
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(self.options.model).name)[:40]
        return folder / f"{stem}-{digest}.npy"

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> ``[N, D]`` L2-normalised float32 embeddings."""
        import numpy as np

        self.load()
        out = []
        for start in range(0, len(texts), TEXT_BATCH):
            features = self.clip.encode_texts(list(texts[start : start + TEXT_BATCH]))
            features = features / features.norm(dim=-1, keepdim=True)
            out.append(features.cpu().numpy().astype(np.float32))
        if not out:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(out)

    def set_vocabulary(self, tags: Sequence[str]) -> Path:
        """Load (or compute and save) the text embeddings of ``tags``; returns the cache file."""
        import numpy as np

        from tagger.safeio import AtomicFile

        vocabulary = list(dict.fromkeys(tags))
        file = self.cache_file(vocabulary)
        embeddings: np.ndarray | None = None
        if file.is_file():
            try:
                embeddings = np.load(file, allow_pickle=False)
            except (OSError, ValueError) as exc:
                log.warning("ignoring unreadable CLIP text cache %s: %s", file, exc)
            if embeddings is not None and embeddings.shape[0] != len(vocabulary):
                embeddings = None
        if embeddings is None:
            log.info("embedding %d tags with CLIP %s", len(vocabulary), self.options.model)
            embeddings = self.encode_texts(
                [prompt_text(tag, self.options.template) for tag in vocabulary]
            )
            with AtomicFile(file) as out:
                np.save(out.handle, embeddings, allow_pickle=False)
        self._texts.update(zip(vocabulary, embeddings, strict=True))
        return file

    def text_embeddings(self, tags: Sequence[str]) -> np.ndarray:
        """``[N, D]`` embeddings of tags (from the vocabulary, else computed now)."""
        import numpy as np

        new = [tag for tag in dict.fromkeys(tags) if tag not in self._texts]
        if new:
            prompts = [prompt_text(tag, self.options.template) for tag in new]
            self._texts.update(zip(new, self.encode_texts(prompts), strict=True))
        return np.stack([self._texts[tag] for tag in tags])

    # -- per image ---------------------------------------------------------------------------------
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One RGB image -> the CLIP input tensor."""
        self.load()
        return self.clip.preprocess(image)

    def image_embeddings(self, batch: torch.Tensor) -> np.ndarray:
        """``[N, 3, S, S]`` -> ``[N, D]`` L2-normalised float32 image embeddings."""
        self.load()
        features = self.clip.encode_images(batch)
        features = features / features.norm(dim=-1, keepdim=True)
        return features.cpu().numpy()

    def scores(self, image_embedding: np.ndarray, tags: Sequence[str]) -> dict[str, float]:
        """Cosine similarity of one image with each tag's prompt."""
        if not tags:
            return {}
        similarity = self.text_embeddings(tags) @ image_embedding
        return {tag: float(score) for tag, score in zip(tags, similarity, strict=True)}

    def filter(
        self, scores_by_category: Mapping[str, Mapping[str, float]], image_embedding: np.ndarray
    ) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
        """Filter the categories named in the options; returns (kept tags, CLIP scores).

        ``scores_by_category`` maps a category (``general``, ``character``) to its kept tags and
        model scores; categories not filtered are returned unchanged.
        """
        kept: dict[str, dict[str, float]] = {}
        clip_scores: dict[str, float] = {}
        for category, tags in scores_by_category.items():
            if category not in self.options.categories or not tags:
                kept[category] = dict(tags)
                continue
            scored = self.scores(image_embedding, list(tags))
            clip_scores.update(scored)
            keep = set(keep_by_clip(scored, self.options.mode, self.options.threshold))
            kept[category] = {tag: score for tag, score in tags.items() if tag in keep}
        return kept, clip_scores
