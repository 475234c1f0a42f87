"""BVH text format: parsing and forward kinematics, in the file's own units and axes.

* ``parse_bvh`` / ``parse_bvh_text`` read the HIERARCHY block (joint names,
  parents, rest offsets ``(J, 3)`` in file units, per-joint channel layout,
  End Sites) and the MOTION block ``(F, C)`` (rotations in degrees, positions
  in file units) into a ``BvhMotion``. Any channel order, 3- or 6-channel
  joints, tabs and CRLF line ends are accepted.
* ``forward_kinematics`` turns a ``BvhMotion`` into world joint positions
  ``(F, J, 3)`` in the file's units and axes (rotation channels compose
  intrinsically in listed order; ``axis_rotation`` gives ``(F, 3, 3)``).
* ``ImportConfig`` / ``DEFAULT_CONFIG`` hold every tunable number of the
  importer. They live here because ``BvhMotion.fps`` snaps the frame rate
  with ``fps_snap_tol``; the other fields are used by ``convert.py``.

Every problem with the input is reported as ``BvhError`` (a ``ValueError``)
whose message starts with the file name.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportConfig:
    """Every tunable number of the importer, in one place.

    unit_candidates: metres per file unit for the units we recognise
        (the CMU unit is the ASF "length 0.45" inch, i.e. 0.0254 / 0.45 m).
    target_height_m: body height an imported adult should have (metres).
    plausible_height_m: a candidate unit is accepted when the body height it
        gives lies in this range; otherwise the clip is scaled so that the
        body is exactly ``target_height_m`` tall.
    height_per_chain: body height / (pelvis-to-head bone chain + hip-knee-ankle
        chain).  1.15 on SMPL's reference skeleton (the chains stop at the head
        and ankle joints, the body continues to the crown and the sole).
    collar_fraction: a synthesised collar lies this fraction of the way from
        the neck joint to the upper-arm root.
    fps_snap_tol: a source rate within this many fps of an integer (e.g.
        ``1 / 0.0333333``) is snapped to that integer.
    zero_offset_eps: an offset shorter than this (file units) counts as zero.
    contact_margin_m: a toe within this height (metres) of its lowest point
        in the clip is on the ground (handedness check).
    """

    unit_candidates: tuple[tuple[str, float], ...] = (
        ("m", 1.0), ("cm", 0.01), ("mm", 0.001), ("in", 0.0254),
        ("cmu", 0.0254 / 0.45),
    )
    target_height_m: float = 1.7
    plausible_height_m: tuple[float, float] = (1.4, 2.0)
    height_per_chain: float = 1.15
    collar_fraction: float = 0.5
    fps_snap_tol: float = 1e-3
    zero_offset_eps: float = 1e-9
    contact_margin_m: float = 0.03


DEFAULT_CONFIG = ImportConfig()

# --------------------------------------------------------------------------
# Data types
# --------------------------------------------------------------------------

POSITION_CHANNELS: tuple[str, ...] = ("Xposition", "Yposition", "Zposition")
ROTATION_CHANNELS: tuple[str, ...] = ("Xrotation", "Yrotation", "Zrotation")
_CHANNEL_LOOKUP: dict[str, str] = {
    name.lower(): name for name in POSITION_CHANNELS + ROTATION_CHANNELS
}


class BvhError(ValueError):
    """Malformed or unusable BVH input; the message names the file."""


@dataclass(frozen=True, eq=False)
class BvhMotion:
    """A parsed BVH file.

    names: (J,) joint names in file (depth-first) order; parents precede
        children.
    parents: (J,) parent index per joint, -1 for a root.
    offsets: (J, 3) rest offsets from the parent, file units.
    channels: (J,) tuple of canonical channel names per joint (e.g.
        ``("Xposition", ..., "Zrotation", "Xrotation", "Yrotation")``).
    end_sites: joint index -> (3,) End Site offset, file units.
    frame_time: seconds per frame.
    motion: (F, C) channel values; rotations in degrees, positions in file
        units, columns in joint order then channel order.
    source: the file the motion came from (or a label for in-memory text).
    """

    names: tuple[str, ...]
    parents: tuple[int, ...]
    offsets: np.ndarray
    channels: tuple[tuple[str, ...], ...]
    end_sites: dict[int, np.ndarray]
    frame_time: float
    motion: np.ndarray
    source: str = "<string>"

    @property
    def num_joints(self) -> int:
        """Number of joints J (End Sites excluded)."""
        return len(self.names)

    @property
    def num_frames(self) -> int:
        """Number of frames F."""
        return int(self.motion.shape[0])

    @property
    def fps(self) -> float:
        """Frames per second, snapped to an integer when within tolerance."""
        fps = 1.0 / self.frame_time
        nearest = round(fps)
        return float(nearest) if abs(fps - nearest) < DEFAULT_CONFIG.fps_snap_tol else fps

    @property
    def channel_starts(self) -> tuple[int, ...]:
        """(J,) index of each joint's first column in ``motion``."""
        counts = np.cumsum([0] + [len(c) for c in self.channels])
        return tuple(int(c) for c in counts[:-1])


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------


