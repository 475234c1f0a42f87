"""SMPL model files read and evaluated with numpy alone (Blender's Python has neither smplx, torch, scipy nor
chumpy).

``load_model(path)`` reads a SMPL model: a ``.npz`` (as SMPL-X / SMPL+H ship, or
a converted SMPL file) or a ``.pkl`` (``SMPL_NEUTRAL.pkl`` and the like, or a
folder holding ``SMPL_<GENDER>.pkl|npz`` directly or in ``smpl/``, as
``smplx.create`` takes it).  The official ``.pkl`` files pickle chumpy arrays
and a scipy sparse ``J_regressor``; they are read without those packages by
stand-in classes that keep the pickled state (chumpy's ``x`` array, the sparse
matrix's ``data``/``indices``/``indptr``).

``shaped(model, betas)`` gives the rest mesh and joints, ``skin(...)`` SMPL's
full forward pass (shape and pose blend shapes, linear blend skinning), the
same numbers ``smplx`` computes (tests/test_smpl_body.py checks it).  In
Blender the body is driven by an armature whose bones sit at the regressed
joints, with the model's skinning weights as vertex groups: Blender's armature
deform is the same linear blend skinning; the pose blend shapes (small
corrective offsets) are left out there.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# SMPL's 24 joint names as SMPL's Blender add-on names the bones (bone_maps' "smpl" preset).
BONE_NAMES: tuple[str, ...] = (
    "Pelvis", "L_Hip", "R_Hip", "Spine1", "L_Knee", "R_Knee", "Spine2", "L_Ankle", "R_Ankle", "Spine3",
    "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head", "L_Shoulder", "R_Shoulder", "L_Elbow",
    "R_Elbow", "L_Wrist", "R_Wrist", "L_Hand", "R_Hand",
)
PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
# Joint whose position is the tail of each joint's bone (leaves: None, extended from the parent's bone).
CHILD: dict[int, int] = {0: 3, 1: 4, 2: 5, 3: 6, 4: 7, 5: 8, 6: 9, 7: 10, 8: 11, 9: 12, 12: 15, 13: 16, 14: 17,
                         16: 18, 17: 19, 18: 20, 19: 21, 20: 22, 21: 23}
REQUIRED = ("v_template", "shapedirs", "J_regressor", "weights", "kintree_table", "f")


@dataclass
class SmplModel:
    """A SMPL model's arrays (metres, Y up, facing +Z): ``v_template`` (V, 3), ``shapedirs`` (V, 3, B),
    ``posedirs`` (V, 3, 207) or None, ``regressor`` (24, V), ``weights`` (V, 24), ``faces`` (F, 3), ``path``."""

    v_template: np.ndarray
    shapedirs: np.ndarray
    posedirs: np.ndarray | None
    regressor: np.ndarray
    weights: np.ndarray
    faces: np.ndarray
    path: str = ""


class _Pickled:
    """Stand-in for a chumpy or scipy.sparse class in a pickle: keeps the state it is given."""

    def __init__(self, *args, **kwargs):
        self.state: dict = {}

    def __setstate__(self, state) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}  # (dict, slots)
        self.state = state if isinstance(state, dict) else {"value": state}


class _Unpickler(pickle.Unpickler):
    """Unpickles SMPL files with chumpy / scipy.sparse objects replaced by ``_Pickled`` stand-ins."""

    def find_class(self, module: str, name: str):
        if module.split(".")[0] in ("chumpy", "scipy"):
            return type(name, (_Pickled,), {})
        return super().find_class(module, name)


def _dense(value: object, key: str, path: Path) -> np.ndarray:
    """A float array of a model field: numpy, a chumpy stand-in (its ``x``) or a sparse one (csc/csr/coo)."""
    if isinstance(value, _Pickled):
        st, kind = value.state, type(value).__name__
        if "x" in st:
            return _dense(st["x"], key, path)
        if {"data", "indices", "indptr"} <= st.keys():
            shape = tuple(st.get("_shape") or st.get("shape"))
            compressed = np.zeros(shape if kind.startswith("csr") else shape[::-1])
            indptr = np.asarray(st["indptr"])
            for row in range(len(indptr) - 1):
                cols = np.asarray(st["indices"])[indptr[row]:indptr[row + 1]]
                compressed[row, cols] = np.asarray(st["data"])[indptr[row]:indptr[row + 1]]
            return compressed if kind.startswith("csr") else compressed.T
        raise ValueError(f"{path}: field {key!r} is a pickled {kind} this reader does not know "
                         f"(convert the model to .npz with plain arrays)")
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: field {key!r} is not a numeric array ({type(value).__name__})") from exc


def model_file(path: str | Path, gender: str = "neutral") -> Path:
    """The model file of ``path``: the file itself, or DIR[/smpl]/SMPL_<GENDER>.pkl|npz (smplx's layout)."""
    path = Path(path)
    if path.is_file():
        return path
    for folder in (path, path / "smpl"):
        for ext in ("pkl", "npz"):
            candidate = folder / f"SMPL_{gender.upper()}.{ext}"
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"no SMPL model at {path} (expected a .pkl/.npz file, or a folder with "
                            f"SMPL_{gender.upper()}.pkl or .npz, directly or in smpl/)")


