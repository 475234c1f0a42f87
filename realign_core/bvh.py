"""Generic BVH importer producing 22-joint SMPL / HumanML3D positions.

Pipeline (``bvh_to_smpl22``):

1. ``parse_bvh`` reads the hierarchy (joint names, parents, rest offsets,
   per-joint channel layout) and the motion block ``(F, C)``.
2. ``forward_kinematics`` turns it into world joint positions ``(F, J, 3)``
   in the file's own units and axes.
3. ``map_joints`` recognises the rig (Bandai Namco, Mixamo, CMU) from its joint
   names and maps our 22 joints onto BVH joints; joints the rig lacks
   (extra spine bones, collars) are synthesised, see ``map_joints``.
4. The up axis, the length unit and the handedness are detected and the
   positions converted to metres, Y up, right-handed (a character facing +Z
   has its left side at +X), see ``bvh_to_smpl22``.
5. ``resample_positions`` (``resample.py``) brings the clip to 20 fps (PCHIP).

Every problem with the input is reported as ``BvhError`` (a ``ValueError``)
whose message starts with the file name.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .resample import resample_positions
from .skeleton import FPS, JOINT_INDEX, JOINT_NAMES, NUM_JOINTS

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


@dataclass(frozen=True, eq=False)
class Smpl22Motion:
    """A BVH clip converted to our skeleton.

    positions: (T, 22, 3) float64 metres, world Y up, right-handed, at ``fps``.
    fps: output frame rate (20 by default).
    source_fps: frame rate of the BVH file.
    source_file: path of the BVH file.
    rig: detected (or requested) rig name.
    scale: metres per file unit that was applied.
    unit: name of the unit ("cm", "m", ..., or "normalised" when no known
        unit gave a plausible height).
    up_axis: the file's up axis ("+Y", "+Z", ...).
    mirrored: True when the file was left-handed and X was negated.
    joint_map: our joint index -> BVH joint name for directly mapped joints;
        the others were synthesised.
    """

    positions: np.ndarray
    fps: float
    source_fps: float
    source_file: str
    rig: str
    scale: float
    unit: str
    up_axis: str
    mirrored: bool
    joint_map: dict[int, str] = field(default_factory=dict)


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


# --------------------------------------------------------------------------
# Joint-name normalisation and rig maps
# --------------------------------------------------------------------------

_SIDE_WORDS: dict[str, str] = {"l": "L", "left": "L", "r": "R", "right": "R"}
_IGNORED_PREFIX = re.compile(r"(mixamorig\d*|bip0*1|def)$")
_WORD = re.compile(r"[A-Z]+(?![a-z])\d*|[A-Z]?[a-z]+\d*|\d+")


def normalize_joint_name(name: str) -> str:
    """Canonical key ``"<side>.<base>"`` of a joint name, side in {L, R, C}.

    Drops any namespace before ':' and rig prefixes (``mixamorig_``), splits
    on ``_ . -`` / spaces and camelCase, removes one Left/Right/L/R word
    (prefix, suffix or middle) as the side, and lower-cases the rest:
    ``mixamorig1:LeftUpLeg`` -> ``L.upleg``, ``UpperLeg_L`` -> ``L.upperleg``,
    ``LHipJoint`` -> ``L.hipjoint``, ``Spine1`` -> ``C.spine1``.
    """
    bare = name.split(":")[-1]
    words = [w for part in re.split(r"[_.\-\s]+", bare) for w in _WORD.findall(part)]
    while len(words) > 1 and _IGNORED_PREFIX.match(words[0].lower()):
        words = words[1:]
    side = "C"
    for k, word in enumerate(words):
        if word.lower() in _SIDE_WORDS and len(words) > 1:
            side = _SIDE_WORDS[word.lower()]
            words = words[:k] + words[k + 1:]
            break
    base = "".join(words).lower()
    if side == "C":
        for word, letter in (("left", "L"), ("right", "R")):
            if base.startswith(word) and len(base) > len(word):
                side, base = letter, base[len(word):]
                break
    return f"{side}.{base}"


@dataclass(frozen=True)
class RigSpec:
    """Name aliases of one rig family.

    aliases: our joint (side-less for the sided ones: "hip", "knee", "ankle",
        "foot", "collar", "shoulder", "elbow", "wrist") -> candidate normalised
        base names, best first.
    signature: normalised keys ("L.hipjoint") typical of this rig; they break
        ties between rigs that share most names.
    raw_markers: lower-case substrings of raw names typical of this rig.
    """

    name: str
    aliases: dict[str, tuple[str, ...]]
    signature: tuple[str, ...] = ()
    raw_markers: tuple[str, ...] = ()


RIGS: dict[str, RigSpec] = {
    "bandai": RigSpec(
        name="bandai",
        aliases={
            "pelvis": ("hips",), "spine1": ("spine",), "spine3": ("chest",),
            "neck": ("neck",), "head": ("head",), "collar": ("shoulder",),
            "shoulder": ("upperarm",), "elbow": ("lowerarm",), "wrist": ("hand",),
            "hip": ("upperleg",), "knee": ("lowerleg",), "ankle": ("foot",),
            "foot": ("toes",),
        },
        signature=("C.chest", "L.upperarm", "L.lowerarm", "L.upperleg", "L.lowerleg",
                   "L.toes", "C.jointroot"),
    ),
    "mixamo": RigSpec(
        name="mixamo",
        aliases={
            "pelvis": ("hips",), "spine1": ("spine",), "spine2": ("spine1",),
            "spine3": ("spine2",), "neck": ("neck",), "head": ("head",),
            "collar": ("shoulder",), "shoulder": ("arm",), "elbow": ("forearm",),
            "wrist": ("hand",), "hip": ("upleg",), "knee": ("leg",), "ankle": ("foot",),
            "foot": ("toebase",),
        },
        signature=("C.spine2", "L.toeend", "C.headtopend", "L.handindex1"),
        raw_markers=("mixamorig",),
    ),
    "cmu": RigSpec(
        name="cmu",
        aliases={
            "pelvis": ("hips", "hip"), "spine1": ("spine", "abdomen"),
            "spine3": ("spine1", "chest"), "neck": ("neck1", "neck"), "head": ("head",),
            "collar": ("collar",), "shoulder": ("arm", "shldr"), "elbow": ("forearm",),
            "wrist": ("hand",), "hip": ("upleg", "thigh"), "knee": ("leg", "shin"),
            "ankle": ("foot",), "foot": ("toebase", "toe"),
        },
        signature=("L.hipjoint", "C.lowerback", "C.neck1", "L.handthumb", "L.fingerbase",
                   "L.shldr", "C.abdomen", "L.collar"),
    ),
}

# Joints a rig may lack (they are synthesised); every other joint is required.
SYNTHESISABLE: frozenset[str] = frozenset(
    {"spine1", "spine2", "spine3", "left_collar", "right_collar"})


def _alias_key(joint: str) -> tuple[str, str]:
    """Our joint name -> (side letter, side-less alias key)."""
    for prefix, side in (("left_", "L"), ("right_", "R")):
        if joint.startswith(prefix):
            return side, joint[len(prefix):]
    return "C", joint


def _map_with_rig(names: Sequence[str], spec: RigSpec) -> dict[int, str]:
    """Our joint index -> BVH name for every joint the rig's aliases find."""
    by_key: dict[str, str] = {}
    for name in names:
        by_key.setdefault(normalize_joint_name(name), name)
    mapping: dict[int, str] = {}
    for index, joint in enumerate(JOINT_NAMES):
        side, key = _alias_key(joint)
        for alias in spec.aliases.get(key, ()):
            found = by_key.get(f"{side}.{alias}")
            if found is not None:
                mapping[index] = found
                break
    return mapping


