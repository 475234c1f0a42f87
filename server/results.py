"""What a ``result`` event says about one motion: joints, foot contacts and root motion.

* ``joints``: ``{"dtype": "float32", "shape": [F, 22, 3], "data": base64}`` of the
  little-endian float32 array (metres, Y up, facing +Z at frame 0, 20 fps).
* ``foot_contacts``: ``{"left": [F bools], "right": [F bools], ...}``.  A foot
  is in contact on frame t when its ankle *or* its toe joint moves less than
  sqrt(0.002) m to frame t+1 -- HumanML3D's feature-extraction test
  (``realign_core.motion.foot_contacts``, same threshold, no height test); the
  last frame repeats the one before it.
* ``root_motion``: the pelvis's ground track and heading per frame --
  ``translation_xz`` ([x, z] m), ``height`` (y m), ``heading`` (rad about +Y,
  0 = facing +Z, positive = turned toward +X, i.e. to the character's left,
  unwrapped so it is continuous), and the totals ``displacement_xz`` (last
  minus first), ``distance_m`` (length of the ground path) and ``turn_rad``
  (last minus first heading).  The heading is that of the hips-and-shoulders
  across axis, the same one HumanML3D uses for facing.
"""
from __future__ import annotations

import base64
from typing import Any

import numpy as np

from realign_core.motion import foot_contacts
from realign_core.skeleton import FACE_JOINTS, FOOT_CONTACT_THRESHOLD, FPS, NUM_JOINTS

DECIMALS = 5  # per-frame floats in JSON: 10 micrometres / 10 microradians


def encode_joints(joints: np.ndarray) -> dict[str, Any]:
    """(F, 22, 3) -> the ``joints`` object (base64 of little-endian float32)."""
    arr = np.ascontiguousarray(joints, dtype="<f4")
    if arr.ndim != 3 or arr.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"joints must have shape (F, {NUM_JOINTS}, 3), got {arr.shape}")
    return {"dtype": "float32", "shape": list(arr.shape), "data": base64.b64encode(arr.tobytes()).decode("ascii")}


def decode_joints(obj: dict[str, Any]) -> np.ndarray:
    """The inverse of ``encode_joints`` -> (F, 22, 3) float32."""
    return np.frombuffer(base64.b64decode(obj["data"]), dtype="<f4").reshape(obj["shape"]).astype(np.float32)


def contacts(joints: np.ndarray) -> dict[str, Any]:
    """Per-frame left/right foot contacts (see the module docstring)."""
    joints = np.asarray(joints, dtype=np.float64)
    if len(joints) < 2:
        per_joint = np.zeros((len(joints), 4), dtype=bool)
    else:  # (F-1, 4): L ankle, L toe, R ankle, R toe; the last frame repeats the one before
        per_joint = foot_contacts(joints) > 0.5
        per_joint = np.concatenate([per_joint, per_joint[-1:]], axis=0)
    left, right = per_joint[:, 0] | per_joint[:, 1], per_joint[:, 2] | per_joint[:, 3]
    return {"left": left.tolist(), "right": right.tolist(), "threshold_m2": FOOT_CONTACT_THRESHOLD,
            "rule": "ankle or toe moves less than sqrt(threshold) m to the next frame"}


def headings(joints: np.ndarray) -> np.ndarray:
    """(F, 22, 3) -> (F,) unwrapped heading (rad): 0 facing +Z, positive toward +X."""
    r_hip, l_hip, r_sho, l_sho = FACE_JOINTS
    across = (joints[:, r_hip] - joints[:, l_hip]) + (joints[:, r_sho] - joints[:, l_sho])
    # forward = up x across = (across_z, 0, -across_x)
    return np.unwrap(np.arctan2(across[:, 2], -across[:, 0]))


def root_motion(joints: np.ndarray) -> dict[str, Any]:
    """The pelvis's per-frame ground track, height and heading, with totals."""
    joints = np.asarray(joints, dtype=np.float64)
    xz = joints[:, 0, [0, 2]]
    heading = headings(joints)
    steps = np.linalg.norm(np.diff(xz, axis=0), axis=-1)
    return {
        "translation_xz": np.round(xz, DECIMALS).tolist(),
        "height": np.round(joints[:, 0, 1], DECIMALS).tolist(),
        "heading": np.round(heading, DECIMALS).tolist(),
        "displacement_xz": np.round(xz[-1] - xz[0], DECIMALS).tolist(),
        "distance_m": round(float(steps.sum()), DECIMALS),
        "turn_rad": round(float(heading[-1] - heading[0]), DECIMALS),
    }


def motion_result(joints: np.ndarray, prompt: str, seed: int, sample: int, prompt_index: int) -> dict[str, Any]:
    """One entry of a result's ``motions`` list."""
    return {"prompt": prompt, "prompt_index": prompt_index, "sample": sample, "seed": seed, "fps": FPS,
            "frames": int(len(joints)), "joints": encode_joints(joints), "foot_contacts": contacts(joints),
            "root_motion": root_motion(joints)}
