"""Rotation math and the Y-up -> Blender axis change for the retargeter (numpy only).

Matrices act on column vectors; quaternions are (w, x, y, z) like Blender's
``rotation_quaternion``; Euler angles follow Blender's orders ("XYZ" means
R = Rz @ Ry @ Rx).
"""
from __future__ import annotations

import numpy as np

# Y-up, +Z-forward (the generated motion) -> Blender's Z-up, -Y-forward: (x, y, z) -> (x, -z, y).
YUP_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
EPS = 1e-9


def yup_to_blender(points: np.ndarray) -> np.ndarray:
    """Y-up, +Z-forward points (..., 3) -> Blender Z-up, -Y-forward points (..., 3)."""
    return np.asarray(points, float) @ YUP_TO_BLENDER.T


def axis_angle_matrix(axis: np.ndarray, angle: np.ndarray | float) -> np.ndarray:
    """Rotation matrices about unit axes (..., 3) by angles (...) rad -> (..., 3, 3)."""
    axis = np.asarray(axis, float)
    angle = np.asarray(angle, float)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    c, s = np.cos(angle), np.sin(angle)
    t = 1 - c
    return np.stack([
        np.stack([c + x * x * t, x * y * t - z * s, x * z * t + y * s], -1),
        np.stack([y * x * t + z * s, c + y * y * t, y * z * t - x * s], -1),
        np.stack([z * x * t - y * s, z * y * t + x * s, c + z * z * t], -1),
    ], -2)


def normalize(v: np.ndarray) -> np.ndarray:
    """Unit vectors along the last axis (zero stays zero)."""
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, EPS)


def swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Shortest-arc rotations taking unit vectors a onto b, (..., 3) -> (..., 3, 3)."""
    a, b = np.broadcast_arrays(normalize(a), normalize(b))
    v = np.cross(a, b)
    c = np.sum(a * b, -1)
    sin = np.linalg.norm(v, axis=-1)
    ortho = np.cross(a, np.where(np.abs(a[..., :1]) < 0.9, [1.0, 0, 0], [0, 1.0, 0]))
    axis = np.where((sin < 1e-8)[..., None], normalize(ortho), v / np.maximum(sin, EPS)[..., None])
    return axis_angle_matrix(axis, np.arctan2(sin, c))


def signed_angle(a: np.ndarray, b: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Angle (rad) turning a into b about unit axis, after projecting both ⟂ axis; (..., 3) -> (...)."""
    a = a - np.sum(a * axis, -1, keepdims=True) * axis
    b = b - np.sum(b * axis, -1, keepdims=True) * axis
    return np.arctan2(np.sum(np.cross(a, b) * axis, -1), np.sum(a * b, -1))


def matrix_to_quaternion(m: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) as (w, x, y, z)."""
    m = np.asarray(m, float)
    tr = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    cands = np.stack([
        np.stack([1 + tr, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
        np.stack([m[..., 2, 1] - m[..., 1, 2], 1 + 2 * m[..., 0, 0] - tr, m[..., 0, 1] + m[..., 1, 0],
                  m[..., 0, 2] + m[..., 2, 0]], -1),
        np.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 + 2 * m[..., 1, 1] - tr,
                  m[..., 1, 2] + m[..., 2, 1]], -1),
        np.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                  1 + 2 * m[..., 2, 2] - tr], -1),
    ], -2)
    diag = np.stack([tr, m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]], -1)
    best = np.argmax(diag, -1)
    q = np.take_along_axis(cands, best[..., None, None].repeat(4, -1), -2)[..., 0, :]
    return normalize(q)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Quaternions (..., 4) (w, x, y, z) -> rotation matrices (..., 3, 3)."""
    w, x, y, z = np.moveaxis(normalize(np.asarray(q, float)), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def make_continuous(q: np.ndarray) -> np.ndarray:
    """Flip quaternion signs along axis 0 so consecutive frames agree: (F, ..., 4) -> same."""
    q = np.array(q, float)
    for t in range(1, len(q)):
        flip = np.sum(q[t] * q[t - 1], -1) < 0
        q[t][flip] *= -1
    return q


_EULER_AXES = {"X": 0, "Y": 1, "Z": 2}


def matrix_to_euler(m: np.ndarray, order: str) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> Blender Euler angles (..., 3) rad for ``order`` ("XYZ", ...).

    Blender's order "XYZ" means R = Rz @ Ry @ Rx; angles are returned as (x, y, z).
    """
    i, j, k = (_EULER_AXES[c] for c in order)
    parity = 1.0 if (j - i) % 3 == 1 else -1.0
    # R = R_k R_j R_i: the middle angle comes from element (k, i).
    s = np.clip(-parity * m[..., k, i], -1.0, 1.0)
    a_j = np.arcsin(s)
    cos_j = np.cos(a_j)
    ok = cos_j > 1e-6
    a_i = np.where(ok, np.arctan2(parity * m[..., k, j], m[..., k, k]),
                   np.arctan2(-parity * m[..., j, k], m[..., j, j]))
    a_k = np.where(ok, np.arctan2(parity * m[..., j, i], m[..., i, i]), 0.0)
    out = np.zeros(m.shape[:-2] + (3,))
    out[..., i], out[..., j], out[..., k] = a_i, a_j, a_k
    return out


def euler_to_matrix(e: np.ndarray, order: str) -> np.ndarray:
    """Blender Euler angles (..., 3) rad in ``order`` -> rotation matrices (..., 3, 3)."""
    mats = {c: axis_angle_matrix(np.eye(3)[n], e[..., n]) for c, n in _EULER_AXES.items()}
    return mats[order[2]] @ mats[order[1]] @ mats[order[0]]


def make_euler_continuous(e: np.ndarray) -> np.ndarray:
    """Unwrap Euler angles (F, ..., 3) over frames (adds multiples of 2π) -> same shape."""
    return np.unwrap(np.asarray(e, float), axis=0)


def rigid(rot: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """4x4 transforms from rotations (..., 3, 3) and translations (..., 3)."""
    out = np.zeros(rot.shape[:-2] + (4, 4))
    out[..., :3, :3] = rot
    out[..., :3, 3] = trans
    out[..., 3, 3] = 1.0
    return out
