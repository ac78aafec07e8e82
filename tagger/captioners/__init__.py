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
import json
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
    from tagger.vlm.options import VlmOptions

log = logging.getLogger("tagger")

_captioners: ModelCache[Captioner] = ModelCache()


def captioner_class(family: str) -> type[Captioner]:
    """The captioner class of a model family (``blip``, ``clipcap``, ``sbg``,
    ``clip-interrogator``, ``rerank``, or a VLM family of ``tagger.vlm``)."""
    if family == "blip":
        from tagger.captioners.blip import BlipCaptioner

        return BlipCaptioner
    if family == "clipcap":
        from tagger.captioners.clipcap import ClipCapCaptioner

        return ClipCapCaptioner
    if family == "sbg":
        from tagger.captioners.sbg import SbgCaptioner

        return SbgCaptioner
    if family == "clip-interrogator":
        from tagger.interrogator.captioner import InterrogatorCaptioner

        return InterrogatorCaptioner
    if family == "rerank":
        from tagger.scoring.rerank import RerankCaptioner

        return RerankCaptioner
    from tagger.vlm import is_vlm_family, vlm_class

    if is_vlm_family(family):
        return vlm_class(family)
    raise ModelNotFoundError(
        f"model family {family!r} is not a captioner (blip, clipcap, sbg, clip-interrogator, "
        "rerank or a VLM family)"
    )


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
    vlm: VlmOptions | None = None,
    guide: Captioner | None = None,
) -> Captioner:
    """Return the (loaded) captioner for a key, alias, folder name, path or spec; cached.

    ``vlm`` (the VLM options) and ``guide`` (a captioner whose caption fills the prompt's
    ``{caption}``) apply to vision-language models (``tagger.vlm``) and are ignored otherwise.
    """
    from tagger.vlm import is_vlm_family

    spec = model if isinstance(model, ModelSpec) else resolve_captioner(model, models_dirs)
    key: tuple[object, ...] = (spec.key, str(spec.path), revision or spec.revision, device)
    key += (device_id, half)
    key += spec.settings  # a configured model (the CLIP Interrogator's options) is its own entry
    extra: dict[str, object] = {}
    if is_vlm_family(spec.family):
        from tagger.options import dump
        from tagger.vlm.options import VlmOptions

        options = vlm or VlmOptions()
        extra = {"vlm": options, "guide": guide}
        key += (json.dumps(dump(options), sort_keys=True), id(guide) if guide else None)
    return _captioners.get(
        key,
        lambda: captioner_class(spec.family)(
            spec,
            device=device,
            device_id=device_id,
            half=half,
            cache_dir=cache_dir,
            revision=revision,
            **extra,
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
