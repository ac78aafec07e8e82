"""Keyphrases of one image or caption, for the HTTP API and the tab (the same calls as a batch).

Extractors and CLIP filters are loaded once per model and device and kept until
``unload_extractors()`` (``tagger.cache.unload_all()`` calls it).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tagger.keywords.options import KeywordOptions
from tagger.options import CaptionOptions, ClipFilterOptions, TagOptions, dump

if TYPE_CHECKING:
    from PIL import Image

    from tagger.captioners.clip_filter import ClipFilter
    from tagger.keywords.extract import KeywordExtractor

_lock = threading.Lock()
_extractors: dict[tuple[Any, ...], KeywordExtractor] = {}
_filters: dict[tuple[Any, ...], ClipFilter] = {}


def get_extractor(
    model: str,
    *,
    device: str | None = "auto",
    device_id: int = 0,
    models_dirs: Iterable[str | os.PathLike[str]] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> KeywordExtractor:
    """The loaded extractor of a sentence-transformers model (cached per model and device)."""
    from tagger.keywords.extract import KeywordExtractor

    dirs = tuple(str(d) for d in models_dirs) if models_dirs is not None else None
    key = (model, device, device_id, dirs, str(cache_dir))
    with _lock:
        extractor = _extractors.get(key)
        if extractor is None:
            extractor = KeywordExtractor(
                KeywordOptions(model=model),
                device=device,
                device_id=device_id,
                models_dirs=dirs,
                cache_dir=cache_dir,
            )
            _extractors[key] = extractor
    return extractor.load()


def get_clip_filter(
    options: ClipFilterOptions,
    *,
    device: str | None = "auto",
    device_id: int = 0,
    half: bool = True,
    hf_cache: str | os.PathLike[str] | None = None,
) -> ClipFilter:
    """The loaded CLIP filter for these options (cached per model, options and device)."""
    from tagger.captioners.clip_filter import ClipFilter

    key = (repr(sorted(dump(options).items())), device, device_id, half)
    with _lock:
        clip_filter = _filters.get(key)
        if clip_filter is None:
            clip_filter = ClipFilter(
                options, device=device, device_id=device_id, half=half, hf_cache=hf_cache
            )
            _filters[key] = clip_filter
    return clip_filter.load()


def unload_extractors() -> int:
    """Unload every cached extractor and CLIP filter; returns how many were loaded."""
    with _lock:
        parts: list[Any] = [*_extractors.values(), *_filters.values()]
        count = sum(1 for part in parts if part.loaded)
        for part in parts:
            part.unload()
        _extractors.clear()
        _filters.clear()
    return count


@dataclass
class ImageKeywords:
    """One image's keyphrases: the caption they come from, the kept ones, CLIP's scores."""

    caption: str
    keywords: dict[str, float]
    clip: dict[str, float] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    text: str = ""


def image_keywords(
    image: Image.Image | None = None,
    caption: str | None = None,
    *,
    captioner: str = "blip-large",
    caption_options: CaptionOptions | None = None,
    options: KeywordOptions | None = None,
    clip: ClipFilterOptions | None = None,
    tag_options: TagOptions | None = None,
    device: str | None = "auto",
    device_id: int = 0,
    hf_cache: str | os.PathLike[str] | None = None,
    models_dirs: Iterable[str | os.PathLike[str]] | None = None,
) -> ImageKeywords:
    """Keyphrases of a caption (given, or written by ``captioner`` for ``image``), kept by the
    CLIP filter when ``clip`` is given (it needs the image), written as ``tagger keywords``
    writes them."""
    from tagger.errors import OptionsError
    from tagger.keywords.output import drop_excluded, with_keywords
    from tagger.keywords.pipeline import clip_keep

    options = options or KeywordOptions()
    tag_options = tag_options or TagOptions()
    caption_options = caption_options or CaptionOptions()
    dirs = list(models_dirs) if models_dirs is not None else None
    if caption is None:
        if image is None:
            raise OptionsError("give a caption, or an image to caption")
        from tagger.captioners import get_captioner

        model = get_captioner(
            captioner,
            device=device,
            device_id=device_id,
            half=caption_options.half,
            cache_dir=hf_cache,
            models_dirs=dirs,
        )
        caption = model.caption([image.convert("RGB")], caption_options)[0]
    extractor = get_extractor(
        options.model, device=device, device_id=device_id, models_dirs=dirs, cache_dir=hf_cache
    )
    keywords = drop_excluded(extractor.extract([caption], options)[0], tag_options.exclude_tags)
    scores: dict[str, float] = {}
    if clip is not None and keywords:
        if image is None:
            raise OptionsError("the CLIP filter needs the image: send it with the caption")
        clip_filter = get_clip_filter(
            clip, device=device, device_id=device_id, half=caption_options.half, hf_cache=hf_cache
        )
        embedding = clip_filter.image_embeddings(
            clip_filter.preprocess(image.convert("RGB")).unsqueeze(0)
        )[0]
        scores = clip_filter.scores(embedding, list(keywords))
        keep = clip_keep(scores, clip_filter, tag_options)
        keywords = {name: score for name, score in keywords.items() if name in keep}
    tags = with_keywords([], keywords, tag_options, alone=True)
    return ImageKeywords(caption, keywords, scores, tags, tag_options.separator.join(tags))
