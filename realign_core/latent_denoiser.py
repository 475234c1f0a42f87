"""Latent diffusion denoiser in the style of MLD: predicts the noise added to VAE latents.

Tokens: [timestep, text condition, Lz latent tokens] -> SkipTransformer ->
the latent positions -> (B, Lz, latent_dim).  The text condition is the
pooled MiniLM sentence embedding (B, 384); for classifier-free guidance a
learned null embedding replaces it (with probability ``cond_drop`` in
training, always for the unconditional branch at sampling).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from .skip_transformer import SkipTransformer, TimestepEmbedding


@dataclass(frozen=True)
class DenoiserConfig:
    latent_tokens: int = 1
    latent_dim: int = 256
    text_dim: int = 384
    width: int = 256
    heads: int = 4
    layers: int = 5
    ff: int = 1024
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


class LatentDenoiser(nn.Module):
    """forward(z_t, t, text_emb, use_condition) -> model output, same shape as z_t."""

    def __init__(self, cfg: DenoiserConfig = DenoiserConfig()):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.time = TimestepEmbedding(w)
        self.text_proj = nn.Sequential(nn.Linear(cfg.text_dim, w), nn.SiLU(), nn.Linear(w, w))
        self.null_text = nn.Parameter(torch.zeros(cfg.text_dim))
        self.latent_in = nn.Linear(cfg.latent_dim, w)
        self.latent_pos = nn.Parameter(torch.randn(cfg.latent_tokens, w) * 0.02)
        self.body = SkipTransformer(w, cfg.heads, cfg.layers, cfg.ff, cfg.dropout)
        self.out = nn.Linear(w, cfg.latent_dim)

    def forward(self, z_t: Tensor, t: Tensor, text_emb: Tensor, use_condition: Tensor | None = None) -> Tensor:
        """z_t (B, Lz, D); t (B,) long; text_emb (B, 384); use_condition (B,) bool (None = all True)."""
        if use_condition is not None:
            text_emb = torch.where(use_condition[:, None], text_emb, self.null_text.to(text_emb.dtype))
        tokens = torch.cat([self.time(t)[:, None], self.text_proj(text_emb)[:, None],
                            self.latent_in(z_t) + self.latent_pos], dim=1)
        h = self.body(tokens)
        return self.out(h[:, 2:])
