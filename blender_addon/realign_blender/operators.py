"""Thin operators: read settings, call jobs / armature_io / bone_maps, report."""
from __future__ import annotations

import csv
import random
import subprocess
from pathlib import Path

import bpy
import numpy as np
from bpy.props import BoolProperty, FloatProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from . import (
    armature_io,
    body_objects,
    bone_maps,
    control_bake,
    control_ops,
    jobs,
    map_operators,
    rig_maps,
    server_launch,
)
from .control_input import ControlInputError
from .props import preferences, remove_selected_row

SERVER_PROCESS: list[subprocess.Popen] = []


def _armature(context) -> bpy.types.Object | None:
    """The active armature (or the armature of the active ReAlign body mesh)."""
    return body_objects.armature_of(context.active_object)


class _NeedsArmature:
    @classmethod
    def poll(cls, context) -> bool:
        return _armature(context) is not None


def _start(context, requests: list[dict], targets: dict) -> None:
    prefs = preferences(context)
    settings = context.scene.realign
    settings.busy, settings.progress, settings.message = True, 0.0, "connecting…"
    jobs.submit(jobs.Job(requests, targets, prefs.host, prefs.port, prefs.token))


class REALIGN_OT_generate(_NeedsArmature, bpy.types.Operator):
    """Generate motions for the prompt and key them on the active armature (one Action per take)"""

    bl_idname = "realign.generate"
    bl_label = "Generate"

    def execute(self, context):
        s, obj = context.scene.realign, _armature(context)
        req = jobs.generate_request(s, s.prompt, s.seconds, s.seed, s.takes)
        try:
            flags = control_ops.control_flags(s, req)    # Loop, Root track, Layer
        except ControlInputError as exc:
            s.message = f"error: {exc}"
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        target = jobs.Target(obj.name, s.start_frame, flags or None)
        jobs.remember(s, req, target)
        _start(context, [req], {req["id"]: [target] * s.takes})
        return {"FINISHED"}


class REALIGN_OT_regenerate(bpy.types.Operator):
    """The last generation again with another guidance strength (same request: prompt, seed, path, keyed poses,
    loop, sequence), one new take beside the old on the same armature"""

    bl_idname = "realign.regenerate"
    bl_label = "Regenerate with strength"

    strength: FloatProperty(name="Strength", default=-1.0)

    def execute(self, context):
        s = context.scene.realign
        strength = s.regenerate_strength if self.strength < 0 else self.strength
        try:
            req, target = jobs.regenerate_request(s, strength)
        except LookupError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if bpy.data.objects.get(target.armature) is None:
            self.report({"ERROR"}, f"armature '{target.armature}' of the last generation is gone")
            return {"CANCELLED"}
        _start(context, [req], {req["id"]: [target]})
        return {"FINISHED"}


class REALIGN_OT_cancel(bpy.types.Operator):
    """Stop the running generation at the server's next step"""

    bl_idname = "realign.cancel"
    bl_label = "Cancel"

    def execute(self, context):
        n = jobs.cancel_all()
        self.report({"INFO"}, f"cancelling {n} job(s)")
        return {"FINISHED"}


class REALIGN_OT_dice(bpy.types.Operator):
    """Pick a random seed"""

    bl_idname = "realign.dice"
    bl_label = "Random seed"

    def execute(self, context):
        context.scene.realign.seed = random.randint(0, 2 ** 31 - 1)
        return {"FINISHED"}


class REALIGN_OT_check_server(bpy.types.Operator):
    """Ask the server who it is (device, model); the answer shows in the panel"""

    bl_idname = "realign.check_server"
    bl_label = "Check server"

    def execute(self, context):
        prefs = preferences(context)
        context.scene.realign.status = "checking…"
        jobs.check_server(prefs.host, prefs.port, prefs.token)
        return {"FINISHED"}


class REALIGN_OT_start_server(bpy.types.Operator):
    """Start the local generation server: the preferences' command, else the ReAlign checkout's .venv server"""

    bl_idname = "realign.start_server"
    bl_label = "Start server"

    def execute(self, context):
        prefs = preferences(context)
        cwd = bpy.path.abspath(prefs.server_cwd) if prefs.server_cwd else ""
        try:
            cmd = server_launch.find_command(prefs.server_command, cwd, prefs.port)
        except server_launch.CannotStart as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        try:
            process, log = server_launch.start(cmd, prefs.token, prefs.host)
        except server_launch.CannotStart as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        except OSError as exc:
            self.report({"ERROR"}, f"Could not start the server ({' '.join(cmd.argv)}): {exc}")
            return {"CANCELLED"}
        SERVER_PROCESS.append(process)
        context.scene.realign.status = "starting…"
        self.report({"INFO"}, f"Server starting from {cmd.source} (log {log}); press Check server in a few seconds")
        return {"FINISHED"}


