"""Training task for the motion VAE: feature + joint reconstruction, KL; validated by MPJPE."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from .motion import features_to_joints_torch
from .motion_vae import MotionVAE, VAEConfig
from .training.checkpoint import load_model_checkpoint
from .training.config import build_dataclass


@dataclass(frozen=True)
class VAELossConfig:
    feature_weight: float = 1.0
    joint_weight: float = 1.0
    joint_beta_m: float = 0.05     # SmoothL1 transition, metres
    kl_weight: float = 1e-4
    kl_warmup_steps: int = 0       # KL weight ramps linearly from 0 (avoids early posterior collapse)


class Denormalize(nn.Module):
    """Normalised features -> raw features with the dataset's Mean/Std as buffers."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.std + self.mean


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of (B, T, ...) values over frames where mask (B, T) is True."""
    m = mask.reshape(mask.shape + (1,) * (values.dim() - 2)).to(values.dtype)
    return (values * m).sum() / (m.sum() * values[0, 0].numel()).clamp(min=1)


def kl_to_standard_normal(mu: Tensor, logvar: Tensor, token_mask: Tensor | None = None) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) summed over latent dims, averaged over (valid) tokens and batch."""
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)
    if token_mask is None:
        return kl.mean()
    return (kl * token_mask).sum() / token_mask.sum().clamp(min=1)


def joint_errors_mm(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Global MPJPE in mm (root trajectory included); joints (B, T, 22, 3) m, mask (B, T)."""
    return masked_mean((pred - target).norm(dim=-1), mask) * 1000.0


def pose_errors_mm(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Pose MPJPE in mm: the 21 non-root joints relative to the root, in each frame's facing
    frame (the ric features), so heading and trajectory drift do not count.

    pred, target: un-normalised features (B, T, 263); mask (B, T).
    """
    p = pred[..., 4:67].reshape(pred.shape[:2] + (21, 3))
    t = target[..., 4:67].reshape(target.shape[:2] + (21, 3))
    return masked_mean((p - t).norm(dim=-1), mask) * 1000.0


def latent_use(recon: Tensor, target: Tensor, mask: Tensor, frames: int = 40) -> float:
    """How much reconstructions differ between clips, relative to the inputs (0 = the decoder
    ignores the latent and outputs one motion for all, ~1 = as varied as the data).

    Std across the batch of the root-relative joint features over the first ``frames`` frames.
    """
    f = min(frames, int(mask.sum(1).min()))
    if recon.shape[0] < 2 or f < 1:
        return float("nan")
    ric = slice(4, 67)
    return float(recon[:, :f, ric].std(0).mean() / target[:, :f, ric].std(0).mean().clamp(min=1e-8))


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

    def _joints(self, features: Tensor) -> Tensor:
        self.denorm.to(features.device)
        return features_to_joints_torch(self.denorm(features))

    def training_loss(self, model: MotionVAE, batch: dict, step: int) -> tuple[Tensor, dict[str, float]]:
        x, mask = batch["features"], batch["mask"]
        recon, mu, logvar = model(x, mask, sample=True)
        lc = self.loss_cfg
        feat = masked_mean(nn.functional.smooth_l1_loss(recon, x, reduction="none"), mask)
        joints = masked_mean(nn.functional.smooth_l1_loss(self._joints(recon), self._joints(x), reduction="none",
                                                           beta=lc.joint_beta_m), mask) / lc.joint_beta_m
        kl = kl_to_standard_normal(mu, logvar, model.latent_mask(mask))
        kl_weight = lc.kl_weight * min(1.0, step / lc.kl_warmup_steps) if lc.kl_warmup_steps else lc.kl_weight
        loss = lc.feature_weight * feat + lc.joint_weight * joints + kl_weight * kl
        return loss, {"feature": feat.item(), "joint": joints.item(), "kl": kl.item()}

    @torch.no_grad()
    def validate(self, model: MotionVAE, loader: DataLoader) -> dict[str, float]:
        device = next(model.parameters()).device
        sums = {"mpjpe_mm": 0.0, "mpjpe_pose_mm": 0.0, "feature_l1": 0.0, "latent_use": 0.0}
        n = 0
        for batch in loader:
            x, mask = batch["features"].to(device), batch["mask"].to(device)
            recon, _, _ = model(x, mask, sample=False)
            b = x.shape[0]
            sums["mpjpe_mm"] += float(joint_errors_mm(self._joints(recon), self._joints(x), mask)) * b
            self.denorm.to(x.device)
            sums["mpjpe_pose_mm"] += float(pose_errors_mm(self.denorm(recon), self.denorm(x), mask)) * b
            sums["feature_l1"] += float(masked_mean((recon - x).abs(), mask)) * b
            sums["latent_use"] += latent_use(recon, x, mask) * b
            n += b
        return {k: v / max(n, 1) for k, v in sums.items()}


def load_vae(path: str | Path, device: str | torch.device = "cpu") -> tuple[MotionVAE, dict]:
    """Rebuild a trained VAE from a best.pt checkpoint; returns (model in eval mode, checkpoint dict)."""
    return load_model_checkpoint(path, "vae", VAEConfig, MotionVAE, device)
