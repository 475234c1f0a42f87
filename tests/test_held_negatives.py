"""The reward's held-part hard negative: holding a part in feature space, the loss, and a real training step."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from realign_core.data.dataset import MotionTextDataset, collate
from realign_core.motion.normalization import Normalizer
from realign_core.guidance.control_spec import PartLayer
from realign_core.motion.features import FEATURE_GROUPS, features_to_joints, joints_to_features
from realign_core.training.held_negatives import held_negative_loss, hold_part_features
from realign_core.training.tasks.reward import RewardConfig, RewardTask, make_reward_task
from tests.synthetic import walking_motion, waving_motion


def test_hold_part_features_holds_the_arm_and_keeps_the_rest():
    walk = joints_to_features(walking_motion(frames=60, speed=1.2))           # its arms swing
    feats = torch.from_numpy(np.stack([walk, walk])).float()
    mask = torch.ones(2, len(walk), dtype=torch.bool)
    mask[1, 40:] = False                                                        # a shorter second clip
    held, movement = hold_part_features(feats, mask, "right_arm")
    offsets = PartLayer.from_features("right_arm", held[0].numpy()).offsets
    assert offsets.std(axis=0).max() < 1e-5                                    # one pose for the whole clip
    assert movement[0] > 0.02 and movement.shape == (2,)
    assert torch.equal(held[0, :, :4], feats[0, :, :4])                        # the root is the clip's
    assert torch.count_nonzero(held[1, 40:]) == 0                              # padding stays zero
    _, still = hold_part_features(held, mask, "right_arm")
    assert still[0] < 1e-5                                                     # a held arm does not move


def test_smoothing_the_arm_removes_its_swing_and_keeps_its_raise():
    feats = torch.from_numpy(joints_to_features(waving_motion())).float()[None]
    mask = torch.ones(feats.shape[:2], dtype=torch.bool)
    smooth, removed = hold_part_features(feats, mask, "right_arm", smooth_frames=16)
    before = PartLayer.from_features("right_arm", feats[0].numpy()).offsets[:, 1]    # the wrist (its 2nd joint)
    after = PartLayer.from_features("right_arm", smooth[0].numpy()).offsets[:, 1]
    swing = lambda o: np.abs(np.diff(o[10:-10], 2, axis=0)).mean()                     # noqa: E731 (2nd differences)
    assert swing(after) < 0.1 * swing(before)                                        # the 2.5 Hz wave is gone
    rise = lambda o: o[-25:-10, 1].mean() - o[10:25, 1].mean()                       # noqa: E731
    assert abs(rise(after) - rise(before)) < 0.05 * rise(before) and rise(before) > 0.3  # the raise stays
    assert 0.01 < float(removed[0]) < 0.05 and float(hold_part_features(feats, mask, "right_arm")[1][0]) > 0.08
    recomputed = joints_to_features(features_to_joints(smooth[0].numpy()))[:, FEATURE_GROUPS["local_velocity"]]
    error = lambda f: np.abs(recomputed - f[:-1, FEATURE_GROUPS["local_velocity"]]).mean()   # noqa: E731
    assert error(smooth[0].numpy()) < 0.3 * error(feats[0].numpy())   # its velocities follow the smoothed arm


def test_smoothing_reads_only_the_valid_frames():
    feats = torch.from_numpy(joints_to_features(waving_motion())).float()
    padded = torch.cat([feats, 5 * torch.ones(20, feats.shape[1])])[None]            # garbage past the mask
    mask = torch.arange(padded.shape[1])[None] < len(feats)
    alone, _ = hold_part_features(feats[None], torch.ones(1, len(feats), dtype=torch.bool), "right_arm", 15)
    with_pad, _ = hold_part_features(padded, mask, "right_arm", 15)
    assert torch.allclose(with_pad[0, :len(feats)], alone[0], atol=1e-5)
    assert torch.count_nonzero(with_pad[0, len(feats):]) == 0
    with pytest.raises(ValueError, match="smooth_frames"):
        hold_part_features(feats[None], mask[:, :len(feats)], "right_arm", -1)


def test_held_negative_loss_prefers_the_captured_clip():
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    good = held_negative_loss(text, text, torch.tensor([[0.0, 1.0], [1.0, 0.0]]), 0.1)
    bad = held_negative_loss(text, torch.tensor([[0.0, 1.0], [1.0, 0.0]]), text, 0.1)
    assert good < 1e-3 < 5.0 < bad


def test_reward_task_trains_with_held_negatives(synthetic_dataset):
    norm = Normalizer.load(synthetic_dataset)
    config = RewardConfig(latent_dim=32, ff=64, motion_layers=1, text_layers=1, heads=2, held_negative_weight=1.0,
                          held_negative_min_motion_m=0.0, held_negative_smooth_frames=15)
    task = RewardTask(config, norm=(norm.mean, norm.std))
    model = task.build_model()
    data = MotionTextDataset(synthetic_dataset, "train")
    batch = collate([data[i] for i in range(4)])
    loss, logged = task.training_loss(model, batch, step=0)
    loss.backward()
    assert logged["held"] > 0 and logged["held_share"] == 1.0 and torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    with pytest.raises(ValueError, match="mean and std"):
        RewardTask(config)
    with pytest.raises(ValueError, match="held_negative_smooth_frames"):
        make_reward_task("reward", {"held_negative_smooth_frames": -3})
    with pytest.raises(ValueError, match="part must be one of"):
        make_reward_task("reward", {"held_negative_part": "tail"})
    from realign_core.training.tasks.latent_reward import LatentRewardConfig

    with pytest.raises(ValueError, match="distillation"):
        LatentRewardConfig(held_negative_weight=0.1)
