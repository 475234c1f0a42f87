"""Import batch results: bake the motions of a ``realign batch`` manifest onto armatures, laid out on NLA.

A manifest (``DIR/manifest.jsonl``, docs/scale.md) has one JSON line per motion:
``name``, ``files.npy`` (joints (F, 22, 3) float32, metres, Y up, 20 fps,
relative to the manifest's folder), ``armature`` (target armature object, may
be empty), ``start_frame``, ``prompt``, ``seed``, ``settings``, ``model``...; a
later line for the same name replaces an earlier one (a rerun).

Each motion becomes a new Action with an NLA strip on a new track of its
armature (``control_bake.bake_joints``, as *Bake batch* does).  Targets: the
``armature`` column (``source="column"``; rows naming no armature, or one the
scene lacks, go to ``fallback`` when given, else are reported), or every motion
on one chosen armature (``source="chosen"``).  Layout: ``"rows"`` puts each take
at its ``start_frame`` (as *Bake batch*), ``"sequence"`` plays an armature's
takes one after the other from ``start`` with ``gap`` frames between them.
Stdlib + numpy only.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from . import control_bake
from .retarget import RetargetOptions, frame_times

MANIFEST = "manifest.jsonl"
SOURCES = ("column", "chosen")
LAYOUTS = ("rows", "sequence")


@dataclass
class ImportReport:
    """What an import did: (action, armature, name) per baked take, problems per skipped motion."""

    baked: list[tuple[str, str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    last_frame: float = 1.0

    def line(self) -> str:
        text = f"{len(self.baked)} take(s) baked"
        if self.problems:
            text += f"; {len(self.problems)} skipped: {self.problems[0]}"
        return text


def manifest_file(path: str | Path) -> Path:
    """The manifest file of a path: the file itself, or DIR/manifest.jsonl."""
    path = Path(bpy.path.abspath(str(path)))
    return path / MANIFEST if path.is_dir() else path


def read_manifest(path: str | Path) -> list[dict]:
    """The latest entry per motion name, in (row, sample) order; errors name the file and line."""
    path = manifest_file(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such manifest (realign batch writes DIR/{MANIFEST})")
    entries: dict[str, dict] = {}
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {number}: not JSON ({exc.msg})") from None
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) \
                    or not isinstance(entry.get("files"), dict) or "npy" not in entry["files"]:
                raise ValueError(f"{path}, line {number}: a manifest line needs 'name' and 'files': {{'npy': ...}}")
            entries[entry["name"]] = entry
    if not entries:
        raise ValueError(f"{path}: the manifest is empty")
    return sorted(entries.values(), key=lambda e: (int(e.get("row", 0)), int(e.get("sample", 0)), e["name"]))


def load_joints(folder: Path, entry: dict) -> np.ndarray:
    """The entry's joints (F, 22, 3) float64 (raises ValueError naming the file)."""
    path = folder / entry["files"]["npy"]
    if not path.is_file():
        raise ValueError(f"{entry['name']}: {path} is missing")
    joints = np.load(path)
    if joints.ndim != 3 or joints.shape[1:] != (22, 3) or not np.isfinite(joints).all():
        raise ValueError(f"{entry['name']}: {path.name} is not finite (frames, 22, 3) joints: {joints.shape}")
    return joints.astype(np.float64)


def target_armature(entry: dict, source: str, chosen: bpy.types.Object | None) -> bpy.types.Object:
    """The armature a motion goes to (raises ValueError saying why there is none)."""
    if source == "chosen":
        if chosen is None or chosen.type != "ARMATURE":
            raise ValueError("no armature chosen")
        return chosen
    name = str(entry.get("armature") or "")
    obj = bpy.data.objects.get(name) if name else None
    if obj is not None and obj.type == "ARMATURE":
        return obj
    if chosen is not None and chosen.type == "ARMATURE":
        return chosen
    raise ValueError(f"{entry['name']}: " + (f"no armature named {name!r} in this file" if name
                                              else "the row names no armature (choose one)"))


