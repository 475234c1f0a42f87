"""The worker thread: takes batches from the queue, runs them on the engine, streams events.

Per job of a batch it sends ``progress`` events (``step`` = steps done, 1-based,
``total``, ``eta_s`` = seconds of sampling left; at most one per
``progress_interval_s`` besides the first and the last step), then ``result``.
A job whose cancel was requested ends with the ``cancelled`` error at the next
step; the run itself stops (``denoise_loop``'s callback returns False) when no
job of the batch is left.  A failing run ends its jobs with ``bad_request``
(the pipeline refused the settings, ``ValueError``) or ``internal`` and the
worker goes on with the next batch.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Hashable

import numpy as np

from .engine import Engine
from .jobs import Job, JobQueue
from .protocol import error_event
from .results import motion_result
from .sysinfo import trim_heap

log = logging.getLogger("realign.server")


class BatchRun:
    """One sampling run: its jobs and the progress/cancel callback given to the pipeline."""

    def __init__(self, jobs: list[Job], progress_interval_s: float) -> None:
        self.jobs = jobs
        self.size = sum(j.size for j in jobs)
        self.started = time.monotonic()
        self.step, self.total = 0, jobs[0].request.sampling.steps
        self._interval, self._last_progress = progress_interval_s, 0.0

    def live(self) -> list[Job]:
        """Jobs still wanting their result; cancelled ones are ended here (after step ``self.step``)."""
        alive = []
        for job in self.jobs:
            if job.done:
                continue
            if job.cancel_requested:
                job.finish_cancelled(self.step, self.total)
                continue
            alive.append(job)
        return alive

    def callback(self, step_index: int, total: int) -> bool:
        """``denoise_loop``'s callback: False (stop) once every job of the batch has ended."""
        self.step, self.total = step_index + 1, total
        alive = self.live()
        if not alive:
            return False
        now = time.monotonic()
        if step_index == 0 or self.step == total or now - self._last_progress >= self._interval:
            self._last_progress = now
            eta = (now - self.started) / self.step * (total - self.step)
            for job in alive:
                job.emit({"event": "progress", "step": self.step, "total": total, "eta_s": round(eta, 3)})
        return True

    def describe(self, owner: Hashable | None) -> dict[str, Any]:
        """The ``current`` object of ``status``: sizes and progress; ids only of the asker's own jobs."""
        return {"jobs": len(self.jobs), "motions": self.size, "step": self.step, "total": self.total,
                "running_s": round(time.monotonic() - self.started, 3),
                "ids": [j.id for j in self.jobs if j.owner == owner and not j.done]}


class Worker(threading.Thread):
    """Runs the queue's batches one after another until the queue is closed."""

    def __init__(self, queue: JobQueue, engine: Engine, max_batch: int = 32, window_s: float = 0.02,
                 progress_interval_s: float = 0.1) -> None:
        super().__init__(name="realign-worker", daemon=True)
        self.queue, self.engine = queue, engine
        self.max_batch, self.window_s, self.progress_interval_s = max_batch, window_s, progress_interval_s
        self.batches = 0
        self.motions = 0
        self._current: BatchRun | None = None
        self._stop_reason: str | None = None

    def run(self) -> None:
        while True:
            batch = self.queue.take_batch(self.max_batch, self.window_s)
            if batch is None:
                return
            if batch:
                self._run_guarded(batch)

    def _run_guarded(self, jobs: list[Job]) -> None:
        """``run_batch``, and whatever goes wrong, end the batch's jobs and keep the worker alive."""
        try:
            self.run_batch(jobs)
        except Exception as exc:  # noqa: BLE001
            log.exception("worker error on jobs %s", [j.id for j in jobs])
            self._fail(jobs, "internal", f"internal server error ({type(exc).__name__})")

    def current(self, owner: Hashable | None = None) -> dict[str, Any] | None:
        run = self._current
        return None if run is None else run.describe(owner)

    def stop(self, reason: str) -> None:
        """Shutdown: the running batch (and any batch still being started) stops at its next step.
        Close the queue first, so that no further batch is taken."""
        self._stop_reason = reason
        run = self._current
        for job in run.jobs if run else ():
            job.request_cancel(reason)

    def run_batch(self, jobs: list[Job]) -> None:
        """Run one batch of compatible jobs and end each of them with its terminal event."""
        jobs = [j for j in jobs if j.mark_running()]
        if not jobs:
            return
        run = BatchRun(jobs, self.progress_interval_s)
        self._current = run
        if self._stop_reason is not None:  # ``stop`` ran while this batch was being taken
            for job in jobs:
                job.request_cancel(self._stop_reason)
        try:
            self._execute(run)
        finally:
            self._current = None
            self.batches += 1
            trim_heap()

    def _execute(self, run: BatchRun) -> None:
        from realign_core.diffusion.sampling import Cancelled

        sampling = run.jobs[0].request.sampling
        motions = [m for job in run.jobs for m in job.motions]
        extras: list = [{}] * len(motions)
        try:
            if run.jobs[0].request.controlled:   # such a job runs alone (jobs.Job.key)
                done = self.engine.generate_request(run.jobs[0].request, run.callback)
                joints, extras = [j for j, _ in done], [e for _, e in done]
            else:
                joints = self.engine.generate(motions, sampling, run.callback)
        except Cancelled:
            run.live()
            return
        except ValueError as exc:
            self._fail(run.jobs, "bad_request", f"the model refused these settings: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 -- one failed run must not stop the server
            log.exception("generation failed for jobs %s", [j.id for j in run.jobs])
            self._free_memory()
            self._fail(run.jobs, "internal", f"generation failed: {type(exc).__name__}: {exc}")
            return
        sampled = time.monotonic()
        self.motions += len(motions)
        self._deliver(run, joints, sampled, extras)

    def _deliver(self, run: BatchRun, joints: list, sampled: float, extras: list | None = None) -> None:
        """Send each remaining job its ``result`` (or ``cancelled`` if asked to stop after the last step)."""
        offset = 0
        for job in run.jobs:
            mine, offset = joints[offset:offset + job.size], offset + job.size
            if job.done:
                continue
            if job.cancel_requested:
                job.finish_cancelled(run.total, run.total)
                continue
            if not all(np.isfinite(j).all() for j in mine):
                self._fail([job], "internal", "the model produced non-finite joints for this request")
                continue
            more = (extras or [{}] * len(joints))[offset - job.size:offset]
            packed = [{**motion_result(j, m.prompt, m.seed, m.sample, m.prompt_index), **e}
                      for j, m, e in zip(mine, job.motions, more)]
            now = time.monotonic()
            timing = {"queued_s": round(job.started - job.submitted, 4), "run_s": round(sampled - run.started, 4),
                      "encode_s": round(now - sampled, 4), "total_s": round(now - job.submitted, 4),
                      "batch_size": run.size, "batch_jobs": len(run.jobs), "device": self.engine.device}
            job.finish({"event": "result", "motions": packed, "sampling": job.request.sampling.as_dict(),
                        "timing": timing}, "result")

    @staticmethod
    def _fail(jobs: list[Job], code: str, message: str) -> None:
        """End the jobs that have not ended yet with an error."""
        for job in jobs:
            event = error_event(None, code, message)
            event.pop("id")
            job.finish(event, "failed")

    def _free_memory(self) -> None:
        if self.engine.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
