"""``realign bench --server``: throughput and latency of the generation server under N clients.

(``--soak SECONDS`` runs :mod:`server.soak` instead: a mixed load with bad actors.)

N client threads, each on its own connection, start together and send M
``generate`` requests one after another (each waits for its result).  Reported:
requests per second over the whole run, p50/p95/max latency of one request
(send -> result), and the mean batch size the server reported (how much it
batched concurrent requests).  Without ``--connect`` a server is started on a
free port with ``--models`` and stopped afterwards.
"""
from __future__ import annotations

import argparse
import math
import threading
import time
from dataclasses import dataclass, field

from .client import Client, ServerError

DEFAULT_PROMPT = "a person walks forward and then turns around."


@dataclass
class BenchResult:
    """Measurements of one benchmark run."""

    clients: int
    requests: int
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def requests_per_s(self) -> float:
        return len(self.latencies_s) / self.wall_s if self.wall_s > 0 else 0.0

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the latencies (q in (0, 100])."""
        if not self.latencies_s:
            return math.nan
        ordered = sorted(self.latencies_s)
        return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]

    def format(self) -> str:
        mean_batch = sum(self.batch_sizes) / len(self.batch_sizes) if self.batch_sizes else math.nan
        return (f"clients {self.clients}, requests/client {self.requests}, done {len(self.latencies_s)}, "
                f"errors {len(self.errors)}\n"
                f"throughput {self.requests_per_s:.2f} requests/s over {self.wall_s:.2f} s\n"
                f"latency p50 {self.percentile(50) * 1000:.0f} ms, p95 {self.percentile(95) * 1000:.0f} ms, "
                f"max {max(self.latencies_s, default=math.nan) * 1000:.0f} ms\n"
                f"mean server batch size {mean_batch:.2f} motions")


def run_bench(host: str, port: int, clients: int = 8, requests: int = 4, prompt: str = DEFAULT_PROMPT,
              frames: int = 60, steps: int = 10, token: str | None = None, timeout_s: float = 600.0) -> BenchResult:
    """Run the benchmark against a listening server."""
    result = BenchResult(clients, requests)
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def one_client(index: int) -> None:
        try:
            with Client(host, port, token=token, timeout=timeout_s) as client:
                start.wait()
                for r in range(requests):
                    t0 = time.perf_counter()
                    res = client.generate(prompt, frames=frames, steps=steps, seed=index * requests + r)
                    with lock:
                        result.latencies_s.append(time.perf_counter() - t0)
                        result.batch_sizes.append(int(res["timing"]["batch_size"]))
        except (ServerError, OSError, threading.BrokenBarrierError) as exc:
            with lock:
                result.errors.append(f"client {index}: {exc}")
            start.abort()

    threads = [threading.Thread(target=one_client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    try:
        start.wait()
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    result.wall_s = time.perf_counter() - t0
    return result


def bench_command(args: argparse.Namespace) -> int:
    """Run ``realign bench --server`` (or, with ``--soak SECONDS``, the soak run) and print the figures."""
    soak = getattr(args, "soak", None)
    if args.clients < 1 or args.requests < 1 or (soak is not None and soak <= 0):
        print("realign bench: --clients and --requests must be >= 1, --soak > 0", flush=True)
        return 2
    process = None
    if args.connect:
        host, _, port = args.connect.rpartition(":")
        host, port = host or "127.0.0.1", int(port)
    else:
        from .cli import TOKEN_ENV
        from .launch import start_server

        # the token goes through the environment: on the command line every local user could read it
        env = {TOKEN_ENV: args.token} if args.token else None
        process = start_server(args.models, "--device", args.device, env=env)
        host, port = process.host, process.port
    try:
        if soak is not None:
            return _soak(host, port, args, process)
        result = run_bench(host, port, args.clients, args.requests, args.prompt, args.frames, args.steps, args.token)
    finally:
        if process is not None:
            process.stop()
    print(f"server {host}:{port}")
    print(result.format())
    for error in result.errors[:5]:
        print(f"error: {error}")
    return 1 if result.errors else 0


def _soak(host: str, port: int, args: argparse.Namespace, process) -> int:
    from .soak import run_soak

    where = f"{args.models} on {process.device}" if process is not None else "an external server"
    print(f"server {host}:{port} ({where}); soak {args.soak:g} s, {args.frames} frames, {args.steps} steps",
          flush=True)
    report = run_soak(host, port, args.soak, args.clients, args.frames, args.steps, args.token,
                      progress=lambda text: print(f"  {text}", flush=True))
    print(report.format(), flush=True)
    return 0 if report.ok else 1
