"""Who gets a connection slot: socket options, idle eviction, and ``busy`` refusals that arrive.

* :func:`configure_socket` -- non-blocking, no Nagle, TCP keepalive (and on
  Linux a user timeout), so that a peer that vanished without a FIN is found.
* :func:`pick_idle` -- when every slot is taken, the connection idle the
  longest (no job, no unsent output, no traffic for at least ``min_idle_s``)
  gives its slot to the newcomer.
* :class:`Refusals` -- a refused client gets its ``busy`` line, then the
  server shuts its write side and reads (and discards) what the client still
  sends until it closes, ``linger_s`` passes or it sent ``MAX_DRAIN_BYTES``
  (a flooder).  Closing at once instead would make the kernel answer the
  client's unread bytes with a reset, which can destroy the ``busy`` line
  before the client reads it.
"""
from __future__ import annotations

import selectors
import socket
import time
from typing import Iterable

from .connection import Connection
from .protocol import encode_event, error_event

KEEPALIVE_IDLE_S = 30      # first probe after this long without traffic
KEEPALIVE_INTERVAL_S = 10
KEEPALIVE_PROBES = 3
USER_TIMEOUT_S = 120       # Linux: unacknowledged output for this long ends the connection
DRAIN_CHUNK = 64 * 1024
MAX_DRAIN_BYTES = 64 * 1024   # what a refused client may still send before it is closed anyway


def configure_socket(sock: socket.socket) -> None:
    """Non-blocking, TCP_NODELAY and keepalive (idle 30 s, 3 probes 10 s apart) where the OS has them."""
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", KEEPALIVE_IDLE_S), ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
                        ("TCP_KEEPCNT", KEEPALIVE_PROBES), ("TCP_USER_TIMEOUT", USER_TIMEOUT_S * 1000)):
        option = getattr(socket, name, None)
        if option is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
            except OSError:
                pass


def pick_idle(connections: Iterable[Connection], now: float, min_idle_s: float) -> Connection | None:
    """The connection idle the longest, if it has been idle at least ``min_idle_s``; else None."""
    best, best_idle = None, min_idle_s
    for conn in connections:
        idle = conn.idle_for(now)
        if idle is not None and idle >= best_idle:
            best, best_idle = conn, idle
    return best


class Refused:
    """A refused socket that is being drained until the client closes it (selector data)."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock, self.deadline, self.drained = sock, deadline, 0


class Refusals:
    """Refused sockets between their ``busy`` line and their close; at most ``max_lingering`` at once."""

    def __init__(self, selector: selectors.BaseSelector, linger_s: float = 2.0, max_lingering: int = 64) -> None:
        self.selector, self.linger_s, self.max_lingering = selector, linger_s, max_lingering
        self._lingering: list[Refused] = []

    def __len__(self) -> int:
        return len(self._lingering)

    def refuse(self, sock: socket.socket, message: str) -> None:
        """Send ``busy`` with ``message``, shut the write side, and drain the socket until it closes."""
        try:
            sock.send(encode_event(error_event(None, "busy", message)))
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        if len(self._lingering) >= self.max_lingering:
            self._finish(self._lingering[0])
        entry = Refused(sock, time.monotonic() + self.linger_s)
        self._lingering.append(entry)
        self.selector.register(sock, selectors.EVENT_READ, entry)

    def on_readable(self, entry: Refused) -> None:
        """Discard what the refused client sent; close once it has closed its side."""
        try:
            data = entry.sock.recv(DRAIN_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        entry.drained += len(data)
        if not data or entry.drained > MAX_DRAIN_BYTES:
            self._finish(entry)

    def expire(self, now: float) -> None:
        """Close the refused sockets whose linger time is over."""
        for entry in [e for e in self._lingering if e.deadline <= now]:
            self._finish(entry)

    def close_all(self) -> None:
        for entry in list(self._lingering):
            self._finish(entry)

    def _finish(self, entry: Refused) -> None:
        try:
            self.selector.unregister(entry.sock)
        except (KeyError, ValueError):
            pass
        try:
            entry.sock.recv(DRAIN_CHUNK)      # what is read now cannot turn into a reset
        except OSError:
            pass
        entry.sock.close()
        self._lingering.remove(entry)
