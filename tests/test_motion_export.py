"""Output formats: inverse kinematics, BVH writer, AMASS-style SMPL .npz, export_motion."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from realign_core.data.bvh.convert import bvh_to_smpl22, forward_kinematics, parse_bvh
from realign_core.export.formats import (
    EULER_ORDERS,
    Y_UP_TO_Z_UP,
    bvh_joint_names,
    default_rest_joints,
    export_motion,
    quat_to_axis_angle,
    smpl_params,
    smpl_pose_from_joints,
    smpl_rest_joints,
    write_bvh,
    write_smpl_npz,
)
from realign_core.export.inverse_kinematics import (
    check_joints,
    joints_to_rotations,
    make_continuous,
    rest_positions,
    rotations_to_joints,
    tpose_offsets,
)
from realign_core.motion import quaternion as Q
from realign_core.motion.skeleton import JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, PARENTS
from tests import synthetic
from tests.smpl_synthetic import SYNTHETIC_VERTEX_IDS, write_synthetic_smpl

REAL_JOINTS = Path(__file__).resolve().parents[1] / "data" / "cmu_h3d" / "new_joints"
LEGS = [JOINT_INDEX[f"{s}_{n}"] for s in ("left", "right") for n in ("hip", "knee", "ankle", "foot")]
ARMS = [JOINT_INDEX[f"{s}_{n}"] for s in ("left", "right") for n in ("shoulder", "elbow", "wrist")]


def _errors(joints: np.ndarray, rest_offsets: np.ndarray | None = None) -> np.ndarray:
    """Per-frame, per-joint FK error (F, 22) in metres of the IK of joints."""
    ik = joints_to_rotations(joints, rest_offsets)
    return np.linalg.norm(rotations_to_joints(*ik) - joints, axis=-1)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (degrees) between rotations given as quaternions (..., 4)."""
    return np.degrees(2 * np.arccos(np.clip(np.abs(np.sum(a * b, axis=-1)), 0.0, 1.0)))


@pytest.fixture(scope="module")
def walk() -> np.ndarray:
    return synthetic.walking_motion(frames=80, turn_deg=150)


# --------------------------------------------------------------------------
# Inverse kinematics
# --------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{}, {"turn_deg": -300, "speed": 2.5, "step_hz": 2.6},
                                    {"direction_deg": 90, "scale": 0.9}])
def test_ik_fk_reproduces_synthetic_walks(kwargs):
    joints = synthetic.walking_motion(frames=70, **kwargs)
    assert _errors(joints).max() < 1e-6


def test_ik_recovers_the_generating_rotations(walk):
    """With the generator's own rest skeleton, IK returns its local rotations (hinges, hyperextension)."""
    frames, fps = len(walk), 20
    t = np.arange(frames) / fps
    phase = 2 * np.pi * 1.8 * t
    truth = np.tile(Q.IDENTITY, (frames, NUM_JOINTS, 1))
    truth[:, 0] = Q.qyaw(np.deg2rad(150) * t / t[-1])
    for j, (amp, off) in synthetic._SWINGS.items():
        angle = np.deg2rad(amp * np.sin(phase + off) * 1.2)
        truth[:, j] = Rotation.from_euler("x", angle[:, None]).as_quat(scalar_first=True)
    ik = joints_to_rotations(walk, synthetic.REST_OFFSETS)
    assert _angle_deg(ik.rotations, truth).max() < 1e-4


