"""The CLIP Interrogator as a captioner: what ``tagger caption``, ``tagger tag --captioner``, the
tab, the HTTP API and the Ray engine run, through the captioner interface of every other model.

Its options travel in the model spec (``interrogator_spec``), so a spec names one configured
interrogator wherever a captioner spec goes (the captioner cache, Ray's actors). The heavy part,
CLIP with its banks (``ClipInterrogator``), is shared by every configuration that uses the same
CLIP model on the same device, so switching modes never reloads CLIP. The caption part is any
captioner of this project, loaded through the same cache.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tagger.captioners.base import Captioner
from tagger.errors import OptionsError
from tagger.interrogator.options import NO_CAPTION, InterrogatorOptions, effective
from tagger.options import CaptionOptions, dump, parse
from tagger.registry import ModelSpec

if TYPE_CHECKING:
    from PIL import Image

    from tagger.interrogator.engine import ClipInterrogator

log = logging.getLogger("tagger")

FAMILY = "clip-interrogator"
#: What the library's caption decodes with: unconditional, greedy, 32 new tokens.
LIBRARY_CAPTION = {
    "prompt": "",
    "num_beams": 1,
    "min_new_tokens": 0,
    "max_new_tokens": 32,
    "repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "sample": False,
}


def interrogator_spec(
    spec: ModelSpec,
    options: InterrogatorOptions | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    models_dirs: Sequence[str | os.PathLike[str]] = (),
    allow_paths: bool = True,
) -> ModelSpec:
    """The CLIP Interrogator entry ``spec`` configured with ``options`` and where its files
    are (``data_dir``: the clip-interrogator data files; ``cache_dir``: bank embeddings;
    ``download``: may fetch the library's precomputed embeddings; ``allow_paths``: CLIP and
    caption models may be paths, not only names)."""
    if spec.family != FAMILY:
        return spec
    settings = {
        "interrogator": json.dumps(dump(options or InterrogatorOptions()), sort_keys=True),
        "data_dir": str(data_dir) if data_dir else None,
        "cache_dir": str(cache_dir) if cache_dir else None,
        "download": bool(download),
        "models_dirs": json.dumps([str(d) for d in models_dirs]),
        "allow_paths": bool(allow_paths),
    }
    return replace(spec, settings=tuple(settings.items()))


def spec_options(spec: ModelSpec) -> InterrogatorOptions:
    """The options a spec carries (the defaults for the bare registry entry)."""
    text = spec.setting("interrogator")
    if not text:
        return InterrogatorOptions()
    return parse(InterrogatorOptions, json.loads(str(text)))


def caption_decoding(options: InterrogatorOptions, run: CaptionOptions) -> CaptionOptions:
    """The caption options the caption part runs with (``library``: the library's decoding,
    keeping the run's batch size and precision)."""
    if options.caption_decoding != "library":
        return run
    return parse(CaptionOptions, {**dump(run), **LIBRARY_CAPTION})


class MultiBatch:
    """A batch whose images each have several inputs (CLIP's, the caption part's...): its
    length is the number of images and a slice slices every input, as the engine expects of a
    captioner's batch."""

    def __init__(self, parts: dict[str, Any], count: int) -> None:
        self.parts = parts
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            size = len(range(*key.indices(self.count)))
            return MultiBatch({name: value[key] for name, value in self.parts.items()}, size)
        return self.parts[key]

    def __contains__(self, key: str) -> bool:
        return key in self.parts


class InterrogatorCaptioner(Captioner):
    """The CLIP Interrogator behind the captioner interface. ``forward`` gives one record per
    image (prompt, caption, Analyze), ``postprocess`` the prompt, ``details`` what the JSON
    sidecar gets."""

    family = FAMILY

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.options = effective(spec_options(self.spec))
        self.engine: ClipInterrogator | None = None
        self.part: Captioner | None = None

    # -- lifetime -----------------------------------------------------------------------------
    def _models_dirs(self) -> list[str]:
        return list(json.loads(str(self.spec.setting("models_dirs") or "[]")))

    def _load(self) -> None:
        """Get CLIP with its banks and the caption part (each loaded once, shared)."""
        from tagger.captioners import _captioners, get_captioner
        from tagger.interrogator.engine import ClipInterrogator, resolve_clip

        allow_paths = bool(self.spec.setting("allow_paths", True))
        dirs = self._models_dirs()
        source = resolve_clip(self.options.clip_model, dirs, allow_paths=allow_paths)
        key = (
            "clip-interrogator-engine",
            source.identity,
            self.device_name,
            self.device_id,
            self.half,
            str(self.cache_dir),
            self.spec.setting("data_dir"),
            self.spec.setting("cache_dir"),
            self.spec.setting("download", True),
        )
        engine = _captioners.get(
            key,
            lambda: ClipInterrogator(
                replace(self.spec, settings=()),
                source,
                device=self.device_name,
                device_id=self.device_id,
                half=self.half,
                hf_cache=self.cache_dir,
                data_dir=self.spec.setting("data_dir"),  # type: ignore[arg-type]
                cache_dir=self.spec.setting("cache_dir"),  # type: ignore[arg-type]
                download=bool(self.spec.setting("download", True)),
            ),
        )
        part = None
        name = self.options.caption_model.strip()
        if name.lower() != NO_CAPTION and self.options.mode != "negative":
            part_spec = self._caption_spec(name, dirs, allow_paths)
            part = get_captioner(
                part_spec,
                device=self.device_name,
                device_id=self.device_id,
                half=self.half,
                cache_dir=self.cache_dir,
                models_dirs=dirs or None,
            )
        self.engine, self.part = engine, part

    def _caption_spec(self, name: str, dirs: list[str], allow_paths: bool) -> ModelSpec:
        """The caption part's spec (never the interrogator itself; no paths when not allowed)."""
        from tagger.registry import resolve_captioner

        looks_like_path = any(c in name for c in "/\\") or name.startswith(".")
        if looks_like_path and not allow_paths:
            raise OptionsError(
                f"caption model {name!r} looks like a path; name a captioner or a folder in the "
                f"models folders"
            )
        spec = resolve_captioner(name, dirs or None)
        if spec.family == FAMILY:
            raise OptionsError("the CLIP Interrogator's caption model cannot be the interrogator")
        return spec

    def _release(self) -> None:
        self.engine = None
        self.part = None

    def unload(self) -> None:
        """Forget CLIP and the caption part; their own cache entries give the memory back
        (``unload_captioners``), so there is nothing to collect here."""
        with self._lock:
            self._release()
            self._loaded = False

    @property
    def active_providers(self) -> list[str]:
        """Where CLIP and the caption part run."""
        out = list(super().active_providers)
        if self.part is not None:
            out += [p for p in self.part.active_providers if p not in out]
        return out

    # -- the three steps ------------------------------------------------------------------------
    def preprocess(self, image: Image.Image) -> dict[str, Any]:
        """One RGB image -> CLIP's input and the caption part's."""
        self.load()
        assert self.engine is not None
        out: dict[str, Any] = {"clip": self.engine.preprocess(image)}
        if self.part is not None:
            out["caption"] = self.part.preprocess(image)
        return out

    def collate(self, items: Sequence[dict[str, Any]]) -> MultiBatch:
        """Stack each part's inputs."""
        import torch

        batch: dict[str, Any] = {"clip": torch.stack([item["clip"] for item in items])}
        if self.part is not None:
            batch["caption"] = self.part.collate([item["caption"] for item in items])
        return MultiBatch(batch, len(items))

    def captions(self, batch: MultiBatch, options: CaptionOptions) -> list[str | None]:
        """The caption part's captions for a batch (None each without one)."""
        count = len(batch["clip"])
        if self.part is None:
            return [None] * count
        run = caption_decoding(self.options, options)
        self._offload("caption")
        ids = self.part.forward(batch["caption"], run)
        return [self.part.postprocess(row, run) for row in ids]

    def forward(self, batch: MultiBatch, options: CaptionOptions) -> list[dict[str, Any]]:
        """Caption, encode and interrogate a batch; one record per image."""
        self.load()
        assert self.engine is not None
        captions = self.captions(batch, options)
        self._offload("clip")
        features = self.engine.image_features(batch["clip"])
        rows = []
        for index, caption in enumerate(captions):
            row_features = features[index : index + 1]
            record: dict[str, Any] = {
                "prompt": self.engine.prompt(row_features, caption, self.options),
                "caption": caption or "",
            }
            if self.options.analyze:
                record["analyze"] = self.engine.analyze(row_features, self.options)
            rows.append(record)
        return rows

    def postprocess(self, row: dict[str, Any], options: CaptionOptions) -> str:  # type: ignore[override]
        """The prompt."""
        return str(row["prompt"])

    def details(self, row: dict[str, Any], options: CaptionOptions) -> dict[str, Any]:
        """What the JSON sidecar and the manifest get besides the prompt."""
        info: dict[str, Any] = {
            "mode": self.options.mode,
            "clip_model": self.options.clip_model,
            "caption": row["caption"],
        }
        if "analyze" in row:
            info["analyze"] = {
                bank: {term: round(score, 6) for term, score in terms.items()}
                for bank, terms in row["analyze"].items()
            }
        return {"interrogator": info}

    def _offload(self, using: str) -> None:
        """Low-VRAM settings on a GPU: the part not running waits on the CPU."""
        if not self.options.low_vram or self.device is None or self.device.type != "cuda":
            return
        assert self.engine is not None
        model = getattr(self.part, "model", None)
        if using == "caption":
            self.engine.to("cpu")
            if model is not None:
                self.part.model = model.to(self.device)  # type: ignore[union-attr]
        else:
            if model is not None:
                self.part.model = model.to("cpu")  # type: ignore[union-attr]
            self.engine.to(self.device)

    # -- one image, directly -----------------------------------------------------------------
    def interrogate(
        self, images: Sequence[Image.Image], options: CaptionOptions | None = None
    ) -> list[dict[str, Any]]:
        """Prompt, caption (and Analyze when the options ask) for RGB PIL images."""
        options = options or CaptionOptions()
        self.load()
        items = [self.preprocess(image.convert("RGB")) for image in images]
        return self.forward(self.collate(items), options) if items else []

    def analyze(self, image: Image.Image) -> dict[str, dict[str, float]]:
        """clip-interrogator-ext's Analyze for one RGB image."""
        self.load()
        assert self.engine is not None
        batch = self.engine.preprocess(image.convert("RGB"))[None]
        return self.engine.analyze(self.engine.image_features(batch), self.options)
