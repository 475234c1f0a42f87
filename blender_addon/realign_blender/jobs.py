"""Non-blocking generation: a worker thread per job talks to the server, the main thread drains events.

Only ``drain`` touches bpy data, and only on the main thread (a timer calls
it every 0.1 s while jobs run; headless tests call it directly, since
timers never fire in module mode).
"""
from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field

import bpy

from . import armature_io, connection, control_bake
from .retarget import RetargetOptions
from .skeleton import FPS

EVENTS: queue.Queue[tuple[str, dict]] = queue.Queue()
POLL_S = 0.1
# Seconds per part of the last finished job, from the click (Job creation): server_s (the last result's
# timing.total_s), received_s (click -> that result read by the worker), transfer_s (= received_s - server_s:
# connect, hello, submit, reading), decode_s, retarget_s, keying_s, nla_s (summed over takes), total_s.
LAST_TIMING: dict[str, float] = {}


@dataclass
class Target:
    """Where the motions of one request go: armature object name and start frame per motion; control: the
    bake flags of a control take (``control_bake``), None for a plain take."""

    armature: str
    start_frame: float
    control: dict | None = None


@dataclass
class Job:
    """One click of Generate / Regenerate / Batch bake: requests sent together, their targets."""

    requests: list[dict]
    targets: dict[str, list[Target]]   # request id -> one Target per motion (prompt x sample)
    host: str
    port: int
    token: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    steps: dict = field(default_factory=dict)  # request id -> (step, total, eta_s)
    baked: list = field(default_factory=list)   # (action name, armature name)
    errors: list = field(default_factory=list)
    open: set = field(default_factory=set)
    timing: dict = field(default_factory=dict)  # see LAST_TIMING
    thread: threading.Thread | None = None


JOBS: dict[int, Job] = {}


def guidance(settings, strength: float | None = None) -> dict:
    """The ``guidance`` object of a request from scene settings: strength, CFG (when set, and not for a fast
    draft, whose CFG is distilled into the model), and the reward weights only when the user asked for a custom
    mix (otherwise the server uses the model's calibrated mix, which for a reward model without an embedding bank
    has no motion-to-motion term)."""
    out = {"strength": float(settings.strength if strength is None else strength)}
    if settings.cfg > 0 and not settings.draft:   # 0 = the model's validated scale (the server's default)
        out["cfg"] = float(settings.cfg)
    if settings.custom_mix:
        out.update(mu=float(settings.mu), eta=float(settings.eta))
    return out


def generate_request(settings, prompt: str, seconds: float, seed: int, samples: int,
                     strength: float | None = None) -> dict:
    """A protocol-v1 ``generate`` request (duration sent as 20 fps frames, 1 s to the model's maximum)."""
    frames = int(round(float(seconds) * FPS))
    if settings.max_frames > 0:
        frames = min(frames, settings.max_frames)
    req = {"id": connection.new_id("gen"), "op": "generate", "prompt": prompt, "frames": max(frames, FPS),
           "seed": int(seed), "samples": int(samples), "guidance": guidance(settings, strength)}
    if settings.steps > 0:
        req["steps"] = int(settings.steps)
    if settings.foot_lock != "model":
        req["foot_lock"] = settings.foot_lock == "on"
    if settings.draft:                 # the few-step consistency model (server sampler "lcm"), 1 step by default
        req.update(sampler="lcm", steps=int(settings.steps) or 1)
    return req


def remember(settings, request: dict, target: Target) -> None:
    """Keep a generation click's whole request and where its takes went (scene settings, saved with the
    .blend): Regenerate resends it."""
    settings.last_take = json.dumps({"request": {k: v for k, v in request.items() if k != "id"},
                                     "armature": target.armature, "start_frame": float(target.start_frame),
                                     "control": target.control})


def regenerate_request(settings, strength: float) -> tuple[dict, Target]:
    """The last generation's request again -- prompt or sequence, duration, seed, sampler, control fields --
    as one take (its first seed) with guidance strength ``strength``, and its target: the same armature,
    start frame and bake flags (*Root track* as the panel says now). LookupError when nothing was generated."""
    if not settings.last_take:
        raise LookupError("Nothing generated yet in this scene")
    last = json.loads(settings.last_take)
    req = {**last["request"], "id": connection.new_id("regen")}
    req["guidance"] = {**req.get("guidance", {}), "strength": float(strength)}
    if "samples" in req:
        req["samples"] = 1
    control = {k: v for k, v in (last.get("control") or {}).items() if k != "root_track"}
    if control and settings.root_motion == "root_track":
        control["root_track"] = True
    return req, Target(last["armature"], float(last["start_frame"]), control or None)


