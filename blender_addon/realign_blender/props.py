"""Add-on data: preferences, per-scene settings, batch rows (PropertyGroups only, no logic)."""
from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

ADDON_ID = __package__


def _is_armature(_self, obj) -> bool:
    return obj.type == "ARMATURE"


def _is_path(_self, obj) -> bool:
    return obj.type in ("CURVE", "EMPTY")


class RealignPreferences(bpy.types.AddonPreferences):
    """Where the generation server is and how to start it."""

    bl_idname = ADDON_ID

    host: StringProperty(name="Host", default="127.0.0.1")
    port: IntProperty(name="Port", default=8765, min=1, max=65535)
    token: StringProperty(name="Token", default="", subtype="PASSWORD",
                          description="Needed when the server runs with --allow-remote")
    server_command: StringProperty(
        name="Server command", default="",
        description="Command that starts a local server, e.g. '/path/to/.venv/bin/python -m server' "
                    "(run in the folder below). Empty: the .venv server of the ReAlign checkout that built "
                    "this add-on, or of $REALIGN_REPO")
    server_cwd: StringProperty(name="Run in", default="", subtype="DIR_PATH")

    def draw(self, context) -> None:
        layout = self.layout
        row = layout.row()
        row.prop(self, "host")
        row.prop(self, "port")
        layout.prop(self, "token")
        layout.prop(self, "server_command")
        layout.prop(self, "server_cwd")
        row = layout.row(align=True)
        row.operator("realign.start_server", icon="PLAY")
        row.operator("realign.stop_server", icon="PAUSE")


class RealignBatchRow(bpy.types.PropertyGroup):
    """One batch-bake row."""

    prompt: StringProperty(name="Prompt", default="a person walks forward")
    armature: PointerProperty(name="Armature", type=bpy.types.Object, poll=_is_armature)
    start_frame: IntProperty(name="Start", default=1)
    seconds: FloatProperty(name="Seconds", default=4.0, min=1.0, max=10.0)
    strength: FloatProperty(name="Strength", default=1.0, min=0.0, max=100.0)
    loop: BoolProperty(name="Loop", default=False, description="A seamless cycle (the Control panel's Loop)")
    path_target: PointerProperty(name="Path", type=bpy.types.Object, poll=_is_path,
                                 description="A curve to walk along, or an empty to walk to (the Control panel's "
                                             "Path); empty: no path")


class RealignSequenceRow(bpy.types.PropertyGroup):
    """One entry of a long sequence: a prompt and how long it lasts."""

    prompt: StringProperty(name="Prompt", default="a person walks forward")
    seconds: FloatProperty(name="Seconds", default=4.0, min=1.0, max=60.0)


