"""Thin operators of the Control panel: follow a path (from *Start frame*, or from the pose at the current
frame), continue from the current frame, in-between selected keyframes, the sequence list; Loop and Root
track apply to Generate too, and batch rows carry their own Loop and Path (``row_control``).

Each reads the scene (``control_input``), builds one protocol-v1 ``generate``
request with the control fields (server/control_fields.py) and starts a job
whose targets carry the bake flags (``control_bake``). A scene that does not
hold what an action needs is reported (panel message and an ERROR report);
nothing is sent and nothing in the scene changes.
"""
from __future__ import annotations

import bpy

from . import body_objects, connection, control_input, jobs
from .control_input import ControlInputError
from .props import preferences, remove_selected_row
from .skeleton import FPS

DEFAULT_MAX_FRAMES = 196            # the server's max_frames before the panel has asked it (hello)
MAX_SEQUENCE_SECONDS = 120.0        # the server's max_sequence_seconds


def _armature(context) -> bpy.types.Object | None:
    return body_objects.armature_of(context.active_object)


def max_frames(settings) -> int:
    """The server model's longest motion (20 fps frames), from its hello or the default."""
    return int(settings.max_frames) if settings.max_frames > 0 else DEFAULT_MAX_FRAMES


def control_flags(settings, request: dict, loop: bool | None = None, layer: bool = True) -> dict:
    """Add the Loop field (``loop``, else the panel's) and, with ``layer``, the panel's Layer to a request (in
    place); returns the bake flags for its targets (Loop, Root track). ControlInputError for a Layer without
    a prompt."""
    control: dict = {}
    if layer and settings.layer_part != "NONE":
        prompt = " ".join(settings.layer_prompt.split())
        if not prompt:
            raise ControlInputError("the layer has no prompt: type what the arm does (Control: Layer), or set "
                                    "Layer to None")
        request["layer"] = {"part": settings.layer_part, "prompt": prompt}   # set after sampling: no strength
    looped = settings.loop if loop is None else loop
    if looped:
        request["loop"] = control["loop"] = True
        request["frames"] = min(int(request["frames"]), max_frames(settings) - 1)   # a loop needs one more frame
        request["control_strength"] = float(settings.control_strength)
    if settings.root_motion == "root_track":   # split off after the retarget (control_bake), not by the server
        control["root_track"] = True
    return control


def path_flags(context, settings, obj: bpy.types.Object, target, request: dict, from_hips: bool = False) -> dict:
    """Add the ``path`` field of a path target (curve or empty) for ``obj`` to a request (in place); returns the
    bake flags of a world-placed take. ControlInputError when the target cannot give a path."""
    scale = control_input.take_scale(obj, settings.scale_by_leg_length)
    points, what = control_input.target_path(target, obj, context, from_hips)
    request["path"] = control_input.path_field(points, request["frames"], scale, what)
    request["control_strength"] = float(settings.control_strength)
    return {"world": True, "scale": scale}


def current_pose_field(context, obj: bpy.types.Object, scale: float) -> list[dict]:
    """The ``keyframes`` field that starts a take in the armature's pose at the current frame."""
    scene = context.scene
    scene.frame_set(scene.frame_current, subframe=scene.frame_subframe)
    return control_input.keyframes_field([control_input.current_joints(obj, scale)], [0])


def row_control(context, settings, row, request: dict) -> dict | None:
    """A batch row's control fields (its Loop and Path; the panel's control strength) added to its request;
    returns the bake flags of its target (None for a plain take)."""
    control = control_flags(settings, request, loop=row.loop, layer=False)
    if row.path_target is not None:
        control.update(path_flags(context, settings, row.armature, row.path_target, request))
    return control or None


def start(context, request: dict, obj: bpy.types.Object, start_frame: float, control: dict, samples: int = 1) -> None:
    """Submit one request whose motions all go to ``obj`` as control takes (remembered for Regenerate)."""
    prefs = preferences(context)
    settings = context.scene.realign
    settings.busy, settings.progress, settings.message = True, 0.0, "connecting…"
    target = jobs.Target(obj.name, start_frame, control)
    jobs.remember(settings, request, target)
    jobs.submit(jobs.Job([request], {request["id"]: [target] * samples}, prefs.host, prefs.port, prefs.token))


class _ControlOperator:
    """Shared poll and error reporting: subclasses implement ``build`` -> (request, start frame, control, samples)."""

    @classmethod
    def poll(cls, context) -> bool:
        return _armature(context) is not None and not context.scene.realign.busy

    def execute(self, context):
        obj = _armature(context)
        settings = context.scene.realign
        try:
            request, start_frame, control, samples = self.build(context, settings, obj)
        except ControlInputError as exc:
            settings.message = f"error: {exc}"
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        start(context, request, obj, start_frame, control, samples)
        return {"FINISHED"}


