"""The server: one ``selectors`` loop for all sockets, one worker thread for the models.

The loop (the thread that calls ``serve_forever``) accepts clients, reads and
validates their request lines, answers ``hello`` / ``ping`` / ``status`` /
``cancel`` at once and queues ``generate`` jobs; the :class:`~server.worker.Worker`
runs the jobs and streams their events back through each connection's outbox,
which the loop flushes.  Nothing a client sends can stop the loop: every line is
answered (an ``error`` at worst).

Each loop turn: wait for socket events (not at all while a client has lines
waiting that it may have answered now), read from the readable clients, answer
up to ``lines_per_turn`` waiting lines of each client in turn (within its
lines-per-second budget), flush the outboxes, and every ``TICK_S`` close idle
connections and finish half-closed ones.  A client is read from only while it
has no complete line waiting and its unsent output is below the back-pressure
mark, so a flooder or a client that never reads only fills its own TCP buffers.

A client that shuts its write side (``shutdown(SHUT_WR)``, ``nc -N``) still gets
every answer; its connection is closed once its jobs ended and its output is
sent.  The server cannot tell that from a client that closed the whole socket
(both send a FIN), so when a client with open jobs or waiting lines shuts its
side, it is sent one ``eof`` event (id null): a client that is gone answers
that write with a reset, which the next tick sees (``SO_ERROR``), and its jobs
are cancelled.
"""
from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from . import PROTOCOL_VERSION, __version__, sysinfo
from .admission import Refusals, Refused, configure_socket, pick_idle
from .connection import READ_CHUNK, Connection, ConnectionPolicy, job_key
from .engine import Engine
from .jobs import Job, JobQueue
from .protocol import (
    Limits,
    ProtocolError,
    check_common,
    check_token,
    error_event,
    error_from,
    parse_cancel,
    parse_generate,
    parse_hello,
    parse_line,
    request_id,
)
from .worker import Worker

log = logging.getLogger("realign.server")
TICK_S = 0.1                 # how often idle and half-closed connections are checked
ACCEPT_PAUSE_S = 0.1         # after accept() failed (e.g. no file descriptors left)
SHUTDOWN_LINES = 256         # lines per client still answered at shutdown


@dataclass
class ServerConfig:
    """How the server listens, batches and bounds its clients; ``limits`` are narrowed to the model's at start."""

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    limits: Limits = field(default_factory=Limits)
    policy: ConnectionPolicy = field(default_factory=ConnectionPolicy)
    max_batch: int = 32                 # motions per sampling run
    batch_window_s: float = 0.02        # an idle worker waits this long for more jobs to batch
    progress_interval_s: float = 0.1
    idle_timeout_s: float = 60.0        # close connections without job or traffic this long (0 = never)
    evict_idle_s: float = 5.0           # when full, a connection idle this long gives its slot to a newcomer
    drain_timeout_s: float = 2.0        # shutdown: at most this long to send pending output, all clients at once
    refuse_linger_s: float = 2.0        # a refused client has this long to read its `busy` line


