"""Foot locking: remove the whole-body sliding of a motion over its planted feet.

A generated body sometimes glides: the feet rest on the floor while the root drifts, so the planted feet skate
along with it.  Reward guidance makes it worse: without the lock, the kinematic suite's "a person stands still."
passes in 32 of 32 unguided takes and in none of the guided ones, whose pelvis wanders 0.3 m with the feet sliding
under it (``python -m realign_core.cli.evaluate --ground-measures --foot-lock off``, docs/results.md).  The lock walks the motion frame by frame: between frames t and t+1 the *slide* is the mean
horizontal displacement of the foot joints in contact (within ``height_m`` of the clip's floor and slower than
``speed_m_s``), averaged over ``smooth_frames``, and the whole body is shifted back by the accumulated slide, so
planted feet stay where they were put.  Frames with no foot in contact (jumps, runs' flight phases) keep their motion; vertical motion, poses and
heading are never changed.

On HumanML3D features the shift changes only the velocity channels: the root's horizontal displacement (facing
frame of t+1), every joint's velocity (facing frame of t) and the four foot-contact flags, which are recomputed
from the locked feet as the data pipeline computes them (``features.foot_contacts``).  So ``lock_features(f)`` is
the feature form of ``lock_joints(features_to_joints(f))``; the last feature row (no next frame) is kept.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from realign_core.motion.kinematics import moving_average
from realign_core.motion.features import rotate_about_y, features_to_joints_torch, recover_root
from realign_core.motion.skeleton import FOOT_CONTACT_THRESHOLD, FPS, LEFT_FOOT, NUM_JOINTS, RIGHT_FOOT

FOOT_JOINTS = list(LEFT_FOOT) + list(RIGHT_FOOT)   # ankles and toes, the order of the contact channels
ROOT_VEL = slice(1, 3)                              # root XZ displacement, facing frame of t+1
JOINT_VEL = slice(193, 193 + 3 * NUM_JOINTS)        # every joint's displacement, facing frame of t
CONTACTS = slice(259, 263)


@dataclass(frozen=True)
class FootLock:
    """When a foot joint counts as planted between frames t and t+1: its higher height above the clip's floor (the
    ``floor_percentile`` of the lowest foot joint per frame) below ``height_m`` and its 3-D speed below
    ``speed_m_s``.  5 cm is the skating measure's contact height (``realign control-bench``); 0.9 m/s (4.5 cm a
    frame) is HumanML3D's contact-label threshold, so slow glides count as planted and steps' swings do not.
    ``smooth_frames``: the slide is averaged over this many frames before it is undone, so a glide (slow) is
    removed but the feet's frame-to-frame jitter is not handed on to the whole body (unsmoothed, the lock raised
    the mean jerk of free walking takes from 1.29 to 2.02 cm/frame^3 in ``realign control-bench``)."""

    height_m: float = 0.05
    speed_m_s: float = 0.9
    floor_percentile: float = 5.0
    smooth_frames: int = 5          # centred moving average of the slide: 0.25 s, the kinematic checks' smoothing


def sliding(joints: np.ndarray, lock: FootLock = FootLock(), fps: int = FPS) -> np.ndarray:
    """(F-1, 2) metres: the mean XZ displacement of the planted foot joints from frame t to t+1 (0 where none is
    planted).  joints: (F, 22, 3) metres, Y up."""
    feet = np.asarray(joints, dtype=np.float64)[:, FOOT_JOINTS]
    floor = np.percentile(feet[..., 1].min(1), lock.floor_percentile)
    height = np.maximum(feet[:-1, :, 1], feet[1:, :, 1]) - floor
    step = feet[1:] - feet[:-1]
    planted = (height < lock.height_m) & (np.linalg.norm(step, axis=-1) * fps < lock.speed_m_s)   # (F-1, 4)
    count = planted.sum(1, keepdims=True)
    total = (step[..., [0, 2]] * planted[..., None]).sum(1)
    return moving_average(np.where(count > 0, total / np.maximum(count, 1), 0.0), lock.smooth_frames)


def foot_skate_cm(joints: np.ndarray, height_m: float = FootLock.height_m) -> float:
    """Foot skating: the mean horizontal displacement per frame (cm) of foot joints on their contact frames (within
    ``height_m`` of the clip's floor, the 5th percentile of the lowest foot joint, at both ends of the frame step).
    joints: (F, 22, 3) metres, Y up; 0 when no foot touches the floor."""
    pos = np.asarray(joints, dtype=np.float64)[:, FOOT_JOINTS]
    floor = np.percentile(pos[..., 1].min(1), 5.0)
    contact = (pos[:-1, :, 1] - floor < height_m) & (pos[1:, :, 1] - floor < height_m)
    step = np.linalg.norm(np.diff(pos[..., [0, 2]], axis=0), axis=-1)
    return 100 * float(step[contact].mean()) if contact.any() else 0.0


def lock_joints(joints: np.ndarray, lock: FootLock = FootLock()) -> np.ndarray:
    """(F, 22, 3) metres, Y up, 20 fps -> the same motion shifted horizontally so planted feet do not slide."""
    out = np.array(joints, dtype=np.float64)
    shift = np.concatenate([np.zeros((1, 2)), np.cumsum(sliding(out, lock), axis=0)])
    out[..., 0] -= shift[:, None, 0]
    out[..., 2] -= shift[:, None, 1]
    return out.astype(np.asarray(joints).dtype)


def lock_features(features: torch.Tensor, lock: FootLock = FootLock()) -> torch.Tensor:
    """(N, 263) un-normalised HumanML3D features of one motion (no padding) -> the features of the locked motion
    (see the module docstring); same dtype and device."""
    if features.ndim != 2 or len(features) < 3:
        return features
    f = features.detach().to(torch.float64)
    joints = features_to_joints_torch(f)
    slide = torch.from_numpy(sliding(joints.cpu().numpy(), lock)).to(f)                        # (N-1, 2) world
    yaw, _ = recover_root(f)
    slide3 = torch.stack([slide[:, 0], torch.zeros_like(slide[:, 0]), slide[:, 1]], dim=-1)
    out = f.clone()
    out[:-1, ROOT_VEL] -= _to_facing(slide3, yaw[1:])[:, [0, 2]]
    vel = out[:-1, JOINT_VEL].reshape(-1, NUM_JOINTS, 3) - _to_facing(slide3, yaw[:-1])[:, None, :]
    out[:-1, JOINT_VEL] = vel.reshape(len(vel), -1)
    locked = features_to_joints_torch(out)[:, FOOT_JOINTS]
    moved = ((locked[1:] - locked[:-1]) ** 2).sum(-1)
    out[:-1, CONTACTS] = (moved < FOOT_CONTACT_THRESHOLD).to(out)
    return out.to(features.dtype)


def _to_facing(v: torch.Tensor, yaw: torch.Tensor) -> torch.Tensor:
    """(N, 3) world vectors -> the facing frame of heading ``yaw`` (N,) rad (the inverse of the recovery's turn)."""
    return rotate_about_y(v, torch.cos(yaw), -torch.sin(yaw))


__all__ = ["FootLock", "foot_skate_cm", "lock_features", "lock_joints", "sliding"]
