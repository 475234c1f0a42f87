"""Generation jobs and the fair queue that batches them.

* :class:`Job` -- one ``generate`` request of one client: its motions, its state
  (queued -> running -> done) and the function that streams its events.  A job
  ends with exactly one terminal event (``result`` or ``error``), whoever gets
  there first (the worker, a ``cancel``, a disconnect or a shutdown).
* :class:`JobQueue` -- one FIFO per client, served round-robin.  ``take_batch``
  starts from the next client's oldest job and then, going round the clients
  again and again, adds each one's oldest job while it is *compatible* (same
  ``Sampling.batch_key``: sampler, steps, cfg and guidance) and fits in the
  batch.  A client's own jobs therefore always start in the order it sent them,
  and a client with many jobs cannot starve the others.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Any, Callable, Hashable

from .protocol import GenerateRequest, ProtocolError, error_event

Emit = Callable[[dict[str, Any]], None]
OnDone = Callable[["Job", str], None]
TERMINAL_KINDS = ("result", "cancelled", "failed")


class Job:
    """A generate request in the server: ``owner`` is the client it belongs to."""

    def __init__(self, request: GenerateRequest, owner: Hashable, emit: Emit, on_done: OnDone | None = None) -> None:
        self.request, self.owner = request, owner
        self.id = request.id
        self.motions = request.motions
        # a request with control fields or a sequence runs alone (its own key): its constraints are its own
        self.key = ("controlled", id(self)) if request.controlled else request.sampling.batch_key()
        self.submitted = time.monotonic()
        self.started: float | None = None
        self.state = "queued"
        self.cancel_reason: str | None = None
        self._emit, self._on_done = emit, on_done
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """Motions this job adds to a sampling run."""
        return len(self.motions)

    @property
    def done(self) -> bool:
        return self.state == "done"

    def emit(self, event: dict[str, Any]) -> None:
        """Send a non-terminal event (dropped once the job is done)."""
        with self._lock:
            if self.state != "done":
                self._emit({"id": self.id, **event})

    def finish(self, event: dict[str, Any], kind: str) -> bool:
        """Send the terminal event; False (and nothing sent) if the job had already ended."""
        assert kind in TERMINAL_KINDS
        with self._lock:
            if self.state == "done":
                return False
            self.state = "done"   # from here on ``emit`` drops progress events
        if self._on_done is not None:  # before the event goes out: its id is free once the client sees it
            self._on_done(self, kind)
        self._emit({"id": self.id, **event})
        return True

    def request_cancel(self, reason: str) -> None:
        """Ask the worker to stop this job at its next step."""
        with self._lock:
            if self.cancel_reason is None:
                self.cancel_reason = reason

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_reason is not None

    def mark_running(self) -> bool:
        """queued -> running; False if the job ended or was cancelled meanwhile (then it is finished here)."""
        with self._lock:
            if self.state == "done":
                return False
            if self.cancel_reason is None:
                self.state, self.started = "running", time.monotonic()
                return True
        self.finish_cancelled(None, None)
        return False

    def finish_cancelled(self, step: int | None, total: int | None) -> bool:
        """End with the ``cancelled`` error, saying after which step it stopped."""
        where = "before it started" if step is None else f"after step {step} of {total}"
        event = error_event(None, "cancelled", f"generation cancelled ({self.cancel_reason or 'cancel'}) {where}")
        event.update(step=step, total=total)
        event.pop("id")
        return self.finish(event, "cancelled")


class QueueFull(ProtocolError):
    """The queue (or this client's share of it) is full: the ``busy`` error."""

    def __init__(self, message: str) -> None:
        super().__init__("busy", message)


class JobQueue:
    """Per-client FIFOs served round-robin; thread-safe; ``take_batch`` blocks until work or ``close``."""

    def __init__(self, max_jobs: int = 64, max_jobs_per_client: int = 16) -> None:
        self.max_jobs, self.max_jobs_per_client = max_jobs, max_jobs_per_client
        self._clients: OrderedDict[Hashable, deque[Job]] = OrderedDict()  # in serving order
        self._cond = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._clients.values())

    def submit(self, job: Job, client_active: int = 0) -> int:
        """Queue a job -> its estimated position (jobs that start before it).

        ``client_active``: this client's jobs already queued or running (its quota).
        Raises ``QueueFull`` when the queue or the client's quota is full.
        """
        with self._cond:
            if self._closed:
                raise QueueFull("the server is shutting down")
            total = sum(len(q) for q in self._clients.values())
            if total >= self.max_jobs:
                raise QueueFull(f"the queue is full ({self.max_jobs} jobs); retry later")
            if client_active >= self.max_jobs_per_client:
                raise QueueFull(f"this client already has {client_active} jobs queued or running; at most "
                                f"{self.max_jobs_per_client}")
            mine = self._clients.setdefault(job.owner, deque())
            mine.append(job)
            position = self._position(job.owner, len(mine) - 1)
            # sent under the lock, so that it reaches the client before any event of the worker
            job.emit({"event": "accepted", "position": position, "queue_length": total + 1, "motions": job.size})
            self._cond.notify_all()
            return position

    def _position(self, owner: Hashable, ahead_own: int) -> int:
        """Round-robin estimate: clients served before ``owner`` run up to ahead_own + 1 jobs first,
        those after it up to ahead_own (lock held)."""
        order = list(self._clients.items())
        index = [client for client, _ in order].index(owner)
        before = sum(min(len(q), ahead_own + 1) for _, q in order[:index])
        after = sum(min(len(q), ahead_own) for _, q in order[index + 1:])
        return ahead_own + before + after

    def remove(self, job: Job) -> bool:
        """Take a still-queued job out; False if the worker already took it."""
        with self._cond:
            q = self._clients.get(job.owner)
            if q is None or job not in q:
                return False
            q.remove(job)
            if not q:
                del self._clients[job.owner]
            return True

    def remove_owner(self, owner: Hashable) -> list[Job]:
        """Take all of a client's queued jobs out (it disconnected)."""
        with self._cond:
            return list(self._clients.pop(owner, ()))

    def close(self) -> list[Job]:
        """Stop: wake the worker, refuse new jobs, and return the jobs still queued."""
        with self._cond:
            self._closed = True
            left = [j for q in self._clients.values() for j in q]
            self._clients.clear()
            self._cond.notify_all()
            return left

    def take_batch(self, max_motions: int, window_s: float = 0.0, timeout: float | None = None) -> list[Job] | None:
        """Block until a job is queued -> a batch of compatible jobs; None once closed.

        window_s: after the first job is there, wait this long for more to batch with it.
        timeout: return [] after this long without work.
        """
        with self._cond:
            idle = not self._clients
            if not self._cond.wait_for(lambda: self._closed or self._clients, timeout):
                return []
            if idle and window_s > 0 and not self._closed:
                deadline = time.monotonic() + window_s
                while not self._closed and time.monotonic() < deadline:
                    self._cond.wait(deadline - time.monotonic())
            if self._closed:
                return None
            return self._select(max_motions) if self._clients else []

    def _select(self, max_motions: int) -> list[Job]:
        """Round-robin batch starting at the client first in serving order (lock held)."""
        first_owner = next(iter(self._clients))
        head = self._clients[first_owner].popleft()
        batch, size, served = [head], head.size, [first_owner]
        progress = True
        while progress:
            progress = False
            order = list(self._clients)
            start = order.index(first_owner) + 1 if first_owner in self._clients else 0
            for owner in order[start:] + order[:start]:
                q = self._clients[owner]
                if q and q[0].key == head.key and size + q[0].size <= max_motions:
                    job = q.popleft()
                    batch.append(job)
                    size += job.size
                    progress = True
                    if owner not in served:
                        served.append(owner)
        self._rotate(served)
        return batch

    def _rotate(self, served: list[Hashable]) -> None:
        """Served clients go to the back (in the order they were served); empty queues are dropped."""
        for owner in served:
            if owner in self._clients:
                q = self._clients.pop(owner)
                if q:
                    self._clients[owner] = q

    def snapshot(self) -> dict[str, Any]:
        """Queue length and the number of clients waiting."""
        with self._cond:
            return {"queue_length": sum(len(q) for q in self._clients.values()),
                    "waiting_clients": sum(1 for q in self._clients.values() if q)}
