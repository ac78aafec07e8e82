"""How well a caption matches its image: BLIP image-text matching and CLIP similarity.

- ``tagger.scoring.itm``: BLIP's image-text matching head (ITM, a match probability) and its
  contrastive similarity (ITC, a cosine), from ``Salesforce/blip-itm-base-coco``,
  ``blip-itm-large-coco`` or any BLIP ITM folder;
- ``tagger.scoring.clipscore``: the cosine of open_clip image and text embeddings;
- ``tagger.scoring.rerank``: generate several captions and keep the one that matches best;
- ``tagger.scoring.run``: ``tagger score`` over folders (the batch engine reading existing
  caption files and writing the scores).

Loaded scorers share the captioners' cache (``tagger.cache.unload_all`` unloads them).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tagger.registry import ModelSpec
    from tagger.scoring.itm import ItmScorer


def get_scorer(
    model: str | ModelSpec,
    *,
    device: str | None = "auto",
    device_id: int = 0,
    half: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    models_dirs: Iterable[str | os.PathLike[str]] | None = None,
    load: bool = True,
) -> ItmScorer:
    """The (loaded) BLIP ITM scorer for a key, folder name, path or spec; cached."""
    from tagger.captioners import _captioners
    from tagger.registry import ModelSpec
    from tagger.scoring.itm import ItmScorer, resolve_itm

    spec = model if isinstance(model, ModelSpec) else resolve_itm(model, models_dirs)
    key = ("blip-itm", spec.key, str(spec.path), spec.revision, device, device_id, half)
    return _captioners.get(
        key,
        lambda: ItmScorer(spec, device=device, device_id=device_id, half=half, cache_dir=cache_dir),
        load=load,
    )
