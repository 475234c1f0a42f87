"""Training task for the MDM-style motion-space denoiser (``realign train mdm``).

Diffusion runs directly on the dataset's normalised 263-dim features (no VAE):
x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps over the real frames, with MDM's
defaults -- cosine schedule, 1000 steps, x0 ("sample") prediction and condition
dropout 0.1 for classifier-free guidance.  Loss: MSE of the prediction (x0, or
eps for ``prediction_type = "epsilon"``) averaged over the 263 dimensions and
the real frames.  Selection: validation loss at fixed timesteps and noise
(seeded), lower is better.

The checkpoint (``OUT/mdm/best.pt``) holds the model fields, the diffusion
fields (``schedule``, ``num_train_steps``, ``prediction_type``, ``cond_drop``)
and -- written by the trainer -- the dataset normaliser (``ckpt["normalizer"]``
with ``mean`` and ``std``), so a sampler can be rebuilt from that file alone.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from realign_core.diffusion.sampling import PREDICTION_TYPES, SCHEDULE_KINDS, NoiseSchedule
from realign_core.models.motion_denoiser import MotionDenoiser, MotionDenoiserConfig
from realign_core.text.encoder import TextEncoder, load_text_encoder
from realign_core.training.config import build_dataclass

VALIDATION_SEED = 1234


@dataclass(frozen=True)
class MotionDiffusionConfig:
    """Forward process and training objective of the motion-space denoiser."""

    schedule: str = "cosine"
    num_train_steps: int = 1000
    prediction_type: str = "sample"    # x0, as MDM; "epsilon" also works
    cond_drop: float = 0.1             # probability of the null text embedding in training

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULE_KINDS:
            raise ValueError(f"schedule must be one of {SCHEDULE_KINDS}, got {self.schedule!r}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}")
        if not 0.0 <= self.cond_drop < 1.0:
            raise ValueError(f"cond_drop must be in [0, 1), got {self.cond_drop}")


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the feature dimension and the real frames.

    pred, target: (B, T, D); mask: (B, T) bool -> scalar.
    """
    err = (pred - target).pow(2).mean(-1)
    return (err * mask).sum() / mask.sum().clamp(min=1)


class MotionDenoiserTask:
    """TrainingTask for ``MotionDenoiser`` on normalised features."""

    name = "mdm"
    selection_metric = "val_loss"
    selection_mode = "min"

    def __init__(self, model_section: dict[str, Any], text_encoder: TextEncoder | None = None,
                 where: str = "[mdm.model]"):
        section = dict(model_section)
        fields = MotionDiffusionConfig.__dataclass_fields__
        self.diffusion = build_dataclass(MotionDiffusionConfig, {k: section.pop(k) for k in list(section)
                                                                 if k in fields}, where)
        self.cfg = build_dataclass(MotionDenoiserConfig, section, where)
        self.schedule = NoiseSchedule.make(self.diffusion.schedule, self.diffusion.num_train_steps)
        self.text = text_encoder or load_text_encoder()

    def build_model(self) -> MotionDenoiser:
        return MotionDenoiser(self.cfg)

    def config_dict(self) -> dict[str, Any]:
        return {**self.cfg.to_dict(), **asdict(self.diffusion)}

    def _loss(self, model: MotionDenoiser, batch: dict, t: Tensor, noise: Tensor, use_cond: Tensor) -> Tensor:
        """Masked MSE of the model's prediction at timesteps t (B,) for the given noise (B, T, 263)."""
        x0, mask = batch["features"], batch["mask"]
        x_t = self.schedule.add_noise(x0, noise, t)
        text = self.text.encode_sentences(batch["captions"]).to(x0.device)
        pred = model(x_t, t, text, use_cond, mask)
        target = x0 if self.diffusion.prediction_type == "sample" else noise
        return masked_mse(pred, target, mask)

    def training_loss(self, model: MotionDenoiser, batch: dict, step: int) -> tuple[Tensor, dict[str, float]]:
        x0 = batch["features"]
        b, device = x0.shape[0], x0.device
        t = self.schedule.sample_timesteps(b, device=device)
        use_cond = torch.rand(b, device=device) >= self.diffusion.cond_drop
        loss = self._loss(model, batch, t, torch.randn_like(x0), use_cond)
        return loss, {"mse": loss.item()}

    @torch.no_grad()
    def validate(self, model: MotionDenoiser, loader: DataLoader) -> dict[str, float]:
        """{"val_loss"}: conditional loss per clip, with timesteps and noise from a fixed seed."""
        device = next(model.parameters()).device
        gen = torch.Generator().manual_seed(VALIDATION_SEED)
        total, n = 0.0, 0
        for batch in loader:
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            b = batch["features"].shape[0]
            t = self.schedule.sample_timesteps(b, generator=gen, device=device)
            noise = torch.randn(batch["features"].shape, generator=gen).to(device)
            use_cond = torch.ones(b, dtype=torch.bool, device=device)
            total += float(self._loss(model, batch, t, noise, use_cond)) * b
            n += b
        return {"val_loss": total / max(n, 1)}
