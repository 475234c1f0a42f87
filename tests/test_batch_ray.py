"""``realign batch --ray`` on a real local Ray (2 CPUs) with the tiny trained models: same results as the local
run, resume, and a worker process killed mid-batch whose batch is retried on its restarted actor."""
from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest

from realign_core.batch import BatchConfig, read_manifest, run_batch

ray = pytest.importorskip("ray", reason="ray is not installed: pip install '.[ray]' (build.py setup installs it)")

TOLERANCE_M = 1e-5   # local (2 torch threads) vs Ray workers (1 thread each): measured up to ~1e-6 m


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance with 2 CPUs for this module."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def write_jobs(path, rows: int, steps: int, seconds: float) -> None:
    lines = ["prompt,seconds,seed,steps,name"]
    prompts = ("a person walks forward", "a person jumps", "a person waves", "a person turns around")
    lines += [f"{prompts[i % 4]},{seconds},{10 + i},{steps},m{i}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")


def assert_same_motions(a, b) -> float:
    worst = 0.0
    for entry in read_manifest(a):
        x, y = np.load(a / entry["files"]["npy"]), np.load(b / entry["files"]["npy"])
        worst = max(worst, float(np.abs(x - y).max()))
    assert worst <= TOLERANCE_M
    return worst


def test_ray_run_matches_the_local_run_and_resumes(tiny_generator, local_ray, tmp_path):
    models, jobs = tiny_generator[0], tmp_path / "jobs.csv"
    write_jobs(jobs, rows=6, steps=10, seconds=2)
    local = run_batch(jobs, tmp_path / "local", BatchConfig(models=models, max_batch=2, progress=False))
    cfg = BatchConfig(models=models, max_batch=2, ray="auto", progress=False)   # one worker per CPU slot: 2
    summary = run_batch(jobs, tmp_path / "ray", cfg)
    assert (summary.generated, summary.batches, summary.runner) == (6, 3, "ray")
    # at most one worker per CPU slot, none of them this process; Ray does not promise that both slots get a
    # batch (a worker that finishes first may take the third before the other starts)
    assert 1 <= len(summary.workers) <= 2 and all(w.split(":")[1] != str(os.getpid()) for w in summary.workers)
    entries = read_manifest(tmp_path / "ray")
    assert [e["name"] for e in entries] == [f"m{i}" for i in range(6)]
    assert {e["model"]["hash"] for e in entries} == {local.model_hash}
    assert_same_motions(tmp_path / "local", tmp_path / "ray")
    (tmp_path / "ray" / "m4.npy").unlink()
    again = run_batch(jobs, tmp_path / "ray", cfg)
    assert (again.generated, again.skipped, again.batches) == (1, 5, 1)


def kill_first_running_batch(status_dir, found: dict, stop: threading.Event) -> None:
    """Watch the workers' status lines; SIGKILL the first worker seen starting a batch it has not finished."""
    while not stop.is_set():
        events = []
        for path in status_dir.glob("*.jsonl") if status_dir.is_dir() else []:
            events += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        done = {(e["pid"], e["batch"]) for e in events if e["event"] == "done"}
        running = [e for e in events if e["event"] == "start" and (e["pid"], e["batch"]) not in done]
        if running:
            found.update(pid=running[0]["pid"], batch=running[0]["batch"])
            os.kill(running[0]["pid"], signal.SIGKILL)
            return
        time.sleep(0.02)


def test_a_killed_worker_s_batch_is_retried_and_the_run_completes(tiny_generator, local_ray, tmp_path):
    models, jobs, status = tiny_generator[0], tmp_path / "jobs.csv", tmp_path / "status"
    write_jobs(jobs, rows=4, steps=300, seconds=6)   # batches of a few seconds: time to kill one mid-run
    found, stop = {}, threading.Event()
    killer = threading.Thread(target=kill_first_running_batch, args=(status, found, stop), daemon=True)
    killer.start()
    cfg = BatchConfig(models=models, max_batch=1, ray="auto", workers=2, retries=2, progress=False,
                      worker_status=status)
    try:
        summary = run_batch(jobs, tmp_path / "ray", cfg)
    finally:
        stop.set()
        killer.join(5)
    assert found, "no worker was seen running a batch"
    assert summary.generated == 4
    events = [json.loads(line) for p in status.glob("*.jsonl") for line in p.read_text().splitlines()]
    killed = [e for e in events if e["pid"] == found["pid"]]
    assert not any(e["event"] == "done" and e["batch"] == found["batch"] for e in killed)
    redone = [e for e in events if e["event"] == "done" and e["batch"] == found["batch"]]
    assert len(redone) == 1 and redone[0]["pid"] != found["pid"]
    entries = {e["timing"]["batch"]: e for e in read_manifest(tmp_path / "ray")}
    assert sorted(entries) == [0, 1, 2, 3] and entries[found["batch"]]["timing"]["worker"] == redone[0]["worker"]
    local = run_batch(jobs, tmp_path / "local", BatchConfig(models=models, max_batch=1, progress=False))
    assert local.generated == 4
    assert_same_motions(tmp_path / "local", tmp_path / "ray")


def test_a_worker_with_other_models_ends_the_run_with_a_clear_error(tiny_generator, local_ray, tmp_path):
    """Workers compare the model hash with the driver's; a mismatch fails the run (no endless actor restarts)."""
    from realign_core.batch.jobs import read_jobs, to_requests
    from realign_core.batch.manifest import Manifest
    from realign_core.batch.plan import plan
    from realign_core.batch.ray_runner import run_on_ray
    from realign_core.batch.runner import ResultWriter
    from server.protocol import Defaults, Limits

    jobs = tmp_path / "jobs.csv"
    write_jobs(jobs, rows=1, steps=5, seconds=1)
    rows = read_jobs(jobs)
    batches = plan(rows, to_requests(jobs, rows, Limits(), Defaults(strength=0.0)))
    writer = ResultWriter(tmp_path, Manifest(tmp_path), {r.row: r for r in rows}, ("npy",), {"hash": "x"}, "ray",
                          1, False)
    cfg = BatchConfig(models=tiny_generator[0], ray="auto", workers=1, progress=False)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="driver's 0000000000000000; every node needs the same model folder"):
        run_on_ray(batches, cfg, "0000000000000000", writer)
    assert time.monotonic() - start < 120 and not (tmp_path / "manifest.jsonl").exists()
