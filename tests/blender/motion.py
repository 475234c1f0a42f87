"""Source motions for the Blender tests (numpy only: the bpy environments have no realign_core)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.addon_modules import load

REPO = Path(__file__).resolve().parents[2]
REAL_CLIP = REPO / "data" / "cmu_h3d" / "new_joints" / "cmu_02_01_00.npy"
BANDAI = REPO.parent / "shared" / "data" / "bandai_namco_1" / "data"
SWINGS = {1: (25, 0.0), 2: (25, np.pi), 4: (20, np.pi / 2), 5: (20, 1.5 * np.pi), 16: (20, np.pi),
          17: (20, 0.0), 18: (10, np.pi), 19: (10, 0.0)}


def synthetic_walk(frames: int = 80, speed: float = 1.2, fps: float = 20.0) -> np.ndarray:
    """A walk-like motion (F, 22, 3) metres, Y up, facing +Z: legs and arms swing about X."""
    skeleton, rotations = load("skeleton"), load("rotations")
    offsets = skeleton.TPOSE_OFFSETS.copy()
    offsets[[16, 17, 18, 19, 20, 21]] = [[0.13, -0.02, 0], [-0.12, -0.02, 0], [0, -0.26, 0], [0, -0.26, 0],
                                         [0, -0.25, 0], [0, -0.25, 0]]
    t = np.arange(frames) / fps
    rot = np.tile(np.eye(3), (frames, 22, 1, 1))
    pos = np.zeros((frames, 22, 3))
    pos[:, 0] = np.stack([np.zeros(frames), 0.92 + 0.02 * np.sin(4 * np.pi * 1.8 * t), speed * t], -1)
    for j, p in enumerate(skeleton.PARENTS):
        amp, phase = SWINGS.get(j, (0, 0.0))
        angle = np.radians(amp) * np.sin(2 * np.pi * 1.8 * t + phase)
        local = rotations.axis_angle_matrix(np.array([1.0, 0, 0]), angle)
        if p < 0:
            rot[:, j] = local
            continue
        pos[:, j] = pos[:, p] + np.einsum("fij,j->fi", rot[:, p], offsets[j])
        rot[:, j] = rot[:, p] @ local
    return pos


def source_motion() -> tuple[str, np.ndarray]:
    """(name, joints): a real CMU clip of the built dataset when present, else the synthetic walk."""
    if REAL_CLIP.exists():
        return "cmu_02_01_00", np.load(REAL_CLIP).astype(np.float64)
    return "synthetic_walk", synthetic_walk()
