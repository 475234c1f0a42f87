"""Client for the ReAlign generation server (protocol v1) -- standard library only.

This single file is self-contained (the Blender add-on vendors it): no torch,
no numpy at import time, no imports from the rest of the project.
``decode_joints`` returns a numpy array when numpy can be imported and nested
lists otherwise.

Typical use::

    from client import Client, decode_joints     # or: from server.client import ...

    with Client("127.0.0.1", 8765) as c:
        info = c.hello()
        result = c.generate("a person walks forward and waves", seconds=4, seed=7,
                            on_event=lambda e: print(e["event"], e.get("step")))
        joints = decode_joints(result["motions"][0]["joints"])   # (F, 22, 3) float32

Non-blocking use (e.g. from a UI timer): ``job = c.submit(...)``, then call
``job.poll()`` now and then; it returns the events received so far and
``job.done`` / ``job.result`` / ``job.error`` tell how it ended.

Every call can raise :class:`ServerError` (``code`` is the server's error code,
or ``"disconnected"`` / ``"timeout"`` for client-side failures).  A reader
thread receives all events and routes them by request id, so several jobs can
run on one connection and a slow consumer never blocks the others.
"""
from __future__ import annotations

import base64
import itertools
import json
import queue
import socket
import sys
import threading
from array import array
from typing import Any, Callable, Iterator

PROTOCOL_VERSION = 1
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
TERMINAL_EVENTS = ("result", "error")
Event = dict[str, Any]


class ServerError(Exception):
    """An ``error`` event (or a client-side failure): ``code``, ``message`` and the whole ``event``."""

    def __init__(self, event: Event) -> None:
        self.event = event
        self.code = str(event.get("code", "internal"))
        self.message = str(event.get("message", ""))
        super().__init__(f"{self.code}: {self.message}")


def _local_error(code: str, message: str) -> Event:
    return {"event": "error", "code": code, "message": message}


class Job:
    """A submitted ``generate`` request: its events, and how it ended."""

    def __init__(self, client: "Client", job_id: str | int) -> None:
        self.client, self.id = client, job_id
        self.events: "queue.Queue[Event]" = queue.Queue()
        self.done = False
        self.result: Event | None = None
        self.error: Event | None = None

    def _take(self, event: Event) -> Event:
        if event.get("event") == "result":
            self.done, self.result = True, event
        elif event.get("event") == "error":
            self.done, self.error = True, event
        return event

    def poll(self) -> list[Event]:
        """The events received since the last call (never blocks)."""
        out = []
        while True:
            try:
                out.append(self._take(self.events.get_nowait()))
            except queue.Empty:
                return out

    def iter_events(self, timeout: float | None = None) -> Iterator[Event]:
        """Yield events until the terminal one (``result`` or ``error``, which is yielded too).

        timeout: the longest wait for *one* event; then a ``timeout`` ServerError.
        """
        while not self.done:
            try:
                event = self.events.get(timeout=timeout)
            except queue.Empty:
                raise ServerError(_local_error("timeout", f"no event for job {self.id!r} in {timeout} s")) from None
            yield self._take(event)

    def wait(self, timeout: float | None = None, on_event: Callable[[Event], Any] | None = None) -> Event:
        """Block until the job ends -> its ``result`` event; raises ServerError on ``error`` (code
        ``cancelled`` when it was cancelled)."""
        for event in self.iter_events(timeout):
            if on_event is not None:
                on_event(event)
        if self.error is not None:
            raise ServerError(self.error)
        return self.result

    def cancel(self, timeout: float | None = 30.0) -> Event:
        """Ask the server to stop this job; its stream then ends with the ``cancelled`` error."""
        return self.client.cancel(self.id, timeout)


