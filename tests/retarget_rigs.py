"""Target rigs for retargeting tests, built as Blender edit-bone data (heads, tails, rolls).

Each builder returns (Rig, bone_map_preset_name). Rigs differ from the
generated skeleton on purpose: proportions, T-pose / A-pose, bone rolls,
units, object transforms, extra unmapped bones and spine bone counts.
"""
from __future__ import annotations

import numpy as np

from tests.addon_modules import SCRIPTS_DIR, load

rig_mod = load("rig")
rotations = load("rotations")


def _build(bones: list[tuple[str, str | None, tuple, tuple]], rolls_rng: np.random.Generator | None,
           object_matrix: np.ndarray | None = None, yup: bool = False):
    """bones: (name, parent, head, tail) in armature units; random rolls when rolls_rng is given."""
    names = [b[0] for b in bones]
    parents = [names.index(b[1]) if b[1] else -1 for b in bones]
    heads = np.array([b[2] for b in bones], float)
    tails = np.array([b[3] for b in bones], float)
    rolls = rolls_rng.uniform(-np.pi, np.pi, len(bones)) if rolls_rng is not None else np.zeros(len(bones))
    rig = rig_mod.rig_from_bones(names, parents, heads, tails, rolls, object_matrix)
    rig.edit_rolls = rolls  # kept so Blender tests can build the same armature
    return rig


def _limb(prefix_fmt: str, side: str, sign: float, pts: dict[str, tuple], parent_of_first: str,
          names: list[str], ends: dict[str, tuple]) -> list:
    """A chain of bones: names[i] from pts[names[i]] to pts[names[i+1]] (last to ends)."""
    out = []
    parent = parent_of_first
    for i, n in enumerate(names):
        head = pts[n]
        tail = pts[names[i + 1]] if i + 1 < len(names) else ends[n]
        full = prefix_fmt.format(side=side, base=n)
        out.append((full, parent, head, tail))
        parent = full
    return out


def smpl_rig(rng: np.random.Generator | None = None, tpose: bool = True):
    """SMPL-named rig in metres, Z up, facing -Y, T-pose arms; the generated skeleton's proportions."""
    from realign_core.motion.skeleton import JOINT_NAMES, PARENTS
    from tests.synthetic import REST_OFFSETS

    pos = np.zeros((22, 3))
    for j in range(1, 22):
        pos[j] = pos[PARENTS[j]] + REST_OFFSETS[j]
    pos[:, 1] += 0.95
    if tpose:  # arms out sideways
        for sh, el, wr, s in ((16, 18, 20, 1), (17, 19, 21, -1)):
            pos[el] = pos[sh] + [s * 0.26, 0, 0]
            pos[wr] = pos[el] + [s * 0.25, 0, 0]
    pos = rotations.yup_to_blender(pos)
    child = rig_mod.CHAIN_CHILD
    bones = []
    for j, name in enumerate(JOINT_NAMES):
        if j in child:
            tail = pos[child[j]]
        else:
            d = pos[j] - pos[PARENTS[j]]
            tail = pos[j] + 0.08 * d / np.linalg.norm(d)
        bones.append((name, JOINT_NAMES[PARENTS[j]] if PARENTS[j] >= 0 else None, pos[j], tail))
    return _build(bones, rng), "realign"


def mixamo_rig(rng: np.random.Generator, prefix: str = "mixamorig:"):
    """Mixamo-like rig: Y-up armature in cm under a 0.01-scale, +90° X object (as FBX imports it),
    A-pose arms at 45°, different proportions, three spine bones, fingers and end bones
    (``blender_addon/scripts/demo_rigs.py``, which the demo bakes onto too)."""
    demo_rigs = load("demo_rigs", SCRIPTS_DIR)
    return _build(demo_rigs.mixamo_bones(prefix), rng, demo_rigs.mixamo_object_matrix([1.5, -0.5, 0.0])), "mixamo"


def rigify_rig(rng: np.random.Generator | None, deform: bool = True):
    """Rigify-like rig in metres, Z up: spine/spine.001-.006 (pelvis .. head), pelvis.L/R, segmented
    DEF thighs and arms (``.001`` bones), heels, knees slightly bent, arms 30° below horizontal."""
    pre = "DEF-" if deform else ""
    sp = [(0, 0.02, 1.0), (0, 0.03, 1.12), (0, 0.02, 1.25), (0, 0.0, 1.38), (0, 0.01, 1.5), (0, 0.0, 1.56),
          (0, -0.01, 1.62), (0, -0.01, 1.82)]
    names = ["spine"] + [f"spine.00{i}" for i in range(1, 7)]
    bones, parent = [], None
    for i, n in enumerate(names):
        bones.append((pre + n, parent, sp[i], sp[i + 1]))
        parent = pre + n
    c30, s30 = np.cos(np.radians(30)), np.sin(np.radians(30))
    for side, s in (("L", 1.0), ("R", -1.0)):
        pelvis_tail = (s * 0.11, -0.05, 1.05)
        bones.append((f"{pre}pelvis.{side}", pre + "spine", sp[0], pelvis_tail))
        hip, knee = np.array([s * 0.1, 0.01, 0.97]), np.array([s * 0.1, -0.03, 0.52])
        ankle, toe = np.array([s * 0.1, 0.04, 0.09]), np.array([s * 0.1, -0.09, 0.02])
        thigh_parent = f"{pre}pelvis.{side}" if deform else pre + "spine"
        bones.append((f"{pre}thigh.{side}", thigh_parent, hip, (hip + knee) / 2))
        last = f"{pre}thigh.{side}"
        if deform:
            bones.append((f"{pre}thigh.{side}.001", last, (hip + knee) / 2, knee))
            last = f"{pre}thigh.{side}.001"
        bones += [
            (f"{pre}shin.{side}", last, knee, ankle),
            (f"{pre}foot.{side}", f"{pre}shin.{side}", ankle, toe),
            (f"{pre}toe.{side}", f"{pre}foot.{side}", toe, toe + [0, -0.07, 0]),
            (f"{pre}heel.02.{side}", f"{pre}foot.{side}", (s * 0.08, 0.06, 0.0), (s * 0.12, 0.06, 0.0)),
        ]
        sh, arm = np.array([s * 0.02, -0.02, 1.45]), np.array([s * 0.18, 0.02, 1.44])
        elbow = arm + 0.28 * np.array([s * c30, 0.02, -s30])
        wrist = elbow + 0.26 * np.array([s * c30, -0.05, -s30])
        bones.append((f"{pre}shoulder.{side}", pre + "spine.003", sh, arm))
        bones.append((f"{pre}upper_arm.{side}", f"{pre}shoulder.{side}", arm, elbow))
        bones.append((f"{pre}forearm.{side}", f"{pre}upper_arm.{side}", elbow, wrist))
        bones.append((f"{pre}hand.{side}", f"{pre}forearm.{side}", wrist, wrist + 0.08 * np.array([s * c30, 0, -s30])))
    return _build(bones, rng), ("rigify_def" if deform else "rigify_metarig")


