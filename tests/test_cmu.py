"""CMU 20-joint -> SMPL-22 mapping, frame-rate detection and trial loading."""
from __future__ import annotations

import numpy as np
import pytest

from realign_core.data import cmu
from realign_core.motion.features import _across, _forward_from_across
from realign_core.motion.skeleton import JOINT_INDEX
from tests.conftest import shared_path
from tests.synthetic import to_cmu20, walking_motion


def test_direct_joints_are_copied_and_hand_ends_dropped():
    raw = np.random.default_rng(0).normal(size=(5, 20, 3))
    out = cmu.to_smpl22(raw)
    for name, src in cmu.DIRECT_MAP.items():
        assert np.array_equal(out[:, JOINT_INDEX[name]], raw[:, src])
    assert 7 not in cmu.DIRECT_MAP.values() and 11 not in cmu.DIRECT_MAP.values()


def test_spine_is_synthesised_on_the_pelvis_chest_segment():
    raw = np.random.default_rng(1).normal(size=(3, 20, 3))
    out = cmu.to_smpl22(raw)
    pelvis, chest = raw[:, 0], raw[:, 1]
    for name, frac in cmu.SPINE_FRACTIONS.items():
        assert np.allclose(out[:, JOINT_INDEX[name]], pelvis + frac * (chest - pelvis))
    assert 0.3 < cmu.SPINE_FRACTIONS["spine1"] < cmu.SPINE_FRACTIONS["spine2"] < 0.9


def test_collars_sit_between_chest_neck_and_shoulder():
    raw = np.zeros((1, 20, 3))
    raw[0, 1] = [0, 1.3, 0]        # chest
    raw[0, 2] = [0, 1.48, 0]       # neck
    raw[0, 4] = [0.2, 1.36, 0]     # left shoulder (+X is the character's left)
    raw[0, 8] = [-0.2, 1.36, 0]
    out = cmu.to_smpl22(raw)
    left, right = out[0, JOINT_INDEX["left_collar"]], out[0, JOINT_INDEX["right_collar"]]
    assert np.allclose(left, [0.08, 1.3 + 0.55 * 0.18 + 0.4 * 0.06, 0])
    assert np.allclose(right * [-1, 1, 1], left)  # symmetric


def test_to_smpl22_rejects_wrong_shape():
    with pytest.raises(ValueError, match="20, 3"):
        cmu.to_smpl22(np.zeros((4, 22, 3)))


@pytest.mark.parametrize("frames,evidence,votes,expected", [
    (100, cmu.FrameRateEvidence(kit_duration_s=100 / 6), None, (6.0, "kit_duration")),
    (100, cmu.FrameRateEvidence(kit_duration_s=100 / 12), {6.0: 9}, (12.0, "kit_duration")),
    (100, cmu.FrameRateEvidence(index_min_duration_s=14.0), None, (6.0, "humanml3d_index")),
    (100, cmu.FrameRateEvidence(index_min_duration_s=8.0), {6.0: 3}, (12.0, "humanml3d_index")),
    (100, cmu.FrameRateEvidence(index_min_duration_s=5.0), {6.0: 3, 12.0: 1}, (6.0, "subject_majority")),
    (100, cmu.FrameRateEvidence(), {12.0: 2}, (12.0, "subject_majority")),
    (100, cmu.FrameRateEvidence(), None, (12.0, "assumed")),
])
def test_detect_fps(frames, evidence, votes, expected):
    assert cmu.detect_fps(frames, evidence, votes) == expected


def test_load_trial_round_trips_synthetic_units(tmp_path):
    motion = walking_motion(frames=12)
    np.save(tmp_path / "01_01.npy", to_cmu20(motion))
    loaded = cmu.load_trial(tmp_path / "01_01.npy")
    for name in cmu.DIRECT_MAP:
        assert np.allclose(loaded[:, JOINT_INDEX[name]], motion[:, JOINT_INDEX[name]], atol=1e-5)


@pytest.mark.parametrize("content,match", [
    (b"not a numpy file", "cannot read"),
    (np.zeros((4, 22, 3), np.float32), r"expected shape \(T, 20, 3\)"),
    (np.full((4, 20, 3), np.nan, np.float32), "NaN"),
])
def test_load_trial_errors_name_the_file(tmp_path, content, match):
    path = tmp_path / "99_01.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content)
    with pytest.raises(ValueError, match=match) as err:
        cmu.load_trial(path)
    assert str(path) in str(err.value)


def test_real_walks_face_their_direction_of_travel():
    """Labels are the character's own left/right: facing from hips/shoulders matches travel."""
    joints = shared_path("data", "cmu_mocap", "joints")
    for trial in ("02_01", "07_01", "08_01", "35_01"):
        pos = cmu.load_trial(joints / f"{trial}.npy")
        forward = _forward_from_across(_across(pos, 1.0))
        travel = pos[-1, 0] - pos[0, 0]
        travel[1] = 0
        assert np.mean(forward @ (travel / np.linalg.norm(travel))) > 0.8, trial
        height = pos[0, JOINT_INDEX["head"], 1] - pos[0, :, 1].min()
        assert 1.3 < height < 2.0, (trial, height)
