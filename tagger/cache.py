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
from collections.abc import Callable, Hashable
from typing import Any, Generic, Protocol, TypeVar

from tagger.registry import ModelSpec
from tagger.wd14 import WD14Tagger

log = logging.getLogger("tagger")

M = TypeVar("M", bound="Loadable")


class Loadable(Protocol):
    """A model the cache can hold: ``load()`` (returning itself), ``unload()``, ``loaded``."""

    spec: ModelSpec

    @property
    def loaded(self) -> bool: ...

    def load(self) -> Any: ...

    def unload(self) -> None: ...


class ModelCache(Generic[M]):
    """Models by key: created once, loaded on first use, dropped again if loading fails.

    The model's own lock makes concurrent first callers wait for a single load.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[Hashable, M] = {}

    def get(self, key: Hashable, create: Callable[[], M], *, load: bool = True) -> M:
        """The model under ``key`` (made by ``create`` the first time), loaded unless asked not."""
        with self._lock:
            model = self._models.get(key)
            if model is None:
                model = create()
                self._models[key] = model
        if not load:
            return model
        try:
            return model.load()
        except Exception:
            with self._lock:
                if self._models.get(key) is model:
                    del self._models[key]
            raise

    def loaded(self) -> list[str]:
        """Keys of the models currently loaded."""
        with self._lock:
            return [model.spec.key for model in self._models.values() if model.loaded]

    def clear(self) -> int:
        """Unload every model and forget it; returns how many were loaded."""
        with self._lock:
            models = list(self._models.values())
            self._models.clear()
        count = sum(1 for model in models if model.loaded)
        for model in models:
            model.unload()
        return count


_taggers: ModelCache[WD14Tagger] = ModelCache()


def _key(
    spec: ModelSpec,
    providers: str | list[str] | None,
    device_id: int,
    revision: str | None,
    precision: str = "fp32",
) -> Hashable:
    """Cache key: the model's identity and where it runs (providers as parsed, so ``"CPU"``,
    ``"cpu"`` and ``["cpu"]`` share one entry)."""
    from tagger.runtime import parse_providers

    where = tuple(parse_providers(providers))
    return (spec.key, str(spec.path), revision or spec.revision, where, device_id, precision)


def tagger_class(spec: ModelSpec) -> type[WD14Tagger]:
    """The class that runs a tagger model of ``spec.family``."""
    if spec.family == "wd14":
        return WD14Tagger
    from tagger.families.model import FamilyTagger

    return FamilyTagger


def get_tagger(
    spec: ModelSpec,
    *,
    providers: str | list[str] | None = None,
    device_id: int = 0,
    threads: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    precision: str = "fp32",
) -> WD14Tagger:
    """Return the loaded tagger for ``spec``, loading it on first use (a ``WD14Tagger``, or a
    ``tagger.families.model.FamilyTagger`` for the other tagger families)."""
    return _taggers.get(
        _key(spec, providers, device_id, revision, precision),
        lambda: tagger_class(spec)(
            spec,
            providers=providers,
            device_id=device_id,
            threads=threads,
            cache_dir=cache_dir,
            revision=revision,
            precision=precision,
        ),
    )


def loaded_models() -> list[str]:
    """Keys of the models currently loaded."""
    return _taggers.loaded()


def unload_all() -> int:
    """Unload every model and give their memory back; returns how many were loaded."""
    count = _taggers.clear()
    if "tagger.captioners" in sys.modules:  # captioners and CLIP filters, when any were used
        count += sys.modules["tagger.captioners"].unload_captioners()
    gc.collect()
    log.info("unloaded %d model(s)", count)
    return count
