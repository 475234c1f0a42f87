"""Protocol v1: limits, request parsing and validation, error codes and event encoding.

Every request is one JSON object on one line (UTF-8, ``\\n``-terminated) with a
client-chosen ``id`` (a string of 1..128 characters or an integer) and an
``op``; every event the server sends back carries the same ``id``.  Errors are
raised as :class:`ProtocolError` with a machine-readable ``code`` (one of
``ERROR_CODES``) and a message that names the field and its allowed range.

Nothing here touches sockets, threads or models: the values that depend on the
loaded model (``max_frames``, ``max_steps``, the defaults) come in through
:class:`Limits` and :class:`Defaults`.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

ERROR_CODES = ("bad_json", "bad_request", "too_large", "unknown_op", "busy", "cancelled", "internal",
               "idle_timeout")
OPS = ("hello", "generate", "cancel", "status", "ping")
SAMPLERS = ("ddim", "ddpm", "diffusers-ddim", "dpmsolver++", "unipc", "lcm")   # = realign_core.pipeline.SAMPLERS
FPS = 20
COMMON_FIELDS = ("id", "op", "token")
OP_FIELDS: dict[str, tuple[str, ...]] = {
    "hello": ("client",),
    "generate": ("prompt", "prompts", "frames", "seconds", "seed", "samples", "guidance", "steps", "sampler",
                 "foot_lock", "path", "keyframes", "loop", "in_place", "control_strength", "layer",   # control: control_fields.py
                 "sequence"),
    "cancel": ("target",),
    "status": (),
    "ping": (),
}
GUIDANCE_FIELDS = ("strength", "mu", "eta", "cfg")
MAX_JSON_INT = 2 ** 53  # ids beyond this do not survive a JavaScript/float round trip


class ProtocolError(Exception):
    """A request the server refuses: ``code`` (see ``ERROR_CODES``), a human ``message``, the ``field``."""

    def __init__(self, code: str, message: str, field_name: str | None = None) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code, self.message, self.field = code, message, field_name


@dataclass(frozen=True)
class Limits:
    """Everything the server bounds.  ``max_frames`` / ``max_steps`` are set from the loaded model."""

    max_line_bytes: int = 256 * 1024
    max_id_chars: int = 128
    max_client_chars: int = 200
    max_prompt_chars: int = 500
    max_prompts: int = 32
    max_samples: int = 16
    max_motions: int = 32            # prompts x samples in one request (the batch-baking size)
    min_frames: int = FPS            # 1 s
    max_frames: int = 196
    max_steps: int = 1000
    max_seed: int = 2 ** 31 - 1
    max_cfg: float = 30.0
    max_strength: float = 100.0
    max_weight: float = 100.0        # guidance.mu and guidance.eta
    max_queued_jobs: int = 64        # all clients together
    max_jobs_per_client: int = 16    # queued or running, per connection
    max_clients: int = 64
    max_path_points: int = 1000      # path.points (a per-frame path has at most max_frames + 1)
    max_keyframes: int = 200
    max_control_strength: float = 10.0
    max_sequence_entries: int = 64
    max_sequence_seconds: float = 120.0

    def for_model(self, max_frames: int, max_steps: int) -> "Limits":
        """These limits with the model's frame and step maxima (never above the configured ones)."""
        return replace(self, max_frames=min(self.max_frames, max_frames), max_steps=min(self.max_steps, max_steps))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Defaults:
    """What a ``generate`` request gets for the fields it leaves out (model-dependent)."""

    frames: int = 120
    samples: int = 1
    steps: int = 50
    control_steps: int = 50        # requests with control fields or a sequence
    sampler: str = "ddim"
    cfg: float = 7.5
    lcm_cfg: float | None = None   # the CFG scale distilled into the consistency denoiser ('lcm' sampler), if any
    strength: float = 0.0
    mu: float = 1.0
    eta: float = 1.0
    foot_lock: bool = False        # takes without constraints shifted back by their planted feet's sliding

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Sampling:
    """How one sampling run is done; jobs are batched only when these are equal."""

    sampler: str
    steps: int
    cfg: float
    strength: float
    mu: float
    eta: float
    foot_lock: bool = False

    def batch_key(self) -> tuple:
        """Equal keys = compatible jobs; with guidance off, mu and eta do not matter."""
        if self.strength <= 0:
            return self.sampler, self.steps, self.cfg, 0.0, None, None, self.foot_lock
        return self.sampler, self.steps, self.cfg, self.strength, self.mu, self.eta, self.foot_lock

    def as_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler, "steps": self.steps, "foot_lock": self.foot_lock,
                "guidance": {"strength": self.strength, "mu": self.mu, "eta": self.eta, "cfg": self.cfg}}


