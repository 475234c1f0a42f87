"""Kinematic measures on joint positions: facing yaw, smoothing, runs of a mask, planted feet.

The one home of these measures for captions measured from motion, the kinematic-alignment
checks, the server's result metadata and the Blender add-on's foot pinning.  numpy only
and imports nothing but its sibling ``skeleton`` (relatively), so build.py vendors both
files into the add-on unchanged.

Conventions: positions (T, 22, 3) metres, Y up, a character facing +Z has its left at +X.
"""
from __future__ import annotations

import numpy as np

from .skeleton import FACE_JOINTS, JOINT_INDEX

# Ankle and toe joints, the columns of ``planted_feet``: L ankle, L toe, R ankle, R toe.
FOOT_JOINTS: tuple[str, ...] = ("left_ankle", "left_foot", "right_ankle", "right_foot")
PLANTED_SPEED_MPS = 0.25   # horizontal speed below which a foot joint can be planted
PLANTED_HEIGHT_M = 0.06    # ... when also within this of its lowest point in the clip


def odd_window(seconds: float, fps: float, frames: int) -> int:
    """An odd window length in frames for ``seconds``, at least 1 and at most ``frames``."""
    n = min(max(1, int(round(seconds * fps))), frames)
    return n if n % 2 else max(1, n - 1)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along axis 0 with edge padding: (T, ...) -> (T, ...)."""
    if window <= 1:
        return values
    half = window // 2
    padded = np.concatenate([np.repeat(values[:1], half, 0), values, np.repeat(values[-1:], half, 0)])
    cumsum = np.cumsum(np.concatenate([np.zeros_like(padded[:1]), padded]), axis=0)
    return (cumsum[window:] - cumsum[:-window]) / window


def facing_yaw(positions: np.ndarray) -> np.ndarray:
    """Unwrapped facing yaw per frame: (T, 22, 3) m -> (T,) rad.

    0 when facing +Z, positive towards +X (the character turning to its left).  Facing =
    up x across, across = (right_hip - left_hip) + (right_shoulder - left_shoulder) on XZ,
    the across axis HumanML3D uses for its facing.
    """
    r_hip, l_hip, r_sh, l_sh = FACE_JOINTS
    across = positions[:, r_hip] - positions[:, l_hip] + positions[:, r_sh] - positions[:, l_sh]
    # up x across = (across_z, 0, -across_x); yaw = atan2(facing_x, facing_z)
    return np.unwrap(np.arctan2(across[:, 2], -across[:, 0]))


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index ranges of the True runs of a (T,) bool mask, as Python ints."""
    edges = np.diff(np.concatenate([[0], np.asarray(mask).astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def planted_feet(positions: np.ndarray, fps: float = 20.0, speed: float = PLANTED_SPEED_MPS,
                 height: float = PLANTED_HEIGHT_M) -> np.ndarray:
    """Planted foot joints: (T, 22, 3) m, Y up -> (T, 4) bool, columns ``FOOT_JOINTS``.

    A joint is planted when its horizontal (XZ) speed is below ``speed`` m/s (central
    differences) and it is within ``height`` m of its lowest point in the clip.  A clip of
    fewer than two frames counts as standing.
    """
    feet = np.asarray(positions, dtype=np.float64)[:, [JOINT_INDEX[n] for n in FOOT_JOINTS]]
    if len(feet) < 2:
        return np.ones((len(feet), len(FOOT_JOINTS)), bool)
    velocity = np.gradient(feet[..., [0, 2]], axis=0) * fps
    slow = np.linalg.norm(velocity, axis=-1) < speed
    low = feet[..., 1] < feet[..., 1].min(axis=0) + height
    return slow & low
