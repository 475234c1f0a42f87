"""One client connection: line framing of what it sends, buffering of what it is sent.

The server's socket loop owns the socket (non-blocking) and calls ``feed`` with
the bytes it reads and ``flush`` when the socket is writable.  ``send`` may be
called from any thread (the worker streams events through it); it only appends
to the outbox and asks the loop to flush.

Framing: a line longer than ``max_line_bytes`` is answered with one
``too_large`` error and then skipped up to its newline without being stored,
so a 10 MB line costs the server no more memory than a short one.  A client
whose unread output passes ``max_outbox_bytes`` is cut off (``overflowed``).
"""
from __future__ import annotations

import json
import socket
import threading
from typing import Any, Callable, Hashable, Iterator

from .protocol import encode_event, error_event

READ_CHUNK = 64 * 1024


def job_key(rid: str | int) -> str:
    """A dictionary key for a request id (1 and "1" are different ids)."""
    return json.dumps(rid)


class Connection:
    """A client: its socket, read buffer, outbox and its jobs (by ``job_key``)."""

    def __init__(self, sock: socket.socket, address: Any, number: int, max_line_bytes: int,
                 max_outbox_bytes: int, on_output: Callable[["Connection"], None]) -> None:
        self.sock, self.address, self.number = sock, address, number
        self.max_line_bytes, self.max_outbox_bytes = max_line_bytes, max_outbox_bytes
        self.jobs: dict[str, Any] = {}
        self.jobs_lock = threading.Lock()
        self.client_name: str | None = None
        self.closed = False
        self.overflowed = False
        self.wants_write = False
        self._rbuf = bytearray()
        self._skipping = False
        self._out = bytearray()
        self._out_lock = threading.Lock()
        self._on_output = on_output

    @property
    def owner(self) -> Hashable:
        """The key the job queue knows this client by."""
        return self.number

    # ------------------------------------------------------------------ input

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Append received bytes -> the complete lines (without newline) they finish."""
        if self._skipping:
            newline = data.find(b"\n")
            if newline < 0:
                return
            data, self._skipping = data[newline + 1:], False
        self._rbuf += data
        while True:
            newline = self._rbuf.find(b"\n")
            if newline < 0:
                if len(self._rbuf) > self.max_line_bytes:
                    self._too_large()
                    self._rbuf.clear()
                    self._skipping = True
                return
            line = bytes(self._rbuf[:newline])
            del self._rbuf[:newline + 1]
            if len(line) > self.max_line_bytes:
                self._too_large()
                continue
            line = line.rstrip(b"\r")
            if line.strip():
                yield line

    def _too_large(self) -> None:
        self.send(error_event(None, "too_large", f"request line longer than {self.max_line_bytes} bytes; the "
                              "line is discarded (one JSON object per line, at most that size)"))

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
