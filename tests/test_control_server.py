"""Protocol v1's control fields (path, keyframes, loop, in_place, control_strength, layer, sequence): validation
units, and round trips against a real server process on the tiny model."""
from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from server.client import decode_joints
from server.protocol import Defaults, Limits, ProtocolError, check_common, parse_generate
from tests.server_fixtures import FAST_STEPS, tiny_server  # noqa: F401

LIMITS = Limits()


def parse(**fields):
    obj = {"id": 1, "op": "generate", **fields}
    check_common(obj, LIMITS)
    return parse_generate(obj, LIMITS, Defaults())


def pose(offset=(0.0, 0.0, 0.0)) -> list:
    return (np.tile(np.array([0.0, 0.9, 0.0]) + offset, (22, 1)) + np.linspace(0, 0.5, 22)[:, None]).tolist()


def test_requests_without_control_fields_parse_as_before():
    req = parse(prompt="walk", frames=40, seed=3)
    assert req.control is None and req.sequence is None and not req.controlled
    assert [m.prompt for m in req.motions] == ["walk"]


def test_control_fields_parse_into_a_control():
    req = parse(prompt="walk", frames=40, seed=1, path={"points": [[0, 0], [0, 2]], "times": [0, 2]},
                keyframes=[{"frame": 0, "joints": pose()}], loop=True, in_place=True, control_strength=2)
    c = req.control
    assert req.controlled and c.path[0] == "points" and c.keyframes[0][0] == 0 and c.loop and c.in_place
    assert c.strength == 2.0 and c.as_dict()["keyframes"] == [0]
    layered = parse(prompt="walk", frames=40, layer={"part": "right_arm", "prompt": "wave"})
    assert not layered.control.constrained and layered.control.layer == ("right_arm", "wave")   # set after sampling
    assert layered.control.as_dict()["layer"] == {"part": "right_arm", "prompt": "wave", "candidates": None}
    seq = parse(sequence=[{"prompt": "walk", "seconds": 2}, {"prompt": "run", "seconds": 1.5}], seed=4)
    assert seq.frames == 70 and seq.sequence == (("walk", 2.0), ("run", 1.5)) and len(seq.motions) == 1


@pytest.mark.parametrize("fields, field, message", [
    ({"path": [[0, 0], [0, "x"]]}, "path[1][1]", "must be a finite number of metres"),
    ({"path": [[0, 0]] * 42}, "path", "42 per-frame points but the motion has 40 frames"),
    ({"path": {"points": [[0, 0], [1, 1]], "times": [0, 0]}}, "path.times[1]", "each after the one before"),
    ({"path": {"points": [[0, 0]]}}, "path", "must be a list of [x, z] per frame or an object"),
    ({"keyframes": [{"frame": 40, "joints": pose()}]}, "keyframes[0].frame", "integer in [0, 39]"),
    ({"keyframes": [{"frame": 1, "joints": pose()}, {"frame": 1, "joints": pose()}]}, "keyframes[1].frame",
     "is keyed twice"),
    ({"keyframes": [{"frame": 0, "joints": pose()[:21]}]}, "keyframes[0].joints", "a list of 22 [x, y, z]"),
    ({"loop": "yes"}, "loop", "must be true or false"),
    ({"control_strength": -1}, "control_strength", "finite number in [0, 10]"),
    ({"layer": {"part": "tail", "prompt": "wave"}}, "layer.part", "must be one of ['right_arm', 'left_arm', 'arms']"),
    ({"layer": {"part": "arms"}}, "layer", "with 'part' and 'prompt'"),
    ({"layer": {"part": "arms", "prompt": "wave", "candidates": 9}}, "layer.candidates", "integer in [1, 8]"),
    ({"layer": {"part": "arms", "prompt": "  "}}, "layer.prompt", "empty"),
])
def test_bad_control_fields_are_refused_naming_field_and_value(fields, field, message):
    with pytest.raises(ProtocolError) as err:
        parse(prompt="walk", frames=40, **fields)
    assert err.value.field == field and message in err.value.message and err.value.code == "bad_request"


def test_bad_sequences_are_refused_naming_the_entry():
    with pytest.raises(ProtocolError) as err:
        parse(sequence=[{"prompt": "walk", "seconds": 2}], frames=40)
    assert err.value.field == "frames" and "cannot be combined with 'sequence'" in err.value.message
    with pytest.raises(ProtocolError) as err:
        parse(sequence=[{"prompt": "walk", "seconds": 0.2}])
    assert err.value.field == "sequence[0].seconds"
    with pytest.raises(ProtocolError) as err:
        parse(sequence=[{"prompt": "walk", "seconds": 100}, {"prompt": "run", "seconds": 30}])
    assert err.value.code == "too_large" and "130 s in total" in err.value.message
    with pytest.raises(ProtocolError) as err:
        parse(prompt="walk", frames=196, loop=True)
    assert err.value.field == "loop" and "at most 195 frames" in err.value.message


