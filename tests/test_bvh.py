"""Tests for realign_core.data.bvh (parse, rigs, convert): parsing, FK, joint maps, units."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from realign_core.data.bvh.convert import bvh_to_smpl22, detect_unit, facing_directions
from realign_core.data.bvh.parse import BvhError, forward_kinematics, parse_bvh
from realign_core.data.bvh.rigs import detect_rig, map_joints, normalize_joint_name
from realign_core.motion.resample import resample_positions
from realign_core.motion.skeleton import JOINT_INDEX, PARENTS

BANDAI_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bandai_namco_1"
BANDAI_DATA = BANDAI_DIR / "data"
J = JOINT_INDEX

# --------------------------------------------------------------------------
# Hand-written BVH text
# --------------------------------------------------------------------------

# Root: 6 channels (ZXY rotation); "Mid": 3 channels (XYZ); "Tip": 6 channels
# with positions in Z X Y order and YZX rotations; End Site below Tip.
CHAIN_BVH = """HIERARCHY\r
ROOT\tRoot\r
{\r
\tOFFSET 0 0 0\r
\tCHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation\r
\tJOINT Mid\r
\t{\r
\t\tOFFSET   1.0  2.0 -0.5\r
\t\tCHANNELS 3 Xrotation Yrotation Zrotation\r
\t\tJOINT Tip\r
\t\t{\r
\t\t\tOFFSET 9 9 9\r
\t\t\tCHANNELS 6 Zposition Xposition Yposition Yrotation Zrotation Xrotation\r
\t\t\tEnd Site\r
\t\t\t{\r
\t\t\t\tOFFSET 0 1 0\r
\t\t\t}\r
\t\t}\r
\t}\r
}\r
MOTION\r
Frames:\t3\r
Frame Time:  0.05\r
{rows}"""

CHAIN_FRAMES = np.array([
    [0.5, 1.0, -2.0, 10.0, 20.0, 30.0, -15.0, 40.0, 5.0, 0.3, -0.2, 0.7, 25.0, -35.0, 60.0],
    [0.0, 0.0, 0.0, 90.0, 0.0, 0.0, 0.0, 0.0, 90.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [1.5, -1.0, 3.0, -70.0, 45.0, 120.0, 33.0, -12.0, -80.0, 0.0, 2.0, -1.0, 170.0, 5.0, -45.0],
])


def chain_text(frames: np.ndarray = CHAIN_FRAMES) -> str:
    """CHAIN_BVH with ``frames`` (F, 15) as motion rows (extra spaces, CRLF)."""
    rows = "".join("  " + "  \t".join(f"{v:.6f}" for v in row) + " \r\n" for row in frames)
    return CHAIN_BVH.replace("{rows}", rows)


def write(tmp_path: Path, text: str, name: str = "clip.bvh") -> Path:
    """Write ``text`` verbatim (no newline translation) and return the path."""
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def euler(order: str, degrees: np.ndarray) -> np.ndarray:
    """Intrinsic Euler rotation (3, 3) with scipy's upper-case convention."""
    return Rotation.from_euler(order.upper(), degrees, degrees=True).as_matrix()


# --------------------------------------------------------------------------
# Parsing and forward kinematics
# --------------------------------------------------------------------------


def test_parse_structure(tmp_path: Path) -> None:
    bvh = parse_bvh(write(tmp_path, chain_text()))
    assert bvh.names == ("Root", "Mid", "Tip")
    assert bvh.parents == (-1, 0, 1)
    np.testing.assert_allclose(bvh.offsets, [[0, 0, 0], [1, 2, -0.5], [9, 9, 9]])
    assert bvh.channels[1] == ("Xrotation", "Yrotation", "Zrotation")
    assert bvh.channels[2][:3] == ("Zposition", "Xposition", "Yposition")
    assert bvh.channel_starts == (0, 6, 9)
    assert list(bvh.end_sites) == [2]
    np.testing.assert_allclose(bvh.end_sites[2], [0, 1, 0])
    assert bvh.frame_time == pytest.approx(0.05) and bvh.fps == 20.0
    assert bvh.motion.shape == (3, 15)
    np.testing.assert_allclose(bvh.motion, CHAIN_FRAMES, atol=1e-6)


