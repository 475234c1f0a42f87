"""Bake a generated motion onto the ReAlign skeleton and a Mixamo-style rig, headlessly, and picture it on bodies.

The last step of ``python build.py demo`` (after ``realign generate``), in the
``bpy`` module of ``.venv-bpy50`` or in Blender itself:

    .venv-bpy50/bin/python blender_addon/scripts/bake_demo.py --zip dist/realign_blender-0.1.0.zip \\
        --motion out/demo/walk_wave.npy --prompt "..." --blend out/demo/walk_wave.blend \\
        --png out/demo/retarget_demo.png --gif-frames out/demo/gif_frames
    blender -b --python blender_addon/scripts/bake_demo.py -- --motion ... (same arguments)

It installs and enables the built extension zip (``--zip``; into a temporary
user folder when run as the ``bpy`` module; without ``--zip`` an enabled
``realign_blender`` is used), empties the scene, creates the ReAlign skeleton
with its mannequin (the add-on's operator) and a Mixamo-style rig
(``demo_rigs.py``: cm, 0.01 scale, A-pose) with a preview mannequin sized to
its bones (the add-on's *Add preview mannequin*), bakes the motion onto both
with the add-on's ``armature_io.bake`` (an Action with a fake user and an NLA
strip each), saves the .blend, renders a strip of frames (``--png``) and the
frames of an animation (``--gif-frames``; build.py makes the GIF) with
Workbench (or ``--engine cycles`` for the strip), see ``preview.py``, and
writes a JSON report (``--report``).  Blender's Python only: stdlib + numpy.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

if "bpy" not in sys.modules:  # the bpy module: keep the user's Blender configuration out of it
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="realign-bake-demo-"))

import bpy  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import demo_rigs  # noqa: E402
import preview  # noqa: E402

ADDON = "realign_blender"
MIXAMO_LOCATION = (1.2, 0.0, 0.0)
# (strip label, animation label) per rig
LABELS = (("ReAlign skeleton + mannequin (22 bones, m)", "ReAlign skeleton"),
          ("Mixamo-style rig + preview mannequin (cm, 0.01 scale, A-pose)", "Mixamo-style rig"))


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Arguments after ``--`` inside Blender, else the command line's."""
    if "--" in argv:
        argv = argv[argv.index("--") + 1:]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--motion", required=True, help="joints (F, 22, 3) .npy, metres, Y up, 20 fps")
    p.add_argument("--blend", required=True, help="the .blend to write")
    p.add_argument("--png", help="the picture to render (omit to skip rendering)")
    p.add_argument("--zip", help="the built extension zip to install and enable")
    p.add_argument("--prompt", default="", help="stored on the Actions")
    p.add_argument("--seed", type=int, default=-1, help="stored on the Actions")
    p.add_argument("--model", default="", help="stored on the Actions")
    p.add_argument("--columns", type=int, default=6, help="frames shown per armature")
    p.add_argument("--width", type=int, default=1200, help="picture width, pixels")
    p.add_argument("--engine", choices=("workbench", "cycles"), default="workbench", help="engine of the strip")
    p.add_argument("--samples", type=int, default=16, help="Cycles samples")
    p.add_argument("--no-denoise", action="store_true", help="skip Cycles' denoiser")
    p.add_argument("--gif-frames", help="render the animation's frames (PNG) into this folder")
    p.add_argument("--gif-width", type=int, default=480, help="animation width, pixels")
    p.add_argument("--gif-fps", type=float, default=10.0, help="animation frames per second of motion")
    p.add_argument("--report", help="write a JSON report here")
    return p.parse_args(argv)


def load_addon(zip_path: str | None):
    """Install and enable the zip (when given) and return the add-on package module."""
    if zip_path:
        result = bpy.ops.extensions.package_install_files(repo="user_default", filepath=str(Path(zip_path).resolve()),
                                                          enable_on_install=True)
        if result != {"FINISHED"}:
            raise SystemExit(f"could not install {zip_path}: {result}")
    names = [n for n in bpy.context.preferences.addons.keys() if n == ADDON or n.endswith("." + ADDON)]
    if not names:
        raise SystemExit(f"the {ADDON} extension is not enabled: pass --zip dist/{ADDON}-<version>.zip")
    return importlib.import_module(names[0])


def empty_scene() -> bpy.types.Scene:
    """Remove every object (the startup cube, camera, light) and reset the frame range."""
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    scene = bpy.context.scene
    scene.frame_start = scene.frame_current = 1
    return scene


def create_armature(name: str, bones: list, object_matrix: np.ndarray) -> bpy.types.Object:
    """An armature object from (name, parent, head, tail) bones (zero roll), quaternion rotation mode."""
    from mathutils import Matrix

    arm = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, arm)
    bpy.context.scene.collection.objects.link(obj)
    obj.matrix_world = Matrix(np.asarray(object_matrix).tolist())
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    for bname, parent, head, tail in bones:
        eb = arm.edit_bones.new(bname)
        eb.head, eb.tail = tuple(map(float, head)), tuple(map(float, tail))
        if parent:
            eb.parent = arm.edit_bones[parent]
    bpy.ops.object.mode_set(mode="OBJECT")
    for pb in obj.pose.bones:
        pb.rotation_mode = "QUATERNION"
    return obj


