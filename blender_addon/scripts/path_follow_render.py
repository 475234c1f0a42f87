"""Render a path-following take in Blender: the add-on's *Follow path* on a curve, the curve visible.

One command (the ``bpy`` module of ``.venv-bpy50``; it starts the checkout's server on ``models/default``
with the add-on's own *Start server* code unless ``--port`` names a running one):

    .venv-bpy50/bin/python blender_addon/scripts/path_follow_render.py --zip dist/realign_blender-0.1.0.zip \\
        --png docs/img/path_follow_blender.png

It installs the extension zip into a temporary user folder, creates the ReAlign skeleton with its mannequin,
draws an S-shaped Bezier curve, clicks *Follow path* (the real job machinery and server: the default 50 DDIM
steps, no reward guidance unless ``--strength``), then pictures the evaluated scene with Workbench: the
mannequin at a few moments of the take, the curve as an orange tube and the baked hips' ground track as a
blue line. It prints (and writes next to the PNG as .json) the hips' deviation from the curve in cm.
Blender's Python only: stdlib + numpy.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

if "bpy" not in sys.modules:  # the bpy module: keep the user's Blender configuration out of it
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="realign-path-render-"))

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import preview

MODULE = "bl_ext.user_default.realign_blender"
# Bezier control points (x, y) in metres, handles automatic: an S through the floor, about 5.5 m long.
CURVE_XY = [(0.0, 0.0), (0.4, -1.6), (1.6, -2.6), (2.4, -4.0)]
SHOTS = 6
ELEVATION, AZIMUTH = np.radians(38.0), np.radians(-62.0)


def parse_args(argv: list[str]) -> argparse.Namespace:
    if "--" in argv:
        argv = argv[argv.index("--") + 1:]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--zip", required=True, help="the built extension zip (python3.11 build.py addon)")
    p.add_argument("--png", default="docs/img/path_follow_blender.png")
    p.add_argument("--port", type=int, default=0, help="a running server's port (0: start one)")
    p.add_argument("--prompt", default="a person walks forward.")
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--steps", type=int, default=0, help="sampler steps (0: the server's default)")
    p.add_argument("--strength", type=float, default=0.0, help="reward guidance strength")
    p.add_argument("--width", type=int, default=1400)
    return p.parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(addon, port: int, timeout_s: float = 300.0):
    """Start the checkout's server with the add-on's own launcher; wait for its hello."""
    cmd = addon.server_launch.find_command("", "", port)
    process, log = addon.server_launch.start(cmd)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            addon.connection.hello("127.0.0.1", port)
            return process
        except Exception:  # noqa: BLE001 - not listening yet
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start ({' '.join(cmd.argv)}); log: {log}") from None
            time.sleep(0.5)


def bezier_curve(name: str) -> bpy.types.Object:
    data = bpy.data.curves.new(name, "CURVE")
    data.dimensions = "3D"
    spline = data.splines.new("BEZIER")
    spline.bezier_points.add(len(CURVE_XY) - 1)
    for p, (x, y) in zip(spline.bezier_points, CURVE_XY):
        p.co = (x, y, 0.0)
        p.handle_left_type = p.handle_right_type = "AUTO"
    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def hips_track(addon, obj, frames: np.ndarray) -> np.ndarray:
    bone = addon.armature_io.get_bone_map(obj)["pelvis"]
    out = []
    for f in frames:
        bpy.context.scene.frame_set(int(np.floor(f)), subframe=float(f - np.floor(f)))
        out.append((np.array(obj.matrix_world) @ np.append(np.array(obj.pose.bones[bone].head), 1.0))[:3])
    return np.array(out)


def deviation_cm(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Distance (cm) of each ground point (N, 2) to a dense polyline (M, 2)."""
    a, b = line[:-1], line[1:]
    ab = b - a
    t = np.clip(np.einsum("nmk,mk->nm", points[:, None] - a[None], ab) / np.maximum(np.sum(ab * ab, -1), 1e-12), 0, 1)
    return 100 * np.min(np.linalg.norm(points[:, None] - (a[None] + t[..., None] * ab[None]), axis=-1), axis=1)


def camera_rotation() -> np.ndarray:
    a, c = np.pi / 2 - ELEVATION, AZIMUTH
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ rx


def line_object(scene, name: str, points: np.ndarray, radius: float, mat) -> bpy.types.Object:
    """A tube along world points (N, 3) (a poly curve with a bevel)."""
    data = bpy.data.curves.new(name, "CURVE")
    data.dimensions, data.bevel_depth, data.bevel_resolution = "3D", radius, 3
    spline = data.splines.new("POLY")
    spline.points.add(len(points) - 1)
    for p, xyz in zip(spline.points, points):
        p.co = (*xyz, 1.0)
    data.materials.append(mat)
    obj = bpy.data.objects.new(name, data)
    scene.collection.objects.link(obj)
    return obj


