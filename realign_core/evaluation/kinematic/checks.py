"""Rule-based kinematic checks: does a motion do what a direction/action prompt says?

A fixed set of prompts (:data:`PROMPTS`), each with a *check*: a rule on the
joint positions (no learned model).  :class:`MeasuredMotion` computes the
measurements the checks share, once each.

Conventions (as in :mod:`realign_core.data.captions.kinematic`): joints (F, 22, 3)
in metres, Y up, 20 fps.  Facing = up x across, across = (right hip - left
hip) + (right shoulder - left shoulder); yaw is about +Y from +Z towards +X, so
a *positive* heading change is a turn to the character's LEFT (counter-
clockwise seen from above), the convention of ``motion.recover_root``.
Directions of travel are relative to the initial facing ("to the left" = the
character's initial left).  Heights are in metres above a floor estimated
from the feet, so the thresholds assume an adult-sized skeleton (HumanML3D's
reference skeleton, which every clip and generated motion uses).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from realign_core.data.captions.kinematic import KinematicSummary, measure_kinematics
from realign_core.motion.foot_lock import foot_skate_cm
from realign_core.motion.kinematics import facing_yaw, moving_average, odd_window, runs
from realign_core.motion.skeleton import FPS, JOINT_INDEX, LEFT_FOOT, NUM_JOINTS, RIGHT_FOOT

Joints = np.ndarray          # (F, 22, 3) metres, Y up, 20 fps

# --------------------------------------------------------------------------- #
# Thresholds (SI units: m, s, m/s, degrees)
# --------------------------------------------------------------------------- #

MIN_TRAVEL_M = 0.5           # net pelvis displacement for any "walks/runs <direction>"
MIN_STRAIGHTNESS = 0.5       # net displacement / path length for a direction of travel
SECTOR_HALF_WIDTH_DEG = 45.0  # displacement angle within this of the asked direction
MIN_BODY_SHARE = 0.5         # share of the moving distance travelled in the asked body direction
RUN_SPEED_MPS = 1.7          # typical speed at/above this: running (walks must stay below)
MIN_RUN_PATH_M = 1.5         # path length of a run
MIN_UPRIGHT_SHARE = 0.8      # walks/runs/turns: share of upright frames (not crawling, lying)
TURN_DEG = 60.0              # signed heading change for "turns left/right"
SIT_DROP_M = 0.3             # pelvis drop below its earlier standing height ...
SIT_HOLD_S = 1.0             # ... held this long, torso upright
SIT_HEAD_RATIO = 0.5         # torso upright: head above pelvis by >= ratio * their distance
WAVE_MIN_RAISED_S = 0.5      # wrist above its shoulder at least this long in total
WAVE_MIN_REVERSALS = 3       # ... swinging back and forth (direction reversals) ...
WAVE_AMPLITUDE_M = 0.03      # ... of at least this amplitude between reversals
WAVE_OTHER_RATIO = 0.5       # the other wrist raised at most this share of the waving wrist's time
KICK_HEIGHT_M = 0.2          # kicking ankle this high above the floor ...
KICK_REACH_M = 0.4           # ... this far ahead of the pelvis (body frame) ...
KICK_SPEED_MPS = 4.0         # ... having moved this fast relative to the pelvis in the 0.25 s before ...
SUPPORT_HEIGHT_M = 0.1       # ... while the other foot is within this of the floor
STILL_PELVIS_M = 0.2         # "stands still": pelvis within this of its mean position,
STILL_FEET_M = 0.2           # ... both feet too,
STILL_ANY_JOINT_M = 0.4      # ... and every joint within this,
STANDING_LEG_RATIO = 0.9     # ... standing: median pelvis height >= ratio * leg length (not seated)
SMOOTHING_S = 0.25           # moving average of the pelvis height

_PELVIS, _HEAD = JOINT_INDEX["pelvis"], JOINT_INDEX["head"]
_SIDE_JOINTS: dict[int, dict[str, int]] = {  # side +1 = left, -1 = right
    side: {part: JOINT_INDEX[f"{prefix}_{part}"] for part in ("wrist", "shoulder", "foot", "ankle")}
    for side, prefix in ((1, "left"), (-1, "right"))
}
_DIRECTIONS: dict[str, float] = {"forward": 0.0, "left": 90.0, "backward": 180.0, "right": -90.0}


# --------------------------------------------------------------------------- #
# Measurements shared by the checks
# --------------------------------------------------------------------------- #

def _running_max(values: np.ndarray, window: int) -> np.ndarray:
    """Max of values[t - window + 1 .. t] for every t: (F,) -> (F,)."""
    padded = np.concatenate([np.full(window - 1, -np.inf), values])
    return np.lib.stride_tricks.sliding_window_view(padded, window).max(axis=1)


class MeasuredMotion:
    """A motion with lazily computed measurements (each computed once).

    joints: (F, 22, 3) metres, Y up; fps: frames per second.
    """

    def __init__(self, joints: Joints, fps: int = FPS):
        pos = np.asarray(joints, dtype=np.float64)
        if pos.ndim != 3 or pos.shape[1:] != (NUM_JOINTS, 3) or len(pos) < 2:
            raise ValueError(f"joints must be (F>=2, {NUM_JOINTS}, 3), got {pos.shape}")
        if not np.isfinite(pos).all():
            raise ValueError("joints contain NaN or inf")
        self.pos, self.fps = pos, fps

    @cached_property
    def summary(self) -> KinematicSummary:
        """Travel, turn, jump and posture measures of the kinematic captioner."""
        return measure_kinematics(self.pos, self.fps)

    @cached_property
    def floor(self) -> float:
        """Floor height (m): 5th percentile of the lowest foot joint."""
        lowest = self.pos[:, list(LEFT_FOOT) + list(RIGHT_FOOT), 1].min(axis=1)
        return float(np.percentile(lowest, 5.0))

    def smooth(self, values: np.ndarray, seconds: float = SMOOTHING_S) -> np.ndarray:
        """Centred moving average over ``seconds``: (F, ...) -> (F, ...)."""
        return moving_average(values, odd_window(seconds, self.fps, len(values)))

    @cached_property
    def yaw(self) -> np.ndarray:
        """Smoothed unwrapped facing yaw (F,) rad, positive = turned to the left."""
        return self.smooth(facing_yaw(self.pos), 0.5)

    @cached_property
    def body(self) -> np.ndarray:
        """Joints relative to the pelvis in each frame's facing frame: (F, 22, 3) m,
        axis 0 = the character's left, 1 = up (above the floor), 2 = forward."""
        rel = self.pos - self.pos[:, :1] * np.array([1.0, 0.0, 1.0])
        sin, cos = np.sin(self.yaw)[:, None], np.cos(self.yaw)[:, None]
        left = rel[..., 0] * cos - rel[..., 2] * sin
        forward = rel[..., 0] * sin + rel[..., 2] * cos
        return np.stack([left, rel[..., 1] - self.floor, forward], axis=-1)

    @cached_property
    def foot_heights(self) -> np.ndarray:
        """Lowest joint of each foot above the floor, (F, 2) m: [left, right]."""
        return np.stack([self.pos[:, list(LEFT_FOOT), 1].min(1), self.pos[:, list(RIGHT_FOOT), 1].min(1)],
                        axis=-1) - self.floor

    @cached_property
    def pelvis_height(self) -> np.ndarray:
        """Smoothed pelvis height above the floor (F,) m."""
        return self.smooth(self.pos[:, _PELVIS, 1] - self.floor)

    @cached_property
    def leg_length(self) -> float:
        """Mean hip-knee-ankle length of the two legs (m)."""
        legs = [("left_hip", "left_knee", "left_ankle"), ("right_hip", "right_knee", "right_ankle")]
        total = 0.0
        for names in legs:
            a, b, c = (self.pos[:, JOINT_INDEX[n]] for n in names)
            total += float(np.linalg.norm(b - a, axis=-1).mean() + np.linalg.norm(c - b, axis=-1).mean())
        return total / 2

    @cached_property
    def torso_upright(self) -> np.ndarray:
        """(F,) bool: head above the pelvis by >= SIT_HEAD_RATIO of their distance."""
        up = self.pos[:, _HEAD] - self.pos[:, _PELVIS]
        return up[:, 1] >= SIT_HEAD_RATIO * np.linalg.norm(up, axis=-1)