def test_ik_recovers_limb_twist_from_the_bending_plane():
    """Smoothly moving hips / shoulders (twist included) over knees / elbows that bend from
    -10 (hyperextended) to 100 degrees: rotations come back wherever the bend shows the plane."""
    rng = np.random.default_rng(3)
    frames = 120
    t = np.linspace(0.0, 1.0, frames)[:, None]
    wave = lambda amp: amp * np.sin(2 * np.pi * rng.uniform(0.5, 2.0, 3) * t + rng.uniform(0, 6, 3))
    offsets = tpose_offsets(synthetic.walking_motion(frames=10))
    truth = np.tile(Q.IDENTITY, (frames, NUM_JOINTS, 1))
    truth[:, 0] = Rotation.from_euler("yxz", wave(40.0), degrees=True).as_quat(scalar_first=True)
    for limb in ("left_hip", "right_hip", "left_shoulder", "right_shoulder"):
        truth[:, JOINT_INDEX[limb]] = Rotation.from_euler("xyz", wave(60.0), degrees=True).as_quat(scalar_first=True)
    bend = 45.0 + 55.0 * np.sin(2 * np.pi * 1.5 * t[:, 0] + np.arange(4)[:, None])  # (4, F) degrees
    hinges = {"left_knee": ("x", bend[0]), "right_knee": ("x", bend[1]),
              "left_elbow": ("y", -bend[2]), "right_elbow": ("y", bend[3])}
    for joint, (axis, angle) in hinges.items():
        truth[:, JOINT_INDEX[joint]] = Rotation.from_euler(axis, angle[:, None], degrees=True).as_quat(scalar_first=True)
    joints = rotations_to_joints(np.zeros((frames, 3)), truth, offsets)
    ik = joints_to_rotations(joints, offsets)
    assert np.abs(rotations_to_joints(*ik) - joints).max() < 1e-9
    for k, (limb, hinge) in enumerate((("left_hip", "left_knee"), ("right_hip", "right_knee"),
                                       ("left_shoulder", "left_elbow"), ("right_shoulder", "right_elbow"))):
        shown = np.abs(bend[k]) >= 20.0
        for joint in (limb, hinge):
            err = _angle_deg(ik.rotations[:, JOINT_INDEX[joint]], truth[:, JOINT_INDEX[joint]])
            assert err[shown].max() < 1e-4, joint
        assert np.sum(ik.rotations[1:, JOINT_INDEX[limb]] * ik.rotations[:-1, JOINT_INDEX[limb]], -1).min() > 0.9


def test_tpose_rest_skeleton(walk):
    offsets = tpose_offsets(walk)
    lengths = np.linalg.norm(offsets, axis=-1)
    np.testing.assert_allclose(lengths[1:], np.linalg.norm(walk[0, 1:] - walk[0, list(PARENTS[1:])], axis=-1))
    unit = offsets / np.maximum(lengths[:, None], 1e-12)
    for name, axis in (("spine1", [0, 1, 0]), ("left_knee", [0, -1, 0]), ("left_foot", [0, 0, 1]),
                       ("left_elbow", [1, 0, 0]), ("right_wrist", [-1, 0, 0]), ("neck", [0, 1, 0])):
        np.testing.assert_allclose(unit[JOINT_INDEX[name]], axis, atol=1e-9)
    assert offsets[JOINT_INDEX["left_hip"], 0] > 0 > offsets[JOINT_INDEX["right_hip"], 0]


def test_ik_fk_on_real_clips():
    if not REAL_JOINTS.is_dir():
        pytest.skip(f"{REAL_JOINTS} is absent: build the CMU training set (build.py all) to test real clips")
    clips = sorted(REAL_JOINTS.glob("cmu_*.npy"))[:4]
    if not clips:
        pytest.skip(f"{REAL_JOINTS} has no cmu_*.npy clips")
    for clip in clips:
        err = _errors(np.load(clip).astype(np.float64))
        # Legs are exact (hips rigid with the pelvis); spine1/2 and the collars
        # are synthesised in CMU-derived data and carry the residual.
        assert err.mean() < 0.01, clip.name
        assert err[:, LEGS].max() < 0.005, clip.name
        assert err[:, ARMS].max() < 0.03, clip.name
        assert err.max() < 0.10, clip.name


def test_quaternions_are_continuous():
    joints = synthetic.walking_motion(frames=120, turn_deg=720, speed=1.5)
    rotations = joints_to_rotations(joints).rotations
    dots = np.sum(rotations[1:] * rotations[:-1], axis=-1)
    assert dots.min() > 0.9
    np.testing.assert_allclose(np.linalg.norm(rotations, axis=-1), 1.0, atol=1e-9)


