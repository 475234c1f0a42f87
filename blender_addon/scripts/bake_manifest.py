"""Bake a ``realign batch`` manifest into a .blend, headlessly: the farm-node side of docs/scale.md.

    blender -b SCENE.blend --python blender_addon/scripts/bake_manifest.py -- \\
        --manifest out/crowd --blend out/crowd_baked.blend [--create-missing] [--layout rows|sequence]
    .venv-bpy50/bin/python blender_addon/scripts/bake_manifest.py --zip dist/realign_blender-0.1.0.zip \\
        --scene SCENE.blend --manifest out/crowd/manifest.jsonl --blend out/crowd_baked.blend --report r.json

Opens ``--scene`` (when given; ``blender -b SCENE.blend`` has it open already),
installs and enables the add-on zip (``--zip``; else an enabled
``realign_blender`` is used), bakes every motion of the manifest with the
add-on's *Import batch results* (``batch_import.import_results``: each motion
onto the armature its row names, or all onto ``--armature``; NLA strips at the
rows' start frames, or one after another with ``--layout sequence``), saves
``--blend`` and writes a JSON report (``--report``).  ``--create-missing`` adds
a ReAlign skeleton for every armature name the scene lacks (in a row along +X).
Exit status 1 when any motion could not be baked.  Blender's Python only: stdlib + numpy.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

if "bpy" not in sys.modules:  # the bpy module: keep the user's Blender configuration out of it
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="realign-bake-manifest-"))

import bpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bake_demo import load_addon

SPACING_M = 1.0   # distance between created skeletons


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Arguments after ``--`` inside Blender, else the command line's."""
    if "--" in argv:
        argv = argv[argv.index("--") + 1:]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", required=True, help="manifest.jsonl or the realign batch --out folder")
    p.add_argument("--blend", required=True, help="the .blend to write")
    p.add_argument("--scene", help="a .blend with the armatures to open first")
    p.add_argument("--zip", help="the built extension zip to install and enable")
    p.add_argument("--armature", help="bake every motion onto this armature (default: the manifest's column)")
    p.add_argument("--create-missing", action="store_true",
                   help="add a ReAlign skeleton for each armature name the scene lacks")
    p.add_argument("--layout", choices=("rows", "sequence"), default="rows")
    p.add_argument("--start", type=float, default=1.0, help="first frame of a sequence")
    p.add_argument("--gap", type=float, default=10.0, help="frames between the takes of a sequence")
    p.add_argument("--report", help="write a JSON report here")
    return p.parse_args(argv)


def create_missing(addon, entries: list[dict]) -> list[str]:
    """A ReAlign skeleton named after each armature column value with no object; returns the names made."""
    made = []
    wanted = dict.fromkeys(str(e.get("armature") or "") for e in entries)
    for name in (n for n in wanted if n and bpy.data.objects.get(n) is None):
        bpy.context.scene.cursor.location = (SPACING_M * len(made), 0.0, 0.0)
        obj = addon.armature_io.create_skeleton(bpy.context, name)
        obj.name = name
        made.append(obj.name)
    bpy.context.scene.cursor.location = (0.0, 0.0, 0.0)
    return made


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.scene:
        bpy.ops.wm.open_mainfile(filepath=str(Path(args.scene).resolve()))
    addon = load_addon(args.zip)
    report: dict = {"blender": bpy.app.version_string, "manifest": args.manifest}
    entries = addon.batch_import.read_manifest(args.manifest)
    report["created"] = create_missing(addon, entries) if args.create_missing else []
    chosen = None
    if args.armature:
        chosen = bpy.data.objects.get(args.armature)
        if chosen is None or chosen.type != "ARMATURE":
            raise SystemExit(f"--armature {args.armature!r}: no armature of that name in the scene")
    start = time.perf_counter()
    result = addon.batch_import.import_results(bpy.context, args.manifest, "chosen" if chosen else "column", chosen,
                                               args.layout, args.start, args.gap)
    report.update(motions=len(entries), baked=[{"action": a, "armature": o, "name": n} for a, o, n in result.baked],
                  problems=result.problems, bake_s=round(time.perf_counter() - start, 3),
                  frame_end=bpy.context.scene.frame_end)
    Path(args.blend).parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(Path(args.blend).resolve()))
    report["blend"] = args.blend
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1))
    print(f"{result.line()} -> {args.blend}")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