def test_fk_quarter_turn_by_hand(tmp_path: Path) -> None:
    """Yaw +90 deg turns a child offset +X into -Z (right-hand rule)."""
    text = ("HIERARCHY\nROOT A\n{\nOFFSET 0 0 0\nCHANNELS 6 Xposition Yposition Zposition "
            "Yrotation Xrotation Zrotation\nJOINT B\n{\nOFFSET 1 0 0\nCHANNELS 3 Zrotation "
            "Yrotation Xrotation\nEnd Site\n{\nOFFSET 1 0 0\n}\n}\n}\n"
            "MOTION\nFrames: 1\nFrame Time: 0.1\n5 1 2 90 0 0 0 0 0\n")
    world = forward_kinematics(parse_bvh(write(tmp_path, text)))
    np.testing.assert_allclose(world[0], [[5, 1, 2], [5, 1, 1]], atol=1e-12)


def test_fk_matches_scipy_euler(tmp_path: Path) -> None:
    world = forward_kinematics(parse_bvh(write(tmp_path, chain_text())))
    for f, row in enumerate(CHAIN_FRAMES):
        r_root = euler("ZXY", row[3:6])
        r_mid = r_root @ euler("XYZ", row[6:9])
        mid = row[:3] + r_root @ np.array([1.0, 2.0, -0.5])
        tip_local = np.array([row[10], row[11], row[9]])  # Z X Y channel order
        tip = mid + r_mid @ tip_local
        np.testing.assert_allclose(world[f], [row[:3], mid, tip], atol=1e-5)


@pytest.mark.parametrize("order", ["XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX"])
def test_fk_every_rotation_order(tmp_path: Path, order: str) -> None:
    channels = " ".join(f"{axis}rotation" for axis in order)
    angles = np.array([[31.0, -47.0, 112.0], [-5.0, 80.0, 15.0]])
    rows = "\n".join(" ".join(str(v) for v in a) + " 0 0 0" for a in angles)
    text = (f"HIERARCHY\nROOT A\n{{\nOFFSET 0 0 0\nCHANNELS 3 {channels}\nJOINT B\n{{\n"
            f"OFFSET 0.3 -1.2 2.5\nCHANNELS 3 Xrotation Yrotation Zrotation\nEnd Site\n{{\n"
            f"OFFSET 0 0 1\n}}\n}}\n}}\nMOTION\nFrames: 2\nFrame Time: 0.033333\n{rows}\n")
    world = forward_kinematics(parse_bvh(write(tmp_path, text)))
    for f, a in enumerate(angles):
        expected = euler(order, a) @ np.array([0.3, -1.2, 2.5])
        np.testing.assert_allclose(world[f, 1], expected, atol=1e-9)


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


def _cases() -> dict[str, tuple[str, str]]:
    """Case name -> (file text, expected message fragment)."""
    good = chain_text()
    head, _, _ = good.partition("MOTION")
    rows = good.splitlines(keepends=True)
    return {
        "empty": ("", "empty file"),
        "blank": ("  \r\n\t\n", "empty file"),
        "missing_motion": (head, "missing MOTION"),
        "count_mismatch": (good.replace("Frames:\t3", "Frames:\t4"), "frame count mismatch"),
        "count_too_many": (good.replace("Frames:\t3", "Frames:\t2"), "frame count mismatch"),
        "non_numeric": (good.replace("-15.000000", "abc"), "non-numeric value 'abc' (line 24)"),
        "nan": (good.replace("-15.000000", "nan"), "NaN"),
        "nan_offset": (good.replace("OFFSET 9 9 9", "OFFSET 9 NaN 9"), "NaN"),
        "unknown_channel": (good.replace("Yrotation Zrotation Xrotation",
                                         "Yrotation Wrotation Xrotation"),
                            "unknown channel name 'Wrotation'"),
        "truncated_frame": (good[: good.rindex("\t") - 3], "truncated"),
        "truncated_hierarchy": ("".join(rows[:9]), "truncated"),
        "no_frame_time": ("".join(rows[: rows.index("Frames:\t3\r\n") + 1]), "Frame Time"),
        "bad_frame_time": (good.replace("0.05", "-1"), "frame time"),
    }


