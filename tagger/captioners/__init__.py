"""Captioners: BLIP (transformers) and CLIP-prefix GPT-2 (ClipCap, Huynh et al.).

Public interface (torch, transformers and open_clip are imported only when a model loads)::

    from tagger.captioners import get_captioner, caption_images
    from tagger.options import CaptionOptions

    captioner = get_captioner("blip-large")             # key, alias, folder name or path
    captions = captioner.caption([pil_image, ...], CaptionOptions(num_beams=3))
    # or in one call:
    captions = caption_images([pil_image, ...], "models/my-clipcap", CaptionOptions())

Loaded captioners are cached per (model, device, half) and unloaded by ``unload_captioners()``
(``tagger.cache.unload_all()`` calls it too).
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from tagger.cache import ModelCache
from tagger.errors import ModelNotFoundError
from tagger.options import CaptionOptions
from tagger.registry import ModelSpec, resolve_captioner

if TYPE_CHECKING:
    from PIL import Image

    from tagger.captioners.base import Captioner

log = logging.getLogger("tagger")

_captioners: ModelCache[Captioner] = ModelCache()


def captioner_class(family: str) -> type[Captioner]:
    """The captioner class of a model family (``blip`` or ``clipcap``)."""
    if family == "blip":
        from tagger.captioners.blip import BlipCaptioner

        return BlipCaptioner
    if family == "clipcap":
        from tagger.captioners.clipcap import ClipCapCaptioner

        return ClipCapCaptioner
    if family == "clip-interrogator":
        from tagger.interrogator.captioner import InterrogatorCaptioner

        return InterrogatorCaptioner
    if family == "rerank":
        from tagger.scoring.rerank import RerankCaptioner

        return RerankCaptioner
    raise ModelNotFoundError(f"model family {family!r} is not a captioner (blip or clipcap)")


def get_captioner(
    model: str | ModelSpec,
    *,
    device: str | None = "auto",
    device_id: int = 0,
    half: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    models_dirs: Iterable[str | os.PathLike[str]] | None = None,
    load: bool = True,
) -> Captioner:
    """Return the (loaded) captioner for a key, alias, folder name, path or spec; cached."""
    spec = model if isinstance(model, ModelSpec) else resolve_captioner(model, models_dirs)
    key = (spec.key, str(spec.path), revision or spec.revision, device, device_id, half)
    key += spec.settings  # a configured model (the CLIP Interrogator's options) is its own entry
    return _captioners.get(
        key,
        lambda: captioner_class(spec.family)(
            spec,
            device=device,
            device_id=device_id,
            half=half,
            cache_dir=cache_dir,
            revision=revision,
        ),
        load=load,
    )


def caption_images(
    images: Sequence[Image.Image],
    model: str | ModelSpec,
    options: CaptionOptions | None = None,
    **kwargs: object,
) -> list[str]:
    """Caption PIL images with a model (see ``get_captioner`` for ``kwargs``)."""
    options = options or CaptionOptions()
    captioner = get_captioner(model, half=options.half, **kwargs)  # type: ignore[arg-type]
    return captioner.caption(images, options)


def loaded_captioners() -> list[str]:
    """Keys of the captioners currently loaded."""
    return _captioners.loaded()


def unload_captioners() -> int:
    """Unload every captioner and give its memory back; returns how many were loaded."""
    count = _captioners.clear()
    gc.collect()
    return count
