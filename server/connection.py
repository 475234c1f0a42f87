"""One client connection: line framing of what it sends, buffering of what it is sent.

The server's socket loop owns the socket (non-blocking): it calls ``feed`` with
the bytes it reads, takes complete lines with ``next_line`` (a few per loop
turn, see ``take_budget``) and calls ``flush`` when the socket is writable.
``send`` may be called from any thread (the worker streams events through it);
it only appends to the outbox and asks the loop to flush.

Framing: a line longer than ``max_line_bytes`` is answered with one
``too_large`` error and then skipped up to its newline without being stored,
so a 10 MB line costs the server no more memory than a short one.  The loop
reads from a client only while it has no complete line waiting, so the read
buffer never holds more than one line plus one read chunk.

Fairness and back-pressure (numbers from ``ConnectionPolicy``): each client
gets at most ``lines_per_turn`` lines answered per loop turn and a token
bucket of ``max_lines_per_s`` lines per second; while its unsent output is
above ``max_unsent_bytes`` the loop neither reads nor answers its lines (it
waits for the client to read).  A client whose unread output still passes
``max_outbox_bytes`` (results of jobs it already had) is cut off (``overflowed``).
"""
from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable

from .protocol import encode_event, error_event

READ_CHUNK = 64 * 1024
TERMINAL_EVENTS = ("result", "error")


def job_key(rid: str | int) -> str:
    """A dictionary key for a request id (1 and "1" are different ids)."""
    return json.dumps(rid)


@dataclass(frozen=True)
class ConnectionPolicy:
    """Per-connection bounds of the socket loop (all configurable on the command line)."""

    max_line_bytes: int = 256 * 1024
    max_unsent_bytes: int = 1 * 2 ** 20      # back-pressure: stop reading/answering above this
    max_outbox_bytes: int = 256 * 2 ** 20    # hard cap (results of accepted jobs): close above this
    lines_per_turn: int = 16                 # lines answered per client per loop turn
    max_lines_per_s: float = 200.0           # token-bucket rate per client (0 = unlimited)
    line_burst: float = 200.0                # token-bucket depth (lines)

    def as_dict(self) -> dict[str, Any]:
        return {"max_unsent_bytes": self.max_unsent_bytes, "max_outbox_bytes": self.max_outbox_bytes,
                "lines_per_turn": self.lines_per_turn, "max_lines_per_s": self.max_lines_per_s}