class Server:
    """Serve one loaded ``Engine`` on one TCP address until ``shutdown``."""

    def __init__(self, engine: Engine, config: ServerConfig | None = None) -> None:
        config = config or ServerConfig()
        self.engine, self.config = engine, config
        self.limits = config.limits.for_model(engine.max_frames, engine.max_steps)
        self.policy = replace(config.policy, max_line_bytes=self.limits.max_line_bytes)
        self.queue = JobQueue(self.limits.max_queued_jobs, self.limits.max_jobs_per_client)
        self.worker = Worker(self.queue, engine, config.max_batch, config.batch_window_s,
                             config.progress_interval_s)
        self.selector = selectors.DefaultSelector()
        self.refusals = Refusals(self.selector, config.refuse_linger_s)
        self.connections: dict[int, Connection] = {}
        self.stats: Counter[str] = Counter()
        self.started = time.time()
        self.listener: socket.socket | None = None
        self._model_info = engine.model_info()
        self._limits_info = {**self.limits.as_dict(), **self.policy.as_dict(),
                             "idle_timeout_s": config.idle_timeout_s}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._dirty: set[Connection] = set()
        self._ready: dict[Connection, None] = {}     # clients with lines waiting, in serving order
        self._half_closed: set[Connection] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._next_number = 0
        self._next_tick = 0.0
        self._accept_paused_until: float | None = None
        self._loop_thread: int | None = None

    # ------------------------------------------------------------------ lifecycle

    def bind(self) -> tuple[str, int]:
        """Open the listening socket -> the actual (host, port) (port 0 picks a free one)."""
        family = socket.getaddrinfo(self.config.host, self.config.port, type=socket.SOCK_STREAM)[0][0]
        self.listener = socket.create_server((self.config.host, self.config.port), family=family, backlog=128)
        self.listener.setblocking(False)
        address = self.listener.getsockname()
        return address[0], address[1]

    def serve_forever(self) -> None:
        """Run the socket loop until ``shutdown`` (call ``bind`` first)."""
        if self.listener is None:
            self.bind()
        self.selector.register(self.listener, selectors.EVENT_READ, "listener")
        self.selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._loop_thread = threading.get_ident()
        self.worker.start()
        try:
            while not self._stopping.is_set():
                for key, mask in self.selector.select(timeout=self._wait_s()):
                    self._dispatch_io(key, mask)
                self._serve_lines()
                self._flush_dirty()
                self._tick()
        finally:
            self._close_all()

    def shutdown(self) -> None:
        """Stop the loop (thread-safe and safe in a signal handler)."""
        self._stopping.set()
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # buffer full (a wake-up is pending anyway) or closed
            pass

    def _wait_s(self) -> float:
        """How long ``select`` may wait: 0 while a waiting line may be answered now, else until the
        next token refill or tick."""
        wait = max(0.0, self._next_tick - time.monotonic())
        for conn in self._ready:
            if not conn.backlogged():
                wait = min(wait, conn.refill_in())
        return wait

    def _close_all(self) -> None:
        """Shutdown: cancel the jobs, answer what clients already sent, then send pending output to all
        clients at once for at most ``drain_timeout_s`` and close."""
        for job in self.queue.close():
            job.request_cancel("the server is shutting down")
            job.finish_cancelled(None, None)
        self.worker.stop("the server is shutting down")
        self.worker.join(timeout=30)
        log.info("shutdown: worker stopped; answering and draining %d client(s)", len(self.connections))
        deadline = time.monotonic() + self.config.drain_timeout_s
        for conn in list(self.connections.values()):
            self._answer_pending(conn)
        self._drain_all(deadline)
        for conn in list(self.connections.values()):
            self._close(conn, "server shutdown")
        self.refusals.close_all()
        log.info("shutdown: all connections closed")
        for sock in (self.listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self.selector.close()

    # ------------------------------------------------------------------ socket events

    def _dispatch_io(self, key: selectors.SelectorKey, mask: int) -> None:
        if key.data == "listener":
            self._accept()
        elif key.data == "wake":
            try:
                while self._wake_r.recv(4096):
                    pass
            except (BlockingIOError, InterruptedError):
                pass
        elif isinstance(key.data, Refused):
            self.refusals.on_readable(key.data)
        else:
            conn: Connection = key.data
            if mask & selectors.EVENT_READ:
                self._read(conn)
            if mask & selectors.EVENT_WRITE and not conn.closed:
                self._flush(conn)

    def _accept(self) -> None:
        while True:
            try:
                sock, address = self.listener.accept()
                configure_socket(sock)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: pause accepting, keep serving the others
                log.warning("accept failed: %s", exc)
                self._pause_accepting()
                return
            if len(self.connections) >= self.limits.max_clients and not self._evict_idle():
                self._count("refused_busy")
                self.refusals.refuse(sock, f"too many clients (at most {self.limits.max_clients}); retry later")
                continue
            self._next_number += 1
            conn = Connection(sock, address, self._next_number, self.policy, self._mark_dirty)
            self.connections[conn.number] = conn
            self._update_events(conn)
            log.info("client %d connected from %s", conn.number, address)

    def _evict_idle(self) -> bool:
        """Every slot is taken: close the connection idle the longest (if idle long enough) -> whether one was."""
        conn = pick_idle(self.connections.values(), time.monotonic(), self.config.evict_idle_s)
        if conn is None:
            return False
        self._count("evicted_idle")
        self._close_idle(conn, "every connection slot is taken and this connection is the one idle the longest")
        return True

    def _pause_accepting(self) -> None:
        if self._accept_paused_until is None:
            self.selector.unregister(self.listener)
        self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE_S

    def _read(self, conn: Connection) -> None:
        try:
            data = conn.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close(conn, f"read error: {exc}")
            return
        if data:
            conn.feed(data)
        else:
            conn.feed_eof()
            self._half_closed.add(conn)
            if conn.open_streams > 0 or conn.has_line():   # still work to answer: is the client there?
                conn.send({"id": None, "event": "eof", "open_jobs": conn.open_streams,
                           "message": "end of your requests; the server answers what is open, then closes"})
        if conn.has_line():
            self._ready[conn] = None
        self._update_events(conn)
        if conn.read_closed:
            self._finish_half_closed(conn)

    def _serve_lines(self) -> None:
        """Answer waiting lines: each client in turn, at most its budget (per turn, per second)."""
        now = time.monotonic()
        for conn in list(self._ready):
            if conn.closed or not conn.has_line():
                self._ready.pop(conn, None)
                if not conn.closed:
                    self._update_events(conn)
                continue
            if conn.backlogged():
                continue
            budget, answered = conn.take_budget(now), 0
            while answered < budget and not conn.closed and not conn.backlogged():
                line = conn.next_line()
                if line is None:
                    break
                self.handle_line(conn, line)
                answered += 1
            conn.spend(answered)
            if conn.closed:
                continue
            if answered:
                conn.touch()
            self._ready.pop(conn, None)
            if conn.has_line():
                self._ready[conn] = None        # to the back: the others go first next turn
            self._update_events(conn)

    def _update_events(self, conn: Connection) -> None:
        """Watch for reads only while no line waits and output is below the mark; for writes while output is left."""
        if conn.closed:
            return
        want = 0
        if not conn.read_closed and not conn.has_line() and not conn.backlogged():
            want |= selectors.EVENT_READ
        if conn.wants_write:
            want |= selectors.EVENT_WRITE
        if want == conn.events:
            return
        if conn.events == 0:
            self.selector.register(conn.sock, want, conn)
        elif want == 0:
            self.selector.unregister(conn.sock)
        else:
            self.selector.modify(conn.sock, want, conn)
        conn.events = want

    def _mark_dirty(self, conn: Connection) -> None:
        with self._lock:
            self._dirty.add(conn)
        if threading.get_ident() != self._loop_thread:  # the loop flushes after each round anyway
            self._wake()

    def _flush_dirty(self) -> None:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        for conn in dirty:
            if not conn.closed:
                self._flush(conn)

    def _flush(self, conn: Connection) -> None:
        if conn.overflowed:
            self._close(conn, f"more than {self.policy.max_outbox_bytes} bytes of unread output")
            return
        try:
            conn.wants_write = conn.flush()
        except OSError as exc:
            self._close(conn, f"write error: {exc}")
            return
        self._update_events(conn)
        if conn.read_closed:
            self._finish_half_closed(conn)

    def _tick(self) -> None:
        """Every ``TICK_S``: expire refusals, resume accepting, finish half-closed and close idle connections."""
        now = time.monotonic()
        if now < self._next_tick:
            return
        self._next_tick = now + TICK_S
        self.refusals.expire(now)
        if self._accept_paused_until is not None and now >= self._accept_paused_until:
            self._accept_paused_until = None
            self.selector.register(self.listener, selectors.EVENT_READ, "listener")
        for conn in list(self._half_closed):
            self._finish_half_closed(conn)
        timeout = self.config.idle_timeout_s
        if timeout > 0:
            for conn in list(self.connections.values()):
                idle = conn.idle_for(now)
                if idle is not None and idle >= timeout:
                    self._count("closed_idle")
                    self._close_idle(conn, f"no request and no job for {timeout:g} s")

    def _finish_half_closed(self, conn: Connection) -> None:
        """Close a client that shut its write side once everything it asked for is answered and sent,
        or at once when its socket shows an error (a client that closed it answers our writes with a reset)."""
        if conn.closed:
            return
        if not conn.has_line() and conn.open_streams <= 0 and not conn.pending():
            self._close(conn, "disconnected")
            return
        try:
            error = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError as exc:
            error = exc.errno or -1
        if error:
            self._close(conn, f"disconnected (socket error {error})")

    def _close_idle(self, conn: Connection, why: str) -> None:
        """Tell the client why (one ``idle_timeout`` error), then close."""
        conn.send(error_event(None, "idle_timeout", f"the server closes this connection: {why}; reconnect "
                                                    "to send more requests"))
        try:
            conn.flush()
        except OSError:
            pass
        self._close(conn, f"idle ({why})")

    def _answer_pending(self, conn: Connection) -> None:
        """Shutdown: answer the lines a client sent before the loop stopped reading (a ``generate``
        gets ``busy``, "the server is shutting down"), at most ``SHUTDOWN_LINES`` of them, and none to a
        client that is not reading its answers (above the back-pressure mark)."""
        answered = 0
        while not conn.closed and answered < SHUTDOWN_LINES and not conn.backlogged():
            line = conn.next_line()
            if line is not None:
                self.handle_line(conn, line)
                answered += 1
                continue
            if conn.read_closed:
                return
            try:
                data = conn.sock.recv(READ_CHUNK)
            except OSError:  # nothing more to read (BlockingIOError) or the client is gone
                return
            if not data:
                conn.feed_eof()
            else:
                conn.feed(data)

    def _drain_all(self, deadline: float) -> None:
        """Send pending output to every client at once until all is sent or ``deadline`` passes."""
        with selectors.DefaultSelector() as writers:
            for conn in self.connections.values():
                try:
                    if not conn.closed and conn.flush():
                        writers.register(conn.sock, selectors.EVENT_WRITE, conn)
                except OSError:
                    pass
            while writers.get_map() and (left := deadline - time.monotonic()) > 0:
                for key, _ in writers.select(left):
                    try:
                        more = key.data.flush()
                    except OSError:
                        more = False
                    if not more:
                        writers.unregister(key.fileobj)

    def _close(self, conn: Connection, reason: str) -> None:
        """Forget a client and cancel its jobs (queued ones at once, the running one at its next step)."""
        if conn.closed:
            return
        if conn.events:
            try:
                self.selector.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        conn.close()
        self.connections.pop(conn.number, None)
        self._ready.pop(conn, None)
        self._half_closed.discard(conn)
        for job in self.queue.remove_owner(conn.owner):
            job.request_cancel("the client disconnected")
            job.finish_cancelled(None, None)
        with conn.jobs_lock:
            running = list(conn.jobs.values())
        for job in running:
            job.request_cancel("the client disconnected")
        log.info("client %d closed (%s); %d job(s) cancelled", conn.number, reason, len(running))

    # ------------------------------------------------------------------ requests

    def handle_line(self, conn: Connection, line: bytes) -> None:
        """Answer one request line; never raises."""
        rid = None
        try:
            request = parse_line(line)
            rid = request_id(request, self.limits)
            check_token(request, self.config.token)
            rid, op = check_common(request, self.limits)
            getattr(self, f"_op_{op}")(conn, rid, request)
        except ProtocolError as exc:
            self._count(f"error_{exc.code}")
            conn.send(error_from(rid, exc))
        except Exception as exc:  # noqa: BLE001 -- a bug must cost one request, not the server
            log.exception("internal error on a request of client %d", conn.number)
            self._count("error_internal")
            conn.send(error_event(rid, "internal", f"internal server error ({type(exc).__name__})"))

    def _op_hello(self, conn: Connection, rid: str | int, request: dict[str, Any]) -> None:
        conn.client_name = parse_hello(request, self.limits) or conn.client_name
        conn.send({"id": rid, "event": "hello", "protocol": PROTOCOL_VERSION, "server_version": __version__,
                   "device": self.engine.device, "model": self._model_info,
                   "limits": self._limits_info, "token_required": self.config.token is not None})

    def _op_ping(self, conn: Connection, rid: str | int, request: dict[str, Any]) -> None:
        conn.send({"id": rid, "event": "pong", "time": time.time()})

    def _op_status(self, conn: Connection, rid: str | int, request: dict[str, Any]) -> None:
        with conn.jobs_lock:
            mine = len(conn.jobs)
        conn.send({"id": rid, "event": "status", **self.queue.snapshot(),
                   "current": self.worker.current(conn.owner), "device": self.engine.device,
                   "memory": sysinfo.memory(self.engine.device), "threads": sysinfo.thread_counts(),
                   "open_fds": sysinfo.open_fds(), "clients": len(self.connections), "your_jobs": mine,
                   "unsent_bytes": sum(c.pending() for c in self.connections.values()),
                   "text_cache": self.engine.cache_stats(),
                   "uptime_s": round(time.time() - self.started, 3), "batches": self.worker.batches,
                   "motions": self.worker.motions, "counts": self._counts()})

    def _op_cancel(self, conn: Connection, rid: str | int, request: dict[str, Any]) -> None:
        target = parse_cancel(request, self.limits)
        with conn.jobs_lock:
            job = conn.jobs.get(job_key(target))
        conn.send({"id": rid, "event": "cancel", "target": target, "found": job is not None})
        if job is None:
            return
        job.request_cancel("cancelled by the client")
        if self.queue.remove(job):
            job.finish_cancelled(None, None)

    def _op_generate(self, conn: Connection, rid: str | int, request: dict[str, Any]) -> None:
        req = parse_generate(request, self.limits, self.engine.defaults)
        self.engine.check(req.sampling)
        key = job_key(rid)
        job = Job(req, conn.owner, conn.send_job_event, lambda j, kind: self._job_done(conn, key, kind))
        with conn.jobs_lock:
            if key in conn.jobs:
                raise ProtocolError("bad_request", f"field 'id': a job with id {key} is still queued or running "
                                    "on this connection; use a new id", "id")
            active = len(conn.jobs)
            conn.jobs[key] = job
            conn.open_streams += 1
        try:
            self.queue.submit(job, active)
        except ProtocolError:
            with conn.jobs_lock:
                conn.jobs.pop(key, None)
                conn.open_streams -= 1
            raise
        self._count("submitted")

    def _job_done(self, conn: Connection, key: str, kind: str) -> None:
        """A job ended (any thread): count it and free its id and quota slot."""
        with conn.jobs_lock:
            conn.jobs.pop(key, None)
        conn.touch()
        self._count(kind)

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def _counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.stats)
