"""HumanML3D's 263-dim motion representation (20 fps, 22 joints).

Feature layout per frame t (263 = 4 + 63 + 126 + 66 + 4), see ``FEATURE_GROUPS``:

* ``[0:1]``   root angular velocity about Y: arcsin of the Y component of the
  quaternion (root_rot[t+1] * root_rot[t]^-1), i.e. half the yaw step (rad);
* ``[1:3]``   root XZ velocity (m/frame) in the facing frame of t+1;
* ``[3:4]``   root height Y (m) at t;
* ``[4:67]``  joints 1..21 relative to the root's XZ, in t's facing frame (m);
* ``[67:193]`` rot6d swing rotations of joints 1..21 (first two matrix columns);
* ``[193:259]`` displacement of all 22 joints from t to t+1, facing frame of t (m);
* ``[259:263]`` foot contacts (L ankle, L toe, R ankle, R toe), 1 = static.

The extraction follows the reference implementation bit for bit in its
*behaviour*, including its documented quirks (see ``../shared/testvectors``):
frame-0 root rotation forced to identity, the sign-flipped hip term in the
smoothed facing direction, half-angle velocities without sign fixing, and the
last frame dropped.  Computation is float64; features are returned as float32.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from realign_core.motion import quaternion as Q
from realign_core.motion.skeleton import (
    FACE_JOINTS,
    FOOT_CONTACT_THRESHOLD,
    KINEMATIC_CHAINS,
    LEFT_FOOT,
    LEG_BONES,
    MIRROR_PERMUTATION,
    NUM_JOINTS,
    PARENTS,
    RAW_OFFSETS,
    REFERENCE_OFFSETS,
    RIGHT_FOOT,
)

FEATURE_DIM = 263
FEATURE_GROUPS: dict[str, slice] = {
    "root_rot_velocity": slice(0, 1),
    "root_linear_velocity_xz": slice(1, 3),
    "root_y": slice(3, 4),
    "ric_positions": slice(4, 67),
    "rot6d": slice(67, 193),
    "local_velocity": slice(193, 259),
    "foot_contact": slice(259, 263),
}
FACING_SMOOTHING_SIGMA = 20.0  # frames
UP = np.array([0.0, 1.0, 0.0])
FORWARD = np.array([0.0, 0.0, 1.0])


@dataclass
class ProcessedMotion:
    """Everything the extraction computes for one clip of T frames."""

    features: np.ndarray          # (T-1, 263) float32
    ground_positions: np.ndarray  # (T, 22, 3) canonicalised world joints, m
    ric_positions: np.ndarray     # (T, 22, 3) root-XZ-relative, per-frame facing frame
    root_rotation: np.ndarray     # (T, 4) smoothed world->facing rotation, frame 0 = identity
    cont6d: np.ndarray            # (T, 22, 6) joint 0: root rotation; 1..21 local swings
    foot_contacts: np.ndarray     # (T-1, 4) float32, order L ankle, L toe, R ankle, R toe


# --------------------------------------------------------------------------- #
# Joints -> features
# --------------------------------------------------------------------------- #

def _check_positions(positions: np.ndarray, min_frames: int = 2) -> np.ndarray:
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"expected joint positions of shape (T, {NUM_JOINTS}, 3), got {positions.shape}")
    if positions.shape[0] < min_frames:
        raise ValueError(f"need at least {min_frames} frames, got {positions.shape[0]}")
    if not np.all(np.isfinite(positions)):
        raise ValueError("joint positions contain NaN or infinite values")
    return positions


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def uniform_skeleton(positions: np.ndarray, target_offsets: np.ndarray = REFERENCE_OFFSETS) -> np.ndarray:
    """Re-target a motion onto the target skeleton's bone lengths.

    Keeps every bone's direction, replaces its length by the target's, and
    scales the whole root trajectory (height included) by the ratio of the
    target's to the source's frame-0 right leg length (thigh + shin).

    positions: (T, 22, 3) m; target_offsets: (22, 3) m -> (T, 22, 3) m.
    """
    positions = _check_positions(positions, min_frames=1)
    target_lengths = np.linalg.norm(np.asarray(target_offsets, dtype=np.float64), axis=-1)
    bones = positions - positions[:, [max(p, 0) for p in PARENTS]]
    lengths = np.linalg.norm(bones, axis=-1)
    if np.any(lengths[:, 1:] < 1e-9):
        raise ValueError("a bone has zero length (two joints coincide); cannot take its direction")
    thigh, shin = LEG_BONES
    ratio = (target_lengths[thigh] + target_lengths[shin]) / (lengths[0, thigh] + lengths[0, shin])
    out = np.empty_like(positions)
    out[:, 0] = positions[:, 0] * ratio
    for j in range(1, NUM_JOINTS):  # parents always precede children
        out[:, j] = out[:, PARENTS[j]] + bones[:, j] / lengths[:, j:j + 1] * target_lengths[j]
    return out


def _across(pose: np.ndarray, hip_sign: float) -> np.ndarray:
    """Left-to-right axis from hips and shoulders. pose: (..., 22, 3) -> (..., 3).

    hip_sign=+1 is the consistent form (R_hip - L_hip); the reference's IK
    helper uses hip_sign=-1 (its quirk), which only the smoothed facing uses.
    """
    r_hip, l_hip, r_sho, l_sho = FACE_JOINTS
    return hip_sign * (pose[..., r_hip, :] - pose[..., l_hip, :]) + (pose[..., r_sho, :] - pose[..., l_sho, :])


def _forward_from_across(across: np.ndarray) -> np.ndarray:
    """Horizontal facing direction, (..., 3) -> (..., 3) unit."""
    return _unit(np.cross(UP, _unit(across)))


def canonicalize(positions: np.ndarray) -> np.ndarray:
    """Floor at Y=0, frame-0 pelvis at X=Z=0, frame-0 facing +Z. (T,22,3) -> (T,22,3)."""
    positions = positions.copy()
    positions[..., 1] -= positions[..., 1].min()
    positions -= positions[0, 0] * np.array([1.0, 0.0, 1.0])
    forward0 = _forward_from_across(_across(positions[0], hip_sign=1.0))
    return Q.qrot(Q.qbetween(forward0, FORWARD), positions)


def facing_rotations(positions: np.ndarray) -> np.ndarray:
    """Smoothed world->facing rotation per frame, frame 0 forced to identity.

    positions: (T, 22, 3) -> (T, 4) quaternions about +Y (reference quirks 1-2).
    """
    forward = np.cross(UP, _unit(_across(positions, hip_sign=-1.0)))
    forward = _unit(gaussian_filter1d(forward, FACING_SMOOTHING_SIGMA, axis=0, mode="nearest"))
    root_rot = Q.qbetween(forward, np.broadcast_to(FORWARD, forward.shape))
    root_rot[0] = Q.IDENTITY
    return root_rot


def swing_rotations(positions: np.ndarray, root_rot: np.ndarray) -> np.ndarray:
    """Local swing rotations of every joint (reference quirk 6).

    For each bone the world rotation is the shortest arc from its RAW_OFFSETS
    axis to its current direction; local = parent-in-chain^-1 * world, where
    each chain starts from the root rotation (so the collars hang off the root,
    not spine3).  (T,22,3), (T,4) -> (T,22,4); joint 0 holds root_rot.
    """
    quats = np.zeros(positions.shape[:-1] + (4,))
    quats[:, 0] = root_rot
    for chain in KINEMATIC_CHAINS:
        world = root_rot
        for parent, child in zip(chain[:-1], chain[1:]):
            direction = _unit(positions[:, child] - positions[:, parent])
            swing = Q.qbetween(np.broadcast_to(RAW_OFFSETS[child], direction.shape), direction)
            local = Q.qmul(Q.qinv(world), swing)
            quats[:, child] = local
            world = Q.qmul(world, local)
    return quats


def foot_contacts(positions: np.ndarray, threshold: float = FOOT_CONTACT_THRESHOLD) -> np.ndarray:
    """1 where a foot joint moves less than sqrt(threshold) m between t and t+1.

    positions: (T, 22, 3) -> (T-1, 4) float32 in order L ankle, L toe, R ankle, R toe.
    No height test (as in the reference).
    """
    feet = list(LEFT_FOOT) + list(RIGHT_FOOT)
    sq = ((positions[1:, feet] - positions[:-1, feet]) ** 2).sum(-1)
    return (sq < threshold).astype(np.float32)


def process_motion(positions: np.ndarray, target_offsets: np.ndarray = REFERENCE_OFFSETS,
                   feet_threshold: float = FOOT_CONTACT_THRESHOLD) -> ProcessedMotion:
    """Raw world joints (T, 22, 3) m, Y up, 20 fps -> features and intermediates."""
    positions = _check_positions(positions)
    ground = canonicalize(uniform_skeleton(positions, target_offsets))
    contacts = foot_contacts(ground, feet_threshold)

    root_rot = facing_rotations(ground)
    cont6d = Q.quat_to_cont6d(swing_rotations(ground, root_rot))

    root_disp = Q.qrot(root_rot[1:], ground[1:, 0] - ground[:-1, 0])
    root_turn = Q.qmul(root_rot[1:], Q.qinv(root_rot[:-1]))

    ric = ground - ground[:, :1] * np.array([1.0, 0.0, 1.0])
    ric = Q.qrot(root_rot[:, None], ric)
    local_vel = Q.qrot(root_rot[:-1, None], ground[1:] - ground[:-1])

    n = len(ground) - 1
    features = np.concatenate([
        np.arcsin(np.clip(root_turn[:, 2:3], -1.0, 1.0)),
        root_disp[:, [0, 2]],
        ric[:-1, 0, 1:2],
        ric[:-1, 1:].reshape(n, -1),
        cont6d[:-1, 1:].reshape(n, -1),
        local_vel.reshape(n, -1),
        contacts,
    ], axis=-1)
    return ProcessedMotion(features.astype(np.float32), ground, ric, root_rot, cont6d, contacts)


def joints_to_features(positions: np.ndarray) -> np.ndarray:
    """HumanML3D features of a motion. (T, 22, 3) m, Y up, 20 fps -> (T-1, 263) float32."""
    return process_motion(positions).features


# --------------------------------------------------------------------------- #
# Features -> joints
# --------------------------------------------------------------------------- #

def rotate_about_y(v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (..., 3) vectors about +Y by the angle whose cos/sin (...) are given."""
    x, y, z = v.unbind(-1)
    return torch.stack([x * cos + z * sin, y, z * cos - x * sin], dim=-1)


