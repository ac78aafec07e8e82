"""Reranking: write several candidate captions per image and keep the one that matches it best
(BLIP's CapFilt idea), scored by BLIP image-text matching or by CLIP similarity.

Candidates come from one captioner's beams (its ``N`` best beams: BLIP, CLIP-prefix GPT-2),
from ``N`` samples (nucleus sampling with seeds ``seed``, ``seed + 1``, ...), or from several
captioners (one caption each). Repeated texts are scored once. The kept caption is the first
candidate with the highest score; every candidate and its scores go to the JSON sidecar.

``RerankCaptioner`` has the captioner shape, configured by its spec (``rerank_spec``), so the
batch engine, the API and Ray's actors run it like any captioner.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from tagger.captioners.base import Captioner
from tagger.captioners.common import require
from tagger.errors import OptionsError
from tagger.interrogator.captioner import MultiBatch
from tagger.options import CaptionOptions, ClipFilterOptions, StrictModel, dump, parse
from tagger.registry import ModelSpec

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger("tagger")

FAMILY = "rerank"
RerankBy = Literal["itm", "clip"]
RerankSource = Literal["beams", "samples", "captioners"]


class RerankOptions(StrictModel):
    """How candidate captions are made and scored."""

    by: RerankBy = Field(
        "itm", description="itm: BLIP image-text matching probability; clip: CLIP cosine."
    )
    candidates: int = Field(5, ge=1, le=32, description="Candidates per image (beams or samples).")
    source: RerankSource = Field(
        "beams",
        description="beams: the captioner's best beams; samples: nucleus samples; captioners: "
        "one caption from each captioner named in captioners (the run's first).",
    )
    captioners: list[str] = Field(
        default_factory=list, description="source captioners: the other captioners."
    )
    itm_model: str = Field(
        "blip-itm-base-coco", description="BLIP ITM model for by=itm: a key or a folder."
    )
    clip_model: str = Field("ViT-B-32", description="by=clip: open_clip model or CLIP folder.")
    clip_pretrained: str = Field("openai", description="by=clip: pretrained tag or weight file.")


def best_index(scores: Sequence[float]) -> int:
    """The first index of the highest score.

    >>> best_index([0.2, 0.7, 0.7, 0.1]), best_index([0.5])
    (1, 0)
    """
    if not scores:
        raise ValueError("no candidates to choose from")
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def spec_to_text(spec: ModelSpec) -> str:
    """A spec as JSON (paths as text)."""
    data = dataclasses.asdict(spec)
    data["path"] = str(spec.path) if spec.path is not None else None
    return json.dumps(data, sort_keys=True)


def spec_from_text(text: str) -> ModelSpec:
    """The spec ``spec_to_text`` wrote."""
    data = json.loads(text)
    data["path"] = Path(data["path"]) if data["path"] is not None else None
    for name in ("files", "aliases"):
        data[name] = tuple(data[name])
    data["settings"] = tuple(tuple(pair) for pair in data["settings"])
    return ModelSpec(**data)


def rerank_spec(
    captioners: Sequence[ModelSpec],
    options: RerankOptions,
    *,
    models_dirs: Sequence[str | os.PathLike[str]] = (),
) -> ModelSpec:
    """A reranking captioner over ``captioners`` (the first makes beams or samples)."""
    if not captioners:
        raise OptionsError("reranking needs a captioner")
    if options.source != "captioners" and len(captioners) > 1:
        raise OptionsError("several captioners are reranked with source 'captioners'")
    settings = (
        ("rerank", json.dumps(dump(options), sort_keys=True)),
        ("captioners", json.dumps([spec_to_text(s) for s in captioners])),
        ("models_dirs", json.dumps([str(d) for d in models_dirs])),
    )
    first = captioners[0]
    return ModelSpec(
        key=f"rerank-{first.key}",
        family=FAMILY,
        files=(),
        description=f"{first.key} reranked by {options.by}",
        settings=settings,
    )


def beam_candidates(
    captioner: Captioner, batch: Any, options: CaptionOptions, count: int
) -> list[list[list[int]]]:
    """The ``count`` best beams of each image, best first (BLIP and CLIP-prefix GPT-2)."""
    torch = require("torch")
    beams = max(count, captioner.beams(options))
    if captioner.family == "blip":
        from tagger.captioners.blip import BlipCaptioner

        assert isinstance(captioner, BlipCaptioner)
        kwargs = captioner.generate_kwargs(
            parse(CaptionOptions, {**dump(options), "sample": False, "num_beams": beams})
        )
        pixels = batch.to(captioner.device, captioner.dtype)
        inputs: dict[str, Any] = {}
        if options.prompt.strip():
            encoded = captioner.processor.tokenizer(options.prompt.strip(), return_tensors="pt")
            ids = encoded["input_ids"].repeat(pixels.shape[0], 1).to(captioner.device)
            inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        with torch.inference_mode():
            out = captioner.model.generate(
                pixel_values=pixels, **inputs, **kwargs, num_return_sequences=count
            )
        rows = [row.tolist() for row in out]
        return [rows[i * count : (i + 1) * count] for i in range(pixels.shape[0])]
    if captioner.family == "clipcap":
        from tagger.captioners.clipcap import beam_decode

        prefix = captioner.prefix(batch)  # type: ignore[attr-defined]
        found = beam_decode(
            captioner.model.gpt,  # type: ignore[attr-defined]
            prefix,
            captioner.stop_id,  # type: ignore[attr-defined]
            beams,
            captioner.max_tokens(options),
        )
        return [image[:count] for image in found]
    raise OptionsError(
        f"captioner {captioner.spec.key!r} ({captioner.family}) gives no beams to rerank: use "
        f"source 'samples' or 'captioners'"
    )


class RerankCaptioner(Captioner):
    """Candidates from its captioners, scored; the best one is the caption."""

    family = FAMILY

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.options = parse(RerankOptions, json.loads(str(self.spec.setting("rerank"))))
        self.sources = [spec_from_text(t) for t in json.loads(str(self.spec.setting("captioners")))]
        self.parts: list[Captioner] = []
        self.scorer: Any = None

    def _load(self) -> None:
        from tagger.captioners import get_captioner
        from tagger.scoring import get_scorer

        dirs = json.loads(str(self.spec.setting("models_dirs") or "[]")) or None
        self.parts = [
            get_captioner(
                spec,
                device=self.device_name,
                device_id=self.device_id,
                half=self.half,
                cache_dir=self.cache_dir,
                models_dirs=dirs,
            )
            for spec in self.sources
        ]
        if self.options.by == "itm":
            self.scorer = get_scorer(
                self.options.itm_model,
                device=self.device_name,
                device_id=self.device_id,
                half=self.half,
                cache_dir=self.cache_dir,
                models_dirs=dirs,
            )
        else:
            from tagger.scoring.clipscore import ClipScorer

            clip = ClipFilterOptions(
                model=self.options.clip_model, pretrained=self.options.clip_pretrained
            )
            self.scorer = ClipScorer(
                clip,
                device=self.device_name,
                device_id=self.device_id,
                half=self.half,
                hf_cache=self.cache_dir,
            ).load()

    def _release(self) -> None:
        self.parts = []
        self.scorer = None

    def unload(self) -> None:
        """Forget the captioners and the scorer (their own cache entries free the memory)."""
        with self._lock:
            self._release()
            self._loaded = False

    @property
    def active_providers(self) -> list[str]:
        """Where the captioners and the scorer run."""
        out: list[str] = []
        for part in [*self.parts, self.scorer]:
            if part is not None:
                out += [p for p in part.active_providers if p not in out]
        return out

    def preprocess(self, image: Image.Image) -> dict[str, Any]:
        """Each captioner's input and the scorer's."""
        self.load()
        return {
            "parts": [part.preprocess(image) for part in self.parts],
            "score": self.scorer.preprocess(image),
        }

    def collate(self, items: Sequence[dict[str, Any]]) -> MultiBatch:
        """Stack each part's inputs."""
        parts = {
            f"part{i}": part.collate([item["parts"][i] for item in items])
            for i, part in enumerate(self.parts)
        }
        parts["score"] = self.scorer.collate([item["score"] for item in items])
        return MultiBatch(parts, len(items))

    def candidates(self, batch: MultiBatch, options: CaptionOptions) -> list[list[tuple[str, str]]]:
        """Each image's candidates as (text, where it came from), repeats dropped."""
        count = len(batch)
        found: list[list[tuple[str, str]]] = [[] for _ in range(count)]
        n = self.options.candidates
        if self.options.source == "beams":
            part = self.parts[0]
            for image, rows in enumerate(beam_candidates(part, batch["part0"], options, n)):
                found[image] += [
                    (part.postprocess(r, options), f"beam {k + 1}") for k, r in enumerate(rows)
                ]
        elif self.options.source == "samples":
            part = self.parts[0]
            seed = options.seed if options.seed is not None else 0
            for k in range(n):
                drawn = parse(CaptionOptions, {**dump(options), "sample": True, "seed": seed + k})
                for image, row in enumerate(part.forward(batch["part0"], drawn)):
                    found[image].append((part.postprocess(row, drawn), f"sample {k + 1}"))
        else:
            for index, part in enumerate(self.parts):
                for image, row in enumerate(part.forward(batch[f"part{index}"], options)):
                    found[image].append((part.postprocess(row, options), part.spec.key))
        out = []
        for items in found:
            seen: dict[str, str] = {}
            for text, source in items:
                seen.setdefault(text, source)
            out.append(list(seen.items()))
        return out

    def forward(self, batch: MultiBatch, options: CaptionOptions) -> list[dict[str, Any]]:
        """Candidates, their scores and the pick, per image."""
        self.load()
        cands = self.candidates(batch, options)
        scores = self.scorer.score(batch["score"], [[t for t, _ in c] for c in cands])
        key = "itm" if self.options.by == "itm" else "clip"
        rows = []
        for items, values in zip(cands, scores, strict=True):
            raw = [v.itm if key == "itm" else float(v) for v in values]
            records = []
            for (text, source), value in zip(items, values, strict=True):
                record: dict[str, Any] = {"caption": text, "source": source}
                record.update(value.as_dict() if key == "itm" else {"clip": round(float(value), 6)})
                records.append(record)
            caption = records[best_index(raw)]["caption"] if records else ""
            rows.append({"caption": caption, "candidates": records})
        return rows

    def postprocess(self, row: dict[str, Any], options: CaptionOptions) -> str:  # type: ignore[override]
        """The kept caption."""
        return str(row["caption"])

    def details(self, row: dict[str, Any], options: CaptionOptions) -> dict[str, Any]:
        """The candidates with their scores, and how they were ranked."""
        model = (
            self.options.itm_model
            if self.options.by == "itm"
            else (f"{self.options.clip_model}/{self.options.clip_pretrained}")
        )
        return {
            "candidates": row["candidates"],
            "rerank": {"by": self.options.by, "model": model, "source": self.options.source},
        }
