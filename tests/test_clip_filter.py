"""The CLIP relevance filter: decisions on known similarities, the on-disk text cache, real CLIP."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from tagger.captioners.clip_filter import ClipFilter, keep_by_clip, prompt_text
from tagger.options import ClipFilterOptions


def test_keep_by_clip_absolute_and_mcut() -> None:
    scores = {"cat": 0.31, "dog": 0.12, "hat": 0.29, "sky": 0.2}
    assert keep_by_clip(scores, "absolute", 0.2) == ["cat", "hat", "sky"]  # >= threshold
    assert keep_by_clip(scores, "absolute", 0.3) == ["cat"]
    # sorted 0.31 0.29 0.2 0.12: widest gap 0.29 -> 0.2, cut at 0.245
    assert keep_by_clip(scores, "mcut", 0.9) == ["cat", "hat"]
    assert keep_by_clip({"cat": 0.3}, "mcut", 0.9) == ["cat"]
    assert keep_by_clip({}, "mcut", 0.2) == []
    with pytest.raises(ValueError, match="softmax"):
        keep_by_clip(scores, "softmax", 0.2)


def test_prompt_text() -> None:
    assert prompt_text("long_hair", "a photo of {}") == "a photo of long hair"
    assert prompt_text("^_^", "{}") == "^_^"


class KnownClip(ClipFilter):
    """A filter whose embeddings are fixed unit vectors, so every similarity is known."""

    TEXT: ClassVar[dict[str, list[float]]] = {
        "a photo of cat": [1.0, 0.0, 0.0],
        "a photo of dog": [0.0, 1.0, 0.0],
        "a photo of long hair": [0.6, 0.8, 0.0],
        "a photo of hat": [0.0, 0.0, 1.0],
    }
    encoded: list[str]

    def load(self) -> KnownClip:
        self.encoded = getattr(self, "encoded", [])
        return self

    def encode_texts(self, texts):
        self.encoded += list(texts)
        return np.array([self.TEXT[t] for t in texts], dtype=np.float32)


def test_filter_decisions_on_known_similarities(tmp_path: Path) -> None:
    options = ClipFilterOptions(threshold=0.5, cache_dir=str(tmp_path), model="known")
    clip = KnownClip(options).load()
    image = np.array([0.8, 0.6, 0.0], dtype=np.float32)  # cos: cat .8, dog .6, long hair .96, hat 0
    kept, scores = clip.filter(
        {
            "general": {"cat": 0.9, "dog": 0.8, "long_hair": 0.7, "hat": 0.6},
            "character": {"hat": 0.99},
        },
        image,
    )
    assert scores == pytest.approx({"cat": 0.8, "dog": 0.6, "long_hair": 0.96, "hat": 0.0})
    assert kept["general"] == {"cat": 0.9, "dog": 0.8, "long_hair": 0.7}  # model scores kept
    assert kept["character"] == {"hat": 0.99}  # characters are not filtered by default
    mcut = KnownClip(ClipFilterOptions(mode="mcut", cache_dir=str(tmp_path), model="known"))
    kept, _ = mcut.load().filter({"general": {"cat": 0.9, "dog": 0.8, "hat": 0.6}}, image)
    assert kept["general"] == {"cat": 0.9, "dog": 0.8}  # widest gap: 0.6 -> 0.0
    both = ClipFilterOptions(
        threshold=0.7, categories=["general", "character"], cache_dir=str(tmp_path), model="known"
    )
    kept, _ = (
        KnownClip(both).load().filter({"general": {"dog": 0.9}, "character": {"cat": 1}}, image)
    )
    assert kept == {"general": {}, "character": {"cat": 1}}


def test_vocabulary_embeddings_are_cached_on_disk(tmp_path: Path) -> None:
    options = ClipFilterOptions(cache_dir=str(tmp_path), model="known")
    first = KnownClip(options).load()
    file = first.set_vocabulary(["cat", "dog", "long_hair"])
    assert (file.parent, file.suffix) == (tmp_path, ".npy")
    assert first.encoded == ["a photo of cat", "a photo of dog", "a photo of long hair"]
    assert np.load(file).shape == (3, 3)
    second = KnownClip(options).load()
    assert second.set_vocabulary(["cat", "dog", "long_hair"]) == file
    assert second.encoded == []  # read from the cache, nothing encoded
    assert second.scores(np.array([0, 1, 0], np.float32), ["dog", "hat"]) == {
        "dog": 1.0,
        "hat": 0.0,
    }
    assert second.encoded == ["a photo of hat"]  # outside the vocabulary: encoded when seen
    # Another vocabulary or template is another file.
    assert second.cache_file(["cat"]) != file
    other = KnownClip(ClipFilterOptions(cache_dir=str(tmp_path), model="known", template="{}"))
    assert other.cache_file(["cat", "dog", "long_hair"]) != file


def test_real_tiny_clip_scores_are_cosine_similarities(tmp_path: Path, clip_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    from PIL import Image

    options = ClipFilterOptions(model=str(clip_dir), pretrained="", cache_dir=str(tmp_path))
    clip = ClipFilter(options, device="cpu").load()
    tags = ["cat", "long_hair", "blue_sky"]
    file = clip.set_vocabulary(tags)
    image = Image.new("RGB", (40, 30), (200, 30, 60))
    embedding = clip.image_embeddings(clip.preprocess(image).unsqueeze(0))[0]
    scores = clip.scores(embedding, tags)
    model = clip.clip.model
    with torch.no_grad():
        text = model.encode_text(
            clip.clip.tokenizer([prompt_text(t, options.template) for t in tags])
        )
        pixels = clip.clip.transform(image).unsqueeze(0)
        img = model.encode_image(pixels)
    text = text / text.norm(dim=-1, keepdim=True)
    img = img / img.norm(dim=-1, keepdim=True)
    expected = (text @ img[0]).tolist()
    assert list(scores.values()) == pytest.approx(expected, abs=1e-5)
    assert np.load(file) == pytest.approx(text.numpy(), abs=1e-6)