@dataclass
class _Token:
    text: str
    line: int


@dataclass
class _Hierarchy:
    names: list[str] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)
    offsets: list[np.ndarray] = field(default_factory=list)
    channels: list[tuple[str, ...]] = field(default_factory=list)
    end_sites: dict[int, np.ndarray] = field(default_factory=dict)


class _HierarchyParser:
    """Recursive-descent parser over whitespace tokens of the HIERARCHY block."""

    def __init__(self, tokens: list[_Token], source: str) -> None:
        self.tokens = tokens
        self.pos = 0
        self.source = source
        self.out = _Hierarchy()

    def error(self, message: str, line: int | None = None) -> BvhError:
        where = f" (line {line})" if line is not None else ""
        return BvhError(f"{self.source}: {message}{where}")

    def next(self, context: str) -> _Token:
        if self.pos >= len(self.tokens):
            raise self.error(f"truncated file: hierarchy ends inside {context}")
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def expect(self, text: str, context: str) -> _Token:
        tok = self.next(context)
        if tok.text.upper() != text.upper():
            raise self.error(f"expected '{text}' in {context}, found '{tok.text}'", tok.line)
        return tok

    def number(self, context: str) -> float:
        tok = self.next(context)
        try:
            value = float(tok.text)
        except ValueError:
            raise self.error(f"non-numeric value '{tok.text}' in {context}", tok.line) from None
        if not np.isfinite(value):
            raise self.error(f"NaN or infinite value '{tok.text}' in {context}", tok.line)
        return value

    def name_after(self, keyword: _Token) -> str:
        """Joint name: the tokens on the keyword's line up to '{'."""
        parts: list[str] = []
        while (self.pos < len(self.tokens) and self.tokens[self.pos].line == keyword.line
               and self.tokens[self.pos].text != "{"):
            parts.append(self.tokens[self.pos].text)
            self.pos += 1
        if not parts:
            raise self.error(f"{keyword.text} without a name", keyword.line)
        return " ".join(parts)

    def parse(self) -> _Hierarchy:
        self.expect("HIERARCHY", "the file header")
        if self.pos >= len(self.tokens):
            raise self.error("no ROOT joint in HIERARCHY")
        while self.pos < len(self.tokens):
            self.expect("ROOT", "HIERARCHY")
            self.joint(self.name_after(self.tokens[self.pos - 1]), -1)
        return self.out

    def joint(self, name: str, parent: int) -> None:
        if name in self.out.names:
            raise self.error(f"duplicate joint name '{name}'")
        index = len(self.out.names)
        self.out.names.append(name)
        self.out.parents.append(parent)
        self.out.offsets.append(np.zeros(3))
        self.out.channels.append(())
        context = f"joint '{name}'"
        self.expect("{", context)
        while True:
            tok = self.next(context)
            key = tok.text.upper()
            if key == "}":
                return
            if key == "OFFSET":
                self.out.offsets[index] = np.array([self.number(context) for _ in range(3)])
            elif key == "CHANNELS":
                self.out.channels[index] = self.channel_list(context)
            elif key == "JOINT":
                self.joint(self.name_after(tok), index)
            elif key == "END":
                self.expect("Site", context)
                self.out.end_sites[index] = self.end_site(context)
            else:
                raise self.error(f"unexpected '{tok.text}' in {context}", tok.line)

    def channel_list(self, context: str) -> tuple[str, ...]:
        count_tok = self.next(context)
        if not count_tok.text.isdigit():
            raise self.error(f"bad channel count '{count_tok.text}' in {context}", count_tok.line)
        names = []
        for _ in range(int(count_tok.text)):
            tok = self.next(context)
            canonical = _CHANNEL_LOOKUP.get(tok.text.lower())
            if canonical is None:
                raise self.error(f"unknown channel name '{tok.text}' in {context}", tok.line)
            names.append(canonical)
        if len(set(names)) != len(names):
            raise self.error(f"repeated channel in {context}", count_tok.line)
        return tuple(names)

    def end_site(self, context: str) -> np.ndarray:
        context = f"End Site of {context}"
        self.expect("{", context)
        offset = np.zeros(3)
        while True:
            tok = self.next(context)
            if tok.text == "}":
                return offset
            if tok.text.upper() != "OFFSET":
                raise self.error(f"unexpected '{tok.text}' in {context}", tok.line)
            offset = np.array([self.number(context) for _ in range(3)])


