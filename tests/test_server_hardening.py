"""The nine faults of the hostile run (issue 15), each reproduced against a real server process.

1 deep nesting answered ``internal``; 2 idle/half-open sockets never timed out and holding every slot;
3 unread output buffered without bound; 4 one flooding client slowing everyone; 5 per-prompt caches
growing without bound; 6 ``busy`` arriving as a reset; 7 a half-close cancelling the job; 8 shutdown
draining non-reading clients one after another; 9 SIGTERM while loading, and the token on the command
line.  Loopback only; short timeouts come from the server's command-line flags.
"""
from __future__ import annotations

import json
import select
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from argparse import Namespace
from pathlib import Path

import pytest

from server.cli import TOKEN_ENV
from server.client import ServerError
from server.launch import REPO_ROOT
from server.soak_actors import read_until_closed
from tests.server_fixtures import (  # noqa: F401
    FAST_STEPS,
    SERVER_ARGS,
    launch_tiny_server,
    long_job,
    server_client,
    tiny_server,
    wait_until,
)

IDLE_S, EVICT_S, SLOTS = 2.5, 0.5, 4
SHORT_ARGS = ("--idle-timeout", str(IDLE_S), "--evict-idle", str(EVICT_S), "--max-clients", str(SLOTS),
              "--text-cache-entries", "24", "--text-cache-mib", "0.02")
HELLO = b'{"id": 1, "op": "hello"}\n'


@pytest.fixture(scope="module")
def short_server(tiny_generator, tmp_path_factory):
    """A server with a 2.5 s idle timeout, 4 slots and tiny text caches (24 prompts, 0.02 MiB each)."""
    server = launch_tiny_server(tiny_generator[0], tmp_path_factory, *SHORT_ARGS)
    yield server
    assert server.stop() == 0, server.log_tail()


@pytest.fixture(scope="module")
def unlimited_server(tiny_generator, tmp_path_factory):
    """A server without the per-client line rate (so back-pressure alone bounds a non-reader), 1 s drain."""
    server = launch_tiny_server(tiny_generator[0], tmp_path_factory, "--lines-per-s", "0", "--drain-timeout", "1")
    yield server
    assert server.stop() == 0, server.log_tail()


def connect(server, timeout_s: float = 10.0) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=timeout_s)


def read_events(sock: socket.socket, count: int | None = None, until_eof: bool = False) -> list[dict]:
    """Read ``count`` event lines (or all until the server closes)."""
    stream, events = sock.makefile("rb"), []
    while count is None or len(events) < count:
        line = stream.readline()
        if not line:
            if until_eof or count is None:
                return events
            raise AssertionError(f"the server closed after {len(events)} of {count} events: {events[-3:]}")
        events.append(json.loads(line))
    return events


# ---------------------------------------------------------------------------------------------- 1

def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


DEEP_FIELDS = {   # field -> (request template, the field the error must name)
    "frames": ('{{"id": "dn{d}", "op": "generate", "prompt": "walk", "frames": {v}}}', "frames"),
    "client": ('{{"id": "dc{d}", "op": "hello", "client": {v}}}', "client"),
    "target": ('{{"id": "dt{d}", "op": "cancel", "target": {v}}}', "target"),
    "id": ('{{"id": {v}, "op": "ping"}}', "id"),
    "op": ('{{"id": "do{d}", "op": {v}}}', "op"),
    "prompts": ('{{"id": "dp{d}", "op": "generate", "prompts": {v}}}', "prompts"),
    "guidance": ('{{"id": "dg{d}", "op": "generate", "prompt": "walk", "guidance": {{"cfg": {v}}}}}',
                 "guidance.cfg"),
}


