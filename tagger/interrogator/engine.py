"""The CLIP Interrogator: a CLIP model with its banks of terms, turning an image's CLIP
features and a caption into a prompt (``classic``, ``fast``, ``best``, ``negative``) or the
Analyze rankings.

Every rule is pharmapsychotic's ``clip-interrogator`` 0.6.0 ``Interrogator``, including its
quirks (they decide the prompts people get): long banks are ranked in chunks, each keeping
``int(chunk_size / chunks)`` terms, and the final ranking of a reversed (``negative``) ranking is
not reversed; the ``negative`` chain compares negated similarities with the unnegated similarity
of its first term; the greedy chain iterates a ``set`` of terms (its first best wins a tie);
``truncate`` tests each part without its separator. The similarities that decide the chain's
steps and the final best-of are computed exactly as the library computes them.

What differs is the work: bank lookups are one matrix product over embeddings computed once
and cached (``tagger.interrogator.banks``), and each chain step scores every candidate term
after the current prompt with the prompt's keys and values computed once
(``tagger.interrogator.textenc``) instead of encoding every full candidate text. Candidates
whose scores come within ``TIE`` of the best are scored again the library's way, so that float
rounding of the shortcut cannot pick another term than the library would.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagger.errors import ModelNotFoundError, OptionsError
from tagger.interrogator import banks as bank_files
from tagger.interrogator.options import (
    CATEGORIES,
    InterrogatorOptions,
    sanitized_name,
    split_clip_name,
)
from tagger.interrogator.rules import (
    JOIN,
    caption_and_terms,
    chunk_plan,
    classic_prompt,
    truncate_to_fit,
)
from tagger.registry import ModelSpec

if TYPE_CHECKING:
    import torch

    from tagger.captioners.openclip import ClipModel
    from tagger.interrogator.textenc import TextEncoder

log = logging.getLogger("tagger")

#: Candidates scoring within this of the best are scored again as the library scores them
#: (float32; in float16, on a GPU, the shortcut's rounding is larger, and so is the margin).
TIE = 1e-5
TIE_HALF = 2e-3
#: Banks of your own kept in memory at once (a server gets many); older ones reload from disk.
EXTRA_TABLES = 16
#: Phrases whose token ids are remembered (the chain's candidates repeat from image to image).
TOKEN_CACHE = 250_000
#: Analyze: terms per bank, and the banks with the keys clip-interrogator-ext answers with.
ANALYZE_TOP = 5
ANALYZE_KEYS = {
    "mediums": "medium",
    "artists": "artist",
    "movements": "movement",
    "trendings": "trending",
    "flavors": "flavor",
}


@dataclass(frozen=True)
class ClipSource:
    """How a CLIP model is loaded, and the name its bank embeddings are filed under."""

    model: str
    pretrained: str | None
    cache_name: str
    published: bool
    identity: str


def _folder_digest(folder: Path) -> str:
    """A digest of a CLIP folder's files (name, size, time), for its cache file names."""
    import hashlib

    parts = [
        f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}"
        for f in sorted(folder.iterdir())
        if f.is_file()
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def resolve_clip(
    name: str,
    models_dirs: Iterable[str | os.PathLike[str]] = (),
    *,
    allow_paths: bool = True,
) -> ClipSource:
    """Where the CLIP model a user named comes from: a folder in open_clip's layout (a path,
    or the name of a folder under a models folder), else ``architecture/pretrained``.

    Raises ModelNotFoundError for an architecture open_clip does not know, or one named
    without its pretrained weights.
    """
    from tagger.captioners.openclip import CLIP_CONFIG

    text = name.strip()
    if not text:
        raise ModelNotFoundError("no CLIP model named: use e.g. ViT-L-14/openai")
    plain = not any(c in text for c in "/\\:\x00") and not text.startswith(".")
    folders = [Path(d).expanduser() / text for d in models_dirs] if plain else []
    if allow_paths:
        folders.insert(0, Path(text).expanduser())
    for folder in folders:
        if folder.is_dir() and (folder / CLIP_CONFIG).is_file():
            resolved = folder.resolve()
            stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in resolved.name)
            return ClipSource(
                str(resolved),
                None,
                f"{stem[:40]}-{_folder_digest(resolved)}",
                False,
                f"folder:{resolved}",
            )
    arch, pretrained = split_clip_name(text)
    import open_clip

    if arch not in open_clip.list_models():
        raise ModelNotFoundError(
            f"unknown CLIP model {text!r}: name an open_clip architecture and its pretrained "
            f"weights (ViT-L-14/openai, ViT-H-14/laion2b_s32b_b79k, "
            f"ViT-bigG-14/laion2b_s39b_b160k; GET /interrogator/models lists them) or a CLIP "
            f"folder (open_clip_config.json)"
        )
    if pretrained is None:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise ModelNotFoundError(
            f"CLIP model {text!r} names no pretrained weights: use {arch}/<tag>, with a tag "
            f"such as {', '.join(tags[:6]) or 'openai'}"
        )
    return ClipSource(arch, pretrained, sanitized_name(text), True, f"open_clip:{text}")