@dataclass(frozen=True)
class MotionSpec:
    """One motion of a request: prompt ``prompt_index`` with sample index ``sample`` (seed = base + sample)."""

    prompt: str
    frames: int
    seed: int
    prompt_index: int
    sample: int


@dataclass(frozen=True)
class GenerateRequest:
    """A validated ``generate`` request."""

    id: str | int
    prompts: tuple[str, ...]
    frames: int
    seed: int
    samples: int
    sampling: Sampling
    control: Any = None                                   # control_fields.Control: path, keyframes, loop ...
    sequence: tuple[tuple[str, float], ...] | None = None  # (prompt, seconds) entries: one motion through them
    motions: tuple[MotionSpec, ...] = field(init=False)

    def __post_init__(self) -> None:
        if self.sequence is not None:
            motions = (MotionSpec(" / ".join(p for p, _ in self.sequence), self.frames, self.seed, 0, 0),)
        else:
            motions = tuple(MotionSpec(p, self.frames, (self.seed + s) % (2 ** 31), i, s)
                            for i, p in enumerate(self.prompts) for s in range(self.samples))
        object.__setattr__(self, "motions", motions)

    @property
    def controlled(self) -> bool:
        """Whether this request has control fields or a sequence (then it runs alone, not batched)."""
        return self.control is not None or self.sequence is not None


# --------------------------------------------------------------------------- parsing

def _reject_constant(name: str) -> None:
    raise ProtocolError("bad_json", f"{name} is not valid JSON (numbers must be finite)")


def parse_line(raw: bytes) -> dict[str, Any]:
    """One request line (without its newline) -> the request object; raises ``ProtocolError``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("bad_json", f"the line is not valid UTF-8 (byte {exc.start})") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except ProtocolError:
        raise
    except RecursionError:
        raise ProtocolError("bad_json", "the line is nested too deeply to be a request") from None
    except ValueError as exc:  # JSONDecodeError, and ints longer than Python's digit limit
        raise ProtocolError("bad_json", f"the line is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_request", f"a request must be a JSON object, got {type(obj).__name__}")
    return obj


def request_id(obj: dict[str, Any], limits: Limits = Limits()) -> str | int | None:
    """The request's ``id`` if it is a valid one, else None (errors about it then carry ``id: null``)."""
    value = obj.get("id")
    if isinstance(value, str) and 1 <= len(value) <= limits.max_id_chars and _utf8_ok(value):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_JSON_INT:
        return value
    return None


