"""Protocol v1 round trips against a real server process on the tiny model."""
from __future__ import annotations

import json
import socket
import subprocess
import sys

import numpy as np
import pytest

from server.client import ServerError, decode_joints
from server.launch import REPO_ROOT
from server.protocol import ERROR_CODES
from tests.server_fixtures import (  # noqa: F401
    FAST_STEPS,
    first_event,
    first_progress,
    launch_tiny_server,
    long_job,
    server_client,
    tiny_server,
)


def raw_exchange(server, lines: list[bytes], replies: int, timeout_s: float = 30.0) -> list[dict]:
    """Send raw lines on a fresh socket and read ``replies`` event lines."""
    with socket.create_connection((server.host, server.port), timeout=timeout_s) as sock:
        sock.sendall(b"".join(line + b"\n" for line in lines))
        stream = sock.makefile("rb")
        return [json.loads(stream.readline()) for _ in range(replies)]


def test_hello_ping_status(server_client):
    hello = server_client.hello("pytest")
    assert hello["event"] == "hello" and hello["protocol"] == 1 and hello["server_version"]
    model = hello["model"]
    assert model["fps"] == 20 and model["joints"] == 22 and len(model["joint_names"]) == 22
    assert model["joint_names"][0] == "pelvis" and model["max_frames"] == 196 and model["guidance"] is False
    assert hello["device"] == "cpu" and hello["limits"]["min_frames"] == 20
    assert server_client.ping()["event"] == "pong"
    status = server_client.status()
    for key in ("queue_length", "current", "device", "memory", "threads", "clients", "open_fds"):
        assert key in status
    assert status["memory"]["rss_bytes"] > 0 and status["threads"]["python"] >= 2


def test_generate_streams_accepted_progress_result(server_client):
    events = []
    result = server_client.generate("a person walks forward.", frames=45, steps=FAST_STEPS, seed=11,
                                    on_event=events.append)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "accepted" and kinds[-1] == "result" and "progress" in kinds
    assert all(e["id"] == events[0]["id"] for e in events)
    last_progress = [e for e in events if e["event"] == "progress"][-1]
    assert last_progress["step"] == last_progress["total"] == FAST_STEPS and last_progress["eta_s"] >= 0
    (motion,) = result["motions"]
    assert motion["prompt"] == "a person walks forward." and motion["seed"] == 11 and motion["fps"] == 20
    assert motion["joints"]["dtype"] == "float32" and motion["joints"]["shape"] == [45, 22, 3]
    joints = decode_joints(motion["joints"])
    assert joints.shape == (45, 22, 3) and joints.dtype == np.float32 and np.isfinite(joints).all()
    contacts, root = motion["foot_contacts"], motion["root_motion"]
    assert len(contacts["left"]) == len(contacts["right"]) == 45 and isinstance(contacts["left"][0], bool)
    assert len(root["translation_xz"]) == len(root["heading"]) == len(root["height"]) == 45
    assert np.allclose(root["translation_xz"], joints[:, 0, [0, 2]], atol=1e-4)
    timing = result["timing"]
    assert timing["batch_size"] == timing["batch_jobs"] == 1 and timing["total_s"] >= timing["run_s"] > 0
    assert result["sampling"] == {"sampler": "ddim", "steps": FAST_STEPS, "foot_lock": False,
                                  "guidance": {"strength": 0.0, "mu": 1.0, "eta": 1.0, "cfg": 7.5}}


def test_same_seed_same_motion_and_seconds(server_client):
    a = server_client.generate("a person jumps.", seconds=2.5, steps=FAST_STEPS, seed=5)
    b = server_client.generate("a person jumps.", frames=50, steps=FAST_STEPS, seed=5)
    c = server_client.generate("a person jumps.", frames=50, steps=FAST_STEPS, seed=6)
    ja, jb, jc = (decode_joints(r["motions"][0]["joints"]) for r in (a, b, c))
    assert ja.shape == (50, 22, 3) and np.array_equal(ja, jb)
    assert not np.allclose(ja, jc)


