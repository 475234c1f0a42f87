"""``realign bench --server --soak SECONDS``: a mixed load against one server for a fixed time.

First a *baseline* (SECONDS / 4, at least 5 s): ``--clients`` well-behaved generating clients, a
pinger and a prompt churner (32 fresh prompts per request).  Then the *mixed* phase (SECONDS): the
same clients plus the bad actors of :mod:`server.soak_actors` -- a hostile-line sender, 8 idle and 4
half-line sockets, a half-closer, a reading and a non-reading flooder, a canceller, a disconnector and
a connection churner.  Then every actor stops and the soak waits until the server is back to the
connections it had at the start (its own monitor, and any other) with an empty queue.

Printed: requests served, p50/p95 latency of the well-behaved clients (generate and ping) in the
baseline and the mixed phase, the server's RSS / threads / open files at the start, the peak and the
end, its text-cache occupancy, and the verdicts: results lost, cross-talk and ``internal`` errors,
which must all be 0 (the exit code is 1 otherwise).
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import soak_actors as actors
from .client import Client

MIB = 2 ** 20


@dataclass
class SoakReport:
    """The figures of one soak run (see ``format``)."""

    seconds: float
    baseline_s: float
    clients: int
    tally: actors.Tally
    start: dict[str, Any] = field(default_factory=dict)     # status events
    end: dict[str, Any] = field(default_factory=dict)
    peak_rss: int = 0
    rss_series: list[tuple[float, int]] = field(default_factory=list)
    settled_s: float = 0.0

    def problems(self, kind: str) -> list[str]:
        return self.tally.problems.get(kind, [])

    @property
    def ok(self) -> bool:
        return not any(self.problems(k) for k in ("lost", "crosstalk", "internal", "hostile"))

    def format(self) -> str:
        t, counts = self.tally, self.tally.counts
        served = self.end.get("counts", {})
        lines = [
            (f"soak: {self.seconds:g} s mixed load after a {self.baseline_s:g} s baseline; {self.clients} generating "
             f"clients (+ pinger, prompt churner)"),
            f"requests served: {_served(served, counts)}",
            f"  server counts: {dict(sorted(served.items()))}",
            "well-behaved latency      baseline p50 / p95        mixed p50 / p95",
            f"  generate             {_pct(t, 'generate/baseline', 's')}   {_pct(t, 'generate/mixed', 's')}",
            f"  ping                 {_pct(t, 'ping/baseline', 'ms')}   {_pct(t, 'ping/mixed', 'ms')}",
            (f"server RSS: start {_mib(self.start)} MiB, peak {self.peak_rss / MIB:.1f} MiB, end {_mib(self.end)} MiB; "
             f"RSS every ~10 s: {', '.join(f'{rss / MIB:.0f}' for _, rss in self.rss_series)}"),
            (f"threads (python/native): {_threads(self.start)} -> {_threads(self.end)}; open fds: "
             f"{self.start.get('open_fds')} -> {self.end.get('open_fds')}; clients {self.start.get('clients')} -> "
             f"{self.end.get('clients')} (settled {self.settled_s:.1f} s after the actors stopped)"),
            (f"text cache: {self.end.get('text_cache')} after {counts['churn_prompts'] + counts['generate_results']} "
             f"fresh prompts"),
            (f"bad actors: hostile lines answered {counts['hostile_lines']}, idle connections opened "
             f"{counts['idle_connections']} (closed by the server {counts['idle_closed_by_server']}), flood "
             f"{counts['flood_bytes_sent'] / MIB:.1f} MiB sent / {counts['flood_bytes_answered'] / MIB:.1f} MiB "
             f"answered, half-close results {counts['half_close_results']}, cancelled {counts['cancelled']} "
             f"(too late {counts['cancel_too_late']}), disconnects {counts['disconnects']}, churned connections "
             f"{counts['churn_connections']}, busy refusals {counts['busy']}"),
            (f"results lost: {len(self.problems('lost'))}; cross-talk: {len(self.problems('crosstalk'))}; internal "
             f"errors: {len(self.problems('internal'))}; bad hostile replies: {len(self.problems('hostile'))}"),
        ]
        for kind, found in sorted(t.problems.items()):
            lines += [f"  {kind}: {text}" for text in found[:3]]
        return "\n".join(lines)


def _served(served: dict[str, int], counts) -> str:
    errors = sum(v for k, v in served.items() if k.startswith("error_"))
    total = served.get("submitted", 0) + errors + counts["pings"] + counts["churn_connections"]
    return (f"{total} ({served.get('result', 0)} generate results, {served.get('cancelled', 0)} cancelled, "
            f"{errors} error answers, {counts['pings']} pings, {counts['churn_connections']} hellos of churned "
            f"connections; flood hellos not counted)")


def _pct(tally: actors.Tally, key: str, unit: str) -> str:
    values = sorted(tally.latencies.get(key, []))
    if not values:
        return "      n/a          "
    scale = 1000 if unit == "ms" else 1

    def q(p: float) -> float:
        return values[max(0, math.ceil(p / 100 * len(values)) - 1)] * scale

    return f"{q(50):7.2f} / {q(95):7.2f} {unit:2} (n={len(values):4})"


def _mib(status: dict[str, Any]) -> str:
    rss = status.get("memory", {}).get("rss_bytes")
    return f"{rss / MIB:.1f}" if rss else "?"


def _threads(status: dict[str, Any]) -> str:
    threads = status.get("threads", {})
    return f"{threads.get('python')}/{threads.get('native')}"


def _start(fn: Callable, *args: Any) -> threading.Thread:
    thread = threading.Thread(target=fn, args=args, daemon=True)
    thread.start()
    return thread


def run_soak(host: str, port: int, seconds: float, clients: int = 4, frames: int = 60, steps: int = 10,
             token: str | None = None, baseline_s: float | None = None,
             progress: Callable[[str], None] | None = None) -> SoakReport:
    """Run the baseline and the mixed phase against a listening server -> the report."""
    say = progress or (lambda text: None)
    target = actors.Target(host, port, token, frames, steps)
    baseline_s = max(5.0, seconds / 4) if baseline_s is None else baseline_s
    tally = actors.Tally()
    report = SoakReport(seconds, baseline_s, clients, tally)
    stop = threading.Event()
    with Client(host, port, token=token, timeout=600) as monitor:
        monitor.generate(actors.GOOD_PROMPT.format(n="warm-up"), frames=frames, steps=steps, seed=0)
        report.start = monitor.status()
        say(f"baseline: {clients} clients for {baseline_s:g} s")
        good = [_start(actors.good_client, target, stop, tally, i) for i in range(clients)]
        good += [_start(actors.pinger, target, stop, tally), _start(actors.prompt_churner, target, stop, tally)]
        _watch(monitor, report, baseline_s)
        tally.phase = "mixed"
        say(f"mixed: + bad actors for {seconds:g} s")
        bad = [_start(actors.hostile, target, stop, tally), _start(actors.idle_sockets, target, stop, tally, 8),
               _start(actors.idle_sockets, target, stop, tally, 4, True),
               _start(actors.half_closer, target, stop, tally), _start(actors.flooder, target, stop, tally, True),
               _start(actors.flooder, target, stop, tally, False), _start(actors.canceller, target, stop, tally),
               _start(actors.disconnector, target, stop, tally), _start(actors.connection_churn, target, stop, tally)]
        _watch(monitor, report, seconds)
        stop.set()
        say("stopping the actors")
        for thread in bad + good:
            thread.join(timeout=600)
        stopped = time.monotonic()
        report.end = _settled(monitor, report.start["clients"])
        report.settled_s = time.monotonic() - stopped
    return report


def _watch(monitor: Client, report: SoakReport, seconds: float) -> None:
    """Sample the server's RSS every ~10 s (peak every second) for ``seconds``."""
    end, next_sample = time.monotonic() + seconds, 0.0
    while (now := time.monotonic()) < end:
        rss = monitor.status()["memory"]["rss_bytes"] or 0
        report.peak_rss = max(report.peak_rss, rss)
        if now >= next_sample:
            report.rss_series.append((now, rss))
            next_sample = now + 10
        time.sleep(min(1.0, max(0.0, end - now)))


def _settled(monitor: Client, clients: int, timeout_s: float = 60.0) -> dict[str, Any]:
    """The server's status once it has ``clients`` connections again (the monitor and whoever was there
    before the soak) and nothing is queued or running."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = monitor.status()
        if (status["clients"] == clients and status["queue_length"] == 0 and status["current"] is None) \
                or time.monotonic() > deadline:
            return status
        time.sleep(0.2)