def check_common(obj: dict[str, Any], limits: Limits) -> tuple[str | int, str]:
    """Validate ``id`` and ``op`` and the set of fields -> (id, op)."""
    if "id" not in obj:
        raise ProtocolError("bad_request", "field 'id' is required: a string of 1.."
                            f"{limits.max_id_chars} characters or an integer", "id")
    rid = request_id(obj, limits)
    if rid is None:
        raise ProtocolError("bad_request", f"field 'id' must be a string of 1..{limits.max_id_chars} characters "
                            f"or an integer in [-2^53, 2^53], got {_show(obj['id'])}", "id")
    op = obj.get("op")
    if not isinstance(op, str):
        raise ProtocolError("bad_request", f"field 'op' must be one of {', '.join(OPS)}; got {_show(op)}", "op")
    if op not in OPS:
        raise ProtocolError("unknown_op", f"unknown op {_show(op)}; known ops: {', '.join(OPS)}", "op")
    allowed = COMMON_FIELDS + OP_FIELDS[op]
    unknown = sorted(k for k in obj if k not in allowed)
    if unknown:
        raise ProtocolError("bad_request", f"unknown field {_show(unknown[0])} for op '{op}' "
                            f"(allowed: {', '.join(allowed)})", unknown[0])
    return rid, op


def check_token(obj: dict[str, Any], expected: str | None) -> None:
    """When the server has a token, the request must carry it (compared in constant time)."""
    if expected is None:
        return
    import hmac

    token = obj.get("token")
    if not isinstance(token, str) or not hmac.compare_digest(token.encode("utf-8", "replace"),
                                                             expected.encode("utf-8")):
        raise ProtocolError("bad_request", "field 'token' is missing or wrong: this server requires "
                            "the token it was started with", "token")


def parse_hello(obj: dict[str, Any], limits: Limits) -> str | None:
    """The optional free-form ``client`` description of a ``hello``."""
    if "client" not in obj:
        return None
    return _string(obj, "client", limits.max_client_chars)


def parse_cancel(obj: dict[str, Any], limits: Limits) -> str | int:
    """The ``target`` id of a ``cancel``."""
    if "target" not in obj:
        raise ProtocolError("bad_request", "field 'target' is required: the id of the generate request to cancel",
                            "target")
    target = request_id({"id": obj["target"]}, limits)
    if target is None:
        raise ProtocolError("bad_request", f"field 'target' must be a request id (a string of 1.."
                            f"{limits.max_id_chars} characters or an integer), got {_show(obj['target'])}", "target")
    return target


def parse_generate(obj: dict[str, Any], limits: Limits, defaults: Defaults) -> GenerateRequest:
    """Validate a ``generate`` request (after ``check_common``) against the limits."""
    from .control_fields import parse_control, parse_sequence

    rid = request_id(obj, limits)
    if "sequence" in obj:
        sequence = parse_sequence(obj, limits)
        frames = sum(round(s * FPS) for _, s in sequence)
        seed = _seed(obj, limits)
        return GenerateRequest(rid, tuple(p for p, _ in sequence), frames, seed, 1,
                               _sampling(obj, limits, replace(defaults, steps=defaults.control_steps)),
                               sequence=sequence)
    prompts = _prompts(obj, limits)
    frames = _frames(obj, limits, defaults)
    samples = _int(obj, "samples", 1, limits.max_samples, defaults.samples)
    if len(prompts) * samples > limits.max_motions:
        raise ProtocolError("too_large", f"{len(prompts)} prompts x {samples} samples = {len(prompts) * samples} "
                            f"motions; at most {limits.max_motions} per request (fields 'prompts', 'samples')",
                            "samples")
    seed = _seed(obj, limits)
    control = parse_control(obj, frames, limits)
    if control is not None and control.constrained:
        defaults = replace(defaults, steps=defaults.control_steps)
    return GenerateRequest(rid, prompts, frames, seed, samples, _sampling(obj, limits, defaults), control=control)


def _seed(obj: dict[str, Any], limits: Limits) -> int:
    """The request's seed, or a random one when it gives none."""
    seed = _int(obj, "seed", 0, limits.max_seed, None)
    if seed is None:
        import secrets

        seed = secrets.randbelow(limits.max_seed + 1)
    return seed


