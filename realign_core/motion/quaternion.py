"""Unit quaternions in (w, x, y, z) order, numpy float64.

Used by the HumanML3D feature extraction (``motion.py``).  All functions
broadcast over leading dimensions: ``q`` is ``(..., 4)``, vectors ``(..., 3)``.
"""
from __future__ import annotations

import numpy as np

IDENTITY = np.array([1.0, 0.0, 0.0, 0.0])


def qnormalize(q: np.ndarray) -> np.ndarray:
    """Scale quaternions to unit length. (..., 4) -> (..., 4)."""
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def qinv(q: np.ndarray) -> np.ndarray:
    """Inverse (conjugate) of unit quaternions. (..., 4) -> (..., 4)."""
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` (apply b, then a). (..., 4) x (..., 4) -> (..., 4)."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], axis=-1)


def qrot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors by unit quaternions. (..., 4) x (..., 3) -> (..., 3)."""
    u = q[..., 1:]
    uv = np.cross(u, v)
    uuv = np.cross(u, uv)
    return v + 2.0 * (q[..., :1] * uv + uuv)


def qbetween(v0: np.ndarray, v1: np.ndarray) -> np.ndarray:
    """Shortest-arc rotation taking direction v0 onto direction v1.

    (..., 3) x (..., 3) -> (..., 4).  For exactly opposite directions (where
    the shortest arc is undefined) a half turn about an axis perpendicular to
    v0 is returned instead of NaN.
    """
    v0, v1 = np.broadcast_arrays(v0, v1)
    axis = np.cross(v0, v1)
    w = np.sqrt((v0 ** 2).sum(-1) * (v1 ** 2).sum(-1)) + (v0 * v1).sum(-1)
    q = np.concatenate([w[..., None], axis], axis=-1)
    degenerate = np.linalg.norm(q, axis=-1) < 1e-12
    if np.any(degenerate):
        q = q.copy()
        q[degenerate] = _half_turn_perpendicular_to(v0[degenerate])
    return qnormalize(q)


def _half_turn_perpendicular_to(v: np.ndarray) -> np.ndarray:
    """Half-turn quaternions about axes perpendicular to v. (N, 3) -> (N, 4)."""
    helper = np.where(np.abs(v[:, 1:2]) < 0.9, [[0.0, 1.0, 0.0]], [[1.0, 0.0, 0.0]])
    axis = np.cross(v, helper)
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    return np.concatenate([np.zeros((len(v), 1)), axis], axis=-1)


def qyaw(angle: np.ndarray) -> np.ndarray:
    """Rotation by ``angle`` radians about +Y. (...) -> (..., 4)."""
    half = np.asarray(angle, dtype=np.float64) / 2.0
    zeros = np.zeros_like(half)
    return np.stack([np.cos(half), zeros, np.sin(half), zeros], axis=-1)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices of unit quaternions. (..., 4) -> (..., 3, 3)."""
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], axis=-2)


def quat_to_cont6d(q: np.ndarray) -> np.ndarray:
    """Continuous 6D rotation: first two matrix columns. (..., 4) -> (..., 6)."""
    m = quat_to_matrix(q)
    return np.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)
