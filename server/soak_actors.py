"""The actors of the soak run (:mod:`server.soak`): well-behaved clients and bad ones, one thread each.

Each actor loops until ``stop`` is set and records what it saw in the shared :class:`Tally`:

* well-behaved: ``good_client`` (generate with a fresh prompt, check the result is its own),
  ``pinger`` (ping every 0.1 s), ``prompt_churner`` (32 fresh prompts per request: fills the text caches);
* bad: ``hostile`` (malformed lines; every one must get a coded error, never ``internal``),
  ``idle_sockets`` (connect and send nothing, or half a line), ``half_closer`` (generate, then
  ``shutdown(SHUT_WR)``: the result must still come), ``flooder`` (hello lines as fast as TCP takes
  them; reading the answers or never reading them), ``canceller``, ``disconnector`` and
  ``connection_churn`` (connect, hello, close).

A job of a client that stays connected must end with exactly one ``result`` or ``cancelled`` error;
anything else (a ``disconnected`` or ``timeout`` client error) is a *lost* result.  A result whose
prompt or seed is not what that connection asked for, or an event with an id the connection never
used, is *cross-talk*.
"""
from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from .client import Client, ServerError
from .protocol import ERROR_CODES

GOOD_PROMPT = "a person walks forward and turns to the left, take {n}."


@dataclass
class Tally:
    """What the actors saw; ``phase`` ("baseline" / "mixed") tags the latencies."""

    phase: str = "baseline"
    latencies: dict[str, list[float]] = field(default_factory=dict)   # "generate/mixed" -> seconds
    counts: Counter = field(default_factory=Counter)
    problems: dict[str, list[str]] = field(default_factory=dict)      # "lost" / "crosstalk" / "internal" / ...
    lock: threading.Lock = field(default_factory=threading.Lock)

    def latency(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.latencies.setdefault(f"{kind}/{self.phase}", []).append(seconds)

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counts[name] += n

    def problem(self, kind: str, text: str) -> None:
        with self.lock:
            self.problems.setdefault(kind, []).append(text[:300])


@dataclass(frozen=True)
class Target:
    """Where and how the actors connect, and the generate settings of the well-behaved clients."""

    host: str
    port: int
    token: str | None = None
    frames: int = 60
    steps: int = 10

    def line(self, request: dict[str, Any]) -> bytes:
        if self.token is not None:
            request = {**request, "token": self.token}
        return json.dumps(request).encode() + b"\n"

    def connect(self, timeout_s: float = 10.0) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=timeout_s)


def _check_unrouted(client: Client, tally: Tally, who: str) -> None:
    """Events the client could not route: an id it never used is cross-talk (id null is fine)."""
    while not client.unrouted.empty():
        event = client.unrouted.get_nowait()
        if event.get("id") is not None:
            tally.problem("crosstalk", f"{who}: event for an id it never used: {event}")


def _check_result(result: dict, prompts: list[str], seed: int, tally: Tally, who: str) -> None:
    got = [(m["prompt"], m["seed"]) for m in result["motions"]]
    if got != [(p, seed) for p in prompts]:
        tally.problem("crosstalk", f"{who}: asked {prompts[:2]} seed {seed}, got {got[:2]}")


def _ended_badly(exc: ServerError, tally: Tally, who: str) -> None:
    """A job of a connected client ended without result: busy is a refusal, the rest is a lost result."""
    if exc.code == "busy":
        tally.count("busy")
    elif exc.code == "internal":
        tally.problem("internal", f"{who}: {exc}")
    else:
        tally.problem("lost", f"{who}: {exc}")


# ---------------------------------------------------------------------------------------------- well-behaved

def good_client(target: Target, stop: threading.Event, tally: Tally, index: int) -> None:
    """Generate requests one after another, each with a fresh prompt; latency per request."""
    rng, who, n = random.Random(index), f"good client {index}", 0
    with Client(target.host, target.port, token=target.token, timeout=600) as client:
        while not stop.is_set():
            n += 1
            prompt, seed = GOOD_PROMPT.format(n=f"{index}.{n}"), rng.randrange(2 ** 31)
            t0 = time.perf_counter()
            try:
                result = client.generate(prompt, frames=target.frames, steps=target.steps, seed=seed, timeout=600)
            except ServerError as exc:
                _ended_badly(exc, tally, who)
                time.sleep(0.2)
                continue
            tally.latency("generate", time.perf_counter() - t0)
            tally.count("generate_results")
            _check_result(result, [prompt], seed, tally, who)
        _check_unrouted(client, tally, who)


def pinger(target: Target, stop: threading.Event, tally: Tally) -> None:
    """A ping every 0.1 s: the socket loop's responsiveness."""
    with Client(target.host, target.port, token=target.token, timeout=60) as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                client.ping()
            except ServerError as exc:
                tally.problem("lost", f"pinger: {exc}")
                return
            tally.latency("ping", time.perf_counter() - t0)
            tally.count("pings")
            stop.wait(0.1)


