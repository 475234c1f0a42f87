"""Captions measured from joint positions: direction of travel, turns, jumps, speed.

Positions (T, 22, 3) m, Y up, floor at Y=0, frame 0 facing +Z with the character's
left at +X.  Yaw is about +Y from +Z towards +X: a positive heading change is a
turn to the character's LEFT."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from realign_core.motion.kinematics import facing_yaw, moving_average, odd_window, runs
from realign_core.motion.skeleton import JOINT_INDEX, LEFT_FOOT, NUM_JOINTS, RIGHT_FOOT


@dataclass(frozen=True)
class KinematicCaptionConfig:
    """Thresholds for :func:`kinematic_captions` (SI units: m, s, m/s, degrees)."""

    min_duration_s: float = 1.0        # shorter clips get no caption
    smoothing_s: float = 0.5           # moving average of pelvis path and yaw (about one step)
    heading_window_s: float = 0.2      # frames averaged for the initial/final heading
    ground_percentile: float = 5.0     # floor = this percentile of the lowest foot joint
    foot_clearance_m: float = 0.06     # a foot is off the ground above this height
    min_airborne_s: float = 0.15       # a jump: both feet off the ground at least this long,
    max_airborne_s: float = 1.0        # ... at most this long (longer: raised ground, no jumps)
    max_raised_fraction: float = 0.25  # more time than this on raised ground: no caption
    min_jump_rise_m: float = 0.10      # ... with the pelvis this far above its median height
    static_excursion_m: float = 0.15   # "still": every joint within this of its mean position
    upright_leg_ratio: float = 0.75    # upright frame: pelvis height >= ratio * leg length
    upright_head_ratio: float = 0.5    # ... and head above pelvis by >= ratio * their distance
    min_upright_fraction: float = 0.9  # captions only for clips upright this often
    moving_speed_mps: float = 0.3      # frames faster than this count as moving
    walk_max_speed_mps: float = 1.8    # typical moving speed below this: walks
    run_min_speed_mps: float = 2.1     # at or above this: runs (between: "moves")
    min_travel_m: float = 0.8          # net displacement for a walk/run caption
    in_place_m: float = 0.3            # below this net displacement: "in place"
    min_straightness: float = 0.6      # |displacement| / path length for a direction word
    winding_straightness: float = 0.4  # below this the net heading change is not described
    sector_half_width_deg: float = 35.0  # forward/left/backward/right: ±45° less a 10° margin
    body_direction_share: float = 0.7  # share of moving distance in the same body direction
    turn_deg: float = 60.0             # |heading change| for "turns left/right"
    turn_around_deg: float = 150.0     # ... for "turns around"
    spin_deg: float = 330.0            # ... for "spins around" (in place only)


@dataclass(frozen=True)
class KinematicSummary:
    """What :func:`measure_kinematics` measured on a clip.

    duration_s: (T-1)/fps (s); forward_m, left_m: net pelvis displacement in
    the initial facing frame (m); path_length_m: length of the smoothed
    horizontal pelvis path (m); mean_speed_mps: path length / duration (m/s);
    typical_speed_mps: distance-weighted median speed of moving frames (m/s);
    heading_change_deg: net yaw change, positive = turned to the LEFT
    (counterclockwise seen from above); max_rise_m: max pelvis height above
    its median (m); airborne_fraction: share of frames with both feet off the
    ground; max_airborne_s: longest such run (s); raised_fraction: share of
    frames in runs too long for a jump (feet on stairs, platforms, ...);
    jump_count: airborne runs of jump length with the pelvis raised; body_direction: dominant travel
    direction relative to the body at each frame ('forward', 'left',
    'backward', 'right' or None) and body_direction_share, its share of the
    moving distance; static: every joint stayed still; upright_fraction:
    share of frames standing upright (not sitting, crawling, lying or upside
    down); upright: that share reaches the configured minimum.
    """

    duration_s: float
    forward_m: float
    left_m: float
    path_length_m: float
    mean_speed_mps: float
    typical_speed_mps: float
    heading_change_deg: float
    max_rise_m: float
    airborne_fraction: float
    max_airborne_s: float
    raised_fraction: float
    jump_count: int
    body_direction: str | None
    body_direction_share: float
    static: bool
    upright_fraction: float
    upright: bool

    @property
    def travel_m(self) -> float:
        """Net horizontal displacement (m)."""
        return math.hypot(self.forward_m, self.left_m)

    @property
    def straightness(self) -> float:
        """Net displacement / path length, 0..1 (1 for a straight path)."""
        return self.travel_m / self.path_length_m if self.path_length_m > 0 else 0.0


DEFAULT_KINEMATIC_CONFIG = KinematicCaptionConfig()
_SECTORS: tuple[tuple[str, float], ...] = (
    ("forward", 0.0), ("left", 90.0), ("backward", 180.0), ("right", -90.0),
)
_BODY_SECTOR_HALF_WIDTH_DEG = 45.0  # body-relative travel: plain quadrants
_DIRECTION_PHRASES: dict[str, str] = {
    "forward": "forward", "backward": "backward", "left": "to the left", "right": "to the right",
}
_LEG_JOINTS: tuple[tuple[int, int, int], ...] = (  # hip, knee, ankle per side
    (JOINT_INDEX["left_hip"], JOINT_INDEX["left_knee"], JOINT_INDEX["left_ankle"]),
    (JOINT_INDEX["right_hip"], JOINT_INDEX["right_knee"], JOINT_INDEX["right_ankle"]),
)
_PELVIS = JOINT_INDEX["pelvis"]
_HEAD = JOINT_INDEX["head"]
_CAPTION_SUBJECTS: tuple[str, ...] = ("a person", "someone")


def _check_motion(positions: np.ndarray) -> np.ndarray:
    """(T, 22, 3) float64 array, or ValueError."""
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 3 or pos.shape[1:] != (NUM_JOINTS, 3) or len(pos) < 2:
        raise ValueError(f"positions must be (T>=2, {NUM_JOINTS}, 3), got {pos.shape}")
    if not np.isfinite(pos).all():
        raise ValueError("positions contain NaN or inf")
    return pos


def _typical_speed(speed: np.ndarray, config: KinematicCaptionConfig) -> float:
    """Distance-weighted median of the moving frames' speeds (m/s): the speed
    at which half of the distance was covered, so stops and starts count little."""
    moving = np.sort(speed[speed > config.moving_speed_mps])
    if not len(moving):
        return 0.0
    covered = np.cumsum(moving)
    return float(moving[np.searchsorted(covered, 0.5 * covered[-1])])


def _foot_heights(pos: np.ndarray, config: KinematicCaptionConfig) -> tuple[np.ndarray, float]:
    """Lowest joint of each foot above the floor, (T, 2) m, and the floor height (m).

    The floor is a low percentile of the lowest foot joint over the clip.
    """
    lowest = np.stack([pos[:, list(LEFT_FOOT), 1].min(1), pos[:, list(RIGHT_FOOT), 1].min(1)], -1)
    floor = float(np.percentile(lowest.min(1), config.ground_percentile))
    return lowest - floor, floor


def _leg_length(pos: np.ndarray) -> float:
    """Mean hip-knee-ankle length of the two legs (m)."""
    total = 0.0
    for hip, knee, ankle in _LEG_JOINTS:
        total += np.linalg.norm(pos[:, knee] - pos[:, hip], axis=-1).mean()
        total += np.linalg.norm(pos[:, ankle] - pos[:, knee], axis=-1).mean()
    return total / len(_LEG_JOINTS)


def _upright_fraction(pos: np.ndarray, floor: float, config: KinematicCaptionConfig) -> float:
    """Share of frames with the pelvis at standing height and the head above it."""
    pelvis, head = pos[:, _PELVIS], pos[:, _HEAD]
    tall = pelvis[:, 1] - floor >= config.upright_leg_ratio * _leg_length(pos)
    head_up = head[:, 1] - pelvis[:, 1] >= config.upright_head_ratio * np.linalg.norm(head - pelvis, axis=-1)
    return float((tall & head_up).mean())


def _raised_fraction(airborne: np.ndarray, fps: int, config: KinematicCaptionConfig) -> float:
    """Share of frames in airborne runs longer than any jump (feet on raised ground)."""
    long_runs = [end - start for start, end in runs(airborne) if (end - start) / fps > config.max_airborne_s]
    return sum(long_runs) / len(airborne)


def _jump_count(airborne: np.ndarray, rise: np.ndarray, fps: int, config: KinematicCaptionConfig) -> int:
    """Airborne runs of jump length (s) with the pelvis raised (m); 0 on raised ground."""
    airborne_runs = runs(airborne)
    if any((end - start) / fps > config.max_airborne_s for start, end in airborne_runs):
        return 0  # "airborne" for too long: the feet are on something above the floor
    return sum(1 for start, end in airborne_runs
               if (end - start) / fps >= config.min_airborne_s and rise[start:end].max() >= config.min_jump_rise_m)


def _sector(angle_deg: float, half_width: float) -> str | None:
    """Which of forward/left/backward/right an angle (deg, +left) falls in, if any."""
    for name, centre in _SECTORS:
        diff = (angle_deg - centre + 180.0) % 360.0 - 180.0
        if abs(diff) < half_width:
            return name
    return None


def _body_direction(path: np.ndarray, yaw: np.ndarray, fps: int,
                    config: KinematicCaptionConfig) -> tuple[str | None, float]:
    """Dominant travel direction relative to the body, and its share of the distance.

    path: (T, 2) smoothed pelvis (x, z) m; yaw: (T,) rad.
    """
    step = np.diff(path, axis=0)
    speed = np.linalg.norm(step, axis=-1) * fps
    mid_yaw = 0.5 * (yaw[1:] + yaw[:-1])
    fwd = step[:, 0] * np.sin(mid_yaw) + step[:, 1] * np.cos(mid_yaw)
    left = step[:, 0] * np.cos(mid_yaw) - step[:, 1] * np.sin(mid_yaw)
    moving = speed > config.moving_speed_mps
    if not moving.any():
        return None, 0.0
    angles = np.degrees(np.arctan2(left[moving], fwd[moving]))
    sectors = np.array([_sector(a, _BODY_SECTOR_HALF_WIDTH_DEG) for a in angles])
    dist = speed[moving]
    shares = {name: float(dist[sectors == name].sum() / dist.sum()) for name, _ in _SECTORS}
    best = max(shares, key=shares.get)
    return best, shares[best]


def measure_kinematics(positions: np.ndarray, fps: int = 20,
                       config: KinematicCaptionConfig = DEFAULT_KINEMATIC_CONFIG) -> KinematicSummary:
    """Measure travel, turning, jumping, stillness and posture of a clip.

    positions: (T, 22, 3) metres, Y up, floor near Y=0; fps: frames per second.
    Displacements are expressed in the initial facing frame (forward = initial
    facing, left = the character's initial left).
    """
    pos = _check_motion(positions)
    duration = (len(pos) - 1) / fps
    win = odd_window(config.smoothing_s, fps, len(pos))
    yaw = moving_average(facing_yaw(pos), win)
    path = moving_average(pos[:, _PELVIS][:, [0, 2]], win)
    k = odd_window(config.heading_window_s, fps, len(pos))
    yaw0, yaw1 = float(yaw[:k].mean()), float(yaw[-k:].mean())
    disp = path[-1] - path[0]
    speed = np.linalg.norm(np.diff(path, axis=0), axis=-1) * fps
    rise = pos[:, _PELVIS, 1] - np.median(pos[:, _PELVIS, 1])
    feet, floor = _foot_heights(pos, config)
    airborne = (feet > config.foot_clearance_m).all(axis=1)
    body_dir, body_share = _body_direction(path, yaw, fps, config)
    upright_fraction = _upright_fraction(pos, floor, config)
    return KinematicSummary(
        duration_s=duration,
        forward_m=float(disp[0] * math.sin(yaw0) + disp[1] * math.cos(yaw0)),
        left_m=float(disp[0] * math.cos(yaw0) - disp[1] * math.sin(yaw0)),
        path_length_m=float(speed.sum() / fps),
        mean_speed_mps=float(speed.sum() / fps / duration) if duration > 0 else 0.0,
        typical_speed_mps=_typical_speed(speed, config),
        heading_change_deg=math.degrees(yaw1 - yaw0),
        max_rise_m=float(rise.max()),
        airborne_fraction=float(airborne.mean()),
        max_airborne_s=max((e - s for s, e in runs(airborne)), default=0) / fps,
        raised_fraction=_raised_fraction(airborne, fps, config),
        jump_count=_jump_count(airborne, rise, fps, config),
        body_direction=body_dir, body_direction_share=body_share,
        static=bool(np.linalg.norm(pos - pos.mean(axis=0), axis=-1).max() < config.static_excursion_m),
        upright_fraction=upright_fraction,
        upright=upright_fraction >= config.min_upright_fraction,
    )


def _direction(summary: KinematicSummary, config: KinematicCaptionConfig) -> str | None:
    """Travel direction phrase when displacement and body-relative travel agree."""
    if summary.straightness < config.min_straightness:
        return None
    angle = math.degrees(math.atan2(summary.left_m, summary.forward_m))
    sector = _sector(angle, config.sector_half_width_deg)
    agrees = sector == summary.body_direction and summary.body_direction_share >= config.body_direction_share
    return _DIRECTION_PHRASES[sector] if sector and agrees else None


def _turn_phrase(heading_deg: float, config: KinematicCaptionConfig) -> str | None:
    """'turns left', 'turns around to the right', 'spins around to the left' or None."""
    side = "left" if heading_deg > 0 else "right"
    size = abs(heading_deg)
    if size >= config.spin_deg:
        return f"spins around to the {side}"
    if size >= config.turn_around_deg:
        return f"turns around to the {side}"
    if size >= config.turn_deg:
        return f"turns {side}"
    return None


def _gait_verb(summary: KinematicSummary, config: KinematicCaptionConfig) -> str:
    """'walks', 'runs', or 'moves' when the speed is in between."""
    if summary.typical_speed_mps < config.walk_max_speed_mps:
        return "walks"
    if summary.typical_speed_mps >= config.run_min_speed_mps:
        return "runs"
    return "moves"


def _jump_phrase(summary: KinematicSummary, config: KinematicCaptionConfig) -> str:
    """'jumps in place', 'jumps forward', ... or plain 'jumps'."""
    if summary.travel_m < config.in_place_m:
        return "jumps in place"
    direction = _direction(summary, config)
    return f"jumps {direction}" if direction else "jumps"


def _travel_phrase(summary: KinematicSummary, turn: str | None,
                   config: KinematicCaptionConfig) -> str | None:
    """'walks forward', 'runs', ...; None when the verb alone would say too little."""
    verb, direction = _gait_verb(summary, config), _direction(summary, config)
    if direction:
        return f"{verb} {direction}"
    return verb if verb != "moves" or turn else None


def _motion_predicate(summary: KinematicSummary, config: KinematicCaptionConfig) -> str | None:
    """The caption's predicate ('walks forward and turns left') or None if unclear."""
    turn = _turn_phrase(summary.heading_change_deg, config)
    travelling = summary.travel_m >= config.min_travel_m
    if travelling and abs(summary.heading_change_deg) >= config.spin_deg:
        return None  # looping path: no short description
    if travelling and summary.straightness < config.winding_straightness:
        turn = None  # winding path: the net heading change is not meaningful
    if summary.jump_count:
        base: str | None = _jump_phrase(summary, config)
    elif travelling and summary.body_direction_share >= config.body_direction_share:
        base = _travel_phrase(summary, turn, config)
    elif travelling:
        return None  # travels in no consistent body direction (dancing, sparring, ...)
    elif summary.path_length_m >= config.min_travel_m:
        return None  # went somewhere and came back
    else:
        base = None
    if base and turn:
        return f"{base} and {turn}"
    return base or turn


def kinematic_captions(positions: np.ndarray, fps: int = 20,
                       config: KinematicCaptionConfig = DEFAULT_KINEMATIC_CONFIG) -> list[str]:
    """Short captions measured from a motion, or [] when it is ambiguous.

    positions: (T, 22, 3) metres, Y up, floor at Y=0.  Directions are relative
    to the initial facing ("to the left" = the character's initial left), so
    the captions do not change when the whole motion is rotated about Y, and
    mirroring the motion mirrors the captions.  Returns two phrasings, e.g.
    ["a person walks forward.", "someone walks forward."], or [].
    """
    summary = measure_kinematics(positions, fps, config)
    if summary.duration_s < config.min_duration_s or not summary.upright \
            or summary.raised_fraction > config.max_raised_fraction:
        return []
    still = summary.static and not summary.jump_count
    predicate = "stands still" if still else _motion_predicate(summary, config)
    if predicate is None:
        return []
    return [f"{subject} {predicate}." for subject in _CAPTION_SUBJECTS]
