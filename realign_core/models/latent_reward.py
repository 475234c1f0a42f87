"""ReAlign's step-aware reward model in the latent space of the MLD-style generator.

The motion-space :class:`~realign_core.models.reward_model.RewardModel` scores decoded motions, so
every guided step of a latent generator runs the VAE decoder forward and backward.  This model reads
the generator's diffusion state itself -- the *scaled* VAE latents z (B, Lz, C) (``C`` = the VAE's
``latent_dim``, ``Lz`` = 49 tokens of 4 frames for 196 frames with the temporal VAE) -- so guidance
needs no decoder.  It is the same network as the motion-space one (it subclasses it): the motion
encoder's "frames" are latent tokens (``feature_dim = C``), ``downsample`` groups that many latent
tokens per transformer token (2 -> 25 tokens for 196 frames, 4 -> 13), the timestep token is the same
``TimestepEmbedding`` of t that the denoiser uses, the text encoder is unchanged, and the auxiliary
decoder reconstructs the clean latent instead of the motion.  The reward API (``encode_motion``,
``encode_text``, ``reward_t2m``, ``reward_m2m``) is inherited: ``encode_motion(z, token_mask, t)``.

Inputs and their spaces:

* z: the generator's state, VAE posterior latents times the denoiser's ``latent_scale`` (unit
  variance), noised with the *generator's* schedule (so t needs no matching);
* token mask (B, Lz): True on real latent tokens, from the frame lengths by :meth:`token_mask`
  (``frames_per_token`` and ``latent_tokens`` are the VAE's; a global latent is all real).

A latent reward model is tied to one VAE and its ``latent_scale``: the checkpoint records the scale
(``ckpt["config"]["latent_scale"]``) and :func:`check_matches_generator` refuses another generator's.
Trained by :mod:`realign_core.training.tasks.latent_reward`; used by the guidance hook when a request
asks for ``reward_space = "latent"``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from realign_core.models.checkpoint import load_model_checkpoint
from realign_core.models.reward_model import RewardModel, RewardModelConfig, Timesteps

if TYPE_CHECKING:
    from realign_core.text.encoder import TextEncoder

LATENT_REWARD_TASK = "latent_reward"
SCALE_TOLERANCE = 1e-4   # relative: a latent_scale further off than this is another VAE / denoiser


@dataclass(frozen=True)
class LatentRewardModelConfig(RewardModelConfig):
    """Architecture of the latent reward model (the model fields of ``[latent_reward.model]``).

    ``feature_dim``: channels per latent token (the VAE's ``latent_dim``); ``latent_tokens`` /
    ``frames_per_token``: the VAE's layout (0 = temporal latent, one token per ``frames_per_token``
    frames); ``downsample``: latent tokens per transformer token.  The training task fills the three
    VAE fields from the VAE checkpoint.
    """

    feature_dim: int = 32
    motion_layers: int = 3
    downsample: int = 2
    latent_tokens: int = 0
    frames_per_token: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.latent_tokens < 0 or self.frames_per_token < 1:
            raise ValueError(f"latent_tokens must be >= 0 and frames_per_token >= 1, got "
                             f"{self.latent_tokens} and {self.frames_per_token}")


class LatentRewardModel(RewardModel):
    """Step-aware text-latent retrieval model: the reward of guidance without a decoder.

    ``space = "latent"`` tells the guidance hook to hand it the sampler's state directly.
    """

    space = "latent"

    def __init__(self, config: LatentRewardModelConfig = LatentRewardModelConfig(),
                 text_model: TextEncoder | None = None) -> None:
        super().__init__(config, text_model)

    def token_mask(self, lengths: Tensor, tokens: int) -> Tensor:
        """Frame lengths (B,) -> (B, tokens) bool, True on the latent tokens that cover real frames."""
        cfg = self.config
        if cfg.latent_tokens:
            return torch.ones(lengths.shape[0], tokens, dtype=torch.bool, device=lengths.device)
        real = torch.div(lengths + cfg.frames_per_token - 1, cfg.frames_per_token, rounding_mode="floor")
        return torch.arange(tokens, device=lengths.device)[None] < real[:, None]

    def encode_latent(self, z: Tensor, lengths: Tensor, t: Timesteps = 0) -> Tensor:
        """Unit posterior means (B, D) of scaled latents z (B, Lz, C) of motions of ``lengths`` frames."""
        return self.encode_motion(z, self.token_mask(lengths, z.shape[1]), t)


def check_matches_generator(ckpt_config: dict, latent_scale: float, latent_shape: tuple[int, int],
                            where: str | Path) -> None:
    """Raise ValueError unless the checkpoint was trained on a generator with this ``latent_scale`` and
    latent (tokens, channels) layout; ``latent_shape``: the generator state's (Lz, C) at max length."""
    trained = float(ckpt_config.get("latent_scale", 0.0))
    if not math.isclose(trained, latent_scale, rel_tol=SCALE_TOLERANCE):
        raise ValueError(f"{where}: trained on latents scaled by {trained:.6g}, but this generator's "
                         f"latent_scale is {latent_scale:.6g} (another VAE or denoiser); retrain it with "
                         f"`realign train latent_reward` on this model folder")
    if int(ckpt_config.get("feature_dim", -1)) != latent_shape[1]:
        raise ValueError(f"{where}: reads {ckpt_config.get('feature_dim')} latent channels, the generator "
                         f"has {latent_shape[1]}")


def load_latent_reward_checkpoint(path: str | Path, device: str | torch.device = "cpu"
                                  ) -> tuple[LatentRewardModel, dict]:
    """(latent reward model in eval mode, checkpoint dict); ``ckpt["config"]`` also holds the generator's
    noise schedule (``schedule``, ``num_train_steps``) and ``latent_scale`` it was trained with."""
    return load_model_checkpoint(path, LATENT_REWARD_TASK, LatentRewardModelConfig, LatentRewardModel, device)
