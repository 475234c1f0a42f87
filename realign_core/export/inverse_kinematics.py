"""Inverse kinematics for the 22-joint skeleton: joint positions -> local rotations.

Conventions (those of ``skeleton.py``): positions ``(F, 22, 3)`` metres, world
Y up, a character facing +Z has its left side at +X; quaternions are unit
``(w, x, y, z)`` (``quaternion.py``).

**Rest pose and offsets.** ``offsets[j]`` (22, 3) is the rest vector from
``PARENTS[j]`` to joint ``j`` in world axes (all rotations identity);
``offsets[0]`` is unused by the kinematics (the root sits at
``root_translation``).  Forward kinematics (``rotations_to_joints``) is::

    world[0] = local[0];  world[j] = world[PARENTS[j]] * local[j]
    p[0] = root_translation;  p[j] = p[PARENTS[j]] + rotate(world[PARENTS[j]], offsets[j])

so ``local[j]`` rotates the bones *leaving* joint ``j`` (BVH / SMPL convention).
Any rest pose can be used (``joints_to_rotations(joints, rest_offsets)``;
the SMPL export passes the SMPL model's rest skeleton).  The default,
``tpose_offsets``, is a T-pose with the motion's own mean bone lengths:
legs and spine along -Y / +Y, feet forward (+Z), collars, arms and hands
sideways (+-X), arms straight out.  The children of the two branching
joints keep the motion's own mean arrangement: the hips and spine1 around
the pelvis, the neck and collars around spine3 (their mean offsets in the
frame the solve gives that joint), turned upright (spine1 / neck along +Y,
hip / collar line along +X).

**The solve, joint by joint (parents first).** Each non-leaf joint has a
*primary* child (``JOINT_RULES``): its rotation is the shortest-arc swing of
the rest bone onto the aim direction, expressed in the parent's frame,
followed by a twist about that bone.  The aim goes from the joint's
*reconstructed* position (forward kinematics of the rotations solved so
far) to the child's observed position, so errors do not pile up along a
chain: a joint that lands off target (a non-rigid pelvis or chest, a bone
of another length) is pulled back by the next bone.  The twist turns a
rest reference direction onto an observed one:

* pelvis: the hip line (left hip - right hip) instead of a bone, twist from
  the hips-to-pelvis directions (plus 2 % of the spine direction, which
  takes over where hips and pelvis are collinear).  Hips and pelvis are
  rigid in mocap-derived data, so the legs are exact, while spine1 (which
  CMU-derived data place on the pelvis-chest line, so it follows the chest)
  is approximate and corrected by the spine above;
* spine1 / spine2: a blend of the hip line (left hip - right hip) and the
  collar line (left collar - right collar), 2/3 + 1/3 then 1/3 + 2/3,
  spreading torso twist over the spine;
* spine3 (chest): primary the neck, twist from the collar line;
* hips / shoulders: the limb's bending plane (hip-knee-ankle,
  shoulder-elbow-wrist).  Rest bend direction: knees bend backwards (-Z),
  elbows forwards (+Z).  The twist is made consistent over time
  (``_limb_twist``): near a straight limb the plane is undefined, so below
  20 degrees of bend the twist moves less and less towards the reading and
  below 5 degrees it holds its previous value; under 45 degrees the plane
  may also be a hyperextension (bent the wrong way), so of the two readings
  (twist, twist + 180 degrees) the one closer to the previous frame's is
  taken: no sudden half turns;
* neck, collars, knees, elbows, ankles: no observable twist, so zero twist
  relative to the parent (the shortest arc); knees and elbows then bend like
  hinges in the plane their parent's twist chose;
* leaves (head, feet/toes, wrists) have no child: identity local rotation
  (they follow their parent; a head's yaw or a hand's twist cannot be
  observed from joint positions).

For rigid input with the rest skeleton's bone lengths, forward kinematics
reproduces the joints to rounding; otherwise each joint is off by about
the mismatch of its own bone (not the sum over the chain); see
``tests/test_motion_export.py`` and ``docs/formats.md`` for measured errors.
Quaternions are made continuous over time (``make_continuous``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from realign_core.motion import quaternion as Q
from realign_core.motion.skeleton import JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, PARENTS, bone_lengths

_J = JOINT_INDEX
LEAVES: tuple[int, ...] = tuple(j for j in range(NUM_JOINTS) if j not in PARENTS)

# Unit rest direction of every bone (parent -> joint) in the default T-pose.
# The children of BRANCHES (hips, spine1, neck, collars) get the motion's
# own mean arrangement instead (``tpose_offsets``).
TPOSE_DIRECTIONS = np.array([
    [0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0],
    [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1],
    [0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [1, 0, 0], [-1, 0, 0],
    [1, 0, 0], [-1, 0, 0], [1, 0, 0], [-1, 0, 0],
], dtype=np.float64)

HIP_LINE = (_J["left_hip"], _J["right_hip"])
COLLAR_LINE = (_J["left_collar"], _J["right_collar"])
# Branching joints: (child that points up, line that points to +X) in the T-pose.
BRANCHES: dict[int, tuple[int, tuple[int, int]]] = {
    _J["pelvis"]: (_J["spine1"], HIP_LINE), _J["spine3"]: (_J["neck"], COLLAR_LINE)}

LIMB_FADE_DEG = (5.0, 20.0)     # twist fades in between these bend angles
HYPEREXTENSION_MAX_DEG = 45.0   # below this bend, the bend may be a reversed one (hyperextension)
# Weight of the spine in the pelvis's twist reference, against the two
# hip -> pelvis directions (weight 1 each); it matters only where the hips
# and the pelvis are (nearly) collinear.
PELVIS_SPINE_WEIGHT = 0.02
_EPS = 1e-9


@dataclass(frozen=True)
class JointRule:
    """How one non-leaf joint's rotation is solved.

    child: the primary child, whose bone direction is matched exactly
        (aimed from the joint's reconstructed position); unused with
        ``primary_line``.
    primary_line: (a, b): match the direction a - b instead of the bone to
        ``child`` (the pelvis: its hip line).
    lines: twist from a weighted blend of joint-pair lines ((a, b, weight): a - b).
    bend: twist from a limb's bending plane: (grandchild, rest bend direction),
        the bend being the grandchild bone's component perpendicular to the
        primary bone.
    Neither: zero twist relative to the parent.
    """

    child: int
    primary_line: tuple[int, int] | None = None
    lines: tuple[tuple[int, int, float], ...] = ()
    bend: tuple[int, tuple[float, float, float]] | None = None


def _limb(child: str, grandchild: str, bend: tuple[float, float, float]) -> JointRule:
    return JointRule(_J[child], bend=(_J[grandchild], bend))


JOINT_RULES: dict[int, JointRule] = {
    _J["pelvis"]: JointRule(_J["spine1"], primary_line=HIP_LINE, lines=(
        (_J["pelvis"], _J["left_hip"], 1.0), (_J["pelvis"], _J["right_hip"], 1.0),
        (_J["spine1"], _J["pelvis"], PELVIS_SPINE_WEIGHT))),
    _J["spine1"]: JointRule(_J["spine2"], lines=((*HIP_LINE, 2 / 3), (*COLLAR_LINE, 1 / 3))),
    _J["spine2"]: JointRule(_J["spine3"], lines=((*HIP_LINE, 1 / 3), (*COLLAR_LINE, 2 / 3))),
    _J["spine3"]: JointRule(_J["neck"], lines=((*COLLAR_LINE, 1.0),)),
    _J["neck"]: JointRule(_J["head"]),
    _J["left_hip"]: _limb("left_knee", "left_ankle", (0.0, 0.0, -1.0)),
    _J["right_hip"]: _limb("right_knee", "right_ankle", (0.0, 0.0, -1.0)),
    _J["left_knee"]: JointRule(_J["left_ankle"]),
    _J["right_knee"]: JointRule(_J["right_ankle"]),
    _J["left_ankle"]: JointRule(_J["left_foot"]),
    _J["right_ankle"]: JointRule(_J["right_foot"]),
    _J["left_collar"]: JointRule(_J["left_shoulder"]),
    _J["right_collar"]: JointRule(_J["right_shoulder"]),
    _J["left_shoulder"]: _limb("left_elbow", "left_wrist", (0.0, 0.0, 1.0)),
    _J["right_shoulder"]: _limb("right_elbow", "right_wrist", (0.0, 0.0, 1.0)),
    _J["left_elbow"]: JointRule(_J["left_wrist"]),
    _J["right_elbow"]: JointRule(_J["right_wrist"]),
}


class IKResult(NamedTuple):
    """Output of ``joints_to_rotations`` (unpacks as a 3-tuple).

    root_translation: (F, 3) pelvis position, metres.
    rotations: (F, 22, 4) local rotations, unit quaternions (w, x, y, z),
        continuous over time; joint 0 is the root's world rotation.
    offsets: (22, 3) rest offsets, metres (``offsets[0]`` unused).
    """

    root_translation: np.ndarray
    rotations: np.ndarray
    offsets: np.ndarray


# --------------------------------------------------------------------------
# Input checks and small vector helpers
# --------------------------------------------------------------------------

def check_joints(joints: np.ndarray, name: str = "joints") -> np.ndarray:
    """Validate joint positions; (F, 22, 3) -> float64 copy.

    Raises ValueError naming the problem: wrong shape, no frames, NaN or
    infinite values (with the first frame and joint), coinciding joints.
    """
    arr = np.asarray(joints, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"{name} must have shape (F, {NUM_JOINTS}, 3), got {arr.shape}")
    if arr.shape[0] < 1:
        raise ValueError(f"{name} has no frames")
    bad = ~np.isfinite(arr)
    if bad.any():
        f, j, _ = np.argwhere(bad)[0]
        raise ValueError(f"{name} contain NaN or infinite values "
                         f"(first at frame {f}, joint {JOINT_NAMES[j]})")
    lengths = bone_lengths(arr)[:, 1:]
    if np.any(lengths < 1e-6):
        f, j = np.argwhere(lengths < 1e-6)[0]
        raise ValueError(f"{name}: bone {JOINT_NAMES[PARENTS[j + 1]]} -> {JOINT_NAMES[j + 1]} "
                         f"has zero length at frame {f}")
    return arr.copy()


def check_offsets(offsets: np.ndarray, name: str = "rest offsets") -> np.ndarray:
    """Validate rest offsets; (22, 3) -> float64 copy (non-zero, finite bones)."""
    arr = np.asarray(offsets, dtype=np.float64)
    if arr.shape != (NUM_JOINTS, 3):
        raise ValueError(f"{name} must have shape ({NUM_JOINTS}, 3), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contain NaN or infinite values")
    short = np.linalg.norm(arr[1:], axis=-1) < 1e-6
    if short.any():
        raise ValueError(f"{name}: bone to {JOINT_NAMES[int(np.argmax(short)) + 1]} has zero length")
    return arr.copy()


def _unit(v: np.ndarray) -> np.ndarray:
    """Unit vectors (..., 3); zero vectors stay zero."""
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, _EPS)


def _perpendicular(v: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Component of v (..., 3) perpendicular to the unit axis (..., 3)."""
    return v - np.sum(v * axis, axis=-1, keepdims=True) * axis


def _axis_angle(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Quaternions (..., 4) of rotations by angle (...) rad about unit axis (..., 3)."""
    half = 0.5 * angle[..., None]
    return np.concatenate([np.cos(half), np.sin(half) * axis], axis=-1)


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 below lo, 1 above hi, cubic in between."""
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


# --------------------------------------------------------------------------
# Rest skeleton
# --------------------------------------------------------------------------

def rest_positions(offsets: np.ndarray) -> np.ndarray:
    """Rest joint positions (22, 3) of rest offsets (22, 3), root at offsets[0]."""
    pos = np.zeros((NUM_JOINTS, 3))
    pos[0] = offsets[0]
    for j in range(1, NUM_JOINTS):
        pos[j] = pos[PARENTS[j]] + offsets[j]
    return pos


def offsets_from_rest_joints(rest_joints: np.ndarray) -> np.ndarray:
    """Rest offsets (22, 3) of rest joint positions (22 or more, 3); offsets[0] = root position."""
    rest = np.asarray(rest_joints, dtype=np.float64)
    if rest.ndim != 2 or rest.shape[0] < NUM_JOINTS or rest.shape[1] != 3:
        raise ValueError(f"rest joints must have shape ({NUM_JOINTS}, 3) or (24, 3), got {rest.shape}")
    rest = rest[:NUM_JOINTS]
    offsets = rest - rest[[max(p, 0) for p in PARENTS]]
    offsets[0] = rest[0]
    return check_offsets(offsets)


def _frames(up: np.ndarray, across: np.ndarray) -> np.ndarray:
    """Orthonormal frames (..., 3, 3), columns (x, y, z): y along ``up``,
    x along ``across`` made perpendicular to y, z = x cross y."""
    y = _unit(up)
    x = _unit(_perpendicular(across, y))
    return np.stack([x, y, np.cross(x, y)], axis=-1)


def _rule_frames(joints: np.ndarray, joint: int) -> np.ndarray:
    """Frames (F, 3, 3) a joint's rule defines: up = primary bone, across = twist reference."""
    return _frames(_primary(JOINT_RULES[joint], joint, joints), _line_vector(JOINT_RULES[joint].lines, joints))


def _primary(rule: JointRule, joint: int, positions: np.ndarray) -> np.ndarray:
    """The vector a rule's primary direction follows, of positions (..., 22, 3) -> (..., 3)."""
    a, b = rule.primary_line or (rule.child, joint)
    return positions[..., a, :] - positions[..., b, :]


def tpose_offsets(joints: np.ndarray) -> np.ndarray:
    """Default rest offsets (22, 3) m: a T-pose with the motion's mean bone lengths.

    joints: (F, 22, 3) m.  Bones follow ``TPOSE_DIRECTIONS``, except the
    children of the branching joints (``BRANCHES``): their offsets are their
    mean position in the frame the solve gives the branching joint, turned
    so that the up child lies on +Y and the across line on +X, rescaled to
    the mean bone length.
    """
    joints = check_joints(joints)
    lengths = bone_lengths(joints).mean(axis=0)
    offsets = TPOSE_DIRECTIONS * lengths[:, None]
    for joint, (up, (left, right)) in BRANCHES.items():
        frames = _rule_frames(joints, joint)
        children = [c for c in range(NUM_JOINTS) if PARENTS[c] == joint]
        local = {c: np.einsum("fij,fi->fj", frames, joints[:, c] - joints[:, joint]).mean(axis=0)
                 for c in children}
        upright = _frames(local[up], local[left] - local[right])
        for c in children:
            offsets[c] = _unit(upright.T @ local[c]) * lengths[c]
    return offsets


# --------------------------------------------------------------------------
# The solve
# --------------------------------------------------------------------------

def _line_vector(lines: tuple[tuple[int, int, float], ...], positions: np.ndarray) -> np.ndarray:
    """Weighted sum of unit lines a - b of positions (..., 22, 3) -> (..., 3)."""
    return sum(w * _unit(positions[..., a, :] - positions[..., b, :]) for a, b, w in lines)


def _bend_direction(rule: JointRule, joints: np.ndarray, bone: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Observed bend direction (F, 3) and bend sine (F,) of a limb rule.

    bone: (F, 3) unit direction of the primary bone (world).  The bend is the
    lower bone's (child -> grandchild) component perpendicular to it.
    """
    lower = joints[:, rule.bend[0]] - joints[:, rule.child]
    bend = _perpendicular(lower, bone)
    sine = np.linalg.norm(bend, axis=-1) / np.maximum(np.linalg.norm(lower, axis=-1), _EPS)
    return bend, sine


def _twist_angle(reference: np.ndarray, observed: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Signed angle (F,) about unit axis (F, 3) from reference to observed (both perpendicular to it)."""
    return np.arctan2(np.sum(axis * np.cross(reference, observed), axis=-1),
                      np.sum(reference * observed, axis=-1))


def _aim(joints: np.ndarray, origin: np.ndarray, joint: int, child: int, length: float) -> np.ndarray:
    """Unit aim (F, 3) from the reconstructed joint ``origin`` (F, 3) at the observed child.

    Falls back to the observed bone direction where the reconstructed joint
    is closer than a quarter bone length to the child (aim undefined).
    """
    aim = joints[:, child] - origin
    close = np.linalg.norm(aim, axis=-1, keepdims=True) < 0.25 * length
    return _unit(np.where(close, joints[:, child] - joints[:, joint], aim))


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Angles wrapped to [-pi, pi)."""
    return (angle + np.pi) % (2.0 * np.pi) - np.pi


def _limb_twist(observed: np.ndarray, weight: np.ndarray, ambiguous: np.ndarray) -> np.ndarray:
    """Temporally consistent limb twist (F,) rad from per-frame observations.

    observed: (F,) twist read from the bending plane; weight: (F,) trust in
    it (0 for a straight limb, 1 from a clear bend on); ambiguous: (F,) frames
    whose bend is small enough to be a hyperextension, where the plane's
    normal may be read either way (observed or observed + pi).  Each frame
    moves from the previous twist towards the observation by ``weight``
    (a straight limb holds its twist); an ambiguous frame takes the reading
    closer to the previous twist.  The start is the first observation that
    is neither faded nor ambiguous (0, i.e. zero twist, if there is none).
    """
    trusted = np.flatnonzero((weight >= 1.0) & ~ambiguous)
    previous = float(observed[trusted[0]]) if len(trusted) else 0.0
    out = np.empty_like(observed)
    for t in range(len(observed)):
        delta = _wrap(observed[t] - previous)
        if ambiguous[t] and abs(delta) > np.pi / 2:
            delta = _wrap(delta + np.pi)
        previous = previous + weight[t] * delta
        out[t] = previous
    return out


def _solve_joint(joint: int, joints: np.ndarray, rest: np.ndarray, origin: np.ndarray,
                 parent_world: np.ndarray) -> np.ndarray:
    """Local rotation (F, 4) of one non-leaf joint.

    joints: (F, 22, 3) observed; rest: (22, 3) rest positions; origin: (F, 3)
    reconstructed position of the joint; parent_world: (F, 4) world rotation
    of its parent (identity for the root).
    """
    rule = JOINT_RULES[joint]
    to_parent = Q.qinv(parent_world)
    rest_bone = _primary(rule, joint, rest)
    if rule.primary_line is None:
        bone_world = _aim(joints, origin, joint, rule.child, float(np.linalg.norm(rest_bone)))
    else:
        bone_world = _unit(_primary(rule, joint, joints))
    bone = Q.qrot(to_parent, bone_world)
    rest_bone = _unit(rest_bone)
    swing = Q.qbetween(np.broadcast_to(rest_bone, bone.shape), bone)
    if not rule.lines and rule.bend is None:
        return swing
    if rule.lines:
        observed, reference = _line_vector(rule.lines, joints), _line_vector(rule.lines, rest)
    else:
        observed, sine = _bend_direction(rule, joints, bone_world)
        reference = np.asarray(rule.bend[1], dtype=np.float64)
    reference = _unit(_perpendicular(reference, rest_bone))
    ref_now = _unit(_perpendicular(Q.qrot(swing, np.broadcast_to(reference, bone.shape)), bone))
    obs_now = _perpendicular(Q.qrot(to_parent, observed), bone)
    seen = np.linalg.norm(obs_now, axis=-1) > 1e-6
    angle = np.where(seen, _twist_angle(ref_now, _unit(obs_now), bone), 0.0)
    if rule.bend is not None:
        weight = np.where(seen, _smoothstep(sine, *np.sin(np.deg2rad(LIMB_FADE_DEG))), 0.0)
        angle = _limb_twist(angle, weight, sine < np.sin(np.deg2rad(HYPEREXTENSION_MAX_DEG)))
    return Q.qnormalize(Q.qmul(_axis_angle(bone, angle), swing))


def make_continuous(quats: np.ndarray) -> np.ndarray:
    """Pick q or -q per frame so consecutive quaternions have a non-negative dot.

    quats: (F, ..., 4) -> same; frame 0 gets w >= 0.  Same rotations.
    """
    q = np.array(quats, dtype=np.float64, copy=True)
    q *= np.where(q[:1, ..., :1] < 0, -1.0, 1.0)
    dots = np.sum(q[1:] * q[:-1], axis=-1, keepdims=True)
    q[1:] *= np.cumprod(np.where(dots < 0, -1.0, 1.0), axis=0)
    return q


def joints_to_rotations(joints: np.ndarray, rest_offsets: np.ndarray | None = None) -> IKResult:
    """Inverse kinematics of a 22-joint motion.

    joints: (F, 22, 3) metres, Y up.  rest_offsets: (22, 3) metres, the rest
    pose the rotations are relative to (default ``tpose_offsets(joints)``).
    Returns ``IKResult(root_translation (F, 3), rotations (F, 22, 4) wxyz
    local, offsets (22, 3))``; see the module docstring for the rules.
    """
    joints = check_joints(joints)
    offsets = tpose_offsets(joints) if rest_offsets is None else check_offsets(rest_offsets)
    rest = rest_positions(offsets)
    frames = len(joints)
    identity = np.broadcast_to(Q.IDENTITY, (frames, 4))
    local = np.empty((frames, NUM_JOINTS, 4))
    world = np.empty((frames, NUM_JOINTS, 4))
    recon = np.empty_like(joints)
    recon[:, 0] = joints[:, 0]
    for j in range(NUM_JOINTS):
        parent_world = identity if j == 0 else world[:, PARENTS[j]]
        if j > 0:
            recon[:, j] = recon[:, PARENTS[j]] + Q.qrot(parent_world, np.broadcast_to(offsets[j], (frames, 3)))
        local[:, j] = identity if j in LEAVES else _solve_joint(j, joints, rest, recon[:, j], parent_world)
        world[:, j] = Q.qmul(parent_world, local[:, j])
    return IKResult(joints[:, 0].copy(), make_continuous(local), offsets)


def world_rotations(rotations: np.ndarray) -> np.ndarray:
    """World rotations (F, 22, 4) of local rotations (F, 22, 4)."""
    world = np.empty_like(rotations)
    world[:, 0] = rotations[:, 0]
    for j in range(1, NUM_JOINTS):
        world[:, j] = Q.qmul(world[:, PARENTS[j]], rotations[:, j])
    return world


def rotations_to_joints(root_translation: np.ndarray, rotations: np.ndarray,
                        offsets: np.ndarray) -> np.ndarray:
    """Forward kinematics: (F, 3) m, (F, 22, 4) wxyz, (22, 3) m -> (F, 22, 3) m."""
    world = world_rotations(np.asarray(rotations, dtype=np.float64))
    pos = np.empty(world.shape[:2] + (3,))
    pos[:, 0] = root_translation
    for j in range(1, NUM_JOINTS):
        p = PARENTS[j]
        pos[:, j] = pos[:, p] + Q.qrot(world[:, p], np.broadcast_to(offsets[j], pos[:, j].shape))
    return pos