def test_1_deep_nesting_is_a_bad_request_naming_the_field(tiny_server):
    depths = [10, 900, 982, 984, 990, 1000, 3000]
    cases = [(template.format(d=d, v=nested(d)), name) for d in depths for template, name in DEEP_FIELDS.values()]
    with connect(tiny_server, 60) as sock:
        sock.sendall(b"".join(line.encode() + b"\n" for line, _ in cases))
        replies = read_events(sock, len(cases))
    for (line, name), reply in zip(cases, replies):
        assert reply["event"] == "error" and reply["code"] != "internal", (line[:80], reply)
        if reply["code"] == "bad_json":        # too deep for the JSON parser itself
            assert "nested too deeply" in reply["message"]
        else:
            assert reply["code"] == "bad_request" and reply["field"].split("[")[0] == name, (line[:80], reply)
            assert "[[[" in reply["message"] and len(reply["message"]) < 400
    assert "RecursionError" not in tiny_server.log_tail(20000)


# ---------------------------------------------------------------------------------------------- 2

def test_2_idle_connections_time_out_and_cannot_hold_every_slot(short_server):
    baseline = status_of(short_server)
    silent = [connect(short_server) for _ in range(3)]
    silent[1].sendall(b'{"id": 1, "op": "pi')           # half a line, then nothing (a slowloris)
    if shutil.which("ss"):                              # the server's side probes a peer that went quiet
        local = silent[0].getsockname()[1]
        query = f"( sport = :{short_server.port} and dport = :{local} )"
        out = subprocess.run(["ss", "-tno", "state", "established", query], capture_output=True, text=True,
                             check=True).stdout
        assert "timer:(keepalive," in out, out
    started = time.monotonic()
    for sock in silent:                                   # each gets one idle_timeout error, then EOF
        events = read_events(sock, until_eof=True)
        assert [(e["event"], e["code"]) for e in events] == [("error", "idle_timeout")], events
        assert "reconnect" in events[0]["message"]
    assert IDLE_S - 0.2 < time.monotonic() - started < IDLE_S + 3
    after = wait_until(lambda: (s := status_of(short_server))["clients"] == 1 and s)
    assert after["open_fds"] == baseline["open_fds"]
    # every slot held by a connection that sends nothing: a newcomer still gets in (the idlest makes room)
    holders = [connect(short_server) for _ in range(SLOTS)]
    time.sleep(EVICT_S + 0.3)
    with connect(short_server) as newcomer:
        newcomer.sendall(b'{"id": "in", "op": "ping"}\n')
        assert read_events(newcomer, 1)[0]["event"] == "pong"
    made_room = [h for h in holders if "slot" in poll_error(h, 0.5)]
    assert len(made_room) == 1
    for sock in silent + holders:
        sock.close()
    limits = json.loads(read_hello(short_server))["limits"]
    assert limits["idle_timeout_s"] == IDLE_S and limits["max_clients"] == SLOTS


def read_hello(server) -> bytes:
    with connect(server) as sock:
        sock.sendall(HELLO)
        return sock.makefile("rb").readline()


def status_of(server) -> dict:
    with connect(server) as sock:
        sock.sendall(b'{"id": "st", "op": "status"}\n')
        return read_events(sock, 1)[0]


def poll_error(sock: socket.socket, timeout_s: float) -> str:
    """"code: message" of an event the server sent on ``sock`` within ``timeout_s``, else ""."""
    sock.settimeout(timeout_s)
    try:
        line = sock.makefile("rb").readline()
    except OSError:        # timeout
        return ""
    event = json.loads(line) if line else {}
    return f"{event.get('code')}: {event.get('message')}" if event else ""


# ---------------------------------------------------------------------------------------------- 3

