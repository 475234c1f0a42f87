"""Operators for bone maps that stay: correct one joint, remember / forget / reuse the map saved for a rig.

A corrected map is stored on the armature (saved with the .blend) and in the
add-on's user folder under the fingerprint of the armature's bone names
(``rig_maps``), so the next armature with the same bone names, in any file,
gets it without asking.
"""
from __future__ import annotations

import json

import bpy
from bpy.props import EnumProperty, StringProperty

from . import armature_io, bone_maps, rig_maps
from .skeleton import JOINT_NAMES


def _armature(context) -> bpy.types.Object | None:
    obj = context.active_object
    return obj if obj is not None and obj.type == "ARMATURE" else None


def bone_names(obj: bpy.types.Object) -> list[str]:
    return [b.name for b in obj.data.bones]


def remember(obj: bpy.types.Object, mapping: dict[str, str]) -> str:
    """Save a map for obj's bone names in the user store; returns the file path."""
    return str(rig_maps.user_store().save(bone_names(obj), mapping, obj.name))


def saved_map(obj: bpy.types.Object) -> tuple[rig_maps.SavedMap | None, str]:
    """(the map saved for obj's bone names or None, a problem reading it or "")."""
    try:
        return rig_maps.user_store().find(bone_names(obj)), ""
    except (OSError, ValueError) as exc:
        return None, str(exc)


class _NeedsArmature:
    @classmethod
    def poll(cls, context) -> bool:
        return _armature(context) is not None


class REALIGN_OT_set_bone_map_entry(_NeedsArmature, bpy.types.Operator):
    """Choose the bone a joint drives (empty: the joint drives nothing); the map is remembered for this rig"""

    bl_idname = "realign.set_bone_map_entry"
    bl_label = "Set bone for joint"
    bl_options = {"REGISTER", "UNDO"}

    joint: EnumProperty(name="Joint", items=[(j, j, "") for j in JOINT_NAMES])
    bone: StringProperty(name="Bone", default="")

    def invoke(self, context, event):
        self.bone = armature_io.get_bone_map(_armature(context)).get(self.joint, "")
        return context.window_manager.invoke_props_dialog(self)

    def draw(self, context):
        self.layout.prop(self, "joint")
        self.layout.prop_search(self, "bone", _armature(context).data, "bones")

    def execute(self, context):
        obj = _armature(context)
        if self.bone and self.bone not in obj.data.bones:
            self.report({"ERROR"}, f"{obj.name} has no bone named {self.bone!r}; the map is unchanged")
            return {"CANCELLED"}
        mapping = dict(armature_io.get_bone_map(obj))
        mapping.pop(self.joint, None)
        if self.bone:
            mapping = {j: b for j, b in mapping.items() if b != self.bone}  # one bone, one joint
            mapping[self.joint] = self.bone
        armature_io.set_bone_map(obj, mapping)
        path = remember(obj, mapping)
        problems = bone_maps.missing_core(mapping)
        self.report({"WARNING"} if problems else {"INFO"},
                    f"{self.joint} -> {self.bone or 'nothing'}; remembered in {path}"
                    + (f"; not mapped: {', '.join(problems)}" if problems else ""))
        return {"FINISHED"}


class REALIGN_OT_remember_bone_map(_NeedsArmature, bpy.types.Operator):
    """Remember this armature's bone map for every armature with the same bone names"""

    bl_idname = "realign.remember_bone_map"
    bl_label = "Remember map for this rig"

    def execute(self, context):
        obj = _armature(context)
        try:
            path = remember(obj, armature_io.get_bone_map(obj))
        except (OSError, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"remembered in {path}")
        return {"FINISHED"}


class REALIGN_OT_forget_bone_map(_NeedsArmature, bpy.types.Operator):
    """Delete the map remembered for armatures with this armature's bone names"""

    bl_idname = "realign.forget_bone_map"
    bl_label = "Forget remembered map"

    def execute(self, context):
        obj = _armature(context)
        gone = rig_maps.user_store().forget(bone_names(obj))
        self.report({"INFO"}, "forgotten" if gone else "no map was remembered for this rig")
        return {"FINISHED"}


class REALIGN_OT_use_saved_bone_map(_NeedsArmature, bpy.types.Operator):
    """Replace this armature's bone map with the one remembered for its bone names"""

    bl_idname = "realign.use_saved_bone_map"
    bl_label = "Use remembered map"

    def execute(self, context):
        obj = _armature(context)
        saved, problem = saved_map(obj)
        if saved is None:
            self.report({"ERROR"}, problem or "no map is remembered for this rig")
            return {"CANCELLED"}
        armature_io.set_bone_map(obj, saved.mapping)
        self.report({"INFO"}, f"{len(saved.mapping)} joints from {saved.path}")
        return {"FINISHED"}


def draw_map(layout: bpy.types.UILayout, obj: bpy.types.Object) -> None:
    """The Retarget panel's map: remembered-map state, Remember / Forget, one editable row per joint."""
    saved, problem = saved_map(obj)
    raw = obj.get(armature_io.MAP_PROP)
    mapping = json.loads(raw) if raw else (saved.mapping if saved else {})
    if problem:
        layout.label(text=problem, icon="ERROR")
    elif saved is not None and not raw:
        layout.label(text=f"Remembered map for these bones ({saved.rig})", icon="CHECKMARK")
    elif saved is not None and saved.mapping != mapping:
        layout.operator("realign.use_saved_bone_map", icon="FILE_REFRESH")
    row = layout.row(align=True)
    row.operator("realign.remember_bone_map", text="Remember", icon="PINNED")
    sub = row.row(align=True)
    sub.enabled = saved is not None or bool(problem)
    sub.operator("realign.forget_bone_map", text="Forget", icon="X")
    box = layout.box()
    for joint in JOINT_NAMES:
        row = box.row(align=True)
        row.label(text=joint)
        row.label(text=mapping.get(joint, "—"))
        row.operator("realign.set_bone_map_entry", text="", icon="GREASEPENCIL").joint = joint


CLASSES = (REALIGN_OT_set_bone_map_entry, REALIGN_OT_remember_bone_map, REALIGN_OT_forget_bone_map,
           REALIGN_OT_use_saved_bone_map)