# --------------------------------------------------------------------------- #
# Checks: MeasuredMotion -> bool
# --------------------------------------------------------------------------- #

def _angle_diff_deg(a: float, b: float) -> float:
    """Signed difference a - b wrapped to [-180, 180) degrees."""
    return (a - b + 180.0) % 360.0 - 180.0


def upright(m: MeasuredMotion) -> bool:
    """Standing upright (pelvis at standing height, head above it) at least MIN_UPRIGHT_SHARE of the time."""
    return m.summary.upright_fraction >= MIN_UPRIGHT_SHARE


def is_running(m: MeasuredMotion) -> bool:
    """Running gait: path >= MIN_RUN_PATH_M and typical speed (the speed at which half of the
    distance was covered) >= RUN_SPEED_MPS.  Flight phases are not used: at CMU's 12 fps the
    feet of ordinary walks look airborne as often as those of runs."""
    s = m.summary
    return s.path_length_m >= MIN_RUN_PATH_M and s.typical_speed_mps >= RUN_SPEED_MPS


def travels(m: MeasuredMotion, direction: str) -> bool:
    """Travels in ``direction`` ('forward', 'left', 'backward', 'right'), relative to the initial facing.

    Net pelvis displacement >= MIN_TRAVEL_M, within SECTOR_HALF_WIDTH_DEG of the
    direction in the initial facing frame, on a path at least MIN_STRAIGHTNESS
    straight, and at least MIN_BODY_SHARE of the moving distance travelled in
    that direction relative to the body at each frame (so backward walking is
    told from turning around and walking forward).
    """
    s = m.summary
    if s.travel_m < MIN_TRAVEL_M or s.straightness < MIN_STRAIGHTNESS:
        return False
    angle = math.degrees(math.atan2(s.left_m, s.forward_m))
    in_sector = abs(_angle_diff_deg(angle, _DIRECTIONS[direction])) < SECTOR_HALF_WIDTH_DEG
    return in_sector and s.body_direction == direction and s.body_direction_share >= MIN_BODY_SHARE


