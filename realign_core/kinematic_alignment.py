"""Text-motion alignment measured from kinematics alone (no learned model).

A fixed set of direction/action prompts, each with a *check*: a rule on the
joint positions that says whether a motion does what the prompt asks.
:func:`kinematic_alignment` generates samples for every prompt and reports the
fraction that pass, with a 95 % Wilson interval; :func:`validate_checks` runs
the checks on real captioned clips so their thresholds can be trusted.

Conventions (as in :mod:`realign_core.captions.kinematic`): joints (F, 22, 3)
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

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .captions.kinematic import KinematicSummary, facing_yaw, measure_kinematics, moving_average, odd_window
from .skeleton import FPS, JOINT_INDEX, LEFT_FOOT, NUM_JOINTS, RIGHT_FOOT

Joints = np.ndarray          # (F, 22, 3) metres, Y up, 20 fps
Generate = Callable[[list[str], list[int], list[int]], list[Joints]]

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


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index ranges where the boolean mask (F,) is True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


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
    return any(end - start >= SIT_HOLD_S * m.fps for start, end in _runs(low))


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
    for start, end in _runs(_raised(m, side)):
        total += max(_reversals(rel[start:end, axis], WAVE_AMPLITUDE_M) for axis in (0, 2))
    return total


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


# --------------------------------------------------------------------------- #
# Statistics
# --------------------------------------------------------------------------- #

Z95 = 1.959964


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (low, high) of a binomial proportion; (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference(a: Sequence[bool], b: Sequence[bool], z: float = Z95) -> tuple[float, float, float]:
    """Difference of pass rates b - a over paired samples (same prompt and seed) with Newcombe's
    (1998, method 10) 95 % interval for paired proportions, built from the two Wilson intervals
    and the correlation phi of the pairs: (difference, low, high), each in [-1, 1].  A positive
    phi gets Newcombe's continuity correction (eh - fg - n/2), which keeps the interval from
    collapsing to zero width when every pair agrees."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    n = len(a)
    if n == 0:
        return 0.0, -1.0, 1.0
    both, only_a, only_b = int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum())
    neither = n - both - only_a - only_b
    p1, p2 = a.mean(), b.mean()
    (l1, u1), (l2, u2) = wilson_interval(int(a.sum()), n, z), wilson_interval(int(b.sum()), n, z)
    denom = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    cross = both * neither - only_a * only_b
    cross = max(cross - n / 2, 0.0) if cross > 0 else cross
    phi = cross / math.sqrt(denom) if denom > 0 else 0.0
    below = math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    above = math.sqrt(max(0.0, (u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2))
    diff = float(p2 - p1)
    return diff, max(-1.0, diff - below), min(1.0, diff + above)


# --------------------------------------------------------------------------- #
# Alignment of a generator
# --------------------------------------------------------------------------- #

@dataclass
class PromptAlignment:
    """Per prompt: which samples (in seed order) passed its check."""

    name: str
    caption: str
    seeds: list[int]
    matched: list[bool]

    @property
    def fraction(self) -> float:
        return sum(self.matched) / len(self.matched) if self.matched else 0.0

    @property
    def ci(self) -> tuple[float, float]:
        return wilson_interval(sum(self.matched), len(self.matched))


@dataclass
class AlignmentReport:
    """Kinematic alignment of one generation setting over the prompt set.

    ``overall`` pools all samples (every prompt has the same number of samples,
    so it is also the mean of the per-prompt fractions); its interval is Wilson's
    on the pooled count (samples are independent draws, one seed each).
    """

    prompts: list[PromptAlignment]
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)   # what generated the samples (for the JSON)

    @property
    def matched(self) -> list[bool]:
        return [x for p in self.prompts for x in p.matched]

    @property
    def overall(self) -> float:
        flat = self.matched
        return sum(flat) / len(flat) if flat else 0.0

    @property
    def overall_ci(self) -> tuple[float, float]:
        flat = self.matched
        return wilson_interval(sum(flat), len(flat))

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds, "settings": self.settings, "overall": self.overall,
            "overall_ci95": list(self.overall_ci),
            "prompts": {p.name: {"caption": p.caption, "fraction": p.fraction, "ci95": list(p.ci),
                                 "n": len(p.matched), "seeds": p.seeds, "matched": p.matched}
                        for p in self.prompts},
        }