def _missing_required(mapping: dict[int, str]) -> list[str]:
    """Names of required joints (not synthesisable) absent from ``mapping``."""
    return [j for i, j in enumerate(JOINT_NAMES) if i not in mapping and j not in SYNTHESISABLE]


def _rig_score(names: Sequence[str], spec: RigSpec) -> tuple[bool, int, int]:
    """(complete, signature hits, mapped joints): larger is a better match."""
    keys = {normalize_joint_name(n) for n in names}
    raw = " ".join(names).lower()
    hits = sum(k in keys for k in spec.signature) + sum(m in raw for m in spec.raw_markers)
    mapping = _map_with_rig(names, spec)
    return not _missing_required(mapping), hits, len(mapping)


def detect_rig(names: Sequence[str]) -> str:
    """Name of the rig in ``RIGS`` whose aliases best match ``names``."""
    return max(RIGS, key=lambda rig: _rig_score(names, RIGS[rig]))


def map_joints(names: Sequence[str], rig: str | None = None,
               source: str = "<joint names>") -> dict[int, str]:
    """Map our 22 joints onto BVH joint names.

    names: BVH joint names; rig: one of ``RIGS`` ("bandai", "mixamo", "cmu")
    or None to auto-detect (the rig with all required joints, then the most
    signature names, then the most mapped joints wins). Names are compared
    after ``normalize_joint_name`` (case, namespaces, separators and
    Left/L/l prefix or suffix variants do not matter).

    Returns our joint index -> BVH name for the joints the rig has. The
    others are synthesised by ``bvh_to_smpl22``:

    * spine3 (the bone where the arms branch) when absent: the nearest common
      ancestor of the two upper-arm joints (if that is the pelvis, a point
      2/3 of the way from the pelvis to the neck along the bone chain);
    * spine1 / spine2 when absent: points on the BVH bone chain between the
      nearest mapped spine anchors below and above (pelvis ... spine3),
      evenly spaced by arc length (e.g. Bandai: spine2 is half-way along
      Spine -> Chest; one missing joint between two anchors sits at 1/2, two
      at 1/3 and 2/3);
    * a collar when absent: the point ``collar_fraction`` (0.5) of the way
      from the neck joint to that side's upper-arm root. CMU's LeftShoulder
      sits at the chest centre with a zero offset, so CMU collars are always
      synthesised.

    Raises BvhError naming ``source`` and the missing joints when any
    required joint (pelvis, legs down to the toes, neck, head, arms down to
    the wrists) cannot be found, or when ``rig`` is not a known rig.
    """
    if rig is not None and rig not in RIGS:
        raise BvhError(f"{source}: unknown rig '{rig}' (known: {', '.join(RIGS)})")
    chosen = rig if rig is not None else detect_rig(names)
    mapping = _map_with_rig(names, RIGS[chosen])
    missing = _missing_required(mapping)
    if missing:
        raise BvhError(f"{source}: cannot map joint names to the 22-joint skeleton "
                       f"(best rig '{chosen}'); missing joints: {', '.join(missing)}")
    return mapping


