"""Retargeting without Blender: bone maps, accuracy, root motion, foot pinning, continuity.

Rigs are built in tests/retarget_rigs.py as edit-bone data (heads, tails,
rolls); the pose channels the retarget returns are played back through an
independent forward kinematics and compared with the generated joints.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests import retarget_rigs as rigs
from tests.addon_modules import ADDON_DIR, load, staged_addon
from tests.conftest import REPO_ROOT, shared_path
from tests.synthetic import walking_motion

rt = load("retarget")
rg = load("rig")
rot = load("rotations")
kin = load("kinematics")
bm = load("bone_maps")
RNG_SEED = 7
NO_FEET = rt.RetargetOptions(ground_snap=False, pin_feet=False)
LEG_JOINTS = {"left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"}


def all_rigs():
    rng = np.random.default_rng(RNG_SEED)
    return {
        "smpl": rigs.smpl_rig(rng),
        "mixamo": rigs.mixamo_rig(rng),
        "mixamo_underscore": rigs.mixamo_rig(rng, prefix="mixamorig1_"),
        "rigify_def": rigs.rigify_rig(rng),
        "rigify_metarig": rigs.rigify_rig(None, deform=False),
        "bandai": rigs.bandai_like_rig(rng),
        "ue5": rigs.ue5_like_rig(rng),
    }


RIGS = all_rigs()


def played_back(rig, result) -> np.ndarray:
    """World joint poses (F, B, 4, 4) from the returned channels through forward kinematics."""
    frames = len(result.quaternions)
    basis = np.broadcast_to(np.eye(4), (frames, len(rig.names), 4, 4)).copy()
    keyed = result.driven
    basis[:, keyed, :3, :3] = rot.quaternion_to_matrix(result.quaternions[:, keyed])
    if result.root >= 0:
        basis[:, result.root, :3, 3] = result.locations[:, result.root]
    pose = rg.forward_kinematics(rig, basis)
    return np.einsum("ij,fbjk->fbik", rig.object_matrix, pose)


def direction_errors(rig, bone_map, result, skip: set[str] = frozenset()) -> np.ndarray:
    """Angles (deg) between target and generated bone directions, (F, n bones) over limbs and chains."""
    plan = rg.make_plan(rig, bone_map)
    heads = played_back(rig, result)[..., :3, 3]
    src = result.placed
    errs = []
    for joint, child in rg.LIMB_CHILD.items():
        if joint in plan.bone_of and child in plan.bone_of and joint not in skip:
            want = src[:, rg.J[child]] - src[:, rg.J[joint]]
            got = heads[:, plan.bone_of[child]] - heads[:, plan.bone_of[joint]]
            errs.append(angle_deg(want, got))
    for chain in plan.chains:
        pts = rt.sample_polyline(src[:, [rg.J[n] for n in chain.source]], chain.u)
        knot_bones = [b for b in chain.bones if b >= 0]
        first = 0 if chain.bones[0] >= 0 else 1
        end_bone = plan.bone_of["neck" if chain.source == rg.SPINE_SOURCE else "head"]
        posed = heads[:, knot_bones + [end_bone]]
        for i in range(len(knot_bones)):
            errs.append(angle_deg(pts[:, first + i + 1] - pts[:, first + i], posed[:, i + 1] - posed[:, i]))
    return np.stack(errs, 1)


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cos = np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def skating(rig, bone_map, result) -> dict[str, float]:
    """Worst horizontal drift (world units) of planted joints within each contact run."""
    plan = rg.make_plan(rig, bone_map)
    heads = played_back(rig, result)[..., :3, 3]
    out = {}
    for _, _, ankle, toe in rg.LEGS.values():
        ca, ct = (result.contacts[:, kin.FOOT_JOINTS.index(j)] for j in (ankle, toe))
        for name, joint, mask in ((ankle, ankle, ca), (toe, toe, ct & ~ca)):
            pts = heads[:, plan.bone_of[joint], :2]
            worst = 0.0
            for start, stop in kin.runs(mask):
                worst = max(worst, float(np.abs(pts[start:stop] - pts[start]).max()))
            out[name] = worst
    return out


def max_step_deg(q: np.ndarray) -> tuple[float, float]:
    """(min dot of consecutive quaternions, max rotation step in degrees) over frames and bones."""
    dots = np.sum(q[1:] * q[:-1], -1)
    return float(dots.min()), float(np.degrees(2 * np.arccos(np.clip(np.abs(dots), 0, 1))).max())


# ------------------------------------------------------------------ bone maps

@pytest.mark.parametrize("key", list(RIGS))
def test_detects_preset_and_covers_core(key):
    rig, preset = RIGS[key]
    name, mapping = bm.detect_bone_map(rig.names)
    assert name == preset
    assert not bm.missing_core(mapping)
    assert bm.validate(mapping, rig.names) == []


def test_name_normalisation():
    assert bm.normalize("mixamorig:LeftUpLeg") == ("upleg", "L")
    assert bm.normalize("mixamorig1_RightForeArm") == ("forearm", "R")
    assert bm.normalize("DEF-upper_arm.L") == ("upperarm", "L")
    assert bm.normalize("DEF-thigh.L.001") == ("thigh001", "L")
    assert bm.normalize("thigh_r") == ("thigh", "R")
    assert bm.normalize("L_Hip") == ("hip", "L")
    assert bm.normalize("LHipJoint") == ("hipjoint", "L")
    assert bm.normalize("LowerBack") == ("lowerback", None)
    assert bm.normalize("UpperArm_R") == ("upperarm", "R")


def test_alias_detection_on_unknown_naming():
    names = ["Root", "Pelvis", "Waist", "Chest", "Neck", "Head", "Thigh.l", "Shin.l", "Ankle.l", "Foot.l",
             "Thigh.r", "Shin.r", "Ankle.r", "Foot.r", "Clavicle.l", "UpperArm.l", "Elbow.l", "Wrist.l",
             "Clavicle.r", "UpperArm.r", "Elbow.r", "Wrist.r", "Thigh_twist.l"]
    name, mapping = bm.detect_bone_map(names)
    assert name == "auto"
    assert mapping["pelvis"] == "Pelvis"
    assert mapping["left_ankle"] == "Ankle.l" and mapping["left_foot"] == "Foot.l"
    assert mapping["right_collar"] == "Clavicle.r" and mapping["right_shoulder"] == "UpperArm.r"
    assert "Thigh_twist.l" not in mapping.values()


def test_ue_mannequins_detected():
    ue5 = ["root", "pelvis"] + [f"spine_0{i}" for i in range(1, 6)] + ["neck_01", "neck_02", "head"]
    for s in "lr":
        ue5 += [f"{b}_{s}" for b in ("clavicle", "upperarm", "lowerarm", "hand", "thigh", "calf", "foot", "ball",
                                     "upperarm_twist_01", "calf_twist_01")]
    assert bm.detect_bone_map(ue5)[0] == "ue5_mannequin"
    assert bm.detect_bone_map([n for n in ue5 if n not in ("spine_04", "spine_05", "neck_02")])[0] == "ue4_mannequin"


def test_bone_map_json_round_trip(tmp_path):
    rig, _ = RIGS["mixamo"]
    _, mapping = bm.detect_bone_map(rig.names)
    path = tmp_path / "map.json"
    bm.save_bone_map(path, mapping, "mixamo")
    assert bm.load_bone_map(path) == mapping
    path.write_text('{"joints": {"left_tail": "x"}}')
    with pytest.raises(ValueError, match="unknown joints"):
        bm.load_bone_map(path)


def test_bone_map_json_errors_name_the_file_and_field(tmp_path):
    cases = {"{": "not valid JSON", '{"format": "realign-bone-map", "joints": {"left_hip": 1}}': "'joints.left_hip'",
             '{"format": "other"}': "'format'", '{"version": 2, "joints": {}}': "'version'",
             '{"format": "realign-bone-map"}': "'joints' is missing", "[1]": "expected a JSON object"}
    for n, (text, words) in enumerate(cases.items()):
        path = tmp_path / f"map{n}.json"
        path.write_text(text)
        with pytest.raises(ValueError) as info:
            bm.load_bone_map(path)
        assert str(path) in str(info.value) and words in str(info.value), str(info.value)


def test_rig_map_store_finds_maps_by_bone_names(tmp_path):
    maps = load("rig_maps")
    rig, _ = RIGS["mixamo"]
    _, mapping = bm.detect_bone_map(rig.names)
    store = maps.MapStore(tmp_path / "maps")
    assert store.find(rig.names) is None
    path = store.save(rig.names, mapping, "Hero")
    assert maps.fingerprint(rig.names) == maps.fingerprint(sorted(rig.names, reverse=True)) != \
        maps.fingerprint(rig.names[:-1])
    found = store.find(list(reversed(rig.names)))
    assert found.mapping == mapping and found.path == path and found.rig == "Hero"
    assert store.find(rig.names[:-1]) is None  # another rig
    with pytest.raises(ValueError, match="no bones named"):
        store.save(rig.names, {**mapping, "head": "not_a_bone"}, "Hero")
    assert store.find(rig.names).mapping == mapping  # the refused save changed nothing
    path.write_text(path.read_text().replace(mapping["head"], "gone"))
    with pytest.raises(ValueError, match="'joints.head'"):
        store.find(rig.names)
    assert store.forget(rig.names) and not path.exists() and not store.forget(rig.names)


# ------------------------------------------------------------------ accuracy

def test_bone_matrix_matches_blender_convention():
    m = rg.bone_matrix(np.zeros(3), np.array([0, 0, 1.0]), 0.0)
    assert np.allclose(m[:3, 1], [0, 0, 1]) and np.allclose(m[:3, 0], [1, 0, 0])  # +Z bone: X stays X
    m = rg.bone_matrix(np.zeros(3), np.array([0, 1.0, 0]), np.pi / 2)
    assert np.allclose(m[:3, :3] @ [1, 0, 0], [0, 0, -1])  # roll turns X about Y
    m = rg.bone_matrix(np.zeros(3), np.array([0, -1.0, 0]), 0.0)
    assert np.allclose(m[:3, :3], np.diag([-1, -1, 1]))


@pytest.mark.parametrize("key", list(RIGS))
@pytest.mark.parametrize("turn", [0.0, 170.0])
def test_bone_directions_match(key, turn):
    rig, _ = RIGS[key]
    _, mapping = bm.detect_bone_map(rig.names)
    motion = walking_motion(frames=80, turn_deg=turn, speed=1.3)
    result = rt.retarget(motion, rig, mapping, NO_FEET)
    err = direction_errors(rig, mapping, result)
    print(f"{key} turn {turn}: mean {err.mean():.2e} deg, max {err.max():.2e} deg")
    assert err.mean(axis=1).max() < 1.0
    assert err.max() < 1.0


@pytest.mark.parametrize("key", ["mixamo", "rigify_def", "bandai"])
def test_quaternions_continuous(key):
    rig, _ = RIGS[key]
    _, mapping = bm.detect_bone_map(rig.names)
    motion = walking_motion(frames=120, turn_deg=340, speed=2.0, step_hz=2.5)
    result = rt.retarget(motion, rig, mapping)
    min_dot, step = max_step_deg(result.quaternions[:, result.driven])
    assert min_dot > 0, "sign flip between frames"
    assert step < 45, f"rotation jumps {step:.1f} deg in one frame"


def test_spine_twist_is_distributed():
    rig, _ = RIGS["mixamo"]
    _, mapping = bm.detect_bone_map(rig.names)
    motion = walking_motion(frames=20)
    twisted = motion.copy()  # turn the shoulders 40 deg about the vertical against the hips
    c, s = np.cos(np.radians(40)), np.sin(np.radians(40))
    upper = [9, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]
    centre = twisted[:, 9:10]
    rel = twisted[:, upper] - centre
    twisted[:, upper] = centre + np.stack([c * rel[..., 0] + s * rel[..., 2], rel[..., 1],
                                           -s * rel[..., 0] + c * rel[..., 2]], -1)
    res = rt.retarget(twisted, rig, mapping, NO_FEET)
    ref = rt.retarget(motion, rig, mapping, NO_FEET)
    spine = [rig.index("mixamorig:" + n) for n in ("Spine", "Spine1", "Spine2")]
    shares = []
    for b in spine:
        dq = np.sum(res.quaternions[:, b] * ref.quaternions[:, b], -1)
        shares.append(np.degrees(2 * np.arccos(np.clip(np.abs(dq), 0, 1))).mean())
    assert all(5 < s < 25 for s in shares), shares  # each spine bone takes part of the 40 deg


# ------------------------------------------------------------- root and feet

def test_root_motion_options():
    rig, _ = RIGS["mixamo"]
    _, mapping = bm.detect_bone_map(rig.names)
    motion = walking_motion(frames=60, speed=1.5)
    full = rt.retarget(motion, rig, mapping, NO_FEET)
    in_place = rt.retarget(motion, rig, mapping, rt.RetargetOptions(root_motion="in_place", ground_snap=False,
                                                                    pin_feet=False))
    only_z = rt.retarget(motion, rig, mapping, rt.RetargetOptions(root_motion="axes", root_axes=(False, True, False),
                                                                  ground_snap=False, pin_feet=False))
    hips = rig.index("mixamorig:Hips")
    w_full, w_in, w_z = (played_back(rig, r)[:, hips, :3, 3] for r in (full, in_place, only_z))
    travel = w_full[-1] - w_full[0]
    assert travel[1] < -1.0 * full.scale  # walks forward = -Y in Blender, scaled
    assert np.ptp(w_in[:, :2], axis=0).max() < 1e-6
    assert np.ptp(w_z[:, 0]) < 1e-6 and np.ptp(w_z[:, 2]) < 1e-6 and np.ptp(w_z[:, 1]) > 1.0
    assert np.allclose(w_full[0, :2], (rig.object_matrix @ np.append(rig.heads[hips], 1))[:2])


def test_leg_length_scale():
    rig, _ = RIGS["mixamo"]
    _, mapping = bm.detect_bone_map(rig.names)
    motion = walking_motion(frames=30)
    res = rt.retarget(motion, rig, mapping, NO_FEET)
    plan = rg.make_plan(rig, mapping)
    expected = rt.leg_length_target(plan) / rt.leg_length_source(rot.yup_to_blender(motion))
    assert res.scale == pytest.approx(expected)
    unscaled = rt.retarget(motion, rig, mapping, rt.RetargetOptions(scale_by_leg_length=False))
    assert unscaled.scale == 1.0


def test_ground_snap_puts_planted_feet_at_rest_height():
    rig, _ = RIGS["bandai"]
    _, mapping = bm.detect_bone_map(rig.names)
    motion = walking_motion(frames=60, speed=0.0)
    motion[..., 1] += 0.3  # floating 30 cm
    snapped = rt.retarget(motion, rig, mapping, rt.RetargetOptions(pin_feet=False))
    floating = rt.retarget(motion, rig, mapping, NO_FEET)
    ankle = rig.index("Foot_L")
    z_snap, z_float = (played_back(rig, r)[:, ankle, 2, 3] for r in (snapped, floating))
    assert np.median(z_float - z_snap) > 25  # cm rig: the 30 cm float is gone
    # the synthetic toe sits at ankle height, so snapping splits the difference of ankle and toe
    assert abs(np.median(z_snap) - rig.heads[ankle, 2]) < 6


def real_motions() -> dict[str, np.ndarray]:
    """Real clips: a CMU clip of the built dataset and a Bandai walk (when present)."""
    out = {}
    clip = REPO_ROOT / "data" / "cmu_h3d" / "new_joints" / "cmu_02_01_00.npy"
    if clip.exists():
        out["cmu_02_01"] = np.load(clip)
    bandai = REPO_ROOT.parent / "shared" / "data" / "bandai_namco_1" / "data" / "dataset-1_walk_normal_001.bvh"
    if bandai.exists():
        from realign_core.data.bvh.convert import bvh_to_smpl22

        out["bandai_walk"] = bvh_to_smpl22(bandai).positions
    return out


@pytest.mark.shared_data
@pytest.mark.parametrize("key", ["smpl", "mixamo", "rigify_def", "bandai", "ue5"])
def test_real_motion_accuracy_and_no_foot_skating(key):
    motions = real_motions()
    if not motions:
        shared_path("data", "bandai_namco_1")
        pytest.skip("no real clip: data/cmu_h3d is not built and the Bandai walk is absent")
    rig, _ = RIGS[key]
    _, mapping = bm.detect_bone_map(rig.names)
    unit = 100.0 if key == "bandai" else 1.0  # world units per metre
    for name, motion in motions.items():
        clean = rt.retarget(motion, rig, mapping, NO_FEET)
        err = direction_errors(rig, mapping, clean)
        pinned = rt.retarget(motion, rig, mapping)
        upper = direction_errors(rig, mapping, pinned, skip=LEG_JOINTS)
        skate = skating(rig, mapping, pinned)
        before = skating(rig, mapping, rt.retarget(motion, rig, mapping, rt.RetargetOptions(pin_feet=False)))
        contact_share = pinned.contacts.mean()
        print(f"{key}/{name}: direction err mean {err.mean():.2e} max {err.max():.2e} deg; "
              f"contacts {contact_share:.0%}; skating cm before {_cm(before, unit)} after {_cm(skate, unit)}")
        assert err.mean(axis=1).max() < 1.0
        assert upper.mean(axis=1).max() < 1.0
        assert contact_share > 0.2
        assert max(skate.values()) / unit < 0.01
        min_dot, step = max_step_deg(pinned.quaternions[:, pinned.driven])
        assert min_dot > 0 and step < 60


def _cm(skate: dict[str, float], unit: float) -> str:
    return "/".join(f"{v / unit * 100:.1f}" for v in skate.values())


def test_root_lock_moves_the_body_rigidly_onto_still_feet():
    """feet.lock_root turns no bone, holds single-support ankles still, and keeps planted feet on the ground
    while the generated body skates away and floats up (no drift)."""
    feet = load("feet")
    rig, _ = RIGS["mixamo"]
    _, mapping = bm.detect_bone_map(rig.names)
    motion = walking_motion(frames=120, speed=1.0)
    motion[:, :, [0, 2]] += np.linspace(0, 0.3, 120)[:, None, None]  # the whole body skates 30 cm ...
    motion[:, :, 1] += np.linspace(0, 0.1, 120)[:, None]  # ... and floats up 10 cm
    contacts = np.zeros((120, 4), bool)  # alternating single support, 1 s per step
    for start in range(0, 120, 40):
        contacts[start:start + 20, 0] = contacts[start + 20:start + 40, 2] = True
    plan = rg.make_plan(rig, mapping)
    res = rt.retarget(motion, rig, mapping, NO_FEET)
    locked = feet.lock_root(plan, res.pose, contacts)
    assert np.allclose(locked[..., :3, :3], res.pose[..., :3, :3])  # rotations untouched
    shift = locked[:, :, :3, 3] - res.pose[:, :, :3, 3]
    assert np.allclose(shift, shift[:, :1])  # one rigid translation per frame
    lin = rig.object_matrix[:3, :3]
    for joint, col in (("left_ankle", 0), ("right_ankle", 2)):
        before, after = (pose[:, plan.bone_of[joint], :3, 3] @ lin.T for pose in (res.pose, locked))
        for start, stop in kin.runs(contacts[:, col]):
            assert np.ptp(before[start:stop, :2], axis=0).max() > 0.05
            assert np.ptp(after[start:stop, :2], axis=0).max() < 1e-6  # held still
    rest = (rig.object_matrix @ np.append(rig.heads[plan.bone_of["left_ankle"]], 1))[2]
    heights = (locked[:, plan.bone_of["left_ankle"], :3, 3] @ lin.T)[:, 2]
    late = heights[80:100][contacts[80:100, 0]]
    print(f"planted left ankle above its rest height in the last step: {np.abs(late - rest).max() * 100:.2f} cm")
    assert np.abs(late - rest).max() < 0.02  # on the ground though the motion floated up 10 cm


def test_pinning_holds_given_contacts():
    rig, _ = RIGS["smpl"]
    _, mapping = bm.detect_bone_map(rig.names)
    motion = walking_motion(frames=60, speed=0.4)
    world = rot.yup_to_blender(motion)
    contacts = np.zeros((60, 4), bool)
    for col, joint in enumerate(kin.FOOT_JOINTS):  # lowest 30 % of each joint's heights, in runs
        z = world[:, rg.J[joint], 2]
        contacts[:, col] = z < np.quantile(z, 0.3)
    res = rt.retarget(motion, rig, mapping, contacts=contacts)
    skate = skating(rig, mapping, res)
    assert max(skate.values()) < 0.01, skate


def test_contacts_are_detected_on_the_unscaled_motion():
    motion = walking_motion(frames=60, speed=0.2)
    expected = kin.planted_feet(motion)
    assert 0 < expected.mean() < 1
    for key in ("smpl", "mixamo", "bandai"):  # metres, cm under a 0.01 object scale, cm
        rig, _ = RIGS[key]
        _, mapping = bm.detect_bone_map(rig.names)
        result = rt.retarget(motion, rig, mapping, rt.RetargetOptions(scale=1.7))
        assert result.scale != 1.0 and np.array_equal(result.contacts, expected), key


def test_frame_times_follow_scene_rate():
    assert np.allclose(rt.frame_times(3, 24.0, start=10), [10, 11.2, 12.4])
    assert np.allclose(rt.frame_times(3, 20.0), [1, 2, 3])


# The add-on modules that must run without Blender: stdlib + numpy, relative imports among themselves only.
CORE_MODULES = ("rotations", "rig", "feet", "retarget", "bone_maps", "rigify", "skeleton", "kinematics")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(level, module) of every import statement of a file (level > 0: relative)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(0, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            out += [(node.level, node.module or alias.name) for alias in node.names] if node.level else \
                [(0, node.module)]
    return out


def test_addon_core_modules_are_stdlib_and_numpy_only():
    stage = staged_addon()
    for name in CORE_MODULES:
        for level, module in _imports(stage / f"{name}.py"):
            if level:
                assert level == 1 and module in CORE_MODULES, f"{name}.py imports .{module}"
            else:
                top = module.split(".")[0]
                assert top == "numpy" or top in sys.stdlib_module_names, f"{name}.py imports {module}"
    code = (f"import importlib, sys; sys.path.insert(0, {str(REPO_ROOT)!r}); "
            "from tests.addon_modules import PACKAGE, staged_addon; staged_addon(); "
            f"[importlib.import_module(PACKAGE + '.' + n) for n in {CORE_MODULES!r}]; "
            "bad = [m for m in ('torch', 'scipy', 'bpy', 'mathutils', 'realign_core', 'server') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tempfile.gettempdir())


def test_vendored_skeleton_and_kinematics_have_one_home():
    stage = staged_addon()
    for name in ("skeleton.py", "kinematics.py"):
        assert not (ADDON_DIR / name).exists(), f"blender_addon/realign_blender/{name} must not be committed"
        assert (stage / name).read_bytes() == (REPO_ROOT / "realign_core" / "motion" / name).read_bytes()
    assert not (ADDON_DIR / "client.py").exists()
    assert kin.__name__ == "realign_addon.kinematics" and kin.__file__ == str(stage / "kinematics.py")


def _sent(joints: np.ndarray) -> tuple[np.ndarray, dict]:
    """What the server sends for a motion: the joints as the client decodes them, and foot_contacts."""
    from server import results

    decoded = results.decode_joints(results.encode_joints(joints)).astype(np.float64)
    return decoded, json.loads(json.dumps(results.contacts(joints)))


@pytest.mark.parametrize("key", ["smpl", "mixamo", "bandai"])
def test_server_contacts_pin_exactly_like_detected_ones(key):
    rig, _ = RIGS[key]
    _, mapping = bm.detect_bone_map(rig.names)
    motions = {"walk": walking_motion(frames=80, turn_deg=90.0, speed=0.2), **real_motions()}
    conn = load("connection")
    for name, motion in motions.items():
        joints, foot_contacts = _sent(motion)
        contacts = conn.planted_joints(foot_contacts, len(joints))
        assert contacts is not None and contacts.shape == (len(joints), 4)
        assert np.array_equal(contacts, kin.planted_feet(joints))
        assert foot_contacts["left"] == (contacts[:, 0] | contacts[:, 1]).tolist()
        given = rt.retarget(joints, rig, mapping, contacts=contacts)
        detected = rt.retarget(joints, rig, mapping)
        assert 0 < contacts.mean() < 1, name
        assert np.array_equal(given.quaternions, detected.quaternions)
        assert np.array_equal(given.locations, detected.locations)


def test_planted_joints_need_per_joint_columns():
    conn = load("connection")
    cols = {name: [True, False, True] for name in kin.FOOT_JOINTS}
    got = conn.planted_joints({"left": [True] * 3, "right": [True] * 3, "per_joint": cols}, 3)
    assert got.dtype == bool and got.shape == (3, 4) and got[:, 0].tolist() == [True, False, True]
    old_server = {"left": [True] * 3, "right": [False] * 3, "threshold_m2": 0.002, "rule": "..."}
    assert conn.planted_joints(old_server, 3) is None       # left/right only: detected by the add-on instead
    assert conn.planted_joints(None, 3) is None
    assert conn.planted_joints({"per_joint": cols}, 4) is None                                  # wrong length
    assert conn.planted_joints({"per_joint": {**cols, "left_foot": [1, 0, 1]}}, 3) is None      # not bools
    assert conn.planted_joints({"per_joint": {k: v for k, v in cols.items() if k != "right_foot"}}, 3) is None


def test_result_motions_carry_the_server_contacts():
    from server import results

    conn = load("connection")
    motion = walking_motion(frames=40, speed=1.0)
    event = json.loads(json.dumps({"event": "result", "motions": [results.motion_result(motion, "walk", 3, 0, 0)]}))
    (decoded,) = conn.result_motions(event)
    assert decoded["joints"].dtype == np.float64 and decoded["joints"].shape == (40, 22, 3)
    assert np.array_equal(decoded["contacts"], kin.planted_feet(decoded["joints"]))
    del event["motions"][0]["foot_contacts"]
    assert conn.result_motions(event)[0]["contacts"] is None


def test_partial_map_without_spine_or_arms_still_works():
    rig, _ = RIGS["mixamo"]
    _, mapping = bm.detect_bone_map(rig.names)
    legs_only = {j: b for j, b in mapping.items() if j in LEG_JOINTS | {"pelvis", "left_foot", "right_foot"}}
    res = rt.retarget(walking_motion(frames=40), rig, legs_only)
    assert np.isfinite(res.quaternions).all() and np.isfinite(res.locations).all()
    untouched = rig.index("mixamorig:LeftArm")
    assert not res.driven[untouched]
    err = direction_errors(rig, legs_only, rt.retarget(walking_motion(frames=40), rig, legs_only, NO_FEET))
    assert err.max() < 1.0


def test_keep_first_starts_in_the_solved_pose_and_is_grounded_after():
    """A continued take: frame 0 keeps the solved pose (no vertical pop); later frames are snapped."""
    rig, _ = RIGS["bandai"]
    _, mapping = bm.detect_bone_map(rig.names)
    motion = walking_motion(frames=60, speed=0.0)
    motion[..., 1] += 0.1  # floating 10 cm
    runs = {"plain": NO_FEET, "snapped": rt.RetargetOptions(pin_feet=False),
            "kept": rt.RetargetOptions(pin_feet=False, keep_first=15)}
    results = {k: rt.retarget(motion, rig, mapping, o) for k, o in runs.items()}
    z = {k: played_back(rig, r)[:, r.root, 2, 3] for k, r in results.items()}     # the hips' height, cm
    assert z["plain"][0] - z["snapped"][0] > 4                      # the snap moved frame 0 down (cm)
    assert abs(z["kept"][0] - z["plain"][0]) < 1e-6                 # kept: frame 0 as solved
    assert np.abs(z["kept"][15:] - z["snapped"][15:]).max() < 1e-6  # grounded like the snapped take after
    assert np.all(np.diff((z["kept"] - z["snapped"])[:16]) <= 1e-6)  # the offset eased out in between
    full = rt.retarget(motion, rig, mapping, rt.RetargetOptions(keep_first=15))   # with root lock and pinning
    assert abs(played_back(rig, full)[0, full.root, 2, 3] - z["plain"][0]) < 1e-6
