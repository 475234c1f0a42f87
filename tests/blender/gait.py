"""A synthetic gait with planted feet and generated-motion foot skate (numpy only; the bpy environments have no
realign_core, and CI has no motion data).

Each foot stands still on the ground for 60 % of its cycle and swings forward in an arc for the rest; the knees
come from two-bone IK, the pelvis dips where the legs must reach. Each planted foot also skates on its own
(``foot_slide_m``), and the whole body slides back and forth (``slide_m``) and bobs (``float_m``), like a
generated motion whose planted feet skate, so foot pinning has work.
"""
from __future__ import annotations

import numpy as np

from tests.addon_modules import load

skeleton = load("skeleton")
OFF = skeleton.TPOSE_OFFSETS
J = skeleton.JOINT_INDEX


def _foot_track(t: np.ndarray, period: float, phase: float, speed: float, stance: float = 0.6,
                lift: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """Forward position (F,) and lift (F,) of one ankle: still during stance, an arc forward during swing."""
    stride = speed * period
    cycle = t / period + phase
    n, u = np.floor(cycle), cycle - np.floor(cycle)
    swing = np.clip((u - stance) / (1 - stance), 0.0, 1.0)
    ease = 0.5 - 0.5 * np.cos(np.pi * swing)
    forward = (n + ease) * stride - phase * stride
    return forward, lift * np.sin(np.pi * swing)


def _knee(hip: np.ndarray, ankle: np.ndarray, l1: float, l2: float) -> np.ndarray:
    """Knee positions (F, 3) bending forward (+Z) in the sagittal plane for hips and ankles (F, 3)."""
    d = ankle - hip
    dist = np.clip(np.linalg.norm(d, axis=-1), 1e-6, 0.999 * (l1 + l2))
    along = (l1 ** 2 - l2 ** 2 + dist ** 2) / (2 * dist)
    up = np.sqrt(np.maximum(l1 ** 2 - along ** 2, 0.0))
    axis = d / dist[:, None]
    bend = np.cross(np.array([1.0, 0.0, 0.0]), axis)  # forward, perpendicular to the leg, for a leg pointing down
    bend /= np.maximum(np.linalg.norm(bend, axis=-1, keepdims=True), 1e-9)
    return hip + along[:, None] * axis + up[:, None] * bend


def synthetic_gait(frames: int = 100, speed: float = 1.1, period: float = 1.1, fps: float = 20.0,
                   slide_m: float = 0.03, float_m: float = 0.015, foot_slide_m: float = 0.02) -> np.ndarray:
    """A walk with planted feet (F, 22, 3) metres, Y up, facing +Z, plus whole-body skate (see the module)."""
    t = np.arange(frames) / fps
    pos = np.zeros((frames, 22, 3))
    ankle_y = 0.08  # ankle height when planted
    legs = {}
    for side, phase in (("left", 0.0), ("right", 0.5)):
        forward, lift = _foot_track(t, period, phase, speed)
        forward = forward + foot_slide_m * np.sin(2 * np.pi * (1.7 * t / period + phase))  # each foot its own skate
        hip_x = OFF[J[f"{side}_hip"], 0]
        ankle = np.stack([np.full(frames, hip_x), ankle_y + lift, forward], -1)
        l1, l2 = -OFF[J[f"{side}_knee"], 1], -OFF[J[f"{side}_ankle"], 1]
        legs[side] = (ankle, l1, l2)
    pelvis_z = speed * t
    reach = []
    for ankle, l1, l2 in legs.values():
        dz = pelvis_z - ankle[:, 2]
        reach.append(ankle[:, 1] + np.sqrt(np.maximum((0.97 * (l1 + l2)) ** 2 - dz ** 2, 0.0)))
    pos[:, J["pelvis"]] = np.stack([np.zeros(frames), np.minimum(*reach), pelvis_z], -1)
    for side, (ankle, l1, l2) in legs.items():
        hip = pos[:, J["pelvis"]] + OFF[J[f"{side}_hip"]]
        pos[:, J[f"{side}_hip"]], pos[:, J[f"{side}_ankle"]] = hip, ankle
        pos[:, J[f"{side}_knee"]] = _knee(hip, ankle, l1, l2)
        pos[:, J[f"{side}_foot"]] = ankle + OFF[J[f"{side}_foot"]]
    for name in ("spine1", "spine2", "spine3", "neck", "head", "left_collar", "right_collar"):
        pos[:, J[name]] = pos[:, skeleton.PARENTS[J[name]]] + OFF[J[name]]
    for side, sign, phase in (("left", 1.0, np.pi), ("right", -1.0, 0.0)):
        swing = np.radians(20) * np.sin(2 * np.pi * t / period + phase)
        down = np.stack([np.zeros(frames), -np.cos(swing), np.sin(swing)], -1)
        shoulder = pos[:, J[f"{side}_collar"]] + OFF[J[f"{side}_shoulder"]]
        pos[:, J[f"{side}_shoulder"]] = shoulder
        pos[:, J[f"{side}_elbow"]] = shoulder + abs(OFF[J[f"{side}_elbow"], 0]) * (down + [sign * 0.15, 0, 0])
        pos[:, J[f"{side}_wrist"]] = pos[:, J[f"{side}_elbow"]] + abs(OFF[J[f"{side}_wrist"], 0]) * down
    skate = np.stack([np.zeros(frames), float_m * np.sin(2 * np.pi * t / period * 1.3),
                      slide_m * np.sin(2 * np.pi * t / period * 0.7)], -1)
    return pos + skate[:, None]
