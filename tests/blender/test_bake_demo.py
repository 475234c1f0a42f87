"""The main job's bake step (blender_addon/scripts/bake_demo.py) run as build.py runs it, in this bpy version:
the saved .blend holds both rigs with their Actions and NLA strips, and the Cycles picture is written."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.blender.conftest import NO_BPY, REPO, addon_zip
from tests.blender.motion import synthetic_walk

bpy = pytest.importorskip("bpy", reason=NO_BPY)

SCRIPT = REPO / "blender_addon" / "scripts" / "bake_demo.py"
FRAMES = 40


def _run_script(tmp_path) -> tuple[dict, float]:
    """Run the bake script on a 2 s synthetic walk with a tiny, fast picture; returns (report, seconds)."""
    motion = tmp_path / "walk.npy"
    np.save(motion, synthetic_walk(FRAMES).astype(np.float32))
    env = {k: v for k, v in os.environ.items() if k != "BLENDER_USER_RESOURCES"}  # the script makes its own
    cmd = [sys.executable, str(SCRIPT), "--zip", str(addon_zip()), "--motion", str(motion),
           "--prompt", "a person walks.", "--seed", "3", "--model", "test", "--blend", str(tmp_path / "walk.blend"),
           "--png", str(tmp_path / "walk.png"), "--report", str(tmp_path / "report.json"),
           "--columns", "3", "--width", "240", "--samples", "2", "--no-denoise"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    took = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((tmp_path / "report.json").read_text()), took


def _check_rig(addon, obj) -> None:
    """One NLA track whose strip plays a new ReAlign Action keyed on every motion frame."""
    assert obj.animation_data is not None and obj.animation_data.action is None
    tracks = obj.animation_data.nla_tracks
    assert len(tracks) == 1 and len(tracks[0].strips) == 1
    strip = tracks[0].strips[0]
    action = strip.action
    assert action.use_fake_user and action["prompt"] == "a person walks." and action["seed"] == 3
    fps = bpy.context.scene.render.fps / bpy.context.scene.render.fps_base
    assert strip.frame_start == 1 and strip.frame_end == pytest.approx(1 + (FRAMES - 1) * fps / 20, abs=1e-3)
    fcurves, _, _ = addon.keying.action_channels(action, obj)
    rotations = [fc for fc in fcurves if fc.data_path.endswith("rotation_quaternion")]
    assert len(rotations) == 4 * 22 and all(len(fc.keyframe_points) == FRAMES for fc in rotations)


def _coloured_fraction(png) -> tuple[float, float]:
    """Fractions of clearly blue and clearly red pixels in the picture."""
    img = bpy.data.images.load(str(png))
    px = np.empty(img.size[0] * img.size[1] * 4, np.float32)
    img.pixels.foreach_get(px)
    rgb = px.reshape(-1, 4)[:, :3]
    blue = np.mean(rgb[:, 2] > rgb[:, 0] + 0.3)
    red = np.mean(rgb[:, 0] > rgb[:, 2] + 0.3)
    return float(blue), float(red)


def test_bake_demo_script_saves_both_rigs_and_renders_picture(addon, tmp_path):
    report, took = _run_script(tmp_path)
    print(f"bake_demo.py in Blender {report['blender']}: {took:.1f} s "
          f"(bake {report['bake_s']:.2f} s, Cycles {report['render_s']:.1f} s)")
    assert report["frames"] == FRAMES and [r["bones_driven"] for r in report["rigs"]] == [22, 22]
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "walk.blend"))
    arms = {o.name: o for o in bpy.data.objects if o.type == "ARMATURE"}
    assert set(arms) == {"ReAlign Skeleton", "Mixamo Rig"}
    assert len(bpy.data.objects) == 2  # the picture's scene is not saved
    mixamo = arms["Mixamo Rig"]
    assert "mixamorig:LeftHandIndex1" in mixamo.data.bones and mixamo.scale[0] == pytest.approx(0.01)
    assert json.loads(mixamo["realign_bone_map"])["right_wrist"] == "mixamorig:RightHand"
    for obj in arms.values():
        _check_rig(addon, obj)
    img = bpy.data.images.load(str(tmp_path / "walk.png"))
    assert img.size[0] == 240 and img.size[1] > 60
    blue, red = _coloured_fraction(tmp_path / "walk.png")
    assert blue > 0.002 and red > 0.002, (blue, red)  # left (blue) and right (red) bones are in the picture