def test_make_continuous_removes_sign_flips():
    q = Rotation.from_euler("y", np.linspace(0, 600, 40)[:, None], degrees=True).as_quat(scalar_first=True)
    q[::3] *= -1
    fixed = make_continuous(q)
    assert np.sum(fixed[1:] * fixed[:-1], axis=-1).min() > 0
    assert fixed[0, 0] >= 0
    np.testing.assert_allclose(np.abs(np.sum(fixed * q, axis=-1)), 1.0, atol=1e-12)


@pytest.mark.parametrize("bad, words", [
    (np.zeros((10, 21, 3)), ["shape", "(F, 22, 3)"]),
    (np.zeros((22, 3)), ["shape"]),
    (np.zeros((0, 22, 3)), ["no frames"]),
])
def test_bad_shapes_are_named(bad, words):
    with pytest.raises(ValueError) as info:
        joints_to_rotations(bad)
    for word in words:
        assert word in str(info.value)


def test_nan_and_degenerate_input_are_named(walk, tmp_path):
    nan = walk.copy()
    nan[7, JOINT_INDEX["left_elbow"], 1] = np.nan
    for call in (lambda: joints_to_rotations(nan), lambda: write_bvh(tmp_path / "x.bvh", nan),
                 lambda: write_smpl_npz(tmp_path / "x.npz", nan), lambda: export_motion(nan, tmp_path / "x")):
        with pytest.raises(ValueError, match=r"NaN.*frame 7, joint left_elbow"):
            call()
    flat = walk.copy()
    flat[3, JOINT_INDEX["left_knee"]] = flat[3, JOINT_INDEX["left_hip"]]
    with pytest.raises(ValueError, match="left_hip -> left_knee has zero length at frame 3"):
        check_joints(flat)
    with pytest.raises(ValueError, match="unknown export format"):
        export_motion(walk, tmp_path / "x", formats=("fbx",))
    with pytest.raises(ValueError, match="unit"):
        write_bvh(tmp_path / "x.bvh", walk, unit="inch")
    with pytest.raises(ValueError, match="rest joints"):
        smpl_pose_from_joints(walk, np.zeros((5, 3)))


# --------------------------------------------------------------------------
# BVH
# --------------------------------------------------------------------------

def _bvh_positions(path: Path, names: tuple[str, ...]) -> np.ndarray:
    """Our importer's parse + forward kinematics, reordered to our joints (file units)."""
    bvh = parse_bvh(path)
    world = forward_kinematics(bvh)
    return world[:, [bvh.names.index(n) for n in names]]


@pytest.mark.parametrize("unit, scale", [("m", 1.0), ("cm", 100.0)])
def test_bvh_round_trip_through_our_parser(walk, tmp_path, unit, scale):
    path = write_bvh(tmp_path / "walk.bvh", walk, fps=20, unit=unit)
    bvh = parse_bvh(path)
    assert bvh.names[0] == "pelvis" and set(bvh.names) == set(JOINT_NAMES)
    assert bvh.fps == 20.0 and bvh.num_frames == len(walk)
    assert len(bvh.channels[0]) == 6 and all(len(c) == 3 for c in bvh.channels[1:])
    for name, channels in zip(bvh.names, bvh.channels):
        assert "".join(c[0] for c in channels if c.endswith("rotation")) == EULER_ORDERS[name]
    assert len(bvh.end_sites) == 5
    positions = _bvh_positions(path, JOINT_NAMES) / scale
    assert np.abs(positions - walk).max() < 1e-4


def test_bvh_round_trip_of_a_real_clip(tmp_path):
    if not REAL_JOINTS.is_dir():
        pytest.skip(f"{REAL_JOINTS} is absent: build the CMU training set (build.py all) to test real clips")
    clip = min(REAL_JOINTS.glob("cmu_*.npy"))
    joints = np.load(clip).astype(np.float64)
    ik = joints_to_rotations(joints)
    positions = _bvh_positions(write_bvh(tmp_path / "clip.bvh", joints), JOINT_NAMES)
    assert np.abs(positions - rotations_to_joints(*ik)).max() < 1e-4


