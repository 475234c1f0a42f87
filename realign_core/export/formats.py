"""Output formats for generated motions: joints .npy, BVH, AMASS-style SMPL .npz.

All three start from joint positions ``(F, 22, 3)`` in metres, world Y up,
a character facing +Z has its left side at +X, 20 fps (``skeleton.py``).
Rotations come from ``inverse_kinematics.joints_to_rotations``.  The
formats are described for users in ``docs/formats.md``:

* ``<prefix>.npy``: the joints as float32 ``(F, 22, 3)``.
* ``<prefix>.bvh`` (``write_bvh``): the 22-joint skeleton in a T-pose rest
  with the motion's own mean bone lengths, root with 6 channels
  (position, then rotation), every other joint 3 rotation channels, one
  Euler order per joint (``EULER_ORDERS``), metres by default.
* ``<prefix>_smpl.npz`` (``write_smpl_npz``): ``poses`` (F, 72) axis-angle
  for SMPL's 24 joints (the 22 + both hands at zero), ``trans`` (F, 3),
  ``betas`` (10,), ``mocap_framerate``, ``gender``, computed relative to the
  rest joints of a SMPL model when one is given (``smpl_model``), else
  relative to the default T-pose rest skeleton (stored as ``rest_joints``).

``export_motion`` writes the set and returns the paths.
"""
from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from realign_core.export.inverse_kinematics import (
    IKResult,
    check_joints,
    joints_to_rotations,
    offsets_from_rest_joints,
    rest_positions,
    tpose_offsets,
)
from realign_core.motion.skeleton import FPS, JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, PARENTS

# --------------------------------------------------------------------------
# BVH
# --------------------------------------------------------------------------

# Euler order per joint (the BVH channel order; intrinsic, R = R1 R2 R3).
# The middle axis, where gimbal lock happens at +-90 degrees, is the axis
# along the joint's bone (its twist axis, rarely turned by 90 degrees):
# Y for the spine, neck and legs, Z for the ankles and feet, X for the arms.
# The root turns about Y first (any heading) and locks only when rolled
# 90 degrees onto its side.
EULER_ORDERS: dict[str, str] = {
    "pelvis": "YZX",
    "left_hip": "ZYX", "right_hip": "ZYX", "left_knee": "ZYX", "right_knee": "ZYX",
    "left_ankle": "YZX", "right_ankle": "YZX", "left_foot": "YZX", "right_foot": "YZX",
    "spine1": "ZYX", "spine2": "ZYX", "spine3": "ZYX", "neck": "ZYX", "head": "ZYX",
    "left_collar": "ZXY", "right_collar": "ZXY", "left_shoulder": "ZXY", "right_shoulder": "ZXY",
    "left_elbow": "ZXY", "right_elbow": "ZXY", "left_wrist": "ZXY", "right_wrist": "ZXY",
}

# End Site lengths (metres) past the leaf joints, along the leaf bone:
# head joint -> crown, toe joint -> toe tip, wrist -> middle of the hand.
END_SITE_LENGTHS: dict[str, float] = {
    "head": 0.10, "left_foot": 0.05, "right_foot": 0.05, "left_wrist": 0.08, "right_wrist": 0.08,
}

# Mixamo-style names (``joint_names="mixamo"``): what retargeting presets for
# Mixamo rigs expect.  Our BVH importer recognises them (rig "mixamo").
MIXAMO_NAMES: dict[str, str] = {
    "pelvis": "Hips", "spine1": "Spine", "spine2": "Spine1", "spine3": "Spine2",
    "neck": "Neck", "head": "Head",
    **{f"{side}_{ours}": f"{Side}{theirs}"
       for side, Side in (("left", "Left"), ("right", "Right"))
       for ours, theirs in (("hip", "UpLeg"), ("knee", "Leg"), ("ankle", "Foot"),
                            ("foot", "ToeBase"), ("collar", "Shoulder"),
                            ("shoulder", "Arm"), ("elbow", "ForeArm"), ("wrist", "Hand"))},
}
UNITS: dict[str, float] = {"m": 1.0, "cm": 100.0}  # file units per metre


def bvh_joint_names(style: str = "smpl") -> tuple[str, ...]:
    """Names written for the 22 joints: "smpl" (``JOINT_NAMES``) or "mixamo" ("mixamorig:Hips", ...)."""
    if style == "smpl":
        return JOINT_NAMES
    if style == "mixamo":
        return tuple(f"mixamorig:{MIXAMO_NAMES[n]}" for n in JOINT_NAMES)
    raise ValueError(f"joint_names must be 'smpl' or 'mixamo', got {style!r}")


def _children(joint: int) -> list[int]:
    return [c for c in range(NUM_JOINTS) if PARENTS[c] == joint]


