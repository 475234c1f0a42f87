"""Latent diffusion denoiser in the style of MLD: predicts the noise added to VAE latents.

Tokens: [timestep, text condition, Lz latent tokens] -> SkipTransformer ->
the latent positions -> (B, Lz, latent_dim).  With a temporal VAE latent
(``latent_tokens = 0``) Lz varies with the motion length: latent tokens get
sinusoidal positions and padded ones are masked out of attention.  The text condition is the
pooled MiniLM sentence embedding (B, 384); for classifier-free guidance a
learned null embedding replaces it (with probability ``cond_drop`` in
training, always for the unconditional branch at sampling).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from realign_core.models.checkpoint import load_model_checkpoint
from realign_core.models.skip_transformer import SkipTransformer, TimestepEmbedding, sinusoidal_encoding


@dataclass(frozen=True)
class DenoiserConfig:
    latent_tokens: int = 1      # 0 = temporal latent of variable length (masked)
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
        self.latent_pos = nn.Parameter(torch.randn(cfg.latent_tokens, w) * 0.02)  # empty when temporal
        self.body = SkipTransformer(w, cfg.heads, cfg.layers, cfg.ff, cfg.dropout)
        self.out = nn.Linear(w, cfg.latent_dim)

    def _positions(self, n: int, device: torch.device) -> Tensor:
        if self.cfg.latent_tokens:
            return self.latent_pos
        return sinusoidal_encoding(torch.arange(n, device=device), self.cfg.width)

    def forward(self, z_t: Tensor, t: Tensor, text_emb: Tensor, use_condition: Tensor | None = None,
                latent_mask: Tensor | None = None) -> Tensor:
        """z_t (B, Lz, D); t (B,) long; text_emb (B, 384); use_condition (B,) bool (None = all True);
        latent_mask (B, Lz) bool, True on real latent tokens (None = all real). Output zero on padding."""
        if use_condition is not None:
            text_emb = torch.where(use_condition[:, None], text_emb, self.null_text.to(text_emb.dtype))
        tokens = torch.cat([self.time(t)[:, None], self.text_proj(text_emb)[:, None],
                            self.latent_in(z_t) + self._positions(z_t.shape[1], z_t.device)], dim=1)
        pad = None
        if latent_mask is not None:
            pad = torch.cat([latent_mask.new_zeros(latent_mask.shape[0], 2), ~latent_mask], dim=1)
        out = self.out(self.body(tokens, padding_mask=pad)[:, 2:])
        return out if latent_mask is None else out * latent_mask[..., None]


def load_denoiser(path: str | Path, device: str | torch.device = "cpu") -> tuple[LatentDenoiser, dict]:
    """Rebuild a trained denoiser from a best.pt checkpoint; returns (model in eval mode, checkpoint dict).

    ``ckpt["config"]`` also holds the diffusion fields (schedule, num_train_steps, prediction_type,
    cond_drop, latent_scale) and ``ckpt["normalizer"]`` the dataset's mean / std (263,).
    """
    return load_model_checkpoint(path, "denoiser", DenoiserConfig, LatentDenoiser, device)