def submit(job: Job) -> int:
    """Start a job's worker thread; returns the job key. Events go to ``EVENTS``."""
    key = id(job)
    job.open = {r["id"] for r in job.requests}
    JOBS[key] = job
    job.thread = threading.Thread(target=_work, args=(key, job), name="realign-worker", daemon=True)
    job.thread.start()
    ensure_timer()
    return key


def _work(key: int, job: Job) -> None:
    """Worker thread body: stream events into the queue; errors become events too."""
    try:
        EVENTS.put((STATUS_KEY, connection.hello(job.host, job.port, job.token)))
        for event in connection.stream(job.host, job.port, job.requests, job.token, job.cancel):
            if event.get("event") == "result":
                event["_received"] = time.monotonic()
            EVENTS.put((key, event))
    except Exception as exc:  # noqa: BLE001 - every failure is shown to the user
        EVENTS.put((key, {"event": "error", "id": None, "code": "connection", "message": str(exc)}))
    EVENTS.put((key, {"event": "_done"}))


STATUS_KEY = 0


def check_server(host: str, port: int, token: str = "") -> None:
    """Ask the server for its hello on a thread; the answer reaches the panel through ``drain``."""
    def work() -> None:
        try:
            EVENTS.put((STATUS_KEY, connection.hello(host, port, token)))
        except Exception as exc:  # noqa: BLE001
            EVENTS.put((STATUS_KEY, {"event": "_unreachable", "message": str(exc)}))
    threading.Thread(target=work, name="realign-hello", daemon=True).start()
    ensure_timer()


def _handle_status(settings, event: dict) -> None:
    """Server status fields from a hello event (or the reason it is unreachable)."""
    if event.get("event") == "hello":
        model = event.get("model") or {}
        settings.status = "connected"
        settings.device = str(event.get("device", ""))
        settings.model = str(model.get("name", "")) if isinstance(model, dict) else str(model)
        settings.server_version = str(event.get("server_version", ""))
        if isinstance(model, dict) and model.get("max_frames"):
            settings.max_frames = int(model["max_frames"])
    else:
        settings.status = "not running"
        settings.message = event.get("message", "server not reachable")


def cancel_all() -> int:
    """Ask every running job to cancel; returns how many were asked."""
    for job in JOBS.values():
        job.cancel.set()
    return len(JOBS)


def ensure_timer() -> None:
    """Schedule ``_timer`` (does nothing when already scheduled)."""
    if not bpy.app.timers.is_registered(_timer):
        bpy.app.timers.register(_timer, first_interval=POLL_S)


def _timer() -> float | None:
    drain(bpy.context)
    return POLL_S if JOBS or not EVENTS.empty() else None


def drain(context: bpy.types.Context, block_s: float = 0.0) -> int:
    """Apply queued worker events on the main thread; returns how many were handled.

    block_s: wait up to this long for the first event (tests use it).
    """
    handled = 0
    settings = context.scene.realign
    while True:
        try:
            key, event = EVENTS.get(timeout=block_s) if (block_s and not handled) else EVENTS.get_nowait()
        except queue.Empty:
            break
        handled += 1
        job = JOBS.get(key)
        if key == STATUS_KEY:
            _handle_status(settings, event)
        elif job is not None:
            _handle(context, settings, key, job, event)
    settings.busy = bool(JOBS)
    return handled


def wait(context: bpy.types.Context, timeout: float = 60.0) -> None:
    """Drain until no job is left or ``timeout`` seconds pass (headless use)."""
    end = time.monotonic() + timeout
    while JOBS and time.monotonic() < end:
        drain(context, block_s=0.2)
    if JOBS:
        raise TimeoutError(f"ReAlign jobs still running after {timeout} s")