# --------------------------------------------------------------------------
# Assembling the 22 joints
# --------------------------------------------------------------------------


def _ancestors(parents: Sequence[int], joint: int) -> list[int]:
    """``joint`` and its ancestors, from the joint up to its root."""
    chain = [joint]
    while parents[chain[-1]] >= 0:
        chain.append(parents[chain[-1]])
    return chain


def _bone_path(parents: Sequence[int], start: int, end: int) -> list[int]:
    """BVH joints from ``start`` to its descendant ``end`` (both included).

    Falls back to ``[start, end]`` when ``start`` is not an ancestor of ``end``.
    """
    up = _ancestors(parents, end)
    if start not in up:
        return [start, end]
    return up[: up.index(start) + 1][::-1]


def _point_along_path(points: np.ndarray, fraction: float) -> np.ndarray:
    """Point at ``fraction`` of the arc length of a polyline.

    points: (T, K, 3) polyline vertices per frame -> (T, 3).
    """
    if points.shape[1] == 1:
        return points[:, 0].copy()
    seg = np.linalg.norm(np.diff(points, axis=1), axis=-1)  # (T, K-1)
    cum = np.concatenate([np.zeros((len(seg), 1)), np.cumsum(seg, axis=1)], axis=1)
    target = fraction * cum[:, -1]
    k = np.clip((cum[:, 1:] < target[:, None]).sum(axis=1), 0, seg.shape[1] - 1)
    rows = np.arange(len(points))
    t = (target - cum[rows, k]) / np.maximum(seg[rows, k], 1e-12)
    return points[rows, k] + t[:, None] * (points[rows, k + 1] - points[rows, k])


