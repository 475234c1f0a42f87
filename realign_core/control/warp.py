"""Exact keyed poses: a smooth displacement that takes a motion through its keyframes.

Guidance (``guidance.constraints``) brings a motion close to its keyed poses; ``warp_to_keyframes`` then
removes what is left: for each keyed frame k the residual r_k = target_k - joints[k] (22, 3) is added to
the frames around k with a raised-cosine weight (1 at k, 0 at ``radius`` frames away or at the
neighbouring keyframe, whichever is nearer), so the warped motion hits every key exactly and its
displacement is smooth (zero slope at both ends of each bump).
"""
from __future__ import annotations

import numpy as np

DEFAULT_RADIUS = 15   # frames (0.75 s at 20 fps)


def bump(frames: int, center: int, left: int, right: int) -> np.ndarray:
    """(frames,) raised-cosine weights: 1 at center, 0 at and beyond center - left and center + right."""
    t = np.arange(frames, dtype=np.float64) - center
    w = np.zeros(frames)
    for side, span in ((t <= 0, left), (t >= 0, right)):
        if span <= 0:
            w[side & (t == 0)] = 1.0
            continue
        u = np.clip(np.abs(t[side]) / span, 0.0, 1.0)
        w[side] = 0.5 * (1 + np.cos(np.pi * u))
    return w


def warp_to_keyframes(joints: np.ndarray, frames: tuple[int, ...], targets: np.ndarray,
                      radius: int = DEFAULT_RADIUS) -> np.ndarray:
    """joints (F, 22, 3), keyed ``frames`` (K,), targets (K, 22, 3) -> (F, 22, 3) passing through every key.

    Keys are applied one after another (nearest-first order does not matter: the bumps of two keys never
    overlap past the other key, so each key's residual is measured after its neighbours' warps).
    """
    out = np.array(joints, dtype=np.float64, copy=True)
    order = sorted(range(len(frames)), key=lambda i: frames[i])
    keyed = [frames[i] for i in order]
    for n, i in enumerate(order):
        k = frames[i]
        left = min(radius, k - keyed[n - 1]) if n > 0 else radius
        right = min(radius, keyed[n + 1] - k) if n + 1 < len(keyed) else radius
        residual = np.asarray(targets[i], dtype=np.float64) - out[k]
        out += bump(len(out), k, left, right)[:, None, None] * residual[None]
    return out.astype(np.float32)
