"""Position-based retargeting of 22-joint motions onto any armature (numpy only).

Runs inside Blender's bundled Python (stdlib + numpy): no bpy, torch or
realign_core imports here, so it is unit-tested without Blender.

Conventions
-----------
* Source motion: ``(F, 22, 3)`` metres, Y up, facing +Z, left at +X, SMPL /
  HumanML3D joint order (``SOURCE_JOINTS``), 20 fps.
* Blender world: Z up, the character faces -Y, left at +X
  (``yup_to_blender``: ``(x, y, z) -> (x, -z, y)``).
* A target rig is described by its rest pose like Blender's ``Bone``:
  ``rest`` (B, 4, 4) armature-space rest matrices (``bone.matrix_local``:
  columns X, Y (along the bone), Z and the head), ``object_matrix`` (4, 4)
  armature -> world (Mixamo's 0.01 scale and 90° X rotation live there).
* Results are Blender pose-bone channels: ``rotation_quaternion`` (w, x, y, z)
  and ``location`` of ``matrix_basis``, which Blender composes as
  ``pose(b) = pose(parent) @ rest(parent)^-1 @ rest(b) @ basis(b)``.

Method: every mapped bone is swung (shortest arc, relative to the
orientation its parent gives it) from its own rest direction, measured between
the target's joint heads, to the generated bone direction; the hips get a full
frame from the spine and hip axes; spine bones follow the generated spine
polyline at their own arc-length fractions and share the twist between the hip
and collar lines; feet are pinned on contact frames with two-bone IK.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SOURCE_JOINTS: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee",
    "spine2", "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot",
    "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
SOURCE_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19,
)
J = {name: i for i, name in enumerate(SOURCE_JOINTS)}
SOURCE_FPS = 20.0
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
# Rest pose of the ReAlign skeleton: offsets from the parent joint (Y up, metres, T-pose arms),
# from HumanML3D's reference bone lengths.
REST_OFFSETS_YUP = np.array([
    [0, 0.95, 0], [0.103, 0, 0], [-0.110, 0, 0], [0, 0.132, 0], [0, -0.394, 0], [0, -0.390, 0],
    [0, 0.143, 0], [0, -0.432, 0], [0, -0.426, 0], [0, 0.057, 0], [0, 0, 0.143], [0, 0, 0.149],
    [0, 0.219, 0], [0.137, 0, 0], [-0.143, 0, 0], [0, 0, 0.103], [0.132, -0.02, 0], [-0.123, -0.02, 0],
    [0.257, 0, 0], [-0.263, 0, 0], [0.266, 0, 0], [-0.270, 0, 0],
])
REST_OFFSETS_YUP[15] = [0, 0.103, 0]
REST_OFFSETS_YUP[[10, 11], 1] = -0.05
CHAIN_CHILD = {0: 3, 1: 4, 2: 5, 3: 6, 4: 7, 5: 8, 6: 9, 7: 10, 8: 11, 9: 12, 12: 15, 13: 16, 14: 17,
               16: 18, 17: 19, 18: 20, 19: 21}


def rest_joints() -> np.ndarray:
    """(22, 3) rest joint positions of the ReAlign skeleton, Blender Z up, metres."""
    pos = np.zeros((22, 3))
    for j, p in enumerate(SOURCE_PARENTS):
        pos[j] = REST_OFFSETS_YUP[j] + (pos[p] if p >= 0 else 0)
    return yup_to_blender(pos)


YUP_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
EPS = 1e-9


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


def yup_to_blender(points: np.ndarray) -> np.ndarray:
    """Y-up, +Z-forward points (..., 3) -> Blender Z-up, -Y-forward points (..., 3)."""
    return np.asarray(points, float) @ YUP_TO_BLENDER.T


# ------------------------------------------------------------------ rotation math

def axis_angle_matrix(axis: np.ndarray, angle: np.ndarray | float) -> np.ndarray:
    """Rotation matrices about unit axes (..., 3) by angles (...) rad -> (..., 3, 3)."""
    axis = np.asarray(axis, float)
    angle = np.asarray(angle, float)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    c, s = np.cos(angle), np.sin(angle)
    t = 1 - c
    return np.stack([
        np.stack([c + x * x * t, x * y * t - z * s, x * z * t + y * s], -1),
        np.stack([y * x * t + z * s, c + y * y * t, y * z * t - x * s], -1),
        np.stack([z * x * t - y * s, z * y * t + x * s, c + z * z * t], -1),
    ], -2)


def normalize(v: np.ndarray) -> np.ndarray:
    """Unit vectors along the last axis (zero stays zero)."""
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, EPS)


def swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Shortest-arc rotations taking unit vectors a onto b, (..., 3) -> (..., 3, 3)."""
    a, b = np.broadcast_arrays(normalize(a), normalize(b))
    v = np.cross(a, b)
    c = np.sum(a * b, -1)
    sin = np.linalg.norm(v, axis=-1)
    ortho = np.cross(a, np.where(np.abs(a[..., :1]) < 0.9, [1.0, 0, 0], [0, 1.0, 0]))
    axis = np.where((sin < 1e-8)[..., None], normalize(ortho), v / np.maximum(sin, EPS)[..., None])
    return axis_angle_matrix(axis, np.arctan2(sin, c))