def check_walk(m: MeasuredMotion, direction: str) -> bool:
    """Walks in ``direction``: :func:`travels` there, upright, neither running nor jumping."""
    return upright(m) and travels(m, direction) and not is_running(m) and not check_jump(m)


def check_run(m: MeasuredMotion) -> bool:
    """Runs forward: :func:`is_running`, upright, and :func:`travels` forward."""
    return upright(m) and is_running(m) and travels(m, "forward")


def check_turn(m: MeasuredMotion, side: int) -> bool:
    """Turns to the left (side=+1) or right (-1), in place or while moving: upright, and the
    net heading change (initial vs final facing) has that sign and magnitude >= TURN_DEG."""
    return upright(m) and side * m.summary.heading_change_deg >= TURN_DEG


def check_jump(m: MeasuredMotion) -> bool:
    """Jumps: at least one airborne phase of 0.15-1 s (both feet > 0.06 m above the floor) with the
    pelvis >= 0.10 m above its median height (the kinematic captioner's jump count)."""
    return m.summary.jump_count >= 1


def check_sit(m: MeasuredMotion) -> bool:
    """Sits down: the pelvis drops >= SIT_DROP_M below the standing height it had before
    (running maximum of its 1-s average) and stays that low, torso upright (not lying),
    for >= SIT_HOLD_S."""
    standing = np.maximum.accumulate(m.smooth(m.pelvis_height, 1.0))
    low = (standing - m.pelvis_height >= SIT_DROP_M) & m.torso_upright
    return any(end - start >= SIT_HOLD_S * m.fps for start, end in runs(low))


def _reversals(values: np.ndarray, amplitude: float) -> int:
    """Direction reversals of a 1-D path (F,) m: changes of direction after swings of >= ``amplitude`` m
    (the first swing of that size sets the direction and is not counted)."""
    if not len(values):
        return 0
    low = high = extreme = float(values[0])
    direction, count = 0, 0
    for v in map(float, values[1:]):
        if direction == 0:
            low, high = min(low, v), max(high, v)
            if high - low >= amplitude:
                direction, extreme = (1 if v == high else -1), v
        elif direction * (v - extreme) > 0:
            extreme = v
        elif abs(v - extreme) >= amplitude:
            direction, extreme, count = -direction, v, count + 1
    return count


def _raised(m: MeasuredMotion, side: int) -> np.ndarray:
    """(F,) bool: the wrist of ``side`` (+1 left, -1 right) is above its shoulder."""
    joints = _SIDE_JOINTS[side]
    return m.pos[:, joints["wrist"], 1] > m.pos[:, joints["shoulder"], 1]


def _wrist_swings(m: MeasuredMotion, side: int) -> int:
    """Reversals of the raised wrist (relative to its shoulder, body frame), sideways or fore-aft."""
    joints = _SIDE_JOINTS[side]
    rel = m.body[:, joints["wrist"]] - m.body[:, joints["shoulder"]]
    total = 0
    for start, end in runs(_raised(m, side)):
        total += max(_reversals(rel[start:end, axis], WAVE_AMPLITUDE_M) for axis in (0, 2))
    return total


