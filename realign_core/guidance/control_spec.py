"""What a user asks for beyond text: a root path, keyed poses, a loop -- validated, and placed.

Inputs are in the user's *world* frame (metres, Y up, 20 fps, 22 joints):

* ``Path``: the pelvis's ground track, XZ per frame (``Path.per_frame``) or control points with times
  (``Path.from_points`` resamples them linearly at 20 fps);
* ``Keyframes``: joint positions (K, 22, 3) at chosen frames (continue-from = a pose at frame 0,
  end-in = a pose at the last frame, in-between = several);
* ``PartLayer``: a body part's motion taken from another motion (e.g. the right arm of "a person waves"
  on a walk): per frame, the offsets of the part's joints from the joint it hangs from, in the body's
  facing frame (so they move with the character wherever it walks or turns);
* ``ControlSpec``: any of these, plus ``loop`` (the last frame flows into the first) and
  ``foot_weight`` (planted feet do not slide: the foot-contact cost's weight relative to the others,
  0 = off, 1 = as hard as a path).

A generated motion lives in its *canonical* frame (frame 0: pelvis at X = Z = 0, facing +Z; see
``realign_core.motion.features``).  ``Placement`` (origin XZ, yaw) maps canonical -> world:
``world = R_y(yaw) canonical + (ox, 0, oz)``; yaw is about +Y, 0 = facing +Z, positive toward +X.
``ControlSpec.placement()`` chooses it: the frame-0 key pose when there is one (its pelvis XZ and
hips-and-shoulders facing), else the path's start and initial direction, else the identity.
The costs in :mod:`realign_core.guidance.constraints` compare canonical motions with targets brought
into the canonical frame by ``Placement.to_canonical``.

Every check raises ``ValueError`` naming the field and the bad value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from realign_core.motion.skeleton import FACE_JOINTS, FPS, JOINT_INDEX, NUM_JOINTS

MIN_TURN_DISTANCE = 0.05   # m: the path's initial direction is read from the first point this far from its start
MAX_COORD = 1000.0         # m: anything further is a unit mistake


def _finite_array(value, name: str, shape_tail: tuple[int, ...]) -> np.ndarray:
    """``value`` as float64 of shape (N, *shape_tail), all finite and within +-MAX_COORD."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers of shape (N, {', '.join(map(str, shape_tail))}), "
                         f"got {str(value)[:60]}") from None
    if arr.ndim != 1 + len(shape_tail) or arr.shape[1:] != shape_tail or arr.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, {', '.join(map(str, shape_tail))}) with N >= 1, "
                         f"got {arr.shape}")
    bad = ~np.isfinite(arr) | (np.abs(arr) > MAX_COORD)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}{list(index)} must be a finite number of metres within +-{MAX_COORD:g}, "
                         f"got {arr[index]}")
    return arr


@dataclass(frozen=True)
class Placement:
    """Canonical -> world: rotate about +Y by ``yaw`` (rad), then move by ``origin`` (x, z) metres."""

    origin: tuple[float, float] = (0.0, 0.0)
    yaw: float = 0.0

    def to_world(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) canonical -> (..., 3) world."""
        out = _rotate_y(np.asarray(points, dtype=np.float64), self.yaw)
        out[..., 0] += self.origin[0]
        out[..., 2] += self.origin[1]
        return out

    def to_canonical(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) world -> (..., 3) canonical."""
        moved = np.array(points, dtype=np.float64, copy=True)
        moved[..., 0] -= self.origin[0]
        moved[..., 2] -= self.origin[1]
        return _rotate_y(moved, -self.yaw)

    def xz_to_canonical(self, xz: np.ndarray) -> np.ndarray:
        """(..., 2) world ground points -> (..., 2) canonical."""
        xz = np.asarray(xz, dtype=np.float64)
        full = np.stack([xz[..., 0], np.zeros_like(xz[..., 0]), xz[..., 1]], axis=-1)
        return self.to_canonical(full)[..., [0, 2]]


def _rotate_y(v: np.ndarray, yaw: float) -> np.ndarray:
    """Rotate (..., 3) about +Y by yaw (0 = +Z stays +Z; +pi/2 takes +Z to +X)."""
    c, s = math.cos(yaw), math.sin(yaw)
    out = np.array(v, dtype=np.float64, copy=True)
    out[..., 0] = v[..., 0] * c + v[..., 2] * s
    out[..., 2] = v[..., 2] * c - v[..., 0] * s
    return out