def test_3_a_client_that_never_reads_pins_no_memory(unlimited_server):
    server_client = unlimited_server.client(timeout=60)
    before = server_client.status()
    lines = 60_000                                      # ~140 MB of hello replies if all were buffered
    sock = connect(unlimited_server, 5)
    sender = threading.Thread(target=send_quietly, args=(sock, HELLO * lines))
    sender.start()
    growth, ping_s = 0, 0.0
    for _ in range(8):                                  # 4 s: the server answers what it reads
        time.sleep(0.5)
        t0 = time.perf_counter()
        during = server_client.status()
        ping_s = max(ping_s, time.perf_counter() - t0)
        growth = max(growth, during["memory"]["rss_bytes"] - before["memory"]["rss_bytes"])
    print(f"RSS growth {growth / 2 ** 20:.1f} MiB, unsent {during.get('unsent_bytes')} bytes, slowest status "
          f"{ping_s * 1e3:.0f} ms")
    assert growth < 16 * 2 ** 20, f"RSS grew by {growth / 2 ** 20:.0f} MiB for one client that does not read"
    replies = read_events(sock, 50)                     # what it was sent is intact, in order
    assert all(r["event"] == "hello" and r["id"] == 1 for r in replies)
    assert 2 ** 20 < during["unsent_bytes"] < 2 * 2 ** 20 and ping_s < 1.0     # held at the back-pressure mark
    close_now(sock)                                     # also wakes the blocked sender
    sender.join()
    wait_until(lambda: server_client.status()["clients"] == before["clients"])
    server_client.close()


def close_now(sock: socket.socket) -> None:
    """Shut both directions (waking a thread blocked in ``sendall``) and close."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:        # the server closed it already
        pass
    sock.close()


def send_quietly(sock: socket.socket, payload: bytes) -> None:
    try:
        sock.sendall(payload)
    except OSError:          # the send times out (the server stopped reading) or the test closed the socket
        pass


# ---------------------------------------------------------------------------------------------- 4

def test_4_a_flooding_client_does_not_slow_the_others(tiny_server, server_client):
    def pings(n: int = 25) -> float:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            server_client.ping()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    def generate() -> float:
        t0 = time.perf_counter()
        server_client.generate("a person walks.", frames=40, steps=FAST_STEPS, seed=1)
        return time.perf_counter() - t0

    quiet_ping, quiet_gen = pings(), statistics.median(generate() for _ in range(3))
    stop, received = threading.Event(), [0]
    flooder = connect(tiny_server, 5)
    threads = [threading.Thread(target=flood, args=(flooder, stop)),
               threading.Thread(target=drain_socket, args=(flooder, stop, received))]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        flood_ping, flood_gen = pings(), statistics.median(generate() for _ in range(3))
    finally:
        stop.set()
        close_now(flooder)
        for t in threads:
            t.join()
    print(f"ping p50 {quiet_ping * 1e3:.1f} -> {flood_ping * 1e3:.1f} ms, generate {quiet_gen:.2f} -> "
          f"{flood_gen:.2f} s under a hello flood ({received[0]} bytes of replies to the flooder)")
    assert flood_ping < 5 * quiet_ping + 0.02, (quiet_ping, flood_ping)
    assert flood_gen < 2 * quiet_gen + 0.3, (quiet_gen, flood_gen)
    assert received[0] > 0, "the flooder is answered too (at its rate)"


def flood(sock: socket.socket, stop: threading.Event) -> None:
    chunk = HELLO * 2000
    while not stop.is_set():
        try:
            sock.sendall(chunk)
        except OSError:
            return


def drain_socket(sock: socket.socket, stop: threading.Event, received: list[int]) -> None:
    sock.settimeout(0.2)
    read_until_closed(sock, stop, lambda n: received.__setitem__(0, received[0] + n))


# ---------------------------------------------------------------------------------------------- 5

def test_5_text_caches_are_bounded_by_count_and_bytes(short_server):
    with short_server.client(timeout=120) as client:
        for batch in range(3):
            prompts = [f"a person walks {batch * 32 + i} steps forward." for i in range(32)]
            client.generate(prompts=prompts, frames=20, steps=1, seed=batch)
        cache = client.status()["text_cache"]
    assert 0 < cache["entries"] <= 24, cache
    assert 0 < cache["bytes"] <= 0.02 * 2 ** 20, cache


def test_5_text_encoder_cache_bounds():
    """The encoder's LRU caches: the entry bound and the byte bound each hold, for both outputs."""
    from realign_core.text.encoder import TextEncoder, load_text_encoder

    shared = load_text_encoder("cpu")                      # the process's weights, loaded once
    encoder = TextEncoder(shared.tokenizer, shared.model)  # with caches of its own
    captions = [f"a person jumps {i} times." for i in range(20)]
    encoder.limit_cache(5, None)
    encoder.encode_sentences(captions)
    encoder.encode_tokens(captions)
    stats = encoder.cache_stats()
    assert stats["sentences"]["entries"] == stats["tokens"]["entries"] == 5
    row = 384 * 4
    encoder.limit_cache(100, 3 * row)
    assert encoder.cache_stats()["sentences"] == {"entries": 3, "bytes": 3 * row, "max_entries": 100,
                                                  "max_bytes": 3 * row, "pinned": 0}
    encoder.encode_tokens(captions)
    assert encoder.cache_stats()["tokens"]["bytes"] <= 3 * row     # token states: (n_tokens, 384) per caption
    again = encoder.forward_calls
    encoder.encode_sentences(captions[-3:])                          # the most recent ones are still cached
    assert encoder.forward_calls == again


