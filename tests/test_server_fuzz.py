"""Fuzz: 1,000+ malformed or hostile lines; the server answers each with one coded error, keeps other
clients' jobs running, and leaks no threads, connections, file descriptors or memory."""
from __future__ import annotations

import json
import random
import socket
import threading

from server.protocol import ERROR_CODES
from tests.server_fixtures import FAST_STEPS, server_client, tiny_server, wait_until  # noqa: F401

BIG = 10 * 2 ** 20
BAD_FIELD_VALUES: dict[str, list] = {
    "prompt": [None, True, 5, 1.5, [], {}, "", "   ", "x" * 501, "a\u0000b", "\ud800", ["a"]],
    "prompts": [None, "a", [], ["a"] * 33, [1], [None], [""], {"a": 1}, True],
    "frames": [None, True, -1, 0, 19, 197, 10 ** 30, -10 ** 30, 60.5, "60", [], {}, 1e308, 10 ** 400],
    "seconds": [None, True, 0, 0.99, 9.81, -1, 1e308, "2", [], 10 ** 400],
    "seed": [None, True, -1, 2 ** 31, 2 ** 64, 1.5, "1", []],
    "samples": [None, True, 0, 17, -1, 1.0, "2"],
    "steps": [None, True, 0, 1001, -5, 2.0, "5"],
    "sampler": [None, 1, "", "DDIM", "euler", []],
    "guidance": [None, 1, "x", [], {"strength": 1}, {"x": 1}, {"strength": 0.5, "cfg": 99}],
    "guidance.strength": [-1, 101, True, "1", None, 1e308, 0.5],
    "guidance.mu": [-1, 101, True, "1", None],
    "guidance.eta": [-1e-9, 1e300, False, [], None],
    "guidance.cfg": [-0.1, 31, True, "7", None],
    "foot_lock": [None, 1, 0, "true", [], {}],
    "extra": [1, "x", None],
}
BAD_IDS = [None, True, 1.5, [], {}, "", "x" * 200, 2 ** 60, -2 ** 60]
NON_OBJECTS = [b"1", b"-1.5e3", b'"ping"', b"[]", b"[{}]", b"null", b"true", b"false", b'"\\ud800"']


def _generate(rid: str) -> dict:
    return {"id": rid, "op": "generate", "prompt": "a person walks.", "frames": 40, "steps": FAST_STEPS}


def _mutated(rng: random.Random, rid: str) -> tuple[bytes, str | None]:
    req = _generate(rid)
    field = rng.choice(list(BAD_FIELD_VALUES))
    value = rng.choice(BAD_FIELD_VALUES[field])
    if field == "prompts":
        del req["prompt"]
    if field.startswith("guidance."):
        req["guidance"] = {field.split(".")[1]: value}
    else:
        req[field] = value
    return json.dumps(req).encode(), rid


def _raw_json_tricks(rng: random.Random, rid: str) -> tuple[bytes, str | None]:
    base = json.dumps(_generate(rid))
    kind = rng.randrange(6)
    if kind == 0:
        return base.replace('"frames": 40', f'"frames": {rng.choice(["NaN", "Infinity", "-Infinity"])}').encode(), None
    if kind == 1:
        return base[:rng.randrange(1, len(base) - 1)].encode(), None            # truncated
    if kind == 2:
        return base.replace('"frames": 40', '"frames": ' + "9" * 5000).encode(), None   # int digit limit
    if kind == 3:
        return (b"[" * rng.randrange(1000, 200_000)), None                          # deep nesting
    if kind == 4:
        return rng.choice(NON_OBJECTS), None
    return b"#" + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))).replace(b"\n", b"?"), None


def _bad_envelope(rng: random.Random, rid: str) -> tuple[bytes, str | None]:
    kind = rng.randrange(5)
    if kind == 0:
        return json.dumps({"id": rng.choice(BAD_IDS), "op": "ping"}).encode(), None
    if kind == 1:
        return json.dumps({"op": "status"}).encode(), None
    if kind == 2:
        return json.dumps({"id": rid, "op": rng.choice(["", "Ping", "delete", "hello ", "x" * 1000])}).encode(), rid
    if kind == 3:
        return json.dumps({"id": rid, "op": rng.choice([None, 1, [], {"op": "ping"}, True])}).encode(), rid
    return json.dumps({"id": rid, "op": "cancel", "target": rng.choice(BAD_IDS[:-2])}).encode(), rid