def signed_angle(a: np.ndarray, b: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Angle (rad) turning a into b about unit axis, after projecting both ⟂ axis; (..., 3) -> (...)."""
    a = a - np.sum(a * axis, -1, keepdims=True) * axis
    b = b - np.sum(b * axis, -1, keepdims=True) * axis
    return np.arctan2(np.sum(np.cross(a, b) * axis, -1), np.sum(a * b, -1))


def matrix_to_quaternion(m: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) as (w, x, y, z)."""
    m = np.asarray(m, float)
    tr = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    cands = np.stack([
        np.stack([1 + tr, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
        np.stack([m[..., 2, 1] - m[..., 1, 2], 1 + 2 * m[..., 0, 0] - tr, m[..., 0, 1] + m[..., 1, 0],
                  m[..., 0, 2] + m[..., 2, 0]], -1),
        np.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 + 2 * m[..., 1, 1] - tr,
                  m[..., 1, 2] + m[..., 2, 1]], -1),
        np.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                  1 + 2 * m[..., 2, 2] - tr], -1),
    ], -2)
    diag = np.stack([tr, m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]], -1)
    best = np.argmax(diag, -1)
    q = np.take_along_axis(cands, best[..., None, None].repeat(4, -1), -2)[..., 0, :]
    return normalize(q)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Quaternions (..., 4) (w, x, y, z) -> rotation matrices (..., 3, 3)."""
    w, x, y, z = np.moveaxis(normalize(np.asarray(q, float)), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def make_continuous(q: np.ndarray) -> np.ndarray:
    """Flip quaternion signs along axis 0 so consecutive frames agree: (F, ..., 4) -> same."""
    q = np.array(q, float)
    for t in range(1, len(q)):
        flip = np.sum(q[t] * q[t - 1], -1) < 0
        q[t][flip] *= -1
    return q


_EULER_AXES = {"X": 0, "Y": 1, "Z": 2}


def matrix_to_euler(m: np.ndarray, order: str) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> Blender Euler angles (..., 3) rad for ``order`` ("XYZ", ...).

    Blender's order "XYZ" means R = Rz @ Ry @ Rx; angles are returned as (x, y, z).
    """
    i, j, k = (_EULER_AXES[c] for c in order)
    parity = 1.0 if (j - i) % 3 == 1 else -1.0
    # R = R_k R_j R_i: the middle angle comes from element (k, i).
    s = np.clip(-parity * m[..., k, i], -1.0, 1.0)
    a_j = np.arcsin(s)
    cos_j = np.cos(a_j)
    ok = cos_j > 1e-6
    a_i = np.where(ok, np.arctan2(parity * m[..., k, j], m[..., k, k]),
                   np.arctan2(-parity * m[..., j, k], m[..., j, j]))
    a_k = np.where(ok, np.arctan2(parity * m[..., j, i], m[..., i, i]), 0.0)
    out = np.zeros(m.shape[:-2] + (3,))
    out[..., i], out[..., j], out[..., k] = a_i, a_j, a_k
    return out


def euler_to_matrix(e: np.ndarray, order: str) -> np.ndarray:
    """Blender Euler angles (..., 3) rad in ``order`` -> rotation matrices (..., 3, 3)."""
    mats = {c: axis_angle_matrix(np.eye(3)[n], e[..., n]) for c, n in _EULER_AXES.items()}
    return mats[order[2]] @ mats[order[1]] @ mats[order[0]]


