"""What a trainable model kind must provide to the shared ``Trainer``.

A task owns its model's construction, its loss and its validation metrics;
the trainer owns everything else (data loading, optimiser, epochs, seeding,
resume, checkpoints, logs, loss-curve plot, best-checkpoint selection).

Batches are ``realign_core.data.dataset.collate`` dicts::

    features  (B, T, 263) float32, normalised with the dataset's Mean/Std
    mask      (B, T) bool, True on real frames
    lengths   (B,) long
    captions  list[str] of length B
    ids       list[str] of length B

All tensors are already on the trainer's device.
"""
from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader


class TrainingTask(Protocol):
    """One model kind (vae, denoiser, reward, evaluator, ...)."""

    name: str                 # e.g. "reward"; used for folder and log names
    selection_metric: str     # key of validate()'s dict used to pick the best checkpoint
    selection_mode: str       # "max" or "min"

    def build_model(self) -> nn.Module:
        """A fresh model (weights are loaded by the trainer when resuming)."""

    def training_loss(self, model: nn.Module, batch: dict[str, Any], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar loss to minimise and named float parts to log."""

    @torch.no_grad()
    def validate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        """Validation metrics over the whole loader; must contain ``selection_metric``."""

    def config_dict(self) -> dict[str, Any]:
        """The model hyper-parameters, saved in checkpoints to rebuild the model."""
