"""What a ``result`` event says about one motion: joints, foot contacts and root motion.

* ``joints``: ``{"dtype": "float32", "shape": [F, 22, 3], "data": base64}`` of the
  little-endian float32 array (metres, Y up, facing +Z at frame 0, 20 fps).
* ``foot_contacts``: ``{"left": [F bools], "right": [F bools], "per_joint": {"left_ankle":
  [F bools], "left_foot": ..., "right_ankle": ..., "right_foot": ...}, "speed_mps", "height_m",
  "rule"}``.  A foot joint is planted on frame t when its horizontal (XZ) speed (central
  differences) is below ``speed_mps`` and it is within ``height_m`` of its lowest point in the
  clip (``realign_core.motion.kinematics.planted_feet``, measured on the float32 joints as
  sent); a foot is in contact when its ankle *or* its toe (``*_foot``) joint is planted.  The
  Blender add-on pins feet on the ``per_joint`` frames: one rule for both.
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

from realign_core.motion.kinematics import FOOT_JOINTS, PLANTED_HEIGHT_M, PLANTED_SPEED_MPS, facing_yaw, planted_feet
from realign_core.motion.skeleton import FPS, NUM_JOINTS

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
    """Per-frame planted foot joints and left/right foot contacts (see the module docstring)."""
    sent = np.asarray(joints, dtype="<f4").astype(np.float64)  # what the client decodes
    planted = dict(zip(FOOT_JOINTS, planted_feet(sent, FPS, PLANTED_SPEED_MPS, PLANTED_HEIGHT_M).T))
    left = planted["left_ankle"] | planted["left_foot"]
    right = planted["right_ankle"] | planted["right_foot"]
    return {"left": left.tolist(), "right": right.tolist(),
            "per_joint": {name: column.tolist() for name, column in planted.items()},
            "speed_mps": PLANTED_SPEED_MPS, "height_m": PLANTED_HEIGHT_M,
            "rule": "a joint is planted when its horizontal speed is below speed_mps and it is within height_m "
                    "of its lowest point in the clip; a foot is in contact when its ankle or toe is planted"}


def root_motion(joints: np.ndarray) -> dict[str, Any]:
    """The pelvis's per-frame ground track, height and heading, with totals."""
    joints = np.asarray(joints, dtype=np.float64)
    xz = joints[:, 0, [0, 2]]
    heading = facing_yaw(joints)
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