def make_euler_continuous(e: np.ndarray) -> np.ndarray:
    """Unwrap Euler angles (F, ..., 3) over frames (adds multiples of 2π) -> same shape."""
    return np.unwrap(np.asarray(e, float), axis=0)


def rigid(rot: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """4x4 transforms from rotations (..., 3, 3) and translations (..., 3)."""
    out = np.zeros(rot.shape[:-2] + (4, 4))
    out[..., :3, :3] = rot
    out[..., :3, 3] = trans
    out[..., 3, 3] = 1.0
    return out


# ------------------------------------------------------------------ options/plan

@dataclass
class RetargetOptions:
    """How the motion is placed on the target.

    root_motion: "full" (travel as generated), "in_place" (horizontal travel
    removed, vertical kept) or "axes" (``root_axes`` picks the world X, Y, Z
    components kept); scale_by_leg_length: scale the motion by target leg /
    generated leg length (times ``scale``); ground_snap: shift vertically so
    planted feet sit at the target's rest foot heights; pin_feet: two-bone IK
    on contact frames so feet do not slide; contact_speed (m/s) and
    contact_height (m above the clip's lowest point) detect contacts when none
    are given; pin_blend: frames over which pinning fades in and out.
    """

    root_motion: str = "full"
    root_axes: tuple[bool, bool, bool] = (True, True, True)
    scale_by_leg_length: bool = True
    scale: float = 1.0
    ground_snap: bool = True
    pin_feet: bool = True
    contact_speed: float = 0.25
    contact_height: float = 0.06
    pin_blend: int = 3

    def kept_axes(self) -> np.ndarray:
        """(3,) bool: which world axes of the root path are kept."""
        if self.root_motion == "full":
            return np.ones(3, bool)
        if self.root_motion == "in_place":
            return np.array([False, False, True])
        if self.root_motion == "axes":
            return np.array(self.root_axes, bool)
        raise ValueError(f"root_motion must be 'full', 'in_place' or 'axes', not {self.root_motion!r}")


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


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), EPS)


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

    bone_map: source joint name (``SOURCE_JOINTS``) -> bone name; joints
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
                limb_dir[b] = _unit(rig.rest[b, :3, :3].T @ d)
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


# ----------------------------------------------------------------- placement

def leg_length_source(world: np.ndarray) -> float:
    """Median hip->knee->ankle length (m) of a motion (F, 22, 3), both legs averaged."""
    total = 0.0
    for hip, knee, ankle, _ in LEGS.values():
        seg = (np.linalg.norm(world[:, J[knee]] - world[:, J[hip]], axis=-1)
               + np.linalg.norm(world[:, J[ankle]] - world[:, J[knee]], axis=-1))
        total += float(np.median(seg)) / 2
    return total


def leg_length_target(plan: Plan) -> float | None:
    """Rest hip->knee->ankle length of the target in world units (mean of the legs), None if unmapped."""
    lin = plan.rig.object_matrix[:3, :3]
    heads = plan.rig.heads
    lengths = []
    for joints in LEGS.values():
        if all(j in plan.bone_of for j in joints[:3]):
            pts = [lin @ heads[plan.bone_of[j]] for j in joints[:3]]
            lengths.append(np.linalg.norm(pts[1] - pts[0]) + np.linalg.norm(pts[2] - pts[1]))
    return float(np.mean(lengths)) if lengths else None


def motion_scale(plan: Plan, world: np.ndarray, options: RetargetOptions) -> float:
    """Scale applied to the generated motion (target leg / generated leg when asked) times options.scale."""
    target = leg_length_target(plan) if options.scale_by_leg_length else None
    base = target / max(leg_length_source(world), EPS) if target else 1.0
    return base * options.scale