def test_bvh_full_import_with_mixamo_names(tmp_path):
    """Mixamo-named files go through the whole importer (rig detection, unit, axes, handedness)."""
    joints = synthetic.walking_motion(frames=60, turn_deg=90)
    path = write_bvh(tmp_path / "walk.bvh", joints, joint_names="mixamo")
    motion = bvh_to_smpl22(path)
    assert motion.rig == "mixamo" and motion.unit == "m" and motion.up_axis == "+Y"
    assert not motion.mirrored and motion.fps == 20.0
    assert np.abs(motion.positions - joints).max() < 1e-4
    assert bvh_joint_names("mixamo")[JOINT_INDEX["left_elbow"]] == "mixamorig:LeftForeArm"


def test_bvh_rest_pose_is_the_tpose(walk, tmp_path):
    path = write_bvh(tmp_path / "walk.bvh", walk)
    bvh = parse_bvh(path)
    rest = rest_positions(tpose_offsets(walk))
    offsets = np.array([bvh.offsets[bvh.names.index(n)] for n in JOINT_NAMES])
    np.testing.assert_allclose(rest_positions(offsets), rest - rest[0], atol=1e-6)


# --------------------------------------------------------------------------
# SMPL
# --------------------------------------------------------------------------

def _smplx_joints(model_dir: Path, params: dict, betas: np.ndarray | None = None) -> np.ndarray:
    """Joints (F, 22, 3) from smplx's SMPL forward kinematics of stored params."""
    import smplx
    import torch

    frames = len(params["poses"])
    body = smplx.create(str(model_dir), model_type="smpl", gender=str(params["gender"]),
                        vertex_ids=SYNTHETIC_VERTEX_IDS, batch_size=frames)
    as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)
    kwargs = {}
    if betas is not None:
        kwargs["betas"] = as_t(np.broadcast_to(betas[:10], (frames, 10)))
    with torch.no_grad():
        out = body(global_orient=as_t(params["poses"][:, :3]), body_pose=as_t(params["poses"][:, 3:]),
                   transl=as_t(params["trans"]), **kwargs)
    return out.joints[:, :NUM_JOINTS].numpy().astype(np.float64)


def _smpl_like_rest(joints: np.ndarray) -> np.ndarray:
    """A rest skeleton shaped like SMPL's (not a T-pose): arms down 30-35 deg, bent
    knees and elbows, tilted spine, pelvis off the origin; the motion's bone lengths."""
    offsets = tpose_offsets(joints)
    pose = np.tile(Q.IDENTITY, (1, NUM_JOINTS, 1))
    tweaks = {"left_shoulder": ("z", -30), "right_shoulder": ("z", 35), "left_elbow": ("y", -8),
              "right_elbow": ("y", 6), "left_knee": ("x", 4), "right_knee": ("x", 3),
              "spine1": ("x", -6), "spine3": ("x", 5), "left_hip": ("z", 4), "left_ankle": ("x", 12)}
    for joint, (axis, deg) in tweaks.items():
        pose[0, JOINT_INDEX[joint]] = Rotation.from_euler(axis, [deg], degrees=True).as_quat(scalar_first=True)
    return rotations_to_joints(np.array([[0.003, -0.22, 0.028]]), pose, offsets)[0]


def test_smpl_npz_through_smplx_default_rest(walk, tmp_path):
    path = write_smpl_npz(tmp_path / "walk_smpl.npz", walk, fps=20)
    data = np.load(path)
    assert data["poses"].shape == (len(walk), 72) and data["trans"].shape == (len(walk), 3)
    assert data["betas"].shape == (10,) and float(data["mocap_framerate"]) == 20.0
    assert str(data["gender"]) == "neutral"
    assert np.all(data["poses"][:, 66:] == 0)  # hands
    model = write_synthetic_smpl(tmp_path / "model", data["rest_joints"])
    assert np.abs(_smplx_joints(model, data) - walk).max() < 1e-4  # well under the 1 cm asked