def _common_ancestor(parents: Sequence[int], a: int, b: int) -> int:
    """Nearest common ancestor of two BVH joints (-1 if in different trees)."""
    up_a = _ancestors(parents, a)
    return next((j for j in _ancestors(parents, b) if j in up_a), -1)


@dataclass(frozen=True)
class _Resolved:
    """Our joint index -> BVH joint index for the directly mapped joints."""

    direct: dict[int, int]
    names: dict[int, str]


def _resolve(bvh: BvhMotion, rig: str) -> _Resolved:
    """Direct joints of ``rig`` in ``bvh``, spine3 falling back to the arm branch."""
    names = map_joints(bvh.names, rig, bvh.source)
    index = {name: i for i, name in enumerate(bvh.names)}
    direct = {ours: index[name] for ours, name in names.items()}
    for side in ("left", "right"):
        collar = JOINT_INDEX[f"{side}_collar"]
        if collar in direct and _is_zero_bone(bvh, direct[collar]):
            del direct[collar], names[collar]
    spine3 = JOINT_INDEX["spine3"]
    if spine3 not in direct:
        branch = _common_ancestor(bvh.parents, direct[JOINT_INDEX["left_shoulder"]],
                                  direct[JOINT_INDEX["right_shoulder"]])
        if branch >= 0 and branch != direct[JOINT_INDEX["pelvis"]]:
            direct[spine3] = branch
            names[spine3] = bvh.names[branch]
    return _Resolved(direct, names)


def _is_zero_bone(bvh: BvhMotion, joint: int) -> bool:
    """True when the joint sits on its parent (zero offset, no position channels)."""
    has_position = any(c in POSITION_CHANNELS for c in bvh.channels[joint])
    length = float(np.linalg.norm(bvh.offsets[joint]))
    return not has_position and length < DEFAULT_CONFIG.zero_offset_eps


def _synthesise_spine(world: np.ndarray, parents: Sequence[int], out: np.ndarray,
                      direct: dict[int, int]) -> None:
    """Fill missing spine joints of ``out`` (T, 22, 3) along the BVH chain.

    world: (T, J, 3) BVH joint positions. Anchors are pelvis (0), spine1,
    spine2, spine3 (3) where mapped; a missing spine3 goes 2/3 of the way
    from the pelvis to the neck.
    """
    spine = [JOINT_INDEX[n] for n in ("pelvis", "spine1", "spine2", "spine3")]
    neck = JOINT_INDEX["neck"]
    known = [k for k, j in enumerate(spine) if j in direct]
    anchors = {k: direct[spine[k]] for k in known}
    top = direct[neck] if 3 not in anchors else anchors[3]
    top_level = 4.5 if 3 not in anchors else 3  # neck counts as 1.5 spine steps above spine3
    for k in range(1, 4):
        if k in anchors:
            continue
        lo = max(a for a in anchors if a < k)
        hi_candidates = [a for a in anchors if a > k]
        hi, hi_joint = (min(hi_candidates), anchors[min(hi_candidates)]) if hi_candidates \
            else (top_level, top)
        path = _bone_path(parents, anchors[lo], hi_joint)
        out[:, spine[k]] = _point_along_path(world[:, path], (k - lo) / (hi - lo))


def _synthesise_collars(out: np.ndarray, direct: dict[int, int], config: ImportConfig) -> None:
    """Fill missing collars of ``out`` (T, 22, 3) between neck and upper arm."""
    neck = out[:, JOINT_INDEX["neck"]]
    for side in ("left", "right"):
        collar = JOINT_INDEX[f"{side}_collar"]
        if collar not in direct:
            shoulder = out[:, JOINT_INDEX[f"{side}_shoulder"]]
            out[:, collar] = neck + config.collar_fraction * (shoulder - neck)


