"""Rows -> work batches, grouped by the server's own queue, so a batch run batches exactly like the server.

Each row becomes a server ``Job`` (its ``GenerateRequest``: K motions with seeds
seed..seed+K-1) and goes into ``server.jobs.JobQueue`` with one queue "client" per
``Sampling.batch_key()``; ``JobQueue.take_batch(max_batch)`` then hands out the
server's batches: compatible jobs (same sampler, steps, cfg and guidance), oldest
first, up to ``max_batch`` motions.  A :class:`WorkBatch` is one such sampling run,
serialisable as JSON so that it can travel to a Ray worker and back.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from realign_core.models.layout import GENERATOR_PARTS, GUIDANCE_FILE, bank_path, checkpoint_path
from server.jobs import Job, JobQueue
from server.protocol import FPS, GenerateRequest, MotionSpec, Sampling

from .jobs import JobRow

DEFAULT_MAX_BATCH = 32   # the server's default --max-batch


@dataclass(frozen=True)
class Motion:
    """One motion to make: sample ``sample`` of row ``row``, written as ``name``.npy; frames at 20 fps."""

    row: int
    name: str
    prompt: str
    frames: int
    seed: int
    sample: int

    def spec(self) -> MotionSpec:
        return MotionSpec(self.prompt, self.frames, self.seed, 0, self.sample)


@dataclass(frozen=True)
class WorkBatch:
    """One sampling run of compatible motions (``index`` = its place in the plan)."""

    index: int
    sampling: Sampling
    motions: tuple[Motion, ...]

    def to_json(self) -> str:
        return json.dumps({"index": self.index, "sampling": asdict(self.sampling),
                           "motions": [asdict(m) for m in self.motions]})

    @classmethod
    def from_json(cls, text: str) -> WorkBatch:
        obj = json.loads(text)
        return cls(obj["index"], Sampling(**obj["sampling"]), tuple(Motion(**m) for m in obj["motions"]))


def motion_key(motion: Motion, sampling: Sampling, model_hash: str) -> str:
    """What a motion's result depends on (prompt, frames, seed, settings, model): the manifest's ``key``.
    A rerun reuses a finished motion only when its key is unchanged."""
    text = json.dumps([motion.prompt, motion.frames, motion.seed, list(sampling.batch_key()), model_hash])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def row_motions(row: JobRow, request: GenerateRequest) -> list[Motion]:
    """The motions of one row, named like ``JobRow.motion_names``."""
    return [Motion(row.row, name, spec.prompt, spec.frames, spec.seed, spec.sample)
            for name, spec in zip(row.motion_names(), request.motions)]


def plan(rows: list[JobRow], requests: list[GenerateRequest], max_batch: int = DEFAULT_MAX_BATCH,
         skip: set[str] = frozenset()) -> list[WorkBatch]:
    """Group the rows' motions into the server's batches; motions named in ``skip`` (done) are left out."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    todo: dict[int, tuple[GenerateRequest, list[Motion]]] = {}
    for row, request in zip(rows, requests):
        motions = [m for m in row_motions(row, request) if m.name not in skip]
        if motions:
            todo[row.row] = (request, motions)
    queue = JobQueue(max_jobs=len(todo) + 1, max_jobs_per_client=len(todo) + 1)
    for request, _ in todo.values():
        queue.submit(Job(request, request.sampling.batch_key(), _ignore))
    batches: list[WorkBatch] = []
    while True:
        jobs = queue.take_batch(max_batch, timeout=0)
        if not jobs:
            return batches
        motions = tuple(m for job in jobs for m in todo[job.id][1])
        batches.append(WorkBatch(len(batches), jobs[0].request.sampling, motions))


def _ignore(event: dict[str, Any]) -> None:
    """Jobs of a plan have nobody to send events to."""


def seconds_of(frames: int) -> float:
    return frames / FPS


def model_files(models: str | Path, generator: str = "mld") -> list[Path]:
    """The files a pipeline loads from a model root (generator parts, reward model, bank, calibration)."""
    root = Path(models)
    files = [checkpoint_path(root, kind) for kind in GENERATOR_PARTS[generator]]
    files += [checkpoint_path(root, "reward"), bank_path(root, "reward"), root / GUIDANCE_FILE]
    return [f for f in files if f.is_file()]


def model_hash(models: str | Path, generator: str = "mld") -> str:
    """sha256 (first 16 hex digits) over the names and bytes of ``model_files``: which models made a motion."""
    digest = hashlib.sha256()
    root = Path(models)
    for path in model_files(root, generator):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]
