"""Operators that add bodies to look at: the preview mannequin of any armature, and a SMPL body."""
from __future__ import annotations

import bpy
from bpy.props import EnumProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from . import body_objects


class REALIGN_OT_add_mannequin(bpy.types.Operator):
    """Skin a low-poly mannequin to the active armature, sized to its mapped bones (rebuilds an earlier one)"""

    bl_idname = "realign.add_mannequin"
    bl_label = "Add preview mannequin"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context) -> bool:
        return body_objects.armature_of(context.active_object) is not None

    def execute(self, context):
        armature = body_objects.armature_of(context.active_object)
        if context.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        try:
            body = body_objects.add_mannequin(armature)
        except ValueError as exc:
            self.report({"ERROR"}, f"{armature.name}: {exc} (fix the bone map in the Retarget panel)")
            return {"CANCELLED"}
        context.view_layer.objects.active = armature
        self.report({"INFO"}, f"{body.name}: {len(body.data.vertices)} vertices, "
                              f"{len(body.vertex_groups)} bones weighted")
        return {"FINISHED"}


class REALIGN_OT_add_smpl_body(bpy.types.Operator, ImportHelper):
    """Add a SMPL body from your SMPL model file (.pkl or .npz): an armature at the model's joints driving its
    mesh with the model's skinning weights; generated motions bake onto it like onto any armature"""

    bl_idname = "realign.add_smpl_body"
    bl_label = "Add SMPL body"
    bl_options = {"REGISTER", "UNDO"}
    filter_glob: StringProperty(default="*.pkl;*.npz", options={"HIDDEN"})
    gender: EnumProperty(name="Gender", default="neutral", description="Which SMPL_<GENDER> file of a folder",
                         items=[("neutral", "Neutral", ""), ("female", "Female", ""), ("male", "Male", "")])

    def execute(self, context):
        try:
            armature = body_objects.add_smpl_body(context, self.filepath, self.gender)
        except (OSError, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        mesh = body_objects.body_of(armature, "smpl")
        self.report({"INFO"}, f"{armature.name}: {len(mesh.data.vertices)} vertices from {self.filepath}")
        return {"FINISHED"}


CLASSES = (REALIGN_OT_add_mannequin, REALIGN_OT_add_smpl_body)
