"""Drive the installed extension against a real server, inside a bpy environment; print a JSON report.

Run by tests/test_blender_server.py (main suite, which owns the server):

    .venv-bpy50/bin/python tests/blender/drive_real_server.py --zip Z --port P --out report.json --blend x.blend
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="realign-blender-user-"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import bpy  # noqa: E402
import numpy as np  # noqa: E402

from tests import retarget_rigs  # noqa: E402
from tests.blender.helpers import armature_from_rig  # noqa: E402

MODULE = "bl_ext.user_default.realign_blender"
FAST_STEPS = 5


def takes(prompt: str) -> list[dict]:
    return [{"name": a.name, "seed": a.get("seed"), "strength": a.get("strength"), "model": a.get("model"),
             "server_version": a.get("server_version"), "foot_lock": a.get("foot_lock")}
            for a in bpy.data.actions if a.get("prompt") == prompt]


def run(addon, op, timeout: float = 300.0) -> float:
    start = time.perf_counter()
    assert op() == {"FINISHED"}
    addon.jobs.wait(bpy.context, timeout=timeout)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--zip", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--blend", required=True)
    args = parser.parse_args()
    bpy.ops.extensions.package_install_files(repo="user_default", filepath=args.zip, enable_on_install=True)
    addon = importlib.import_module(MODULE)
    bpy.context.preferences.addons[MODULE].preferences.port = args.port
    s = bpy.context.scene.realign
    report: dict = {"blender": bpy.app.version_string}

    bpy.ops.realign.create_skeleton()
    skeleton = bpy.context.active_object
    s.prompt, s.seconds, s.seed, s.takes, s.strength, s.steps = "a person walks forward.", 3.0, 7, 2, 0.0, FAST_STEPS
    s.foot_lock = "on"                    # the tiny models' default is off: the user's choice travels to the server
    bpy.ops.realign.check_server()
    report["generate_s"] = run(addon, bpy.ops.realign.generate)
    report["status"] = {"status": s.status, "model": s.model, "device": s.device, "message": s.message}
    report["generate"] = takes(s.prompt)

    report["regenerate_s"] = run(addon, lambda: bpy.ops.realign.regenerate(strength=2.0))
    report["after_regenerate"] = takes(s.prompt)
    report["track_mutes"] = [t.mute for t in skeleton.animation_data.nla_tracks]

    s.steps, s.seconds, s.takes = 1000, 9.8, 1
    bpy.ops.realign.generate()
    deadline = time.monotonic() + 120
    while s.progress <= 0 and time.monotonic() < deadline and addon.jobs.JOBS:
        addon.jobs.drain(bpy.context, block_s=0.2)
    bpy.ops.realign.cancel()
    addon.jobs.wait(bpy.context, timeout=120)
    report["cancel"] = {"message": s.message, "busy": s.busy}

    rig, _ = retarget_rigs.mixamo_rig(np.random.default_rng(0))
    mixamo = armature_from_rig(rig, "Mixamo")
    s.steps = FAST_STEPS
    for prompt, arm, start in (("a person jumps.", skeleton, 300), ("a person waves.", mixamo, 1),
                               ("a person runs.", mixamo, 150)):
        row = s.batch.add()
        row.prompt, row.armature, row.start_frame, row.seconds, row.strength = prompt, arm, start, 2.0, 0.0
    report["batch_s"] = run(addon, bpy.ops.realign.batch_bake)
    report["batch"] = {"message": s.message,
                       "mixamo_strips": sorted(st.frame_start for t in mixamo.animation_data.nla_tracks
                                               for st in t.strips)}

    s.steps, s.seconds, s.takes, s.prompt = 0, 9.8, 1, "a person walks in a circle."
    report["benchmark_click_to_keyed_s"] = run(addon, bpy.ops.realign.generate)
    report["benchmark_message"] = s.message
    bpy.ops.wm.save_as_mainfile(filepath=args.blend)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