def bvh_joint_order() -> list[int]:
    """Our joint indices in the BVH file's depth-first order (children by index)."""
    order: list[int] = []

    def visit(j: int) -> None:
        order.append(j)
        for c in _children(j):
            visit(c)

    visit(0)
    return order


def _channels(joint: int) -> str:
    rotations = " ".join(f"{axis}rotation" for axis in EULER_ORDERS[JOINT_NAMES[joint]])
    if joint == 0:
        return f"CHANNELS 6 Xposition Yposition Zposition {rotations}"
    return f"CHANNELS 3 {rotations}"


def _vec(v: np.ndarray) -> str:
    return " ".join(f"{x:.6f}" for x in v)


def _hierarchy_lines(offsets: np.ndarray, names: Sequence[str], scale: float) -> list[str]:
    """HIERARCHY block lines; offsets (22, 3) metres, scale = file units per metre."""
    lines = ["HIERARCHY"]

    def visit(j: int, depth: int) -> None:
        pad = "\t" * depth
        keyword = "ROOT" if j == 0 else "JOINT"
        offset = np.zeros(3) if j == 0 else offsets[j] * scale
        lines.extend([f"{pad}{keyword} {names[j]}", f"{pad}{{",
                      f"{pad}\tOFFSET {_vec(offset)}", f"{pad}\t{_channels(j)}"])
        for c in _children(j):
            visit(c, depth + 1)
        if not _children(j):
            tip = offsets[j] / np.linalg.norm(offsets[j]) * END_SITE_LENGTHS[JOINT_NAMES[j]] * scale
            lines.extend([f"{pad}\tEnd Site", f"{pad}\t{{", f"{pad}\t\tOFFSET {_vec(tip)}", f"{pad}\t}}"])
        lines.append(f"{pad}}}")

    visit(0, 0)
    return lines


def euler_degrees(quats: np.ndarray, order: str) -> np.ndarray:
    """Intrinsic Euler angles (F, 3) degrees, in ``order`` (e.g. "ZYX": R = Rz Ry Rx).

    quats: (F, 4) wxyz.  Each angle is unwrapped over time (no 360 jumps).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns at gimbal lock; the angles stay valid
        angles = Rotation.from_quat(quats, scalar_first=True).as_euler(order.upper(), degrees=True)
    return np.unwrap(angles, period=360.0, axis=0)


def bvh_motion_rows(ik: IKResult, scale: float = 1.0) -> np.ndarray:
    """MOTION block values (F, 6 + 21 * 3) in file order: root position, then Euler degrees."""
    columns = [ik.root_translation * scale]
    for j in bvh_joint_order():
        columns.append(euler_degrees(ik.rotations[:, j], EULER_ORDERS[JOINT_NAMES[j]]))
    return np.concatenate(columns, axis=1)


def bvh_text(joints: np.ndarray, fps: float = FPS, unit: str = "m", joint_names: str = "smpl",
             rest_offsets: np.ndarray | None = None) -> str:
    """BVH text of a motion (see ``write_bvh``)."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {sorted(UNITS)}, got {unit!r}")
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps}")
    ik = joints_to_rotations(joints, rest_offsets)
    scale = UNITS[unit]
    rows = bvh_motion_rows(ik, scale)
    lines = _hierarchy_lines(ik.offsets, bvh_joint_names(joint_names), scale)
    lines += ["MOTION", f"Frames: {len(rows)}", f"Frame Time: {1.0 / fps:.8f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in rows]
    return "\n".join(lines) + "\n"


def write_bvh(path: str | Path, joints: np.ndarray, fps: float = FPS, unit: str = "m",
              joint_names: str = "smpl", rest_offsets: np.ndarray | None = None) -> Path:
    """Write a motion as a BVH file of the 22-joint skeleton.

    joints: (F, 22, 3) metres, Y up, facing +Z.  fps: frames per second.
    unit: "m" (default; Blender imports at scale 1) or "cm" (x100).
    joint_names: "smpl" (``skeleton.JOINT_NAMES``) or "mixamo".
    rest_offsets: (22, 3) rest pose in metres; default ``tpose_offsets(joints)``.
    The rest pose is the HIERARCHY (root OFFSET 0 0 0); the root channels are
    the pelvis position and rotation, each joint's rotation channels follow
    ``EULER_ORDERS``.  Returns the path.
    """
    path = Path(path)
    text = bvh_text(joints, fps, unit, joint_names, rest_offsets)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------
# SMPL
# --------------------------------------------------------------------------

SMPL_NUM_JOINTS = 24
SMPL_PARENTS: tuple[int, ...] = PARENTS + (JOINT_INDEX["left_wrist"], JOINT_INDEX["right_wrist"])
NUM_BETAS = 10
# Proper rotation taking our Y-up frame to AMASS's Z-up frame: (x, y, z) -> (x, -z, y).
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def quat_to_axis_angle(quats: np.ndarray) -> np.ndarray:
    """Axis-angle vectors (..., 3), angle in [0, pi], of unit quaternions (..., 4) wxyz."""
    q = np.where(quats[..., :1] < 0, -quats, quats)
    sin_half = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(sin_half, q[..., :1])
    small = sin_half < 1e-8
    factor = np.where(small, 2.0 / np.maximum(q[..., :1], 1e-12), angle / np.where(small, 1.0, sin_half))
    return q[..., 1:] * factor


def _smpl_file(model_path: Path, gender: str) -> Path:
    """The model file smplx would open: a file, or DIR[/smpl]/SMPL_<GENDER>.pkl|.npz."""
    if model_path.is_file():
        return model_path
    for folder in (model_path, model_path / "smpl"):
        for ext in ("pkl", "npz"):
            candidate = folder / f"SMPL_{gender.upper()}.{ext}"
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"no SMPL model for gender {gender!r} in {model_path} "
                            f"(expected SMPL_{gender.upper()}.pkl or .npz, or a smpl/ folder with it)")