def picture(addon, skeleton, curve_world: np.ndarray, hips: np.ndarray, frames: np.ndarray, png: Path,
            width: int) -> None:
    """Mannequin snapshots at SHOTS moments, the curve and the hips' track, rendered with Workbench."""
    body = preview.body_mesh(skeleton)
    palette = [preview.material(f"body {i}", tuple(m.diffuse_color)) for i, m in enumerate(body.data.materials)]
    scene = bpy.data.scenes.new("ReAlign path picture")
    preview.setup_workbench(scene)
    scene.display.shading.shadow_intensity = 0.2
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.data.type, camera.data.clip_end = "ORTHO", 200.0
    rot = camera_rotation()
    camera.rotation_euler = (np.pi / 2 - ELEVATION, 0.0, AZIMUTH)
    scene.collection.objects.link(camera)
    scene.camera = camera
    points = []
    for k, f in enumerate(np.linspace(frames[0], frames[-1], SHOTS)):
        verts, tris, slots = preview.body_snapshot(body, float(f))
        preview.mesh_object(scene, f"shot {k}", verts, tris, np.minimum(slots, len(palette) - 1), palette)
        points.append(verts)
    line_object(scene, "curve", curve_world + [0, 0, 0.01], 0.025, preview.material("path", (1.0, 0.45, 0.05, 1)))
    line_object(scene, "hips track", hips * [1, 1, 0] + [0, 0, 0.02], 0.012,
                preview.material("track", (0.1, 0.3, 0.85, 1)))
    allp = np.concatenate(points + [curve_world])
    lo, hi = allp.min(0) - 0.6, allp.max(0) + 0.6
    floor = np.array([[lo[0], lo[1], 0.0], [hi[0], lo[1], 0.0], [hi[0], hi[1], 0.0], [lo[0], hi[1], 0.0]])
    preview.mesh_object(scene, "floor", floor, np.array([[0, 1, 2, 3]]), np.zeros(1),
                        [preview.material("floor", preview.FLOOR_COLOUR)])
    local = allp @ rot
    lo, hi = local.min(0) - 0.15, local.max(0) + 0.15
    centre = (lo + hi) / 2
    centre[2] = hi[2] + 50.0
    camera.location = tuple(rot @ centre)
    w, h = hi[0] - lo[0], hi[1] - lo[1]
    camera.data.ortho_scale = max(w, h)
    scene.render.resolution_x, scene.render.resolution_y = width, max(16, round(width * h / w))
    scene.render.resolution_percentage = 100
    with tempfile.TemporaryDirectory(prefix="realign-path-") as tmp:
        scene.render.filepath = str(Path(tmp) / "shot.png")
        bpy.ops.render.render(write_still=True, scene=scene.name)
        px = preview.read_pixels(Path(tmp) / "shot.png")
    rgb = px[..., :3] * px[..., 3:] + (1.0 - px[..., 3:])
    preview.write_png(np.concatenate([rgb, np.ones_like(px[..., 3:])], -1), png)


def main() -> int:
    args = parse_args(sys.argv if "--" in sys.argv else sys.argv[1:])
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.extensions.package_install_files(repo="user_default", filepath=str(Path(args.zip).resolve()),
                                             enable_on_install=True)
    addon = importlib.import_module(MODULE)
    port = args.port or free_port()
    server = None if args.port else start_server(addon, port)
    try:
        bpy.context.preferences.addons[MODULE].preferences.port = port
        s = bpy.context.scene.realign
        s.prompt, s.seconds, s.seed, s.strength, s.steps = args.prompt, args.seconds, args.seed, args.strength, \
            args.steps
        bpy.ops.realign.create_skeleton(body=True)
        skeleton = bpy.context.view_layer.objects.active
        s.path_target = bezier_curve("Path")
        started = time.perf_counter()
        assert bpy.ops.realign.follow_path() == {"FINISHED"}
        addon.jobs.wait(bpy.context, timeout=600)
        took = time.perf_counter() - started
        if "baked" not in s.message or "problem" in s.message:
            raise SystemExit(f"Follow path failed: {s.message}")
    finally:
        if server is not None:
            addon.server_launch.stop(server)
    scene = bpy.context.scene
    curve_world = addon.control_input.curve_points(s.path_target, bpy.context.evaluated_depsgraph_get())
    strip = skeleton.animation_data.nla_tracks[-1].strips[0]
    count = round(args.seconds * 20)
    frames = strip.frame_start + np.arange(count) * (scene.render.fps / scene.render.fps_base) / 20
    hips = hips_track(addon, skeleton, frames)
    dev = deviation_cm(hips[:, :2], addon.control_input.resample(curve_world[:, :2], 2000))
    report = {"prompt": args.prompt, "seconds": args.seconds, "seed": args.seed, "steps": args.steps or "default",
              "strength": args.strength, "curve_length_m": float(np.sum(np.linalg.norm(np.diff(curve_world, axis=0),
                                                                                      axis=-1))),
              "mean_deviation_cm": round(float(dev.mean()), 1), "max_deviation_cm": round(float(dev.max()), 1),
              "end_gap_cm": round(float(np.linalg.norm(hips[-1, :2] - curve_world[-1, :2]) * 100), 1),
              "click_to_keyed_s": round(took, 1), "blender": bpy.app.version_string}
    png = Path(args.png)
    picture(addon, skeleton, curve_world, hips, frames, png, args.width)
    png.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
