"""Protocol v1's optional control fields of ``generate``: validation into plain values (no models here).

* ``path``: the pelvis's ground track in metres, world XZ -- a list of ``[x, z]`` per frame (20 fps),
  or ``{"points": [[x, z], ...], "times": [s, ...]}`` (times start at 0 and increase; resampled at 20 fps);
* ``keyframes``: ``[{"frame": f, "joints": [[x, y, z] x 22]}, ...]`` -- poses to pass through
  (frame 0 = continue from this pose; several = in-between);
* ``loop``: true = a seamless cycle (the last frame flows into the first; the result says the per-cycle
  root offset in ``cycle``);
* ``in_place``: true = the pelvis's ground track moves off the joints onto ``root_track``;
* ``layer``: ``{"part": "right_arm" | "left_arm" | "arms", "prompt": str}`` and optionally ``"candidates": k``
  (1..``MAX_LAYER_CANDIDATES``; default: the library's) -- that body part moves as in the prompt's own motion,
  layered on the take (e.g. a wave on a walk; realign_core/control/parts.py);
* ``control_strength``: how hard the constraints pull (0..``max_control_strength``, default 1);
* ``sequence``: ``[{"prompt": str, "seconds": s}, ...]`` -- one continuous motion through the prompts,
  instead of ``prompt``/``prompts``/``frames``/``seconds``.

Every error is a ``ProtocolError`` naming the field (``path[3]``, ``keyframes[1].frame`` ...) and the value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .protocol import FPS, Limits, ProtocolError, _flag, _number, _prompt, _show

CONTROL_FIELDS = ("path", "keyframes", "loop", "in_place", "control_strength", "layer")
LAYER_PARTS = ("right_arm", "left_arm", "arms")   # realign_core.guidance.control_spec.BODY_PARTS
MAX_LAYER_CANDIDATES = 8
NUM_JOINTS = 22
MAX_COORD_M = 1000.0


@dataclass(frozen=True)
class Control:
    """Validated control fields.  path: per-frame [x, z] (list) or (points, times); keyframes: (frame, joints)."""

    path: tuple | None = None                 # ("frames", [[x, z], ...]) or ("points", [[x, z]...], [t...])
    keyframes: tuple[tuple[int, list], ...] | None = None
    loop: bool = False
    in_place: bool = False
    strength: float = 1.0
    layer: tuple[str, str] | None = None      # (part, prompt)
    layer_candidates: int | None = None       # None = the library's default

    @property
    def constrained(self) -> bool:
        """Whether sampling must meet a constraint (path, keyed poses, loop at a control strength > 0, as
        ``ControlSpec.active``): such takes default to the models' ``control_steps``; ``in_place`` alone
        only moves the root afterwards, and a ``layer`` is set after sampling."""
        return self.strength > 0 and (self.path is not None or bool(self.keyframes) or self.loop)

    def as_dict(self) -> dict[str, Any]:
        """What the result echoes (sizes, not the data)."""
        path = None if self.path is None else len(self.path[1])
        layer = None if self.layer is None else {"part": self.layer[0], "prompt": self.layer[1],
                                                 "candidates": self.layer_candidates}
        return {"path_points": path, "keyframes": [f for f, _ in self.keyframes or ()], "loop": self.loop,
                "in_place": self.in_place, "control_strength": self.strength, "layer": layer}


def _point(value: Any, name: str, size: int) -> list[float]:
    if not isinstance(value, list) or len(value) != size:
        raise ProtocolError("bad_request", f"field '{name}' must be a list of {size} numbers (metres), "
                            f"got {_show(value)}", name)
    out = []
    for k, v in enumerate(value):
        if not (_finite(v) and abs(float(v)) <= MAX_COORD_M):
            raise ProtocolError("bad_request", f"field '{name}[{k}]' must be a finite number of metres within "
                                f"+-{MAX_COORD_M:g}, got {_show(v)}", f"{name}[{k}]")
        out.append(float(v))
    return out


def _points(items: Any, name: str, most: int) -> list[list[float]]:
    if not isinstance(items, list) or not 1 <= len(items) <= most:
        size = f"a list of {len(items)}" if isinstance(items, list) else _show(items)
        code = "too_large" if isinstance(items, list) and len(items) > most else "bad_request"
        raise ProtocolError(code, f"field '{name}' must be a list of 1..{most} [x, z] points, got {size}", name)
    return [_point(p, f"{name}[{i}]", 2) for i, p in enumerate(items)]


def parse_path(value: Any, frames: int, limits: Limits) -> tuple:
    """``path`` -> ("frames", points) or ("points", points, times); it may last at most the motion."""
    if isinstance(value, list):
        points = _points(value, "path", limits.max_frames + 1)
        if len(points) > frames + 1:
            raise ProtocolError("bad_request", f"field 'path' has {len(points)} per-frame points but the motion "
                                f"has {frames} frames; give at most {frames + 1}", "path")
        return ("frames", points)
    if not isinstance(value, dict) or set(value) != {"points", "times"}:
        raise ProtocolError("bad_request", "field 'path' must be a list of [x, z] per frame or an object "
                            f"{{\"points\": [[x, z], ...], \"times\": [s, ...]}}, got {_show(value)}", "path")
    points = _points(value["points"], "path.points", limits.max_path_points)
    times = value["times"]
    if not isinstance(times, list) or len(times) != len(points):
        raise ProtocolError("bad_request", f"field 'path.times' must be a list of {len(points)} numbers (one per "
                            f"point), got {_show(times)}", "path.times")
    seconds = [_number({"t": t}, "t", 0.0, frames / FPS, None) if _finite(t) else None for t in times]
    bad = [i for i, t in enumerate(seconds) if t is None or (i == 0 and t != 0) or (i and t <= seconds[i - 1])]
    if bad:
        i = bad[0]
        raise ProtocolError("bad_request", f"field 'path.times[{i}]' must be seconds in [0, {frames / FPS:g}], the "
                            f"first 0 and each after the one before, got {_show(times[i])}", f"path.times[{i}]")
    return ("points", points, seconds)


def _finite(v: Any) -> bool:
    """A JSON number that is a finite float (huge integers and booleans are not)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def parse_keyframes(value: Any, frames: int, limits: Limits) -> tuple[tuple[int, list], ...]:
    """``keyframes`` -> ((frame, 22 x [x, y, z]), ...) with distinct frames inside the motion."""
    if not isinstance(value, list) or not 1 <= len(value) <= limits.max_keyframes:
        size = f"a list of {len(value)}" if isinstance(value, list) else _show(value)
        raise ProtocolError("bad_request", f"field 'keyframes' must be a list of 1..{limits.max_keyframes} "
                            f"{{\"frame\", \"joints\"}} objects, got {size}", "keyframes")
    out, seen = [], set()
    for i, key in enumerate(value):
        name = f"keyframes[{i}]"
        if not isinstance(key, dict) or set(key) != {"frame", "joints"}:
            raise ProtocolError("bad_request", f"field '{name}' must be an object with exactly 'frame' and "
                                f"'joints', got {_show(key)}", name)
        frame = key["frame"]
        if isinstance(frame, bool) or not isinstance(frame, int) or not 0 <= frame < frames or frame in seen:
            why = "is keyed twice" if frame in seen else f"must be an integer in [0, {frames - 1}] (the motion's frames)"
            raise ProtocolError("bad_request", f"field '{name}.frame' {why}, got {_show(frame)}", f"{name}.frame")
        seen.add(frame)
        joints = key["joints"]
        if not isinstance(joints, list) or len(joints) != NUM_JOINTS:
            raise ProtocolError("bad_request", f"field '{name}.joints' must be a list of {NUM_JOINTS} [x, y, z] "
                                f"positions (metres, Y up), got {_show(joints)}", f"{name}.joints")
        out.append((frame, [_point(p, f"{name}.joints[{j}]", 3) for j, p in enumerate(joints)]))
    return tuple(out)


