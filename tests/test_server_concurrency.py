"""Many clients at once: batching equal to solo runs, cancel and disconnect mid-job, the benchmark."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from server.client import ServerError, decode_joints
from server.launch import REPO_ROOT
from tests.server_fixtures import FAST_STEPS, first_progress, long_job, server_client, tiny_server, wait_until  # noqa: F401

VERBS = ["walks forward", "runs in a circle", "jumps twice", "waves with the right hand", "turns left",
         "sits down", "kicks with the left leg", "walks backwards", "crouches", "dances"]


def queue_length(client) -> int:
    return client.status()["queue_length"]


def test_concurrent_clients_are_batched_and_match_solo_runs(tiny_server):
    """10 clients queue compatible jobs behind a long one; they run as one batch, equal to solo runs."""
    n = len(VERBS)
    specs = [dict(prompt=f"a person {verb}.", frames=20 + 9 * i, seed=1000 + i, steps=FAST_STEPS)
             for i, verb in enumerate(VERBS)]
    clients = [tiny_server.client(timeout=120) for _ in range(n + 1)]
    try:
        blocker = long_job(clients[n])
        first_progress(blocker)
        jobs: list = [None] * n
        barrier = threading.Barrier(n)

        def submit(i: int) -> None:
            barrier.wait()
            jobs[i] = clients[i].submit(**specs[i])

        threads = [threading.Thread(target=submit, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait_until(lambda: queue_length(clients[n]) == n)
        assert clients[n].cancel(blocker.id)["found"] is True
        with pytest.raises(ServerError, match="cancelled"):
            blocker.wait(60)
        batched = [job.wait(120) for job in jobs]
        assert {(r["timing"]["batch_size"], r["timing"]["batch_jobs"]) for r in batched} == {(n, n)}
        for spec, res in zip(specs, batched):
            solo = clients[0].generate(**spec)
            assert solo["timing"]["batch_size"] == 1
            a, b = decode_joints(res["motions"][0]["joints"]), decode_joints(solo["motions"][0]["joints"])
            assert a.shape == (spec["frames"], 22, 3)
            assert np.abs(a - b).max() < 1e-4, f"batched and solo runs differ by {np.abs(a - b).max()} m"
    finally:
        for c in clients:
            c.close()


def test_round_robin_between_clients(tiny_server):
    """Client A queues 3 mutually incompatible jobs, then B one: the run order is a0, b, a1, a2."""
    with tiny_server.client() as blocker_client, tiny_server.client() as a, tiny_server.client() as b:
        blocker = long_job(blocker_client)
        first_progress(blocker)
        jobs = {f"a{i}": a.submit("a person walks.", frames=30, steps=FAST_STEPS + i, seed=i) for i in range(3)}
        wait_until(lambda: queue_length(a) == 3)
        jobs["b"] = b.submit("a person runs.", frames=30, steps=FAST_STEPS + 3, seed=9)
        wait_until(lambda: queue_length(a) == 4)
        blocker.cancel()
        arrived: dict[str, float] = {}

        def wait_for(name: str) -> None:
            jobs[name].wait(120)
            arrived[name] = time.monotonic()

        threads = [threading.Thread(target=wait_for, args=(name,)) for name in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(arrived, key=arrived.get) == ["a0", "b", "a1", "a2"]
        assert all(job.result["timing"]["batch_jobs"] == 1 for job in jobs.values())


def test_cancel_mid_job_and_queued_job(server_client):
    running = long_job(server_client)
    first_progress(running)
    queued = server_client.submit("a person walks.", frames=30, steps=FAST_STEPS)
    first = next(queued.iter_events(30))
    assert first["event"] == "accepted" and first["position"] == 0
    assert queued.cancel()["found"] is True
    with pytest.raises(ServerError) as err:
        queued.wait(30)
    assert err.value.code == "cancelled" and err.value.event["step"] is None
    assert running.cancel()["found"] is True
    with pytest.raises(ServerError) as err:
        running.wait(30)
    event = err.value.event
    assert err.value.code == "cancelled" and 1 <= event["step"] < event["total"] == 1000
    wait_until(lambda: server_client.status()["current"] is None)
    assert server_client.generate("a person walks.", frames=30, steps=FAST_STEPS)["event"] == "result"


def test_disconnect_mid_job_cancels_its_jobs(tiny_server, server_client):
    before = server_client.status()["counts"].get("cancelled", 0)
    leaving = tiny_server.client()
    job = long_job(leaving)
    first_progress(job)
    leaving.submit("a person walks.", frames=30, steps=FAST_STEPS)
    wait_until(lambda: server_client.status()["queue_length"] == 1)
    leaving.close()
    status = wait_until(lambda: (s := server_client.status())["current"] is None
                        and s["counts"].get("cancelled", 0) == before + 2 and s)
    assert status["queue_length"] == 0
    result = server_client.generate("a person walks.", frames=30, steps=FAST_STEPS)
    assert result["timing"]["batch_jobs"] == 1


def test_bench_command_reports_throughput_and_latency(tiny_server):
    res = subprocess.run([sys.executable, "-m", "realign_core.cli", "bench", "--server", "--connect",
                          f"{tiny_server.host}:{tiny_server.port}", "--clients", "3", "--requests", "2", "--steps", "3",
                          "--frames", "30"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "requests/s" in res.stdout and "p50" in res.stdout and "p95" in res.stdout
    assert "done 6, errors 0" in res.stdout
