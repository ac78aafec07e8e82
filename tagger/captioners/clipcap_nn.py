"""The ClipCap mapping networks (Mokady et al. 2021), as published, with the original key names.

This module imports torch at import time; ``tagger.captioners.clipcap`` imports it only when a
CLIP-prefix model is loaded.

- ``MLPMapper``: ``model.0`` Linear -> Tanh -> ``model.2`` Linear (the released COCO, Conceptual
  and Huynh et al. Flickr weights: prefix_size -> 768*L/2 -> 768*L), or a single ``model.0``
  Linear (the variant used for prefixes longer than 10). Built from the checkpoint's shapes.
- ``TransformerMapper``: ``linear`` (CLIP -> clip_length tokens), ``prefix_const`` (learned
  prefix), ``transformer.layers.N`` pre-LayerNorm blocks (``norm1``, ``attn.to_queries`` no
  bias, ``attn.to_keys_values`` no bias, ``attn.project``, ``norm2``, ``mlp.fc1``/``fc2`` ReLU,
  ratio 2); the output is the last prefix_length positions.
- ``ClipCaptionModel``: ``gpt`` (GPT2LMHeadModel) + ``clip_project`` (a mapper).
"""

from __future__ import annotations

import torch
from torch import nn


class MLPMapper(nn.Module):
    """Linear layers with Tanh between them, keys ``model.0``, ``model.2``..."""

    def __init__(self, sizes: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for index in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[index], sizes[index + 1], bias=True))
            if index < len(sizes) - 2:
                layers.append(nn.Tanh())
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, prefix_size]`` -> ``[N, prefix_length * dim]``."""
        return self.model(x)


class _MLP(nn.Module):
    """The transformer block's feed-forward part: fc1 -> ReLU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class _Attention(nn.Module):
    """Multi-head self-attention with one key/value projection, as in ClipCap."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.to_queries = nn.Linear(dim, dim, bias=False)
        self.to_keys_values = nn.Linear(dim, dim * 2, bias=False)
        self.project = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        head = dim // self.heads
        queries = self.to_queries(x).reshape(batch, length, self.heads, head)
        keys_values = self.to_keys_values(x).reshape(batch, length, 2, self.heads, head)
        keys, values = keys_values[:, :, 0], keys_values[:, :, 1]
        attention = torch.einsum("bnhd,bmhd->bnmh", queries, keys) * self.scale
        attention = attention.softmax(dim=2)
        out = torch.einsum("bnmh,bmhd->bnhd", attention, values).reshape(batch, length, dim)
        return self.project(out)


class _Layer(nn.Module):
    """Pre-LayerNorm residual block: attention, then the MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _MLP(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _Transformer(nn.Module):
    """A stack of ``_Layer``, keys ``layers.N``."""

    def __init__(self, dim: int, heads: int, num_layers: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_Layer(dim, heads, mlp_ratio) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class TransformerMapper(nn.Module):
    """ClipCap's transformer mapper ("GPT-2 frozen" variant)."""

    def __init__(
        self,
        prefix_size: int,
        dim: int,
        prefix_length: int,
        clip_length: int,
        num_layers: int = 8,
        heads: int = 8,
    ) -> None:
        super().__init__()
        self.clip_length = clip_length
        self.linear = nn.Linear(prefix_size, clip_length * dim)
        self.prefix_const = nn.Parameter(torch.randn(prefix_length, dim))
        self.transformer = _Transformer(dim, heads, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, prefix_size]`` -> ``[N, prefix_length, dim]``."""
        tokens = self.linear(x).view(x.shape[0], self.clip_length, -1)
        prefix = self.prefix_const.unsqueeze(0).expand(x.shape[0], *self.prefix_const.shape)
        out = self.transformer(torch.cat((tokens, prefix), dim=1))
        return out[:, self.clip_length :]


class ClipCaptionModel(nn.Module):
    """GPT-2 (``gpt``) with a mapping network (``clip_project``) from a CLIP embedding."""

    def __init__(self, gpt: nn.Module, clip_project: nn.Module, prefix_length: int) -> None:
        super().__init__()
        self.gpt = gpt
        self.clip_project = clip_project
        self.prefix_length = prefix_length

    def prefix_embeddings(self, clip_embedding: torch.Tensor) -> torch.Tensor:
        """``[N, prefix_size]`` float32 -> ``[N, prefix_length, n_embd]`` GPT-2 input embeddings."""
        out = self.clip_project(clip_embedding)
        return out.reshape(clip_embedding.shape[0], self.prefix_length, -1)