@pytest.mark.parametrize("case", sorted(_cases()))
def test_errors_name_file_and_problem(tmp_path: Path, case: str) -> None:
    text, fragment = _cases()[case]
    path = write(tmp_path, text, f"bad_{case}.bvh")
    with pytest.raises(BvhError) as info:
        parse_bvh(path)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert str(path) in message
    assert fragment.lower() in message.lower(), message


def test_missing_file_is_bvh_error(tmp_path: Path) -> None:
    with pytest.raises(BvhError, match="nope.bvh"):
        parse_bvh(tmp_path / "nope.bvh")


# --------------------------------------------------------------------------
# Names and rig maps
# --------------------------------------------------------------------------


@pytest.mark.parametrize("raw, key", [
    ("mixamorig:LeftUpLeg", "L.upleg"), ("mixamorig1:RightHand", "R.hand"),
    ("mixamorig_Spine2", "C.spine2"), ("UpperLeg_L", "L.upperleg"), ("Toes_R", "R.toes"),
    ("LHipJoint", "L.hipjoint"), ("lShldr", "L.shldr"), ("left.fore-arm", "L.forearm"),
    ("l_hip", "L.hip"), ("Hips", "C.hips"), ("Spine1", "C.spine1"), ("LowerBack", "C.lowerback"),
    ("joint_Root", "C.jointroot"), ("leftupleg", "L.upleg"), ("Bip01 R Thigh", "R.thigh"),
])
def test_normalize_joint_name(raw: str, key: str) -> None:
    assert normalize_joint_name(raw) == key


@dataclass(frozen=True)
class Bone:
    """One joint of a synthetic rig: name, parent name, offset (m, Y up, facing +Z)."""

    name: str
    parent: str | None
    offset: tuple[float, float, float]


def _limbs(roles: dict[str, str], hips: str, arm_parent: str, side: str,
           collar_offset: tuple[float, float, float] | None) -> list[Bone]:
    """Leg and arm bones of one side; ``roles`` maps role -> name pattern ("{s}" = side).

    collar_offset: offset of the "collar" bone from ``arm_parent`` (left side,
    mirrored for the right), or None for a rig without one.
    """
    n = {k: v.format(s=side) for k, v in roles.items()}
    sign = 1.0 if side == "Left" else -1.0
    bones = []
    leg_parent = hips
    if "hipjoint" in n:
        bones.append(Bone(n["hipjoint"], hips, (0, 0, 0)))
        leg_parent = n["hipjoint"]
    bones += [Bone(n["upleg"], leg_parent, (sign * 0.09, -0.06, 0)),
              Bone(n["leg"], n["upleg"], (0, -0.42, 0)),
              Bone(n["foot"], n["leg"], (0, -0.41, 0)),
              Bone(n["toe"], n["foot"], (0, -0.06, 0.13))]
    arm_root, arm_offset = arm_parent, np.array([sign * 0.17, 0.08, 0])
    if collar_offset is not None:
        collar = np.array(collar_offset) * [sign, 1, 1]
        bones.append(Bone(n["collar"], arm_parent, tuple(collar)))
        arm_root, arm_offset = n["collar"], arm_offset - collar
    return bones + [Bone(n["arm"], arm_root, tuple(arm_offset)),
                    Bone(n["forearm"], n["arm"], (sign * 0.27, 0, 0)),
                    Bone(n["hand"], n["forearm"], (sign * 0.26, 0, 0))]


