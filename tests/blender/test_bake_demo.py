"""The main job's bake step (blender_addon/scripts/bake_demo.py) run as build.py runs it, in this bpy version:
the saved .blend holds both rigs with their mannequins, Actions and NLA strips; the strip picture (Cycles
here, Workbench in the main job) and the animation's Workbench frames are written."""
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
           "--columns", "3", "--width", "240", "--engine", "cycles", "--samples", "2", "--no-denoise",
           "--gif-frames", str(tmp_path / "frames"), "--gif-width", "160", "--gif-fps", "2"]
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


def _pixels(png) -> np.ndarray:
    img = bpy.data.images.load(str(png))
    px = np.empty(img.size[0] * img.size[1] * 4, np.float32)
    img.pixels.foreach_get(px)
    return px.reshape(-1, 4)


def _mannequin_fraction(png) -> float:
    """Fraction of the picture's pixels in the mannequin's warm wooden tone (red clearly above blue)."""
    rgb = _pixels(png)[:, :3]
    return float(np.mean((rgb[:, 0] > rgb[:, 2] + 0.08) & (rgb[:, 0] > 0.15)))


def test_bake_demo_script_saves_both_rigs_and_renders_picture(addon, tmp_path):
    report, took = _run_script(tmp_path)
    print(f"bake_demo.py in Blender {report['blender']}: {took:.1f} s (bake {report['bake_s']:.2f} s, "
          f"Cycles strip {report['render_s']:.1f} s, {report['gif_frames']} Workbench frames "
          f"{report['gif_render_s']:.1f} s)")
    assert report["frames"] == FRAMES and [r["bones_driven"] for r in report["rigs"]] == [22, 22]
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "walk.blend"))
    arms = {o.name: o for o in bpy.data.objects if o.type == "ARMATURE"}
    assert set(arms) == {"ReAlign Skeleton", "Mixamo Rig"}
    assert len(bpy.data.objects) == 4  # two armatures and their mannequins; the pictures' objects are not saved
    assert all(addon.body_objects.body_of(obj) is not None for obj in arms.values())
    assert [b["vertex_groups"] for b in report["bodies"]] == [22, 22]
    mixamo = arms["Mixamo Rig"]
    assert "mixamorig:LeftHandIndex1" in mixamo.data.bones and mixamo.scale[0] == pytest.approx(0.01)
    assert json.loads(mixamo["realign_bone_map"])["right_wrist"] == "mixamorig:RightHand"
    for obj in arms.values():
        _check_rig(addon, obj)
    img = bpy.data.images.load(str(tmp_path / "walk.png"))
    assert img.size[0] == 240 and img.size[1] > 60
    body = _mannequin_fraction(tmp_path / "walk.png")
    assert body > 0.02, body  # the mannequins are in the picture
    frames = sorted((tmp_path / "frames").glob("frame_*.png"))
    assert len(frames) == report["gif_frames"] == 4  # 2 s of motion at 2 frames per second
    first, last = _pixels(frames[0]), _pixels(frames[-1])
    assert first.shape == last.shape and np.mean(first[:, 3] > 0.5) > 0.02  # bodies drawn (transparent film)
    assert np.abs(first - last).mean() > 1e-3  # and they moved
