"""The server: one ``selectors`` loop for all sockets, one worker thread for the models.

The loop (the thread that calls ``serve_forever``) accepts clients, reads and
validates their request lines, answers ``hello`` / ``ping`` / ``status`` /
``cancel`` at once and queues ``generate`` jobs; the :class:`~server.worker.Worker`
runs the jobs and streams their events back through each connection's outbox,
which the loop flushes.  Nothing a client sends can stop the loop: every line is
answered (an ``error`` at worst), and a client that disconnects has its jobs
cancelled.
"""
from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from . import PROTOCOL_VERSION, __version__, sysinfo
from .connection import READ_CHUNK, Connection, job_key
from .engine import Engine
from .jobs import Job, JobQueue
from .protocol import (
    Limits,
    ProtocolError,
    check_common,
    check_token,
    encode_event,
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


@dataclass
class ServerConfig:
    """How the server listens and batches; ``limits`` are narrowed to the model's at start."""

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    limits: Limits = field(default_factory=Limits)
    max_batch: int = 32                 # motions per sampling run
    batch_window_s: float = 0.02        # an idle worker waits this long for more jobs to batch
    progress_interval_s: float = 0.1
    max_outbox_bytes: int = 256 * 2 ** 20


class Server:
    """Serve one loaded ``Engine`` on one TCP address until ``shutdown``."""

    def __init__(self, engine: Engine, config: ServerConfig | None = None) -> None:
        config = config or ServerConfig()
        self.engine, self.config = engine, config
        self.limits = config.limits.for_model(engine.max_frames, engine.max_steps)
        self.queue = JobQueue(self.limits.max_queued_jobs, self.limits.max_jobs_per_client)
        self.worker = Worker(self.queue, engine, config.max_batch, config.batch_window_s,
                             config.progress_interval_s)
        self.selector = selectors.DefaultSelector()
        self.connections: dict[int, Connection] = {}
        self.stats: Counter[str] = Counter()
        self.started = time.time()
        self.listener: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._dirty: set[Connection] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._next_number = 0
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
                for key, mask in self.selector.select(timeout=1.0):
                    self._dispatch_io(key, mask)
                self._flush_dirty()
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

    def _close_all(self) -> None:
        for job in self.queue.close():
            job.request_cancel("the server is shutting down")
            job.finish_cancelled(None, None)
        self.worker.stop("the server is shutting down")
        self.worker.join(timeout=30)
        for conn in list(self.connections.values()):
            self._answer_pending(conn)
            self._drain(conn, timeout_s=1.0)
            self._close(conn, "server shutdown")
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
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: keep serving the others
                log.warning("accept failed: %s", exc)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if len(self.connections) >= self.limits.max_clients:
                self._refuse(sock)
                continue
            self._next_number += 1
            conn = Connection(sock, address, self._next_number, self.limits.max_line_bytes,
                              self.config.max_outbox_bytes, self._mark_dirty)
            self.connections[conn.number] = conn
            self.selector.register(sock, selectors.EVENT_READ, conn)
            log.info("client %d connected from %s", conn.number, address)

    def _refuse(self, sock: socket.socket) -> None:
        try:
            sock.send(encode_event(error_event(None, "busy", f"too many clients (at most "
                                                            f"{self.limits.max_clients}); retry later")))
        except OSError:
            pass
        sock.close()

    def _read(self, conn: Connection) -> None:
        try:
            data = conn.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close(conn, f"read error: {exc}")
            return
        if not data:
            self._close(conn, "disconnected")
            return
        for line in conn.feed(data):
            self.handle_line(conn, line)

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
            self._close(conn, f"more than {self.config.max_outbox_bytes} bytes of unread output")
            return
        try:
            more = conn.flush()
        except OSError as exc:
            self._close(conn, f"write error: {exc}")
            return
        if more != conn.wants_write:
            conn.wants_write = more
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if more else 0)
            self.selector.modify(conn.sock, events, conn)

    def _answer_pending(self, conn: Connection) -> None:
        """Shutdown: answer the lines a client sent before the loop stopped reading (a ``generate``
        gets ``busy``, "the server is shutting down"), so no request goes unanswered."""
        while not conn.closed:
            try:
                data = conn.sock.recv(READ_CHUNK)
            except OSError:  # nothing more to read (BlockingIOError) or the client is gone
                return
            if not data:
                return
            for line in conn.feed(data):
                self.handle_line(conn, line)

    def _drain(self, conn: Connection, timeout_s: float) -> None:
        """Best effort: write what is pending before closing (shutdown)."""
        deadline = time.monotonic() + timeout_s
        while not conn.closed and conn.pending() and time.monotonic() < deadline:
            try:
                if not conn.flush():
                    return
            except OSError:
                return
            time.sleep(0.01)

    def _close(self, conn: Connection, reason: str) -> None:
        """Forget a client and cancel its jobs (queued ones at once, the running one at its next step)."""
        if conn.closed:
            return
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.close()
        self.connections.pop(conn.number, None)
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
                   "device": self.engine.device, "model": self.engine.model_info(),
                   "limits": self.limits.as_dict(), "token_required": self.config.token is not None})

    def _op_ping(self, conn: Connection, rid: str | int, request: dict[str, Any]) -> None:
        conn.send({"id": rid, "event": "pong", "time": time.time()})

    def _op_status(self, conn: Connection, rid: str | int, request: dict[str, Any]) -> None:
        with conn.jobs_lock:
            mine = len(conn.jobs)
        conn.send({"id": rid, "event": "status", **self.queue.snapshot(),
                   "current": self.worker.current(conn.owner), "device": self.engine.device,
                   "memory": sysinfo.memory(self.engine.device), "threads": sysinfo.thread_counts(),
                   "open_fds": sysinfo.open_fds(), "clients": len(self.connections), "your_jobs": mine,
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
        job = Job(req, conn.owner, conn.send, lambda j, kind: self._job_done(conn, key, kind))
        with conn.jobs_lock:
            if key in conn.jobs:
                raise ProtocolError("bad_request", f"field 'id': a job with id {key} is still queued or running "
                                    "on this connection; use a new id", "id")
            active = len(conn.jobs)
            conn.jobs[key] = job
        try:
            self.queue.submit(job, active)
        except ProtocolError:
            with conn.jobs_lock:
                conn.jobs.pop(key, None)
            raise
        self._count("submitted")

    def _job_done(self, conn: Connection, key: str, kind: str) -> None:
        """A job ended (any thread): count it and free its id and quota slot."""
        with conn.jobs_lock:
            conn.jobs.pop(key, None)
        self._count(kind)

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def _counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.stats)