def create_rigs() -> list[tuple[bpy.types.Object, str]]:
    """The ReAlign skeleton with its mannequin (at the origin) and the Mixamo-style rig beside it with a preview
    mannequin (the add-on's operators), with picture labels."""
    bpy.ops.realign.create_skeleton()
    skeleton = bpy.context.active_object
    mixamo = create_armature("Mixamo Rig", demo_rigs.mixamo_bones(), demo_rigs.mixamo_object_matrix(MIXAMO_LOCATION))
    bpy.context.view_layer.objects.active = mixamo
    if bpy.ops.realign.add_mannequin() != {"FINISHED"}:
        raise SystemExit("Add preview mannequin failed on the Mixamo-style rig")
    return [(skeleton, LABELS[0][0]), (mixamo, LABELS[1][0])]


def body_facts(rigs: list) -> list[dict]:
    """Each armature's body mesh: name, vertices, faces, weighted bones."""
    facts = []
    for obj, _ in rigs:
        body = preview.body_mesh(obj)
        facts.append({"armature": obj.name, "mesh": body.name, "vertices": len(body.data.vertices),
                      "faces": len(body.data.polygons), "vertex_groups": len(body.vertex_groups)})
    return facts


def bake_all(addon, rigs: list, joints: np.ndarray, meta: dict) -> list[dict]:
    """Bake the motion onto every armature (Action + NLA strip from frame 1); returns per-rig facts."""
    facts = []
    for obj, _ in rigs:
        action, strip, result = addon.armature_io.bake(obj, joints, meta, start_frame=1)
        facts.append({"armature": obj.name, "action": action.name, "strip": strip.name,
                      "frame_start": strip.frame_start, "frame_end": strip.frame_end,
                      "bones_driven": int(result.driven.sum()), "scale": round(float(result.scale), 4)})
    scene = bpy.context.scene
    scene.frame_end = math.ceil(max(f["frame_end"] for f in facts))
    return facts


def picture_rows(rigs: list, frames: int, columns: int) -> list[preview.Row]:
    """Snapshots of each baked armature at ``columns`` evenly spaced motion frames."""
    scene = bpy.context.scene
    fps = scene.render.fps / scene.render.fps_base
    idx = np.unique(np.linspace(0, frames - 1, max(1, columns)).round().astype(int))
    times = [i / 20.0 for i in idx]
    rows = []
    for obj, label in rigs:
        root = json.loads(obj["realign_bone_map"])["pelvis"]
        rows.append(preview.make_row(obj, label, [1 + i * fps / 20.0 for i in idx], times, root))
    return rows


def main(argv: list[str]) -> int:
    """Bake, save, render, report."""
    args = parse_args(argv)
    joints = np.load(args.motion).astype(np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (22, 3):
        raise SystemExit(f"{args.motion}: expected joints (F, 22, 3), got {joints.shape}")
    report: dict = {"blender": bpy.app.version_string, "motion": args.motion, "frames": len(joints)}
    addon = load_addon(args.zip)
    empty_scene()
    start = time.perf_counter()
    rigs = create_rigs()
    meta = {k: v for k, v in (("prompt", args.prompt), ("seed", args.seed), ("model", args.model)) if v not in ("", -1)}
    report["rigs"] = bake_all(addon, rigs, joints, meta)
    report["bake_s"] = round(time.perf_counter() - start, 3)
    report["bodies"] = body_facts(rigs)
    Path(args.blend).parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(Path(args.blend).resolve()))
    report["blend"] = args.blend
    if args.png:
        start = time.perf_counter()
        settings = preview.RenderSettings(args.width, args.samples, not args.no_denoise, args.engine)
        preview.render_preview(picture_rows(rigs, len(joints), args.columns), Path(args.png).resolve(), settings)
        report["png"], report["render_s"] = args.png, round(time.perf_counter() - start, 3)
        report["engine"] = args.engine
    if args.gif_frames:
        start = time.perf_counter()
        fps = bpy.context.scene.render.fps / bpy.context.scene.render.fps_base
        idx = np.arange(0, len(joints), max(1, round(20.0 / args.gif_fps)))
        short = [(obj, LABELS[k][1]) for k, (obj, _) in enumerate(rigs)]
        paths = preview.render_animation(short, Path(args.gif_frames).resolve(), [1 + i * fps / 20.0 for i in idx],
                                         args.gif_width)
        report["gif_frames"], report["gif_fps"] = len(paths), 20.0 / max(1, round(20.0 / args.gif_fps))
        report["gif_frames_dir"], report["gif_render_s"] = args.gif_frames, round(time.perf_counter() - start, 3)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


def _cleanup() -> None:
    """Remove the temporary user folder this script made (bpy module only)."""
    folder = os.environ.get("BLENDER_USER_RESOURCES", "")
    if Path(folder).name.startswith("realign-bake-demo-"):
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    try:
        raise SystemExit(main(sys.argv[1:]))
    finally:
        _cleanup()
