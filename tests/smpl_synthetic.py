"""A tiny fake SMPL model file, for tests only (no real SMPL data involved).

``write_synthetic_smpl(folder, rest_joints)`` writes ``folder/smpl/SMPL_NEUTRAL.pkl``
in the layout ``smplx.SMPL`` reads (smplx 0.1.28: ``pickle.load`` of a dict
with ``v_template`` (V, 3), ``shapedirs`` (V, 3, B), ``posedirs`` (V, 3, 207),
``J_regressor`` (24, V), ``weights`` (V, 24), ``kintree_table`` (2, 24),
``f`` (K, 3)).  Plain numpy arrays, so no chumpy is needed to load it (the
official files hold chumpy arrays).  Load it with::

    smplx.create(folder, model_type="smpl", vertex_ids=SYNTHETIC_VERTEX_IDS, batch_size=F)

``vertex_ids`` is needed because smplx appends extra keypoints picked at
fixed vertex indices of the real 6890-vertex mesh.

Geometry: two vertices per joint, 1 cm either side of it along X, each
skinned to that joint only, and the J_regressor averaging the pair, so the
regressed rest joints are exactly ``rest_joints``; a few extra vertices
skinned to the pelvis.  ``shapedirs`` and ``posedirs`` are small random
bases (betas move the rest joints; pose blend shapes move vertices only).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
NUM_SMPL_JOINTS = 24
NUM_EXTRA_VERTICES = 4
NUM_VERTICES = 2 * NUM_SMPL_JOINTS + NUM_EXTRA_VERTICES

# smplx's extra keypoint names (smplx.vertex_ids.vertex_ids["smplh"]) mapped to our vertices.
_KEYPOINTS = ("nose", "reye", "leye", "rear", "lear", "rthumb", "rindex", "rmiddle", "rring",
              "rpinky", "lthumb", "lindex", "lmiddle", "lring", "lpinky", "LBigToe", "LSmallToe",
              "LHeel", "RBigToe", "RSmallToe", "RHeel")
SYNTHETIC_VERTEX_IDS: dict[str, int] = {name: i % NUM_VERTICES for i, name in enumerate(_KEYPOINTS)}


def hands_from_wrists(rest22: np.ndarray, length: float = 0.08) -> np.ndarray:
    """Rest joints (24, 3): the 22 plus a hand joint past each wrist along the forearm."""
    rest = np.zeros((NUM_SMPL_JOINTS, 3))
    rest[:22] = rest22[:22]
    for hand, wrist, elbow in ((22, 20, 18), (23, 21, 19)):
        forearm = rest[wrist] - rest[elbow]
        rest[hand] = rest[wrist] + length * forearm / np.linalg.norm(forearm)
    return rest


def synthetic_smpl_arrays(rest_joints: np.ndarray, num_betas: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """The model dict for rest joints (22 or 24, 3) metres."""
    rng = np.random.default_rng(seed)
    rest = hands_from_wrists(np.asarray(rest_joints, dtype=np.float64))
    side = np.array([0.01, 0.0, 0.0])
    v_template = np.concatenate([rest - side, rest + side,
                                 rest[0] + rng.normal(0.0, 0.05, (NUM_EXTRA_VERTICES, 3))])
    owner = np.concatenate([np.arange(NUM_SMPL_JOINTS)] * 2 + [np.zeros(NUM_EXTRA_VERTICES, int)])
    weights = np.zeros((NUM_VERTICES, NUM_SMPL_JOINTS))
    weights[np.arange(NUM_VERTICES), owner] = 1.0
    regressor = np.zeros((NUM_SMPL_JOINTS, NUM_VERTICES))
    for j in range(NUM_SMPL_JOINTS):
        regressor[j, [j, j + NUM_SMPL_JOINTS]] = 0.5
    kintree = np.array([[2 ** 32 - 1] + list(SMPL_PARENTS[1:]), list(range(NUM_SMPL_JOINTS))], dtype=np.int64)
    faces = np.array([[i, i + 1, i + 2] for i in range(0, NUM_VERTICES - 2, 3)], dtype=np.int64)
    return {
        "v_template": v_template,
        "shapedirs": rng.normal(0.0, 0.005, (NUM_VERTICES, 3, num_betas)),
        "posedirs": rng.normal(0.0, 0.001, (NUM_VERTICES, 3, 9 * (NUM_SMPL_JOINTS - 1))),
        "J_regressor": regressor,
        "weights": weights,
        "kintree_table": kintree,
        "f": faces,
    }


def write_synthetic_smpl(folder: str | Path, rest_joints: np.ndarray, gender: str = "neutral",
                         seed: int = 0) -> Path:
    """Write ``folder/smpl/SMPL_<GENDER>.pkl``; returns ``folder`` (what ``smplx.create`` takes)."""
    folder = Path(folder)
    (folder / "smpl").mkdir(parents=True, exist_ok=True)
    with open(folder / "smpl" / f"SMPL_{gender.upper()}.pkl", "wb") as fh:
        pickle.dump(synthetic_smpl_arrays(rest_joints, seed=seed), fh)
    return folder