class Connection:
    """A client: its socket, read buffer, outbox, its jobs (by ``job_key``) and its activity."""

    def __init__(self, sock: socket.socket, address: Any, number: int, policy: ConnectionPolicy,
                 on_output: Callable[["Connection"], None]) -> None:
        self.sock, self.address, self.number, self.policy = sock, address, number, policy
        self.max_line_bytes, self.max_outbox_bytes = policy.max_line_bytes, policy.max_outbox_bytes
        self.jobs: dict[str, Any] = {}
        self.jobs_lock = threading.Lock()
        self.open_streams = 0          # generate streams whose terminal event is not in the outbox yet
        self.client_name: str | None = None
        self.closed = False
        self.overflowed = False
        self.read_closed = False       # the client shut its write side (or vanished); we may still answer
        self.wants_write = False       # output is left that the socket did not take yet
        self.events = 0                # the selector events the loop watches for (0 = unregistered)
        self.last_active = time.monotonic()
        self._tokens = policy.line_burst
        self._refilled = self.last_active
        self._rbuf = bytearray()
        self._skipping = False
        self._out = bytearray()
        self._out_lock = threading.Lock()
        self._on_output = on_output

    @property
    def owner(self) -> Hashable:
        """The key the job queue knows this client by."""
        return self.number

    def touch(self) -> None:
        """Note activity (a line answered, output taken, a job ended): restarts the idle clock."""
        self.last_active = time.monotonic()

    def idle_for(self, now: float) -> float | None:
        """Seconds without activity (no line answered, no output taken by the client), or None while
        the client has a job.  Unsent output the client does not read does not count as activity."""
        if self.open_streams > 0:
            return None
        return now - self.last_active

    # ------------------------------------------------------------------ input

    def feed(self, data: bytes) -> None:
        """Append received bytes (the loop calls it only while no complete line is waiting)."""
        if self._skipping:
            newline = data.find(b"\n")
            if newline < 0:
                return
            data, self._skipping = data[newline + 1:], False
        self._rbuf += data
        self._check_partial()

    def feed_eof(self) -> None:
        """The client closed its write side: a last line without a newline still counts."""
        self.read_closed = True
        if self._rbuf and not self._skipping:
            self._rbuf += b"\n"

    def has_line(self) -> bool:
        """Whether a complete line is waiting to be answered."""
        return b"\n" in self._rbuf

    def next_line(self) -> bytes | None:
        """The next complete, non-blank line (without newline), or None when none is waiting."""
        while True:
            newline = self._rbuf.find(b"\n")
            if newline < 0:
                self._check_partial()
                return None
            line = bytes(self._rbuf[:newline])
            del self._rbuf[:newline + 1]
            if len(line) > self.max_line_bytes:
                self._too_large()
                continue
            line = line.rstrip(b"\r")
            if line.strip():
                return line

    def _check_partial(self) -> None:
        """A partial line already over the limit: answer ``too_large`` once and skip to its newline."""
        if b"\n" not in self._rbuf and len(self._rbuf) > self.max_line_bytes:
            self._too_large()
            self._rbuf.clear()
            self._skipping = True

    def _too_large(self) -> None:
        self.send(error_event(None, "too_large", f"request line longer than {self.max_line_bytes} bytes; the "
                              "line is discarded (one JSON object per line, at most that size)"))

    # ------------------------------------------------------------------ fairness

    def take_budget(self, now: float) -> int:
        """How many lines may be answered this turn (the per-turn budget, the token bucket)."""
        rate = self.policy.max_lines_per_s
        if rate <= 0:
            return self.policy.lines_per_turn
        self._tokens = min(self.policy.line_burst, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        return min(self.policy.lines_per_turn, int(self._tokens))

    def spend(self, lines: int) -> None:
        """``lines`` were answered: take them from the bucket."""
        self._tokens -= lines

    def refill_in(self) -> float:
        """Seconds until at least one line may be answered again (0 when one may now)."""
        rate = self.policy.max_lines_per_s
        if rate <= 0 or self._tokens >= 1:
            return 0.0
        return (1 - self._tokens) / rate

    def backlogged(self) -> bool:
        """Whether the client's unsent output is above the back-pressure mark."""
        return self.pending() > self.policy.max_unsent_bytes

    # ------------------------------------------------------------------ output

    def send(self, event: dict[str, Any]) -> None:
        """Queue one event (thread-safe); dropped once the connection is closed."""
        try:
            data = encode_event(event)
        except (TypeError, ValueError):  # e.g. a non-finite number: the client still gets an answer
            data = encode_event(error_event(event.get("id"), "internal", "the server could not encode an event"))
        with self._out_lock:
            if self.closed:
                return
            self._out += data
            if len(self._out) > self.max_outbox_bytes:
                self.overflowed = True
        self._on_output(self)

    def send_job_event(self, event: dict[str, Any]) -> None:
        """``send`` for a job's events: a terminal one (result/error) closes one open stream."""
        self.send(event)
        if event.get("event") in TERMINAL_EVENTS:
            with self.jobs_lock:
                self.open_streams -= 1

    def pending(self) -> int:
        with self._out_lock:
            return len(self._out)

    def flush(self) -> bool:
        """Write what the socket takes now (loop thread) -> True while output is left. Raises OSError."""
        with self._out_lock:
            while self._out:
                try:
                    sent = self.sock.send(self._out[:READ_CHUNK * 4])
                except (BlockingIOError, InterruptedError):
                    return True
                del self._out[:sent]
                self.last_active = time.monotonic()
            return False

    def close(self) -> None:
        """Close the socket and drop pending output (loop thread)."""
        with self._out_lock:
            self.closed = True
            self._out.clear()
        self._rbuf.clear()
        try:
            self.sock.close()
        except OSError:
            pass