def _prompts(obj: dict[str, Any], limits: Limits) -> tuple[str, ...]:
    if ("prompt" in obj) == ("prompts" in obj):
        raise ProtocolError("bad_request", "give exactly one of 'prompt' (a string) or 'prompts' (a list of "
                            f"1..{limits.max_prompts} strings)", "prompt")
    if "prompt" in obj:
        return (_prompt(obj["prompt"], "prompt", limits),)
    items = obj["prompts"]
    if not isinstance(items, list) or not 1 <= len(items) <= limits.max_prompts:
        size = f"a list of {len(items)}" if isinstance(items, list) else _show(items)
        code = "too_large" if isinstance(items, list) and len(items) > limits.max_prompts else "bad_request"
        raise ProtocolError(code, f"field 'prompts' must be a list of 1..{limits.max_prompts} strings, got {size}",
                            "prompts")
    return tuple(_prompt(p, f"prompts[{i}]", limits) for i, p in enumerate(items))


def _prompt(value: Any, name: str, limits: Limits) -> str:
    if not isinstance(value, str):
        raise ProtocolError("bad_request", f"field '{name}' must be a string, got {_show(value)}", name)
    text = " ".join(value.split())
    if not text:
        raise ProtocolError("bad_request", f"field '{name}' must not be empty", name)
    if len(text) > limits.max_prompt_chars:
        raise ProtocolError("too_large", f"field '{name}' has {len(text)} characters; at most "
                            f"{limits.max_prompt_chars}", name)
    if not _utf8_ok(text) or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in text):
        raise ProtocolError("bad_request", f"field '{name}' contains control characters or unpaired surrogates",
                            name)
    return text


def _frames(obj: dict[str, Any], limits: Limits, defaults: Defaults) -> int:
    lo, hi = limits.min_frames, limits.max_frames
    if "frames" in obj and "seconds" in obj:
        raise ProtocolError("bad_request", "give 'frames' or 'seconds', not both", "frames")
    if "seconds" in obj:
        seconds = _number(obj, "seconds", lo / FPS, hi / FPS, None)
        return min(max(int(round(seconds * FPS)), lo), hi)
    return _int(obj, "frames", lo, hi, min(max(defaults.frames, lo), hi),
                hint=f" (at {FPS} fps: {lo / FPS:g}..{hi / FPS:g} s)")


def _sampling(obj: dict[str, Any], limits: Limits, defaults: Defaults) -> Sampling:
    sampler = obj.get("sampler", defaults.sampler)
    if sampler not in SAMPLERS:
        raise ProtocolError("bad_request", f"field 'sampler' must be one of {', '.join(SAMPLERS)}, "
                            f"got {_show(sampler)}", "sampler")
    steps = _int(obj, "steps", 1, limits.max_steps, defaults.steps)
    g = obj.get("guidance", {})
    if not isinstance(g, dict):
        raise ProtocolError("bad_request", f"field 'guidance' must be an object with optional "
                            f"{', '.join(GUIDANCE_FIELDS)}, got {_show(g)}", "guidance")
    unknown = sorted(k for k in g if k not in GUIDANCE_FIELDS)
    if unknown:
        raise ProtocolError("bad_request", f"unknown field 'guidance.{unknown[0]}' (allowed: "
                            f"{', '.join(GUIDANCE_FIELDS)})", f"guidance.{unknown[0]}")
    cfg_default = defaults.lcm_cfg if sampler == "lcm" and defaults.lcm_cfg is not None else defaults.cfg
    return Sampling(
        sampler=sampler, steps=steps,
        cfg=_number(g, "cfg", 0.0, limits.max_cfg, cfg_default, prefix="guidance."),
        strength=_number(g, "strength", 0.0, limits.max_strength, defaults.strength, prefix="guidance."),
        mu=_number(g, "mu", 0.0, limits.max_weight, defaults.mu, prefix="guidance."),
        eta=_number(g, "eta", 0.0, limits.max_weight, defaults.eta, prefix="guidance."),
        foot_lock=_flag(obj, "foot_lock", defaults.foot_lock),
    )


