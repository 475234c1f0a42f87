"""The 22-joint SMPL / HumanML3D skeleton.

Conventions used everywhere in ``realign_core``:

* positions are ``(..., 22, 3)`` in metres, world Y up, 20 fps;
* a character facing +Z has its left side at +X;
* joint order is SMPL's first 22 joints (``JOINT_NAMES``).
"""
from __future__ import annotations

import numpy as np

FPS = 20
NUM_JOINTS = 22

JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee",
    "spine2", "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot",
    "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
JOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(JOINT_NAMES)}

PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19,
)

# Five chains, each starting at its branching joint: right leg, left leg,
# spine/head, right arm (from spine3), left arm (from spine3).
KINEMATIC_CHAINS: tuple[tuple[int, ...], ...] = (
    (0, 2, 5, 8, 11),
    (0, 1, 4, 7, 10),
    (0, 3, 6, 9, 12, 15),
    (9, 14, 17, 19, 21),
    (9, 13, 16, 18, 20),
)

# Unit axis of every bone in HumanML3D's rest pose (its "t2m raw offsets").
# Only a reference axis for the swing rotations of the rot6d features: the
# shoulders point down (-Y) here even though real shoulders point sideways.
RAW_OFFSETS = np.array([
    [0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0],
    [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1],
    [0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1], [0, -1, 0], [0, -1, 0],
    [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0],
], dtype=np.float64)

# Bone lengths (metres) of HumanML3D's reference subject (its target skeleton,
# the one every HumanML3D motion is re-targeted to).  Bone j joins PARENTS[j]
# to j; entry 0 (root) is unused.
REFERENCE_BONE_LENGTHS = np.array([
    0.0, 0.103074, 0.109883, 0.131568, 0.393623, 0.390188,
    0.143190, 0.432433, 0.425643, 0.057365, 0.143382, 0.149419,
    0.219360, 0.137487, 0.143383, 0.103039, 0.131614, 0.122984,
    0.256840, 0.263092, 0.266012, 0.269876,
], dtype=np.float64)

# Offsets of the target skeleton: raw axis times reference bone length, (22, 3) m.
REFERENCE_OFFSETS = RAW_OFFSETS * REFERENCE_BONE_LENGTHS[:, None]

# T-pose of the skeleton, the rest pose of the armature the Blender add-on creates
# ("Create ReAlign skeleton"): offsets from the parent joint, (22, 3) m, Y up, facing +Z.
# The reference bone lengths rounded to the millimetre along the raw axes, except: the
# pelvis (entry 0) sits 0.95 m above the origin, the head points up, the toes are 5 cm
# below the ankles, the shoulders 2 cm below the collars, and the arms point straight out
# sideways (left arm +X, right arm -X).
TPOSE_OFFSETS = RAW_OFFSETS * np.round(REFERENCE_BONE_LENGTHS, 3)[:, None]
TPOSE_OFFSETS[0] = [0.0, 0.95, 0.0]
TPOSE_OFFSETS[15] = [0.0, round(REFERENCE_BONE_LENGTHS[15], 3), 0.0]
TPOSE_OFFSETS[[10, 11], 1] = -0.05
TPOSE_OFFSETS[[16, 18, 20]] = np.round(REFERENCE_BONE_LENGTHS[[16, 18, 20]], 3)[:, None] * [1.0, 0.0, 0.0]
TPOSE_OFFSETS[[17, 19, 21]] = np.round(REFERENCE_BONE_LENGTHS[[17, 19, 21]], 3)[:, None] * [-1.0, 0.0, 0.0]
TPOSE_OFFSETS[[16, 17], 1] = -0.02

# Joints that define facing: right hip, left hip, right shoulder, left shoulder.
FACE_JOINTS: tuple[int, int, int, int] = (2, 1, 17, 16)
# Foot joints used for contacts: (ankle, toe) per side.
LEFT_FOOT: tuple[int, int] = (7, 10)
RIGHT_FOOT: tuple[int, int] = (8, 11)
# Thigh and shin bones (right side) used for the leg-length scale ratio.
LEG_BONES: tuple[int, int] = (5, 8)
FOOT_CONTACT_THRESHOLD = 0.002  # squared displacement per frame, m^2

# Left<->right joint permutation used for mirroring.
MIRROR_PERMUTATION: tuple[int, ...] = tuple(
    JOINT_INDEX[name.replace("left_", "@").replace("right_", "left_").replace("@", "right_")]
    for name in JOINT_NAMES
)


def bone_lengths(positions: np.ndarray) -> np.ndarray:
    """Per-bone lengths of a pose or motion.

    positions: (..., 22, 3) metres -> (..., 22) metres (entry 0 is 0).
    """
    parents = np.array(PARENTS)
    parents[0] = 0
    return np.linalg.norm(positions - positions[..., parents, :], axis=-1)