def arm_measures(m: MeasuredMotion) -> dict[str, float]:
    """What the wave checks read, per side: seconds the wrist is above its shoulder (``*_raised_s``) and the
    swing reversals it makes while raised (``*_swings``; a wave needs WAVE_MIN_REVERSALS)."""
    return {f"{name}_wrist_{key}": value for name, side in (("right", -1), ("left", 1))
            for key, value in (("raised_s", float(_raised(m, side).sum()) / m.fps),
                               ("swings", float(_wrist_swings(m, side))))}


def ground_measures(m: MeasuredMotion) -> dict[str, float]:
    """How the body rests on the floor: the pelvis's largest distance from its mean position (m; ``check_still``
    allows STILL_PELVIS_M) and foot skating (cm per contact frame, ``motion.foot_lock.foot_skate_cm``)."""
    return {"pelvis_excursion_m": _excursion(m, [_PELVIS]), "foot_skate_cm": foot_skate_cm(m.pos)}


def check_wave(m: MeasuredMotion, side: int) -> bool:
    """Waves with the left (side=+1) or right (-1) hand: that wrist above its shoulder for
    >= WAVE_MIN_RAISED_S in total, swinging back and forth there (>= WAVE_MIN_REVERSALS
    reversals of >= WAVE_AMPLITUDE_M sideways or fore-aft), the other wrist raised at most
    WAVE_OTHER_RATIO as long."""
    raised, other = _raised(m, side).sum(), _raised(m, -side).sum()
    if raised < WAVE_MIN_RAISED_S * m.fps or other > WAVE_OTHER_RATIO * raised:
        return False
    return _wrist_swings(m, side) >= WAVE_MIN_REVERSALS


def _kicks(m: MeasuredMotion, side: int) -> bool:
    """Does the leg of ``side`` (+1 left, -1 right) kick at least once?  See :func:`check_kick`."""
    ankle = m.body[:, _SIDE_JOINTS[side]["ankle"]]
    speed = np.linalg.norm(np.gradient(ankle, axis=0), axis=-1) * m.fps
    recent = _running_max(speed, max(1, round(0.25 * m.fps)))
    support = m.foot_heights[:, 0 if side < 0 else 1]
    hit = (ankle[:, 1] >= KICK_HEIGHT_M) & (ankle[:, 2] >= KICK_REACH_M) & (support <= SUPPORT_HEIGHT_M)
    return bool((hit & (recent >= KICK_SPEED_MPS)).any())


def check_kick(m: MeasuredMotion, side: int) -> bool:
    """Kicks with the left (side=+1) or right (-1) leg and not with the other one.

    A kick: in some frame the ankle is >= KICK_HEIGHT_M above the floor and
    >= KICK_REACH_M ahead of the pelvis (body frame), having moved at >=
    KICK_SPEED_MPS relative to the pelvis within the 0.25 s before, while the
    other foot is within SUPPORT_HEIGHT_M of the floor.  Requiring the other leg
    not to kick rejects marching and high-stepping walks, which look like
    alternating kicks.
    """
    return _kicks(m, side) and not _kicks(m, -side)


def _excursion(m: MeasuredMotion, joints: Sequence[int]) -> float:
    """Largest distance (m) of any of ``joints`` from its mean position over the clip."""
    pos = m.pos[:, list(joints)]
    return float(np.linalg.norm(pos - pos.mean(axis=0), axis=-1).max())


def check_still(m: MeasuredMotion) -> bool:
    """Stands still: upright and standing (median pelvis height >= STANDING_LEG_RATIO x leg
    length, so not seated), pelvis within STILL_PELVIS_M and feet within STILL_FEET_M of their
    mean positions, every joint within STILL_ANY_JOINT_M."""
    feet = list(LEFT_FOOT) + list(RIGHT_FOOT)
    standing = float(np.median(m.pelvis_height)) >= STANDING_LEG_RATIO * m.leg_length
    return (upright(m) and standing and _excursion(m, [_PELVIS]) <= STILL_PELVIS_M
            and _excursion(m, feet) <= STILL_FEET_M and _excursion(m, range(NUM_JOINTS)) <= STILL_ANY_JOINT_M)


# --------------------------------------------------------------------------- #
# The fixed prompt set
# --------------------------------------------------------------------------- #