class REALIGN_OT_follow_path(_ControlOperator, bpy.types.Operator):
    """Generate the prompt along the picked curve, or straight from the armature to the picked empty; with
    From current frame, the take starts in the armature's pose at the current frame"""

    bl_idname = "realign.follow_path"
    bl_label = "Follow path"

    def build(self, context, s, obj):
        scene, here = context.scene, s.path_from_current
        scene.frame_set(scene.frame_current, subframe=scene.frame_subframe)    # the hips as evaluated now
        req = jobs.generate_request(s, s.prompt, s.seconds, s.seed, s.takes)
        control = {**control_flags(s, req), **path_flags(context, s, obj, s.path_target, req, from_hips=here)}
        if not here:
            return req, s.start_frame, control, s.takes
        req["keyframes"] = current_pose_field(context, obj, control["scale"])
        return req, float(scene.frame_current), {**control, "continue": True}, s.takes


class REALIGN_OT_continue(_ControlOperator, bpy.types.Operator):
    """A new take of the prompt that starts in the armature's pose at the current frame, placed there"""

    bl_idname = "realign.continue_take"
    bl_label = "Continue from current frame"

    def build(self, context, s, obj):
        scale = control_input.take_scale(obj, s.scale_by_leg_length)
        req = jobs.generate_request(s, s.prompt, s.seconds, s.seed, s.takes)
        control = control_flags(s, req)
        req["keyframes"] = current_pose_field(context, obj, scale)
        req["control_strength"] = float(s.control_strength)
        control.update(world=True, scale=scale)
        return req, float(context.scene.frame_current), {**control, "continue": True}, s.takes


class REALIGN_OT_inbetween(_ControlOperator, bpy.types.Operator):
    """A take of the prompt through the poses at the selected keyframes of the armature's Action"""

    bl_idname = "realign.inbetween"
    bl_label = "In-between selected keyframes"

    def build(self, context, s, obj):
        scene = context.scene
        frames = control_input.selected_key_frames(obj)
        motion, length = control_input.inbetween_keys(frames, scene.render.fps / scene.render.fps_base,
                                                      max_frames(s))
        scale = control_input.take_scale(obj, s.scale_by_leg_length)
        poses = control_input.poses_at(obj, scene, frames, scale)
        req = jobs.generate_request(s, s.prompt, length / FPS, s.seed, s.takes)
        req["frames"] = length
        control = control_flags(s, req)
        if req["frames"] != length:
            raise ControlInputError(f"a loop needs one frame more than the selected keys span ({length} frames); "
                                    "turn Loop off or select a shorter span")
        req["keyframes"] = control_input.keyframes_field(poses, motion)
        req["control_strength"] = float(s.control_strength)
        action = obj.animation_data.action
        return req, frames[0], {**control, "world": True, "scale": scale, "stash": action.name}, s.takes


def sequence_entries(settings) -> list[dict]:
    """The ``sequence`` field from the panel's list; ControlInputError naming the row when it cannot be sent."""
    rows = list(settings.sequence)
    if not rows:
        raise ControlInputError("the sequence is empty: add rows (prompt, seconds) with +")
    out = []
    for i, row in enumerate(rows, start=1):
        prompt = " ".join(row.prompt.split())
        if not prompt:
            raise ControlInputError(f"sequence row {i} has no prompt")
        out.append({"prompt": prompt, "seconds": round(float(row.seconds), 3)})
    total = sum(e["seconds"] for e in out)
    if total > MAX_SEQUENCE_SECONDS:
        raise ControlInputError(f"the sequence lasts {total:g} s; at most {MAX_SEQUENCE_SECONDS:g} s")
    return out


class REALIGN_OT_generate_sequence(_ControlOperator, bpy.types.Operator):
    """Generate the list's prompts as one continuous motion, baked as one Action"""

    bl_idname = "realign.generate_sequence"
    bl_label = "Generate sequence"

    def build(self, context, s, obj):
        req = {"id": connection.new_id("seq"), "op": "generate", "sequence": sequence_entries(s),
               "seed": int(s.seed), "guidance": jobs.guidance(s)}
        if s.steps > 0:
            req["steps"] = int(s.steps)
        control = {"sequence": True}
        if s.root_motion == "root_track":
            control["root_track"] = True
        return req, s.start_frame, control, 1


class REALIGN_OT_sequence_add(bpy.types.Operator):
    """Add a sequence row (the current prompt, 4 s)"""

    bl_idname = "realign.sequence_add"
    bl_label = "Add sequence row"

    def execute(self, context):
        s = context.scene.realign
        row = s.sequence.add()
        row.prompt, row.seconds = s.prompt, 4.0
        s.sequence_index = len(s.sequence) - 1
        return {"FINISHED"}


class REALIGN_OT_sequence_remove(bpy.types.Operator):
    """Remove the selected sequence row"""

    bl_idname = "realign.sequence_remove"
    bl_label = "Remove sequence row"

    def execute(self, context):
        remove_selected_row(context.scene.realign, "sequence")
        return {"FINISHED"}


CLASSES = (REALIGN_OT_follow_path, REALIGN_OT_continue, REALIGN_OT_inbetween, REALIGN_OT_generate_sequence,
           REALIGN_OT_sequence_add, REALIGN_OT_sequence_remove)