def assemble_smpl22(world: np.ndarray, bvh: BvhMotion, direct: dict[int, int],
                    config: ImportConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Our 22 joints (T, 22, 3) from BVH world positions (T, J, 3), same units.

    direct: our joint index -> BVH joint index; missing spine joints and
    collars are synthesised as documented in ``map_joints``.
    """
    out = np.full((world.shape[0], NUM_JOINTS, 3), np.nan)
    for ours, theirs in direct.items():
        out[:, ours] = world[:, theirs]
    _synthesise_spine(world, bvh.parents, out, direct)
    _synthesise_collars(out, direct, config)
    return out


# --------------------------------------------------------------------------
# Axes, units, handedness, frame rate
# --------------------------------------------------------------------------

_AXIS_LABELS = ("X", "Y", "Z")


def detect_up_axis(positions: np.ndarray) -> tuple[int, float]:
    """Up axis of a clip: (axis index 0/1/2, sign +-1).

    positions: (T, 22, 3). Uses the median over frames of the vector from
    the mid-ankle point to the head; its largest component is "up".
    """
    ankles = positions[:, [JOINT_INDEX["left_ankle"], JOINT_INDEX["right_ankle"]]].mean(axis=1)
    body = np.median(positions[:, JOINT_INDEX["head"]] - ankles, axis=0)
    axis = int(np.argmax(np.abs(body)))
    return axis, float(np.sign(body[axis]) or 1.0)


def up_rotation(axis: int, sign: float) -> np.ndarray:
    """Proper rotation (3, 3) taking the unit vector ``sign * e_axis`` to +Y.

    +Z up maps (x, y, z) -> (x, z, -y); a quarter turn about the axis
    perpendicular to both, or a half turn about X for -Y.
    """
    source = np.zeros(3)
    source[axis] = sign
    target = np.array([0.0, 1.0, 0.0])
    if np.allclose(source, target):
        return np.eye(3)
    if np.allclose(source, -target):
        return np.diag([1.0, -1.0, -1.0])
    k = np.cross(source, target)  # unit, since source is perpendicular to Y
    skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + skew + skew @ skew  # Rodrigues with a 90 degree angle


def body_chain_length(pose: np.ndarray, bvh_chain: float) -> float:
    """Pose-independent stature proxy: pelvis-to-head chain + mean leg chain.

    pose: (22, 3) one frame; bvh_chain: length of the BVH bone chain from the
    pelvis to the head joint (same units). Returns file units.
    """
    legs = []
    for side in ("left", "right"):
        hip, knee, ankle = (pose[JOINT_INDEX[f"{side}_{n}"]] for n in ("hip", "knee", "ankle"))
        legs.append(np.linalg.norm(knee - hip) + np.linalg.norm(ankle - knee))
    return bvh_chain + float(np.mean(legs))


def detect_unit(chain_length: float, config: ImportConfig = DEFAULT_CONFIG) -> tuple[str, float]:
    """(unit name, metres per unit) for a stature proxy in file units.

    The estimated body height is ``height_per_chain * chain_length * scale``;
    the candidate unit whose height is closest (in ratio) to
    ``target_height_m`` wins if that height lies in ``plausible_height_m``,
    otherwise the clip is scaled to exactly ``target_height_m``
    (unit "normalised").
    """
    if not np.isfinite(chain_length) or chain_length <= 0:
        raise ValueError(f"degenerate skeleton: body chain length {chain_length}")
    height = config.height_per_chain * chain_length
    name, scale = min(config.unit_candidates,
                      key=lambda c: abs(np.log(height * c[1] / config.target_height_m)))
    low, high = config.plausible_height_m
    if low <= height * scale <= high:
        return name, scale
    return "normalised", config.target_height_m / height


def facing_directions(positions: np.ndarray) -> np.ndarray:
    """Unit horizontal facing per frame (T, 3) of Y-up positions (T, 22, 3).

    across = (right_hip - left_hip) + (right_shoulder - left_shoulder);
    forward = cross(+Y, across).
    """
    j = JOINT_INDEX
    across = (positions[:, j["right_hip"]] - positions[:, j["left_hip"]]
              + positions[:, j["right_shoulder"]] - positions[:, j["left_shoulder"]])
    forward = np.cross(np.array([0.0, 1.0, 0.0]), across)
    return forward / np.maximum(np.linalg.norm(forward, axis=-1, keepdims=True), 1e-12)


def is_mirrored(positions: np.ndarray, config: ImportConfig = DEFAULT_CONFIG) -> bool:
    """True when the toes point backwards w.r.t. the hip/shoulder facing.

    positions: (T, 22, 3) metres, Y up. In a right-handed file with correct
    left / right labels, ankle -> toe vectors point forward whenever the toe
    is on the ground (within ``contact_margin_m`` of its lowest height in
    the clip; in swing a pointed foot may point backwards). A left-handed
    file (or one with swapped labels) makes them point backwards.
    """
    forward = facing_directions(positions)
    along = []
    for side in ("left", "right"):
        ankle, toe = JOINT_INDEX[f"{side}_ankle"], JOINT_INDEX[f"{side}_foot"]
        heights = positions[:, toe, 1]
        contact = heights <= heights.min() + config.contact_margin_m
        toe_vectors = positions[contact, toe] - positions[contact, ankle]
        along.append(np.sum(toe_vectors * forward[contact], axis=-1))
    return float(np.median(np.concatenate(along))) < 0


def bvh_to_smpl22(path: str | Path, target_fps: float = FPS, rig: str | None = None,
                  config: ImportConfig = DEFAULT_CONFIG) -> Smpl22Motion:
    """Import a BVH file as 22-joint positions in metres, Y up, at ``target_fps``.

    Steps: parse, forward kinematics, joint mapping (``map_joints``), then

    * up axis: the median mid-ankle -> head direction picks the file's up
      axis; a proper rotation takes it to +Y (Z-up: (x, y, z) -> (x, z, -y));
    * unit: pelvis-to-head bone chain + hip-knee-ankle chain of the first
      frame, times ``height_per_chain``, estimates the body height; the
      unit (m, cm, mm, in, CMU) giving a height closest to 1.7 m inside
      1.4-2.0 m is used, else the body is scaled to 1.7 m (``detect_unit``);
    * handedness: if the grounded toes point backwards w.r.t. the
      hip/shoulder facing, the file is left-handed and X is negated
      (``mirrored``, see ``is_mirrored``);
    * frame rate: shape-preserving cubic resampling (``resample_positions``).

    Raises BvhError naming the file for malformed files, unmappable rigs and
    clips with fewer than 2 frames.
    """
    bvh = parse_bvh(path)
    if bvh.num_frames < 2:
        raise BvhError(f"{bvh.source}: need at least 2 frames, file has {bvh.num_frames}")
    chosen = rig if rig is not None else detect_rig(bvh.names)
    resolved = _resolve(bvh, chosen)
    world = forward_kinematics(bvh)
    positions = assemble_smpl22(world, bvh, resolved.direct, config)
    axis, sign = detect_up_axis(positions)
    positions = positions @ up_rotation(axis, sign).T
    unit, scale = _unit_for(bvh, world, positions, resolved, config)
    positions = positions * scale
    mirrored = is_mirrored(positions, config)
    if mirrored:
        positions[..., 0] *= -1.0
    return Smpl22Motion(
        positions=resample_positions(positions, bvh.fps, target_fps), fps=float(target_fps),
        source_fps=bvh.fps, source_file=str(path), rig=chosen, scale=scale, unit=unit,
        up_axis=f"{'+' if sign > 0 else '-'}{_AXIS_LABELS[axis]}", mirrored=mirrored,
        joint_map=dict(sorted(resolved.names.items())),
    )


def _unit_for(bvh: BvhMotion, world: np.ndarray, positions: np.ndarray,
              resolved: _Resolved, config: ImportConfig) -> tuple[str, float]:
    """Detected (unit, scale) from the first frame's bone chains."""
    pelvis, head = resolved.direct[JOINT_INDEX["pelvis"]], resolved.direct[JOINT_INDEX["head"]]
    path = _bone_path(bvh.parents, pelvis, head)
    chain = float(np.sum(np.linalg.norm(np.diff(world[0, path], axis=0), axis=-1)))
    try:
        return detect_unit(body_chain_length(positions[0], chain), config)
    except ValueError as exc:
        raise BvhError(f"{bvh.source}: {exc}") from None