def place_source(plan: Plan, world: np.ndarray, scale: float, options: RetargetOptions) -> np.ndarray:
    """Generated joints in Blender world metres (F, 22, 3) -> placed joints in world units (F, 22, 3).

    The pelvis path starts at the target's rest hips (horizontally) and keeps
    the axes ``options`` asks for; heights are measured from the object origin.
    """
    obj = plan.rig.object_matrix
    pelvis = world[:, J["pelvis"]]
    rest_hips = (obj @ np.append(plan.rig.heads[plan.root], 1.0))[:3] if plan.root >= 0 else obj[:3, 3]
    path = np.empty_like(pelvis)
    path[:, :2] = rest_hips[:2] + scale * (pelvis[:, :2] - pelvis[:1, :2])
    path[:, 2] = obj[2, 3] + scale * pelvis[:, 2]
    kept = options.kept_axes()
    path[:, ~kept] = rest_hips[~kept]
    return scale * (world - pelvis[:, None]) + path[:, None]


def to_armature(plan: Plan, points: np.ndarray) -> np.ndarray:
    """World points (..., 3) -> armature-space points (..., 3)."""
    inv = np.linalg.inv(plan.rig.object_matrix)
    return points @ inv[:3, :3].T + inv[:3, 3]


def to_world(plan: Plan, points: np.ndarray) -> np.ndarray:
    """Armature-space points (..., 3) -> world points (..., 3)."""
    obj = plan.rig.object_matrix
    return points @ obj[:3, :3].T + obj[:3, 3]


# ------------------------------------------------------------------- solving

def sample_polyline(points: np.ndarray, u: np.ndarray | None) -> np.ndarray:
    """Points at arc fractions u (K,) along per-frame polylines (F, m, 3) -> (F, K, 3); u=None returns points."""
    if u is None:
        return points
    seg = np.linalg.norm(np.diff(points, axis=1), axis=-1)
    cum = np.concatenate([np.zeros((len(points), 1)), np.cumsum(seg, axis=1)], axis=1)
    cum /= np.maximum(cum[:, -1:], EPS)
    m = points.shape[1]
    idx = np.clip(np.sum(cum[:, None, :] <= u[None, :, None], axis=-1) - 1, 0, m - 2)
    c0 = np.take_along_axis(cum, idx, 1)
    c1 = np.take_along_axis(cum, idx + 1, 1)
    t = np.clip((u[None] - c0) / np.maximum(c1 - c0, EPS), 0.0, 1.0)[..., None]
    p0 = np.take_along_axis(points, idx[..., None].repeat(3, -1), 1)
    p1 = np.take_along_axis(points, (idx + 1)[..., None].repeat(3, -1), 1)
    return p0 + t * (p1 - p0)