def _as_array(value: object) -> np.ndarray:
    """numpy array of a model field (dense, scipy sparse, or chumpy)."""
    if hasattr(value, "toarray"):
        value = value.toarray()
    elif hasattr(value, "r"):
        value = value.r
    return np.asarray(value, dtype=np.float64)


def load_smpl_model(model_path: str | Path, gender: str = "neutral") -> dict[str, np.ndarray]:
    """The arrays of a SMPL model file needed for its rest joints.

    model_path: a SMPL .pkl or .npz file, or a folder as ``smplx.create``
    takes it.  Returns ``v_template`` (V, 3), ``shapedirs`` (V, 3, B),
    ``J_regressor`` (24, V), ``parents`` (24,).  Official .pkl files store
    chumpy arrays: reading them needs the ``chumpy`` package.
    """
    path = _smpl_file(Path(model_path), gender)
    try:
        if path.suffix == ".npz":
            raw = dict(np.load(path, allow_pickle=True))
        else:
            with open(path, "rb") as fh:
                raw = pickle.load(fh, encoding="latin1")
    except ModuleNotFoundError as exc:
        raise ValueError(f"{path}: reading this SMPL file needs the '{exc.name}' package "
                         f"(pip install {exc.name}), or convert the model to .npz") from exc
    missing = [k for k in ("v_template", "shapedirs", "J_regressor", "kintree_table") if k not in raw]
    if missing:
        raise ValueError(f"{path}: not a SMPL model, missing {', '.join(missing)}")
    model = {k: _as_array(raw[k]) for k in ("v_template", "shapedirs", "J_regressor")}
    model["parents"] = np.asarray(raw["kintree_table"], dtype=np.int64)[0]
    if tuple(model["parents"][1:NUM_JOINTS]) != PARENTS[1:]:
        raise ValueError(f"{path}: kinematic tree differs from SMPL's (parents {model['parents'].tolist()})")
    return model


def smpl_rest_joints(model_path: str | Path, betas: np.ndarray | None = None,
                     gender: str = "neutral") -> np.ndarray:
    """Rest joints (24, 3) m of a SMPL model: J_regressor @ (v_template + shapedirs @ betas)."""
    model = load_smpl_model(model_path, gender)
    vertices = model["v_template"]
    if betas is not None:
        b = _check_betas(betas)
        n = min(len(b), model["shapedirs"].shape[-1])
        vertices = vertices + model["shapedirs"][..., :n] @ b[:n]
    return model["J_regressor"] @ vertices


def _check_betas(betas: np.ndarray | None) -> np.ndarray:
    """Betas as float64 (B,), zeros (10,) when None; finite, 1-D."""
    if betas is None:
        return np.zeros(NUM_BETAS)
    b = np.asarray(betas, dtype=np.float64)
    if b.ndim != 1 or not np.all(np.isfinite(b)):
        raise ValueError(f"betas must be a finite 1-D array, got shape {b.shape}")
    return b


def default_rest_joints(joints: np.ndarray) -> np.ndarray:
    """Default SMPL rest skeleton (22, 3) m: the T-pose of ``tpose_offsets``, pelvis at the origin."""
    return rest_positions(tpose_offsets(joints))


