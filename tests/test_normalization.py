"""Mean/Std as HumanML3D computes them, and the Normalizer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from realign_core.motion.features import FEATURE_GROUPS
from realign_core.motion.normalization import Normalizer, mean_std


def test_std_is_averaged_within_groups():
    rng = np.random.default_rng(0)
    clips = [rng.normal(size=(n, 263)) * np.linspace(0.1, 3.0, 263) for n in (30, 50)]
    mean, std = mean_std(clips)
    frames = np.concatenate(clips)
    assert np.allclose(mean, frames.mean(0), atol=1e-5)
    for sl in FEATURE_GROUPS.values():
        assert np.allclose(std[sl], frames.std(0)[sl].mean(), rtol=1e-5)


def test_round_trip_numpy_and_torch(tmp_path):
    rng = np.random.default_rng(1)
    norm = Normalizer(*mean_std([rng.normal(size=(40, 263))]))
    norm.save(tmp_path)
    loaded = Normalizer.load(tmp_path)
    x = rng.normal(size=(2, 5, 263)).astype(np.float32)
    assert np.allclose(loaded.denormalize(loaded.normalize(x)), x, atol=1e-5)
    t = torch.from_numpy(x)
    assert torch.allclose(loaded.normalize(t), torch.from_numpy(loaded.normalize(x)), atol=1e-6)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="Mean.npy"):
        Normalizer.load(tmp_path)
    np.save(tmp_path / "Mean.npy", np.zeros(263))
    np.save(tmp_path / "Std.npy", np.zeros(10))
    with pytest.raises(ValueError, match="Std.npy"):
        Normalizer.load(tmp_path)


def test_empty_input_is_rejected():
    with pytest.raises(ValueError, match="empty"):
        mean_std([])