LIMB_ROLES = {"upleg": "{s}UpLeg", "leg": "{s}Leg", "foot": "{s}Foot", "toe": "{s}ToeBase",
              "collar": "{s}Shoulder", "arm": "{s}Arm", "forearm": "{s}ForeArm", "hand": "{s}Hand"}


def mixamo_bones(prefix: str = "mixamorig:") -> list[Bone]:
    """Mixamo-style rig (Spine, Spine1, Spine2, clavicles), names with ``prefix``."""
    trunk = [Bone("Hips", None, (0, 0, 0)), Bone("Spine", "Hips", (0, 0.10, 0)),
             Bone("Spine1", "Spine", (0, 0.12, 0)), Bone("Spine2", "Spine1", (0, 0.14, 0)),
             Bone("Neck", "Spine2", (0, 0.14, 0)), Bone("Head", "Neck", (0, 0.10, 0))]
    limbs = [b for side in ("Left", "Right")
             for b in _limbs(LIMB_ROLES, "Hips", "Spine2", side, (0.07, 0.08, 0))]
    named = lambda s: None if s is None else prefix + s  # noqa: E731
    return [Bone(named(b.name), named(b.parent), b.offset) for b in trunk + limbs]


def cmu_bones() -> list[Bone]:
    """CMU-style rig: LHipJoint, LowerBack, Spine, Spine1, Neck, Neck1, Head; the
    LeftShoulder "collar" sits on Spine1 with a zero offset, as in CMU files."""
    trunk = [Bone("Hips", None, (0, 0, 0)), Bone("LowerBack", "Hips", (0, 0, 0)),
             Bone("Spine", "LowerBack", (0, 0.12, 0)), Bone("Spine1", "Spine", (0, 0.12, 0)),
             Bone("Neck", "Spine1", (0, 0, 0)), Bone("Neck1", "Neck", (0, 0.12, 0)),
             Bone("Head", "Neck1", (0, 0.12, 0))]
    roles = dict(LIMB_ROLES, hipjoint="{s[0]}HipJoint")
    return trunk + [b for side in ("Left", "Right")
                    for b in _limbs(roles, "Hips", "Spine1", side, (0, 0, 0))]


@dataclass(frozen=True)
class RigFile:
    """How a synthetic rig is written: unit, up axis, handedness, clip length."""

    metres_per_unit: float = 1.0
    z_up: bool = False
    left_handed: bool = False
    frames: int = 40
    fps: float = 30.0
    speed_m_s: float = 1.2


def _to_file_axes(v: np.ndarray, style: RigFile) -> np.ndarray:
    """Our axes (Y up, facing +Z, left +X), metres -> the file's axes and units."""
    v = np.array(v, dtype=float) / style.metres_per_unit
    if style.left_handed:
        v[..., 0] *= -1.0
    return np.stack([v[..., 0], -v[..., 2], v[..., 1]], axis=-1) if style.z_up else v


def rig_text(bones: list[Bone], style: RigFile) -> str:
    """BVH text of a standing rig walking forward (zero rotations)."""
    children: dict[str | None, list[Bone]] = {}
    for b in bones:
        children.setdefault(b.parent, []).append(b)

    def block(b: Bone, depth: int) -> list[str]:
        pad = "  " * depth
        kind = "ROOT" if b.parent is None else "JOINT"
        chans = ("6 Xposition Yposition Zposition Zrotation Xrotation Yrotation" if b.parent is None
                 else "3 Zrotation Xrotation Yrotation")
        off = " ".join(f"{x:.6f}" for x in _to_file_axes(b.offset, style))
        lines = [f"{pad}{kind} {b.name}", f"{pad}{{", f"{pad}  OFFSET {off}",
                 f"{pad}  CHANNELS {chans}"]
        for c in children.get(b.name, []):
            lines += block(c, depth + 1)
        if b.name not in children:
            lines += [f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET 0 0 0", f"{pad}  }}"]
        return lines + [f"{pad}}}"]

    hierarchy = ["HIERARCHY"] + block(children[None][0], 0)
    n_rot = 3 * (len(bones) - 1) + 3
    rows = []
    for f in range(style.frames):
        root = _to_file_axes([0.0, 0.95, style.speed_m_s * f / style.fps], style)
        rows.append(" ".join(f"{x:.6f}" for x in root) + " 0" * n_rot)
    return "\n".join(hierarchy + ["MOTION", f"Frames: {style.frames}",
                                  f"Frame Time: {1 / style.fps:.7f}"] + rows) + "\n"