class REALIGN_OT_stop_server(bpy.types.Operator):
    """Stop the servers started with Start server in this Blender session"""

    bl_idname = "realign.stop_server"
    bl_label = "Stop server"

    def execute(self, context):
        codes = [server_launch.stop(p) for p in SERVER_PROCESS]
        SERVER_PROCESS.clear()
        context.scene.realign.status = "stopped" if codes else context.scene.realign.status
        self.report({"INFO"}, f"stopped {len(codes)} server(s)")
        return {"FINISHED"}


class REALIGN_OT_create_skeleton(bpy.types.Operator):
    """Add a 22-joint ReAlign armature at the 3D cursor to preview motions on"""

    bl_idname = "realign.create_skeleton"
    bl_label = "Create ReAlign skeleton"
    bl_options = {"REGISTER", "UNDO"}

    body: BoolProperty(name="Mannequin body", default=True, description="Skin a low-poly mannequin to the bones")

    def execute(self, context):
        if context.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        obj = armature_io.create_skeleton(context)
        if self.body:
            body_objects.add_mannequin(obj)
            context.view_layer.objects.active = obj
        return {"FINISHED"}


class REALIGN_OT_bake_file(_NeedsArmature, bpy.types.Operator, ImportHelper):
    """Retarget a joints file (.npy, (F, 22, 3) metres, Y up, 20 fps) onto the active armature"""

    bl_idname = "realign.bake_file"
    bl_label = "Bake joints file"
    bl_options = {"REGISTER", "UNDO"}
    filter_glob: StringProperty(default="*.npy", options={"HIDDEN"})

    def execute(self, context):
        s, obj = context.scene.realign, _armature(context)
        joints = np.load(self.filepath)
        if joints.ndim != 3 or joints.shape[1:] != (22, 3):
            self.report({"ERROR"}, f"expected (frames, 22, 3) joints, got {joints.shape}")
            return {"CANCELLED"}
        meta = {"prompt": Path(self.filepath).stem, "seed": -1, "strength": 0.0, "cfg": 0.0, "model": "file",
                "server_version": ""}
        action, _, _ = control_bake.bake_joints(obj, joints, meta, s.start_frame, jobs.retarget_options(s))
        self.report({"INFO"}, f"baked {action.name}")
        return {"FINISHED"}


class REALIGN_OT_detect_bone_map(_NeedsArmature, bpy.types.Operator):
    """Detect the bone map of the active armature from its bone names"""

    bl_idname = "realign.detect_bone_map"
    bl_label = "Detect bone map"

    def execute(self, context):
        obj = _armature(context)
        preset, mapping = bone_maps.detect_bone_map([b.name for b in obj.data.bones])
        armature_io.set_bone_map(obj, mapping)
        missing = bone_maps.missing_core(mapping)
        level = {"WARNING"} if missing else {"INFO"}
        self.report(level, f"{preset}: {len(mapping)} joints mapped" + (f", missing {missing}" if missing else ""))
        return {"FINISHED"}


class REALIGN_OT_save_bone_map(_NeedsArmature, bpy.types.Operator, ExportHelper):
    """Save the active armature's bone map as JSON (edit it, then load it back)"""

    bl_idname = "realign.save_bone_map"
    bl_label = "Save bone map"
    filename_ext = ".json"

    def execute(self, context):
        obj = _armature(context)
        names = [b.name for b in obj.data.bones]
        bone_maps.save_bone_map(self.filepath, armature_io.get_bone_map(obj), obj.name, rig_maps.fingerprint(names))
        return {"FINISHED"}


