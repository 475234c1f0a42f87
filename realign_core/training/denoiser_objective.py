"""The latent denoiser's training objective, shared by ``DenoiserTask`` and the dataset-free GPU trainer.

Given VAE posteriors (mu, logvar) (B, Lz, D) of motion windows, their latent token mask (B, Lz) and
sentence embeddings (B, 384) of their captions:

* ``latents``: z0 = (mu + exp(logvar / 2) * eps, or mu) * latent_scale, zero on padded tokens;
* ``training_draws``: timesteps t ~ U{0..T-1}, condition kept with probability 1 - cond_drop, noise;
* ``validation_draws``: t and noise from a seeded generator (the same for every validation);
* ``loss``: MSE of the model's prediction against the noise (``epsilon``) or z0 (``sample``),
  averaged over the latent dimension, then over real tokens; for training, optionally weighted per sample
  by Min-SNR-gamma (Hang et al., 2023): min(SNR(t), gamma) / SNR(t) for ``epsilon``, min(SNR(t), gamma)
  for ``sample`` (SNR = abar / (1 - abar)), so that no noise level dominates the gradient.  Validation
  is always the unweighted MSE, comparable across runs.

This module imports no text encoder and no dataset code, so it runs where only torch is installed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from realign_core.diffusion.sampling import NoiseSchedule


@dataclass(frozen=True)
class DiffusionConfig:
    schedule: str = "scaled_linear"
    num_train_steps: int = 1000
    prediction_type: str = "epsilon"   # or "sample"
    cond_drop: float = 0.1
    latent_scale: float = 0.0          # 0 = estimate from the training data
    min_snr_gamma: float = 0.0         # > 0: Min-SNR-gamma weights on the training loss (module docstring)

    def __post_init__(self) -> None:
        if self.prediction_type not in ("epsilon", "sample"):
            raise ValueError(f"prediction_type = {self.prediction_type!r}; allowed: ['epsilon', 'sample']")
        if self.min_snr_gamma < 0:
            raise ValueError(f"min_snr_gamma = {self.min_snr_gamma} must be >= 0 (0 = unweighted)")


VALIDATION_SEED = 1234   # the generator of every validation's timesteps and noise


class DenoiserObjective:
    """Noising, random draws and loss of latent diffusion with classifier-free condition dropout."""

    def __init__(self, diffusion: DiffusionConfig, latent_scale: float):
        self.diffusion = diffusion
        self.latent_scale = float(latent_scale)
        self.schedule = NoiseSchedule.make(diffusion.schedule, diffusion.num_train_steps)
        self._tables: dict[torch.device, tuple[Tensor, Tensor, Tensor]] = {}

    def latents(self, mu: Tensor, logvar: Tensor, tokens: Tensor, sample: bool) -> Tensor:
        """Scaled latents z0 (B, Lz, D) from posteriors (B, Lz, D) and the token mask (B, Lz)."""
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        return z * self.latent_scale * tokens[..., None]

    def training_draws(self, z0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(t (B,) long, use_cond (B,) bool, noise like z0) from the global RNG, in that order."""
        b, device = z0.shape[0], z0.device
        t = torch.randint(0, self.schedule.num_train_steps, (b,), device=device)
        use_cond = torch.rand(b, device=device) >= self.diffusion.cond_drop
        return t, use_cond, torch.randn_like(z0)

    def validation_draws(self, shape: tuple[int, ...], generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(t (B,) long, noise of ``shape``) on the CPU from ``generator`` (seeded with VALIDATION_SEED)."""
        t = torch.randint(0, self.schedule.num_train_steps, (shape[0],), generator=generator)
        return t, torch.randn(shape, generator=generator)

    def _coefficients(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """(sqrt(abar), sqrt(1 - abar), SNR = abar / (1 - abar)) per timestep, float32 on ``device``, computed
        in float64 once per device, so a step on a GPU never copies t or a table between host and device."""
        if device not in self._tables:
            abar = self.schedule.alphas_cumprod
            self._tables[device] = tuple(v.to(device, torch.float32)
                                         for v in (abar.sqrt(), (1 - abar).sqrt(), abar / (1 - abar)))
        return self._tables[device]

    def add_noise(self, z0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """``NoiseSchedule.add_noise`` with the coefficient tables kept on z0's device (bitwise the same
        values: float64 tables cast to z0's dtype)."""
        a, s, _ = self._coefficients(z0.device)
        shape = (-1,) + (1,) * (z0.ndim - 1)
        return (a[t].reshape(shape).to(z0.dtype) * z0 + s[t].reshape(shape).to(z0.dtype) * noise)

    def snr_weights(self, t: Tensor) -> Tensor:
        """(B,) Min-SNR-gamma loss weights of timesteps t (B,); ones when ``min_snr_gamma`` is 0."""
        gamma = self.diffusion.min_snr_gamma
        if gamma <= 0:
            return torch.ones(t.shape, device=t.device)
        snr = self._coefficients(t.device)[2][t]
        clipped = snr.clamp(max=gamma)
        return clipped / snr if self.diffusion.prediction_type == "epsilon" else clipped

    def loss(self, model: nn.Module, z0: Tensor, tokens: Tensor, text: Tensor, t: Tensor, noise: Tensor,
             use_cond: Tensor, weighted: bool = False) -> Tensor:
        """Scalar masked MSE of ``model(noised z0, t, text, use_cond, tokens)`` against its target;
        ``weighted``: each sample's error times its ``snr_weights`` (training)."""
        pred = model(self.add_noise(z0, noise, t), t, text, use_cond, tokens)
        target = noise if self.diffusion.prediction_type == "epsilon" else z0
        err = (pred.float() - target).pow(2).mean(-1)
        if weighted and self.diffusion.min_snr_gamma > 0:
            err = err * self.snr_weights(t)[:, None]
        return (err * tokens).sum() / tokens.sum().clamp(min=1)