# ---------------------------------------------------------------------------------------------- 6

def test_6_a_refused_client_reads_its_busy_line(short_server):
    slots = json.loads(read_hello(short_server))["limits"]["max_clients"]
    holders = [short_server.client(timeout=60) for _ in range(slots)]
    try:       # connections with a job (one running, the others queued) cannot be evicted
        jobs = [long_job(holders[0])] + [c.submit("a person waits.", frames=20, steps=1) for c in holders[1:]]
        wait_until(lambda: holders[0].status()["clients"] == slots)
        outcomes = []
        for _ in range(50):     # a client that says hello and sends its request right after
            with connect(short_server) as sock:
                try:
                    sock.sendall(HELLO)
                    time.sleep(0.02)
                    sock.sendall(b'{"id": 2, "op": "ping"}\n')
                    line = sock.makefile("rb").readline()
                    outcomes.append(json.loads(line)["code"] if line else "eof")
                except OSError as exc:       # reset by the server / broken pipe
                    outcomes.append(type(exc).__name__)
        assert outcomes == ["busy"] * 50, {o: outcomes.count(o) for o in set(outcomes)}
        for job in jobs:
            job.cancel()
    finally:
        for c in holders:
            c.close()


# ---------------------------------------------------------------------------------------------- 7

def test_7_half_close_still_gets_the_result(tiny_server):
    request = {"id": "hc", "op": "generate", "prompt": "a person walks.", "frames": 40, "steps": FAST_STEPS}
    with connect(tiny_server, 60) as sock:
        sock.sendall(json.dumps(request).encode() + b"\n" + b'{"id": "last", "op": "ping"}')   # no newline
        sock.shutdown(socket.SHUT_WR)                                                      # like `nc -N`
        events = read_events(sock, until_eof=True)          # ... until the server closes, once all is sent
    job = [e["event"] for e in events if e["id"] == "hc"]
    assert job[0] == "accepted" and job[-1] == "result" and set(job[1:-1]) == {"progress"}, job
    assert [e["event"] for e in events if e["id"] == "last"] == ["pong"]
    assert [e["event"] for e in events if e["id"] is None] == ["eof"]    # "the server saw your end"
    assert len(events) == len(job) + 2


def test_7_a_client_that_closes_its_socket_still_has_its_jobs_cancelled_at_once(tiny_server, server_client):
    blocker = long_job(server_client)
    wait_until(lambda: server_client.status()["current"] is not None)
    with connect(tiny_server, 30) as sock:          # a queued job, then close (not a half-close)
        sock.sendall(b'{"id": "q", "op": "generate", "prompt": "a person walks.", "frames": 40, "steps": 5}\n')
        assert read_events(sock, 1)[0]["event"] == "accepted"
    t0 = time.monotonic()
    status = wait_until(lambda: (s := server_client.status())["queue_length"] == 0 and s, 10)
    assert status["current"] is not None and time.monotonic() - t0 < 2   # gone while the blocker still runs
    blocker.cancel()


# ---------------------------------------------------------------------------------------------- 8 and 9

@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("token") / "token"
    path.write_text("file-token-0123456789\n")
    path.chmod(0o600)
    return path