class Client:
    """A connection to the server.  Thread-safe; one reader thread per connection."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, token: str | None = None,
                 timeout: float = 30.0, connect: bool = True) -> None:
        self.host, self.port, self.token, self.timeout = host, port, token, timeout
        self._sock: socket.socket | None = None
        self._routes: dict[str, "queue.Queue[Event]"] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._reader: threading.Thread | None = None
        self.unrouted: "queue.Queue[Event]" = queue.Queue()   # events whose id is unknown (e.g. id null errors)
        self.closed_reason: str | None = None
        if connect:
            self.connect()

    # ------------------------------------------------------------------ connection

    def connect(self) -> "Client":
        """Open the TCP connection and start the reader thread."""
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self.closed_reason = sock, None
        self._reader = threading.Thread(target=self._read_loop, args=(sock,), name="realign-client-reader",
                                        daemon=True)
        self._reader.start()
        return self

    def close(self) -> None:
        """Close the connection (the server cancels this connection's jobs)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=5)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._sock is not None and self.closed_reason is None

    def _read_loop(self, sock: socket.socket) -> None:
        reason = "the server closed the connection"
        try:
            with sock.makefile("rb") as stream:
                for line in stream:
                    self._route(json.loads(line.decode("utf-8")))
        except (OSError, ValueError) as exc:
            reason = f"connection lost: {exc}"
        self.closed_reason = reason
        with self._lock:
            routes, self._routes = list(self._routes.values()), {}
        for route in routes:
            route.put(_local_error("disconnected", reason))

    def _route(self, event: Event) -> None:
        key = json.dumps(event.get("id"))
        with self._lock:
            route = self._routes.get(key)
            if route is not None and event.get("event") in TERMINAL_EVENTS:
                del self._routes[key]
        (route or self.unrouted).put(event)

    def send(self, request: Event) -> None:
        """Send one raw request object (the token is added when set)."""
        if self.token is not None:
            request = {**request, "token": self.token}
        data = (json.dumps(request, ensure_ascii=True, allow_nan=False) + "\n").encode("ascii")
        sock = self._sock
        if sock is None or self.closed_reason is not None:
            raise ServerError(_local_error("disconnected", self.closed_reason or "not connected"))
        with self._send_lock:
            try:
                sock.sendall(data)
            except OSError as exc:
                raise ServerError(_local_error("disconnected", f"send failed: {exc}")) from None

    def new_id(self) -> str:
        return f"r{next(self._ids)}"

    def _open_route(self, rid: str | int) -> "queue.Queue[Event]":
        key = json.dumps(rid)
        with self._lock:
            if key in self._routes:
                raise ValueError(f"request id {rid!r} is already in use on this connection")
            route: "queue.Queue[Event]" = queue.Queue()
            self._routes[key] = route
            return route

    # ------------------------------------------------------------------ requests

    def request(self, op: str, timeout: float | None = None, **fields: Any) -> Event:
        """Send ``op`` and wait for its reply event; raises ServerError on an ``error`` reply."""
        rid = fields.pop("id", None)
        rid = self.new_id() if rid is None else rid
        route = self._open_route(rid)
        try:
            self.send({"id": rid, "op": op, **fields})
            try:
                event = route.get(timeout=self.timeout if timeout is None else timeout)
            except queue.Empty:
                raise ServerError(_local_error("timeout", f"no reply to {op!r} in {timeout or self.timeout} s")) \
                    from None
        finally:
            with self._lock:
                self._routes.pop(json.dumps(rid), None)
        if event.get("event") == "error":
            raise ServerError(event)
        return event

    def hello(self, client_name: str | None = None) -> Event:
        """Protocol version, server version, device and model (fps, joints, joint_names, max_frames...)."""
        event = self.request("hello", **({"client": client_name} if client_name else {}))
        if event.get("protocol") != PROTOCOL_VERSION:
            raise ServerError(_local_error("bad_request", f"server speaks protocol {event.get('protocol')}, "
                                                         f"this client {PROTOCOL_VERSION}"))
        return event

    def ping(self) -> Event:
        return self.request("ping")

    def status(self) -> Event:
        """Queue length, current job, device, memory, threads."""
        return self.request("status")

    def cancel(self, target: str | int, timeout: float | None = None) -> Event:
        """Cancel a generate request of this connection -> ``{"event": "cancel", "found": bool}``."""
        return self.request("cancel", timeout, target=target)

    def submit(self, prompt: str | None = None, *, prompts: list[str] | None = None, frames: int | None = None,
               seconds: float | None = None, seed: int | None = None, samples: int | None = None,
               guidance: dict[str, float] | None = None, steps: int | None = None, sampler: str | None = None,
               id: str | int | None = None, path: Any = None, keyframes: list[dict] | None = None,
               loop: bool | None = None, in_place: bool | None = None, control_strength: float | None = None,
               sequence: list[dict] | None = None, layer: dict | None = None, foot_lock: bool | None = None) -> Job:
        """Send a ``generate`` request -> its :class:`Job` (events arrive in the background).

        Fields left None are left out (the server's defaults apply).  ``guidance`` may hold
        ``strength``, ``mu``, ``eta`` (reward weights) and ``cfg`` (classifier-free guidance scale).
        ``path``, ``keyframes``, ``loop``, ``in_place``, ``control_strength``, ``sequence``, ``layer``: the
        control fields (docs/control.md); ``foot_lock``: undo sliding over planted feet (None = the model's default).
        """
        fields = {"prompt": prompt, "prompts": prompts, "frames": frames, "seconds": seconds, "seed": seed,
                  "samples": samples, "guidance": guidance, "steps": steps, "sampler": sampler, "path": path,
                  "keyframes": keyframes, "loop": loop, "in_place": in_place, "control_strength": control_strength,
                  "sequence": sequence, "layer": layer, "foot_lock": foot_lock}
        rid = self.new_id() if id is None else id
        job = Job(self, rid)
        job.events = self._open_route(rid)
        try:
            self.send({"id": rid, "op": "generate", **{k: v for k, v in fields.items() if v is not None}})
        except ServerError:
            with self._lock:
                self._routes.pop(json.dumps(rid), None)
            raise
        return job

    def generate(self, prompt: str | None = None, *, on_event: Callable[[Event], Any] | None = None,
                 timeout: float | None = None, **fields: Any) -> Event:
        """``submit`` and wait -> the ``result`` event (``on_event`` sees every event, progress included).

        timeout: the longest wait for one event (None: no limit -- a queued job may wait long; a lost
        connection still ends the wait with a ``disconnected`` ServerError).
        """
        return self.submit(prompt, **fields).wait(timeout, on_event)


# ---------------------------------------------------------------------- decoding

def decode_joints(joints: Event) -> Any:
    """A result's ``joints`` object -> (F, 22, 3) float32: a numpy array if numpy imports, else nested lists."""
    if joints.get("dtype") != "float32":
        raise ValueError(f"unsupported joints dtype {joints.get('dtype')!r}")
    shape = [int(n) for n in joints["shape"]]
    raw = base64.b64decode(joints["data"])
    count = 1
    for n in shape:
        count *= n
    if len(raw) != 4 * count:
        raise ValueError(f"joints data has {len(raw)} bytes, shape {shape} needs {4 * count}")
    try:
        import numpy as np
    except ImportError:
        return _nested(raw, shape)
    return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)


def _nested(raw: bytes, shape: list[int]) -> list:
    values = array("f")
    values.frombytes(raw)
    if sys.byteorder == "big":
        values.byteswap()
    frames, joints, dims = shape
    return [[list(values[(f * joints + j) * dims:(f * joints + j + 1) * dims]) for j in range(joints)]
            for f in range(frames)]


def decode_motions(result: Event) -> list[Any]:
    """All motions of a ``result`` event, decoded (see ``decode_joints``)."""
    return [decode_joints(m["joints"]) for m in result["motions"]]