@dataclass
class Table:
    """Terms with their embeddings, held as one or more row blocks (a merged table is the
    blocks of its banks, never a copy)."""

    labels: list[str]
    blocks: list[torch.Tensor]

    def __len__(self) -> int:
        return len(self.labels)

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` as one matrix."""
        import torch

        out, offset = [], 0
        for block in self.blocks:
            size = block.shape[0]
            lo, hi = max(start - offset, 0), min(stop - offset, size)
            if lo < hi:
                out.append(block[lo:hi])
            offset += size
        return out[0] if len(out) == 1 else torch.cat(out)

    def take(self, indices: Sequence[int]) -> torch.Tensor:
        """The rows at ``indices``, stacked in that order."""
        import torch

        first = self.blocks[0]
        wanted = torch.tensor(list(indices), dtype=torch.long, device=first.device)
        if len(self.blocks) == 1:
            return first[wanted]
        # one gather per block: which block each index falls in, and its row there
        sizes = torch.tensor([b.shape[0] for b in self.blocks], device=first.device)
        ends = sizes.cumsum(0)
        block_of = torch.bucketize(wanted, ends, right=True)
        if wanted.numel() and (int(wanted.min()) < 0 or int(block_of.max()) >= len(self.blocks)):
            raise IndexError(f"row indices outside the table's {len(self)} rows")
        out = first.new_empty((wanted.numel(), first.shape[1]))
        for b, block in enumerate(self.blocks):
            here = (block_of == b).nonzero()[:, 0]
            if here.numel():
                out[here] = block[wanted[here] - (ends[b] - sizes[b])]
        return out

    @staticmethod
    def merge(tables: Sequence[Table]) -> Table:
        """The tables one after another."""
        return Table(
            [label for t in tables for label in t.labels], [b for t in tables for b in t.blocks]
        )


def top_indices(
    features: torch.Tensor, embeds: torch.Tensor, count: int, reverse: bool = False
) -> list[int]:
    """The library's ``LabelTable._rank``: indices of the ``count`` rows most (or, reversed,
    least) similar to one image's features ``[1, D]``."""
    count = min(count, embeds.shape[0])
    similarity = features @ embeds.T
    if reverse:
        similarity = -similarity
    _, top = similarity.float().cpu().topk(count, dim=-1)
    return [int(i) for i in top[0]]


def rank_table(
    features: torch.Tensor,
    table: Table,
    count: int,
    chunk_size: int,
    reverse: bool = False,
) -> list[str]:
    """The library's ``LabelTable.rank``: the ``count`` best terms of a table, ranked in chunks
    when it is longer than ``chunk_size`` (the second round is never reversed)."""
    chunks, keep = chunk_plan(len(table), chunk_size)
    if not keep:
        top = top_indices(features, table.rows(0, len(table)), count, reverse)
        return [table.labels[i] for i in top]
    if keep < 1:
        raise OptionsError(
            f"chunk_size {chunk_size} is too small for a bank of {len(table)} terms: each of "
            f"its {len(chunks)} chunks would keep no term; use a chunk size of at least "
            f"{int(len(table) ** 0.5) + 1}"
        )
    survivors: list[int] = []
    for start, stop in chunks:
        survivors += [
            start + i for i in top_indices(features, table.rows(start, stop), keep, reverse)
        ]
    top = top_indices(features, table.take(survivors), count)
    return [table.labels[survivors[i]] for i in top]


class ClipInterrogator:
    """A loaded CLIP model and its banks (the part of the CLIP Interrogator that needs CLIP).

    Thread-safe; banks load on first use. ``spec``, ``loaded``, ``load`` and ``unload`` make
    it a model of ``tagger.cache.ModelCache``.
    """

    def __init__(
        self,
        spec: ModelSpec,
        source: ClipSource,
        *,
        device: str | None = "auto",
        device_id: int = 0,
        half: bool = True,
        hf_cache: str | os.PathLike[str] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        download: bool = True,
    ) -> None:
        self.spec = spec
        self.source = source
        self.device_name = device
        self.device_id = device_id
        self.half = half
        self.hf_cache = hf_cache
        self.data_dir = data_dir
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.download = download
        self.clip: ClipModel | None = None
        self.encoder: TextEncoder | None = None
        self._tables: dict[tuple[str, str], Table] = {}
        self._terms: dict[str, list[str]] = {}
        self._ids: dict[str, list[int]] = {}
        self._lock = threading.RLock()

    @classmethod
    def from_clip(
        cls,
        spec: ModelSpec,
        clip: ClipModel,
        cache_name: str,
        **kwargs: Any,
    ) -> ClipInterrogator:
        """An interrogator on a CLIP model already loaded (``ClipModel``), its bank embeddings
        filed under ``cache_name`` (the library's sanitized model name for a named model)."""
        from tagger.interrogator.textenc import TextEncoder

        source = ClipSource(clip.name, None, cache_name, False, f"loaded:{clip.name}")
        engine = cls(spec, source, **kwargs)
        engine.clip = clip
        engine.encoder = TextEncoder.build(clip.model, clip.tokenizer)
        return engine

    # -- lifetime --------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        """True once CLIP is loaded."""
        return self.clip is not None

    def check_files(self) -> None:
        """Offline, a named CLIP whose Hub repository is not in the cache fails at once (before
        open_clip builds the whole model only to find no weights)."""
        from tagger.hub import hf_cache_dir, is_offline

        if not (self.source.pretrained and is_offline()):
            return
        try:
            import open_clip
            from huggingface_hub import constants

            cfg = open_clip.get_pretrained_cfg(self.source.model, self.source.pretrained) or {}
        except Exception:  # an open_clip without this lookup: let it try
            return
        repo = str(cfg.get("hf_hub") or "").strip("/")
        if not repo or "/" not in repo:
            return
        cache = hf_cache_dir(self.hf_cache) or Path(constants.HF_HUB_CACHE)
        if not (cache / f"models--{repo.replace('/', '--')}").is_dir():
            from tagger.errors import ModelFilesMissingError

            raise ModelFilesMissingError(
                f"CLIP {self.source.model}/{self.source.pretrained} is not on disk and cannot be "
                f"downloaded (HF_HUB_OFFLINE is set): its weights come from "
                f"https://huggingface.co/{repo}; run once with network access (into {cache}), or "
                f"name a CLIP folder in open_clip's layout instead"
            )

    def load(self) -> ClipInterrogator:
        """Load CLIP (once)."""
        with self._lock:
            if self.clip is None:
                self.check_files()
                from tagger.captioners.common import pick_device
                from tagger.captioners.openclip import load_clip
                from tagger.interrogator.textenc import TextEncoder

                clip = load_clip(
                    self.source.model,
                    self.source.pretrained,
                    device=pick_device(self.device_name, self.device_id),
                    half=self.half,
                    cache_dir=self.hf_cache,
                )
                self.encoder = TextEncoder.build(clip.model, clip.tokenizer)
                if self.encoder is None:
                    log.info(
                        "CLIP %s: its text tower is not one the shortcut covers; every text is "
                        "encoded in full (slower, same results)",
                        self.source.identity,
                    )
                self.clip = clip
        return self

    def unload(self) -> None:
        """Drop CLIP and the banks' embeddings (they stay cached on disk)."""
        with self._lock:
            self.clip = None
            self.encoder = None
            self._tables.clear()
            self._terms.clear()
            self._ids.clear()

    @property
    def device(self) -> torch.device:
        """Where CLIP runs."""
        assert self.clip is not None
        return self.clip.device

    def to(self, device: Any) -> None:
        """Move CLIP and the loaded banks (the low-VRAM offload)."""
        with self._lock:
            if self.clip is None:
                return
            self.clip.model = self.clip.model.to(device)
            self.clip.device = device
            for table in self._tables.values():
                table.blocks = [block.to(device) for block in table.blocks]

    # -- text ------------------------------------------------------------------------------
    def context(self) -> int:
        """CLIP's text context (77 for every released CLIP)."""
        assert self.clip is not None
        if self.encoder is not None:
            return self.encoder.context
        return int(self.clip.tokenizer([""]).shape[1])

    def at_max_len(self, text: str) -> bool:
        """The library's ``_prompt_at_max_len``: the tokenized text fills the whole context."""
        assert self.clip is not None
        if self.encoder is not None:
            return len(self.bpe(text)) + 2 >= self.encoder.context
        return bool(self.clip.tokenizer([text])[0][-1] != 0)

    def truncate(self, text: str) -> str:
        """The library's ``_truncate_to_fit``."""
        return truncate_to_fit(text, self.at_max_len)

    def bpe(self, text: str) -> list[int]:
        """BPE ids of a text (remembered for bank terms)."""
        assert self.encoder is not None
        ids = self._ids.get(text)
        if ids is None:
            ids = self.encoder.bpe(text)
            if len(self._ids) < TOKEN_CACHE:
                self._ids[text] = ids
        return ids

    def _text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised text features, as the library computes them (``encode_text`` on the
        tokenizer's full context)."""
        import torch

        assert self.clip is not None
        tokens = self.clip.tokenizer(list(texts)).to(self.device)
        with torch.inference_mode():
            features = self.clip.model.encode_text(tokens)
            features /= features.norm(dim=-1, keepdim=True)
        return features

    def similarity(self, features: torch.Tensor, text: str) -> float:
        """The library's ``similarity``: cosine of one image's features and a text."""
        return float((self._text_features([text]) @ features.T)[0][0].item())

    def similarities(self, features: torch.Tensor, texts: Sequence[str]) -> list[float]:
        """The library's ``similarities``: cosines with each text (one batch)."""
        return [float(v) for v in (self._text_features(texts) @ features.T).T[0].tolist()]

    def _first_best(self, features: torch.Tensor, texts: Sequence[str], reverse: bool) -> int:
        """The library's ``rank_top``: index of the first most (or least) similar text."""
        similarity = self._text_features(texts) @ features.T
        if reverse:
            similarity = -similarity
        return int(similarity.argmax().item())

    def pick(
        self, features: torch.Tensor, prompt: str, phrases: Sequence[str], reverse: bool = False
    ) -> str:
        """The phrase whose text ``prompt, phrase`` (or the phrase alone, for an empty prompt)
        is most (reversed: least) similar to the image; the first such phrase on a tie."""
        import torch

        texts = [f"{prompt}{JOIN}{p}" for p in phrases] if prompt else list(phrases)
        if self.encoder is None:
            return phrases[self._first_best(features, texts, reverse)]
        enc = self.encoder
        prefix = [enc.sot, *self.bpe(prompt + JOIN.rstrip())] if prompt else [enc.sot]
        room = enc.context - 1 - len(prefix)
        if room <= 0:  # every candidate is the prompt cut to the context: all tie
            return phrases[self._first_best(features, texts, reverse)]
        suffixes = [[*self.bpe(p)[:room], enc.eot] for p in phrases]
        scores = enc.encode_suffixes(prefix, suffixes)
        scores = scores / scores.norm(dim=-1, keepdim=True)
        sims = (scores @ features.T.to(scores.dtype))[:, 0].float()
        if reverse:
            sims = -sims
        margin = TIE if scores.dtype == torch.float32 else TIE_HALF
        close = (sims >= sims.max() - margin).nonzero()[:, 0].tolist()
        best = close[0]
        if len(close) > 1:
            best = close[self._first_best(features, [texts[i] for i in close], reverse)]
        if enc.full_tokens(texts[best]) != [*prefix, *suffixes[best]]:
            # the text does not tokenize as prompt + term (an unusual character at the join):
            # score this step the library's way
            return phrases[self._first_best(features, texts, reverse)]
        return phrases[best]

    # -- banks ------------------------------------------------------------------------------
    def _store(self) -> bank_files.EmbeddingStore:
        return bank_files.EmbeddingStore(
            self.cache_dir,
            self.source.cache_name,
            published=self.source.published,
            download=self.download,
            hf_cache=self.hf_cache,
        )

    def _embed(self, terms: Sequence[str], chunk_size: int) -> Any:
        """float16 normalised embeddings of terms (computed now)."""
        import numpy as np

        out = []
        step = max(1, chunk_size)
        for start in range(0, len(terms), step):
            chunk = list(terms[start : start + step])
            if self.encoder is not None:
                features = self.encoder.encode_tokens([self.encoder.full_tokens(t) for t in chunk])
                features = features / features.norm(dim=-1, keepdim=True)
            else:
                features = self._text_features(chunk)
            out.append(features.half().cpu().numpy())
        if not out:
            dim = int(self.clip.model.text_projection.shape[-1]) if self.clip is not None else 0
            return np.zeros((0, dim), dtype=np.float16)
        return np.concatenate(out)

    def _table(
        self, key: str, terms: Sequence[str], chunk_size: int, version: str | None = None
    ) -> Table:
        """A bank's table (embeddings from the store, computed once when missing); kept under
        ``(key, version)``, the version being the terms' hash unless given."""
        import torch

        digest = version if version is not None else bank_files.terms_hash(terms)
        with self._lock:
            table = self._tables.get((key, digest))
            if table is None:
                self.load()
                embeds = self._store().get(key, terms, lambda t: self._embed(t, chunk_size))
                tensor = torch.from_numpy(embeds.astype("float16"))
                if self.device.type == "cpu":
                    tensor = tensor.float()  # the library ranks in float32 on the CPU
                table = Table(list(terms), [tensor.to(self.device)])
                self._tables[(key, digest)] = table
            return table

    def bank(self, name: str, chunk_size: int = 2048) -> Table:
        """One of the library's banks: artists, flavors, mediums, movements, trendings,
        negative."""
        with self._lock:
            terms = self._terms.get(name)
            if terms is None:
                terms = bank_files.load_bank(name, bank_files.data_dir(self.data_dir))
                self._terms[name] = terms
        return self._table(name, terms, chunk_size, version="library")

    def extra_bank(self, name: str, terms: Sequence[str], chunk_size: int = 2048) -> Table:
        """A bank of your own."""
        if not terms:
            raise OptionsError(f"bank {name!r} has no terms")
        with self._lock:
            extras = [key for key in self._tables if key[0].startswith("extra-")]
            for key in extras[: max(0, len(extras) - EXTRA_TABLES + 1)]:
                del self._tables[key]  # the oldest (their embeddings stay cached on disk)
        return self._table(f"extra-{name}", list(terms), chunk_size)

    def tables(self, options: InterrogatorOptions) -> dict[str, Table]:
        """The banks these options use, library banks first (in its order), then yours."""
        skip = set(options.skip_categories)
        out = {name: self.bank(name, options.chunk_size) for name in CATEGORIES if name not in skip}
        for name, terms in options.extra_banks.items():
            if name in CATEGORIES or name == "negative":
                raise OptionsError(
                    f"bank name {name!r} is one of the library's; name yours otherwise"
                )
            out[name] = self.extra_bank(name, terms, options.chunk_size)
        return out

    # -- images ------------------------------------------------------------------------------
    def preprocess(self, image: Any) -> torch.Tensor:
        """One RGB image -> CLIP's input tensor."""
        self.load()
        assert self.clip is not None
        return self.clip.preprocess(image)

    def image_features(self, batch: torch.Tensor) -> torch.Tensor:
        """``[N, 3, S, S]`` -> L2-normalised image features ``[N, D]`` (the library's
        ``image_to_features``)."""
        import torch

        self.load()
        assert self.clip is not None
        with torch.inference_mode():
            features = self.clip.model.encode_image(batch.to(self.device, self.clip.dtype))
            features /= features.norm(dim=-1, keepdim=True)
        return features

    # -- the modes ----------------------------------------------------------------------------
    def chain(
        self,
        features: torch.Tensor,
        phrases: Iterable[str],
        best_prompt: str = "",
        best_sim: float = 0.0,
        min_count: int = 8,
        max_count: int = 32,
        reverse: bool = False,
    ) -> str:
        """The library's greedy ``chain``: add the term that makes the prompt most like the
        image while that improves (always for the first ``min_count``), up to ``max_count``
        terms or the token limit; returns the best prompt seen."""
        pool = set(phrases)
        if not best_prompt:
            if not pool:
                return ""
            best_prompt = self.pick(features, "", list(pool), reverse)
            best_sim = self.similarity(features, best_prompt)
            pool.remove(best_prompt)
        current, current_sim = best_prompt, best_sim
        for step in range(max_count):
            if not pool:
                break
            term = self.pick(features, current, list(pool), reverse)
            prompt = f"{current}{JOIN}{term}"
            sim = self.similarity(features, prompt)
            if reverse:
                sim = -sim
            if sim > best_sim:
                best_prompt, best_sim = prompt, sim
            if sim > current_sim or step < min_count:
                current, current_sim = prompt, sim
            else:
                break
            if self.at_max_len(current):
                break
            pool.remove(term)
        return best_prompt

    def classic(
        self,
        features: torch.Tensor,
        caption: str | None,
        options: InterrogatorOptions,
        flavors: int,
    ) -> str:
        """The library's ``interrogate_classic`` (banks left out are left out of the prompt;
        ``caption`` None: no caption part)."""
        t = self.tables(options)
        size = options.chunk_size

        def top(name: str) -> str | None:
            return rank_table(features, t[name], 1, size)[0] if name in t else None

        extras = [rank_table(features, t[n], 1, size)[0] for n in options.extra_banks]
        prompt = classic_prompt(
            caption,
            top("mediums"),
            top("artists"),
            top("trendings"),
            top("movements"),
            rank_table(features, t["flavors"], flavors, size) if "flavors" in t else None,
            extras,
        )
        return self.truncate(prompt)

    def merged(self, options: InterrogatorOptions) -> Table:
        """The table ``fast`` and ``best`` rank: every bank used, library order, then yours."""
        return Table.merge(list(self.tables(options).values()))

    def fast(
        self,
        features: torch.Tensor,
        caption: str | None,
        options: InterrogatorOptions,
        flavors: int,
    ) -> str:
        """The library's ``interrogate_fast``: the caption and the top terms of every bank."""
        tops = rank_table(features, self.merged(options), flavors, options.chunk_size)
        return self.truncate(caption_and_terms(caption, tops))

    def best(
        self, features: torch.Tensor, caption: str | None, options: InterrogatorOptions
    ) -> str:
        """The library's ``interrogate``: the chain from the caption, then the best of caption,
        classic, fast and chain (``caption`` None: the chain starts from the best term, and no
        caption competes)."""
        flaves = rank_table(
            features, self.merged(options), options.intermediate_count, options.chunk_size
        )
        best_sim = self.similarity(features, caption) if caption is not None else 0.0
        chained = self.chain(
            features,
            flaves,
            caption or "",
            best_sim,
            min_count=options.min_flavors,
            max_count=options.max_flavors,
        )
        fast = self.fast(features, caption, options, options.max_flavors)
        classic = self.classic(features, caption, options, options.max_flavors)
        candidates = (
            [classic, fast, chained] if caption is None else [caption, classic, fast, chained]
        )
        sims = self.similarities(features, candidates)
        return candidates[max(range(len(sims)), key=lambda i: (sims[i], -i))]

    def negative(self, features: torch.Tensor, options: InterrogatorOptions) -> str:
        """The library's ``interrogate_negative``: the chain toward the least similar terms
        among the bottom flavors and the negative bank."""
        flaves: list[str] = []
        if "flavors" not in options.skip_categories:
            flavors = self.bank("flavors", options.chunk_size)
            flaves = rank_table(
                features, flavors, options.intermediate_count, options.chunk_size, reverse=True
            )
        flaves += self.bank("negative", options.chunk_size).labels
        return self.chain(features, flaves, max_count=options.max_flavors, reverse=True)

    def prompt(
        self, features: torch.Tensor, caption: str | None, options: InterrogatorOptions
    ) -> str:
        """One image's prompt (``features``: ``[1, D]``) in the options' mode. ``caption`` is
        the caption part's text, given to the library's rules as it is (an empty caption
        included); None when there is no caption part."""
        mode = options.mode
        if mode == "caption":
            return caption or ""
        if mode == "negative":
            return self.negative(features, options)
        if mode == "classic":
            return self.classic(features, caption, options, options.classic_flavors)
        if mode == "fast":
            return self.fast(features, caption, options, options.max_flavors)
        return self.best(features, caption, options)

    def analyze(
        self, features: torch.Tensor, options: InterrogatorOptions, top: int = ANALYZE_TOP
    ) -> dict[str, dict[str, float]]:
        """clip-interrogator-ext's Analyze: the ``top`` terms of each bank with their
        similarities, keyed ``medium``, ``artist``, ``movement``, ``trending``, ``flavor``
        (your banks by their names)."""
        tables = self.tables(options)
        out: dict[str, dict[str, float]] = {}
        for name in (*ANALYZE_KEYS, *options.extra_banks):
            if name not in tables:
                continue
            terms = rank_table(features, tables[name], top, options.chunk_size)
            sims = self.similarities(features, terms) if terms else []
            out[ANALYZE_KEYS.get(name, name)] = dict(zip(terms, sims, strict=True))
        return out


def default_cache_dir() -> Path:
    """``$TAGGER_CACHE_DIR/clip-interrogator`` or ``~/.cache/tagger/clip-interrogator``."""
    from tagger.hub import tagger_cache_dir

    return tagger_cache_dir("clip-interrogator")