def action_meta(entry: dict) -> dict:
    """Custom properties of a take's Action (as the server's takes have, plus the batch's name and model hash)."""
    settings = entry.get("settings") or {}
    guidance = settings.get("guidance") or {}
    model = entry.get("model") or {}
    return {"prompt": str(entry.get("prompt", entry["name"])), "seed": int(entry.get("seed", -1)),
            "strength": float(guidance.get("strength", 0.0)), "cfg": float(guidance.get("cfg", 0.0)),
            "model": str(model.get("name", "")), "model_hash": str(model.get("hash", "")),
            "batch_name": entry["name"], "server_version": "realign batch"}


def import_results(context: bpy.types.Context, manifest: str | Path, source: str = "column",
                   chosen: bpy.types.Object | None = None, layout: str = "rows", start: float = 1.0,
                   gap: float = 10.0, options: RetargetOptions | None = None) -> ImportReport:
    """Bake every motion of a manifest (see the module docstring); never raises for one bad motion."""
    if source not in SOURCES or layout not in LAYOUTS:
        raise ValueError(f"source must be one of {SOURCES} and layout one of {LAYOUTS}")
    path = manifest_file(manifest)
    entries = read_manifest(path)
    report = ImportReport()
    scene = context.scene
    scene_fps = scene.render.fps / scene.render.fps_base
    next_start: dict[str, float] = {}
    for entry in entries:
        try:
            obj = target_armature(entry, source, chosen)
            joints = load_joints(path.parent, entry)
        except ValueError as exc:
            report.problems.append(str(exc))
            continue
        begin = float(entry.get("start_frame") or 1.0) if layout == "rows" else next_start.get(obj.name, start)
        try:
            action, _, _ = control_bake.bake_joints(obj, joints, action_meta(entry), begin, options)
        except (ValueError, KeyError, RuntimeError) as exc:   # e.g. a bone map naming a bone the rig lacks
            report.problems.append(f"{entry['name']} on {obj.name}: {exc}")
            continue
        end = float(frame_times(len(joints), scene_fps, begin)[-1])
        next_start[obj.name] = math.ceil(end + gap)
        report.last_frame = max(report.last_frame, end)
        report.baked.append((action.name, obj.name, entry["name"]))
    if report.baked:
        scene.frame_end = max(scene.frame_end, math.ceil(report.last_frame))
    return report


class REALIGN_OT_import_batch(bpy.types.Operator):
    """Bake the motions of a realign batch manifest (manifest.jsonl) onto armatures as NLA strips"""

    bl_idname = "realign.import_batch"
    bl_label = "Import batch results"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(subtype="FILE_PATH")
    filter_glob: bpy.props.StringProperty(default="*.jsonl", options={"HIDDEN"})
    source: bpy.props.EnumProperty(
        name="Armatures", default="column",
        items=[("column", "Armature column", "Each motion to the armature its row names (else the active one)"),
               ("chosen", "Active armature", "Every motion to the active armature")])
    layout: bpy.props.EnumProperty(
        name="Layout", default="rows",
        items=[("rows", "Start frames", "Each take at its row's start frame, on its own NLA track"),
               ("sequence", "One after another", "An armature's takes play one after the other")])
    gap: bpy.props.IntProperty(name="Gap", default=10, min=0, description="Frames between takes in a sequence")

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        from .jobs import retarget_options

        settings = context.scene.realign
        active = context.active_object if context.active_object and context.active_object.type == "ARMATURE" \
            else None
        try:
            report = import_results(context, self.filepath, self.source, active, self.layout,
                                    float(settings.start_frame), float(self.gap), retarget_options(settings))
        except (OSError, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        settings.message = report.line()
        self.report({"WARNING"} if report.problems else {"INFO"}, report.line())
        return {"FINISHED"} if report.baked else {"CANCELLED"}


CLASSES = (REALIGN_OT_import_batch,)