def smpl_pose_from_joints(joints: np.ndarray, rest_joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SMPL pose parameters that move a model's rest joints onto ``joints``.

    joints: (F, 22, 3) metres, in the frame the pose should live in.
    rest_joints: (22, 3) or (24, 3) metres, the model's rest joint positions
    (``J_regressor @ v_shaped``).  Returns ``poses`` (F, 72) axis-angle
    (global orientation, then joints 1..23; the hands 22, 23 are zero) and
    ``trans`` (F, 3) = pelvis - rest pelvis (SMPL's forward kinematics puts
    the posed root at rest root + trans).
    """
    rest_offsets = offsets_from_rest_joints(rest_joints)
    ik = joints_to_rotations(joints, rest_offsets)
    poses = np.zeros((len(ik.rotations), SMPL_NUM_JOINTS, 3))
    poses[:, :NUM_JOINTS] = quat_to_axis_angle(ik.rotations)
    trans = ik.root_translation - rest_offsets[0]
    return poses.reshape(len(poses), -1), trans


def smpl_params(joints: np.ndarray, fps: float = FPS, betas: np.ndarray | None = None,
                smpl_model: str | Path | None = None, gender: str = "neutral",
                up_axis: str = "y") -> dict[str, np.ndarray]:
    """The arrays ``write_smpl_npz`` stores (see there)."""
    joints = check_joints(joints)
    if up_axis not in ("y", "z"):
        raise ValueError(f"up_axis must be 'y' or 'z', got {up_axis!r}")
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps}")
    b = _check_betas(betas)
    if smpl_model is not None:
        rest = smpl_rest_joints(smpl_model, b, gender)[:NUM_JOINTS]
    else:
        rest = default_rest_joints(joints)
    if up_axis == "z":
        joints = joints @ Y_UP_TO_Z_UP.T
    poses, trans = smpl_pose_from_joints(joints, rest)
    return {
        "poses": poses, "trans": trans, "betas": b, "mocap_framerate": np.float64(fps),
        "gender": np.array(gender), "rest_joints": rest, "up_axis": np.array(up_axis),
        "surface_model_type": np.array("smpl"),
    }


def write_smpl_npz(path: str | Path, joints: np.ndarray, fps: float = FPS,
                   betas: np.ndarray | None = None, smpl_model: str | Path | None = None,
                   gender: str = "neutral", up_axis: str = "y") -> Path:
    """Write an AMASS-style SMPL .npz whose forward kinematics reproduce ``joints``.

    joints: (F, 22, 3) metres, Y up, facing +Z (SMPL's own rest frame).
    betas: (B,) shape coefficients (stored, zero-padded to 10 when shorter;
        used for the rest joints only with ``smpl_model``).
    smpl_model: a SMPL model file or folder (as ``smplx.create`` takes it);
        the pose is computed relative to its rest joints.  Without one, it is
        relative to the default T-pose rest skeleton (pelvis at the origin).
    up_axis: "y" (default, SMPL's native frame: feed ``poses``/``trans`` to
        ``smplx`` as they are) or "z" (AMASS's Z-up world: the motion is
        turned by +90 degrees about X, (x, y, z) -> (x, -z, y)).
    Keys: ``poses`` (F, 72), ``trans`` (F, 3), ``betas`` (10+,),
    ``mocap_framerate``, ``gender``, plus ``rest_joints`` (22, 3) (the rest
    skeleton used), ``up_axis`` and ``surface_model_type`` ("smpl").
    """
    params = smpl_params(joints, fps, betas, smpl_model, gender, up_axis)
    if len(params["betas"]) < NUM_BETAS:
        params["betas"] = np.pad(params["betas"], (0, NUM_BETAS - len(params["betas"])))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:  # a file handle keeps the exact name (no added .npz)
        np.savez(fh, **params)
    return path


# --------------------------------------------------------------------------
# All formats
# --------------------------------------------------------------------------

FORMATS: dict[str, str] = {"npy": ".npy", "bvh": ".bvh", "npz": "_smpl.npz"}


def export_motion(joints: np.ndarray, out_prefix: str | Path,
                  formats: Iterable[str] = ("npy", "bvh", "npz"), fps: float = FPS,
                  smpl_model: str | Path | None = None, betas: np.ndarray | None = None,
                  bvh_unit: str = "m") -> dict[str, Path]:
    """Write a motion in several formats; returns {format: path}.

    joints: (F, 22, 3) metres, Y up, ``fps`` frames per second.
    formats: any of "npy" (``<prefix>.npy``, float32 joints), "bvh"
    (``<prefix>.bvh``) and "npz" (``<prefix>_smpl.npz``).
    """
    formats = list(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; choose from {list(FORMATS)}")
    joints = check_joints(joints)
    prefix = Path(out_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for fmt in formats:
        path = prefix.with_name(prefix.name + FORMATS[fmt])
        if fmt == "npy":
            np.save(path, joints.astype(np.float32))
        elif fmt == "bvh":
            write_bvh(path, joints, fps, unit=bvh_unit)
        else:
            write_smpl_npz(path, joints, fps, betas=betas, smpl_model=smpl_model)
        paths[fmt] = path
    return paths