def facing_of_pose(pose: np.ndarray) -> float:
    """Yaw (rad) of a (22, 3) pose's hips-and-shoulders facing, as HumanML3D canonicalises frame 0."""
    r_hip, l_hip, r_sho, l_sho = FACE_JOINTS
    across = (pose[r_hip] - pose[l_hip]) + (pose[r_sho] - pose[l_sho])
    forward = np.cross([0.0, 1.0, 0.0], across)
    if math.hypot(forward[0], forward[2]) < 1e-9:
        return 0.0
    return math.atan2(forward[0], forward[2])


@dataclass(frozen=True)
class Path:
    """The pelvis's ground track: ``xz`` (N, 2) metres at frames 0..N-1 (20 fps), world frame."""

    xz: np.ndarray

    @classmethod
    def per_frame(cls, xz, name: str = "path") -> Path:
        return cls(_finite_array(xz, name, (2,)))

    @classmethod
    def from_points(cls, points, times, name: str = "path") -> Path:
        """Control points (K, 2) m at ``times`` (K,) seconds (strictly increasing, first 0) -> per frame."""
        pts = _finite_array(points, f"{name}.points", (2,))
        t = np.asarray(times, dtype=np.float64) if times is not None else None
        if t is None or t.shape != (len(pts),):
            raise ValueError(f"{name}.times must be {len(pts)} numbers (one per point), got "
                             f"{None if t is None else t.shape}")
        if not np.all(np.isfinite(t)) or t[0] != 0 or np.any(np.diff(t) <= 0):
            raise ValueError(f"{name}.times must start at 0 and increase strictly, got {t.tolist()[:8]}")
        frames = np.arange(math.floor(t[-1] * FPS + 1e-9) + 1) / FPS
        xz = np.stack([np.interp(frames, t, pts[:, 0]), np.interp(frames, t, pts[:, 1])], axis=-1)
        return cls(xz)

    @property
    def frames(self) -> int:
        return len(self.xz)

    def start_yaw(self) -> float:
        """Direction of the path at its start (yaw about +Y); 0 when it never leaves its start."""
        away = np.linalg.norm(self.xz - self.xz[0], axis=-1) >= MIN_TURN_DISTANCE
        if not away.any():
            return 0.0
        d = self.xz[int(np.argmax(away))] - self.xz[0]
        return math.atan2(d[0], d[1])


@dataclass(frozen=True)
class Keyframes:
    """Joint positions ``joints`` (K, 22, 3) metres, world frame, at ``frames`` (K,) distinct frame indices."""

    frames: tuple[int, ...]
    joints: np.ndarray

    @classmethod
    def make(cls, frames, joints, name: str = "keyframes") -> Keyframes:
        arr = _finite_array(joints, f"{name}.joints", (NUM_JOINTS, 3))
        frames = tuple(frames)
        if len(frames) != len(arr):
            raise ValueError(f"{name}: {len(frames)} frames but {len(arr)} poses")
        for i, f in enumerate(frames):
            if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < 0:
                raise ValueError(f"{name}[{i}].frame must be a whole number >= 0, got {f!r}")
        twice = sorted({f for f in frames if frames.count(f) > 1})
        if twice:
            raise ValueError(f"{name}: frame {twice[0]} is keyed twice")
        return cls(tuple(int(f) for f in frames), arr)

    def pose_at(self, frame: int) -> np.ndarray | None:
        return self.joints[self.frames.index(frame)] if frame in self.frames else None


# A layerable body part: (the joint it hangs from, the joints that follow the layer).  The shoulder is the
# anchor (not the chest), so the layered arm always starts where the base motion's torso puts it.
BODY_PARTS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "right_arm": (("right_shoulder", ("right_elbow", "right_wrist")),),
    "left_arm": (("left_shoulder", ("left_elbow", "left_wrist")),),
    "arms": (("right_shoulder", ("right_elbow", "right_wrist")), ("left_shoulder", ("left_elbow", "left_wrist"))),
}