def prompt_churner(target: Target, stop: threading.Event, tally: Tally) -> None:
    """32 never-seen prompts per request (1 step, 1 s): the per-prompt caches must stay bounded."""
    n = 0
    with Client(target.host, target.port, token=target.token, timeout=600) as client:
        while not stop.is_set():
            prompts = [f"a person does move number {n + i} of the churn." for i in range(32)]
            n += 32
            try:
                result = client.generate(prompts=prompts, frames=20, steps=1, seed=n, timeout=600)
            except ServerError as exc:
                _ended_badly(exc, tally, "prompt churner")
                continue
            tally.count("churn_prompts", len(prompts))
            _check_result(result, prompts, n, tally, "prompt churner")
        _check_unrouted(client, tally, "prompt churner")


# ---------------------------------------------------------------------------------------------- bad actors

def hostile_line(rng: random.Random, n: int) -> tuple[bytes, Any]:
    """One malformed line -> (line, the id its error must carry, or "any")."""
    rid = f"h{n}"
    kind = rng.randrange(10)
    if kind == 0:
        depth = rng.choice([50, 900, 982, 990, 1000, 5000])
        field_name = rng.choice(["frames", "prompts", "seed"])
        return (f'{{"id": "{rid}", "op": "generate", "prompt": "walk", "{field_name}": '
                f'{"[" * depth}{"]" * depth}}}'.encode(), "any")
    if kind == 1:
        return f'{{"id": "{rid}", "op": "generate", "prompt": "walk", "frames": NaN}}'.encode(), None
    if kind == 2:
        return json.dumps({"id": rid, "op": "generate", "prompt": "walk"})[:rng.randrange(5, 40)].encode(), None
    if kind == 3:
        return bytes(rng.randrange(128, 256) for _ in range(rng.randrange(1, 64))), None
    if kind == 4:
        return rng.choice([b"[]", b"1", b'"ping"', b"null", b'{"op": "ping"}']), None
    if kind == 5:
        return json.dumps({"id": rid, "op": rng.choice(["dance", "", "PING", "x" * 500])}).encode(), rid
    if kind == 6:
        return json.dumps({"id": rid, "op": "generate", "prompt": rng.choice([5, "", "x" * 600, None]),
                           "frames": rng.choice([0, 10 ** 9, "60", True])}).encode(), rid
    if kind == 7:
        return json.dumps({"id": rng.choice([None, True, 1.5, "", "x" * 300]), "op": "ping"}).encode(), None
    if kind == 8:
        return json.dumps({"id": rid, "op": "cancel", "target": {"a": [1, 2, {"b": None}]}}).encode(), rid
    if rng.random() < 0.1:
        return b'{"id": "big", "op": "generate", "prompt": "' + b"y" * (300 * 1024) + b'"}', None
    return f'{{"id": "{rid}", "op": "generate", "prompt": "walk", "frames": {"9" * 5000}}}'.encode(), None


def hostile(target: Target, stop: threading.Event, tally: Tally, seed: int = 0) -> None:
    """Batches of 50 malformed lines; each must be answered with one coded error, never ``internal``."""
    rng, n = random.Random(seed), 0
    while not stop.is_set():
        try:
            with target.connect(30) as sock:
                stream = sock.makefile("rb")
                while not stop.is_set():
                    batch = [hostile_line(rng, n + i) for i in range(50)]
                    n += len(batch)
                    sock.sendall(b"".join(line + b"\n" for line, _ in batch))
                    for line, rid in batch:
                        _check_hostile_reply(json.loads(stream.readline()), line, rid, tally)
        except (OSError, ValueError) as exc:
            if not stop.is_set():
                tally.problem("hostile", f"connection failed: {exc!r}")


def _check_hostile_reply(reply: dict, line: bytes, rid: Any, tally: Tally) -> None:
    tally.count("hostile_lines")
    code = reply.get("code")
    if reply.get("event") != "error" or code not in ERROR_CODES:
        tally.problem("hostile", f"{line[:60]!r} -> {reply}")
    elif code == "internal":
        tally.problem("internal", f"{line[:60]!r} -> {reply}")
    elif rid != "any" and reply.get("id") != rid:
        tally.problem("crosstalk", f"{line[:60]!r} answered with id {reply.get('id')!r}, expected {rid!r}")


def idle_sockets(target: Target, stop: threading.Event, tally: Tally, count: int = 8,
                 partial: bool = False) -> None:
    """``count`` connections that send nothing (or half a line); reopened when the server closes them."""
    import selectors

    with selectors.DefaultSelector() as sel:
        def open_one() -> None:
            sock = target.connect()
            if partial:
                sock.sendall(b'{"id": 1, "op": "generate", "prompt": "a perso')
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ)
            tally.count("idle_connections")

        for _ in range(count):
            open_one()
        while not stop.is_set():
            for key, _ in sel.select(0.5):
                sock = key.fileobj
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if b"idle_timeout" in data:
                    tally.count("idle_closed_by_server")
                if not data:
                    sel.unregister(sock)
                    sock.close()
                    open_one()
        for key in list(sel.get_map().values()):
            key.fileobj.close()