def test_batch_baking_prompts_and_samples_match_single_requests(server_client):
    prompts = ["a person walks forward.", "a person turns left."]
    res = server_client.generate(prompts=prompts, samples=2, frames=30, steps=FAST_STEPS, seed=100)
    motions = res["motions"]
    assert [(m["prompt"], m["sample"], m["seed"]) for m in motions] == [
        (prompts[0], 0, 100), (prompts[0], 1, 101), (prompts[1], 0, 100), (prompts[1], 1, 101)]
    assert res["timing"]["batch_size"] == 4
    alone = server_client.generate(prompts[1], frames=30, steps=FAST_STEPS, seed=101)
    assert np.allclose(decode_joints(motions[3]["joints"]), decode_joints(alone["motions"][0]["joints"]), atol=1e-4)


def test_guidance_without_reward_model_is_a_clear_error(server_client):
    with pytest.raises(ServerError) as err:
        server_client.generate("a person walks.", frames=40, steps=FAST_STEPS, guidance={"strength": 1.0})
    assert err.value.code == "bad_request" and err.value.event["field"] == "guidance.strength"
    assert "reward model" in err.value.message
    explicit = server_client.generate("a person walks.", frames=40, steps=FAST_STEPS, seed=3,
                                      guidance={"strength": 0, "mu": 2, "eta": 0.5, "cfg": 7.5})
    default = server_client.generate("a person walks.", frames=40, steps=FAST_STEPS, seed=3)
    assert np.array_equal(decode_joints(explicit["motions"][0]["joints"]),
                          decode_joints(default["motions"][0]["joints"]))


