"""Motion VAE in the style of MLD: variable-length motion <-> latent tokens.

Two latent layouts (``VAEConfig.latent_tokens``):

* global (``latent_tokens = Lz > 0``, MLD): encoder tokens [2·Lz distribution
  tokens, frame tokens] -> mu, logvar (B, Lz, latent_dim); the decoder reads
  [Lz latent tokens, ceil(T/downsample) positional queries];
* temporal (``latent_tokens = 0``): one latent per down-sampled frame token,
  mu, logvar (B, ceil(T/downsample), latent_dim), masked like the frames; the
  decoder maps each latent back to its frames.  It learns much faster (each
  latent only has to describe ``downsample`` frames), which matters on a CPU.

Both: frames (B, T, 263) normalised -> Linear -> strided Conv1d down-sampling
-> SkipTransformer; decoder -> transposed convolutions back to T frames ->
Linear -> (B, T, 263) normalised features (zero on padding).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from realign_core.models.checkpoint import load_model_checkpoint
from realign_core.models.skip_transformer import SkipTransformer, sinusoidal_encoding


@dataclass(frozen=True)
class VAEConfig:
    feature_dim: int = 263
    width: int = 256
    heads: int = 4
    layers: int = 5
    ff: int = 1024
    dropout: float = 0.1
    latent_tokens: int = 1       # 0 = temporal latent (one per down-sampled frame token)
    latent_dim: int = 256
    downsample: int = 4          # 1, 2 or 4 (each factor 2 is one strided conv)

    @property
    def temporal(self) -> bool:
        return self.latent_tokens == 0

    def latent_length(self, frames: int) -> int:
        """Number of latent tokens for a motion of ``frames`` feature rows."""
        return -(-frames // self.downsample) if self.temporal else self.latent_tokens

    def __post_init__(self) -> None:
        if self.downsample not in (1, 2, 4):
            raise ValueError(f"downsample must be 1, 2 or 4, got {self.downsample}")

    def to_dict(self) -> dict:
        return asdict(self)


def downsample_mask(mask: Tensor, factor: int) -> Tensor:
    """(B, T) frame mask -> (B, ceil(T/factor)): a token is real if any of its frames is."""
    if factor == 1:
        return mask
    pad = (-mask.shape[1]) % factor
    m = nn.functional.pad(mask.float(), (0, pad))
    return m.view(m.shape[0], -1, factor).amax(-1) > 0


def _conv_stack(width: int, factor: int, transpose: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(int(math.log2(factor))):
        conv = (nn.ConvTranspose1d(width, width, 4, stride=2, padding=1) if transpose
                else nn.Conv1d(width, width, 4, stride=2, padding=1))
        layers += [conv, nn.GELU()]
    return nn.Sequential(*layers)


class MotionVAE(nn.Module):
    """encode(features, mask) -> (mu, logvar); decode(z, mask) -> features."""

    def __init__(self, cfg: VAEConfig = VAEConfig()):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.in_proj = nn.Linear(cfg.feature_dim, w)
        self.enc_down = _conv_stack(w, cfg.downsample, transpose=False)
        self.dist_tokens = nn.Parameter(torch.randn(2 * cfg.latent_tokens, w) * 0.02)  # empty when temporal
        self.encoder = SkipTransformer(w, cfg.heads, cfg.layers, cfg.ff, cfg.dropout)
        self.to_mu = nn.Linear(w, cfg.latent_dim)
        self.to_logvar = nn.Linear(w, cfg.latent_dim)

        self.latent_in = nn.Linear(cfg.latent_dim, w)
        self.latent_pos = nn.Parameter(torch.randn(cfg.latent_tokens, w) * 0.02)
        self.decoder = SkipTransformer(w, cfg.heads, cfg.layers, cfg.ff, cfg.dropout)
        self.dec_up = _conv_stack(w, cfg.downsample, transpose=True)
        self.out_proj = nn.Linear(w, cfg.feature_dim)

    def _down(self, x: Tensor, mask: Tensor) -> Tensor:
        """(B, T, w) -> (B, ceil(T/ds), w) by strided convolutions; padding re-zeroed at every level
        so a padded clip encodes exactly like the same clip alone."""
        layers = list(self.enc_down)
        for level, (conv, act) in enumerate(zip(layers[::2], layers[1::2]), start=1):
            x = nn.functional.pad(x, (0, 0, 0, x.shape[1] % 2))
            x = act(conv(x.transpose(1, 2))).transpose(1, 2)
            x = x * downsample_mask(mask, 2 ** level)[:, :x.shape[1], None]
        return x

    def latent_mask(self, mask: Tensor) -> Tensor:
        """(B, T) frame mask -> (B, Lz) mask of the latent tokens (all True for a global latent)."""
        if self.cfg.temporal:
            return downsample_mask(mask, self.cfg.downsample)
        return torch.ones(mask.shape[0], self.cfg.latent_tokens, dtype=torch.bool, device=mask.device)

    def encode(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """features (B, T, 263) normalised, mask (B, T) -> mu, logvar (B, Lz, latent_dim).

        Lz = latent_tokens, or ceil(T/downsample) for a temporal latent (zero on padding).
        """
        x = self._down(self.in_proj(features) * mask[..., None], mask)
        tok_mask = downsample_mask(mask, self.cfg.downsample)
        x = x + sinusoidal_encoding(torch.arange(x.shape[1], device=x.device), x.shape[-1])
        if self.cfg.temporal:
            h = self.encoder(x, padding_mask=~tok_mask)
            keep = tok_mask[..., None]
            return self.to_mu(h) * keep, self.to_logvar(h).clamp(-20.0, 10.0) * keep
        n = 2 * self.cfg.latent_tokens
        x = torch.cat([self.dist_tokens.expand(x.shape[0], -1, -1), x], dim=1)
        pad = torch.cat([torch.zeros_like(tok_mask[:, :1]).expand(-1, n), ~tok_mask], dim=1)
        h = self.encoder(x, padding_mask=pad)
        lz = self.cfg.latent_tokens
        return self.to_mu(h[:, :lz]), self.to_logvar(h[:, lz:n]).clamp(-20.0, 10.0)

    def decode(self, z: Tensor, mask: Tensor) -> Tensor:
        """z (B, Lz, latent_dim), mask (B, T) -> features (B, T, 263) normalised (zero on padding).

        A temporal latent may be longer than ceil(T/downsample) (padded); the extra tokens are ignored.
        """
        frames = mask.shape[1]
        tok_mask = downsample_mask(mask, self.cfg.downsample)
        n_tok = tok_mask.shape[1]
        if self.cfg.temporal:
            pos = sinusoidal_encoding(torch.arange(n_tok, device=z.device), self.cfg.width)
            h = self.decoder(self.latent_in(z[:, :n_tok]) + pos, padding_mask=~tok_mask) * tok_mask[..., None]
            return self._up(h, frames, mask)
        queries = sinusoidal_encoding(torch.arange(n_tok, device=z.device), self.cfg.width)
        queries = queries.expand(z.shape[0], -1, -1)
        lat = self.latent_in(z) + self.latent_pos
        x = torch.cat([lat, queries], dim=1)
        pad = torch.cat([torch.zeros_like(tok_mask[:, :1]).expand(-1, lat.shape[1]), ~tok_mask], dim=1)
        h = self.decoder(x, padding_mask=pad)[:, lat.shape[1]:] * tok_mask[..., None]
        return self._up(h, frames, mask)

    def _up(self, h: Tensor, frames: int, mask: Tensor) -> Tensor:
        """Token states (B, n_tok, w), padded tokens zero (as if the motion ended there) -> (B, T, 263).

        Padding is re-zeroed after every up-sampling level, so a clip decodes exactly as it does
        alone whatever the batch's longest clip (the transposed convolutions would otherwise carry
        their bias from padded positions into the clip's last frames)."""
        layers = list(self.dec_up)
        levels = len(layers) // 2
        for level, (conv, act) in enumerate(zip(layers[::2], layers[1::2]), start=1):
            h = act(conv(h.transpose(1, 2))).transpose(1, 2)
            keep = downsample_mask(mask, 2 ** (levels - level))
            h = h * nn.functional.pad(keep, (0, h.shape[1] - keep.shape[1]))[..., None]
        return self.out_proj(h[:, :frames]) * mask[..., None]

    def forward(self, features: Tensor, mask: Tensor, sample: bool = True,
                encoder_grad: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        """Reconstruct: -> (reconstruction (B, T, 263), mu, logvar).  ``encoder_grad`` False encodes without
        autograd (training the decoder alone leaves the encoder, and so the latent space, as it is)."""
        with torch.set_grad_enabled(encoder_grad and torch.is_grad_enabled()):
            mu, logvar = self.encode(features, mask)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        return self.decode(z, mask), mu, logvar


def load_vae(path: str | Path, device: str | torch.device = "cpu") -> tuple[MotionVAE, dict]:
    """Rebuild a trained VAE from a best.pt checkpoint; returns (model in eval mode, checkpoint dict)."""
    return load_model_checkpoint(path, "vae", VAEConfig, MotionVAE, device)
