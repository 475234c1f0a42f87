"""The server's parts without sockets: validation, the fair batching queue, result encoding, the client file."""
from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

from realign_core.motion.kinematics import FOOT_JOINTS, PLANTED_HEIGHT_M, PLANTED_SPEED_MPS, planted_feet
from realign_core.motion.skeleton import FPS
from server import results
from server.client import _nested, decode_joints
from server.jobs import Job, JobQueue, QueueFull
from server.launch import REPO_ROOT
from server.protocol import Defaults, Limits, ProtocolError, parse_generate, parse_line
from tests.synthetic import walking_motion

LIMITS, DEFAULTS = Limits(), Defaults()


def make_job(owner: str, rid: str, events: list | None = None, **fields) -> Job:
    req = parse_generate({"id": rid, "op": "generate", "prompt": "a person walks.", "seed": 1, **fields},
                         LIMITS, DEFAULTS)
    sink = events if events is not None else []
    return Job(req, owner, sink.append)


def test_generate_defaults_seeds_and_motions():
    req = parse_generate({"id": "a", "prompts": ["one", "two"], "samples": 3, "seed": 2 ** 31 - 2, "seconds": 2.02},
                         LIMITS, DEFAULTS)
    assert req.frames == 40 and req.sampling.steps == 50 and req.sampling.sampler == "ddim"
    assert [(m.prompt, m.sample, m.seed) for m in req.motions] == [
        ("one", 0, 2 ** 31 - 2), ("one", 1, 2 ** 31 - 1), ("one", 2, 0),
        ("two", 0, 2 ** 31 - 2), ("two", 1, 2 ** 31 - 1), ("two", 2, 0)]
    assert parse_generate({"id": 1, "prompt": "  a \n person\twalks "}, LIMITS, DEFAULTS).prompts == ("a person walks",)
    unseeded = parse_generate({"id": 1, "prompt": "x"}, LIMITS, DEFAULTS)
    assert 0 <= unseeded.seed <= LIMITS.max_seed


def test_batch_key_ignores_reward_weights_when_guidance_is_off():
    a = make_job("c", "1", guidance={"strength": 0, "mu": 3})
    b = make_job("c", "2", guidance={"mu": 0.5, "eta": 2})
    c = make_job("c", "3", guidance={"strength": 1, "mu": 3})
    d = make_job("c", "4", guidance={"strength": 1, "mu": 2})
    assert a.key == b.key and c.key != d.key and a.key != make_job("c", "5", steps=7).key


def test_parse_line_rejects_non_finite_constants_and_deep_nesting():
    for raw in (b'{"a": NaN}', b'{"a": -Infinity}', b"[" * 100_000, b"\xc3\x28"):
        with pytest.raises(ProtocolError) as err:
            parse_line(raw)
        assert err.value.code == "bad_json"


def test_queue_is_round_robin_and_batches_compatible_heads():
    q = JobQueue(max_jobs=10, max_jobs_per_client=4)
    a = [make_job("A", f"a{i}") for i in range(3)]
    b = [make_job("B", "b0"), make_job("B", "b1", steps=7)]
    c = [make_job("C", "c0", steps=7)]
    for job in a + b + c:
        q.submit(job)
    ids = lambda batch: [j.id for j in batch]  # noqa: E731
    assert ids(q.take_batch(32)) == ["a0", "b0", "a1", "a2"]   # compatible heads, round after round
    assert ids(q.take_batch(32)) == ["c0", "b1"]               # C first: A and B were served in the last run
    assert len(q) == 0


def test_queue_respects_the_batch_size_and_per_client_order():
    q = JobQueue()
    q.submit(make_job("A", "a0", samples=16))
    q.submit(make_job("A", "a1", steps=9))
    q.submit(make_job("A", "a2"))           # compatible with a0 but behind a1: must not jump ahead
    q.submit(make_job("B", "b0", samples=16))
    q.submit(make_job("B", "b1"))
    assert [j.id for j in q.take_batch(32)] == ["a0", "b0"]    # 16 + 16 fill the batch
    assert [j.id for j in q.take_batch(32)] == ["a1"]
    assert [j.id for j in q.take_batch(32)] == ["b1", "a2"]


def test_queue_limits_positions_and_close():
    events: list = []
    q = JobQueue(max_jobs=3, max_jobs_per_client=2)
    q.submit(make_job("A", "a0", events))
    q.submit(make_job("A", "a1", events))
    assert q.submit(make_job("B", "b0", events)) == 1          # one job of A runs before it
    assert [e["position"] for e in events if e["event"] == "accepted"] == [0, 1, 1]
    with pytest.raises(QueueFull):
        q.submit(make_job("C", "c0"))
    with pytest.raises(QueueFull):
        q.submit(make_job("A", "a2"), client_active=2)
    left = q.close()
    assert len(left) == 3 and q.take_batch(32) is None


def test_take_batch_waits_for_work_and_wakes_on_close():
    q = JobQueue()
    assert q.take_batch(32, timeout=0.01) == []
    got = []
    t = threading.Thread(target=lambda: got.append(q.take_batch(32)))
    t.start()
    q.close()
    t.join(5)
    assert got == [None]


def test_job_ends_exactly_once():
    events: list = []
    done: list = []
    job = make_job("A", "j", events)
    job._on_done = lambda j, kind: done.append(kind)
    assert job.mark_running()
    job.request_cancel("test")
    assert job.finish_cancelled(3, 5) and not job.finish({"event": "result"}, "result")
    job.emit({"event": "progress"})
    assert [e["event"] for e in events] == ["error"] and events[0]["code"] == "cancelled"
    assert events[0]["step"] == 3 and done == ["cancelled"]