def kinematic_alignment(generate: Generate, prompts: Sequence[KinematicPrompt] = PROMPTS,
                        samples_per_prompt: int = 10, seconds: float = 4.0, seed: int = 0,
                        batch_size: int = 32) -> AlignmentReport:
    """Generate ``samples_per_prompt`` motions of ``seconds`` for each prompt and check them.

    generate(captions, frames, seeds) -> list of (F, 22, 3) joints (m, Y up, 20 fps);
    frames = round(seconds * 20).  Sample k of prompt i uses seed
    ``seed + i * samples_per_prompt + k``, so two settings run with the same
    arguments are paired sample by sample.  Returns per-prompt pass fractions.
    """
    if samples_per_prompt < 1:
        raise ValueError("samples_per_prompt must be >= 1")
    frames = max(2, round(seconds * FPS))
    n = samples_per_prompt
    jobs = [(p, seed + i * n + k) for i, p in enumerate(prompts) for k in range(n)]
    passed: list[bool] = []
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        motions = generate([p.caption for p, _ in chunk], [frames] * len(chunk), [s for _, s in chunk])
        if len(motions) != len(chunk):
            raise ValueError(f"generate returned {len(motions)} motions for {len(chunk)} requests")
        passed += [p.matches(motion) for (p, _), motion in zip(chunk, motions)]
    rows = [PromptAlignment(p.name, p.caption, [s for _, s in jobs[i * n:(i + 1) * n]], passed[i * n:(i + 1) * n])
            for i, p in enumerate(prompts)]
    return AlignmentReport(rows, frames / FPS)


def compare_reports(baseline: AlignmentReport, guided: AlignmentReport) -> dict[str, Any]:
    """Per prompt and overall: guided - baseline pass fraction with a paired 95 % interval."""
    out: dict[str, Any] = {}
    for a, b in zip(baseline.prompts, guided.prompts):
        if a.seeds != b.seeds:
            raise ValueError(f"{a.name}: the two reports used different seeds; they are not paired")
        out[a.name] = dict(zip(("difference", "low", "high"), paired_difference(a.matched, b.matched)))
    out["overall"] = dict(zip(("difference", "low", "high"), paired_difference(baseline.matched, guided.matched)))
    return out


def _pct(x: float) -> str:
    return f"{100 * x:5.1f}"


def _cell(fraction: float, ci: tuple[float, float]) -> str:
    """'pass % [low, high]'."""
    return f"{_pct(fraction)} [{_pct(ci[0])},{_pct(ci[1])}]"


def format_reports(reports: dict[str, AlignmentReport]) -> str:
    """A text table: one row per prompt (and overall), per setting 'pass % [95 % CI]', and when
    there are two settings the paired difference (second - first) with its 95 % interval."""
    names = list(reports)
    diff = compare_reports(reports[names[0]], reports[names[1]]) if len(names) == 2 else None
    header = f"{'prompt':14s}" + "".join(f" | {n:>20s}" for n in names) + (f" | {'difference':>22s}" if diff else "")
    lines = [header, "-" * len(header)]
    labels = [p.name for p in reports[names[0]].prompts] + ["overall"]
    for i, label in enumerate(labels):
        cells = [_cell(r.overall, r.overall_ci) if label == "overall" else _cell(r.prompts[i].fraction, r.prompts[i].ci)
                 for r in reports.values()]
        line = f"{label:14s}" + "".join(f" | {c:>20s}" for c in cells)
        if diff:
            d = diff[label]
            line += f" | {100 * d['difference']:+6.1f} [{100 * d['low']:+6.1f},{100 * d['high']:+6.1f}]"
        lines.append(line)
    first = reports[names[0]]
    lines.append(f"pass % [Wilson 95 % CI], {len(first.prompts[0].matched) if first.prompts else 0} samples per "
                 f"prompt of {first.seconds:g} s; difference: paired, percentage points [95 % CI]")
    return "\n".join(lines)


# --------------------------------------------------------------------------- #
# Validation of the checks on real captioned clips
# --------------------------------------------------------------------------- #