@dataclass(frozen=True)
class KinematicPrompt:
    """A prompt and the check that says whether a motion does what it asks."""

    name: str
    caption: str
    check: Callable[[MeasuredMotion], bool] = field(repr=False, compare=False)

    def matches(self, joints: Joints | MeasuredMotion, fps: int = FPS) -> bool:
        """Does the motion (F, 22, 3) m, Y up (or its measurements) pass this prompt's check?"""
        m = joints if isinstance(joints, MeasuredMotion) else MeasuredMotion(joints, fps)
        return bool(self.check(m))


def _bind(check: Callable[..., bool], *args: Any) -> Callable[[MeasuredMotion], bool]:
    """``check`` with its trailing arguments fixed: m -> check(m, *args)."""
    return lambda m: check(m, *args)


PROMPTS: tuple[KinematicPrompt, ...] = (
    KinematicPrompt("walk_forward", "a person walks forward.", _bind(check_walk, "forward")),
    KinematicPrompt("walk_backward", "a person walks backward.", _bind(check_walk, "backward")),
    KinematicPrompt("walk_left", "a person walks to the left.", _bind(check_walk, "left")),
    KinematicPrompt("walk_right", "a person walks to the right.", _bind(check_walk, "right")),
    KinematicPrompt("turn_left", "a person turns left.", _bind(check_turn, 1)),
    KinematicPrompt("turn_right", "a person turns right.", _bind(check_turn, -1)),
    KinematicPrompt("jump", "a person jumps up.", check_jump),
    KinematicPrompt("run_forward", "a person runs forward.", check_run),
    KinematicPrompt("sit_down", "a person sits down.", check_sit),
    KinematicPrompt("wave_right", "a person waves with the right hand.", _bind(check_wave, -1)),
    KinematicPrompt("kick_left", "a person kicks with the left leg.", _bind(check_kick, 1)),
    KinematicPrompt("stand_still", "a person stands still.", check_still),
)
PROMPTS_BY_NAME: dict[str, KinematicPrompt] = {p.name: p for p in PROMPTS}
# Mirror twins, used in validation (and tests) to cover both sides.
EXTRA_CHECKS: dict[str, Callable[[MeasuredMotion], bool]] = {
    "wave_left": _bind(check_wave, 1),
    "kick_right": _bind(check_kick, -1),
}


def all_checks() -> dict[str, Callable[[MeasuredMotion], bool]]:
    """Every named check: the prompts' and their mirror twins."""
    return {**{p.name: p.check for p in PROMPTS}, **EXTRA_CHECKS}


def select_prompts(names: str | Sequence[str] | None) -> tuple[KinematicPrompt, ...]:
    """Prompts by name (comma-separated string or list); None = all."""
    if names is None:
        return PROMPTS
    names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in PROMPTS_BY_NAME]
    if unknown:
        raise ValueError(f"unknown prompt(s) {unknown}; known: {', '.join(PROMPTS_BY_NAME)}")
    return tuple(PROMPTS_BY_NAME[n] for n in names)


def caption_prompts(caption: str, checks: str | Sequence[str]) -> tuple[KinematicPrompt, ...]:
    """A free-text caption checked for each thing it asks: one prompt per named check (of :func:`all_checks`),
    all with ``caption`` (e.g. the README demo's "walks forward and waves": walk_forward, wave_right).  A name
    joining checks with ``+`` (``walk_forward+wave_right``) passes a sample only when every one of them does on
    that same sample: whether one motion does all the caption asks, not each part on other seeds."""
    known = all_checks()
    names = [n.strip() for n in checks.split(",") if n.strip()] if isinstance(checks, str) else list(checks)
    parts = {n: [c.strip() for c in n.split("+")] for n in names}
    unknown = [c for n in names for c in parts[n] if c not in known]
    if not caption.strip() or not names or unknown:
        raise ValueError(f"caption prompts: need a caption and known checks; got caption {caption!r}, "
                         f"checks {names} (unknown {unknown}; known: {', '.join(known)})")
    return tuple(KinematicPrompt(n, caption, _all_of([known[c] for c in parts[n]])) for n in names)


def _all_of(checks: Sequence[Callable[[MeasuredMotion], bool]]) -> Callable[[MeasuredMotion], bool]:
    """One check that passes a motion when every one of ``checks`` does."""
    return checks[0] if len(checks) == 1 else (lambda m: all(check(m) for check in checks))