def bandai_like_rig(rng: np.random.Generator | None):
    """Bandai-Namco-style BVH rig (cm, Z up): Hips-Spine-Chest-Neck-Head (two spine bones), a root bone."""
    bones = [("joint_Root", None, (0, 0, 0), (0, 0, 10)),
             ("Hips", "joint_Root", (0, 0, 94), (0, 0, 110)),
             ("Spine", "Hips", (0, 0, 110), (0, 0, 119)),
             ("Chest", "Spine", (0, 0, 119), (0, 0, 135)),
             ("Neck", "Chest", (0, 0, 135), (0, 0, 142)),
             ("Head", "Neck", (0, 0, 142), (0, 0, 160))]
    for side, s in (("L", 1.0), ("R", -1.0)):
        bones += [(f"Shoulder_{side}", "Chest", (s * 5, 0, 132), (s * 13, 0, 132)),
                  (f"UpperArm_{side}", f"Shoulder_{side}", (s * 13, 0, 132), (s * 37, 0, 132)),
                  (f"LowerArm_{side}", f"UpperArm_{side}", (s * 37, 0, 132), (s * 59, 0, 132)),
                  (f"Hand_{side}", f"LowerArm_{side}", (s * 59, 0, 132), (s * 67, 0, 132)),
                  (f"UpperLeg_{side}", "Hips", (s * 6.5, 0, 92), (s * 6.5, 0, 53)),
                  (f"LowerLeg_{side}", f"UpperLeg_{side}", (s * 6.5, 0, 53), (s * 6.5, 0, 12)),
                  (f"Foot_{side}", f"LowerLeg_{side}", (s * 6.5, 0, 12), (s * 6.5, -11, 2)),
                  (f"Toes_{side}", f"Foot_{side}", (s * 6.5, -11, 2), (s * 6.5, -16, 2))]
    return _build(bones, rng), "bandai_bvh"


def ue5_like_rig(rng: np.random.Generator | None):
    """UE5-mannequin-style rig (cm, Z up, 0.01 object scale): root, pelvis, spine_01..05, neck_01/02, head,
    clavicles, twist bones (unmapped), ball bones."""
    spine_z = [100, 106, 114, 123, 132, 141]
    bones = [("root", None, (0, 0, 0), (0, 0, 20)), ("pelvis", "root", (0, 0, 98), (0, 0, spine_z[0]))]
    parent = "pelvis"
    for i in range(5):
        name = f"spine_0{i + 1}"
        bones.append((name, parent, (0, 1.0 - i * 0.5, spine_z[i]), (0, 1.0 - (i + 1) * 0.5, spine_z[i + 1])))
        parent = name
    bones += [("neck_01", "spine_05", (0, -1.5, 141), (0, -2, 148)), ("neck_02", "neck_01", (0, -2, 148), (0, -2, 154)),
              ("head", "neck_02", (0, -2, 154), (0, -2, 172))]
    for side, s in (("l", 1.0), ("r", -1.0)):
        bones += [(f"clavicle_{side}", "spine_05", (s * 3, -1, 136), (s * 17, 1, 136)),
                  (f"upperarm_{side}", f"clavicle_{side}", (s * 17, 1, 136), (s * 40, 2, 118)),
                  (f"upperarm_twist_01_{side}", f"upperarm_{side}", (s * 28, 1.5, 127), (s * 35, 2, 122)),
                  (f"lowerarm_{side}", f"upperarm_{side}", (s * 40, 2, 118), (s * 60, -4, 102)),
                  (f"hand_{side}", f"lowerarm_{side}", (s * 60, -4, 102), (s * 67, -5, 96)),
                  (f"thigh_{side}", "pelvis", (s * 9, 1, 95), (s * 10, 0, 52)),
                  (f"calf_twist_01_{side}", f"thigh_{side}", (s * 10, 0, 70), (s * 10, 0, 60)),
                  (f"calf_{side}", f"thigh_{side}", (s * 10, 0, 52), (s * 10, 3, 9)),
                  (f"foot_{side}", f"calf_{side}", (s * 10, 3, 9), (s * 10, -11, 2)),
                  (f"ball_{side}", f"foot_{side}", (s * 10, -11, 2), (s * 10, -17, 2))]
    obj = np.diag([0.01, 0.01, 0.01, 1.0])
    return _build(bones, rng, obj), "ue5_mannequin"
