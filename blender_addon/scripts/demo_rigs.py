"""A Mixamo-style rig described as edit-bone data (numpy only; no bpy), for the demo and the tests.

The rig differs from the generated skeleton the way a Mixamo download does:
a Y-up armature in centimetres under a 0.01-scale object rotated +90° about X
(as Blender's FBX importer brings it in), A-pose arms at 45°, its own
proportions, three spine bones, an index finger and end bones (unmapped).
"""
from __future__ import annotations

import numpy as np

# Y-up, +Z-forward -> Blender's Z-up, -Y-forward (a +90° rotation about X).
YUP_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
Bone = tuple[str, "str | None", np.ndarray, np.ndarray]  # name, parent, head, tail (armature units)


def _spine(prefix: str) -> list[Bone]:
    """Hips, Spine, Spine1, Spine2, Neck, Head and HeadTop_End."""
    p = {"Hips": (0, 100, 0), "Spine": (0, 110, -1), "Spine1": (0, 122, -1), "Spine2": (0, 135, 0),
         "Neck": (0, 152, 0), "Head": (0, 160, 2)}
    bones = [(prefix + "Hips", None, p["Hips"], p["Spine"])]
    spine = ["Spine", "Spine1", "Spine2", "Neck", "Head"]
    parent = prefix + "Hips"
    for i, n in enumerate(spine):
        tail = p[spine[i + 1]] if i + 1 < len(spine) else (0, 178, 2)
        bones.append((prefix + n, parent, p[n], tail))
        parent = prefix + n
    bones.append((prefix + "HeadTop_End", prefix + "Head", (0, 178, 2), (0, 185, 2)))
    return bones


def _arm(prefix: str, side: str, s: float) -> list[Bone]:
    """Shoulder, Arm, ForeArm, Hand, HandIndex1 of one side, A-pose (45° down)."""
    c45 = np.cos(np.pi / 4)
    sh = np.array([s * 7, 146, 0])
    arm = np.array([s * 18, 144, -1])
    fore = arm + 28 * np.array([s * c45, -c45, 0])
    hand = fore + 25 * np.array([s * c45, -c45, 0.05])
    finger = hand + 9 * np.array([s * c45, -c45, 0.1])
    return [
        (f"{prefix}{side}Shoulder", prefix + "Spine2", sh, arm),
        (f"{prefix}{side}Arm", f"{prefix}{side}Shoulder", arm, fore),
        (f"{prefix}{side}ForeArm", f"{prefix}{side}Arm", fore, hand),
        (f"{prefix}{side}Hand", f"{prefix}{side}ForeArm", hand, finger),
        (f"{prefix}{side}HandIndex1", f"{prefix}{side}Hand", finger, finger + [s * 3, -3, 0]),
    ]


def _leg(prefix: str, side: str, s: float) -> list[Bone]:
    """UpLeg, Leg, Foot, ToeBase, Toe_End of one side."""
    up = np.array([s * 9.5, 93, 0])
    knee = np.array([s * 10, 50, 1.5])
    ankle = np.array([s * 10, 8, -3])
    toe = np.array([s * 10, 1.5, 10])
    return [
        (f"{prefix}{side}UpLeg", prefix + "Hips", up, knee),
        (f"{prefix}{side}Leg", f"{prefix}{side}UpLeg", knee, ankle),
        (f"{prefix}{side}Foot", f"{prefix}{side}Leg", ankle, toe),
        (f"{prefix}{side}ToeBase", f"{prefix}{side}Foot", toe, toe + [0, 0, 7]),
        (f"{prefix}{side}Toe_End", f"{prefix}{side}ToeBase", toe + [0, 0, 7], toe + [0, 0, 10]),
    ]


def mixamo_bones(prefix: str = "mixamorig:") -> list[Bone]:
    """The bones (name, parent, head, tail), parents first, in centimetres, Y up."""
    bones = _spine(prefix)
    for side, s in (("Left", 1.0), ("Right", -1.0)):
        bones += _arm(prefix, side, s) + _leg(prefix, side, s)
    return bones


def mixamo_object_matrix(location=(0.0, 0.0, 0.0)) -> np.ndarray:
    """(4, 4) object matrix: 0.01 scale, +90° about X, at ``location`` (metres)."""
    obj = np.eye(4)
    obj[:3, :3] = 0.01 * YUP_TO_BLENDER
    obj[:3, 3] = location
    return obj