def recover_root(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate root yaw and position from features.

    features: (..., N, 263) -> (heading (..., N) rad, root (..., N, 3) m).
    heading is the facing->world yaw about +Y, 0 at frame 0, positive when
    the character has turned to its left (from +Z towards +X).  The stored
    angular velocity is minus half the heading step (reference convention).
    """
    half_step = features[..., :-1, 0]
    zero = torch.zeros_like(features[..., :1, 0])
    yaw = -2.0 * torch.cumsum(torch.cat([zero, half_step], dim=-1), dim=-1)
    cos, sin = torch.cos(yaw), torch.sin(yaw)
    vel_xz = features[..., :-1, 1:3]
    step = torch.stack([vel_xz[..., 0], torch.zeros_like(vel_xz[..., 0]), vel_xz[..., 1]], dim=-1)
    step = torch.cat([torch.zeros_like(step[..., :1, :]), step], dim=-2)
    root = torch.cumsum(rotate_about_y(step, cos, sin), dim=-2)
    root = torch.stack([root[..., 0], features[..., 3], root[..., 2]], dim=-1)
    return yaw, root


def features_to_joints_torch(features: torch.Tensor) -> torch.Tensor:
    """Differentiable recovery of joints from features (reference ``recover_from_ric``).

    features: (..., N, 263) (un-normalised) -> (..., N, 22, 3) m, Y up.
    """
    yaw, root = recover_root(features)
    local = features[..., 4:67].reshape(features.shape[:-1] + (NUM_JOINTS - 1, 3))
    world = rotate_about_y(local, torch.cos(yaw)[..., None], torch.sin(yaw)[..., None])
    offset = torch.stack([root[..., 0], torch.zeros_like(root[..., 0]), root[..., 2]], dim=-1)
    return torch.cat([root[..., None, :], world + offset[..., None, :]], dim=-2)


def features_to_joints(features: np.ndarray) -> np.ndarray:
    """Joints from HumanML3D features. (N, 263) -> (N, 22, 3) m, Y up (float32 in, float32 out)."""
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[1] != FEATURE_DIM:
        raise ValueError(f"expected features of shape (N, {FEATURE_DIM}), got {features.shape}")
    joints = features_to_joints_torch(torch.from_numpy(features.astype(np.float64)))
    return joints.numpy().astype(np.float32)


# --------------------------------------------------------------------------- #
# Mirroring
# --------------------------------------------------------------------------- #

def mirror_joints(positions: np.ndarray) -> np.ndarray:
    """Left-right mirror: negate X and swap left/right joints. (..., 22, 3) -> same."""
    mirrored = np.array(positions, dtype=np.float64, copy=True)[..., list(MIRROR_PERMUTATION), :]
    mirrored[..., 0] *= -1.0
    return mirrored