def parse_layer(value: Any, limits: Limits) -> tuple[tuple[str, str], int | None]:
    """``layer`` -> ((part, prompt), candidates or None)."""
    if not isinstance(value, dict) or not {"part", "prompt"} <= set(value) <= {"part", "prompt", "candidates"}:
        raise ProtocolError("bad_request", "field 'layer' must be an object with 'part' and 'prompt' (and "
                            f"optionally 'candidates'), got {_show(value)}", "layer")
    if value["part"] not in LAYER_PARTS:
        raise ProtocolError("bad_request", f"field 'layer.part' must be one of {list(LAYER_PARTS)}, got "
                            f"{_show(value['part'])}", "layer.part")
    candidates = value.get("candidates")
    if candidates is not None and (isinstance(candidates, bool) or not isinstance(candidates, int)
                                   or not 1 <= candidates <= MAX_LAYER_CANDIDATES):
        raise ProtocolError("bad_request", f"field 'layer.candidates' must be an integer in [1, "
                            f"{MAX_LAYER_CANDIDATES}], got {_show(candidates)}", "layer.candidates")
    return (value["part"], _prompt(value["prompt"], "layer.prompt", limits)), candidates


def parse_control(obj: dict[str, Any], frames: int, limits: Limits) -> Control | None:
    """The request's control fields (None when it has none).  ``frames``: the motion's length."""
    if not any(k in obj for k in CONTROL_FIELDS):
        return None
    loop = _flag(obj, "loop", False)
    if loop and frames >= limits.max_frames:
        raise ProtocolError("bad_request", f"field 'loop': a looped motion needs one extra frame, so at most "
                            f"{limits.max_frames - 1} frames; got {frames}", "loop")
    return Control(
        path=parse_path(obj["path"], frames, limits) if "path" in obj else None,
        keyframes=parse_keyframes(obj["keyframes"], frames, limits) if "keyframes" in obj else None,
        loop=loop, in_place=_flag(obj, "in_place", False),
        strength=_number(obj, "control_strength", 0.0, limits.max_control_strength, 1.0),
        **_layer_fields(obj, limits))


