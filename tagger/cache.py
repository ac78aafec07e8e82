"""Loaded models, shared: load once on first use, keep, unload on request.

One entry per (model, providers, device). Concurrent first requests for the same model wait for a
single load instead of loading it several times.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
from collections.abc import Hashable

from tagger.registry import ModelSpec
from tagger.wd14 import WD14Tagger

log = logging.getLogger("tagger")

_lock = threading.Lock()
_models: dict[Hashable, WD14Tagger] = {}


def _key(
    spec: ModelSpec, providers: str | list[str] | None, device_id: int, revision: str | None
) -> Hashable:
    """Cache key: the model's identity and where it runs (providers as parsed, so ``"CPU"``,
    ``"cpu"`` and ``["cpu"]`` share one entry)."""
    from tagger.runtime import parse_providers

    where = tuple(parse_providers(providers))
    return (spec.key, str(spec.path), revision or spec.revision, where, device_id)


def get_tagger(
    spec: ModelSpec,
    *,
    providers: str | list[str] | None = None,
    device_id: int = 0,
    threads: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    revision: str | None = None,
) -> WD14Tagger:
    """Return the loaded tagger for ``spec``, loading it on first use."""
    key = _key(spec, providers, device_id, revision)
    with _lock:
        tagger = _models.get(key)
        if tagger is None:
            tagger = WD14Tagger(
                spec,
                providers=providers,
                device_id=device_id,
                threads=threads,
                cache_dir=cache_dir,
                revision=revision,
            )
            _models[key] = tagger
    try:
        return tagger.load()  # the tagger's own lock makes concurrent callers wait for one load
    except Exception:
        with _lock:
            if _models.get(key) is tagger:
                del _models[key]
        raise


def loaded_models() -> list[str]:
    """Keys of the models currently loaded."""
    with _lock:
        return [tagger.spec.key for tagger in _models.values() if tagger.loaded]


def unload_all() -> int:
    """Unload every model and give their memory back; returns how many were loaded."""
    with _lock:
        taggers = list(_models.values())
        _models.clear()
    count = 0
    for tagger in taggers:
        if tagger.loaded:
            count += 1
        tagger.unload()
    if "tagger.captioners" in sys.modules:  # captioners and CLIP filters, when any were used
        count += sys.modules["tagger.captioners"].unload_captioners()
    gc.collect()
    log.info("unloaded %d model(s)", count)
    return count