def _tokenize(lines: Sequence[str], first_line: int = 1) -> list[_Token]:
    """Whitespace tokens with 1-based line numbers; '{' and '}' split off."""
    tokens = []
    for number, line in enumerate(lines, start=first_line):
        for text in line.replace("{", " { ").replace("}", " } ").split():
            tokens.append(_Token(text, number))
    return tokens


def _find_motion_line(lines: Sequence[str]) -> int | None:
    """0-based index of the line whose first token is MOTION, or None."""
    for i, line in enumerate(lines):
        parts = line.split()
        if parts and parts[0].upper() == "MOTION":
            return i
    return None


def _header_value(lines: Sequence[str], i: int, pattern: str, what: str, source: str) -> str:
    """Value of a ``Frames:`` / ``Frame Time:`` header line ``lines[i]``."""
    if i >= len(lines):
        raise BvhError(f"{source}: truncated file: missing '{what}' line after MOTION")
    match = re.fullmatch(pattern, lines[i].strip(), flags=re.IGNORECASE)
    if match is None:
        raise BvhError(f"{source}: expected '{what} <value>' (line {i + 1}), "
                       f"found '{lines[i].strip()}'")
    return match.group(1)


def _parse_motion_header(lines: Sequence[str], start: int, source: str) -> tuple[int, float, int]:
    """Read ``Frames:`` and ``Frame Time:`` after the MOTION line.

    lines: all lines of the file; start: index of the MOTION line.
    Returns (frame count, frame time in seconds, index of the first data line).
    """
    i = start + 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    frames_text = _header_value(lines, i, r"Frames\s*:\s*(\S+)", "Frames:", source)
    if not frames_text.isdigit():
        raise BvhError(f"{source}: bad frame count '{frames_text}' (line {i + 1})")
    frame_time_text = _header_value(lines, i + 1, r"Frame\s*Time\s*:\s*(\S+)", "Frame Time:",
                                    source)
    try:
        frame_time = float(frame_time_text)
    except ValueError:
        raise BvhError(f"{source}: non-numeric frame time '{frame_time_text}' "
                       f"(line {i + 2})") from None
    if not np.isfinite(frame_time) or frame_time <= 0:
        raise BvhError(f"{source}: frame time must be positive, got '{frame_time_text}' "
                       f"(line {i + 2})")
    return int(frames_text), frame_time, i + 2


def _parse_frames(lines: Sequence[str], first: int, num_frames: int, num_channels: int,
                  source: str) -> np.ndarray:
    """Motion rows ``(F, C)`` from the data lines starting at ``lines[first]``."""
    rows = [(i, line.split()) for i, line in enumerate(lines[first:], start=first) if line.strip()]
    for k, (i, values) in enumerate(rows):
        if len(values) != num_channels:
            last = k == len(rows) - 1 and len(values) < num_channels
            problem = "truncated file: last frame has" if last else "frame has"
            raise BvhError(f"{source}: {problem} {len(values)} values, expected {num_channels} "
                           f"(line {i + 1})")
    if len(rows) != num_frames:
        raise BvhError(f"{source}: frame count mismatch: header says {num_frames} frames, "
                       f"file has {len(rows)}")
    flat = [v for _, values in rows for v in values]
    try:
        data = np.array(flat, dtype=np.float64).reshape(num_frames, num_channels)
    except ValueError:
        raise _non_numeric_error(rows, source) from None
    bad = ~np.isfinite(data)
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        raise BvhError(f"{source}: NaN or infinite value in frame {row} (line {rows[row][0] + 1})")
    return data


