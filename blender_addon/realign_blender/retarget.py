"""Position-based retargeting of 22-joint motions onto any armature (numpy only).

Runs inside Blender's bundled Python (stdlib + numpy): no bpy, torch or
realign_core imports here, so it is unit-tested without Blender. The modules:
``rotations`` (rotation math, Y-up -> Blender axes), ``rig`` (target rigs and
what drives each bone), ``feet`` (ground snap, foot pinning), this module
(placement, solving, the ``retarget`` entry point), ``rigify`` (generated
Rigify rigs: solved on their DEF bones, keyed on their FK controls), plus
``skeleton`` and ``kinematics``, which build.py vendors from
realign_core/motion unchanged.

Conventions
-----------
* Source motion: ``(F, 22, 3)`` metres, Y up, facing +Z, left at +X, SMPL /
  HumanML3D joint order (``skeleton.JOINT_NAMES``), 20 fps.
* Blender world: Z up, the character faces -Y, left at +X
  (``yup_to_blender``: ``(x, y, z) -> (x, -z, y)``).
* A target rig is described by its rest pose like Blender's ``Bone``
  (``rig.Rig``): ``rest`` (B, 4, 4) armature-space rest matrices
  (``bone.matrix_local``), ``object_matrix`` (4, 4) armature -> world.
* Results are Blender pose-bone channels: ``rotation_quaternion`` (w, x, y, z)
  and ``location`` of ``matrix_basis``, which Blender composes as
  ``pose(b) = pose(parent) @ rest(parent)^-1 @ rest(b) @ basis(b)``.

Method: every mapped bone is swung (shortest arc, relative to the
orientation its parent gives it) from its own rest direction, measured between
the target's joint heads, to the generated bone direction; the hips get a full
frame from the spine and hip axes; spine bones follow the generated spine
polyline at their own arc-length fractions and share the twist between the hip
and collar lines; on contact frames the body moves against the feet's slide
and two-bone IK pins what is left.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .feet import ground_snap, keep_first_frame, lock_root, pin_feet
from .kinematics import PLANTED_HEIGHT_M, PLANTED_SPEED_MPS, planted_feet
from .rig import LEGS, SPINE_SOURCE, J, Plan, Rig, make_plan, to_armature
from .rotations import (
    EPS,
    axis_angle_matrix,
    make_continuous,
    matrix_to_quaternion,
    normalize,
    rigid,
    signed_angle,
    swing,
    yup_to_blender,
)
from .skeleton import FPS

SOURCE_FPS = float(FPS)


@dataclass
class RetargetOptions:
    """How the motion is placed on the target.

    root_motion: "full" (travel as generated), "in_place" (horizontal travel
    removed, vertical kept) or "axes" (``root_axes`` picks the world X, Y, Z
    components kept); scale_by_leg_length: scale the motion by target leg /
    generated leg length (times ``scale``); ground_snap: shift vertically so
    planted feet sit at the target's rest foot heights; pin_feet: two-bone IK
    on contact frames so feet do not slide; contact_speed (m/s) and
    contact_height (m above the clip's lowest point, both of the unscaled
    generated motion) detect contacts (``kinematics.planted_feet``, the rule the
    server's ``foot_contacts`` use) when none are given; pin_blend: frames over
    which pinning fades in and out; world_xy: the generated ground track is
    already in the world (a control take: path or key poses sent in world
    metres / ``scale``, see ``control_input``), so it is kept (times ``scale``,
    about the world origin) instead of starting at the rig's rest hips;
    lock_travel: foot locking may shorten the horizontal travel (off for
    control takes, whose root must stay on the path / keys). "root_track"
    bakes the body like "full"; ``control_bake`` moves its travel onto a root
    track. Pinning first moves the whole body against
    the slide of its planted feet and, with ground_snap, to keep them on the
    ground (``feet.lock_root``: no bone turns), so the leg IK bends the legs
    only for what is left. keep_first: frames (20 fps) over which the rigid
    hip shifts of snapping and pinning fade out toward frame 0, so frame 0 keeps the solved hips (a
    take continuing from the rig's pose starts exactly in it; 0 = off).
    """

    root_motion: str = "full"
    root_axes: tuple[bool, bool, bool] = (True, True, True)
    scale_by_leg_length: bool = True
    scale: float = 1.0
    ground_snap: bool = True
    pin_feet: bool = True
    contact_speed: float = PLANTED_SPEED_MPS
    contact_height: float = PLANTED_HEIGHT_M
    pin_blend: int = 3
    world_xy: bool = False
    lock_travel: bool = True
    keep_first: int = 0

    def kept_axes(self) -> np.ndarray:
        """(3,) bool: which world axes of the root path are kept."""
        if self.root_motion in ("full", "root_track"):
            return np.ones(3, bool)
        if self.root_motion == "in_place":
            return np.array([False, False, True])
        if self.root_motion == "axes":
            return np.array(self.root_axes, bool)
        raise ValueError(f"root_motion must be 'full', 'in_place', 'axes' or 'root_track', not {self.root_motion!r}")


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
    start = np.zeros(2) if options.world_xy else rest_hips[:2] - scale * pelvis[0, :2]
    path[:, :2] = start + scale * pelvis[:, :2]
    path[:, 2] = obj[2, 3] + scale * pelvis[:, 2]
    kept = options.kept_axes()
    path[:, ~kept] = rest_hips[~kept]
    return scale * (world - pelvis[:, None]) + path[:, None]


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
    local_dir = normalize(rest_rot.T @ (chain.knots[si + 1] - chain.knots[si]))
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


def basis_from_pose(plan: Plan, pose: np.ndarray) -> np.ndarray:
    """``matrix_basis`` (F, B, 4, 4) reproducing armature-space poses (F, B, 4, 4)."""
    out = np.empty_like(pose)
    local_inv = np.linalg.inv(plan.local_rest)
    for b, p in enumerate(plan.rig.parents):
        parent_inv = np.eye(4) if p < 0 else np.linalg.inv(pose[:, p])
        out[:, b] = local_inv[b] @ parent_inv @ pose[:, b]
    return out


# ------------------------------------------------------------------ top level

@dataclass
class RetargetResult:
    """Pose channels for Blender plus diagnostics.

    quaternions: (F, B, 4) ``rotation_quaternion`` (w, x, y, z), sign-continuous
    over frames; locations: (F, B, 3) ``location`` (bone rest frame, armature
    units); driven: (B,) bool, bones whose rotation the motion sets; root:
    bone whose location is keyed (-1 none); pose: (F, B, 4, 4) armature-space
    pose matrices; contacts: (F, 4) bool (``kinematics.FOOT_JOINTS``); placed: (F, 22, 3)
    generated joints placed in the world (world units, before foot pinning);
    scale: the factor applied to the generated motion; properties: extra
    channels to key, (data_path, index, group, values (F,)), e.g. a control
    rig's IK/FK switches; deform_map: joint -> the bone that moves the mesh
    there (None: the bone map itself).
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
    properties: list[tuple[str, int, str, np.ndarray]] = field(default_factory=list)
    deform_map: dict[str, str] | None = None


def retarget(joints: np.ndarray, rig: Rig, bone_map: dict[str, str], options: RetargetOptions | None = None,
             contacts: np.ndarray | None = None) -> RetargetResult:
    """Retarget a generated motion onto a rig.

    joints: (F, 22, 3) metres, Y up (the server's output); bone_map: source
    joint -> bone name; contacts: optional (F, 4) bool in ``FOOT_JOINTS``
    order, e.g. the server's ``foot_contacts`` (``planted_feet`` of the
    unscaled motion when None, the same rule).
    """
    options = options or RetargetOptions()
    plan = make_plan(rig, bone_map)
    joints = np.asarray(joints, float)
    if contacts is None:
        contacts = planted_feet(joints, SOURCE_FPS, options.contact_speed, options.contact_height)
    world = yup_to_blender(joints)
    contacts = np.asarray(contacts, bool)
    scale = motion_scale(plan, world, options)
    placed = place_source(plan, world, scale, options)
    pose = solved = solve_pose(plan, to_armature(plan, placed))
    if options.ground_snap:
        pose = ground_snap(plan, pose, contacts)
    if options.pin_feet:
        kept = options.kept_axes() & np.array([options.lock_travel, options.lock_travel, True])
        pose = lock_root(plan, pose, contacts, kept, options.ground_snap, 2 * options.pin_blend + 1)
        pose = pin_feet(plan, pose, contacts, options.pin_blend)
    pose = keep_first_frame(plan, solved, pose, options.keep_first)
    basis = basis_from_pose(plan, pose)
    quats = make_continuous(matrix_to_quaternion(basis[..., :3, :3]))
    driven = np.zeros(len(rig.names), bool)
    driven[list(plan.bone_of.values()) + list(plan.chain_of)] = True
    return RetargetResult(list(rig.names), quats, basis[..., :3, 3], driven, plan.root, pose, contacts, placed,
                          scale)


def frame_times(frames: int, scene_fps: float, start: float = 1.0, fps: float = SOURCE_FPS) -> np.ndarray:
    """Scene frame numbers (frames,) of motion frames played at ``fps`` in a scene at ``scene_fps``."""
    return start + np.arange(frames) * (scene_fps / fps)