def load_model(path: str | Path, gender: str = "neutral") -> SmplModel:
    """Read a SMPL model file (see the module docstring); ValueError names the file and the bad field."""
    file = model_file(path, gender)
    try:
        if file.suffix == ".npz":
            with np.load(file, allow_pickle=False) as data:
                raw = {k: data[k] for k in data.files if k in REQUIRED or k == "posedirs"}
        else:
            with open(file, "rb") as fh:
                raw = _Unpickler(fh, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise ValueError(f"{file}: not a readable SMPL model ({exc})") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{file}: expected a dict of model arrays, got {type(raw).__name__}")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise ValueError(f"{file}: not a SMPL model, missing {', '.join(missing)}")
    arrays = {k: _dense(raw[k], k, file) for k in REQUIRED}
    posedirs = _dense(raw["posedirs"], "posedirs", file) if "posedirs" in raw else None
    model = SmplModel(arrays["v_template"], arrays["shapedirs"], posedirs, arrays["J_regressor"], arrays["weights"],
                      arrays["f"].astype(np.int64), str(file))
    _check(model, np.asarray(arrays["kintree_table"], np.int64), file)
    return model


def _check(model: SmplModel, kintree: np.ndarray, file: Path) -> None:
    """Shapes and the kinematic tree of SMPL's 24 joints."""
    v = len(model.v_template)
    expected = {"v_template": (model.v_template.shape, (v, 3)), "J_regressor": (model.regressor.shape, (24, v)),
                "weights": (model.weights.shape, (v, 24)), "shapedirs": (model.shapedirs.shape[:2], (v, 3))}
    for key, (got, want) in expected.items():
        if tuple(got) != want:
            raise ValueError(f"{file}: {key} has shape {tuple(got)}, expected {want} (a 24-joint SMPL model)")
    if model.faces.ndim != 2 or model.faces.shape[1] != 3 or model.faces.min() < 0 or model.faces.max() >= v:
        raise ValueError(f"{file}: f must be (F, 3) vertex indices below {v}")
    if kintree.shape != (2, 24) or tuple(kintree[0, 1:]) != PARENTS[1:]:
        raise ValueError(f"{file}: kintree_table differs from SMPL's 24-joint tree")


def shaped(model: SmplModel, betas: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rest vertices (V, 3) and joints (24, 3) for shape coefficients ``betas`` (B,) (zeros when None)."""
    verts = model.v_template
    if betas is not None:
        b = np.asarray(betas, float)
        n = min(len(b), model.shapedirs.shape[-1])
        verts = verts + model.shapedirs[..., :n] @ b[:n]
    return verts, model.regressor @ verts


def _rodrigues(aa: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) of axis-angle vectors (..., 3)."""
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    axis = aa / np.maximum(angle, 1e-12)
    x, y, z = np.moveaxis(axis, -1, 0)
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*aa.shape[:-1], 3, 3)
    s, c = np.sin(angle)[..., None], np.cos(angle)[..., None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def skin(model: SmplModel, poses: np.ndarray, trans: np.ndarray | None = None,
         betas: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """SMPL's forward pass: posed vertices (F, V, 3) and joints (F, 24, 3).

    poses: (F, 72) axis-angle (global orientation, then joints 1..23, as AMASS / ``realign generate --smpl``
    store them); trans: (F, 3) metres; betas: (B,) shape.
    """
    poses = np.asarray(poses, float).reshape(len(poses), 24, 3)
    verts, joints = shaped(model, betas)
    rot = _rodrigues(poses)
    if model.posedirs is not None:
        pose_feature = (rot[:, 1:] - np.eye(3)).reshape(len(poses), -1)
        verts = verts + np.einsum("vcp,fp->fvc", model.posedirs, pose_feature)
    else:
        verts = np.broadcast_to(verts, (len(poses), *verts.shape))
    world = np.zeros((len(poses), 24, 4, 4))
    for j, p in enumerate(PARENTS):
        local = np.tile(np.eye(4), (len(poses), 1, 1))
        local[:, :3, :3] = rot[:, j]
        local[:, :3, 3] = joints[j] - (joints[p] if p >= 0 else 0.0)
        world[:, j] = local if p < 0 else world[:, p] @ local
    posed_joints = world[:, :, :3, 3].copy()
    world[:, :, :3, 3] -= np.einsum("fjab,jb->fja", world[:, :, :3, :3], joints)  # relative to the rest joints
    blended = np.einsum("vj,fjab->fvab", model.weights, world)
    out = np.einsum("fvab,fvb->fva", blended[..., :3, :3], verts) + blended[..., :3, 3]
    shift = np.zeros(3) if trans is None else np.asarray(trans, float)[:, None]
    return out + shift, posed_joints + shift


def bone_tails(joints: np.ndarray) -> np.ndarray:
    """(24, 3) tails of bones headed at the joints: the chain child, or the parent's direction extended for
    leaves (feet, head, hands) by half the parent bone's length."""
    tails = np.zeros_like(joints)
    for j in range(24):
        if j in CHILD:
            tails[j] = joints[CHILD[j]]
        else:
            d = joints[j] - joints[PARENTS[j]]
            tails[j] = joints[j] + 0.5 * d
    return tails
