"""The batch's work batches on a Ray cluster: Ray Data ``map_batches`` over an actor pool.

Why Ray Data and not Ray Serve: a batch run is offline, finite work with known
inputs, which is what Ray Data's streaming executor is for -- it keeps a fixed
pool of actors busy, restarts an actor whose process dies and re-runs its task
(``max_restarts``, ``max_task_retries``), and streams results back to the driver
as they finish.  Serve would add HTTP routing, replicas that outlive the run and
its own request batching (``@serve.batch``), none of which a file-to-files batch
needs; and the batching here must be the server's (``plan.plan``), not Serve's.

Each dataset row is one ``WorkBatch`` (JSON), in its own block, so one actor
call = one sampling run of compatible motions, exactly the batch a local run
makes (hence the same results for the same seeds).  An actor
(:class:`GenerationWorker`) loads the models once, with ``cpus_per_worker``
torch threads (or a GPU with ``gpus_per_worker`` = 1), and returns the joints
(float32 bytes) with its host:pid and the seconds of the run; the driver writes
the files and the manifest (``runner.ResultWriter``), so workers need the model
folder but no shared output folder.

``ray`` is imported here only, when a run asks for it: the rest of the package
works without it installed (``pip install .[ray]`` adds it).
"""
from __future__ import annotations

import json
import os
import socket
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .plan import WorkBatch, model_hash

if TYPE_CHECKING:
    from .runner import BatchConfig, ResultWriter

RAY_MISSING = "--ray needs Ray: pip install 'realign[ray]' (ray[data]==2.60.0), or run without --ray"