def test_mixamo_autodetect_and_map(tmp_path: Path) -> None:
    for prefix in ("mixamorig:", "mixamorig1:", ""):
        names = [b.name for b in mixamo_bones(prefix)]
        assert detect_rig(names) == "mixamo"
        mapping = map_joints(names)
        expected = {"pelvis": "Hips", "spine1": "Spine", "spine2": "Spine1", "spine3": "Spine2",
                    "neck": "Neck", "head": "Head", "left_collar": "LeftShoulder",
                    "right_shoulder": "RightArm", "left_elbow": "LeftForeArm",
                    "right_wrist": "RightHand", "left_hip": "LeftUpLeg", "right_knee": "RightLeg",
                    "left_ankle": "LeftFoot", "right_foot": "RightToeBase"}
        for ours, theirs in expected.items():
            assert mapping[J[ours]] == prefix + theirs
        assert len(mapping) == 22


def test_mixamo_z_up_centimetres_import(tmp_path: Path) -> None:
    style = RigFile(metres_per_unit=0.01, z_up=True)
    path = write(tmp_path, rig_text(mixamo_bones(), style), "mixamo.bvh")
    m = bvh_to_smpl22(path)
    assert (m.rig, m.unit, m.up_axis, m.mirrored) == ("mixamo", "cm", "+Z", False)
    assert m.scale == pytest.approx(0.01)
    p = m.positions
    assert p.shape == (27, 22, 3)  # floor(39 * 20 / 30) + 1
    np.testing.assert_allclose(p[0, J["pelvis"]], [0, 0.95, 0], atol=1e-6)
    np.testing.assert_allclose(p[0, J["left_hip"]], [0.09, 0.89, 0], atol=1e-6)
    assert p[0, J["head"], 1] > p[0, J["neck"], 1] > p[0, J["pelvis"], 1]
    forward = facing_directions(p).mean(axis=0)
    np.testing.assert_allclose(forward, [0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(p[-1, 0] - p[0, 0], [0, 0, 1.2 * 39 / 30], atol=1e-6)


def test_cmu_autodetect_and_synthesis(tmp_path: Path) -> None:
    bones = cmu_bones()
    names = [b.name for b in bones]
    assert detect_rig(names) == "cmu"
    mapping = map_joints(names)
    assert mapping[J["pelvis"]] == "Hips" and mapping[J["left_hip"]] == "LeftUpLeg"
    assert mapping[J["spine1"]] == "Spine" and mapping[J["spine3"]] == "Spine1"
    assert mapping[J["neck"]] == "Neck1" and mapping[J["left_shoulder"]] == "LeftArm"
    assert mapping[J["left_foot"]] == "LeftToeBase"
    for synthesised in ("spine2", "left_collar", "right_collar"):
        assert J[synthesised] not in mapping

    style = RigFile(metres_per_unit=0.0254 / 0.45)
    m = bvh_to_smpl22(write(tmp_path, rig_text(bones, style), "cmu.bvh"), target_fps=30)
    assert (m.rig, m.unit, m.up_axis) == ("cmu", "cmu", "+Y")
    p = m.positions[0]
    np.testing.assert_allclose(p[J["spine2"]], (p[J["spine1"]] + p[J["spine3"]]) / 2, atol=1e-9)
    for side in ("left", "right"):
        mid = (p[J["neck"]] + p[J[f"{side}_shoulder"]]) / 2
        np.testing.assert_allclose(p[J[f"{side}_collar"]], mid, atol=1e-9)
    assert p[J["left_shoulder"], 0] > 0 > p[J["right_shoulder"], 0]


def test_left_handed_file_is_mirrored(tmp_path: Path) -> None:
    style = RigFile(left_handed=True)
    m = bvh_to_smpl22(write(tmp_path, rig_text(mixamo_bones(), style), "lh.bvh"))
    assert m.mirrored
    p = m.positions
    assert p[0, J["left_hip"], 0] > 0 > p[0, J["right_hip"], 0]
    displacement = p[-1, 0] - p[0, 0]
    assert facing_directions(p)[0] @ displacement > 0


def test_unmappable_rig_names_file_and_joints(tmp_path: Path) -> None:
    bones = [b for b in mixamo_bones() if "Arm" not in b.name and "Hand" not in b.name]
    path = write(tmp_path, rig_text(bones, RigFile()), "armless.bvh")
    with pytest.raises(BvhError) as info:
        bvh_to_smpl22(path)
    message = str(info.value)
    assert str(path) in message
    for joint in ("left_shoulder", "right_elbow", "left_wrist"):
        assert joint in message
    with pytest.raises(BvhError, match="unknown rig"):
        map_joints([b.name for b in mixamo_bones()], rig="nope")


# --------------------------------------------------------------------------
# Units and resampling
# --------------------------------------------------------------------------


@pytest.mark.parametrize("chain, unit", [
    (1.30, "m"), (130.0, "cm"), (1300.0, "mm"), (51.0, "in"), (23.0, "cmu"), (5.0, "normalised"),
])
def test_detect_unit(chain: float, unit: str) -> None:
    name, scale = detect_unit(chain)
    assert name == unit
    assert 1.4 <= 1.15 * chain * scale <= 2.0


def test_resample_identity_is_copy() -> None:
    x = np.random.default_rng(0).normal(size=(7, 22, 3))
    y = resample_positions(x, 20, 20)
    np.testing.assert_array_equal(x, y)
    assert y is not x


@pytest.mark.parametrize("src, dst, count",
                         [(30, 20, 21), (20, 60, 91), (60, 20, 11), (50, 20, 13)])
def test_resample_linear_motion(src: float, dst: float, count: int) -> None:
    t = np.arange(31) / src
    motion = np.stack([t, 2 * t - 1, -t], axis=-1)[:, None, :] * np.ones((1, 22, 1))
    out = resample_positions(motion, src, dst)
    assert out.shape == (count, 22, 3)
    expected_t = np.arange(count) / dst
    np.testing.assert_allclose(out[:, 5, 0], expected_t, atol=1e-12)
    np.testing.assert_allclose(out[:, 5, 1], 2 * expected_t - 1, atol=1e-12)


@pytest.mark.parametrize("shape, src, dst", [((1, 22, 3), 30, 20), ((5, 22, 3), 0, 20),
                                             ((5, 22, 3), 30, -20)])
def test_resample_rejects_bad_input(shape: tuple[int, ...], src: float, dst: float) -> None:
    with pytest.raises(ValueError):
        resample_positions(np.zeros(shape), src, dst)


# --------------------------------------------------------------------------
# Real Bandai Namco files
# --------------------------------------------------------------------------

REAL_FILES = (
    "dataset-1_walk_normal_001.bvh", "dataset-1_run_normal_001.bvh",
    "dataset-1_bow_normal_001.bvh", "dataset-1_kick_normal_001.bvh",
    "dataset-1_dance-short_normal_001.bvh", "dataset-1_walk-back_normal_001.bvh",
    "dataset-1_guide_old_001.bvh",
)
needs_bandai = pytest.mark.skipif(
    not BANDAI_DATA.is_dir(), reason=f"Bandai Namco dataset not found at {BANDAI_DATA}")


def _chain_height(p: np.ndarray) -> float:
    """1.15 * (pelvis..head chain + thigh + shin) of one pose (22, 3), metres."""
    trunk = [J[n] for n in ("pelvis", "spine1", "spine2", "spine3", "neck", "head")]
    legs = [J[n] for n in ("left_hip", "left_knee", "left_ankle")]
    length = lambda idx: np.linalg.norm(np.diff(p[idx], axis=0), axis=-1).sum()  # noqa: E731
    return 1.15 * (length(trunk) + length(legs))


@pytest.fixture(scope="module")
def bandai() -> dict[str, tuple]:
    """File name -> (Smpl22Motion, source frame count)."""
    if not BANDAI_DATA.is_dir():
        pytest.skip(f"Bandai Namco dataset not found at {BANDAI_DATA}")
    return {name: (bvh_to_smpl22(BANDAI_DATA / name), parse_bvh(BANDAI_DATA / name).num_frames)
            for name in REAL_FILES}


@needs_bandai
@pytest.mark.shared_data
@pytest.mark.parametrize("name", REAL_FILES)
def test_bandai_import(bandai: dict[str, tuple], name: str) -> None:
    m, frames = bandai[name]
    p = m.positions
    assert (m.rig, m.unit, m.up_axis, m.mirrored) == ("bandai", "cm", "+Y", False)
    assert m.source_fps == 30.0 and m.fps == 20.0 and m.scale == pytest.approx(0.01)
    assert p.dtype == np.float64 and np.isfinite(p).all()
    assert p.shape == ((frames - 1) * 20 // 30 + 1, 22, 3)
    assert abs(p.shape[0] - frames * 20 / 30) <= 1
    assert 1.4 <= _chain_height(p[0]) <= 2.0
    assert 0.75 <= p[0, J["pelvis"], 1] <= 1.15
    feet = p[:, [J["left_ankle"], J["right_ankle"], J["left_foot"], J["right_foot"]], 1]
    assert -0.03 <= feet.min() <= 0.10
    assert np.median(feet.min(axis=1)) < 0.15
    # Every 2nd output frame falls on a source frame (30 -> 20 fps): bone lengths there
    # come straight from FK and must be constant for directly mapped bones.
    direct = [j for j in range(1, 22) if j in m.joint_map and PARENTS[j] in m.joint_map]
    on_source = p[::2]
    parents = [PARENTS[j] for j in direct]
    lengths = np.linalg.norm(on_source[:, direct] - on_source[:, parents], axis=-1)
    assert np.ptp(lengths, axis=0).max() < 1e-3


@needs_bandai
@pytest.mark.shared_data
def test_bandai_handedness_walk_forward_and_back(bandai: dict[str, tuple]) -> None:
    clips = (("dataset-1_walk_normal_001.bvh", 1.0), ("dataset-1_walk-back_normal_001.bvh", -1.0))
    for name, sign in clips:
        p = bandai[name][0].positions
        travel = p[-1, 0] - p[0, 0]
        travel[1] = 0.0
        assert np.linalg.norm(travel) > 1.0
        cosine = facing_directions(p) @ (travel / np.linalg.norm(travel))
        assert sign * np.mean(cosine) > 0.9, name


@needs_bandai
@pytest.mark.shared_data
def test_bandai_autodetect(bandai: dict[str, tuple]) -> None:
    names = parse_bvh(BANDAI_DATA / REAL_FILES[0]).names
    assert detect_rig(names) == "bandai"
    mapping = map_joints(names)
    assert mapping[J["pelvis"]] == "Hips" and mapping[J["spine3"]] == "Chest"
    assert mapping[J["left_collar"]] == "Shoulder_L" and mapping[J["left_shoulder"]] == "UpperArm_L"
    assert mapping[J["right_wrist"]] == "Hand_R" and mapping[J["left_foot"]] == "Toes_L"
    assert J["spine2"] not in mapping
    assert bandai[REAL_FILES[0]][0].joint_map == mapping