class REALIGN_OT_load_bone_map(_NeedsArmature, bpy.types.Operator, ImportHelper):
    """Load a JSON bone map onto the active armature"""

    bl_idname = "realign.load_bone_map"
    bl_label = "Load bone map"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    def execute(self, context):
        obj = _armature(context)
        try:
            mapping = bone_maps.load_bone_map(self.filepath)
        except (OSError, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        problems = bone_maps.validate(mapping, [b.name for b in obj.data.bones])
        armature_io.set_bone_map(obj, mapping)
        if not any("no bone named" in p for p in problems):  # remembered for this rig's bone names
            map_operators.remember(obj, mapping)
        if problems:
            self.report({"WARNING"}, "; ".join(problems[:3]))
        return {"FINISHED"}


class REALIGN_OT_batch_add(bpy.types.Operator):
    """Add a batch row (uses the current prompt, active armature, and the Control panel's Loop and Path)"""

    bl_idname = "realign.batch_add"
    bl_label = "Add row"

    def execute(self, context):
        s = context.scene.realign
        row = s.batch.add()
        row.prompt, row.seconds, row.strength, row.start_frame = s.prompt, s.seconds, s.strength, s.start_frame
        row.armature, row.loop, row.path_target = _armature(context), s.loop, s.path_target
        s.batch_index = len(s.batch) - 1
        return {"FINISHED"}


class REALIGN_OT_batch_remove(bpy.types.Operator):
    """Remove the selected batch row"""

    bl_idname = "realign.batch_remove"
    bl_label = "Remove row"

    def execute(self, context):
        remove_selected_row(context.scene.realign, "batch")
        return {"FINISHED"}


class REALIGN_OT_batch_import_csv(bpy.types.Operator, ImportHelper):
    """Import batch rows from CSV: header prompt,armature,start_frame,seconds,strength[,loop,path]"""

    bl_idname = "realign.batch_import_csv"
    bl_label = "Import CSV"
    filter_glob: StringProperty(default="*.csv", options={"HIDDEN"})

    def execute(self, context):
        try:
            rows, problems = read_batch_csv(self.filepath)
        except (OSError, ValueError, csv.Error) as exc:
            self.report({"ERROR"}, f"{self.filepath}: {exc}")
            return {"CANCELLED"}
        s = context.scene.realign
        for r in rows:
            row = s.batch.add()
            row.prompt, row.start_frame, row.seconds, row.strength = r["prompt"], r["start_frame"], r["seconds"], \
                r["strength"]
            row.armature = bpy.data.objects.get(r["armature"]) if r["armature"] else _armature(context)
            row.loop, row.path_target = r["loop"], bpy.data.objects.get(r["path"]) if r["path"] else None
        self.report({"WARNING"} if problems else {"INFO"},
                    f"{len(rows)} row(s) imported" + (f"; {problems[0]}" if problems else ""))
        return {"FINISHED"}


YES, NO = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def _flag(text: str | None) -> bool:
    """A CSV yes/no cell (empty = no); ValueError naming the value otherwise."""
    value = (text or "").strip().lower()
    if value not in YES + NO:
        raise ValueError(f"loop must be yes/no, true/false, 1/0, on/off or empty, got {text!r}")
    return value in YES


def read_batch_csv(path: str) -> tuple[list[dict], list[str]]:
    """Rows of a batch CSV (missing columns get defaults) and per-line problems."""
    rows, problems = [], []
    with open(path, newline="", encoding="utf-8") as fh:
        for n, rec in enumerate(csv.DictReader(fh), start=2):
            prompt = (rec.get("prompt") or "").strip()
            if not prompt:
                problems.append(f"line {n}: empty prompt")
                continue
            try:
                rows.append({"prompt": prompt, "armature": (rec.get("armature") or "").strip(),
                             "start_frame": int(float(rec.get("start_frame") or 1)),
                             "seconds": float(rec.get("seconds") or 4.0),
                             "strength": float(rec.get("strength") or 1.0), "loop": _flag(rec.get("loop")),
                             "path": (rec.get("path") or "").strip()})
            except ValueError as exc:
                problems.append(f"line {n}: {exc}")
    return rows, problems


class REALIGN_OT_batch_bake(bpy.types.Operator):
    """Send every batch row to the server together and key the results as NLA strips (each row's Loop and Path;
    the panel's seed, CFG, steps, control strength and retarget options)"""

    bl_idname = "realign.batch_bake"
    bl_label = "Bake batch"

    def execute(self, context):
        s = context.scene.realign
        rows = [(i, r) for i, r in enumerate(s.batch, start=1) if r.armature is not None and r.prompt.strip()]
        if not rows:
            self.report({"ERROR"}, "No batch row has both a prompt and an armature")
            return {"CANCELLED"}
        requests, targets = [], {}
        for i, r in rows:
            req = jobs.generate_request(s, r.prompt, r.seconds, s.seed, 1, r.strength)
            try:
                control = control_ops.row_control(context, s, r, req)
            except ControlInputError as exc:
                s.message = f"error: batch row {i}: {exc}"
                self.report({"ERROR"}, f"batch row {i}: {exc}")
                return {"CANCELLED"}
            requests.append(req)
            targets[req["id"]] = [jobs.Target(r.armature.name, r.start_frame, control)]
        _start(context, requests, targets)
        return {"FINISHED"}


CLASSES = (REALIGN_OT_generate, REALIGN_OT_regenerate, REALIGN_OT_cancel, REALIGN_OT_dice, REALIGN_OT_check_server,
           REALIGN_OT_start_server, REALIGN_OT_stop_server, REALIGN_OT_create_skeleton, REALIGN_OT_bake_file,
           REALIGN_OT_detect_bone_map, REALIGN_OT_save_bone_map, REALIGN_OT_load_bone_map, REALIGN_OT_batch_add,
           REALIGN_OT_batch_remove, REALIGN_OT_batch_import_csv, REALIGN_OT_batch_bake)