def import_ray():
    """``ray``, or a clear error when it is not installed."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise RuntimeError(f"{RAY_MISSING} ({exc})") from None
    return ray


class GenerationWorker:
    """A Ray Data actor: the models loaded once; each call runs the work batches it is given."""

    def __init__(self, models: str, device: str, generator: str, threads: int, expected_hash: str,
                 status_dir: str | None) -> None:
        import torch

        from server.engine import Engine

        torch.set_num_threads(max(1, threads))
        self.where = f"{socket.gethostname()}:{os.getpid()}"
        self.status = Path(status_dir) / f"{socket.gethostname()}-{os.getpid()}.jsonl" if status_dir else None
        self._log("loading", None)
        # a wrong model folder is reported by the first call (an error there ends the run; one raised here
        # would only make Ray restart the actor again and again)
        found = model_hash(models, generator) if Path(models).is_dir() else "missing"
        self.problem = None if found == expected_hash else (
            f"worker {self.where}: the models at {models} have hash {found}, the driver's {expected_hash}; every "
            f"node needs the same model folder at the same path")
        self.engine = Engine.load(models, device, generator) if self.problem is None else None
        self._log("ready", None)

    def _log(self, event: str, batch: int | None) -> None:
        """One status line (event, batch, pid, time) when a status folder was given."""
        if self.status is None:
            return
        self.status.parent.mkdir(parents=True, exist_ok=True)
        with self.status.open("a") as fh:
            fh.write(json.dumps({"event": event, "batch": batch, "pid": os.getpid(), "worker": self.where,
                                 "time": time.time()}) + "\n")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from .runner import generate

        if self.problem is not None:
            raise RuntimeError(self.problem)
        works, infos, payloads = [], [], []
        for text in batch["work"]:
            work = WorkBatch.from_json(str(text))
            self._log("start", work.index)
            joints, took = generate(self.engine, work)
            self._log("done", work.index)
            works.append(str(text))
            infos.append(json.dumps({"worker": self.where, "generate_s": took,
                                     "frames": [int(j.shape[0]) for j in joints]}))
            payloads.append(b"".join(np.ascontiguousarray(j, dtype="<f4").tobytes() for j in joints))
        return {"work": np.array(works, dtype=object), "info": np.array(infos, dtype=object),
                "joints": np.array(payloads, dtype=object)}


def unpack(info: dict[str, Any], payload: bytes) -> list[np.ndarray]:
    """The joints of one result: float32 bytes, (F_i, 22, 3) per motion one after the other."""
    flat = np.frombuffer(payload, dtype="<f4")
    out, at = [], 0
    for frames in info["frames"]:
        size = frames * 22 * 3
        out.append(flat[at:at + size].reshape(frames, 22, 3).copy())
        at += size
    if at != flat.size:
        raise RuntimeError(f"result holds {flat.size} floats, the frames say {at}")
    return out


def connect(ray, cfg: BatchConfig) -> None:
    """Join or start Ray as ``cfg.ray`` says (nothing when the caller already did ``ray.init``)."""
    if ray.is_initialized():
        return
    if cfg.ray == "local":
        ray.init(num_cpus=int(cfg.workers or os.cpu_count() or 1), include_dashboard=False,
                 log_to_driver=False)
    else:
        ray.init(address=cfg.ray, log_to_driver=False)


def pool_size(ray, cfg: BatchConfig, batches: int) -> int:
    """Actors: ``cfg.workers``, else one per GPU (gpus_per_worker > 0) or per CPU slot; never more than batches."""
    if cfg.workers:
        size = cfg.workers
    else:
        resources = ray.cluster_resources()
        if cfg.gpus_per_worker > 0:
            size = int(resources.get("GPU", 0) // cfg.gpus_per_worker)
        else:
            size = int(resources.get("CPU", 1) // cfg.cpus_per_worker)
    return max(1, min(size, batches))


def run_on_ray(batches: list[WorkBatch], cfg: BatchConfig, expected_hash: str, writer: ResultWriter) -> None:
    """Run ``batches`` on an actor pool and hand each result to ``writer`` as it arrives."""
    if not batches:
        return
    ray = import_ray()
    connect(ray, cfg)
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False   # ours (tqdm over motions) is enough
    size = pool_size(ray, cfg, len(batches))
    device = "cuda" if cfg.gpus_per_worker > 0 else ("cpu" if cfg.device == "auto" else cfg.device)
    ds = ray.data.from_items([{"work": w.to_json()} for w in batches], override_num_blocks=len(batches))
    with warnings.catch_warnings():   # max_restarts / max_task_retries have no named parameter in Ray 2.60
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        ds = _map(ds, cfg, size, device, expected_hash)
    by_index = {w.index: w for w in batches}
    try:
        for row in ds.iter_rows():
            work = by_index[WorkBatch.from_json(str(row["work"])).index]
            info = json.loads(str(row["info"]))
            writer.write(work, unpack(info, bytes(row["joints"])), info["generate_s"], info["worker"])
    except ray.exceptions.RayError as exc:
        raise RuntimeError(f"the Ray run failed ({type(exc).__name__}): {_first_line(exc)}; the motions written "
                           f"so far are kept, rerun the command to resume") from exc


def _first_line(exc: BaseException) -> str:
    """The cause of a Ray error without its remote traceback: the worker's own error message when it has one
    (``RuntimeError: ...`` in the traceback), else the last line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    ours = [line.split("RuntimeError: ", 1)[1] for line in lines if "RuntimeError: " in line]
    return ours[-1] if ours else (lines[-1] if lines else type(exc).__name__)


def _map(ds, cfg: BatchConfig, size: int, device: str, expected_hash: str):
    """The dataset through the actor pool: one call = one work batch; a dead actor restarts, its batch reruns."""
    from ray.data import ActorPoolStrategy

    return ds.map_batches(
        GenerationWorker, batch_size=1, batch_format="numpy",
        fn_constructor_kwargs={"models": str(Path(cfg.models).resolve()), "device": device,
                               "generator": cfg.generator, "threads": max(1, int(cfg.cpus_per_worker)),
                               "expected_hash": expected_hash,
                               "status_dir": str(cfg.worker_status) if cfg.worker_status else None},
        compute=ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=1),
        num_cpus=cfg.cpus_per_worker, num_gpus=cfg.gpus_per_worker or None,
        max_restarts=-1, max_task_retries=cfg.retries)
