"""Reconstruction errors of the motion VAE (validation during training, ``realign eval`` on test).

Features are HumanML3D vectors (B, T, 263), normalised as the models see them
unless said otherwise; ``mask`` (B, T) is True on valid frames; joints are
(B, T, 22, 3) in metres.  Errors are in millimetres.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from realign_core.motion.features import features_to_joints, features_to_joints_torch
from realign_core.motion.normalization import Normalizer

if TYPE_CHECKING:
    from realign_core.models.motion_vae import MotionVAE


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of (B, T, ...) values over frames where mask (B, T) is True."""
    m = mask.reshape(mask.shape + (1,) * (values.dim() - 2)).to(values.dtype)
    return (values * m).sum() / (m.sum() * values[0, 0].numel()).clamp(min=1)


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


@torch.no_grad()
def measure_reconstructions(model: MotionVAE, loader: Iterable[dict], denormalize: Callable[[Tensor], Tensor]
                            ) -> dict[str, float]:
    """Reconstruction errors of ``model`` (posterior mean, no sampling) over every batch of ``loader``.

    loader: batches {"features": (B, T, 263) normalised, "mask": (B, T)}; denormalize:
    normalised -> raw features on the same device.  Returns per-batch values averaged with the
    batch sizes as weights: ``mpjpe_mm`` (global MPJPE, mm), ``mpjpe_pose_mm`` (root-relative,
    facing frame, mm), ``feature_l1`` (normalised units) and ``latent_use`` (see :func:`latent_use`).
    """
    device = next(model.parameters()).device
    sums = {"mpjpe_mm": 0.0, "mpjpe_pose_mm": 0.0, "feature_l1": 0.0, "latent_use": 0.0}
    n = 0
    for batch in loader:
        x, mask = batch["features"].to(device), batch["mask"].to(device)
        recon, _, _ = model(x, mask, sample=False)
        b = x.shape[0]
        joints_recon, joints_x = features_to_joints_torch(denormalize(recon)), features_to_joints_torch(denormalize(x))
        sums["mpjpe_mm"] += float(joint_errors_mm(joints_recon, joints_x, mask)) * b
        sums["mpjpe_pose_mm"] += float(pose_errors_mm(denormalize(recon), denormalize(x), mask)) * b
        sums["feature_l1"] += float(masked_mean((recon - x).abs(), mask)) * b
        sums["latent_use"] += latent_use(recon, x, mask) * b
        n += b
    return {k: v / max(n, 1) for k, v in sums.items()}


def vae_round_trip(vae: MotionVAE, normalizer: Normalizer, window: int = 196) -> Callable[[np.ndarray], np.ndarray]:
    """raw features (F, 263) -> joints (F, 22, 3) m of the VAE's reconstruction (posterior mean).

    ``normalizer`` normalises the features as the VAE saw them (its checkpoint's).  Clips longer than
    ``window`` frames are reconstructed in consecutive windows whose features are joined before the joints
    are recovered (HumanML3D features are root-relative, so the root path continues across a join).
    """
    device = next(vae.parameters()).device

    @torch.no_grad()
    def joints(features: np.ndarray) -> np.ndarray:
        x = normalizer.normalize(torch.as_tensor(features, dtype=torch.float32, device=device))
        parts = []
        for start in range(0, len(x), window):
            chunk = x[None, start:start + window]
            parts.append(vae(chunk, torch.ones(chunk.shape[:2], dtype=torch.bool, device=device), sample=False)[0][0])
        return features_to_joints(normalizer.denormalize(torch.cat(parts)).cpu().numpy())

    return joints


def vae_clip_joints(vae_checkpoint: str | Path, data_dir: str | Path, device: str | torch.device = "cpu"
                    ) -> Callable[[str], np.ndarray]:
    """clip id -> joints (F, 22, 3) m of the VAE in ``vae_checkpoint`` (a best.pt) reconstructing the clip's
    features ``DATA_DIR/new_joint_vecs/ID.npy`` (what :func:`realign_core.evaluation.kinematic.labels.
    validate_checks` takes as ``joints_of``)."""
    from realign_core.models.motion_vae import load_vae

    vae, ckpt = load_vae(vae_checkpoint, device)
    norm = ckpt.get("normalizer")
    if norm is None:
        raise ValueError(f"{vae_checkpoint}: no 'normalizer' in the checkpoint (needed to feed the VAE)")
    round_trip = vae_round_trip(vae, Normalizer(np.asarray(norm["mean"]), np.asarray(norm["std"])))
    vecs = Path(data_dir) / "new_joint_vecs"
    return lambda clip_id: round_trip(np.load(vecs / f"{clip_id}.npy"))