class RealignSettings(bpy.types.PropertyGroup):
    """Generation, retarget and job-state settings of a scene."""

    prompt: StringProperty(name="Prompt", default="a person walks forward and waves")
    seconds: FloatProperty(name="Duration", default=4.0, min=1.0, max=10.0,
                           description="Length of the motion in seconds (generated at 20 fps)")
    seed: IntProperty(name="Seed", default=0, min=0, max=2 ** 31 - 1)
    takes: IntProperty(name="Takes", default=1, min=1, max=16, description="Motions per click (one Action each)")
    strength: FloatProperty(name="Guidance strength", default=1.0, min=0.0, max=100.0,
                            description="ReAlign reward guidance strength (0 = plain diffusion)")
    cfg: FloatProperty(name="CFG", default=0.0, min=0.0, max=30.0,
                       description="Classifier-free guidance scale (0 = the model's validated scale)")
    custom_mix: BoolProperty(name="Custom reward mix", default=False,
                             description="Send μ and η with each request (off: the model's calibrated mix)")
    mu: FloatProperty(name="μ", default=1.0, min=0.0, max=100.0, description="Text-alignment reward weight")
    eta: FloatProperty(name="η", default=1.0, min=0.0, max=100.0, description="Motion-quality reward weight")
    steps: IntProperty(name="Steps", default=0, min=0, max=1000, description="Sampler steps (0 = server default)")
    foot_lock: EnumProperty(name="Foot lock", default="model", items=[
        ("model", "Model default", "As the model's validated setting (on for the shipped models)"),
        ("on", "On", "Shift the body back by the sliding of its planted feet (no gliding over resting feet)"),
        ("off", "Off", "The motion as sampled")],
        description="Undo sliding over planted feet; takes with a path, keyed poses or a loop are never locked")
    draft: BoolProperty(name="Fast draft", default=False,
                        description="The few-step consistency model (1 step unless Steps is set; its CFG is built in): "
                                    "about 10x faster sampling, less faithful to the prompt with guidance on")
    show_advanced: BoolProperty(name="Advanced", default=False)
    start_frame: IntProperty(name="Start frame", default=1)
    regenerate_strength: FloatProperty(name="New strength", default=2.0, min=0.0, max=100.0)

    root_motion: EnumProperty(name="Root motion", default="full", items=[
        ("full", "Full", "Travel as generated"),
        ("in_place", "In place (discard travel)", "Remove horizontal travel, keep height"),
        ("axes", "Per axis", "Keep only the chosen world axes"),
        # appended last: saved files store the item's index
        ("root_track", "Root track", ("In place; the horizontal travel goes onto a root track: a root bone above "
                                      "the hips when the rig has one, else the armature object (own NLA track)"))])
    root_x: BoolProperty(name="X", default=True)
    root_y: BoolProperty(name="Y", default=True)
    root_z: BoolProperty(name="Z", default=True)
    scale_by_leg_length: BoolProperty(name="Scale by leg length", default=True)
    ground_snap: BoolProperty(name="Ground snap", default=True)
    pin_feet: BoolProperty(name="Pin feet", default=True, description="Two-bone IK on foot-contact frames")

    # job state (written by the drain function on the main thread)
    status: StringProperty(name="Server", default="unknown")
    device: StringProperty(default="")
    model: StringProperty(default="")
    server_version: StringProperty(default="")
    max_frames: IntProperty(default=0, description="The server model's longest motion (20 fps frames)")
    busy: BoolProperty(default=False)
    progress: FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    eta_s: FloatProperty(default=0.0)
    message: StringProperty(default="")
    last_take: StringProperty(default="", description="The last generation (JSON: its request, armature, start "
                                                      "frame and bake flags); Regenerate resends it")

    batch: CollectionProperty(type=RealignBatchRow)
    batch_index: IntProperty(default=0)

    # control (docs/control.md, "In Blender")
    path_target: PointerProperty(name="Path", type=bpy.types.Object, poll=_is_path,
                                 description="A curve to walk along, or an empty to walk to from the armature")
    path_from_current: BoolProperty(name="From current frame", default=False,
                                    description="Follow path starts in the armature's pose at the current frame "
                                                "(as Continue does) and walks from its hips onto the path")
    control_strength: FloatProperty(name="Control strength", default=1.0, min=0.0, max=10.0,
                                    description="How hard paths, key poses and loops pull (0 = no constraint guidance)")
    loop: BoolProperty(name="Loop", default=False,
                       description="A seamless cycle: Cycles modifiers on the baked F-curves")
    loop_cycles: IntProperty(name="Cycles", default=4, min=1, max=1000, description="Cycles the NLA strip plays")
    layer_part: EnumProperty(name="Layer", default="NONE", items=[
        ("NONE", "None", "No layered body part"),
        ("right_arm", "Right arm", "The right arm moves as in the layer prompt's own motion"),
        ("left_arm", "Left arm", "The left arm moves as in the layer prompt's own motion"),
        ("arms", "Both arms", "Both arms move as in the layer prompt's own motion")],
        description="A body part that moves as in another prompt's motion, layered on the take (e.g. a wave "
                    "on a walk); Generate, Follow path, Continue and In-between use it")
    layer_prompt: StringProperty(name="Layer prompt", default="a person waves with the right hand.",
                                 description="What the layered part does")
    sequence: CollectionProperty(type=RealignSequenceRow)
    sequence_index: IntProperty(default=0)


CLASSES = (RealignPreferences, RealignBatchRow, RealignSequenceRow, RealignSettings)


def preferences(context: bpy.types.Context) -> RealignPreferences:
    """This add-on's preferences."""
    return context.preferences.addons[ADDON_ID].preferences


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.realign = PointerProperty(type=RealignSettings)


def unregister() -> None:
    del bpy.types.Scene.realign
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)


def remove_selected_row(settings, name: str) -> None:
    """Remove the selected row of the collection ``settings.<name>`` (selection in ``<name>_index``) and
    select the row before it; nothing happens when no row is selected."""
    rows, index = getattr(settings, name), getattr(settings, f"{name}_index")
    if 0 <= index < len(rows):
        rows.remove(index)
        setattr(settings, f"{name}_index", max(0, index - 1))