@dataclass(frozen=True)
class CaptionLabel:
    """Which real clips count as doing (positives) and surely not doing (negatives) an action.

    A clip is a positive when one of its human captions (KIT-ML, CMU descriptions;
    never the kinematic ones, which come from the same measurements) matches
    ``positive``, none matches ``exclude`` (compound or ambiguous descriptions),
    and the caption describes the clip: its trial was cut into a single clip, or
    (unless ``single_clip_only``) the caption describes one homogeneous activity
    (no sequence words such as "then", "and", "back", "again").  A clip
    is a negative when none of its human captions matches ``related``.
    ``checks``: the prompt checks whose OR is scored (several for "either side").
    """

    name: str
    checks: tuple[str, ...]
    positive: str
    exclude: str
    related: str
    single_clip_only: bool = False   # positives only from trials cut into one clip


_SEQUENCE = r"\bthen\b|\band\b|,|\bafter|\bbefore|\bwhile\b|\breturn|\bagain\b|\bstops?\b|\bstarts?\b|\bback\b"
_LOCOMOTION = (r"walk|stroll|march|step|stride|pace|wander|limp|stagger|sneak|tiptoe|shuffl|run|jog|sprint|"
               r"forward|ahead|front|straight|travel|go(es)? |move|moving|trajectory|path|direction")
_ACTIVITIES = (r"danc|climb|play|sport|game|dribbl|sword|fight|box|spar|karate|martial|ballet|jete|acrobat|"
               r"gymnast|terrain|stumbl|limp|mummy|zombie|drunk|act(s|ing)? like|pretend|mime|search|explor")
_TURNING = (r"turn|spin|rotat|twist|around|circle|curve|corner|clockwise|pirouette|left|right|figure|eight|zig|"
            r"wander|trajectory|direction|return|back and forth|u-turn|round|" + _LOCOMOTION + "|" + _ACTIVITIES)
_LR = r"\bleft\b.*\bright\b|\bright\b.*\bleft\b"
_TURN_TO = r"turn\w*\s+(around\s+)?(\d+\s*(degrees?)?\s+)?((to(wards)?|into) the\s+)?{side}|"
_TURN_LEFT = _TURN_TO.format(side="left") + r"(?<!counter )counter[- ]?clockwise|anti-?clockwise"
_TURN_RIGHT = _TURN_TO.format(side="right") + r"(?<![a-z-])(?<!counter )clockwise"
_SIDESTEP = (r"(walk|step|sneak|move|go|shuffl)\w*\s+(\w+\s+){0,2}(to the|sideways to the|sidewards to the)\s+{side}\b|"
             r"side ?step\w*\s+(to the\s+)?{side}\b")
_SIDESTEP_EXCLUDE = (_LR + r"|turn|lean|look|jump|hop|bend|front|diagonal|curve|corner|then|return|around|\bup\b|"
                     r"\bdown\b|ledge|platform|crouch|defensive")
_SIDEWAYS_RELATED = r"side|lateral|left|right|direction|diagonal|zig|shuffl|danc|trajector|around|defens"
_HAND_RELATED = (r"wav|hello|goodbye|greet|signal|hand|arm|traffic|point|gestur|direct|conduct|talk|danc|bird|fly|"
                 r"cheer|celebrat|clap|raise|lift|reach|throw|catch|swing|box|punch|fight|paint|clean|wipe|wash|"
                 r"comb|brush|drink|phone|scratch|salute|swim|climb|stretch|exercis|jack|basketball|play|tennis|"
                 r"golf|bat\b|bowl|juggl|sport|game|yoga|tai chi|martial|karate")

