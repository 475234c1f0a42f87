"""Transformer encoder with U-Net-style long skip connections (MLD's "SkipTransformer").

Layers ``0..L-1``: the outputs of the first half are kept and, in the second
half, concatenated with the input of the mirrored layer and projected back to
the model width.  An odd layer count has one middle layer without a skip.
Also: sinusoidal position / timestep encodings shared by the models.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_encoding(positions: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features of (...) positions or timesteps -> (..., dim) float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=positions.device) / half)
    angles = positions.float()[..., None] * freqs
    enc = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    return nn.functional.pad(enc, (0, dim % 2))


class TimestepEmbedding(nn.Module):
    """Diffusion timestep t (B,) -> (B, width): sinusoidal -> Linear -> SiLU -> Linear."""

    def __init__(self, width: int):
        super().__init__()
        self.width = width
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(sinusoidal_encoding(t, self.width))


class SkipTransformer(nn.Module):
    """Pre-norm transformer encoder with long skips. (B, N, width) -> (B, N, width)."""

    def __init__(self, width: int, heads: int, layers: int, ff: int, dropout: float = 0.1):
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")

        def block() -> nn.TransformerEncoderLayer:
            return nn.TransformerEncoderLayer(width, heads, ff, dropout, activation="gelu",
                                              batch_first=True, norm_first=True)

        self.n_half = layers // 2
        self.down = nn.ModuleList(block() for _ in range(self.n_half))
        self.middle = block() if layers % 2 else None
        self.up = nn.ModuleList(block() for _ in range(self.n_half))
        self.merge = nn.ModuleList(nn.Linear(2 * width, width) for _ in range(self.n_half))
        self.norm = nn.LayerNorm(width)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """x: (B, N, width); padding_mask: (B, N) True where the token is padding."""
        skips = []
        for layer in self.down:
            x = layer(x, src_key_padding_mask=padding_mask)
            skips.append(x)
        if self.middle is not None:
            x = self.middle(x, src_key_padding_mask=padding_mask)
        for layer, merge in zip(self.up, self.merge):
            x = merge(torch.cat([x, skips.pop()], dim=-1))
            x = layer(x, src_key_padding_mask=padding_mask)
        return self.norm(x)