def test_9_token_from_a_file_is_not_on_the_command_line(tiny_generator, tmp_path_factory, token_file):
    server = launch_tiny_server(tiny_generator[0], tmp_path_factory, "--token-file", str(token_file))
    try:
        cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes() if sys.platform == "linux" else b""
        assert b"file-token" not in cmdline
        with server.client() as anonymous:
            with pytest.raises(ServerError) as err:
                anonymous.ping()
            assert err.value.code == "bad_request" and err.value.event["field"] == "token"
        with server.client(token="file-token-0123456789") as good:
            assert good.hello()["token_required"] is True
    finally:
        assert server.stop() == 0, server.log_tail()
    assert "realign serve: warning" not in server.log_tail()


def test_9_token_sources_and_the_command_line_warning(tmp_path):
    from server.cli import resolve_token

    args = Namespace(token=None, token_file=None)
    assert resolve_token(args, {TOKEN_ENV: "from-the-env-123"}) == ("from-the-env-123", [])
    token, warnings = resolve_token(Namespace(token="on-the-cmdline-1", token_file=None), {})
    assert token == "on-the-cmdline-1" and "visible" in warnings[0] and TOKEN_ENV in warnings[0]
    loose = tmp_path / "loose"
    loose.write_text("loose-token-123\nignored\n")
    loose.chmod(0o644)
    token, warnings = resolve_token(Namespace(token=None, token_file=str(loose)), {TOKEN_ENV: "env-loses-1"})
    assert token == "loose-token-123" and "chmod 600" in warnings[0]
    for bad, needle in ((tmp_path / "missing", "cannot read"), (tmp_path / "empty", "empty")):
        if bad.name == "empty":
            bad.write_text("\n")
        with pytest.raises(ValueError, match=needle) as err:
            resolve_token(Namespace(token=None, token_file=str(bad)), {})
        assert str(bad) in str(err.value)
    res = subprocess.run([sys.executable, "-m", "server", "--models", "unused", "--token", "abcdefgh123",
                          "--host", "0.0.0.0"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "warning: --token on the command line is visible" in res.stderr


def test_9_sigterm_while_loading_exits_cleanly_with_a_message(tiny_generator):
    cmd = [sys.executable, "-m", "server", "--models", str(tiny_generator[0]), "--port", "0", *SERVER_ARGS]
    process = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready, _, _ = select.select([process.stderr], [], [], 30)
    first = process.stderr.readline() if ready else ""     # "realign serve: loading the models from ..."
    process.terminate()
    out, err = process.communicate(timeout=60)
    assert "loading the models" in first, first + err
    assert process.returncode == 0, (process.returncode, err)
    assert "stopped by SIGTERM while loading the models" in err and "Traceback" not in err
    assert "listening" not in out


def test_8_shutdown_drains_all_non_reading_clients_at_once(unlimited_server):
    """(Last in this module: it stops ``unlimited_server``.)"""
    server = unlimited_server
    readers_not = [connect(server, 5) for _ in range(8)]   # each asks for ~19 MB of replies, never reads
    senders = [threading.Thread(target=send_quietly, args=(sock, HELLO * 8000)) for sock in readers_not]
    try:
        for t in senders:
            t.start()
        with server.client() as probe:    # until every one of them is held at the back-pressure mark
            status = wait_until(lambda: (s := probe.status())["unsent_bytes"] > 8 * 2 ** 20 and s, 60)
        t0 = time.monotonic()
        code = server.stop()
        took = time.monotonic() - t0
    finally:
        for sock in readers_not:
            close_now(sock)
        for t in senders:
            t.join()
        server.stop()
    assert code == 0, server.log_tail()
    print(f"shutdown with 8 non-reading clients took {took:.2f} s")
    assert took < 5, f"shutdown took {took:.1f} s with 8 clients that do not read (drain deadline 1 s)"
    assert 8 * 2 ** 20 < status["unsent_bytes"] < 16 * 2 ** 20   # output waiting at SIGTERM, ~1 MiB each
