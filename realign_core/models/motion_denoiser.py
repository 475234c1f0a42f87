"""Motion-space diffusion denoiser in the style of MDM: predicts clean motion x0 from noised motion.

Unlike the MLD-style generator (VAE + latent denoiser) this model works
directly on normalised HumanML3D features (B, T, 263):

    x_t (B, T, 263) -> Linear -> frame states (B, T, w)
        -> strided Conv1d x log2(downsample) -> motion tokens (B, N, w), N = ceil(T / downsample)
        -> SkipTransformer over [timestep token, text token, N motion tokens + sinusoidal positions]
        -> ConvTranspose1d x log2(downsample) -> (B, T, w)
        -> + the frame states (a long skip that keeps per-frame detail)
        -> Conv1d (kernel 3) refinement -> Linear -> x0 (B, T, 263), zero on padded frames.

The text condition is the pooled MiniLM sentence embedding (B, 384); a learned
null embedding replaces it where ``use_condition`` is False (classifier-free
guidance).  Padded frames are zeroed before every convolution and padded
tokens are masked out of attention and re-zeroed after every up-sampling, so a
sample's output on its real frames does not depend on how much padding follows.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from realign_core.models.checkpoint import load_model_checkpoint
from realign_core.models.motion_vae import downsample_mask
from realign_core.models.skip_transformer import SkipTransformer, TimestepEmbedding, sinusoidal_encoding

DOWNSAMPLE_FACTORS = (1, 2, 4)


@dataclass(frozen=True)
class MotionDenoiserConfig:
    """Hyper-parameters of ``MotionDenoiser`` (saved in checkpoints)."""

    feature_dim: int = 263
    text_dim: int = 384
    width: int = 256
    heads: int = 4
    layers: int = 6
    ff: int = 1024
    dropout: float = 0.1
    downsample: int = 4          # frames per motion token: 1, 2 or 4 (each factor 2 is one strided conv)

    def __post_init__(self) -> None:
        if self.downsample not in DOWNSAMPLE_FACTORS:
            raise ValueError(f"downsample must be one of {DOWNSAMPLE_FACTORS}, got {self.downsample}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be divisible by heads {self.heads}")

    @property
    def levels(self) -> int:
        """Number of factor-2 down-/up-sampling convolutions."""
        return int(math.log2(self.downsample))

    def token_length(self, frames: int) -> int:
        """Motion tokens for ``frames`` feature rows: ceil(frames / downsample)."""
        return -(-frames // self.downsample)

    def to_dict(self) -> dict:
        return asdict(self)


def level_masks(mask: Tensor, levels: int) -> list[Tensor]:
    """Frame mask (B, T) -> masks at resolutions 2**0 .. 2**levels, level k of length
    ceil(T / 2**levels) * 2**(levels - k): the mask is first padded with False to a multiple of
    2**levels so the up-sampled sequences (which are that long) have a mask at every level."""
    factor = 2 ** levels
    padded = nn.functional.pad(mask, (0, (-mask.shape[1]) % factor), value=False)
    return [downsample_mask(padded, 2 ** k) for k in range(levels + 1)]


class MotionDenoiser(nn.Module):
    """forward(x_t, t, text_emb, use_condition, mask) -> predicted x0 (B, T, 263)."""

    def __init__(self, cfg: MotionDenoiserConfig = MotionDenoiserConfig()):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.frame_in = nn.Linear(cfg.feature_dim, w)
        self.down = nn.ModuleList(nn.Conv1d(w, w, 4, stride=2, padding=1) for _ in range(cfg.levels))
        self.time = TimestepEmbedding(w)
        self.text_proj = nn.Sequential(nn.Linear(cfg.text_dim, w), nn.SiLU(), nn.Linear(w, w))
        self.null_text = nn.Parameter(torch.zeros(cfg.text_dim))
        self.body = SkipTransformer(w, cfg.heads, cfg.layers, cfg.ff, cfg.dropout)
        self.up = nn.ModuleList(nn.ConvTranspose1d(w, w, 4, stride=2, padding=1) for _ in range(cfg.levels))
        self.refine = nn.Conv1d(w, w, 3, padding=1)
        self.out = nn.Linear(w, cfg.feature_dim)

    # ----------------------------------------------------------------- stages
    def _downsample(self, h: Tensor, masks: list[Tensor]) -> Tensor:
        """Frame states (B, T, w), zero on padding -> motion tokens (B, N, w), zero on padding."""
        h = nn.functional.pad(h, (0, 0, 0, masks[0].shape[1] - h.shape[1]))
        for level, conv in enumerate(self.down, start=1):
            h = nn.functional.gelu(conv(h.transpose(1, 2))).transpose(1, 2)
            h = h * masks[level][..., None]
        return h

    def _upsample(self, h: Tensor, masks: list[Tensor]) -> Tensor:
        """Motion tokens (B, N, w), zero on padding -> frame states (B, N * downsample, w), zero on padding."""
        for level, conv in zip(range(self.cfg.levels - 1, -1, -1), self.up):
            h = nn.functional.gelu(conv(h.transpose(1, 2))).transpose(1, 2)
            h = h * masks[level][..., None]
        return h

    def _condition(self, t: Tensor, text_emb: Tensor, use_condition: Tensor | None) -> Tensor:
        """(B,) timesteps and (B, 384) sentence embeddings -> the two condition tokens (B, 2, w)."""
        if use_condition is not None:
            text_emb = torch.where(use_condition[:, None], text_emb, self.null_text.to(text_emb.dtype))
        return torch.stack([self.time(t), self.text_proj(text_emb)], dim=1)

    def _transform(self, tokens: Tensor, cond: Tensor, token_mask: Tensor) -> Tensor:
        """Motion tokens (B, N, w) + condition tokens (B, 2, w) -> motion token states (B, N, w), zero on padding."""
        pos = sinusoidal_encoding(torch.arange(tokens.shape[1], device=tokens.device), self.cfg.width)
        pad = torch.cat([token_mask.new_zeros(token_mask.shape[0], cond.shape[1]), ~token_mask], dim=1)
        h = self.body(torch.cat([cond, tokens + pos], dim=1), padding_mask=pad)
        return h[:, cond.shape[1]:] * token_mask[..., None]

    def forward(self, x_t: Tensor, t: Tensor, text_emb: Tensor, use_condition: Tensor | None = None,
                mask: Tensor | None = None) -> Tensor:
        """Predict the clean motion.

        x_t: (B, T, 263) noised normalised features (values on padded frames are ignored);
        t: (B,) long diffusion timesteps; text_emb: (B, 384) sentence embeddings;
        use_condition: (B,) bool, False -> the learned null text embedding (None = all True);
        mask: (B, T) bool, True on real frames (None = all real).
        Returns x0 (B, T, 263), exactly zero on padded frames.
        """
        b, frames, _ = x_t.shape
        if mask is None:
            mask = torch.ones(b, frames, dtype=torch.bool, device=x_t.device)
        masks = level_masks(mask, self.cfg.levels)
        skip = self.frame_in(x_t) * mask[..., None]
        tokens = self._downsample(skip, masks)
        h = self._transform(tokens, self._condition(t, text_emb, use_condition), masks[-1])
        h = self._upsample(h, masks)[:, :frames]
        h = nn.functional.gelu(self.refine((h + skip).transpose(1, 2))).transpose(1, 2)
        return self.out(h * mask[..., None]) * mask[..., None]


def load_motion_denoiser(path: str | Path, device: str | torch.device = "cpu") -> tuple[MotionDenoiser, dict]:
    """Rebuild a trained motion denoiser from ``OUT/mdm/best.pt`` (or its fp16 export).

    Returns (model in eval mode, checkpoint dict); ``ckpt["config"]`` has the diffusion fields
    (schedule, num_train_steps, prediction_type, cond_drop) and ``ckpt["normalizer"]`` the
    dataset's ``mean`` / ``std`` (263,) used to normalise the features the model sees.
    """
    return load_model_checkpoint(path, "mdm", MotionDenoiserConfig, MotionDenoiser, device)