BAD_REQUESTS = [
    ({"op": "ping"}, "bad_request", "id"),
    ({"id": True, "op": "ping"}, "bad_request", "id"),
    ({"id": "x" * 129, "op": "ping"}, "bad_request", "id"),
    ({"id": 1, "op": "dance"}, "unknown_op", "op"),
    ({"id": 1, "op": 3}, "bad_request", "op"),
    ({"id": 1, "op": "ping", "extra": 1}, "bad_request", "extra"),
    ({"id": 1, "op": "generate"}, "bad_request", "prompt"),
    ({"id": 1, "op": "generate", "prompt": "a", "prompts": ["b"]}, "bad_request", "prompt"),
    ({"id": 1, "op": "generate", "prompt": 5}, "bad_request", "prompt"),
    ({"id": 1, "op": "generate", "prompt": "   "}, "bad_request", "prompt"),
    ({"id": 1, "op": "generate", "prompt": "x" * 501}, "too_large", "prompt"),
    ({"id": 1, "op": "generate", "prompt": "a\u0000b"}, "bad_request", "prompt"),
    ({"id": 1, "op": "generate", "prompts": []}, "bad_request", "prompts"),
    ({"id": 1, "op": "generate", "prompts": ["a"] * 33}, "too_large", "prompts"),
    ({"id": 1, "op": "generate", "prompts": ["a", 2]}, "bad_request", "prompts[1]"),
    ({"id": 1, "op": "generate", "prompt": "a", "frames": 19}, "bad_request", "frames"),
    ({"id": 1, "op": "generate", "prompt": "a", "frames": 197}, "too_large", "frames"),
    ({"id": 1, "op": "generate", "prompt": "a", "frames": -40}, "bad_request", "frames"),
    ({"id": 1, "op": "generate", "prompt": "a", "frames": 60.0}, "bad_request", "frames"),
    ({"id": 1, "op": "generate", "prompt": "a", "frames": True}, "bad_request", "frames"),
    ({"id": 1, "op": "generate", "prompt": "a", "frames": "60"}, "bad_request", "frames"),
    ({"id": 1, "op": "generate", "prompt": "a", "frames": 10 ** 30}, "too_large", "frames"),
    ({"id": 1, "op": "generate", "prompt": "a", "frames": 60, "seconds": 3}, "bad_request", "frames"),
    ({"id": 1, "op": "generate", "prompt": "a", "seconds": 0.5}, "bad_request", "seconds"),
    ({"id": 1, "op": "generate", "prompt": "a", "seconds": 1e300}, "bad_request", "seconds"),
    ({"id": 1, "op": "generate", "prompt": "a", "seed": -1}, "bad_request", "seed"),
    ({"id": 1, "op": "generate", "prompt": "a", "seed": 2 ** 31}, "too_large", "seed"),
    ({"id": 1, "op": "generate", "prompt": "a", "samples": 0}, "bad_request", "samples"),
    ({"id": 1, "op": "generate", "prompt": "a", "samples": 17}, "too_large", "samples"),
    ({"id": 1, "op": "generate", "prompts": ["a"] * 3, "samples": 11}, "too_large", "samples"),
    ({"id": 1, "op": "generate", "prompt": "a", "steps": 0}, "bad_request", "steps"),
    ({"id": 1, "op": "generate", "prompt": "a", "steps": 1001}, "too_large", "steps"),
    ({"id": 1, "op": "generate", "prompt": "a", "sampler": "euler"}, "bad_request", "sampler"),
    ({"id": 1, "op": "generate", "prompt": "a", "guidance": 1}, "bad_request", "guidance"),
    ({"id": 1, "op": "generate", "prompt": "a", "guidance": {"strenght": 1}}, "bad_request", "guidance.strenght"),
    ({"id": 1, "op": "generate", "prompt": "a", "guidance": {"strength": -1}}, "bad_request", "guidance.strength"),
    ({"id": 1, "op": "generate", "prompt": "a", "guidance": {"cfg": 31}}, "bad_request", "guidance.cfg"),
    ({"id": 1, "op": "generate", "prompt": "a", "guidance": {"mu": False}}, "bad_request", "guidance.mu"),
    ({"id": 1, "op": "generate", "prompt": "a", "foot_lock": "yes"}, "bad_request", "foot_lock"),
    ({"id": 1, "op": "cancel"}, "bad_request", "target"),
    ({"id": 1, "op": "cancel", "target": [1]}, "bad_request", "target"),
]


def test_bad_requests_get_coded_errors_naming_the_field(tiny_server):
    lines = [json.dumps(req).encode() for req, _, _ in BAD_REQUESTS]
    replies = raw_exchange(tiny_server, lines, len(lines))
    for (req, code, field), reply in zip(BAD_REQUESTS, replies):
        assert reply["event"] == "error", (req, reply)
        assert (reply["code"], reply.get("field")) == (code, field), (req, reply)
        assert reply["id"] == (req.get("id") if isinstance(req.get("id"), int) and req.get("id") is not True else None)
        assert field.split("[")[0].split(".")[-1] in reply["message"], reply
    range_reply = replies[[r[2] for r in BAD_REQUESTS].index("frames")]
    assert "[20, 196]" in range_reply["message"]


def test_malformed_lines_and_line_limit(tiny_server):
    lines = [b"not json", b'{"id": 1, "op": "ping"', b"\xff\xfe\x00", b'{"id": 2, "op": "ping", "x": NaN}',
             b"[1, 2]", b"1" * 5000, b"[" * 200000, b'{"id": 3, "op": "ping", "token": "' + b"a" * 300000 + b'"}',
             b'{"id": 4, "op": "ping"}']
    replies = raw_exchange(tiny_server, lines, len(lines))
    codes = [r.get("code") for r in replies]
    assert codes[:7] == ["bad_json", "bad_json", "bad_json", "bad_json", "bad_request", "bad_json", "bad_json"]
    assert codes[7] == "too_large" and replies[8] == {**replies[8], "id": 4, "event": "pong"}


