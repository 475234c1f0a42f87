"""Layered body parts: one motion's arm on another motion's body (e.g. "a person waves with the right hand"
on "a person walks forward").

The training data rarely holds two actions done at once (no clip of the CMU set walks and waves), so a
single prompt asking for both gets the walk only.  A layer composes them at sampling time instead:

1. ``part_layer(pipe, caption, part, frames, seed, ...)`` generates the part's own motion and reads the
   part's joints off it as offsets from their anchors (the shoulders) in the body's facing frame
   (``control_spec.PartLayer``).  With ``candidates`` > 1 it generates that many motions (the take's seed
   first) and keeps the one the reward model rates closest to the part's prompt (its text-to-motion reward
   on the clean motion); the default is 1: on the README demo prompt 4 candidates did not wave more often
   (docs/control.md, "Layered body parts");
2. the base prompt is generated as without the layer (``ControlSpec(part=layer)`` adds no constraint hook;
   with ``part_weight`` > 0 the ``part`` cost of ``guidance.constraints`` would pull the decoded arm onto the
   layer, but then the body follows the arm and stops walking -- measured in docs/control.md);
3. ``layer_part`` then sets the part's joints exactly (as keyed poses are met exactly by the warp): each
   layered joint = its anchor in the base motion + the layer's offset, so the arm stays attached to the
   shoulder wherever the body walks or turns, with the layer's bone lengths (every motion shares the
   reference skeleton).

Only the root-relative joint positions (the ric features, from which the joints are recovered) are set;
the part's rot6d and velocity features keep the base motion's values.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from realign_core.guidance.control_spec import PartLayer, part_joints
from realign_core.motion.features import FEATURE_GROUPS

RIC, _ROT, _VEL = FEATURE_GROUPS["ric_positions"], FEATURE_GROUPS["rot6d"], FEATURE_GROUPS["local_velocity"]
DEFAULT_CANDIDATES = 1          # layer candidates ranked by the reward model (1 = the take's seed only)
CANDIDATE_SEED_STRIDE = 100_003  # candidate k of seed s uses seed s + k * stride (k = 0: the take's own seed)


def layer_part(features: np.ndarray, layer: PartLayer) -> np.ndarray:
    """(F, 263) canonical features -> a copy whose layered joints sit at anchor + the layer's offsets."""
    out = np.array(features, dtype=np.float32, copy=True)
    frames = len(out)
    ric = out[:, RIC].reshape(frames, -1, 3)                 # joints 1..21; a view into out
    joints, anchors = part_joints(layer.part)
    for k, (j, a) in enumerate(zip(joints, anchors)):
        ric[:, j - 1] = ric[:, a - 1] + layer.offsets[:frames, k]
    return out


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """(B, T, ...) mean over the valid frames of mask (B, T) -> (B, 1, ...)."""
    w = mask.to(x.dtype).reshape(*mask.shape, *([1] * (x.dim() - 2)))
    return (x * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1.0)


