"""Feature normalisation as HumanML3D does it: per-dimension mean, group-averaged std.

The std of every feature group (see ``motion.FEATURE_GROUPS``) is replaced by
its average over the group, so it is constant within a group.  Models see
``(x - mean) / std``.  Stored next to a dataset as ``Mean.npy`` / ``Std.npy``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from realign_core.motion.features import FEATURE_DIM, FEATURE_GROUPS

MIN_STD = 1e-6  # a group that never varies (e.g. no contacts at all) is not blown up


def mean_std(feature_clips: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and group-averaged std over all frames of all clips.

    feature_clips: iterable of (T_i, 263) -> (mean (263,), std (263,)) float32.
    """
    clips = [np.asarray(c, dtype=np.float64) for c in feature_clips]
    if not clips:
        raise ValueError("cannot compute Mean/Std of an empty set of clips")
    frames = np.concatenate(clips, axis=0)
    if frames.shape[1] != FEATURE_DIM:
        raise ValueError(f"expected {FEATURE_DIM}-dim features, got {frames.shape[1]}")
    mean = frames.mean(axis=0)
    std = frames.std(axis=0)
    for sl in FEATURE_GROUPS.values():
        std[sl] = std[sl].mean()
    return mean.astype(np.float32), np.maximum(std, MIN_STD).astype(np.float32)


@dataclass
class Normalizer:
    """(x - mean) / std and back, for numpy arrays or torch tensors of shape (..., 263)."""

    mean: np.ndarray  # (263,)
    std: np.ndarray   # (263,)

    @classmethod
    def load(cls, directory: str | Path) -> "Normalizer":
        """Read Mean.npy and Std.npy from a dataset or checkpoint folder."""
        directory = Path(directory)
        arrays = []
        for name in ("Mean.npy", "Std.npy"):
            path = directory / name
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing (expected HumanML3D-style {name})")
            arr = np.load(path).astype(np.float32)
            if arr.shape != (FEATURE_DIM,) or not np.all(np.isfinite(arr)):
                raise ValueError(f"{path}: expected {FEATURE_DIM} finite values, got shape {arr.shape}")
            arrays.append(arr)
        if np.any(arrays[1] <= 0):
            raise ValueError(f"{directory / 'Std.npy'}: std must be positive")
        return cls(*arrays)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        np.save(directory / "Mean.npy", self.mean.astype(np.float32))
        np.save(directory / "Std.npy", self.std.astype(np.float32))

    def _stats(self, like):
        if isinstance(like, torch.Tensor):
            return (torch.as_tensor(self.mean, dtype=like.dtype, device=like.device),
                    torch.as_tensor(self.std, dtype=like.dtype, device=like.device))
        return self.mean, self.std

    def normalize(self, x):
        mean, std = self._stats(x)
        return (x - mean) / std

    def denormalize(self, x):
        mean, std = self._stats(x)
        return x * std + mean