def half_closer(target: Target, stop: threading.Event, tally: Tally) -> None:
    """generate, then shut the write side (``nc -N``): the result must still arrive, then EOF."""
    n = 0
    while not stop.is_set():
        n += 1
        prompt, rid = GOOD_PROMPT.format(n=f"hc{n}"), f"hc{n}"
        try:
            with target.connect(600) as sock:
                sock.sendall(target.line({"id": rid, "op": "generate", "prompt": prompt, "frames": 40,
                                          "steps": target.steps, "seed": n}))
                sock.shutdown(socket.SHUT_WR)
                events = [json.loads(line) for line in sock.makefile("rb")]
        except (OSError, ValueError) as exc:
            tally.problem("lost", f"half-closer {rid}: {exc!r}")
            continue
        last = events[-1] if events else {}
        if last.get("event") == "result":
            tally.count("half_close_results")
            _check_result(last, [prompt], n, tally, "half-closer")
        elif last.get("code") == "busy":
            tally.count("busy")
        else:
            tally.problem("lost", f"half-closer {rid}: ended with {last}")


def flooder(target: Target, stop: threading.Event, tally: Tally, reads: bool) -> None:
    """hello lines as fast as TCP takes them; ``reads``: also read (and count) every answer.
    The non-reading flooder reconnects every 15 s (its close resets the connection)."""
    chunk = target.line({"id": 1, "op": "hello"}) * 2000
    while not stop.is_set():
        with target.connect() as sock:
            sock.settimeout(0.5)
            reader = threading.Thread(target=_count_bytes, args=(sock, stop, tally), daemon=True) if reads else None
            if reader:
                reader.start()
            until = time.monotonic() + 15
            while not stop.is_set() and (reads or time.monotonic() < until):
                try:
                    sent = sock.send(chunk)
                    tally.count("flood_bytes_sent", sent)
                except TimeoutError:
                    continue
                except OSError:
                    break
            if reader:
                reader.join()
        tally.count("flood_connections")


def _count_bytes(sock: socket.socket, stop: threading.Event, tally: Tally) -> None:
    read_until_closed(sock, stop, lambda n: tally.count("flood_bytes_answered", n))


def read_until_closed(sock: socket.socket, stop: threading.Event, on_bytes: Callable[[int], object]) -> None:
    """Read and discard what ``sock`` receives until it closes or ``stop`` is set; ``on_bytes(n)`` per read
    (the socket needs a timeout so ``stop`` is seen)."""
    while not stop.is_set():
        try:
            data = sock.recv(1 << 16)
        except TimeoutError:
            continue
        except OSError:
            return
        if not data:
            return
        on_bytes(len(data))


def canceller(target: Target, stop: threading.Event, tally: Tally) -> None:
    """Submit a long job, cancel it 0-0.5 s later: it ends with ``cancelled`` (or its result)."""
    rng = random.Random(7)
    with Client(target.host, target.port, token=target.token, timeout=600) as client:
        while not stop.is_set():
            job = client.submit(GOOD_PROMPT.format(n="cancel"), frames=target.frames, steps=5 * target.steps,
                                seed=1)
            stop.wait(rng.uniform(0, 0.5))
            try:
                client.cancel(job.id)
                job.wait(600)
                tally.count("cancel_too_late")
            except ServerError as exc:
                if exc.code == "cancelled":
                    tally.count("cancelled")
                else:
                    _ended_badly(exc, tally, "canceller")
        _check_unrouted(client, tally, "canceller")


def disconnector(target: Target, stop: threading.Event, tally: Tally) -> None:
    """Submit a job and hang up 0-0.5 s later (the server must cancel it and forget the client)."""
    rng = random.Random(11)
    while not stop.is_set():
        with Client(target.host, target.port, token=target.token, timeout=60) as client:
            client.submit(GOOD_PROMPT.format(n="gone"), frames=target.frames, steps=target.steps, seed=2)
            stop.wait(rng.uniform(0, 0.5))
        tally.count("disconnects")


def connection_churn(target: Target, stop: threading.Event, tally: Tally) -> None:
    """Connect, hello, read the answer, close; about 10 connections a second."""
    while not stop.is_set():
        try:
            with target.connect() as sock:
                sock.sendall(target.line({"id": "c", "op": "hello"}))
                reply = json.loads(sock.makefile("rb").readline())
            tally.count("churn_connections" if reply.get("event") == "hello" else "busy")
        except (OSError, ValueError) as exc:
            tally.problem("churn", repr(exc))
        stop.wait(0.1)
