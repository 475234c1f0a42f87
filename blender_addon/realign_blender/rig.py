"""Target rigs and what drives each of their bones (numpy only).

The source side is the generated 22-joint skeleton (``skeleton.py``, vendored
from realign_core by build.py); a target rig is described by its rest pose
like Blender's ``Bone``: ``rest`` (B, 4, 4) armature-space rest matrices
(``bone.matrix_local``: columns X, Y (along the bone), Z and the head) and
``object_matrix`` (4, 4) armature -> world (Mixamo's 0.01 scale and 90° X
rotation live there). ``make_plan`` precomputes, once per rig and bone map,
which source joints drive which bones.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .rotations import EPS, axis_angle_matrix, normalize, yup_to_blender
from .skeleton import JOINT_INDEX as J  # source joint name -> index
from .skeleton import PARENTS, TPOSE_OFFSETS

# ------------------------------------------------------------ source joints

# Joint whose direction from a joint drives the bone mapped to it (limbs).
LIMB_CHILD: dict[str, str] = {
    "left_hip": "left_knee", "right_hip": "right_knee",
    "left_knee": "left_ankle", "right_knee": "right_ankle",
    "left_ankle": "left_foot", "right_ankle": "right_foot",
    "left_collar": "left_shoulder", "right_collar": "right_shoulder",
    "left_shoulder": "left_elbow", "right_shoulder": "right_elbow",
    "left_elbow": "left_wrist", "right_elbow": "right_wrist",
}
SPINE_SOURCE: tuple[str, ...] = ("pelvis", "spine1", "spine2", "spine3", "neck")
NECK_SOURCE: tuple[str, ...] = ("neck", "head")
# (hip, knee, ankle, toe) joints per leg.
LEGS: dict[str, tuple[str, str, str, str]] = {
    "left": ("left_hip", "left_knee", "left_ankle", "left_foot"),
    "right": ("right_hip", "right_knee", "right_ankle", "right_foot"),
}
# Child joint along the bone chain of each joint (the tail of its bone on the ReAlign skeleton).
CHAIN_CHILD = {0: 3, 1: 4, 2: 5, 3: 6, 4: 7, 5: 8, 6: 9, 7: 10, 8: 11, 9: 12, 12: 15, 13: 16, 14: 17,
               16: 18, 17: 19, 18: 20, 19: 21}


def rest_joints() -> np.ndarray:
    """(22, 3) rest joint positions of the ReAlign skeleton (``TPOSE_OFFSETS``), Blender Z up, metres."""
    pos = np.zeros((22, 3))
    for j, p in enumerate(PARENTS):
        pos[j] = TPOSE_OFFSETS[j] + (pos[p] if p >= 0 else 0)
    return yup_to_blender(pos)


# --------------------------------------------------------------------------- rigs

@dataclass
class Rig:
    """Rest pose of a target armature.

    names: B bone names; parents: B parent indices (-1 for roots, parents
    before children); rest: (B, 4, 4) armature-space rest matrices (rotation
    columns X, Y along the bone, Z; translation = head), armature units;
    tails: (B, 3) armature-space tails; object_matrix: (4, 4) armature ->
    world (metres); basis: optional (B, 4, 4) current ``matrix_basis`` that
    unmapped bones keep (identity when None).
    """

    names: list[str]
    parents: list[int]
    rest: np.ndarray
    tails: np.ndarray
    object_matrix: np.ndarray = field(default_factory=lambda: np.eye(4))
    basis: np.ndarray | None = None

    def index(self, name: str) -> int:
        """Index of a bone by name."""
        return self.names.index(name)

    @property
    def heads(self) -> np.ndarray:
        """(B, 3) armature-space rest heads."""
        return self.rest[:, :3, 3]


def bone_matrix(head: np.ndarray, tail: np.ndarray, roll: float) -> np.ndarray:
    """Blender's rest matrix of a bone from head, tail (3,) and roll (rad) -> (4, 4).

    Y is the unit head->tail axis; X/Z come from the shortest rotation of +Y
    onto it followed by ``roll`` about it (Blender's ``vec_roll_to_mat3``).
    """
    nor = np.asarray(tail, float) - np.asarray(head, float)
    nor = nor / max(np.linalg.norm(nor), EPS)
    x, y, z = nor
    theta = 1.0 + y
    if theta > 6.1e-3 or x * x + z * z > 2.5e-4 ** 2:
        if theta <= 6.1e-3:
            a = x * x + z * z
            theta = a * 0.5 + a * a * 0.125
        b = np.array([[1 - x * x / theta, x, -x * z / theta],
                      [-x, y, -z],
                      [-x * z / theta, z, 1 - z * z / theta]])
    else:
        b = np.diag([-1.0, -1.0, 1.0])
    m = np.eye(4)
    m[:3, :3] = axis_angle_matrix(nor, roll) @ b
    m[:3, 3] = head
    return m


def rig_from_bones(names: list[str], parents: list[int], heads: np.ndarray, tails: np.ndarray,
                   rolls: np.ndarray | None = None, object_matrix: np.ndarray | None = None) -> Rig:
    """A Rig from edit-bone data: heads/tails (B, 3) armature units, rolls (B,) rad."""
    heads, tails = np.asarray(heads, float), np.asarray(tails, float)
    rolls = np.zeros(len(names)) if rolls is None else np.asarray(rolls, float)
    rest = np.stack([bone_matrix(h, t, r) for h, t, r in zip(heads, tails, rolls)])
    obj = np.eye(4) if object_matrix is None else np.asarray(object_matrix, float)
    return Rig(list(names), list(parents), rest, tails, obj)


# ------------------------------------------------------------------ plan

@dataclass
class Chain:
    """Bones following a source polyline.

    knots: (n+1,) armature-space rest points (bone heads, then the end
    point); bones: the n driven bones (one per segment, -1 for a segment owned
    by the root); source: joint names of the polyline; u: (n+1,) arc fractions
    of the knots, or None to map knot i to source joint i; twist: share the
    hip->collar twist among the bones.
    """

    knots: np.ndarray
    bones: list[int]
    source: tuple[str, ...]
    u: np.ndarray | None
    twist: bool


@dataclass
class Plan:
    """What drives each bone of a rig: precomputed once per rig and bone map."""

    rig: Rig
    bone_of: dict[str, int]          # source joint -> bone index
    order: list[int]                 # parents before children
    local_rest: np.ndarray           # (B, 4, 4) rest(parent)^-1 @ rest(b), rest(b) for roots
    root: int                        # hips bone (-1 when unmapped)
    limb_dir: dict[int, np.ndarray]  # bone -> (3,) unit rest direction in its own rest frame
    limb_child: dict[int, str]       # bone -> joint name whose direction drives it
    chains: list[Chain]
    chain_of: dict[int, tuple[int, int]]  # bone -> (chain index, segment index)
    root_up_rest: np.ndarray         # (3,) armature space
    hip_pair: tuple[str, str] | None     # joints whose left-right line sets the hips' twist
    collar_pair: tuple[str, str] | None  # joints whose left-right line sets the chest's twist
    children: list[list[int]] = field(default_factory=list)
    up_from_spine: bool = True       # hips' up axis = first spine segment (else pelvis -> neck)

    @property
    def joint_of(self) -> dict[int, str]:
        """Bone index -> source joint mapped to it."""
        return {b: j for j, b in self.bone_of.items()}


def _topological_order(parents: list[int]) -> list[int]:
    """Bone indices with every parent before its children."""
    order, seen = [], set()

    def visit(b: int) -> None:
        if b in seen:
            return
        if parents[b] >= 0:
            visit(parents[b])
        seen.add(b)
        order.append(b)

    for b in range(len(parents)):
        visit(b)
    return order


def _path_between(parents: list[int], top: int, bottom: int) -> list[int] | None:
    """Bones strictly between ancestor ``top`` and descendant ``bottom`` (top-down), None if unrelated."""
    path, b = [], parents[bottom]
    while b >= 0 and b != top:
        path.append(b)
        b = parents[b]
    return path[::-1] if b == top else None


def _arc_fractions(points: np.ndarray) -> np.ndarray:
    """(n, 3) polyline -> (n,) cumulative arc length fractions 0..1."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=-1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    return cum / max(cum[-1], EPS)


def _bone_end(rig: Rig, b: int, bone_of: dict[str, int], joint: str | None) -> np.ndarray:
    """Rest end point of bone b: the head of the bone mapped to ``joint`` or b's tail."""
    if joint is not None and joint in bone_of:
        return rig.heads[bone_of[joint]]
    return rig.tails[b]


def _make_chain(rig: Rig, bone_of: dict[str, int], start: str, end: str, source: tuple[str, ...],
                twist: bool, include_start: bool) -> Chain | None:
    """Chain of bones from the bone of ``start`` to (excluding) the bone of ``end``."""
    if start not in bone_of or end not in bone_of:
        return None
    top, bottom = bone_of[start], bone_of[end]
    middle = _path_between(rig.parents, top, bottom)
    if middle is None:
        middle = [bone_of[n] for n in source[1:-1] if n in bone_of]
    bones = [top] + middle
    knots = np.stack([rig.heads[b] for b in bones] + [rig.heads[bottom]])
    u = None if len(knots) == len(source) else _arc_fractions(knots)
    return Chain(knots, bones if include_start else [-1] + middle, source, u, twist)


def make_plan(rig: Rig, bone_map: dict[str, str]) -> Plan:
    """Precompute the drivers of every bone.

    bone_map: source joint name (``skeleton.JOINT_NAMES``) -> bone name; joints
    missing from the map or naming absent bones are ignored.
    """
    bone_of = {j: rig.index(b) for j, b in bone_map.items() if j in J and b in rig.names}
    rest_inv = np.linalg.inv(rig.rest)
    local = np.stack([rig.rest[b] if p < 0 else rest_inv[p] @ rig.rest[b] for b, p in enumerate(rig.parents)])
    chains = [c for c in (
        _make_chain(rig, bone_of, "pelvis", "neck", SPINE_SOURCE, True, False),
        _make_chain(rig, bone_of, "neck", "head", NECK_SOURCE, False, True),
    ) if c is not None]
    chain_of = {b: (ci, si) for ci, c in enumerate(chains) for si, b in enumerate(c.bones) if b >= 0}
    limb_dir, limb_child = {}, {}
    for joint, child in LIMB_CHILD.items():
        if joint in bone_of and bone_of[joint] not in chain_of:
            b = bone_of[joint]
            d = _bone_end(rig, b, bone_of, child) - rig.heads[b]
            if np.linalg.norm(d) > EPS:
                limb_dir[b] = normalize(rig.rest[b, :3, :3].T @ d)
                limb_child[b] = child
    heads = rig.heads
    root = bone_of.get("pelvis", -1)
    up = chains[0].knots[1] - chains[0].knots[0] if chains and chains[0].source == SPINE_SOURCE else np.zeros(3)
    up_from_spine = bool(np.linalg.norm(up) > EPS)
    if not up_from_spine:  # no usable first spine segment: trunk axis, else the world's up at rest
        up = heads[bone_of["neck"]] - heads[root] if "neck" in bone_of and root >= 0 else np.zeros(3)
        if np.linalg.norm(up) < EPS:
            up = np.linalg.inv(rig.object_matrix[:3, :3]) @ np.array([0.0, 0.0, 1.0])
    children: list[list[int]] = [[] for _ in rig.names]
    for b, p in enumerate(rig.parents):
        if p >= 0:
            children[p].append(b)
    return Plan(rig, bone_of, _topological_order(rig.parents), local, root, limb_dir, limb_child, chains,
                chain_of, up, _pair(bone_of, "left_hip", "right_hip"),
                _pair(bone_of, "left_collar", "right_collar", "left_shoulder", "right_shoulder"), children,
                up_from_spine)


def _pair(bone_of: dict[str, int], *names: str) -> tuple[str, str] | None:
    """The first (left, right) joint pair of ``names`` whose two joints are both mapped."""
    for left, right in zip(names[::2], names[1::2]):
        if left in bone_of and right in bone_of:
            return left, right
    return None


# ------------------------------------------------------------- spaces and FK

def to_armature(plan: Plan, points: np.ndarray) -> np.ndarray:
    """World points (..., 3) -> armature-space points (..., 3)."""
    inv = np.linalg.inv(plan.rig.object_matrix)
    return points @ inv[:3, :3].T + inv[:3, 3]


def to_world(plan: Plan, points: np.ndarray) -> np.ndarray:
    """Armature-space points (..., 3) -> world points (..., 3)."""
    obj = plan.rig.object_matrix
    return points @ obj[:3, :3].T + obj[:3, 3]


def forward_kinematics(rig: Rig, basis: np.ndarray) -> np.ndarray:
    """Armature-space poses (F, B, 4, 4) from ``matrix_basis`` per frame and bone (F, B, 4, 4)."""
    rest_inv = np.linalg.inv(rig.rest)
    pose = np.zeros_like(basis)
    for b in _topological_order(rig.parents):
        p = rig.parents[b]
        local = rig.rest[b] if p < 0 else rest_inv[p] @ rig.rest[b]
        pose[:, b] = (local if p < 0 else pose[:, p] @ local) @ basis[:, b]
    return pose

