"""``run_batch``: a jobs CSV -> motion files + manifest, in this process or on a Ray cluster.

Steps: read and check the CSV (``jobs.read_jobs``); load the models once here
(the Engine of the server: its limits and model defaults resolve the rows'
empty fields, and its guidance check refuses settings the models cannot run);
drop the motions the manifest already holds (``manifest.Manifest.done``); group
the rest into the server's batches (``plan.plan``); run them, here one after
the other (``BatchConfig.ray`` None) or through ``ray_runner`` (the models here
are then freed); write each finished batch's files and manifest lines as it
arrives, with a progress bar over motions.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from server.engine import Engine
from server.protocol import Limits, ProtocolError

from .jobs import JobRow, JobsError, read_jobs, to_requests
from .manifest import Manifest, check_formats, write_motion
from .plan import DEFAULT_MAX_BATCH, WorkBatch, model_hash, motion_key, plan, row_motions, seconds_of


@dataclass
class BatchConfig:
    """How to run a batch.  ``ray``: None = in this process; "auto" = the running cluster
    (``ray start`` / RAY_ADDRESS); "local" = start a local Ray with ``workers`` CPUs; else an address
    (``HOST:PORT`` or ``ray://HOST:10001``).  An already initialised Ray (``ray.init`` done by the caller)
    is used as it is."""

    models: Path = Path("models/default")
    formats: tuple[str, ...] = ("npy",)
    max_batch: int = DEFAULT_MAX_BATCH
    device: str = "auto"
    threads: int | None = None          # torch threads of a local run (None: as realign serve, cores - 1 on CPU)
    generator: str = "mld"
    ray: str | None = None
    workers: int | None = None          # Ray actors (default: one per GPU, else one per CPU slot)
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0        # 1 = one worker per GPU
    retries: int = 3                    # re-runs of a batch whose worker died
    progress: bool = True
    worker_status: Path | None = None   # folder where Ray workers log batch start/done (host:pid) lines


@dataclass
class BatchSummary:
    """What a run did: motions in the file, skipped (done before), generated now; seconds of the run."""

    motions: int
    skipped: int
    generated: int
    batches: int
    seconds: float
    runner: str
    model_hash: str
    workers: list[str] = field(default_factory=list)

    @property
    def motions_per_s(self) -> float:
        return self.generated / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (f"{self.generated} motions generated in {self.batches} batches ({self.runner}), {self.skipped} "
                f"already done; {self.seconds:.1f} s, {self.motions_per_s:.2f} motions/s")


class ResultWriter:
    """Writes each finished batch: files, then manifest lines; advances the progress bar."""

    def __init__(self, out: Path, manifest: Manifest, rows: dict[int, JobRow], formats: tuple[str, ...],
                 model: dict[str, str], runner: str, total: int, progress: bool) -> None:
        from tqdm import tqdm

        self.out, self.manifest, self.rows, self.formats = out, manifest, rows, formats
        self.model, self.runner = model, runner
        self.bar = tqdm(total=total, unit="motion", desc=f"realign batch ({runner})", disable=not progress,
                        file=sys.stderr, dynamic_ncols=True)
        self.workers: set[str] = set()

    def write(self, work: WorkBatch, joints: list[np.ndarray], generate_s: float, worker: str) -> None:
        if len(joints) != len(work.motions):
            raise RuntimeError(f"batch {work.index}: {len(joints)} results for {len(work.motions)} motions")
        entries = []
        for motion, arr in zip(work.motions, joints):
            if arr.shape != (motion.frames, 22, 3):
                raise RuntimeError(f"batch {work.index}, {motion.name}: joints {arr.shape}, expected "
                                   f"({motion.frames}, 22, 3)")
            row = self.rows[motion.row]
            files = write_motion(self.out, motion.name, arr, self.formats)
            entries.append({
                "row": motion.row, "line": row.line, "name": motion.name, "sample": motion.sample,
                "prompt": motion.prompt, "frames": motion.frames, "seconds": seconds_of(motion.frames),
                "seed": motion.seed, "settings": work.sampling.as_dict(), "model": self.model,
                "armature": row.armature, "start_frame": row.start_frame, "files": files,
                "key": motion_key(motion, work.sampling, self.model["hash"]),
                "timing": {"batch": work.index, "batch_motions": len(work.motions),
                           "generate_s": round(generate_s, 4), "worker": worker, "runner": self.runner}})
        self.manifest.append(entries)
        self.workers.add(worker)
        self.bar.update(len(entries))

    def close(self) -> None:
        self.bar.close()


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def generate(engine: Engine, work: WorkBatch) -> tuple[list[np.ndarray], float]:
    """One sampling run of a work batch -> (joints (F_i, 22, 3) float32 per motion, seconds)."""
    start = time.perf_counter()
    joints = engine.generate([m.spec() for m in work.motions], work.sampling, lambda step, total: True)
    return joints, time.perf_counter() - start


def run_here(engine: Engine, batches: list[WorkBatch], writer: ResultWriter, threads: int | None) -> None:
    """The local runner: the batches one after the other in this process, with torch threads set as
    ``realign serve`` sets them (``configure_threads``: ``threads``, else all cores but one on the CPU)."""
    import torch

    from realign_core.device import configure_threads

    before = torch.get_num_threads()
    configure_threads(engine.device, threads)
    try:
        for work in batches:
            joints, took = generate(engine, work)
            writer.write(work, joints, took, worker_name())
    finally:
        torch.set_num_threads(before)


def check_settings(path: Path, rows: list[JobRow], requests: list, engine: Engine) -> None:
    """Refuse rows whose guidance the models cannot run (no reward model, no bank), naming the row."""
    for row, request in zip(rows, requests):
        try:
            engine.check(request.sampling)
        except ProtocolError as exc:
            column = (exc.field or "").removeprefix("guidance.") or None
            raise JobsError(path, exc.message.replace("field 'guidance.", "field '"), row.line, row.row,
                            column) from None


def run_batch(jobs_path: str | Path, out: str | Path, cfg: BatchConfig | None = None) -> BatchSummary:
    """Run every not-yet-done motion of a jobs CSV into ``out`` (see the module docstring)."""
    start = time.perf_counter()
    cfg = cfg or BatchConfig()
    jobs_path, out = Path(jobs_path), Path(out)
    formats = check_formats(cfg.formats)
    rows = read_jobs(jobs_path)
    if cfg.ray:
        from .ray_runner import import_ray

        import_ray()   # a missing Ray is said before any model loads
    if not Path(cfg.models).is_dir():
        raise FileNotFoundError(f"{cfg.models}: model folder not found (--models)")
    engine = Engine.load(cfg.models, "cpu" if cfg.ray else cfg.device, cfg.generator)
    requests = to_requests(jobs_path, rows, Limits().for_model(engine.max_frames, engine.max_steps), engine.defaults)
    check_settings(jobs_path, rows, requests, engine)
    mhash = model_hash(cfg.models, cfg.generator)
    manifest = Manifest(out)
    skip, total = set(), 0
    for row, request in zip(rows, requests):
        for motion in row_motions(row, request):
            total += 1
            if manifest.done(motion.name, motion_key(motion, request.sampling, mhash), formats):
                skip.add(motion.name)
    batches = plan(rows, requests, cfg.max_batch, skip)
    out.mkdir(parents=True, exist_ok=True)
    model = {"name": Path(cfg.models).resolve().name, "hash": mhash, "generator": cfg.generator}
    runner = "ray" if cfg.ray else "local"
    writer = ResultWriter(out, manifest, {r.row: r for r in rows}, formats, model, runner, total - len(skip),
                          cfg.progress)
    try:
        if cfg.ray:
            del engine   # the workers load their own
            from .ray_runner import run_on_ray

            run_on_ray(batches, cfg, mhash, writer)
        else:
            run_here(engine, batches, writer, cfg.threads)
    finally:
        writer.close()
    return BatchSummary(total, len(skip), total - len(skip), len(batches), time.perf_counter() - start, runner,
                        mhash, sorted(writer.workers))


def summary_dict(summary: BatchSummary) -> dict[str, Any]:
    return {"motions": summary.motions, "skipped": summary.skipped, "generated": summary.generated,
            "batches": summary.batches, "seconds": round(summary.seconds, 3), "runner": summary.runner,
            "motions_per_s": round(summary.motions_per_s, 4), "model_hash": summary.model_hash,
            "workers": summary.workers}