LABELS: tuple[CaptionLabel, ...] = (
    CaptionLabel("walk_forward", ("walk_forward",), r"\bwalk(s|ing)?\b|\bstroll|\bmarch(es|ing)?\b",
                 r"back|revers|side|lateral|left|right|turn|around|circle|curve|corner|zig|figure|diagonal|eight|"
                 r"return|stop|start|stair|climb|ramp|obstacle|over|under|beam|run|jog|jump|hop|skip|leap|sit|"
                 r"\blie|\blay|crawl|kneel|crouch|squat|fall|stumble|limp|drunk|place|spot|stand|wait|pause|"
                 r"pick|carry|push|pull|danc|punch|kick|throw|catch|balanc|wander|look|toe|heel|uneven|rope|"
                 r"slope|bump|zombie|tight|line|swing|trajectory|room|through|away|towards|in front|up to",
                 _LOCOMOTION, single_clip_only=True),
    CaptionLabel("walk_backward", ("walk_backward",),
                 r"(walk|step|go|move|sneak)\w*\s+(\w+\s+){0,2}backwards?\b|backwards? walk",
                 r"forwards? and backwards?|backwards? and forwards?|back and forth|turn|around|jump|hop|run|flip|"
                 r"roll|\boff\b|ledge|stairs|ball|sideways|attack|punch|feign|moonwalk|forward or",
                 r"back|revers|moonwalk|retreat|sideways|direction|trajectory|diagonal"),
    CaptionLabel("walk_left", ("walk_left",), _SIDESTEP.replace("{side}", "left"),
                 _SIDESTEP_EXCLUDE, _SIDEWAYS_RELATED),
    CaptionLabel("walk_right", ("walk_right",), _SIDESTEP.replace("{side}", "right"),
                 _SIDESTEP_EXCLUDE, _SIDEWAYS_RELATED),
    CaptionLabel("walk_sideways", ("walk_left", "walk_right"),
                 r"(walk|step|sneak|move|go|shuffl)\w*\s+(\w+\s+){0,2}(sideways|sidewards|to the (left|right))|"
                 r"side ?step|lateral (step|move)",
                 r"arabesque|dribble|punch|jump|hop|forward|backward|turn|diagonal|zig|cross|danc|lean|then|look|"
                 r"curve|corner|bend|front|around|return|and to the|foot to foot|\bup\b|\bdown\b|ledge|platform|"
                 r"crouch|defensive",
                 _SIDEWAYS_RELATED),
    CaptionLabel("turn_left", ("turn_left",), _TURN_LEFT, _LR + r"|obstacle|counter counter", _TURNING),
    CaptionLabel("turn_right", ("turn_right",), _TURN_RIGHT, _LR + r"|obstacle|counter counter", _TURNING),
    CaptionLabel("jump", ("jump",), r"\b(jump|jumps|jumping|hop|hops|hopping|leap|leaps|leaping)\b",
                 r"jacks?\b|\boff\b|onto|on top|ledge|down the|platform|box|stool|\bbar\b|mount|lindy|rope|"
                 r"trampoline|pretend|hopscotch",
                 r"jump|hop|leap|skip|bounc|danc|acrobat|flip|cartwheel|gymnast|handspring|somersault|jack|"
                 r"basketball|ballet|jete|trampoline|vault|kick|spin|fall|climb|dive|tumbl|break|dunk|ledge|"
                 r"stair|rope|play|sport|game|exercis|aerobic|monkey|chimp|gorilla|kangaroo|frog|rabbit|bunny"),
    CaptionLabel("run_forward", ("run_forward",), r"\b(run|runs|running|jog|jogs|jogging|sprint\w*)\b",
                 r"circle|figure|eight|turn|around|jump|leap|dive|roll|duck|walk|sneak|place|spot|treadmill|"
                 r"back|left|right|curve|obstacle|zig|drive|basketball|defensive|through|direction|scrambl|seat",
                 r"run|jog|sprint|race|fast|rush|hurr|chase|dash|basketball|soccer|football|play|dribble|"
                 r"defensive|drive|layup|dunk|sport|skip|gallop|bound|leap|jump|hop|game|quick"),
    CaptionLabel("sit_down", ("sit_down",),
                 r"\bsits? (back )?down\b|\bsits back\b|\bup to sit\b|does a (low|medium) sit",
                 r"climb|stepstool|stool|platform|dangle|ledge|ladder|high|\bsitting\b|\bsat\b|seated|\blie|"
                 r"lying|\blay|swim|wants to|about to|like",
                 r"sit|seat|chair|squat|crouch|kneel|\blie|lying|\blay|floor|ground|bend|stool|couch|bench|low|"
                 r"down|crawl|pick|fall|rest|yoga|stretch|lunge|duck|roll|get(s)? up|stand(s|ing)? up|rise|"
                 r"push-?up|sweep|mop|\btie|shoe|toilet|bow|pray|meditat|ground"),
    CaptionLabel("wave_right", ("wave_right",),
                 r"wav\w*\s+(\w+\s+){0,3}right (hand|arm)|right (hand|arm)\s+(\w+\s+){0,2}wav",
                 r"both|left|arms\b|traffic|bird|fly|flying|then",
                 _HAND_RELATED),
    CaptionLabel("wave_either", ("wave_right", "wave_left"), r"\bwav(e|es|ing)\b",
                 r"both|arms\b|traffic|bird|fly|flying|flag|ocean|hands in the air|then",
                 _HAND_RELATED),
    CaptionLabel("kick_either", ("kick_left", "kick_right"), r"\bkick(s|ing)?\b",
                 r"handstand|flip|spin|jump|punch|break|danc|knee|then|walk|run|stretch|turn|multiple|squat|"
                 r"while|kicking his legs|hands back",
                 r"kick|karate|martial|fight|box|punch|danc|soccer|football|ball|leg|foot|feet|knee|step|stretch|"
                 r"yoga|balanc|ballet|arabesque|acrobat|flip|cartwheel|gymnast|march|climb|stair|jump|hop|run|"
                 r"jog|exercis|lunge|squat|tai chi|kung|spar|defen|attack|swing|crawl|skip|stomp|play|sport|game"),
    CaptionLabel("stand_still", ("stand_still",),
                 r"stand\w* (still|idle|motionless|quietly|relaxed)|is standing\.?$|\bidle\b|t-?pose|static pose|"
                 r"stands? (in|with) (a |an )?(\w+ )?(ready|guard|defensive)",
                 r"then|walk|run|jump|\bsit|\blie|\blay|turn|wave|punch|kick|look|glanc|talk|gestur|stretch|"
                 r"danc|pick|bend|around|shift|sway|fidget|arm|hand",
                 r"stand|still|idle|wait|pose|place|spot|balanc|motionless|rest|stay|breath|look|talk|listen|"
                 r"think|relax|nothing|stationary|upright|posture|yoga|stretch|tai chi|sway|shift|fidget|bored|"
                 r"shiver|cold|cry|sad|guard|stance|ready"),
)