def test_joints_round_trip_and_stdlib_decoder():
    joints = np.random.default_rng(0).normal(size=(21, 22, 3)).astype(np.float32)
    encoded = results.encode_joints(joints)
    assert encoded["shape"] == [21, 22, 3] and encoded["dtype"] == "float32"
    assert np.array_equal(decode_joints(encoded), joints) and np.array_equal(results.decode_joints(encoded), joints)
    import base64

    assert np.array_equal(np.array(_nested(base64.b64decode(encoded["data"]), [21, 22, 3]), dtype=np.float32), joints)
    with pytest.raises(ValueError):
        decode_joints({**encoded, "shape": [20, 22, 3]})


def test_root_motion_of_a_turning_walk():
    joints = walking_motion(frames=80, fps=20, turn_deg=90.0)
    root = results.root_motion(joints)
    assert len(root["heading"]) == 80 and abs(root["heading"][0]) < 0.2
    assert root["turn_rad"] == pytest.approx(np.deg2rad(90.0), abs=0.05)   # yaw toward +X = a left turn
    assert root["distance_m"] > 0.5 and root["displacement_xz"] == pytest.approx(
        (joints[-1, 0, [0, 2]] - joints[0, 0, [0, 2]]).tolist(), abs=1e-4)


def test_foot_contacts_are_the_planted_feet_of_the_sent_joints():
    joints = walking_motion(frames=80, fps=20, turn_deg=90.0, speed=0.2)
    contacts = results.contacts(joints)
    planted = planted_feet(results.decode_joints(results.encode_joints(joints)).astype(np.float64), FPS)
    assert 0 < planted.mean() < 1
    assert list(contacts["per_joint"]) == list(FOOT_JOINTS) == ["left_ankle", "left_foot", "right_ankle", "right_foot"]
    for i, name in enumerate(FOOT_JOINTS):
        assert contacts["per_joint"][name] == planted[:, i].tolist()
    assert contacts["left"] == (planted[:, 0] | planted[:, 1]).tolist()     # ankle or toe
    assert contacts["right"] == (planted[:, 2] | planted[:, 3]).tolist()
    assert all(type(v) is bool for v in contacts["left"] + contacts["per_joint"]["right_foot"])
    assert (contacts["speed_mps"], contacts["height_m"]) == (PLANTED_SPEED_MPS, PLANTED_HEIGHT_M) == (0.25, 0.06)
    assert "threshold_m2" not in contacts and "speed" in contacts["rule"]


def test_foot_contacts_need_slow_and_low_joints():
    standing = np.repeat(walking_motion(frames=1, fps=20), 30, axis=0)
    assert all(all(column) for column in results.contacts(standing)["per_joint"].values())
    floating = standing.copy()
    floating[15:] += [0.0, 0.2, 0.0]                      # the second half 20 cm up: not planted there
    contacts = results.contacts(floating)
    assert contacts["left"] == contacts["per_joint"]["left_foot"] == [True] * 15 + [False] * 15
    sliding = standing.copy()
    sliding[:, :, 0] += np.arange(30)[:, None] * 0.05       # 1 m/s sideways on the floor: not planted
    assert not any(results.contacts(sliding)["right"])
    assert len(results.contacts(standing[:1])["left"]) == 1


def test_client_file_is_stdlib_only_and_standalone(tmp_path):
    vendored = tmp_path / "realign_client.py"
    vendored.write_text((REPO_ROOT / "server" / "client.py").read_text())
    code = ("import sys, realign_client as c; "
            "bad = [m for m in ('torch', 'numpy', 'server', 'realign_core') if m in sys.modules]; "
            "assert not bad, bad; print(c.PROTOCOL_VERSION)")
    res = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "1", res.stderr


def test_error_messages_show_any_value_briefly_at_any_depth():
    from server.protocol import _show

    deep: list = []
    for _ in range(100_000):       # deeper than any JSON the parser accepts, and than the recursion limit
        deep = [deep]
    assert _show(deep) == "[[[[[[[...]]]]]]]"
    assert _show({"a": [1, {"b": "x" * 100}]}).endswith("...") and len(_show({"a": ["x" * 100]})) == 60
    assert _show(list(range(10 ** 5))).startswith("[0, 1, 2") and len(_show(list(range(10 ** 5)))) == 60
    assert _show(None) == "null" and _show("a") == '"a"' and _show([]) == "[]"


def test_connection_framing_budget_and_half_close():
    import socket

    from server.connection import Connection, ConnectionPolicy

    a, b = socket.socketpair()
    policy = ConnectionPolicy(max_line_bytes=100, lines_per_turn=3, max_lines_per_s=10, line_burst=4)
    conn = Connection(a, None, 1, policy, lambda c: None)
    conn.feed(b'{"id": 1}\n\n{"id": 2}\r\n' + b"x" * 150)           # a blank line, CRLF, an over-long partial
    assert [conn.next_line(), conn.next_line(), conn.next_line()] == [b'{"id": 1}', b'{"id": 2}', None]
    conn.feed(b"yyy\n" + b'{"id": 3}')                             # the rest of the long line is skipped
    assert not conn.has_line()
    conn.feed_eof()                                                 # a last line without newline counts
    assert conn.read_closed and conn.next_line() == b'{"id": 3}'
    assert conn.pending() and b"too_large" in bytes(conn._out)      # one error for the long line
    now = conn._refilled
    assert conn.take_budget(now) == 3                               # the per-turn budget
    conn.spend(3)
    assert conn.take_budget(now) == 1 and conn.refill_in() == 0     # the bucket holds 4
    conn.spend(1)
    assert conn.take_budget(now) == 0 and abs(conn.refill_in() - 0.1) < 1e-9
    assert conn.take_budget(now + 0.25) == 2                        # refilled at 10 lines/s
    conn.close()
    b.close()
