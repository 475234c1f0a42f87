"""The "ReAlign" tab of the 3D Viewport sidebar."""
from __future__ import annotations

import bpy

from . import map_operators


class REALIGN_UL_batch(bpy.types.UIList):
    """Batch rows: prompt, armature, start frame, seconds, strength, loop, path."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        row = layout.row(align=True)
        row.prop(item, "prompt", text="", emboss=False)
        row.prop(item, "armature", text="")
        row.prop(item, "start_frame", text="")
        row.prop(item, "seconds", text="")
        row.prop(item, "strength", text="")
        row.prop(item, "loop", text="", icon="LOOP_FORWARDS")
        row.prop(item, "path_target", text="")


class REALIGN_UL_sequence(bpy.types.UIList):
    """Sequence rows: prompt, seconds."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        row = layout.row(align=True)
        row.prop(item, "prompt", text="", emboss=False)
        row.prop(item, "seconds", text="")


class _Panel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "ReAlign"


class REALIGN_PT_main(_Panel, bpy.types.Panel):
    bl_label = "ReAlign"

    def draw(self, context):
        s, layout = context.scene.realign, self.layout
        row = layout.row(align=True)
        row.label(text=f"Server: {s.status}" + (f" ({s.device}, {s.model})" if s.status == "connected" else ""))
        row.operator("realign.check_server", text="", icon="FILE_REFRESH")
        if s.status != "connected":
            layout.operator("realign.start_server", icon="PLAY")
        layout.prop(s, "prompt", text="")
        col = layout.column(align=True)
        col.prop(s, "seconds")
        row = col.row(align=True)
        row.prop(s, "seed")
        row.operator("realign.dice", text="", icon="MOD_NOISE")
        col.prop(s, "takes")
        col.prop(s, "strength")
        cfg = col.row()
        cfg.enabled = not s.draft
        cfg.prop(s, "cfg")
        col.prop(s, "draft")
        col.prop(s, "start_frame")
        layout.prop(s, "show_advanced")
        if s.show_advanced:
            col = layout.column(align=True)
            col.prop(s, "custom_mix")
            mix = col.column(align=True)
            mix.enabled = s.custom_mix
            mix.prop(s, "mu")
            mix.prop(s, "eta")
            col.prop(s, "steps")
            col.prop(s, "foot_lock")
        if context.active_object is None or context.active_object.type != "ARMATURE":
            layout.label(text="Select an armature, or:", icon="INFO")
            layout.operator("realign.create_skeleton", icon="ARMATURE_DATA")
            layout.operator("realign.add_smpl_body", icon="OUTLINER_OB_ARMATURE")
        row = layout.row(align=True)
        row.enabled = not s.busy
        row.operator("realign.generate", icon="PLAY")
        if s.busy:
            layout.progress(factor=s.progress, text=f"{s.progress:.0%}  ETA {s.eta_s:.0f} s") \
                if hasattr(layout, "progress") else layout.prop(s, "progress")
            layout.operator("realign.cancel", icon="CANCEL")
        if s.message:
            layout.label(text=s.message)
        row = layout.row(align=True)
        row.prop(s, "regenerate_strength")
        row.operator("realign.regenerate", text="Regenerate")


class REALIGN_PT_retarget(_Panel, bpy.types.Panel):
    bl_label = "Retarget"
    bl_parent_id = "REALIGN_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        s, layout = context.scene.realign, self.layout
        layout.prop(s, "root_motion")
        if s.root_motion == "axes":
            row = layout.row(align=True)
            row.prop(s, "root_x", toggle=True)
            row.prop(s, "root_y", toggle=True)
            row.prop(s, "root_z", toggle=True)
        layout.prop(s, "scale_by_leg_length")
        layout.prop(s, "ground_snap")
        layout.prop(s, "pin_feet")
        obj = context.active_object
        if obj is None or obj.type != "ARMATURE":
            return
        row = layout.row(align=True)
        row.operator("realign.detect_bone_map", text="Detect")
        row.operator("realign.load_bone_map", text="Load")
        row.operator("realign.save_bone_map", text="Save")
        map_operators.draw_map(layout, obj)
        layout.operator("realign.bake_file", icon="IMPORT")
        layout.operator("realign.add_mannequin", icon="OUTLINER_OB_MESH")


class REALIGN_PT_batch(_Panel, bpy.types.Panel):
    bl_label = "Batch bake"
    bl_parent_id = "REALIGN_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        s, layout = context.scene.realign, self.layout
        row = layout.row()
        row.template_list("REALIGN_UL_batch", "", s, "batch", s, "batch_index", rows=4)
        col = row.column(align=True)
        col.operator("realign.batch_add", text="", icon="ADD")
        col.operator("realign.batch_remove", text="", icon="REMOVE")
        layout.operator("realign.batch_import_csv", icon="FILE")
        layout.operator("realign.batch_bake", icon="RENDER_ANIMATION")
        layout.operator("realign.import_batch", icon="IMPORT")   # a realign batch manifest (docs/scale.md)


class REALIGN_PT_control(_Panel, bpy.types.Panel):
    """Paths, continue, in-between, sequences, loops and root tracks (docs/control.md, "In Blender")."""

    bl_label = "Control"
    bl_parent_id = "REALIGN_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        s, layout = context.scene.realign, self.layout
        col = layout.column(align=True)
        col.prop(s, "control_strength")
        row = col.row(align=True)
        row.prop(s, "loop", toggle=True)
        row.prop(s, "loop_cycles")
        col.prop(s, "root_motion")
        row = layout.row(align=True)
        row.prop(s, "layer_part")
        if s.layer_part != "NONE":
            layout.prop(s, "layer_prompt", text="")
        layout.prop(s, "path_target")
        row = layout.row(align=True)
        row.operator("realign.follow_path", icon="CURVE_PATH")
        row.prop(s, "path_from_current", toggle=True)
        layout.operator("realign.continue_take", icon="FRAME_NEXT")
        layout.operator("realign.inbetween", icon="KEYFRAME")
        layout.label(text="Sequence (one Action):")
        row = layout.row()
        row.template_list("REALIGN_UL_sequence", "", s, "sequence", s, "sequence_index", rows=3)
        col = row.column(align=True)
        col.operator("realign.sequence_add", text="", icon="ADD")
        col.operator("realign.sequence_remove", text="", icon="REMOVE")
        total = sum(r.seconds for r in s.sequence)
        layout.operator("realign.generate_sequence", text=f"Generate sequence ({total:g} s)", icon="SEQUENCE")


CLASSES = (REALIGN_UL_batch, REALIGN_UL_sequence, REALIGN_PT_main, REALIGN_PT_retarget, REALIGN_PT_control,
           REALIGN_PT_batch)