# --------------------------------------------------------------------------- field helpers

_MISSING = object()


def _flag(obj: dict[str, Any], name: str, default: bool) -> bool:
    """A true/false field (``default`` when absent)."""
    value = obj.get(name, default)
    if not isinstance(value, bool):
        raise ProtocolError("bad_request", f"field '{name}' must be true or false, got {_show(value)}", name)
    return value


def _int(obj: dict[str, Any], name: str, lo: int, hi: int, default: Any, hint: str = "") -> Any:
    """An integer field in [lo, hi] (JSON numbers like 3.0 are refused: integers only)."""
    if name not in obj:
        return default
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        code = "too_large" if isinstance(value, int) and not isinstance(value, bool) and value > hi else "bad_request"
        raise ProtocolError(code, f"field '{name}' must be an integer in [{lo}, {hi}]{hint}, got {_show(value)}",
                            name)
    return value


def _number(obj: dict[str, Any], name: str, lo: float, hi: float, default: Any, prefix: str = "") -> Any:
    """A finite number field in [lo, hi] (ints and floats, never booleans)."""
    if name not in obj:
        return default
    value = obj[name]
    full = prefix + name
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        ok = math.isfinite(number) and lo <= number <= hi
    if not ok:
        raise ProtocolError("bad_request", f"field '{full}' must be a finite number in [{lo:g}, {hi:g}], "
                            f"got {_show(value)}", full)
    return number


def _string(obj: dict[str, Any], name: str, max_chars: int) -> str:
    value = obj[name]
    if not isinstance(value, str) or len(value) > max_chars or not _utf8_ok(value):
        raise ProtocolError("bad_request", f"field '{name}' must be a string of at most {max_chars} characters, "
                            f"got {_show(value)}", name)
    return value


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


SHOW_DEPTH = 6   # containers nested deeper are shown as [...] / {...}


def _show(value: Any, limit: int = 60) -> str:
    """A short, safe rendering of a client value for an error message (any size, any nesting depth)."""
    text = _preview(value, limit, 0)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _preview(value: Any, budget: int, depth: int) -> str:
    """JSON-like text of ``value``, cut after about ``budget`` characters; never recurses past ``SHOW_DEPTH``."""
    if isinstance(value, (list, dict)):
        opening, closing = ("[", "]") if isinstance(value, list) else ("{", "}")
        if depth >= SHOW_DEPTH:
            return f"{opening}...{closing}" if value else opening + closing
        parts: list[str] = []
        used = 2
        for item in (value.items() if isinstance(value, dict) else value):
            if used > budget:
                parts.append("...")
                break
            if isinstance(item, tuple):
                part = f"{_preview(item[0], budget, depth + 1)}: {_preview(item[1], budget - used, depth + 1)}"
            else:
                part = _preview(item, budget - used, depth + 1)
            parts.append(part)
            used += len(part) + 2
        return opening + ", ".join(parts) + closing
    if isinstance(value, str):
        value = value[:budget + 1]
    try:
        return json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        return f"<{type(value).__name__}>"


# --------------------------------------------------------------------------- events

def encode_event(event: dict[str, Any]) -> bytes:
    """One event as a JSON line (ASCII-only, so it is valid UTF-8 whatever the client sent)."""
    return (json.dumps(event, ensure_ascii=True, allow_nan=False, separators=(",", ":")) + "\n").encode("ascii")


def error_event(rid: str | int | None, code: str, message: str, field_name: str | None = None) -> dict[str, Any]:
    """An ``error`` event; ``rid`` None when the request had no usable id."""
    event: dict[str, Any] = {"id": rid, "event": "error", "code": code, "message": message}
    if field_name is not None:
        event["field"] = field_name
    return event


def error_from(rid: str | int | None, exc: ProtocolError) -> dict[str, Any]:
    return error_event(rid, exc.code, exc.message, exc.field)