def exchange(server, request: dict, timeout_s: float = 300.0) -> dict:
    """Send one request on a fresh connection -> its terminal event (result or error)."""
    with socket.create_connection((server.host, server.port), timeout=timeout_s) as sock:
        sock.sendall((json.dumps(request) + "\n").encode())
        for line in sock.makefile("rb"):
            event = json.loads(line)
            if event.get("id") == request["id"] and event.get("event") in ("result", "error"):
                return event
    raise AssertionError("the server closed the connection without a result")


def test_path_loop_and_in_place_round_trip(tiny_server):  # noqa: F811
    path = np.stack([np.linspace(0, 3.4, 40), np.zeros(40)], -1)      # along +X, 1.75 m/s
    event = exchange(tiny_server, {"id": "p", "op": "generate", "prompt": "a person walks forward.", "frames": 40,
                                   "seed": 1, "steps": FAST_STEPS, "path": path.tolist()})
    assert event["event"] == "result", event
    motion = event["motions"][0]
    joints = decode_joints(motion["joints"])
    assert joints.shape == (40, 22, 3) and motion["control"]["path_points"] == 40
    assert np.linalg.norm(joints[:, 0, [0, 2]] - path, axis=-1).mean() < 0.3
    event = exchange(tiny_server, {"id": "l", "op": "generate", "prompt": "a person walks forward.", "frames": 40,
                                   "seed": 2, "steps": FAST_STEPS, "loop": True, "in_place": True})
    motion = event["motions"][0]
    assert set(motion["cycle"]) == {"translation_xz", "yaw"} and len(motion["root_track"]["heading"]) == 40
    assert np.allclose(decode_joints(motion["joints"])[:, 0, [0, 2]], 0, atol=1e-5)


def test_keyframes_and_sequence_round_trip_and_model_errors(tiny_server):  # noqa: F811
    start = np.array(pose((1.0, 0.0, 2.0)))
    event = exchange(tiny_server, {"id": "k", "op": "generate", "prompt": "a person walks forward.", "frames": 30,
                                   "seed": 3, "steps": FAST_STEPS, "keyframes": [{"frame": 0, "joints": start.tolist()}]})
    assert event["event"] == "result", event
    assert np.abs(decode_joints(event["motions"][0]["joints"])[0] - start).max() < 1e-4
    event = exchange(tiny_server, {"id": "s", "op": "generate", "seed": 4, "steps": FAST_STEPS,
                                   "sequence": [{"prompt": "a person walks forward.", "seconds": 1.5},
                                                {"prompt": "a person runs forward.", "seconds": 1.0}]})
    assert event["event"] == "result", event
    motion = event["motions"][0]
    assert decode_joints(motion["joints"]).shape == (50, 22, 3)
    assert [(e["start"], e["end"]) for e in motion["sequence"]] == [(0, 30), (30, 50)]
    event = exchange(tiny_server, {"id": "e", "op": "generate", "prompt": "walk", "frames": 30,
                                   "keyframes": [{"frame": 30, "joints": start.tolist()}]})
    assert event["event"] == "error" and event["field"] == "keyframes[0].frame"


def test_a_layered_arm_round_trips_and_hangs_from_the_shoulder(tiny_server):  # noqa: F811
    layer = {"part": "right_arm", "prompt": "a person jumps up and down.", "candidates": 1}   # the take's seed
    event = exchange(tiny_server, {"id": "a", "op": "generate", "prompt": "a person walks forward.", "frames": 40,
                                   "seed": 5, "steps": FAST_STEPS, "layer": layer})
    assert event["event"] == "result", event
    motion = event["motions"][0]
    assert motion["control"]["layer"] == layer
    take = decode_joints(motion["joints"])
    alone = exchange(tiny_server, {"id": "b", "op": "generate", "prompt": layer["prompt"], "frames": 40, "seed": 5,
                                   "steps": FAST_STEPS})
    part = decode_joints(alone["motions"][0]["joints"])
    # the take's right wrist hangs from its shoulder as the part motion's does (heights do not depend on facing)
    assert np.allclose(take[:, 21, 1] - take[:, 17, 1], part[:, 21, 1] - part[:, 17, 1], atol=2e-3)