@dataclass
class ClipRecord:
    """One real clip: id, human captions (lower case), whether its trial has one clip, mirror flag."""

    id: str
    captions: list[str]
    single_clip_trial: bool
    mirror: bool


def load_clip_records(data_dir: str | Path, include_mirrored: bool = True) -> list[ClipRecord]:
    """Clips of a built dataset (metadata.jsonl) with their human captions (kinematic ones dropped)."""
    rows = [json.loads(line) for line in (Path(data_dir) / "metadata.jsonl").read_text().splitlines() if line.strip()]
    per_trial: dict[tuple[str, bool], int] = {}
    for r in rows:
        key = (r.get("trial", r["id"]), bool(r.get("mirror")))
        per_trial[key] = per_trial.get(key, 0) + 1
    out = []
    for r in rows:
        if r.get("mirror") and not include_mirrored:
            continue
        caps = [c["text"].lower() for c in r["captions"] if c.get("source") != "kinematic"]
        if caps:
            key = (r.get("trial", r["id"]), bool(r.get("mirror")))
            out.append(ClipRecord(r["id"], caps, per_trial[key] == 1, bool(r.get("mirror"))))
    return out


def label_clip(label: CaptionLabel, clip: ClipRecord) -> bool | None:
    """True (positive), False (negative) or None (neither) for one clip under one label."""
    if not any(re.search(label.related, c) for c in clip.captions):
        return False
    hits = [c for c in clip.captions if re.search(label.positive, c)]
    if not hits or any(re.search(label.exclude, c) for c in clip.captions):
        return None
    homogeneous = not label.single_clip_only and any(not re.search(_SEQUENCE, c) for c in hits)
    describes_clip = clip.single_clip_trial or homogeneous
    return True if describes_clip else None


def _check_clips(data_dir: Path, ids: Sequence[str], progress: bool = False) -> dict[str, dict[str, bool]]:
    """Every check (:func:`all_checks`) on the joints ``new_joints/ID.npy`` (F, 22, 3) of each clip."""
    checks, out = all_checks(), {}
    for i, clip_id in enumerate(ids):
        m = MeasuredMotion(np.load(data_dir / "new_joints" / f"{clip_id}.npy"))
        out[clip_id] = {name: bool(check(m)) for name, check in checks.items()}
        if progress and i % 1000 == 0:
            print(f"  checked {i}/{len(ids)} clips", file=sys.stderr, flush=True)
    return out