def _handle(context, settings, key: int, job: Job, event: dict) -> None:
    """Update the UI state / bake results for one event."""
    kind = event.get("event")
    if kind == "accepted":
        settings.message = f"queued (position {event.get('position', event.get('queue_position', 0))})"
    elif kind == "progress":
        job.steps[event.get("id")] = (event.get("step", 0), max(event.get("total", 1), 1), event.get("eta_s", 0.0))
        done = sum(s / t for s, t, _ in job.steps.values()) / max(len(job.requests), 1)
        settings.progress = min(done, 1.0)
        settings.eta_s = max(float(e or 0.0) for _, _, e in job.steps.values())
        settings.message = f"generating… {settings.progress:.0%}, about {settings.eta_s:.0f} s left"
    elif kind == "result":
        _bake_result(context, settings, job, event)
    elif kind in ("error", "cancelled"):
        text = event.get("message") or kind
        job.errors.append(f"{event.get('code', kind)}: {text}")
        was_cancelled = kind == "cancelled" or event.get("code") == "cancelled"
        settings.message = "cancelled" if was_cancelled else f"error: {text}"
        if event.get("code") == "connection":
            settings.status = "not running"
    elif kind == "_done":
        JOBS.pop(key, None)
        _finish_timing(job)
        settings.progress = 1.0 if not job.errors else settings.progress
        settings.message = summary(job)
    _redraw(context)


def _bake_result(context, settings, job: Job, event: dict) -> None:
    """Key every motion of a result event onto its target armature."""
    options = retarget_options(settings)
    targets = job.targets.get(event.get("id"), [])
    _note_received(job, event)
    laps = armature_io.Laps(job.timing)
    motions = connection.result_motions(event)
    laps.lap("decode_s")
    for motion, target in zip(motions, targets):
        obj = bpy.data.objects.get(target.armature)
        if obj is None or obj.type != "ARMATURE":
            job.errors.append(f"armature {target.armature!r} is gone")
            continue
        meta = {"prompt": motion.get("prompt", ""), "seed": int(motion.get("seed", 0)),
                "strength": float(event.get("guidance", {}).get("strength", _req_strength(job, event))),
                "cfg": float(event.get("sampling", {}).get("guidance", {}).get("cfg",
                                                                            _req_guidance(job, event).get("cfg", 0.0))),
                "model": str(event.get("model", settings.model)), "server_version": settings.server_version,
                "foot_lock": bool(event.get("sampling", {}).get("foot_lock", False))}
        try:
            if target.control is not None:
                action, _, _ = control_bake.bake(obj, motion, meta, target.start_frame, options, target.control,
                                                 settings.loop_cycles, job.timing)
            else:
                action, _, _ = control_bake.bake_joints(obj, motion["joints"], meta, target.start_frame, options,
                                                        motion["contacts"], job.timing)
        except (ValueError, KeyError, RuntimeError) as exc:   # e.g. a hand-made map naming a bone the rig lacks
            job.errors.append(f"{obj.name}: {exc}")
            continue
        job.baked.append((action.name, obj.name))


def _note_received(job: Job, event: dict) -> None:
    """Server seconds of a result (its ``timing.total_s``) and click -> the worker read it."""
    server = (event.get("timing") or {}).get("total_s", 0.0)
    job.timing["server_s"] = float(server)
    job.timing["received_s"] = event.get("_received", time.monotonic()) - job.started


def _finish_timing(job: Job) -> None:
    """Total and transfer seconds of a finished job; publish its timing as ``LAST_TIMING``."""
    job.timing["total_s"] = time.monotonic() - job.started
    if "received_s" in job.timing:
        job.timing["transfer_s"] = job.timing["received_s"] - job.timing["server_s"]
    LAST_TIMING.clear()
    LAST_TIMING.update(job.timing)


def _req_guidance(job: Job, event: dict) -> dict:
    req = next((r for r in job.requests if r["id"] == event.get("id")), {})
    return req.get("guidance", {})


def _req_strength(job: Job, event: dict) -> float:
    return float(_req_guidance(job, event).get("strength", 0.0))


def retarget_options(settings) -> RetargetOptions:
    """RetargetOptions from scene settings."""
    return RetargetOptions(root_motion=settings.root_motion,
                           root_axes=(settings.root_x, settings.root_y, settings.root_z),
                           scale_by_leg_length=settings.scale_by_leg_length, ground_snap=settings.ground_snap,
                           pin_feet=settings.pin_feet)


def summary(job: Job) -> str:
    """One line: what was baked, what failed, how long it took."""
    took = time.monotonic() - job.started
    text = f"{len(job.baked)} take(s) baked in {took:.1f} s"
    if job.errors:
        text += f"; {len(job.errors)} problem(s): {job.errors[0]}"
    return text


def _redraw(context) -> None:
    screen = getattr(context, "screen", None)
    for area in (screen.areas if screen else []):
        if area.type == "VIEW_3D":
            area.tag_redraw()