def test_cancel_unknown_target_and_duplicate_ids(tiny_server, server_client):
    reply = server_client.cancel("nothing-here")
    assert reply == {"id": reply["id"], "event": "cancel", "target": "nothing-here", "found": False}
    request = json.dumps({"id": "same", "op": "generate", "prompt": "a person walks.", "frames": 40,
                          "steps": FAST_STEPS}).encode()
    with socket.create_connection((tiny_server.host, tiny_server.port), timeout=60) as sock:
        stream = sock.makefile("rb")
        sock.sendall(request + b"\n" + request + b"\n")
        events = []
        while not events or events[-1]["event"] != "result":
            events.append(json.loads(stream.readline()))
        errors = [e for e in events if e["event"] == "error"]
        assert len(errors) == 1 and errors[0]["code"] == "bad_request" and errors[0]["field"] == "id"
        sock.sendall(request + b"\n")  # the id is free again once its job ended
        events = [json.loads(stream.readline())]
        while events[-1]["event"] not in ("result", "error"):
            events.append(json.loads(stream.readline()))
        assert events[-1]["event"] == "result" and events[-1]["id"] == "same"


def test_error_codes_are_the_documented_ones():
    """Every code the server can send has a row in docs/server.md's error table, and no other code does."""
    doc = (REPO_ROOT / "docs" / "server.md").read_text()
    table = doc[doc.index("| `code` | when |"):].split("\n\n")[0]
    documented = tuple(line.split("`")[1] for line in table.splitlines()[2:])
    assert documented == ERROR_CODES
    assert ERROR_CODES[:7] == ("bad_json", "bad_request", "too_large", "unknown_op", "busy", "cancelled", "internal")


def _serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "server", "--models", "does-not-matter", *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


def test_non_loopback_bind_is_refused_without_allow_remote_and_token():
    res = _serve("--host", "0.0.0.0")
    assert res.returncode == 2 and "--allow-remote" in res.stderr and "ssh" in res.stderr
    res = _serve("--host", "0.0.0.0", "--allow-remote")
    assert res.returncode == 2 and "--token" in res.stderr
    res = _serve("--host", "0.0.0.0", "--allow-remote", "--token", "short")
    assert res.returncode == 2 and "at least 8" in res.stderr


def test_remote_server_requires_the_token_and_shuts_down_cleanly(tiny_generator, tmp_path_factory):
    server = launch_tiny_server(tiny_generator[0], tmp_path_factory, "--host", "0.0.0.0", "--allow-remote",
                                "--token", "s3cret-token")
    try:
        server.host = "127.0.0.1"
        with server.client() as anonymous:
            with pytest.raises(ServerError) as err:
                anonymous.hello()
            assert err.value.code == "bad_request" and err.value.event["field"] == "token"
        with server.client(token="wrong-token") as wrong:
            with pytest.raises(ServerError):
                wrong.ping()
        with server.client(token="s3cret-token") as good:
            assert good.hello()["token_required"] is True
            result = good.generate("a person walks.", frames=30, steps=FAST_STEPS, seed=1)
            assert result["motions"][0]["joints"]["shape"] == [30, 22, 3]
            running = long_job(good)
            first_progress(running)
            queued = good.submit("a person walks.", frames=30, steps=FAST_STEPS)
            first_event(queued, "accepted")
            unread = good.submit("a person runs.", frames=30, steps=FAST_STEPS)   # may still be unread at SIGTERM
            assert server.stop() == 0, server.log_tail()       # SIGTERM: jobs end with `cancelled`, exit 0
            for job in (running, queued):
                with pytest.raises(ServerError) as err:
                    job.wait(30)
                assert err.value.code == "cancelled" and "shutting down" in err.value.message
            with pytest.raises(ServerError) as err:             # answered either way, never dropped
                unread.wait(30)
            assert err.value.code in ("cancelled", "busy") and "shutting down" in err.value.message
    finally:
        assert server.stop() == 0, server.log_tail()
