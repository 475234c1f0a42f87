"""A low-poly mannequin body for any 22-joint rest pose, built in code (numpy only; no model files, no assets).

``mannequin_mesh(joints)`` takes the rest positions of the 22 joints (SMPL
order, ``skeleton.JOINT_NAMES``) in any frame and any unit (an armature's own
space: metres Z up for the ReAlign skeleton, centimetres Y up for a Mixamo
rig) and returns a ``BodyMesh``: vertices, faces and per-vertex weights over
the 22 joints.  Column ``j`` of the weights means "the bone mapped to joint
``j``", the bone whose head sits at that joint (on the ReAlign skeleton the
bone named like the joint), so a thigh is weighted to ``left_hip``, a shin
to ``left_knee``, a hand to ``left_wrist``.

The body is lofted from elliptical rings: a torso through pelvis, spine and
neck (rings at joints are shared half and half by the bones meeting there, so
the spine bends smoothly), tapered limb segments (rigid, one bone each),
collar bridges, joint balls, hands, wedge feet (the ball of the foot blends
ankle and toe), a neck, and a head with a nose showing the facing.  Sizes are
proportional to the rig's leg length, so the same code fits any proportions
and units.  The body's up / left / forward directions come from the joints
(pelvis -> neck, right hip -> left hip), never from the armature's axes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .skeleton import JOINT_INDEX as J
from .skeleton import NUM_JOINTS, PARENTS

SEGMENTS = 10  # vertices per ring
REFERENCE_LEG_M = 0.826  # thigh + shin of the ReAlign skeleton (metres): sizes below are for this leg
BODY, ACCENT = 0, 1  # material slots: body shell, joint balls and nose
REQUIRED = ("pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
            "left_shoulder", "right_shoulder", "left_elbow", "right_elbow")


@dataclass
class BodyMesh:
    """A skinned body: ``verts`` (V, 3) in the joints' frame and unit, ``faces`` (F, 4) vertex indices
    (triangles repeat their last index), ``weights`` (V, 22) rows summing to 1 over the joints' bones,
    ``material`` (F,) slot per face (``BODY`` or ``ACCENT``)."""

    verts: np.ndarray
    faces: np.ndarray
    weights: np.ndarray
    material: np.ndarray

    def face_lists(self) -> list[list[int]]:
        """Faces as index lists for ``Mesh.from_pydata`` (triangles get 3 indices)."""
        return [list(dict.fromkeys(f.tolist())) for f in self.faces]


@dataclass
class BodyFrame:
    """Unit up / left / forward directions of a body in its rest pose, and its size ``s`` (joint units per
    metre of the reference leg: 1.0 for the ReAlign skeleton, about 100 for a rig in centimetres)."""

    up: np.ndarray
    left: np.ndarray
    forward: np.ndarray
    s: float


class _Builder:
    """Accumulates lofted parts into one mesh."""

    def __init__(self):
        self.verts, self.faces, self.weights, self.material = [], [], [], []
        self.count = 0

    def loft(self, centres, axis_u, radii_u, radii_v, weights, material=BODY, poles=(None, None)) -> None:
        """Rings around the polyline ``centres`` (R, 3); ``axis_u`` (R, 3) or (3,) the direction of ``radii_u``
        (the other radius lies along tangent x axis_u); ``weights`` (R, 22) per ring; ``poles`` optional
        cap points before the first and after the last ring (None: open end)."""
        centres = np.asarray(centres, float)
        rings = len(centres)
        if rings < 2:
            raise ValueError("a loft needs at least two rings")
        tangents = np.gradient(centres, axis=0)
        axis_u = np.broadcast_to(np.asarray(axis_u, float), centres.shape)
        theta = 2 * np.pi * np.arange(SEGMENTS) / SEGMENTS
        ring_verts = []
        for r in range(rings):
            t = _unit(tangents[r])
            u = _unit(axis_u[r] - np.dot(axis_u[r], t) * t)
            v = np.cross(t, u)
            ring_verts.append(centres[r] + np.outer(np.cos(theta) * radii_u[r], u)
                              + np.outer(np.sin(theta) * radii_v[r], v))
        base = self.count
        verts = list(ring_verts)
        weights = [np.repeat(np.asarray(weights[r], float)[None], SEGMENTS, 0) for r in range(rings)]
        faces = []
        for r in range(rings - 1):
            for k in range(SEGMENTS):
                a, b = base + r * SEGMENTS + k, base + r * SEGMENTS + (k + 1) % SEGMENTS
                faces.append((a, b, b + SEGMENTS, a + SEGMENTS))
        next_index = base + rings * SEGMENTS
        for end, pole in enumerate(poles):
            if pole is None:
                continue
            ring = 0 if end == 0 else rings - 1
            verts.append(np.asarray(pole, float)[None])
            weights.append(np.asarray(weights[ring][:1]))
            for k in range(SEGMENTS):
                a, b = base + ring * SEGMENTS + k, base + ring * SEGMENTS + (k + 1) % SEGMENTS
                faces.append((next_index, b, a, a) if end == 0 else (next_index, a, b, b))
            next_index += 1
        self.verts += verts
        self.weights += weights
        self.faces += faces
        self.material += [material] * len(faces)
        self.count = next_index

    def tube(self, a, b, radii, weight, ref, material=BODY, overshoot: float = 0.5) -> None:
        """A capped tapered segment from ``a`` to ``b`` with ring radii ``radii`` (evenly spaced), rigid."""
        a, b = np.asarray(a, float), np.asarray(b, float)
        d = _unit(b - a)
        fractions = np.linspace(0.0, 1.0, len(radii))
        centres = a + np.outer(fractions, b - a)
        radii = np.asarray(radii, float)
        poles = (a - d * overshoot * radii[0], b + d * overshoot * radii[-1])
        self.loft(centres, _perpendicular(d, ref), radii, radii, [weight] * len(radii), material, poles)

    def ellipsoid(self, centre, axis, ref, radius_axis, radius_u, radius_v, weight, material=BODY,
                  rings: int = 6) -> None:
        """An ellipsoid with semi-axes ``radius_axis`` along ``axis``, ``radius_u`` along ``ref`` (made
        perpendicular), ``radius_v`` along the third direction; rigid."""
        axis = _unit(np.asarray(axis, float))
        phi = np.pi * np.arange(1, rings) / rings
        centres = np.asarray(centre, float) - np.outer(np.cos(phi) * radius_axis, axis)
        sin = np.sin(phi)
        poles = (centre - axis * radius_axis, centre + axis * radius_axis)
        self.loft(centres, _perpendicular(axis, ref), radius_u * sin, radius_v * sin, [weight] * len(phi),
                  material, poles)

    def mesh(self) -> BodyMesh:
        return BodyMesh(np.concatenate(self.verts), np.array(self.faces, dtype=np.int64),
                        np.concatenate(self.weights), np.array(self.material, dtype=np.int64))


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, float)
    n = np.linalg.norm(v)
    return v / n if n > 1e-12 else np.array([1.0, 0.0, 0.0])


def _perpendicular(d: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``ref`` made perpendicular to the unit ``d`` (another axis when they are parallel)."""
    p = np.asarray(ref, float) - np.dot(ref, d) * d
    if np.linalg.norm(p) < 1e-6 * max(1.0, np.linalg.norm(ref)):
        p = np.cross(d, [1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.cross(d, [0.0, 1.0, 0.0])
    return _unit(p)


def one_hot(joint: str) -> np.ndarray:
    """(22,) weight row of one joint's bone."""
    w = np.zeros(NUM_JOINTS)
    w[J[joint]] = 1.0
    return w


def blend(*pairs: tuple[str, float]) -> np.ndarray:
    """(22,) weight row mixing joints' bones, e.g. blend(("pelvis", 0.5), ("spine1", 0.5))."""
    return sum(f * one_hot(j) for j, f in pairs)


def body_frame(joints: np.ndarray) -> BodyFrame:
    """Directions and size of a rest pose (22, 3) (see ``BodyFrame``)."""
    up = _unit(joints[J["neck"]] - joints[J["pelvis"]])
    left = _perpendicular(up, joints[J["left_hip"]] - joints[J["right_hip"]])
    legs = [np.linalg.norm(joints[J[f"{s}_hip"]] - joints[J[f"{s}_knee"]])
            + np.linalg.norm(joints[J[f"{s}_knee"]] - joints[J[f"{s}_ankle"]]) for s in ("left", "right")]
    return BodyFrame(up, left, np.cross(left, up), float(np.mean(legs)) / REFERENCE_LEG_M)


def complete_joints(joints: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Rest joints (22, 3) with absent ones (``present`` (22,) False) placed from the present ones.

    The joints of ``REQUIRED`` and the neck or the head must be present; spine joints are put along
    pelvis -> neck, collars halfway from spine3 to the shoulders, wrists past the elbows, toes in front of
    the ankles, the head above the neck (or the neck below the head). Raises ValueError naming the joints.
    """
    joints, present = np.array(joints, float), np.asarray(present, bool)
    missing = [n for n in REQUIRED if not present[J[n]]]
    if not (present[J["neck"]] or present[J["head"]]):
        missing.append("neck or head")
    if missing:
        raise ValueError(f"a mannequin needs these joints mapped to bones: {', '.join(missing)}")
    pelvis = joints[J["pelvis"]]
    if not present[J["neck"]]:
        joints[J["neck"]] = pelvis + 0.85 * (joints[J["head"]] - pelvis)
    frame = body_frame(joints)
    neck = joints[J["neck"]]
    if not present[J["head"]]:
        joints[J["head"]] = neck + 0.1 * frame.s * frame.up
    for name, f in (("spine1", 0.25), ("spine2", 0.5), ("spine3", 0.65)):
        if not present[J[name]]:
            joints[J[name]] = pelvis + f * (neck - pelvis)
    for side in ("left", "right"):
        shoulder, elbow = joints[J[f"{side}_shoulder"]], joints[J[f"{side}_elbow"]]
        if not present[J[f"{side}_collar"]]:
            joints[J[f"{side}_collar"]] = joints[J["spine3"]] + 0.5 * (shoulder - joints[J["spine3"]])
        if not present[J[f"{side}_wrist"]]:
            joints[J[f"{side}_wrist"]] = elbow + 0.95 * (elbow - shoulder)
        if not present[J[f"{side}_foot"]]:
            joints[J[f"{side}_foot"]] = joints[J[f"{side}_ankle"]] + frame.s * (0.14 * frame.forward - 0.05 * frame.up)
    return joints


def owner_joints(present: np.ndarray) -> np.ndarray:
    """(22,) for each joint the nearest present joint along its parents (itself when present): the bone
    that carries the weights of an absent joint's parts."""
    owner = np.arange(NUM_JOINTS)
    for j in range(NUM_JOINTS):
        k = j
        while not present[k] and PARENTS[k] >= 0:
            k = PARENTS[k]
        owner[j] = k
    return owner


def _torso(b: _Builder, p: np.ndarray, f: BodyFrame) -> None:
    """Pelvis, abdomen, chest and shoulders' top up to the neck; rings at joints blend the two bones there."""
    s, up = f.s, f.up
    hip_half = 0.5 * np.linalg.norm(p[J["left_hip"]] - p[J["right_hip"]])
    pelvis, s1, s2, s3, neck = (p[J[n]] for n in ("pelvis", "spine1", "spine2", "spine3", "neck"))
    stations = [  # centre, half width, half depth, weights
        (pelvis - 0.10 * s * up, max(hip_half + 0.03 * s, 0.11 * s), 0.085 * s, one_hot("pelvis")),
        (pelvis, max(hip_half + 0.06 * s, 0.15 * s), 0.10 * s, one_hot("pelvis")),
        ((pelvis + s1) / 2, 0.145 * s, 0.095 * s, one_hot("pelvis")),
        (s1, 0.135 * s, 0.09 * s, blend(("pelvis", 0.5), ("spine1", 0.5))),
        ((s1 + s2) / 2, 0.14 * s, 0.092 * s, one_hot("spine1")),
        (s2, 0.15 * s, 0.10 * s, blend(("spine1", 0.5), ("spine2", 0.5))),
        ((s2 + s3) / 2, 0.16 * s, 0.105 * s, one_hot("spine2")),
        (s3, 0.17 * s, 0.105 * s, blend(("spine2", 0.5), ("spine3", 0.5))),
        (s3 + 0.4 * (neck - s3), 0.165 * s, 0.10 * s, one_hot("spine3")),
        (s3 + 0.75 * (neck - s3), 0.125 * s, 0.085 * s, one_hot("spine3")),
        (neck - 0.02 * s * up, 0.07 * s, 0.06 * s, blend(("spine3", 0.6), ("neck", 0.4))),
    ]
    centres = np.array([c for c, _, _, _ in stations])
    b.loft(centres, f.left, [w for _, w, _, _ in stations], [d for _, _, d, _ in stations],
           [w for _, _, _, w in stations], poles=(centres[0] - 0.04 * s * up, None))


def _head(b: _Builder, p: np.ndarray, f: BodyFrame) -> None:
    """Neck tube, head ellipsoid and a nose pointing the way the body faces."""
    s, neck, head = f.s, p[J["neck"]], p[J["head"]]
    axis = _unit(head - neck)
    b.tube(neck - 0.05 * s * axis, head, [0.05 * s, 0.047 * s, 0.045 * s], one_hot("neck"), f.forward)
    centre = head + 0.06 * s * axis
    b.ellipsoid(centre, axis, f.left, 0.115 * s, 0.085 * s, 0.10 * s, one_hot("head"), rings=7)
    forward = _perpendicular(axis, f.forward)
    b.loft(centre + np.outer([0.07 * s, 0.09 * s], forward), f.left, [0.022 * s, 0.02 * s], [0.022 * s, 0.02 * s],
           [one_hot("head")] * 2, ACCENT, poles=(None, centre + 0.125 * s * forward))


def _arm(b: _Builder, p: np.ndarray, f: BodyFrame, side: str) -> None:
    """Collar bridge, upper arm, forearm, joint balls and a flat hand of one side."""
    s = f.s
    collar, shoulder, elbow, wrist = (p[J[f"{side}_{n}"]] for n in ("collar", "shoulder", "elbow", "wrist"))
    b.tube(collar, shoulder, [0.045 * s, 0.055 * s], one_hot(f"{side}_collar"), f.up)
    b.tube(shoulder, elbow, [0.05 * s, 0.047 * s, 0.038 * s], one_hot(f"{side}_shoulder"), f.forward)
    b.tube(elbow, wrist, [0.038 * s, 0.035 * s, 0.027 * s], one_hot(f"{side}_elbow"), f.forward)
    for joint, r in (("shoulder", 0.052), ("elbow", 0.042), ("wrist", 0.03)):
        b.ellipsoid(p[J[f"{side}_{joint}"]], f.up, f.forward, r * s, r * s, r * s, one_hot(f"{side}_{joint}"),
                    ACCENT, rings=4)
    d = _unit(wrist - elbow)
    width_axis = _perpendicular(d, f.forward)
    stations = np.array([0.015, 0.08, 0.15]) * s
    b.loft(wrist + np.outer(stations, d), width_axis, [0.032 * s, 0.047 * s, 0.042 * s],
           [0.017 * s, 0.021 * s, 0.015 * s], [one_hot(f"{side}_wrist")] * 3,
           poles=(wrist, wrist + 0.19 * s * d))


def _leg(b: _Builder, p: np.ndarray, f: BodyFrame, side: str) -> None:
    """Thigh, shin, knee and ankle balls, and a wedge foot of one side."""
    s = f.s
    hip, knee, ankle, toe = (p[J[f"{side}_{n}"]] for n in ("hip", "knee", "ankle", "foot"))
    thigh = _unit(knee - hip)
    b.tube(hip - 0.04 * s * thigh, knee, [0.082 * s, 0.085 * s, 0.068 * s, 0.052 * s], one_hot(f"{side}_hip"),
           f.forward)
    b.tube(knee, ankle, [0.052 * s, 0.055 * s, 0.042 * s, 0.034 * s], one_hot(f"{side}_knee"), f.forward)
    b.ellipsoid(knee, f.up, f.forward, 0.058 * s, 0.058 * s, 0.058 * s, one_hot(f"{side}_knee"), ACCENT, rings=4)
    b.ellipsoid(ankle, f.up, f.forward, 0.04 * s, 0.04 * s, 0.04 * s, one_hot(f"{side}_ankle"), ACCENT, rings=4)
    _foot(b, ankle, toe, f, side)


def _foot(b: _Builder, ankle: np.ndarray, toe: np.ndarray, f: BodyFrame, side: str) -> None:
    """A foot lofted from heel to toe tip along the ankle -> toe direction in the ground plane."""
    s, up = f.s, f.up
    ahead = (toe - ankle) - np.dot(toe - ankle, up) * up
    length = float(np.linalg.norm(ahead))
    forward = ahead / length if length > 1e-9 else f.forward
    sole = min(np.dot(toe, up) - 0.03 * s, np.dot(ankle, up) - 0.075 * s)
    ankle_h = np.dot(ankle, up)
    # distance ahead of the ankle, top height above the sole, half width, weights
    stations = [(-0.055 * s, ankle_h - sole - 0.01 * s, 0.033 * s, one_hot(f"{side}_ankle")),
                (0.0, ankle_h - sole + 0.01 * s, 0.04 * s, one_hot(f"{side}_ankle")),
                (0.5 * length, 0.5 * (ankle_h - sole) + 0.025 * s, 0.045 * s, one_hot(f"{side}_ankle")),
                (length, 0.045 * s, 0.047 * s, blend((f"{side}_ankle", 0.5), (f"{side}_foot", 0.5))),
                (length + 0.045 * s, 0.03 * s, 0.04 * s, one_hot(f"{side}_foot"))]
    base = ankle - np.dot(ankle, up) * up + sole * up
    centres = np.array([base + x * forward + 0.5 * h * up for x, h, _, _ in stations])
    b.loft(centres, up, [0.5 * h for _, h, _, _ in stations], [w for _, _, w, _ in stations],
           [w for _, _, _, w in stations], poles=(centres[0] - 0.02 * s * forward, centres[-1] + 0.02 * s * forward))


def mannequin_mesh(joints: np.ndarray, present: np.ndarray | None = None) -> BodyMesh:
    """The mannequin for rest joints (22, 3) (see the module docstring).

    present: (22,) bool, joints the rig has (default all); absent joints are placed by ``complete_joints``
    and their parts weighted to the nearest present parent joint's bone.
    """
    joints = np.asarray(joints, float)
    if joints.shape != (NUM_JOINTS, 3) or not np.all(np.isfinite(joints)):
        raise ValueError(f"rest joints must be a finite ({NUM_JOINTS}, 3) array, got shape {joints.shape}")
    present = np.ones(NUM_JOINTS, bool) if present is None else np.asarray(present, bool)
    p = complete_joints(joints, present)
    f = body_frame(p)
    b = _Builder()
    _torso(b, p, f)
    _head(b, p, f)
    for side in ("left", "right"):
        _arm(b, p, f, side)
        _leg(b, p, f, side)
    mesh = b.mesh()
    owner = owner_joints(present)
    weights = np.zeros_like(mesh.weights)
    for j in range(NUM_JOINTS):
        weights[:, owner[j]] += mesh.weights[:, j]
    mesh.weights = weights / weights.sum(1, keepdims=True)
    return mesh
