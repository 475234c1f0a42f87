"""HumanML3D representation: conformance to the reference vectors, and self-contained properties."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from realign_core.motion import features as M
from realign_core.motion.conformance import check_vectors
from realign_core.motion.quaternion import qrot, qyaw
from realign_core.motion.skeleton import MIRROR_PERMUTATION, NUM_JOINTS, REFERENCE_BONE_LENGTHS, bone_lengths
from tests.conftest import shared_path
from tests.synthetic import walking_motion


@pytest.fixture(scope="module")
def vectors_path():
    return shared_path("testvectors", "humanml3d_reference_vectors.npz")


@pytest.fixture(scope="module")
def vectors(vectors_path):
    return np.load(vectors_path, allow_pickle=False)


@pytest.fixture(scope="module")
def conformance(vectors_path):
    return check_vectors(vectors_path)


def test_conformance_covers_every_quantity(conformance):
    expected = {f"features.{name}" for name in M.FEATURE_GROUPS if name != "foot_contact"} | {
        "uniform_skeleton_positions", "ground_positions", "ric_positions", "root_rot_quat", "cont6d_params",
        "recovered_joints"}
    assert set(conformance.max_error) == expected
    print(conformance.format())


@pytest.mark.parametrize("quantity", sorted(
    [f"features.{n}" for n in M.FEATURE_GROUPS if n != "foot_contact"] + ["uniform_skeleton_positions", "ground_positions",
                                                             "ric_positions", "root_rot_quat", "cont6d_params",
                                                             "recovered_joints"]))
def test_conformance_within_tolerance(conformance, quantity):
    assert conformance.max_error[quantity] <= conformance.tolerance[quantity]


def test_conformance_foot_contacts(conformance):
    assert conformance.contact_flips == 0 and conformance.passed


def test_conformance_detects_a_wrong_skeleton(vectors, tmp_path):
    """The check is not vacuous: slightly different target bones fail it."""
    data = dict(vectors)
    data["tgt_offsets"] = data["tgt_offsets"] * 1.001
    np.savez(tmp_path / "v.npz", **data)
    assert not check_vectors(tmp_path / "v.npz").passed


def test_quirk_half_angle_sign_flip_is_reproduced(vectors):
    """Clip 4 crosses +-180 deg: recovery drifts by ~0.1 m, exactly like the reference."""
    feats = vectors["clip4_features"]
    ground = vectors["clip4_ground_positions"][:-1]
    drift = np.abs(M.features_to_joints(feats) - ground).max()
    assert 0.09 < drift < 0.12


def test_default_skeleton_matches_reference_lengths(vectors):
    ref = np.linalg.norm(vectors["tgt_offsets_f64"], axis=-1)
    assert np.abs(ref - REFERENCE_BONE_LENGTHS).max() < 1e-6


# ----------------------------- self-contained ------------------------------ #

def test_round_trip_recovers_canonical_joints():
    motion = walking_motion(frames=80, speed=1.3, turn_deg=60.0)
    out = M.process_motion(motion)
    recovered = M.features_to_joints(out.features)
    assert np.abs(recovered - out.ground_positions[:-1]).max() < 1e-5


def test_features_invariant_to_world_yaw_and_translation():
    motion = walking_motion(frames=60, speed=1.0, turn_deg=-40.0)
    moved = qrot(qyaw(np.deg2rad(137.0)), motion) + np.array([3.0, 0.25, -7.0])
    a, b = M.joints_to_features(motion), M.joints_to_features(moved)
    assert np.abs(a - b).max() < 1e-4


def test_uniform_skeleton_sets_bone_lengths_and_scales_root():
    motion = walking_motion(frames=20, scale=1.25)
    out = M.uniform_skeleton(motion)
    assert np.abs(bone_lengths(out) - REFERENCE_BONE_LENGTHS).max() < 1e-9
    ratio = out[0, 0, 1] / motion[0, 0, 1]
    assert np.isclose(ratio, 1 / 1.25, rtol=1e-6)


def test_canonical_floor_origin_and_facing():
    motion = qrot(qyaw(np.deg2rad(-120.0)), walking_motion(frames=30)) + np.array([2.0, 0.4, 1.0])
    ground = M.process_motion(motion).ground_positions
    assert np.isclose(ground[..., 1].min(), 0.0, atol=1e-9)
    assert np.allclose(ground[0, 0, [0, 2]], 0.0, atol=1e-9)
    left_minus_right_hip = ground[0, 1] - ground[0, 2]
    assert left_minus_right_hip[0] > 0.15 and abs(left_minus_right_hip[2]) < 1e-6  # left side at +X


def test_torch_recovery_is_batched_and_differentiable():
    feats = np.stack([M.joints_to_features(walking_motion(frames=41, speed=s)) for s in (0.8, 1.6)])
    x = torch.tensor(feats, dtype=torch.float64, requires_grad=True)
    joints = M.features_to_joints_torch(x)
    assert joints.shape == (2, 40, NUM_JOINTS, 3)
    for b in range(2):
        assert np.allclose(joints[b].detach().numpy(), M.features_to_joints(feats[b]), atol=1e-6)
    joints[..., 0, 2].sum().backward()  # root Z depends on velocities and yaw
    assert x.grad is not None and x.grad[..., 1:3].abs().sum() > 0 and torch.isfinite(x.grad).all()


def test_mirror_is_an_involution_and_swaps_sides():
    motion = walking_motion(frames=10, turn_deg=30.0)
    mirrored = M.mirror_joints(motion)
    assert np.allclose(M.mirror_joints(mirrored), motion)
    assert MIRROR_PERMUTATION[1] == 2 and MIRROR_PERMUTATION[16] == 17
    assert np.allclose(mirrored[:, 1, 0], -motion[:, 2, 0])


def test_mirrored_features_flip_turn_direction():
    motion = walking_motion(frames=80, speed=1.2, turn_deg=90.0)
    yaw = M.recover_root(torch.from_numpy(M.joints_to_features(motion).astype(np.float64)))[0][-1]
    yaw_m = M.recover_root(torch.from_numpy(M.joints_to_features(M.mirror_joints(motion)).astype(np.float64)))[0][-1]
    assert yaw > 0.5 and np.isclose(float(yaw), -float(yaw_m), atol=1e-3)


@pytest.mark.parametrize("bad,match", [
    (np.zeros((5, 21, 3)), "shape"),
    (np.zeros((1, 22, 3)), "at least 2 frames"),
    (np.full((4, 22, 3), np.nan), "NaN"),
    (np.zeros((4, 22, 3)), "zero length"),
])
def test_bad_positions_raise_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        M.joints_to_features(bad)


def test_features_to_joints_rejects_wrong_width():
    with pytest.raises(ValueError, match="263"):
        M.features_to_joints(np.zeros((10, 251)))
