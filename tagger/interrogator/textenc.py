"""CLIP's text encoder run on token lists of their own length, and on many texts that share a
prefix, computing the prefix once.

open_clip's ``encode_text`` always runs the full context (77 positions), although CLIP's text
transformer is causal and a text's feature is read at its end-of-text token: positions after it
change nothing. Two consequences, used here:

- a batch of short texts (bank terms are a few tokens) needs only as many positions as its
  longest member (``encode_tokens``);
- texts that start with the same tokens (the CLIP Interrogator's chain tries every candidate
  term after the same prompt) share the keys and values of those tokens in every layer: they are
  computed once for the prefix, and each text runs only its own few suffix tokens, attending to
  the prefix's cached keys and values (``encode_suffixes``).

Both give what ``encode_text`` gives up to float rounding. ``TextEncoder.build`` returns None
for text towers this does not cover (bidirectional, a class token, a custom attention block,
a tokenizer other than CLIP's own); callers then use ``encode_text`` itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: Texts per forward pass (suffixes are a few tokens each, so this bounds memory, not speed).
SUFFIX_BATCH = 256
TEXT_BATCH = 256


@dataclass
class _Tower:
    """The parts of a causal text tower."""

    token_embedding: Any
    positional_embedding: Any
    blocks: list[Any]
    ln_final: Any
    projection: Any
    heads: int
    pool: str
    eos_id: int | None


def _tower(model: Any) -> _Tower | None:
    """The text tower of an open_clip model when it is one this module can run, else None."""
    import torch.nn as nn

    text = getattr(model, "text", None)
    owner = text if isinstance(text, nn.Module) and hasattr(text, "transformer") else model
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final")
    if not all(hasattr(owner, name) for name in needed):
        return None
    if getattr(owner, "cls_emb", None) is not None or getattr(owner, "attn_mask", None) is None:
        return None  # a class token, or bidirectional attention
    if getattr(owner, "use_pad_mask", False):
        return None
    pool = getattr(owner, "pool_type", None) or getattr(model, "text_pool_type", "argmax")
    if pool not in ("argmax", "eos"):
        return None
    blocks = list(getattr(owner.transformer, "resblocks", []))
    if not blocks:
        return None
    for block in blocks:
        attn = getattr(block, "attn", None)
        if not isinstance(attn, nn.MultiheadAttention) or hasattr(block, "ln_1_kv"):
            return None
        if not attn._qkv_same_embed_dim or attn.bias_k is not None or attn.add_zero_attn:
            return None
        if not all(hasattr(block, name) for name in ("ln_1", "ln_2", "mlp", "ls_1", "ls_2")):
            return None
    projection = getattr(owner, "text_projection", None)
    eos = getattr(owner, "eos_id", None) or getattr(model, "text_eos_id", None)
    return _Tower(
        owner.token_embedding,
        owner.positional_embedding,
        blocks,
        owner.ln_final,
        projection,
        blocks[0].attn.num_heads,
        pool,
        eos,
    )


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, L, W]`` -> ``[B, H, L, W/H]``."""
    batch, length, width = x.shape
    return x.view(batch, length, heads, width // heads).transpose(1, 2)


class TextEncoder:
    """A causal CLIP text tower run position by position (see the module docstring)."""

    def __init__(self, tower: _Tower, tokenizer: Any) -> None:
        self.tower = tower
        self.tokenizer = tokenizer
        self.sot = int(tokenizer.sot_token_id)
        self.eot = int(tokenizer.eot_token_id)
        self.context = int(tower.positional_embedding.shape[0])

    @classmethod
    def build(cls, model: Any, tokenizer: Any) -> TextEncoder | None:
        """The encoder for an open_clip model and its tokenizer, or None when not covered."""
        tower = _tower(model)
        if tower is None:
            return None
        needed = ("encode", "sot_token_id", "eot_token_id", "context_length")
        if not all(hasattr(tokenizer, name) for name in needed):
            return None  # not CLIP's own BPE tokenizer (an HF tokenizer, say)
        if getattr(tokenizer, "reduction_fn", None) is not None:
            return None
        if tower.pool == "eos" and tower.eos_id != tokenizer.eot_token_id:
            return None
        if int(tokenizer.context_length) != int(tower.positional_embedding.shape[0]):
            return None
        return cls(tower, tokenizer)

    # -- token lists ---------------------------------------------------------------------
    def bpe(self, text: str) -> list[int]:
        """The BPE ids of a text, without start and end tokens (the tokenizer's own cleaning)."""
        return list(self.tokenizer.encode(text))

    def full_tokens(self, text: str) -> list[int]:
        """What the tokenizer feeds the model for ``text``: start, ids, end, cut to the context
        with the last kept token turned into the end token (open_clip's truncation)."""
        return self.fit([self.sot, *self.bpe(text), self.eot])

    def fit(self, tokens: list[int]) -> list[int]:
        """A token list cut to the context as open_clip's tokenizer cuts it."""
        if len(tokens) > self.context:
            tokens = [*tokens[: self.context - 1], self.eot]
        return tokens

    # -- the transformer ------------------------------------------------------------------
    def _embed(self, tokens: torch.Tensor, start: int) -> torch.Tensor:
        """Token plus positional embeddings for positions ``start...``."""
        dtype = self.tower.blocks[0].mlp.c_fc.weight.dtype
        x = self.tower.token_embedding(tokens).to(dtype)
        positions = self.tower.positional_embedding[start : start + tokens.shape[1]]
        return x + positions.to(dtype)

    def _attention(
        self,
        block: Any,
        h: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor] | None,
        causal: torch.Tensor,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Causal self-attention of ``h`` (``[B, L, W]``) over the cached prefix keys and values
        ``past`` (``[H, P, d]``, shared by the whole batch) and itself; returns the attention
        output and this part's keys and values (``[B, H, L, d]``).

        The batch's queries against the shared prefix run as one long query sequence
        (``[H, B*L, d]``), so the prefix's keys and values are never copied per text.
        """
        import torch
        from torch.nn import functional

        attn = block.attn
        heads = self.tower.heads
        batch, length, width = h.shape
        size = width // heads
        q, k, v = functional.linear(h, attn.in_proj_weight, attn.in_proj_bias).split(width, dim=-1)
        q, k, v = (t.reshape(batch, length, heads, size).transpose(1, 2) for t in (q, k, v))
        scale = 1.0 / math.sqrt(size)
        own = torch.baddbmm(
            causal.expand(batch * heads, length, length),
            q.reshape(batch * heads, length, size),
            k.reshape(batch * heads, length, size).transpose(1, 2),
            alpha=scale,
        ).view(batch, heads, length, length)
        if past is None:
            out = own.softmax(dim=-1) @ v
        else:
            past_k, past_v = past
            prefix_len = past_k.shape[1]
            flat_q = q.transpose(0, 1).reshape(heads, batch * length, size)
            shared = (flat_q @ past_k.transpose(1, 2)) * scale  # [H, B*L, P]
            shared = shared.view(heads, batch, length, prefix_len).transpose(0, 1)
            weights = torch.cat([shared, own], dim=-1).softmax(dim=-1)
            to_prefix = (
                weights[..., :prefix_len].transpose(0, 1).reshape(heads, batch * length, prefix_len)
            )
            from_prefix = (to_prefix @ past_v).view(heads, batch, length, size).transpose(0, 1)
            out = from_prefix + weights[..., prefix_len:] @ v
        out = out.transpose(1, 2).reshape(batch, length, width)
        return functional.linear(out, attn.out_proj.weight, attn.out_proj.bias), (k, v)

    def _run(
        self,
        x: torch.Tensor,
        past: list[tuple[torch.Tensor, torch.Tensor]] | None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Every block over ``x``; returns the output and each block's keys and values."""
        import torch

        length = x.shape[1]
        causal = torch.full((length, length), float("-inf"), device=x.device, dtype=x.dtype)
        causal = causal.triu(1)
        cache = []
        for index, block in enumerate(self.tower.blocks):
            attended, kv = self._attention(
                block, block.ln_1(x), past[index] if past is not None else None, causal
            )
            x = x + block.ls_1(attended)
            x = x + block.ls_2(block.mlp(block.ln_2(x)))
            cache.append(kv)
        return x, cache

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        """Final norm and projection of pooled rows ``[N, W]`` -> ``[N, D]``."""
        import torch.nn as nn

        x = self.tower.ln_final(x)
        projection = self.tower.projection
        if projection is None:
            return x
        if isinstance(projection, nn.Linear):
            return projection(x)
        return x @ projection

    def _device(self) -> torch.device:
        return self.tower.token_embedding.weight.device

    # -- public --------------------------------------------------------------------------
    def encode_tokens(self, sequences: Sequence[Sequence[int]]) -> torch.Tensor:
        """Features (not normalised) of complete token lists (start ... end, each at most the
        context long), batched by length so that each batch runs only its longest member."""
        import torch

        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        out: list[torch.Tensor | None] = [None] * len(sequences)
        with torch.inference_mode():
            for start in range(0, len(order), TEXT_BATCH):
                chunk = order[start : start + TEXT_BATCH]
                length = max(len(sequences[i]) for i in chunk)
                ids = torch.zeros((len(chunk), length), dtype=torch.long)
                ends = []
                for row, i in enumerate(chunk):
                    ids[row, : len(sequences[i])] = torch.tensor(list(sequences[i]))
                    ends.append(len(sequences[i]) - 1)
                ids = ids.to(self._device())
                x, _ = self._run(self._embed(ids, 0), None)
                pooled = x[torch.arange(len(chunk), device=x.device), torch.tensor(ends)]
                for row, feature in zip(chunk, self._project(pooled), strict=True):
                    out[row] = feature
        if not out:
            return torch.zeros((0, 0))
        return torch.stack(out)  # type: ignore[arg-type]

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Features (not normalised) of texts, tokenized as open_clip's tokenizer does."""
        return self.encode_tokens([self.full_tokens(text) for text in texts])

    def encode_suffixes(
        self, prefix: Sequence[int], suffixes: Sequence[Sequence[int]]
    ) -> torch.Tensor:
        """Features (not normalised) of the token lists ``prefix + suffix`` for each suffix.

        ``prefix`` starts with the start token; each suffix ends with the end token and
        ``len(prefix) + len(suffix)`` is at most the context. The prefix runs once; each batch
        of suffixes attends to its cached keys and values.
        """
        import torch

        if not prefix:
            return self.encode_tokens(suffixes)
        device = self._device()
        out: list[torch.Tensor | None] = [None] * len(suffixes)
        with torch.inference_mode():
            ids = torch.tensor([list(prefix)], dtype=torch.long, device=device)
            _, cache = self._run(self._embed(ids, 0), None)
            past = [(k[0], v[0]) for k, v in cache]  # [H, P, d] each
            order = sorted(range(len(suffixes)), key=lambda i: len(suffixes[i]))
            for start in range(0, len(order), SUFFIX_BATCH):
                chunk = order[start : start + SUFFIX_BATCH]
                length = max(len(suffixes[i]) for i in chunk)
                rows = torch.zeros((len(chunk), length), dtype=torch.long)
                ends = []
                for row, i in enumerate(chunk):
                    rows[row, : len(suffixes[i])] = torch.tensor(list(suffixes[i]))
                    ends.append(len(suffixes[i]) - 1)
                x, _ = self._run(self._embed(rows.to(device), len(prefix)), past)
                pooled = x[torch.arange(len(chunk), device=device), torch.tensor(ends)]
                for row, feature in zip(chunk, self._project(pooled), strict=True):
                    out[row] = feature
        return torch.stack(out)  # type: ignore[arg-type]
