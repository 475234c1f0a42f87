"""Hard negatives for the reward model: a clip with a body part held still, scored against its own caption.

The shipped reward cannot tell the generator's waving samples from its others (docs/models.md, "Why the guided
takes wave less"): in-batch negatives are other clips, which differ in much more than what an arm does over
time.  Here each clip whose ``part`` (``right_arm``, ``left_arm``, ``arms``) moves gets a twin with that part
held at its mean pose relative to its anchor (the shoulder), and :func:`held_negative_loss` asks the clip's
caption to score the captured clip above its twin.  Held in feature space, on un-normalised HumanML3D features
(B, T, 263): the part's root-relative positions (``ric``) become anchor + the clip's mean offset, its joint
rotations (``rot6d``) their mean over the clip, its local velocities its anchor's.  Positions in metres.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from realign_core.guidance.control_spec import part_joints
from realign_core.motion.features import FEATURE_GROUPS

_RIC, _ROT, _VEL = FEATURE_GROUPS["ric_positions"], FEATURE_GROUPS["rot6d"], FEATURE_GROUPS["local_velocity"]


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """(B, T, ...) mean over the valid frames of mask (B, T) -> (B, 1, ...)."""
    w = mask.to(x.dtype).reshape(*mask.shape, *([1] * (x.dim() - 2)))
    return (x * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1.0)


def hold_part_features(features: Tensor, mask: Tensor, part: str) -> tuple[Tensor, Tensor]:
    """(B, T, 263) un-normalised features -> (the features with ``part`` held, (B,) the part's movement in metres:
    the mean over its joints of the RMS distance of their offsets from the mean offset)."""
    joints, anchors = part_joints(part)
    batch, frames = features.shape[:2]
    held = features.clone()
    ric = held[..., _RIC].reshape(batch, frames, -1, 3)
    rot = held[..., _ROT].reshape(batch, frames, -1, 6)
    vel = held[..., _VEL].reshape(batch, frames, -1, 3)
    movement = []
    for j, a in zip(joints, anchors):
        offset = ric[:, :, j - 1] - ric[:, :, a - 1]
        mean_offset = _masked_mean(offset, mask)
        movement.append(_masked_mean(((offset - mean_offset) ** 2).sum(-1), mask).sqrt().reshape(batch))
        ric[:, :, j - 1] = ric[:, :, a - 1] + mean_offset
        rot[:, :, j - 1] = _masked_mean(rot[:, :, j - 1], mask)
        vel[:, :, j] = vel[:, :, a]
    held[..., _RIC], held[..., _ROT], held[..., _VEL] = (ric.reshape(batch, frames, -1), rot.reshape(batch, frames, -1),
                                                        vel.reshape(batch, frames, -1))
    return held * mask[..., None].to(held.dtype), torch.stack(movement).mean(0)


def held_negative_loss(text_emb: Tensor, motion_emb: Tensor, held_emb: Tensor, temperature: float) -> Tensor:
    """Mean over the rows of -log softmax of (captured, held) cosines / temperature for the row's caption:
    text, captured and held embeddings (N, D)."""
    text = F.normalize(text_emb, dim=-1)
    captured = (text * F.normalize(motion_emb, dim=-1)).sum(-1) / temperature
    held = (text * F.normalize(held_emb, dim=-1)).sum(-1) / temperature
    return F.softplus(held - captured).mean()


__all__ = ["held_negative_loss", "hold_part_features"]