def _frame(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Orthonormal frames (..., 3, 3), columns (secondary⟂, primary, cross) from (..., 3) vectors."""
    y = normalize(primary)
    x = normalize(secondary - np.sum(secondary * y, -1, keepdims=True) * y)
    return np.stack([x, y, np.cross(x, y)], -1)


def _root_pose(plan: Plan, arm: np.ndarray, spine_pts: np.ndarray | None) -> np.ndarray:
    """Pose (F, 4, 4) of the hips bone: frame from the spine's first segment and the hip line."""
    rig, b = plan.rig, plan.root
    if spine_pts is not None and plan.up_from_spine:
        up = spine_pts[:, 1] - spine_pts[:, 0]
    else:
        up = arm[:, J["neck"]] - arm[:, J["pelvis"]]
    pair = plan.hip_pair or plan.collar_pair
    if pair is None:
        rot = swing(plan.root_up_rest, up)
    else:
        across_rest = rig.heads[plan.bone_of[pair[0]]] - rig.heads[plan.bone_of[pair[1]]]
        across = arm[:, J[pair[0]]] - arm[:, J[pair[1]]]
        rot = _frame(up, across) @ _frame(plan.root_up_rest, across_rest).swapaxes(-1, -2)
    return rigid(rot @ rig.rest[b, :3, :3], arm[:, J["pelvis"]])


def _swung(ref: np.ndarray, local_dir: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rotate reference poses' rotations (F, 3, 3) so local_dir (3,) points along target (F, 3)."""
    return swing(ref @ local_dir, target) @ ref


def _chain_rotation(plan: Plan, b: int, ref: np.ndarray, arm: np.ndarray, chain_pts: list) -> np.ndarray:
    """Rotation (F, 3, 3) of chain bone b: swing to its polyline segment, plus its share of the twist."""
    ci, si = plan.chain_of[b]
    chain, pts = plan.chains[ci], chain_pts[ci]
    rest_rot = plan.rig.rest[b, :3, :3]
    local_dir = _unit(rest_rot.T @ (chain.knots[si + 1] - chain.knots[si]))
    target = pts[:, si + 1] - pts[:, si]
    rot = _swung(ref, local_dir, target)
    if chain.twist and plan.collar_pair is not None:
        left, right = (plan.bone_of[j] for j in plan.collar_pair)
        across_local = rest_rot.T @ (plan.rig.heads[left] - plan.rig.heads[right])
        across = arm[:, J[plan.collar_pair[0]]] - arm[:, J[plan.collar_pair[1]]]
        axis = normalize(target)
        angle = signed_angle(rot @ across_local, across, axis) / (len(chain.bones) - si)
        rot = axis_angle_matrix(axis, angle) @ rot
    return rot


def solve_pose(plan: Plan, arm: np.ndarray) -> np.ndarray:
    """Armature-space pose matrices (F, B, 4, 4) that put the mapped bones along placed joints arm (F, 22, 3)."""
    rig = plan.rig
    frames, nb = len(arm), len(rig.names)
    basis = rig.basis if rig.basis is not None else np.broadcast_to(np.eye(4), (nb, 4, 4))
    chain_pts = [sample_polyline(arm[:, [J[n] for n in c.source]], c.u) for c in plan.chains]
    spine = chain_pts[0] if plan.chains and plan.chains[0].source == SPINE_SOURCE else None
    pose = np.zeros((frames, nb, 4, 4))
    for b in plan.order:
        p = rig.parents[b]
        ref = plan.local_rest[b] if p < 0 else pose[:, p] @ plan.local_rest[b]
        ref = np.broadcast_to(ref, (frames, 4, 4))
        if b == plan.root:
            pose[:, b] = _root_pose(plan, arm, spine)
        elif b in plan.chain_of:
            pose[:, b] = rigid(_chain_rotation(plan, b, ref[:, :3, :3], arm, chain_pts), ref[:, :3, 3])
        elif b in plan.limb_dir:
            target = arm[:, J[plan.limb_child[b]]] - arm[:, J[plan.joint_of[b]]]
            pose[:, b] = rigid(_swung(ref[:, :3, :3], plan.limb_dir[b], target), ref[:, :3, 3])
        else:
            pose[:, b] = ref @ basis[b]
    return pose


def forward_kinematics(rig: Rig, basis: np.ndarray) -> np.ndarray:
    """Armature-space poses (F, B, 4, 4) from ``matrix_basis`` per frame and bone (F, B, 4, 4)."""
    rest_inv = np.linalg.inv(rig.rest)
    pose = np.zeros_like(basis)
    for b in _topological_order(rig.parents):
        p = rig.parents[b]
        local = rig.rest[b] if p < 0 else rest_inv[p] @ rig.rest[b]
        pose[:, b] = (local if p < 0 else pose[:, p] @ local) @ basis[:, b]
    return pose


def basis_from_pose(plan: Plan, pose: np.ndarray) -> np.ndarray:
    """``matrix_basis`` (F, B, 4, 4) reproducing armature-space poses (F, B, 4, 4)."""
    out = np.empty_like(pose)
    local_inv = np.linalg.inv(plan.local_rest)
    for b, p in enumerate(plan.rig.parents):
        parent_inv = np.eye(4) if p < 0 else np.linalg.inv(pose[:, p])
        out[:, b] = local_inv[b] @ parent_inv @ pose[:, b]
    return out


# ----------------------------------------------------------- contacts and feet

FOOT_JOINTS: tuple[str, ...] = ("left_ankle", "left_foot", "right_ankle", "right_foot")


def detect_contacts(world: np.ndarray, fps: float = SOURCE_FPS, speed: float = 0.25,
                    height: float = 0.06) -> np.ndarray:
    """Foot contacts of a motion in Blender world metres (F, 22, 3) -> (F, 4) bool.

    Columns follow ``FOOT_JOINTS``. A joint is planted when its horizontal
    speed is below ``speed`` m/s and it is within ``height`` m of its lowest
    point in the clip.
    """
    feet = world[:, [J[n] for n in FOOT_JOINTS]]
    if len(feet) < 2:
        return np.ones((len(feet), 4), bool)
    vel = np.gradient(feet[..., :2], axis=0) * fps
    slow = np.linalg.norm(vel, axis=-1) < speed
    low = feet[..., 2] < feet[..., 2].min(axis=0) + height
    return slow & low


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index ranges of the True runs of a (F,) bool mask."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def _subtree(plan: Plan, b: int) -> list[int]:
    """Bone b and all its descendants."""
    out, stack = [], [b]
    while stack:
        c = stack.pop()
        out.append(c)
        stack.extend(plan.children[c])
    return out


def _foot_points(plan: Plan, pose: np.ndarray, leg: str) -> np.ndarray:
    """World positions (F, 2, 3) of the target's ankle and toe joints of one leg."""
    _, _, ankle, toe = LEGS[leg]
    a = plan.bone_of[ankle]
    toe_pt = pose[:, plan.bone_of[toe], :3, 3] if toe in plan.bone_of else _tail(plan, pose, a)
    return to_world(plan, np.stack([pose[:, a, :3, 3], toe_pt], 1))


def _tail(plan: Plan, pose: np.ndarray, b: int) -> np.ndarray:
    """Armature-space posed tail (F, 3) of bone b."""
    local_tail = np.linalg.inv(plan.rig.rest[b]) @ np.append(plan.rig.tails[b], 1.0)
    return (pose[:, b] @ local_tail)[:, :3]


def _legs(plan: Plan) -> list[str]:
    """Legs whose thigh, shin and foot are mapped and chained parent-to-child."""
    out = []
    for leg, (hip, knee, ankle, _) in LEGS.items():
        if all(j in plan.bone_of for j in (hip, knee, ankle)):
            t, s, f = (plan.bone_of[j] for j in (hip, knee, ankle))
            if s in _subtree(plan, t) and f in _subtree(plan, s):
                out.append(leg)
    return out


def ground_snap(plan: Plan, pose: np.ndarray, contacts: np.ndarray) -> np.ndarray:
    """Shift the hips' subtree vertically so planted feet sit at their rest heights; returns new poses."""
    legs = _legs(plan)
    if plan.root < 0 or not legs:
        return pose
    rest_pose = plan.rig.rest[None]
    offsets, lowest = [], []
    for leg in legs:
        cols = [FOOT_JOINTS.index(j) for j in LEGS[leg][2:]]
        now = _foot_points(plan, pose, leg)[..., 2]
        rest = _foot_points(plan, rest_pose, leg)[0, :, 2]
        offsets.append((rest[None] - now)[contacts[:, cols]])
        lowest.append(rest.min() - now.min())
    offs = np.concatenate(offsets)
    dz = float(np.median(offs)) if len(offs) else float(min(lowest))
    shift = np.linalg.inv(plan.rig.object_matrix)[:3, :3] @ np.array([0.0, 0.0, dz])
    pose = pose.copy()
    _translate(pose, _subtree(plan, plan.root), np.broadcast_to(shift, (len(pose), 3)))
    return pose


def _translate(pose: np.ndarray, bones: list[int], offset: np.ndarray) -> None:
    """Add per-frame offsets (F, 3) to the positions of ``bones``, in place."""
    block = pose[:, bones]
    block[..., :3, 3] += offset[:, None]
    pose[:, bones] = block


def _pin_offsets(points: np.ndarray, contacts: np.ndarray, blend: int) -> np.ndarray:
    """World offsets (F, 3) that move one foot so its planted joint stays put.

    points: (F, 2, 3) ankle and toe world positions; contacts: (F, 2) bool.
    Ankle runs pin the ankle to its mean position over the run; toe runs pin
    the toe on frames where the ankle is free; offsets fade over ``blend``
    frames outside the runs.
    """
    frames = len(points)
    delta = np.zeros((frames, 3))
    planted = np.zeros(frames, bool)
    for col in (1, 0):
        for start, stop in runs(contacts[:, col]):
            pin = points[start:stop, col].mean(axis=0)
            sel = np.arange(start, stop)
            if col == 1:
                sel = sel[~contacts[start:stop, 0]]
            delta[sel] = pin - points[sel, col]
            planted[sel] = True
    if blend > 0 and planted.any() and not planted.all():
        idx = np.flatnonzero(planted)
        for t in np.flatnonzero(~planted):
            near = idx[np.argmin(np.abs(idx - t))]
            dist = abs(near - t)
            if dist <= blend:
                delta[t] = delta[near] * (1 - dist / (blend + 1))
    return delta


def _apply(pose: np.ndarray, bones: list[int], transform: np.ndarray, frames: np.ndarray) -> None:
    """Left-multiply poses of ``bones`` on ``frames`` by transforms (F, 4, 4), in place."""
    sub = pose[frames][:, bones]
    pose[np.ix_(frames, bones)] = transform[frames][:, None] @ sub


def _about(point: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """Rigid transforms (F, 4, 4) rotating by rot (F, 3, 3) about points (F, 3)."""
    return rigid(rot, point - np.einsum("fij,fj->fi", rot, point))


def two_bone_ik(plan: Plan, pose: np.ndarray, leg: str, target: np.ndarray, frames: np.ndarray) -> None:
    """Bend thigh and shin so the ankle reaches armature-space target (F, 3) on ``frames``, in place.

    The knee stays in the plane of hip, target and current knee; the foot
    keeps its orientation.
    """
    hip, knee, ankle, _ = (plan.bone_of.get(j, -1) for j in LEGS[leg])
    h, k, a = (pose[:, b, :3, 3] for b in (hip, knee, ankle))
    l1 = np.linalg.norm(k - h, axis=-1)
    l2 = np.linalg.norm(a - k, axis=-1)
    d = target - h
    dist = np.clip(np.linalg.norm(d, axis=-1), np.abs(l1 - l2) * 1.001 + EPS, (l1 + l2) * 0.99999)
    dhat = normalize(d)
    cos = np.clip((l1 ** 2 + dist ** 2 - l2 ** 2) / (2 * l1 * dist), -1.0, 1.0)
    bend = (k - h) - np.sum((k - h) * dhat, -1, keepdims=True) * dhat
    fwd = _tail(plan, pose, ankle) - a
    fwd = fwd - np.sum(fwd * dhat, -1, keepdims=True) * dhat
    weak = np.linalg.norm(bend, axis=-1) < 1e-4 * l1
    bend = normalize(np.where(weak[:, None], fwd, bend))
    k_new = h + l1[:, None] * (cos[:, None] * dhat + np.sqrt(1 - cos ** 2)[:, None] * bend)
    a_new = h + dist[:, None] * dhat
    r1 = swing(k - h, k_new - h)
    _apply(pose, _subtree(plan, hip), _about(h, r1), frames)
    r2 = swing(pose[:, ankle, :3, 3] - k_new, a_new - k_new)
    _apply(pose, _subtree(plan, knee), _about(k_new, r2), frames)
    undo = (r2 @ r1).swapaxes(-1, -2)
    _apply(pose, _subtree(plan, ankle), _about(a_new, undo), frames)


def pin_feet(plan: Plan, pose: np.ndarray, contacts: np.ndarray, blend: int = 3) -> np.ndarray:
    """Two-bone IK on contact frames so planted ankles/toes do not slide; returns new poses.

    Where a pinned ankle is out of the leg's reach the hips are lowered
    (smoothly over time) just enough to reach it.
    """
    pose = pose.copy()
    targets = {}
    for leg in _legs(plan):
        cols = [FOOT_JOINTS.index(j) for j in LEGS[leg][2:]]
        points = _foot_points(plan, pose, leg)
        delta = _pin_offsets(points, contacts[:, cols], blend)
        frames = np.flatnonzero(np.linalg.norm(delta, axis=-1) > 1e-9)
        if len(frames):
            targets[leg] = (to_armature(plan, points[:, 0] + delta), frames)
    if plan.root >= 0 and targets:
        _lower_hips(plan, pose, targets, window=max(blend, 1) * 2 + 1)
    for leg, (target, frames) in targets.items():
        two_bone_ik(plan, pose, leg, target, frames)
    return pose


def _lower_hips(plan: Plan, pose: np.ndarray, targets: dict, window: int, reach: float = 0.995) -> None:
    """Move the hips' subtree down (world Z) where a leg cannot reach its ankle target, in place.

    targets: leg -> (armature-space ankle targets (F, 3), frames they apply to).
    The drop is a moving minimum followed by a moving mean (never shallower
    than needed, no jumps).
    """
    frames_n = len(pose)
    drop = np.zeros(frames_n)
    for leg, (target, frames) in targets.items():
        hip, knee, ankle, _ = (plan.bone_of[j] for j in LEGS[leg])
        length = (np.linalg.norm(pose[0, knee, :3, 3] - pose[0, hip, :3, 3])
                  + np.linalg.norm(pose[0, ankle, :3, 3] - pose[0, knee, :3, 3]))
        h, p = to_world(plan, pose[frames, hip, :3, 3]), to_world(plan, target[frames])
        scale = np.linalg.norm(plan.rig.object_matrix[:3, 0])
        r = reach * length * scale
        horiz = np.sum((p[:, :2] - h[:, :2]) ** 2, -1)
        need = p[:, 2] + np.sqrt(np.maximum(r * r - horiz, 0.0)) - h[:, 2]
        drop[frames] = np.minimum(drop[frames], np.minimum(need, 0.0))
    if not drop.any():
        return
    half = window // 2
    padded = np.pad(drop, half, mode="edge")
    eroded = np.array([padded[t:t + window].min() for t in range(frames_n)])
    padded = np.pad(eroded, half, mode="edge")
    smooth = np.array([padded[t:t + window].mean() for t in range(frames_n)])
    shift = np.linalg.inv(plan.rig.object_matrix)[:3, :3] @ np.array([0.0, 0.0, 1.0])
    _translate(pose, _subtree(plan, plan.root), smooth[:, None] * shift)


# ------------------------------------------------------------------ top level

@dataclass
class RetargetResult:
    """Pose channels for Blender plus diagnostics.

    quaternions: (F, B, 4) ``rotation_quaternion`` (w, x, y, z), sign-continuous
    over frames; locations: (F, B, 3) ``location`` (bone rest frame, armature
    units); driven: (B,) bool, bones whose rotation the motion sets; root:
    bone whose location is keyed (-1 none); pose: (F, B, 4, 4) armature-space
    pose matrices; contacts: (F, 4) bool (``FOOT_JOINTS``); placed: (F, 22, 3)
    generated joints placed in the world (world units, before foot pinning);
    scale: the factor applied to the generated motion.
    """

    names: list[str]
    quaternions: np.ndarray
    locations: np.ndarray
    driven: np.ndarray
    root: int
    pose: np.ndarray
    contacts: np.ndarray
    placed: np.ndarray
    scale: float


def retarget(joints: np.ndarray, rig: Rig, bone_map: dict[str, str], options: RetargetOptions | None = None,
             contacts: np.ndarray | None = None) -> RetargetResult:
    """Retarget a generated motion onto a rig.

    joints: (F, 22, 3) metres, Y up (the server's output); bone_map: source
    joint -> bone name; contacts: optional (F, 4) bool in ``FOOT_JOINTS``
    order (detected from the motion when None).
    """
    options = options or RetargetOptions()
    plan = make_plan(rig, bone_map)
    world = yup_to_blender(np.asarray(joints, float))
    if contacts is None:
        contacts = detect_contacts(world, SOURCE_FPS, options.contact_speed, options.contact_height)
    contacts = np.asarray(contacts, bool)
    scale = motion_scale(plan, world, options)
    placed = place_source(plan, world, scale, options)
    pose = solve_pose(plan, to_armature(plan, placed))
    if options.ground_snap:
        pose = ground_snap(plan, pose, contacts)
    if options.pin_feet:
        pose = pin_feet(plan, pose, contacts, options.pin_blend)
    basis = basis_from_pose(plan, pose)
    quats = make_continuous(matrix_to_quaternion(basis[..., :3, :3]))
    driven = np.zeros(len(rig.names), bool)
    driven[list(plan.bone_of.values()) + list(plan.chain_of)] = True
    return RetargetResult(list(rig.names), quats, basis[..., :3, 3], driven, plan.root, pose, contacts, placed,
                          scale)


def frame_times(frames: int, scene_fps: float, start: float = 1.0, fps: float = SOURCE_FPS) -> np.ndarray:
    """Scene frame numbers (frames,) of motion frames played at ``fps`` in a scene at ``scene_fps``."""
    return start + np.arange(frames) * (scene_fps / fps)
