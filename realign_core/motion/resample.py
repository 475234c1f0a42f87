"""Time resampling of joint trajectories."""
from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator


def resample_positions(positions: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """Resample a trajectory from src_fps to dst_fps over the same time span.

    Shape-preserving cubic (PCHIP) interpolation per coordinate: smooth like a
    spline but never overshoots, so feet planted on the floor stay there.
    positions: (T, ...) -> (T', ...), T' = floor((T - 1) * dst / src) + 1.
    """
    positions = np.asarray(positions, dtype=np.float64)
    if src_fps <= 0 or dst_fps <= 0:
        raise ValueError(f"frame rates must be positive, got src_fps={src_fps}, dst_fps={dst_fps}")
    if len(positions) < 2:
        raise ValueError(f"need at least 2 frames to resample, got {len(positions)}")
    if src_fps == dst_fps:
        return positions.copy()
    duration = (len(positions) - 1) / src_fps
    src_t = np.arange(len(positions)) / src_fps
    dst_t = np.arange(int(np.floor(duration * dst_fps + 1e-9)) + 1) / dst_fps
    return PchipInterpolator(src_t, positions, axis=0)(dst_t)