def test_smpl_npz_relative_to_a_models_rest_joints(walk, tmp_path):
    """A model whose rest is SMPL-like (not a T-pose): poses are relative to its own rest."""
    rest = _smpl_like_rest(walk)
    model = write_synthetic_smpl(tmp_path / "model", rest)
    np.testing.assert_allclose(smpl_rest_joints(model)[:NUM_JOINTS], rest, atol=1e-9)
    path = write_smpl_npz(tmp_path / "walk_smpl.npz", walk, smpl_model=model)
    data = np.load(path)
    np.testing.assert_allclose(data["rest_joints"], rest, atol=1e-9)
    np.testing.assert_allclose(data["trans"], walk[:, 0] - rest[0], atol=1e-9)
    assert np.abs(_smplx_joints(model, data) - walk).max() < 1e-4


def test_smpl_npz_z_up(walk, tmp_path):
    model = write_synthetic_smpl(tmp_path / "model", default_rest_joints(walk))
    data = np.load(write_smpl_npz(tmp_path / "walk_smpl.npz", walk, smpl_model=model, up_axis="z"))
    assert str(data["up_axis"]) == "z"
    assert np.abs(_smplx_joints(model, data) - walk @ Y_UP_TO_Z_UP.T).max() < 1e-4


def test_smpl_rest_joints_follow_betas_like_smplx(walk, tmp_path):
    import smplx
    import torch

    model = write_synthetic_smpl(tmp_path / "model", _smpl_like_rest(walk))
    betas = np.linspace(-2.0, 2.0, 10)
    body = smplx.create(str(model), model_type="smpl", vertex_ids=SYNTHETIC_VERTEX_IDS)
    with torch.no_grad():
        rest = body(betas=torch.tensor(betas[None], dtype=torch.float32)).joints[0, :24].numpy()
    ours = smpl_rest_joints(model, betas)
    assert np.abs(ours - rest).max() < 1e-5
    assert np.abs(ours - smpl_rest_joints(model)).max() > 0.005  # betas do move the joints
    data = smpl_params(walk, betas=betas, smpl_model=model)
    np.testing.assert_allclose(data["betas"], betas)
    np.testing.assert_allclose(data["rest_joints"], ours[:NUM_JOINTS])


def test_smpl_model_errors(tmp_path, walk):
    with pytest.raises(FileNotFoundError, match="SMPL_NEUTRAL"):
        smpl_rest_joints(tmp_path)
    (tmp_path / "bad").mkdir()
    np.savez(tmp_path / "bad" / "SMPL_NEUTRAL.npz", v_template=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="missing shapedirs"):
        smpl_rest_joints(tmp_path / "bad")
    with pytest.raises(ValueError, match="up_axis"):
        smpl_params(walk, up_axis="x")


def test_axis_angle_conversion():
    rotvec = np.array([[0.0, 0.0, 0.0], [0.3, -0.2, 0.1], [0.0, 3.0, 0.0], [1e-10, 0.0, 0.0]])
    q = Rotation.from_rotvec(rotvec).as_quat(scalar_first=True)
    np.testing.assert_allclose(quat_to_axis_angle(q), rotvec, atol=1e-12)
    np.testing.assert_allclose(quat_to_axis_angle(-q), rotvec, atol=1e-12)


# --------------------------------------------------------------------------
# export_motion
# --------------------------------------------------------------------------

def test_export_motion_writes_all_formats(walk, tmp_path):
    paths = export_motion(walk, tmp_path / "out" / "walk")
    assert {k: p.name for k, p in paths.items()} == {"npy": "walk.npy", "bvh": "walk.bvh", "npz": "walk_smpl.npz"}
    saved = np.load(paths["npy"])
    assert saved.dtype == np.float32 and saved.shape == walk.shape
    assert parse_bvh(paths["bvh"]).num_frames == len(walk)
    assert np.load(paths["npz"])["poses"].shape == (len(walk), 72)
    only = export_motion(walk, tmp_path / "b", formats=["bvh"])
    assert list(only) == ["bvh"] and not (tmp_path / "b.npy").exists()
