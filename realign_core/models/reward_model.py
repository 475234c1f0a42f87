"""ReAlign's step-aware reward model: a TMR-style text-motion retrieval network.

Two encoders map a caption and a (possibly noisy) motion to Gaussian posteriors
in one ``latent_dim`` space; a decoder reconstructs the motion from a latent
(TMR's auxiliary losses, see :mod:`realign_core.training.tasks.reward`).

Motion encoder.  Normalised features (B, T, 263) are zeroed on padding, cut into
patches of ``downsample`` frames and projected by one strided ``Conv1d``
(kernel = stride = ``downsample``; ``downsample=1`` is a per-frame linear
projection), plus a sinusoidal position encoding.  Tokens::

    [mu_token, logvar_token, t_token, patch_1 .. patch_N]

go through a :class:`~realign_core.models.skip_transformer.SkipTransformer`; the outputs
at the first two positions are the posterior mean and log-variance.
``t_token = MLP(sinusoidal(t))`` (Linear -> SiLU -> Linear) tells the encoder the
diffusion timestep of its input; clean motions use t = 0.  With
``step_aware=False`` the t token is left out entirely (the ablation model).

Down-sampling by 4 turns 196 frames (20 fps) into 49 tokens (5 per second),
which cuts the attention and feed-forward cost about four-fold; a patch is
real when any of its frames is (a partially padded patch sees zeros there).

Text encoder.  Frozen MiniLM token states (B, L, 384) -> Linear -> + position
encoding -> ``[mu_token, logvar_token, tokens..]`` -> SkipTransformer.

Decoder.  A latent (B, D) and a frame mask (B, T) -> ceil(T/downsample)
sinusoidal position queries, each plus a linear map of the latent (cross-attention
to a one-token memory reduces to exactly such a per-query bias, so we add it
directly) -> SkipTransformer -> Linear to ``downsample`` frames of 263 features
per token -> (B, T, 263) normalised features, zero on padding.

Reward API (posterior means, unit-normalised, never sampled, dropout off even in
``train()`` mode, so rewards are deterministic):

* ``encode_motion(features, mask, t)`` -> (B, D), differentiable w.r.t. features;
* ``encode_text(captions)`` -> (B, D), no grad;
* ``reward_t2m`` / ``reward_m2m`` -> (B,) cosine similarities.

The frozen MiniLM encoder is *not* a submodule: it is looked up through
``load_text_encoder`` on the model's device (or given to the constructor and
kept out of ``nn.Module``'s registry), so ``state_dict`` holds only this model's
own weights.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from realign_core.models.checkpoint import load_model_checkpoint
from realign_core.models.skip_transformer import SkipTransformer, TimestepEmbedding, sinusoidal_encoding
from realign_core.text.encoder import DEFAULT_MAX_TOKENS, EMBEDDING_DIM, load_text_encoder

if TYPE_CHECKING:
    from realign_core.text.encoder import TextEncoder

Timesteps = int | Tensor | None
DOWNSAMPLE_FACTORS = (1, 2, 4)
LOGVAR_RANGE = (-20.0, 10.0)   # clamp keeps exp(logvar) finite in the KL terms
TOKEN_INIT_STD = 0.02


@dataclass(frozen=True)
class RewardModelConfig:
    """Architecture of the reward model (the ``[reward.model]`` TOML table's model part).

    ``latent_dim`` is also the transformer width of all three parts (as in TMR).
    Defaults are sized for ~25 minutes of 2-core CPU training (paper: 9 motion
    layers, width 256): about 5.4 M parameters (~11 MB in fp16), 5 motion layers
    over 49 tokens for 196 frames (``downsample=4``), a 2-layer text encoder and
    a 1-layer decoder (reconstruction is only an auxiliary loss).
    """

    feature_dim: int = 263            # motion features per frame
    text_dim: int = EMBEDDING_DIM     # frozen MiniLM token-state width
    latent_dim: int = 256             # latent size = transformer width
    heads: int = 4
    ff: int = 512                     # feed-forward width of every layer
    motion_layers: int = 5
    text_layers: int = 2
    decoder_layers: int = 1
    dropout: float = 0.1
    downsample: int = 4               # frames per motion token: 1, 2 or 4
    step_aware: bool = True           # False: no timestep token (ablation)
    max_text_tokens: int = DEFAULT_MAX_TOKENS   # MiniLM truncation, [CLS]/[SEP] included

    def __post_init__(self) -> None:
        for name in ("feature_dim", "text_dim", "latent_dim", "heads", "ff",
                     "motion_layers", "text_layers", "decoder_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.latent_dim % self.heads:
            raise ValueError(f"latent_dim ({self.latent_dim}) must be divisible by heads ({self.heads})")
        if self.downsample not in DOWNSAMPLE_FACTORS:
            raise ValueError(f"downsample must be one of {DOWNSAMPLE_FACTORS}, got {self.downsample}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.max_text_tokens < 2:
            raise ValueError(f"max_text_tokens must be >= 2, got {self.max_text_tokens}")

    def model_fields(self) -> dict:
        """Only the architecture fields (drops those a subclass adds)."""
        names = RewardModelConfig.__dataclass_fields__
        return {k: v for k, v in asdict(self).items() if k in names}


def patch_mask(mask: Tensor, factor: int) -> Tensor:
    """(B, T) frame mask -> (B, ceil(T/factor)) token mask: a patch is real if any frame is."""
    pad = (-mask.shape[1]) % factor
    padded = F.pad(mask, (0, pad), value=False)
    return padded.view(mask.shape[0], -1, factor).any(dim=-1)


def timestep_batch(t: Timesteps, batch: int, device: torch.device) -> Tensor:
    """t as an int, a 0-dim or (B,) tensor, or None (= 0, clean) -> (B,) long on ``device``."""
    if t is None:
        t = 0
    if isinstance(t, Tensor):
        if t.ndim == 0:
            return t.to(device=device, dtype=torch.long).expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"t must be an int or a ({batch},) tensor, got shape {tuple(t.shape)}")
        return t.to(device=device, dtype=torch.long)
    return torch.full((batch,), int(t), dtype=torch.long, device=device)


def _positions(count: int, width: int, device: torch.device) -> Tensor:
    """Sinusoidal encoding of positions 0..count-1 -> (count, width)."""
    return sinusoidal_encoding(torch.arange(count, device=device), width)


def _distribution(body: SkipTransformer, tokens: Tensor, x: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """Run ``body`` on [tokens (K, W) broadcast, x (B, N, W)] with x's mask keep (B, N).

    The first two outputs are (mu, logvar), each (B, W); logvar is clamped.
    """
    batch, count = x.shape[0], tokens.shape[0]
    seq = torch.cat([tokens.expand(batch, -1, -1), x], dim=1)
    padding = torch.cat([keep.new_zeros(batch, count), ~keep], dim=1)
    out = body(seq, padding_mask=padding)
    return out[:, 0], out[:, 1].clamp(*LOGVAR_RANGE)


class MotionPosteriorEncoder(nn.Module):
    """(features (B, T, 263), mask (B, T), t (B,) long) -> (mu, logvar), each (B, D)."""

    def __init__(self, cfg: RewardModelConfig) -> None:
        super().__init__()
        width, self.factor = cfg.latent_dim, cfg.downsample
        self.patch = nn.Conv1d(cfg.feature_dim, width, kernel_size=cfg.downsample, stride=cfg.downsample)
        self.dist_tokens = nn.Parameter(torch.randn(2, width) * TOKEN_INIT_STD)
        self.timestep = TimestepEmbedding(width) if cfg.step_aware else None
        self.body = SkipTransformer(width, cfg.heads, cfg.motion_layers, cfg.ff, cfg.dropout)

    def embed_frames(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T, F), (B, T) -> (patch tokens (B, N, D) with positions, token mask (B, N))."""
        pad = (-features.shape[1]) % self.factor
        x = F.pad(features * mask[..., None].to(features.dtype), (0, 0, 0, pad))
        x = self.patch(x.transpose(1, 2)).transpose(1, 2)
        x = x + _positions(x.shape[1], x.shape[2], x.device).to(x.dtype)
        return x, patch_mask(mask, self.factor)

    def forward(self, features: Tensor, mask: Tensor, t: Tensor | None) -> tuple[Tensor, Tensor]:
        x, keep = self.embed_frames(features, mask)
        if self.timestep is not None:
            t_token = self.timestep(timestep_batch(t, x.shape[0], x.device))[:, None].to(x.dtype)
            x = torch.cat([t_token, x], dim=1)
            keep = torch.cat([keep.new_ones(keep.shape[0], 1), keep], dim=1)
        return _distribution(self.body, self.dist_tokens, x, keep)


class TextPosteriorEncoder(nn.Module):
    """(token states (B, L, 384), token mask (B, L)) -> (mu, logvar), each (B, D)."""

    def __init__(self, cfg: RewardModelConfig) -> None:
        super().__init__()
        width = cfg.latent_dim
        self.proj = nn.Linear(cfg.text_dim, width)
        self.dist_tokens = nn.Parameter(torch.randn(2, width) * TOKEN_INIT_STD)
        self.body = SkipTransformer(width, cfg.heads, cfg.text_layers, cfg.ff, cfg.dropout)

    def forward(self, states: Tensor, token_mask: Tensor) -> tuple[Tensor, Tensor]:
        x = self.proj(states)
        x = x + _positions(x.shape[1], x.shape[2], x.device).to(x.dtype)
        return _distribution(self.body, self.dist_tokens, x, token_mask)


class MotionDecoder(nn.Module):
    """(latent (B, D), frame mask (B, T)) -> normalised features (B, T, 263), zero on padding."""

    def __init__(self, cfg: RewardModelConfig) -> None:
        super().__init__()
        width, self.factor, self.feature_dim = cfg.latent_dim, cfg.downsample, cfg.feature_dim
        self.latent = nn.Linear(width, width)
        self.body = SkipTransformer(width, cfg.heads, cfg.decoder_layers, cfg.ff, cfg.dropout)
        self.out = nn.Linear(width, cfg.downsample * cfg.feature_dim)

    def forward(self, z: Tensor, mask: Tensor) -> Tensor:
        batch, frames = mask.shape
        keep = patch_mask(mask, self.factor)
        queries = _positions(keep.shape[1], z.shape[-1], z.device).to(z.dtype)[None] + self.latent(z)[:, None]
        h = self.body(queries, padding_mask=~keep)
        x = self.out(h).reshape(batch, -1, self.feature_dim)[:, :frames]
        return x * mask[..., None].to(x.dtype)


@contextmanager
def _dropout_off(module: nn.Module) -> Iterator[None]:
    """Evaluate ``module`` in eval mode and restore its previous mode afterwards."""
    was_training = module.training
    if was_training:
        module.train(False)
    try:
        yield
    finally:
        if was_training:
            module.train(True)


class RewardModel(nn.Module):
    """Step-aware text-motion retrieval model used as ReAlign's reward.

    Training-side methods (``motion_posterior``, ``text_posterior``, ``decode``)
    follow the module's train/eval mode; the reward API does not (see module doc).
    """

    def __init__(self, config: RewardModelConfig = RewardModelConfig(),
                 text_model: TextEncoder | None = None) -> None:
        super().__init__()
        self.config = config
        self.motion_encoder = MotionPosteriorEncoder(config)
        self.text_encoder = TextPosteriorEncoder(config)
        self.decoder = MotionDecoder(config)
        object.__setattr__(self, "_text_model", text_model)   # not registered: stays out of state_dict

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def step_aware(self) -> bool:
        return self.config.step_aware

    def text_model(self) -> TextEncoder:
        """The frozen MiniLM encoder: the given one, else the process-wide one on this device."""
        return self._text_model if self._text_model is not None else load_text_encoder(self.device)

    # ------------------------------------------------------------------ training side

    def token_states(self, captions: list[str]) -> tuple[Tensor, Tensor]:
        """B captions -> (states (B, L, 384), mask (B, L)) on this model's device (cached)."""
        states, mask = self.text_model().encode_tokens(captions, self.config.max_text_tokens)
        return states.to(self.device), mask.to(self.device)

    def motion_posterior(self, features: Tensor, mask: Tensor, t: Timesteps = None) -> tuple[Tensor, Tensor]:
        """features (B, T, 263) normalised (x_t), mask (B, T), t int | (B,) -> (mu, logvar) (B, D).

        t is ignored by a model with ``step_aware=False``; None means clean (t = 0).
        """
        t_batch = timestep_batch(t, features.shape[0], features.device) if self.step_aware else None
        return self.motion_encoder(features, mask, t_batch)

    def text_posterior(self, captions: list[str]) -> tuple[Tensor, Tensor]:
        """B captions -> (mu, logvar), each (B, D)."""
        return self.text_encoder(*self.token_states(captions))

    def decode(self, z: Tensor, mask: Tensor) -> Tensor:
        """Latent (B, D) and frame mask (B, T) -> normalised features (B, T, 263)."""
        if self.decoder is None:
            raise RuntimeError("this reward model was loaded from an exported checkpoint without its training "
                               "decoder; train it (`realign train`) to get one")
        return self.decoder(z, mask)

    # ------------------------------------------------------------------ reward API

    def encode_motion(self, features: Tensor, mask: Tensor, t: Timesteps = 0) -> Tensor:
        """Unit posterior means (B, D) of motions x_t (B, T, 263) at timestep t; differentiable."""
        with _dropout_off(self):
            mu, _ = self.motion_posterior(features, mask, t)
        return F.normalize(mu, dim=-1)

    @torch.no_grad()
    def encode_text(self, captions: list[str]) -> Tensor:
        """Unit posterior means (B, D) of B captions (no grad; token states cached)."""
        with _dropout_off(self):
            mu, _ = self.text_posterior(list(captions))
        return F.normalize(mu, dim=-1)

    def reward_t2m(self, features: Tensor, mask: Tensor, t: Timesteps, text_emb: Tensor) -> Tensor:
        """cos(motion x_t, caption): features (B, T, 263), text_emb (B, D) or (D,) -> (B,)."""
        return self._cosine(self.encode_motion(features, mask, t), text_emb)

    def reward_m2m(self, features: Tensor, mask: Tensor, t: Timesteps, ref_emb: Tensor) -> Tensor:
        """cos(motion x_t, reference motion embedding (B, D) or (D,)) -> (B,)."""
        return self._cosine(self.encode_motion(features, mask, t), ref_emb)

    def forward(self, features: Tensor, mask: Tensor, t: Timesteps = 0) -> Tensor:
        """Same as :meth:`encode_motion`."""
        return self.encode_motion(features, mask, t)

    @staticmethod
    def _cosine(motion_emb: Tensor, other: Tensor) -> Tensor:
        other = F.normalize(other.to(device=motion_emb.device, dtype=motion_emb.dtype), dim=-1)
        return (motion_emb * other).sum(dim=-1)


REWARD_TASKS = ("reward", "reward_plain")


def load_reward_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[RewardModel, dict]:
    """(reward model in eval mode, checkpoint dict) from one read of the file; ``ckpt["config"]`` also
    holds its training noise schedule (``schedule``, ``num_train_steps``), which guidance matches."""
    return load_model_checkpoint(path, REWARD_TASKS, RewardModelConfig, RewardModel, device)


def load_reward_model(path: str | Path, device: str | torch.device = "cpu") -> RewardModel:
    """Rebuild a reward model (``reward`` or ``reward_plain``) from its checkpoint, in eval mode."""
    return load_reward_checkpoint(path, device)[0]