def _non_numeric_error(rows: Iterable[tuple[int, list[str]]], source: str) -> BvhError:
    """The BvhError for the first value of ``rows`` that is not a number."""
    for i, values in rows:
        for value in values:
            try:
                float(value)
            except ValueError:
                return BvhError(f"{source}: non-numeric value '{value}' (line {i + 1})")
    return BvhError(f"{source}: unreadable motion data")


def parse_bvh_text(text: str, source: str = "<string>") -> BvhMotion:
    """Parse BVH text; ``source`` names the origin in error messages."""
    if not text.strip():
        raise BvhError(f"{source}: empty file")
    lines = text.splitlines()
    motion_at = _find_motion_line(lines)
    if motion_at is None:
        tokens = _tokenize(lines)
        _HierarchyParser(tokens, source).parse()  # reports a truncated hierarchy first
        raise BvhError(f"{source}: missing MOTION section")
    hierarchy = _HierarchyParser(_tokenize(lines[:motion_at]), source).parse()
    num_frames, frame_time, first = _parse_motion_header(lines, motion_at, source)
    num_channels = sum(len(c) for c in hierarchy.channels)
    motion = _parse_frames(lines, first, num_frames, num_channels, source)
    return BvhMotion(
        names=tuple(hierarchy.names), parents=tuple(hierarchy.parents),
        offsets=np.array(hierarchy.offsets, dtype=np.float64).reshape(-1, 3),
        channels=tuple(hierarchy.channels), end_sites=hierarchy.end_sites,
        frame_time=frame_time, motion=motion, source=source,
    )


def parse_bvh(path: str | Path) -> BvhMotion:
    """Parse a BVH file (any channel order, 3- or 6-channel joints, tabs/CRLF).

    Raises BvhError naming ``path`` for unreadable or malformed files.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise BvhError(f"{source}: cannot read file ({exc.strerror or exc})") from exc
    return parse_bvh_text(text, source)


# --------------------------------------------------------------------------
# Forward kinematics
# --------------------------------------------------------------------------


def axis_rotation(axis: int, degrees: np.ndarray) -> np.ndarray:
    """Rotation matrices about a coordinate axis.

    axis: 0, 1, 2 for X, Y, Z; degrees: (F,) angles -> (F, 3, 3), acting on
    column vectors (right-hand rule).
    """
    rad = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    c, s = np.cos(rad), np.sin(rad)
    out = np.zeros(rad.shape + (3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    out[..., axis, axis] = 1.0
    out[..., i, i] = c
    out[..., j, j] = c
    out[..., i, j] = -s
    out[..., j, i] = s
    return out


def _local_transform(bvh: BvhMotion, joint: int) -> tuple[np.ndarray, np.ndarray]:
    """Local translation (F, 3) and rotation (F, 3, 3) of one joint.

    Rotation channels compose intrinsically in listed order
    (R = R_first @ R_second @ R_third); position channels replace the
    corresponding offset component.
    """
    start = bvh.channel_starts[joint]
    translation = np.repeat(bvh.offsets[joint][None], bvh.num_frames, axis=0)
    rotation = np.broadcast_to(np.eye(3), (bvh.num_frames, 3, 3))
    for k, name in enumerate(bvh.channels[joint]):
        column = bvh.motion[:, start + k]
        axis = "XYZ".index(name[0])
        if name in POSITION_CHANNELS:
            translation[:, axis] = column
        else:
            rotation = rotation @ axis_rotation(axis, column)
    return translation, rotation


def forward_kinematics(bvh: BvhMotion) -> np.ndarray:
    """World joint positions (F, J, 3) in the file's units and axes."""
    frames, joints = bvh.num_frames, bvh.num_joints
    positions = np.zeros((frames, joints, 3))
    rotations = np.zeros((frames, joints, 3, 3))
    for j, parent in enumerate(bvh.parents):
        translation, rotation = _local_transform(bvh, j)
        if parent < 0:
            positions[:, j] = translation
            rotations[:, j] = rotation
        else:
            positions[:, j] = positions[:, parent] + np.einsum(
                "fab,fb->fa", rotations[:, parent], translation)
            rotations[:, j] = rotations[:, parent] @ rotation
    return positions
