"""Long multi-prompt sequences: a list of (prompt, seconds) generated as one continuous motion.

The sequence is cut into windows of at most ``max_frames`` (the generator's 9.8 s): window 0 is the
first segment's opening; every later window starts with ``overlap`` frames that repeat the end of the
motion so far, held there as keyed poses (the constraint hook of ``guidance.constraints`` pulls the
window's first frames onto them during sampling, and ``warp.warp_to_keyframes`` makes them exact),
followed by its new frames, which the sequence keeps.  A segment longer than one window is spread over
several windows with the same prompt.  Windows run one after another (each needs the previous one's
end), so the wall time grows linearly with the total length.

``generate_sequence`` returns a ``SequenceMotion``: joints (F, 22, 3) float32 world metres at 20 fps,
F = sum of the segments' frames, and each segment's frame range.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from realign_core.control.motion import generate_controlled
from realign_core.guidance.control_spec import ControlSpec, Keyframes
from realign_core.motion.features import joints_to_features
from realign_core.motion.skeleton import FPS

DEFAULT_OVERLAP = 20       # frames (1 s) repeated from the previous window (10 gave transition jerk 1.4x within)
MIN_SEGMENT_SECONDS = 1.0
MAX_SEGMENTS = 64
MAX_TOTAL_SECONDS = 600.0


@dataclass(frozen=True)
class Segment:
    """One entry of a sequence: a prompt held for ``seconds``."""

    prompt: str
    seconds: float


@dataclass(frozen=True)
class Window:
    """One sampling run: ``prompt`` for ``new`` frames starting at sequence frame ``start``, opening with
    ``overlap`` frames repeated from the sequence so far (0 for the first window)."""

    prompt: str
    segment: int
    start: int
    new: int
    overlap: int

    @property
    def frames(self) -> int:
        return self.overlap + self.new


@dataclass
class SequenceMotion:
    joints: np.ndarray                                     # (F, 22, 3) world metres, 20 fps
    segments: list[tuple[int, int]] = field(default_factory=list)   # [start, end) frames per segment
    windows: list[Window] = field(default_factory=list)
    seconds_per_window: list[float] = field(default_factory=list)

    def features(self) -> np.ndarray:
        """(F, 263) HumanML3D features of the whole motion (its last frame's velocity extrapolated)."""
        j = self.joints.astype(np.float64)
        return joints_to_features(np.concatenate([j, 2 * j[-1:] - j[-2:-1]]))


def check_segments(segments: list[Segment]) -> None:
    """Errors name the entry and value: 1..MAX_SEGMENTS entries, each a non-empty prompt >= 1 s."""
    if not 1 <= len(segments) <= MAX_SEGMENTS:
        raise ValueError(f"sequence must have 1..{MAX_SEGMENTS} entries, got {len(segments)}")
    for i, seg in enumerate(segments):
        if not isinstance(seg.prompt, str) or not seg.prompt.strip():
            raise ValueError(f"sequence[{i}].prompt must be a non-empty string, got {seg.prompt!r}")
        s = seg.seconds
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s < MIN_SEGMENT_SECONDS:
            raise ValueError(f"sequence[{i}].seconds must be a finite number >= {MIN_SEGMENT_SECONDS:g}, got {s!r}")
    total = sum(s.seconds for s in segments)
    if total > MAX_TOTAL_SECONDS:
        raise ValueError(f"sequence lasts {total:g} s in total; at most {MAX_TOTAL_SECONDS:g} s")


def plan_windows(segments: list[Segment], max_frames: int, overlap: int = DEFAULT_OVERLAP) -> list[Window]:
    """Cut the segments into windows of at most ``max_frames`` frames (overlap included)."""
    check_segments(segments)
    if not 1 <= overlap < max_frames // 2:
        raise ValueError(f"overlap must be in [1, {max_frames // 2 - 1}] frames, got {overlap}")
    windows: list[Window] = []
    start = 0
    for index, seg in enumerate(segments):
        frames = round(seg.seconds * FPS)
        room = max_frames - overlap
        pieces = max(1, math.ceil(frames / room))
        sizes = [frames // pieces + (1 if k < frames % pieces else 0) for k in range(pieces)]
        for size in sizes:
            windows.append(Window(seg.prompt, index, start, size, 0 if not windows else overlap))
            start += size
    return windows


def generate_sequence(pipe, segments: list[Segment], seed: int = 0, cfg=None, guidance=None, callback=None,
                      overlap: int = DEFAULT_OVERLAP, strength: float = 1.0) -> SequenceMotion:
    """The segments as one continuous motion (see the module docstring).

    callback(step_index, total_steps) sees the steps of all windows as one run (total = windows x steps).
    """
    import time

    windows = plan_windows(segments, pipe.max_frames, overlap)
    joints: np.ndarray | None = None
    seconds: list[float] = []
    for k, win in enumerate(windows):
        spec = None
        if joints is not None:
            tail = joints[-win.overlap:]
            spec = ControlSpec(keyframes=Keyframes.make(tuple(range(win.overlap)), tail), strength=strength)
        started = time.perf_counter()
        motion = generate_controlled(pipe, [win.prompt], [win.frames], [seed + k], [spec], cfg, guidance,
                                     callback=_window_callback(callback, k, len(windows)))[0]
        seconds.append(time.perf_counter() - started)
        new = motion.joints[win.overlap:]
        joints = new if joints is None else np.concatenate([joints, new])
    ranges, start = [], 0
    for index in range(len(segments)):
        size = sum(w.new for w in windows if w.segment == index)
        ranges.append((start, start + size))
        start += size
    return SequenceMotion(joints.astype(np.float32), ranges, windows, seconds)


def _window_callback(callback, window: int, windows: int):
    """Map one window's (step_index, total) onto the whole sequence's steps."""
    if callback is None:
        return None

    def inner(step_index: int, total: int):
        return callback(window * total + step_index, windows * total)
    return inner