def part_joints(part: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(joints, their anchors) of a body part as joint indices; an unknown part names the known ones."""
    if part not in BODY_PARTS:
        raise ValueError(f"part must be one of {sorted(BODY_PARTS)}, got {part!r}")
    pairs = [(JOINT_INDEX[j], JOINT_INDEX[a]) for a, joints in BODY_PARTS[part] for j in joints]
    return tuple(j for j, _ in pairs), tuple(a for _, a in pairs)


@dataclass(frozen=True)
class PartLayer:
    """A body part's motion to layer on: ``offsets`` (N, J, 3) metres, per frame (20 fps) the part's joints
    (``part_joints(part)[0]``) minus their anchors, in the body's facing frame (HumanML3D's root-relative frame:
    +Z forward, Y up).  ``PartLayer.from_features`` reads them off a generated motion."""

    part: str
    offsets: np.ndarray

    @classmethod
    def make(cls, part: str, offsets, name: str = "part") -> PartLayer:
        joints, _ = part_joints(part)
        try:
            arr = np.asarray(offsets, dtype=np.float64)
        except (TypeError, ValueError):
            arr = np.zeros(0)
        if arr.ndim != 3 or arr.shape[1:] != (len(joints), 3) or len(arr) == 0:
            raise ValueError(f"{name}.offsets of {part!r} must have shape (N, {len(joints)}, 3) with N >= 1, "
                             f"got {arr.shape}")
        flat = _finite_array(arr.reshape(len(arr), -1), f"{name}.offsets", (3 * len(joints),))
        return cls(part, flat.reshape(arr.shape))

    @classmethod
    def from_features(cls, part: str, features: np.ndarray) -> PartLayer:
        """The layer of ``part`` in a motion's HumanML3D features (F, 263) -> F frames of offsets."""
        joints, anchors = part_joints(part)
        ric = root_relative_joints(np.asarray(features, dtype=np.float64))
        return cls.make(part, ric[:, list(joints)] - ric[:, list(anchors)])

    @property
    def frames(self) -> int:
        return len(self.offsets)


def root_relative_joints(features: np.ndarray) -> np.ndarray:
    """(F, 263) features -> (F, 22, 3) joints relative to the root's XZ in each frame's facing frame (the
    ric positions, with the root itself at (0, height, 0))."""
    ric = features[:, 4:67].reshape(len(features), NUM_JOINTS - 1, 3)
    root = np.zeros((len(features), 1, 3))
    root[:, 0, 1] = features[:, 3]
    return np.concatenate([root, ric], axis=1)


@dataclass(frozen=True)
class ControlSpec:
    """One motion's constraints (world frame).  ``strength`` scales every constraint step (0 = off);
    ``foot_weight`` scales the foot-contact cost's step on top of it (0 = off).  A ``part`` layer is set
    exactly after sampling (``control.parts.layer_part``); ``part_weight`` > 0 also pulls the decoded part
    towards it during sampling (the ``part`` cost), which makes the body follow the arm: on a walk with a
    layered wave that stopped half of the walks (docs/control.md, "Layered body parts"), so it is off by
    default."""

    path: Path | None = None
    keyframes: Keyframes | None = None
    loop: bool = False
    strength: float = 1.0
    fixed_placement: Placement | None = field(default=None)
    foot_weight: float = 0.0
    part: PartLayer | None = None
    part_weight: float = 0.0

    def __post_init__(self) -> None:
        for name, s in (("control strength", self.strength), ("foot_weight", self.foot_weight),
                        ("part_weight", self.part_weight)):
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {s!r}")

    @property
    def active(self) -> bool:
        pulled = self.part is not None and self.part_weight > 0
        wanted = self.path is not None or self.keyframes is not None or pulled or self.loop or self.foot_weight > 0
        return self.strength > 0 and wanted

    def check_frames(self, frames: int) -> None:
        """Refuse targets past the motion's last frame (``frames`` feature rows = joint frames)."""
        if self.path is not None and self.path.frames > frames + 1:   # + 1: a path may end at time = duration
            raise ValueError(f"path lasts {(self.path.frames - 1) / FPS:g} s ({self.path.frames} frames) but the "
                             f"motion has {frames} frames ({frames / FPS:g} s); give a path no longer than the motion")
        if self.keyframes is not None and max(self.keyframes.frames) >= frames:
            raise ValueError(f"keyframes frame {max(self.keyframes.frames)} is past the motion's last frame "
                             f"{frames - 1}")
        if self.part is not None and self.part.frames < frames:
            raise ValueError(f"part layer has {self.part.frames} frames but the motion has {frames}; layer a "
                             f"part motion at least as long as the motion")

    def placement(self) -> Placement:
        """Where the canonical motion goes in the world (see the module docstring)."""
        if self.fixed_placement is not None:
            return self.fixed_placement
        pose = self.keyframes.pose_at(0) if self.keyframes is not None else None
        if pose is not None:
            return Placement((float(pose[0, 0]), float(pose[0, 2])), facing_of_pose(pose))
        if self.path is not None:
            return Placement((float(self.path.xz[0, 0]), float(self.path.xz[0, 1])), self.path.start_yaw())
        return Placement()

    def canonical_path(self) -> np.ndarray | None:
        """(N, 2) path targets in the canonical frame, or None."""
        return None if self.path is None else self.placement().xz_to_canonical(self.path.xz)

    def canonical_keyframes(self) -> tuple[tuple[int, ...], np.ndarray] | None:
        """(frames, (K, 22, 3) canonical joints), or None."""
        if self.keyframes is None:
            return None
        return self.keyframes.frames, self.placement().to_canonical(self.keyframes.joints)