def _label_row(label: CaptionLabel, pos: list[str], neg: list[str], results: dict[str, dict[str, bool]]) -> dict:
    """Recall on the positives and false-positive rate on the negatives of one label, with Wilson CIs."""
    def passes(clip_id: str) -> bool:
        return any(results[clip_id][name] for name in label.checks)

    tp, fp = sum(map(passes, pos)), sum(map(passes, neg))
    return {"checks": list(label.checks), "positives": len(pos), "recall": tp / len(pos) if pos else None,
            "recall_ci95": list(wilson_interval(tp, len(pos))), "negatives": len(neg),
            "false_positive_rate": fp / len(neg) if neg else None, "fpr_ci95": list(wilson_interval(fp, len(neg))),
            "positive_ids": sorted(pos)}


def validate_checks(data_dir: str | Path, labels: Sequence[CaptionLabel] = LABELS,
                    include_mirrored: bool = True, progress: bool = False) -> dict[str, Any]:
    """Run every check on the real clips of a built dataset (``new_joints/*.npy``, metadata.jsonl).

    Per label: positives (n, share passing = recall, Wilson 95 % CI) and negatives
    (n, share passing = false-positive rate, CI); plus, per label, the pass rate of
    every check on its positives (a confusion table).  Mirrored clips (mirrored
    joints, mirrored captions) are included unless ``include_mirrored`` is False,
    so left/right labels get both sides; a clip and its mirror are not independent.
    """
    data_dir = Path(data_dir)
    clips = load_clip_records(data_dir, include_mirrored)
    labelled = {c.id: {lab.name: label_clip(lab, c) for lab in labels} for c in clips}
    ids = [c.id for c in clips if any(v is not None for v in labelled[c.id].values())]
    results = _check_clips(data_dir, ids, progress)
    rows, confusion = {}, {}
    for lab in labels:
        pos = [i for i in ids if labelled[i][lab.name] is True]
        neg = [i for i in ids if labelled[i][lab.name] is False]
        rows[lab.name] = _label_row(lab, pos, neg, results)
        confusion[lab.name] = {name: (sum(results[i][name] for i in pos) / len(pos) if pos else None)
                               for name in all_checks()}
    return {"data_dir": str(data_dir), "include_mirrored": include_mirrored, "clips": len(clips),
            "labels": rows, "confusion": confusion}


def format_validation(result: dict[str, Any]) -> str:
    """Text tables of :func:`validate_checks`: recall / false-positive rate, then the confusion table."""
    head = f"{'label':14s} {'checks':24s} {'pos':>5s} {'recall % [95% CI]':>20s} {'neg':>6s} {'FPR % [95% CI]':>18s}"
    lines = [head, "-" * len(head)]
    for name, r in result["labels"].items():
        rec = "n/a" if r["recall"] is None else _cell(r["recall"], r["recall_ci95"])
        fpr = "n/a" if r["false_positive_rate"] is None else _cell(r["false_positive_rate"], r["fpr_ci95"])
        lines.append(f"{name:14s} {' or '.join(r['checks']):24s} {r['positives']:5d} {rec:>20s} "
                     f"{r['negatives']:6d} {fpr:>18s}")
    names = list(next(iter(result["confusion"].values()), {}))
    lines += ["", "pass % of each check (columns) on each label's positives (rows)",
              f"{'label':14s}" + "".join(f" {n[:6]:>6s}" for n in names)]
    for label, row in result["confusion"].items():
        lines.append(f"{label:14s}" + "".join(" " * 7 if row[n] is None else f" {100 * row[n]:6.0f}" for n in names))
    return "\n".join(lines)


# --------------------------------------------------------------------------- #
# Command line
# --------------------------------------------------------------------------- #