def _layer_fields(obj: dict[str, Any], limits: Limits) -> dict[str, Any]:
    if "layer" not in obj:
        return {}
    layer, candidates = parse_layer(obj["layer"], limits)
    return {"layer": layer, "layer_candidates": candidates}


def parse_sequence(obj: dict[str, Any], limits: Limits) -> tuple[tuple[str, float], ...]:
    """``sequence`` -> ((prompt, seconds), ...); refuses the fields it replaces."""
    clash = [k for k in ("prompt", "prompts", "frames", "seconds", "samples", *CONTROL_FIELDS) if k in obj]
    if clash:
        raise ProtocolError("bad_request", f"field '{clash[0]}' cannot be combined with 'sequence' (each entry "
                            "gives its own prompt and seconds)", clash[0])
    items = obj["sequence"]
    if not isinstance(items, list) or not 1 <= len(items) <= limits.max_sequence_entries:
        size = f"a list of {len(items)}" if isinstance(items, list) else _show(items)
        raise ProtocolError("bad_request", f"field 'sequence' must be a list of 1..{limits.max_sequence_entries} "
                            f"{{\"prompt\", \"seconds\"}} objects, got {size}", "sequence")
    out = []
    for i, item in enumerate(items):
        name = f"sequence[{i}]"
        if not isinstance(item, dict) or set(item) != {"prompt", "seconds"}:
            raise ProtocolError("bad_request", f"field '{name}' must be an object with exactly 'prompt' and "
                                f"'seconds', got {_show(item)}", name)
        prompt = _prompt(item["prompt"], f"{name}.prompt", limits)
        seconds = _number(item, "seconds", limits.min_frames / FPS, limits.max_sequence_seconds, None,
                          prefix=f"{name}.")
        out.append((prompt, seconds))
    total = sum(s for _, s in out)
    if total > limits.max_sequence_seconds:
        raise ProtocolError("too_large", f"field 'sequence' lasts {total:g} s in total; at most "
                            f"{limits.max_sequence_seconds:g} s", "sequence")
    return tuple(out)
