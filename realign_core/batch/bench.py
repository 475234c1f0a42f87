"""``realign batch --bench ROWS``: motions/s of the same rows run locally and on Ray, and whether they agree.

Writes ``OUT/bench_jobs.csv`` (ROWS rows cycling through ``PROMPTS``, 4 s,
seeds 0..ROWS-1, guidance off, ``steps`` DDIM steps), runs it into ``OUT/local``
(this process, the server's batches and threads: all cores but one), ``OUT/local_all_cores`` (the
same with a torch thread per core) and into ``OUT/ray`` (a local Ray with
``workers`` CPU slots, one actor each with one torch thread, unless ``--ray``
names a cluster), both from scratch, and reports per run: wall seconds
(everything: model loading, Ray start, actor start), motions/s over that, and
motions/s of sampling alone (motions / the busiest worker's summed batch
seconds); for Ray also each actor's start-up (process start to models loaded,
from the ``--worker-status`` lines in ``OUT/ray_status``); plus the largest
joint difference between the two runs (metres), the load average and the CPU
count.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .manifest import read_manifest
from .runner import BatchConfig, run_batch, summary_dict

PROMPTS = ("a person walks forward", "a person jumps in place", "a person waves with the right hand",
           "a person runs in a circle", "a person sits down", "a person kicks with the left leg",
           "a person turns around", "a person walks backwards")
SECONDS = 4.0


def write_bench_jobs(path: Path, rows: int, steps: int) -> Path:
    """The bench's jobs CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "seconds", "seed", "strength", "steps", "name"])
        for i in range(rows):
            w.writerow([PROMPTS[i % len(PROMPTS)], SECONDS, i, 0, steps, f"m{i:05d}"])
    return path


def sampling_rate(out: Path) -> float:
    """Motions / the busiest worker's summed batch seconds (each batch counted once)."""
    busy: dict[str, float] = defaultdict(float)
    seen = set()
    entries = read_manifest(out)
    for e in entries:
        t = e["timing"]
        if (t["worker"], t["batch"]) not in seen:
            seen.add((t["worker"], t["batch"]))
            busy[t["worker"]] += t["generate_s"]
    return len(entries) / max(busy.values()) if busy else 0.0


def actor_start_seconds(status: Path) -> list[float]:
    """Per Ray actor, seconds from its start to models loaded (its ``loading`` and ``ready`` status lines)."""
    found = []
    for path in sorted(status.glob("*.jsonl")):
        times = {e["event"]: e["time"] for e in map(json.loads, path.read_text().splitlines())}
        if "loading" in times and "ready" in times:
            found.append(round(times["ready"] - times["loading"], 2))
    return found


def max_difference(a: Path, b: Path) -> float:
    """Largest |joint difference| (m) between the same-named motions of two runs."""
    worst = 0.0
    for entry in read_manifest(a):
        x, y = np.load(a / entry["files"]["npy"]), np.load(b / entry["files"]["npy"])
        worst = max(worst, float(np.abs(x - y).max()))
    return worst


def run_bench(rows: int, out: Path, cfg: BatchConfig, workers: int = 2, steps: int = 50) -> dict[str, Any]:
    """Run the bench (see the module docstring) -> its numbers."""
    if rows < 1:
        raise ValueError(f"--bench takes a number of rows >= 1, got {rows}")
    jobs = write_bench_jobs(out / "bench_jobs.csv", rows, steps)
    result: dict[str, Any] = {"rows": rows, "steps": steps, "seconds_per_motion": SECONDS, "workers": workers,
                              "cpu_count": os.cpu_count(), "platform": platform.platform(),
                              "loadavg_before": [round(x, 2) for x in os.getloadavg()],
                              "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    status = out / "ray_status"
    runs = {"local": replace(cfg, ray=None), "local_all_cores": replace(cfg, ray=None, threads=os.cpu_count()),
            "ray": replace(cfg, ray=cfg.ray or "local", workers=workers, worker_status=status)}
    for name, run_cfg in runs.items():
        target = out / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.rmtree(status, ignore_errors=True)
        summary = run_batch(jobs, target, run_cfg)
        result[name] = {**summary_dict(summary), "sampling_motions_per_s": round(sampling_rate(target), 4)}
    result["ray"]["actor_start_s"] = actor_start_seconds(status)
    result["max_abs_difference_m"] = max_difference(out / "local", out / "ray")
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def format_bench(r: dict[str, Any]) -> str:
    """The bench as a few lines of text."""
    lines = [(f"{r['rows']} rows x {r['seconds_per_motion']:g} s, {r['steps']} steps, guidance off; "
              f"{r['cpu_count']} CPUs; load average before {r['loadavg_before']}, after {r['loadavg_after']}")]
    for name in ("local", "local_all_cores", "ray"):
        x = r[name]
        lines.append(f"{name:15s}: {x['generated']} motions in {x['batches']} batches, {x['seconds']:.1f} s wall = "
                     f"{x['motions_per_s']:.2f} motions/s; sampling alone {x['sampling_motions_per_s']:.2f} "
                     f"motions/s; workers {len(x['workers'])}"
                     + (f"; actor start-up {x['actor_start_s']} s" if "actor_start_s" in x else ""))
    lines.append(f"largest joint difference local vs ray: {r['max_abs_difference_m']:.3g} m")
    return "\n".join(lines)
