"""The add-on's Control panel actions in bpy 5.0.1 / 4.5.15 against a real server on the shipped models.

The server (``python -m server --models models/default``, CPU, this environment's torch) is owned here;
Blender runs in its own bpy environment as a subprocess (tests/blender/drive_control.py) that clicks
Follow path (a curve, then an empty), Regenerate (of the path take and of a sequence), Follow path from the
current frame, Continue from current frame, In-between selected keyframes, Generate sequence, Generate with a Layer (an arm), Batch bake
with rows carrying Loop and Path, and Generate with Loop + Root track (object, UE root bone, a rig generated
by the bundled Rigify), plus the error cases, and reports what Blender evaluates afterwards and what the
add-on sent. 5 sampler steps, no reward guidance unless a Regenerate asks for it: about 20 s per Blender
version.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.server_fixtures import BPY, bpy_python, launch_tiny_server

SCRIPT = REPO_ROOT / "tests" / "blender" / "drive_control.py"
MODELS = REPO_ROOT / "models" / "default"


@pytest.fixture(scope="module")
def default_server(tmp_path_factory):
    if not (MODELS / "denoiser" / "best.pt").exists():
        pytest.skip(f"{MODELS} has no trained denoiser")
    process = launch_tiny_server(MODELS, tmp_path_factory)
    yield process
    process.stop()


def _error(report: dict, key: str, words: str) -> None:
    entry = report[key]
    assert entry["result"] == ["CANCELLED"] and words in entry["message"] and words in entry["reported"], entry


@pytest.mark.parametrize("version", list(BPY))
def test_control_actions_against_a_real_server(version, default_server, tmp_path):
    python, zip_path = bpy_python(version)
    out = tmp_path / "report.json"
    cmd = [str(python), str(SCRIPT), "--zip", str(zip_path), "--port", str(default_server.port), "--out", str(out)]
    proc = subprocess.run(cmd, check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT),
                               "BLENDER_USER_RESOURCES": str(tmp_path / "blender_user")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + default_server.log_tail()
    r = json.loads(out.read_text())
    print(json.dumps(r, indent=1), file=sys.stderr)
    assert r["blender"].startswith(version[:3])
    runs = [k for k in r if k.endswith("_run")]
    assert all(r[k]["result"] == ["FINISHED"] and "1 take(s) baked" in r[k]["message"] for k in runs), runs

    # errors: reported in the panel, nothing sent, the user's data kept
    _error(r, "error_no_points", "has no points")
    _error(r, "error_out_of_range", "must span 1 s to")
    assert r["error_out_of_range"]["action_kept"] == "MyKeys"
    _error(r, "error_empty_sequence", "sequence is empty")
    _error(r, "error_blank_prompt", "row 2 has no prompt")
    assert r["error_blank_prompt"]["rows_kept"] == 2

    # path from a curve: the baked hips start on the curve's start and stay near it (the server's own
    # deviation plus retargeting); walk to an empty: from the rig's hips to the empty
    path = r["path"]
    assert path["start_gap_cm"] < 1.0 and path["mean_cm"] < 15.0 and path["max_cm"] < 40.0, path
    assert path["end_gap_cm"] < 30.0, path
    # regenerate: the same request (path, frames, seed, steps, control strength) but the strength, a new take on
    # the walker (another object was active) that follows the curve as closely as the original
    regen = r["regenerate"]
    assert regen["differ"] == [] and regen["strength"] == [0.0, 1.0] and regen["action_strength"] == 1.0, regen
    assert {"path", "control_strength", "frames", "seed", "steps"} <= set(regen["same"]), regen
    assert regen["new_tracks"] == 1 and regen["strip_start"] == 1, regen
    assert regen["start_gap_cm"] < 1.0 and regen["max_cm"] < 40.0 and regen["end_gap_cm"] < 30.0, regen
    assert abs(regen["mean_cm"] - path["mean_cm"]) < 5.0, (regen, path)
    empty = r["empty"]
    assert empty["start_gap_cm"] < 1.0 and empty["end_gap_cm"] < 20.0 and empty["mean_cm"] < 10.0, empty

    # continue: the new take starts in the pose the rig had there; the old take still plays before it
    cont = r["continue"]
    assert cont["max_cm"] < 1.0 and cont["before_unchanged_cm"] < 1e-3, cont
    assert cont["strip_start"] == 41 and cont["extrapolation"] == "HOLD_FORWARD", cont
    assert cont["mutes"] == [True, False, False], cont      # the path take (muted by its regenerated take) stays so

    # path + continue in one take: both fields sent; starts in the pose at frame 37, walks onto the curve
    pc = r["path_continue"]
    assert pc["sent"] == ["keyframes", "path"] and pc["key_frames"] == [0], pc
    assert pc["pose_max_cm"] < 4.0 and pc["before_unchanged_cm"] < 1e-3, pc
    assert pc["strip_start"] == 37 and pc["extrapolation"] == "HOLD_FORWARD", pc
    assert pc["start_gap_cm"] < 1.0 and pc["mean_cm"] < 15.0 and pc["max_cm"] < 40.0 and pc["end_gap_cm"] < 30.0, pc

    # in-between: the keyed poses are hit; the keys are stashed on a muted track, not lost.  The take's joints
    # meet the keys exactly (warp); on the rig, whose bones are rigid, a generated motion's slightly stretching
    # bones leave the farthest of 22 joints x 3 keys a few cm off (mean under 1 cm)
    inb = r["inbetween"]
    assert inb["mean_cm"] < 1.5 and inb["max_cm"] < 5.0 and inb["strip_start"] == 1, inb
    assert inb["active_action"] is None and inb["stashed"] == [["MyKeys", True]], inb

    # sequence: one Action of the total length, segments as asked
    seq = r["sequence"]
    assert seq["new_actions"] == 1 and seq["tracks"] == 1 and seq["keys"] == [80], seq
    assert [(s["start"], s["end"]) for s in seq["segments"]] == [(0, 40), (40, 80)]
    second = 1 + 40 * r["scene_fps"] / 20
    assert seq["markers"] == [[1, "a person walks forward."], [second, "a person jumps."]], seq
    seq_regen = r["sequence_regenerate"]
    assert seq_regen["same_sequence"] and seq_regen["strength"] == 0.5 and seq_regen["keys"] == [80], seq_regen
    assert seq_regen["tracks"] == 2 and seq_regen["markers"] == seq["markers"], seq_regen

    # layer: refused without its prompt (nothing sent); the walk's right wrist then hangs from its shoulder as in
    # the layer prompt's own take (the retarget onto the ReAlign skeleton keeps heights to a few mm)
    _error(r, "error_layer_prompt", "the layer has no prompt")
    assert r["error_layer_prompt"]["sent"] == 0
    lay = r["layer"]
    assert lay["sent"] == {"part": "right_arm", "prompt": "a person raises the right hand."}, lay
    assert not lay["alone_sent"] and lay["wrist_height_gap_cm"] < 1.0, lay

    # batch: rows carry Loop and Path; a row whose path cannot be read stops the batch before anything is sent
    _error(r, "error_batch_row", "batch row 1: curve 'NoPoints' has no points")
    assert r["error_batch_row"]["sent"] == 0
    assert r["batch_bake"]["result"] == ["FINISHED"] and "2 take(s) baked" in r["batch_bake"]["message"]
    batch = r["batch"]
    assert batch["rows"] == [[False, "BatchCurve"], [True, None]], batch
    assert batch["sent"] == [["control_strength", "path"], ["control_strength", "loop"]], batch
    bp = batch["path"]
    assert bp["start_gap_cm"] < 1.0 and bp["mean_cm"] < 15.0 and bp["max_cm"] < 40.0 and bp["end_gap_cm"] < 30.0
    assert batch["loop_cyclic"] and batch["loop_all_cycles"] and batch["loop_frames"] == 60, batch

    # loop + root track on the object: Cycles modifiers everywhere, no pop at the seam, travel on the root
    loop = r["loop"]
    assert loop["all_cycles"] and loop["action_cyclic"] and loop["cycle_frames"] == 60, loop
    assert loop["location_modes"] == ["REPEAT_OFFSET"] and loop["rotation_modes"] == ["REPEAT"], loop
    assert loop["strip_frames"] == pytest.approx(4 * 60 * r["scene_fps"] / 20)
    assert loop["seam_step_cm"] < 2 * loop["inside_step_median_cm"], loop
    assert loop["seam_accel_cm"] <= loop["inside_accel_max_cm"], loop
    assert loop["root_paths"] == ["location"] and loop["root_modes"] == ["REPEAT_OFFSET"], loop
    assert loop["root_travel_m"] > 1.0 and loop["hips_off_root_cm"] < 1.0, loop
    assert loop["root_travel_3_cycles_m"] == pytest.approx(3 * loop["root_travel_m"], rel=0.05)
    bone = r["root_bone"]
    assert bone["root_track"] == "bone:root" and not bone["object_moved"], bone
    assert bone["root_travel_m"] > 1.0 and bone["hips_off_root_cm"] < 1.0, bone
    rigify = r["rigify"]     # the torso control hangs under MCH-torso.parent, which follows root by a constraint
    assert rigify["root_track"] == "bone:root" and rigify["root_paths"] == ['pose.bones["root"].location'], rigify
    assert rigify["root_travel_m"] > 1.0 and rigify["torso_off_root_cm"] < 1.0 and not rigify["object_moved"], rigify