def hostile_lines(count: int, seed: int) -> list[tuple[bytes, str | None]]:
    """(line, the id its error must carry or None) -- every line is invalid by construction."""
    rng = random.Random(seed)
    makers = [_mutated] * 5 + [_raw_json_tricks] * 3 + [_bad_envelope] * 2
    return [rng.choice(makers)(rng, f"fz{seed}-{i}") for i in range(count)]


def fuzz_connection(server, lines: list[tuple[bytes, str | None]], big_lines: int, failures: list) -> None:
    """Send the lines (and ``big_lines`` 10 MB lines) on one socket; check one coded error per line."""
    big = b'{"id": "big", "op": "generate", "prompt": "' + b"a" * BIG + b'"}'
    payload = [line for line, _ in lines] + [big] * big_lines
    expected = [rid for _, rid in lines] + [None] * big_lines
    try:
        with socket.create_connection((server.host, server.port), timeout=60) as sock:
            sender = threading.Thread(target=sock.sendall, args=(b"".join(p + b"\n" for p in payload),))
            sender.start()
            stream = sock.makefile("rb")
            for line, rid in zip(payload, expected):
                reply = json.loads(stream.readline())
                ok = reply["event"] == "error" and reply["code"] in ERROR_CODES and reply["id"] == rid
                if not ok:
                    failures.append((line[:200], reply))
            sender.join()
    except Exception as exc:  # noqa: BLE001 -- reported by the test
        failures.append(("connection", repr(exc)))


def abrupt_connections(server, count: int) -> None:
    """Clients that send half a line (some of them half of a 10 MB line) and vanish."""
    for i in range(count):
        with socket.create_connection((server.host, server.port), timeout=30) as sock:
            sock.sendall(b'{"id": 1, "op": "generate", "prompt": "' + (b"b" * (BIG // 4) if i % 5 == 0 else b"ab"))


def test_fuzz_1000_hostile_lines(tiny_server, server_client):
    warm = hostile_lines(50, seed=99)
    fuzz_connection(tiny_server, warm, 1, failures := [])
    assert not failures, failures[:5]
    server_client.generate("a person walks.", frames=40, steps=FAST_STEPS, seed=1)
    before = server_client.status()

    legit = server_client.submit("a person runs forward.", frames=120, steps=300, seed=4)
    lines = [hostile_lines(300, seed=s) for s in range(4)]
    threads = [threading.Thread(target=fuzz_connection, args=(tiny_server, chunk, 1 if i < 2 else 0, failures))
               for i, chunk in enumerate(lines)]
    threads.append(threading.Thread(target=abrupt_connections, args=(tiny_server, 30)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:5]
    assert sum(len(chunk) for chunk in lines) >= 1000

    result = legit.wait(120)     # the malformed lines did not disturb another client's job
    assert result["motions"][0]["joints"]["shape"] == [120, 22, 3]
    assert server_client.ping()["event"] == "pong"
    after = wait_until(lambda: (s := server_client.status())["clients"] == before["clients"]
                       and s["open_fds"] == before["open_fds"] and s)
    assert after["threads"] == before["threads"], (before["threads"], after["threads"])
    growth = after["memory"]["rss_bytes"] - before["memory"]["rss_bytes"]
    print(f"fuzz: threads {before['threads']} -> {after['threads']}, open fds {before['open_fds']} -> "
          f"{after['open_fds']}, RSS {before['memory']['rss_bytes'] / 2 ** 20:.1f} -> "
          f"{after['memory']['rss_bytes'] / 2 ** 20:.1f} MiB")
    assert growth < 64 * 2 ** 20, f"RSS grew by {growth / 2 ** 20:.1f} MiB"
    again = server_client.generate("a person walks.", frames=40, steps=FAST_STEPS, seed=1)
    assert again["motions"][0]["joints"]["shape"] == [40, 22, 3]