def _masked_moving_average(x: Tensor, mask: Tensor, frames: int) -> Tensor:
    """(B, T, ...) centred moving average over ``frames`` frames of the valid frames of mask (B, T) (each window
    averages the valid frames it holds, so a clip's ends and padding do not pull it) -> (B, T, ...)."""
    batch, length = x.shape[:2]
    w = mask.to(x.dtype).reshape(batch, length, 1)
    flat = x.reshape(batch, length, -1)
    kernel = torch.ones(1, 1, frames, dtype=x.dtype, device=x.device)
    pad = (frames // 2, frames - 1 - frames // 2)

    def box(y: Tensor) -> Tensor:                    # (B, T, C) -> windowed sums (B, T, C)
        cols = y.permute(0, 2, 1).reshape(-1, 1, length)
        summed = torch.nn.functional.conv1d(torch.nn.functional.pad(cols, pad), kernel)
        return summed.reshape(batch, y.shape[-1], length).permute(0, 2, 1)

    return (box(flat * w) / box(w).clamp_min(1e-6)).reshape(x.shape)


def hold_part_features(features: Tensor, mask: Tensor, part: str, smooth_frames: int = 0) -> tuple[Tensor, Tensor]:
    """(B, T, 263) un-normalised features, mask (B, T) -> (the features with ``part`` stilled relative to its anchors;
    (B,) the movement taken away in metres: the mean over the part's joints of the RMS distance between their old
    and new offsets from the anchors).  ``smooth_frames`` 0: the part held at each clip's mean pose (positions
    anchor + mean offset, rotations their mean, velocities the anchor's); > 0: its offsets and rotations low-passed
    by a centred moving average over that many frames (at 20 fps, 15 frames removes swings of 1.3 Hz and faster,
    e.g. a wave, and keeps a slow raise), velocities changed by the change of the offsets' frame-to-frame steps.
    The reward's hard negative (``training.held_negatives``) and ``realign reward-probe``."""
    if smooth_frames < 0:
        raise ValueError(f"smooth_frames must be >= 0, got {smooth_frames}")
    joints, anchors = part_joints(part)
    batch, frames = features.shape[:2]
    held = features.clone()
    ric = held[..., RIC].reshape(batch, frames, -1, 3)
    rot = held[..., _ROT].reshape(batch, frames, -1, 6)
    vel = held[..., _VEL].reshape(batch, frames, -1, 3)
    still = (lambda x: _masked_moving_average(x, mask, smooth_frames)) if smooth_frames else \
        (lambda x: _masked_mean(x, mask).expand_as(x))
    movement = []
    for j, a in zip(joints, anchors):
        offset = ric[:, :, j - 1] - ric[:, :, a - 1]
        new_offset = still(offset)
        movement.append(_masked_mean(((offset - new_offset) ** 2).sum(-1), mask).sqrt().reshape(batch))
        if smooth_frames:
            change = new_offset - offset                       # velocity(t) reads position(t + 1) - position(t)
            both = (mask[:, 1:] & mask[:, :-1])[..., None].to(change.dtype)
            vel[:, :-1, j] = vel[:, :-1, j] + (change[:, 1:] - change[:, :-1]) * both
        else:
            vel[:, :, j] = vel[:, :, a]
        ric[:, :, j - 1] = ric[:, :, a - 1] + new_offset
        rot[:, :, j - 1] = still(rot[:, :, j - 1])
    held[..., RIC], held[..., _ROT], held[..., _VEL] = (ric.reshape(batch, frames, -1), rot.reshape(batch, frames, -1),
                                                        vel.reshape(batch, frames, -1))
    return held * mask[..., None].to(held.dtype), torch.stack(movement).mean(0)


def layer_error_m(features: np.ndarray, layer: PartLayer) -> float:
    """Mean distance (m) of a motion's layered joints from ``layer``: their offsets from the anchors in the facing
    frame (read as ``PartLayer.from_features`` reads them), features (F, 263), F <= the layer's frames."""
    offsets = PartLayer.from_features(layer.part, features).offsets
    return float(np.linalg.norm(offsets - layer.offsets[:len(offsets)], axis=-1).mean())


def part_layer(pipe, caption: str, part: str, frames: int, seed: int, cfg=None, guidance=None,
               callback=None, with_features: bool = False, candidates: int | None = None):
    """Generate ``caption`` (frames at 20 fps) and read ``part``'s layer off it; ``candidates`` motions (None =
    ``DEFAULT_CANDIDATES``) ranked by :func:`rank_by_reward`.  With ``with_features`` -> (layer, the chosen
    motion's features (frames, 263))."""
    from realign_core.pipeline import SamplingConfig

    if not caption.strip():
        raise ValueError("part prompt is empty")
    part_joints(part)   # an unknown part fails before generating
    n = DEFAULT_CANDIDATES if candidates is None else candidates
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"layer candidates must be a whole number >= 1, got {candidates!r}")
    seeds = [seed + k * CANDIDATE_SEED_STRIDE for k in range(n)]
    out = pipe([caption] * n, [frames] * n, seeds, cfg or SamplingConfig(), guidance, callback=callback)
    features = out.features[:, :frames]
    best = 0 if n == 1 else int(rank_by_reward(pipe, caption, features).argmax())
    chosen = features[best].cpu().numpy()
    layer = PartLayer.from_features(part, chosen)
    return (layer, chosen) if with_features else layer


def rank_by_reward(pipe, caption: str, features: torch.Tensor) -> torch.Tensor:
    """(N,) the motion-space reward model's text-to-motion reward (cosine) of N clean motions of equal length,
    features (N, F, 263) un-normalised, for ``caption``.  Needs a reward model (``pipe.has_reward``)."""
    if not pipe.has_reward:
        raise ValueError("ranking layer candidates needs a reward model (reward/best.pt); give candidates = 1")
    model = pipe.reward.model
    with torch.no_grad():
        text = model.encode_text([caption])
        mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        return model.reward_t2m(pipe.normalizer.normalize(features), mask, 0, text)


__all__ = ["DEFAULT_CANDIDATES", "hold_part_features", "layer_error_m", "layer_part", "part_layer", "rank_by_reward"]
