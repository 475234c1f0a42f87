"""The shared kinematic measures (realign_core.motion.kinematics): facing, runs, planted feet, smoothing."""
from __future__ import annotations

import numpy as np
import pytest

from realign_core.motion.kinematics import FOOT_JOINTS, facing_yaw, moving_average, odd_window, planted_feet, runs
from realign_core.motion.skeleton import JOINT_INDEX
from tests.synthetic import walking_motion


def test_heading_convention_facing_and_turning_left():
    pose = np.zeros((2, 22, 3))
    pose[:, 1, 0], pose[:, 2, 0], pose[:, 16, 0], pose[:, 17, 0] = 0.1, -0.1, 0.2, -0.2   # left side at +X
    assert facing_yaw(pose)[0] == pytest.approx(0.0)                                   # faces +Z
    turned = pose[..., [2, 1, 0]] * np.array([1, 1, -1])                               # rotate +90 deg about Y
    assert facing_yaw(turned)[0] == pytest.approx(np.pi / 2)                           # toward +X


def test_facing_is_unwrapped_through_a_full_turn():
    pose = np.zeros((72, 22, 3))
    angles = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    across = np.stack([-np.cos(angles), np.zeros(72), np.sin(angles)], -1)   # facing yaw = angle
    pose[:, 2], pose[:, 1] = 0.1 * across, -0.1 * across
    yaw = facing_yaw(pose)
    assert np.allclose(yaw, angles, atol=1e-9)                                    # no jump at +-pi


def test_runs_are_half_open_python_int_ranges():
    mask = np.array([0, 1, 1, 0, 0, 1, 0, 1, 1, 1], bool)
    assert runs(mask) == [(1, 3), (5, 6), (7, 10)]
    assert all(type(v) is int for r in runs(mask) for v in r)
    assert runs(np.zeros(4, bool)) == [] and runs(np.ones(3, bool)) == [(0, 3)]


def test_moving_average_and_odd_window():
    assert odd_window(0.5, 20, 100) == 9 and odd_window(0.5, 20, 4) == 3 and odd_window(0.0, 20, 10) == 1
    values = np.arange(7.0)
    smooth = moving_average(values, 3)
    assert smooth.shape == values.shape and np.allclose(smooth[1:-1], values[1:-1])   # linear stays linear
    assert smooth[0] == pytest.approx((0 + 0 + 1) / 3)                               # edge padding


def test_planted_feet_needs_slow_and_low():
    standing = np.repeat(walking_motion(frames=1, fps=20), 20, axis=0)
    planted = planted_feet(standing, fps=20)
    assert planted.shape == (20, len(FOOT_JOINTS)) and planted.dtype == bool and planted.all()
    sliding = standing.copy()
    sliding[:, JOINT_INDEX["left_ankle"], 2] += np.arange(20) * 0.05       # 1 m/s along +Z, on the floor
    assert not planted_feet(sliding, fps=20)[:, 0].any() and planted_feet(sliding, fps=20)[:, 2].all()
    lifted = standing.copy()
    lifted[:, JOINT_INDEX["left_ankle"], 1] += np.linspace(0, 0.3, 20)     # raised slowly: not low any more
    assert not planted_feet(lifted, fps=20)[-1, 0] and planted_feet(lifted, fps=20)[0, 0]
    assert planted_feet(standing[:1]).all()                               # one frame counts as standing


def test_planted_feet_is_blind_to_the_heading_and_the_sign_of_z():
    walk = walking_motion(frames=60, speed=0.2, turn_deg=120.0)
    mirrored_z = walk * np.array([1.0, 1.0, -1.0])                      # the Blender axes' (x, -z) horizontal
    assert np.array_equal(planted_feet(walk), planted_feet(mirrored_z))
    assert np.array_equal(planted_feet(walk), planted_feet(walk + [3.0, 0.0, -2.0]))


def test_tpose_offsets_are_the_reference_bones_in_a_tpose():
    from realign_core.motion.skeleton import PARENTS, REFERENCE_BONE_LENGTHS, TPOSE_OFFSETS

    assert TPOSE_OFFSETS.shape == (22, 3) and TPOSE_OFFSETS[0].tolist() == [0.0, 0.95, 0.0]
    along = np.abs(TPOSE_OFFSETS).max(axis=1)[1:]                        # the bone's main axis component
    assert np.abs(along - REFERENCE_BONE_LENGTHS[1:]).max() <= 5e-4       # reference lengths to the mm
    for side, sign in (("left", 1.0), ("right", -1.0)):                   # arms straight out sideways
        for joint in ("shoulder", "elbow", "wrist"):
            offset = TPOSE_OFFSETS[JOINT_INDEX[f"{side}_{joint}"]]
            assert np.sign(offset[0]) == sign and offset[2] == 0.0
    assert TPOSE_OFFSETS[JOINT_INDEX["head"]][1] > 0                      # head up
    rest = np.zeros((22, 3))
    for j in range(1, 22):
        rest[j] = rest[PARENTS[j]] + TPOSE_OFFSETS[j]
    assert rest[JOINT_INDEX["left_wrist"], 0] > 0.6 and rest[JOINT_INDEX["right_wrist"], 0] < -0.6