def pipeline_generator(pipe: Any, sampling: Any, guidance: Any = None) -> Generate:
    """``generate(captions, frames, seeds)`` of a :class:`~realign_core.pipeline.TextToMotionPipeline`
    with fixed sampling and guidance settings (None = the unguided baseline)."""
    def generate(captions: list[str], frames: list[int], seeds: list[int]) -> list[Joints]:
        feats, mask = pipe(captions, frames, seeds, sampling, guidance)
        return pipe.to_joints(feats, mask)
    return generate


def evaluate_generator(models: Path, generator: str = "mld", samples: int = 10, seconds: float = 4.0,
                       strength: float | None = None, steps: int = 50, cfg_scale: float | None = None,
                       seed: int = 0, batch_size: int = 32, device: str | None = None,
                       prompts: Sequence[KinematicPrompt] = PROMPTS) -> dict[str, AlignmentReport]:
    """Baseline and guided (the models' default guidance with ``strength`` replaced, if given)
    kinematic alignment of one generator; guided is skipped when the folder has no reward model."""
    import torch

    from .pipeline import SamplingConfig, TextToMotionPipeline

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = TextToMotionPipeline.from_checkpoints(models, device=device, generator=generator)
    frames = min(round(seconds * FPS), pipe.max_frames)
    seconds = frames / FPS
    sampling = SamplingConfig(steps=steps, cfg_scale=cfg_scale)
    settings = {"baseline": None}
    if pipe.has_reward:
        default = pipe.default_guidance
        settings["guided"] = default if strength is None else replace(default, strength=float(strength))
    reports = {}
    for name, guidance in settings.items():
        report = kinematic_alignment(pipeline_generator(pipe, sampling, guidance), prompts, samples, seconds, seed,
                                     batch_size)
        report.settings = {"generator": generator, "sampling": asdict(sampling),
                           "guidance": asdict(guidance) if guidance else None}
        reports[name] = report
    return reports


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m realign_core.kinematic_alignment",
                                description="Kinematic (model-free) alignment on fixed direction/action prompts, "
                                            "baseline vs ReAlign guidance; and validation of the checks on real clips.")
    p.add_argument("--models", type=Path, help="model folder (vae/ + denoiser/ or mdm/, reward/, guidance.toml)")
    p.add_argument("--generator", choices=("mld", "mdm"), default="mld")
    p.add_argument("--samples", type=int, default=10, help="samples per prompt")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--strength", type=float, default=None, help="guidance strength (default: the models' default)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--cfg", type=float, default=None, help="classifier-free guidance scale (default: generator's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default=None)
    p.add_argument("--prompts", default=None, help=f"comma-separated subset of: {', '.join(PROMPTS_BY_NAME)}")
    p.add_argument("--validate-on", type=Path, default=None, metavar="DATA_DIR",
                   help="also run the checks on the real captioned clips of a built dataset")
    p.add_argument("--no-mirrored", action="store_true", help="validation: leave out the mirrored clips")
    p.add_argument("-o", "--out", type=Path, default=None,
                   help="JSON output (default: MODELS/kinematic_alignment_GENERATOR.json, or "
                        "kinematic_validation.json)")
    return p


def _alignment_json(args: argparse.Namespace) -> dict[str, Any]:
    """Run baseline vs guided for the CLI arguments, print the table, return the JSON part."""
    reports = evaluate_generator(args.models, args.generator, args.samples, args.seconds, args.strength, args.steps,
                                 args.cfg, args.seed, args.batch_size, args.device, select_prompts(args.prompts))
    print(format_reports(reports))
    if "guided" not in reports:
        print(f"no reward model in {args.models}: guided sampling skipped")
    out: dict[str, Any] = {name: report.to_dict() for name, report in reports.items()}
    if len(reports) == 2:
        out["difference"] = compare_reports(reports["baseline"], reports["guided"])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints the tables and writes JSON. Returns the exit code."""
    args = _parser().parse_args(argv)
    if args.models is None and args.validate_on is None:
        _parser().error("give --models, --validate-on, or both")
    out: dict[str, Any] = {}
    if args.validate_on is not None:
        out["validation"] = validate_checks(args.validate_on, include_mirrored=not args.no_mirrored, progress=True)
        print(format_validation(out["validation"]))
    if args.models is not None:
        out["alignment"] = _alignment_json(args)
    default = (args.models / f"kinematic_alignment_{args.generator}.json" if args.models
               else Path("kinematic_validation.json"))
    path = args.out or default
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
