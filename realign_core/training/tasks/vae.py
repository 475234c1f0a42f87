"""Training task for the motion VAE: feature + joint reconstruction, KL; validated by MPJPE."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from realign_core.evaluation.reconstruction import masked_mean, measure_reconstructions
from realign_core.models.motion_vae import MotionVAE, VAEConfig
from realign_core.motion.features import features_to_joints_torch
from realign_core.training.config import build_dataclass


@dataclass(frozen=True)
class VAELossConfig:
    feature_weight: float = 1.0
    joint_weight: float = 1.0
    joint_beta_m: float = 0.05     # SmoothL1 transition, metres
    kl_weight: float = 1e-4
    kl_warmup_steps: int = 0       # KL weight ramps linearly from 0 (avoids early posterior collapse)
    decoder_only: bool = False     # train the decoder only: the encoder, and so the latent space every latent
                                   # model (denoiser, latent reward) was trained on, stays fixed


class Denormalize(nn.Module):
    """Normalised features -> raw features with the dataset's Mean/Std as buffers."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.std + self.mean


def kl_to_standard_normal(mu: Tensor, logvar: Tensor, token_mask: Tensor | None = None) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) summed over latent dims, averaged over (valid) tokens and batch."""
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)
    if token_mask is None:
        return kl.mean()
    return (kl * token_mask).sum() / token_mask.sum().clamp(min=1)


class VAETask:
    """TrainingTask for ``MotionVAE``."""

    name = "vae"
    selection_metric = "mpjpe_pose_mm"
    selection_mode = "min"

    def __init__(self, model_section: dict[str, Any], mean, std, where: str = "[vae.model]"):
        section = dict(model_section)
        loss = {k: section.pop(k) for k in list(section) if k in VAELossConfig.__dataclass_fields__}
        self.cfg = build_dataclass(VAEConfig, section, where)
        self.loss_cfg = build_dataclass(VAELossConfig, loss, where)
        self.denorm = Denormalize(mean, std)

    def build_model(self) -> MotionVAE:
        return MotionVAE(self.cfg)

    def config_dict(self) -> dict[str, Any]:
        return {**self.cfg.to_dict(), **asdict(self.loss_cfg)}

    def _denormalize(self, features: Tensor) -> Tensor:
        """Normalised (B, T, 263) -> raw features, on the features' device."""
        self.denorm.to(features.device)
        return self.denorm(features)

    def _joints(self, features: Tensor) -> Tensor:
        return features_to_joints_torch(self._denormalize(features))

    def training_loss(self, model: MotionVAE, batch: dict, step: int) -> tuple[Tensor, dict[str, float]]:
        x, mask = batch["features"], batch["mask"]
        lc = self.loss_cfg
        # decoder_only: no gradient reaches the encoder, so AdamW leaves its weights as they are
        recon, mu, logvar = model(x, mask, sample=True, encoder_grad=not lc.decoder_only)
        feat = masked_mean(nn.functional.smooth_l1_loss(recon, x, reduction="none"), mask)
        joints = masked_mean(nn.functional.smooth_l1_loss(self._joints(recon), self._joints(x), reduction="none",
                                                           beta=lc.joint_beta_m), mask) / lc.joint_beta_m
        kl = kl_to_standard_normal(mu, logvar, model.latent_mask(mask))
        kl_weight = lc.kl_weight * min(1.0, step / lc.kl_warmup_steps) if lc.kl_warmup_steps else lc.kl_weight
        loss = lc.feature_weight * feat + lc.joint_weight * joints + kl_weight * kl
        return loss, {"feature": feat.item(), "joint": joints.item(), "kl": kl.item()}

    def validate(self, model: MotionVAE, loader: DataLoader) -> dict[str, float]:
        """Reconstruction errors on ``loader`` (``evaluation.reconstruction.measure_reconstructions``)."""
        return measure_reconstructions(model, loader, self._denormalize)
