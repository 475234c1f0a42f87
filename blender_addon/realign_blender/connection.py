"""Talking to the generation server from the worker thread, through the vendored protocol client.

``client.py`` is ``server/client.py`` copied in by ``build.py`` (one source
for the protocol). This module only adapts it to the add-on: readable errors
when the server is down, several requests streamed together, cancelling, and
decoding motions to float64 arrays and foot contacts. Never called on Blender's
main thread.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import numpy as np

from . import client
from .kinematics import FOOT_JOINTS

_ids = itertools.count(1)
POLL_S = 0.05


class ServerUnavailable(ConnectionError):
    """The server cannot be reached; the message says where and what to do."""


def new_id(prefix: str = "blender") -> str:
    """A request id unique within this Blender session."""
    return f"{prefix}-{next(_ids)}"


def open_client(host: str, port: int, token: str = "", timeout: float = 5.0) -> client.Client:
    """A connected ``client.Client`` or ServerUnavailable with a readable message."""
    try:
        return client.Client(host, int(port), token or None, timeout=timeout)
    except OSError as exc:
        raise ServerUnavailable(
            f"ReAlign server not reachable at {host}:{port} ({exc.strerror or exc}). Start it with "
            f"'python -m server' (or Start server in the add-on preferences) and check host and port"
        ) from exc


def hello(host: str, port: int, token: str = "", timeout: float = 2.0) -> dict:
    """The server's hello event (protocol, server_version, device, model)."""
    with open_client(host, port, token, timeout) as c:
        return c.hello("realign_blender")


def _fields(request: dict) -> dict:
    """submit() keyword arguments of a generate request dict."""
    keys = ("prompt", "prompts", "frames", "seconds", "seed", "samples", "guidance", "steps", "sampler", "id",
            "foot_lock", *CONTROL_KEYS)
    return {k: request[k] for k in keys if k in request}


# Protocol v1 extension fields of ``generate`` (server/control_fields.py) that client.submit() has no keyword for.
CONTROL_KEYS = ("path", "keyframes", "loop", "in_place", "control_strength", "layer", "sequence")


def _submit(c: client.Client, request: dict) -> client.Job:
    """Submit one generate request (control fields included)."""
    return c.submit(**_fields(request))


def stream(host: str, port: int, requests: list[dict], token: str = "",
           cancel: threading.Event | None = None) -> Iterator[dict]:
    """Submit generate ``requests`` (each with an ``id``) on one connection; yield their events until all end.

    When ``cancel`` is set every unfinished job is cancelled; its stream then
    ends with an ``error`` event whose code is ``cancelled``.
    """
    with open_client(host, port, token) as c:
        jobs = [_submit(c, r) for r in requests]
        asked = False
        while not all(j.done for j in jobs):
            if cancel is not None and cancel.is_set() and not asked:
                asked = True
                for j in jobs:
                    if not j.done:
                        c.cancel(j.id)
            events = [e for j in jobs for e in j.poll()]
            if not events:
                if c.closed_reason is not None:
                    raise ServerUnavailable(f"the ReAlign server closed the connection ({c.closed_reason})")
                time.sleep(POLL_S)
            yield from events


def result_motions(event: dict) -> list[dict]:
    """Per-motion dicts of a ``result`` event: ``joints`` as a float64 (F, 22, 3) array and ``contacts`` the
    server's planted foot joints (F, 4) bool in ``FOOT_JOINTS`` order, None when it sent none (see
    ``planted_joints``; the retargeter then detects them from the joints by the same rule)."""
    out = []
    for m in event.get("motions", []):
        joints = np.asarray(client.decode_joints(m["joints"]), np.float64)
        out.append({**m, "joints": joints, "contacts": planted_joints(m.get("foot_contacts"), len(joints))})
    return out


def planted_joints(foot_contacts: object, frames: int) -> np.ndarray | None:
    """(frames, 4) bool from a ``foot_contacts`` object's ``per_joint`` lists (``kinematics.planted_feet``
    on the server), or None when they are absent or malformed (servers before ``per_joint`` sent only
    ``left``/``right``, by HumanML3D's looser velocity test, which is not used for pinning)."""
    per_joint = foot_contacts.get("per_joint") if isinstance(foot_contacts, dict) else None
    if not isinstance(per_joint, dict):
        return None
    columns = [per_joint.get(name) for name in FOOT_JOINTS]
    if not all(isinstance(c, list) and len(c) == frames and all(isinstance(v, bool) for v in c) for c in columns):
        return None
    return np.array(columns, dtype=bool).T
