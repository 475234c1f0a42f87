"""Baking control takes: world placement, a separate root track, seamless loops, continue / in-between strips.

A control take is a server motion plus ``Target.control``, a dict of flags
set by the operator that asked for it:

* ``world`` + ``scale``: the motion is in the motion frame of ``control_input``
  (a path, key poses); it is baked at a fixed scale and kept where the server
  put it (``RetargetOptions.world_xy``; foot locking may not shorten its travel);
* ``root_track``: *Root track* (in place): the take is retargeted with its
  travel (so foot locking and pinning see the feet where they really are),
  then the hips' solved ground track (minus the rest hips) moves off the body
  onto a **root bone** when the rig has one above the hips (``root_bone_of``:
  the hips bone's ancestor named ``root``, e.g. of the UE mannequin or a
  generated Rigify rig, else its top ancestor), posed at rest for the solve and
  keyed in the same Action as its ``location``; otherwise onto the **armature object's
  location**, keyed in its own Action ("RA root ...") on its own NLA track
  next to the body's. The body keeps its rest hips position on the ground; the
  heading stays in the body pose (as the server's ``in_place`` does, whose
  track is the same pelvis ground track before foot cleanup: the add-on does
  not ask for it);
* ``loop``: one closing key one cycle after the first (the first pose moved by
  the server's per-cycle ``cycle.translation_xz``; the per-cycle turn
  ``cycle.yaw`` is stored on the Action, not applied, so the cycles walk
  straight) and a Cycles F-modifier on every F-curve: plain repeat for
  rotations, repeat with offset for locations (the travel accumulates). The
  Action's manual frame range is that cycle, marked cyclic (game exporters read
  it); the NLA strip plays ``loop_cycles`` cycles;
* ``continue``: the strip starts at the current frame on a new track above the
  playing one, which is not muted (the strip holds forward only); its first
  frame keeps the pose it continues from exactly (the retarget's ground snap
  fades in over ``CONTINUE_BLEND_FRAMES``);
* ``stash``: name of the Action holding the user's keyed poses (in-between):
  it moves to a muted NLA track "ReAlign keys: ..." so the take plays; the keys stay.

A sequence take (the motion's ``sequence`` segments) also gets a timeline
marker at each segment's first frame, named by its prompt.
"""
from __future__ import annotations

import json
from dataclasses import replace

import bpy
import numpy as np
from mathutils import Matrix

from . import armature_io, control_rigs, keying, rigify
from .retarget import RetargetOptions, frame_times

OBJECT_GROUP = "Object Transforms"
KEYS_PREFIX = "ReAlign keys: "
CONTINUE_BLEND_FRAMES = 15   # a continued take's ground snap fades in over 0.75 s (the server's key warp radius)
BASE_PROP = "realign_base_location"
ROOT_NAME = "root"
MARKER_BYTES = 63            # Blender's name limit


def take_options(options: RetargetOptions, control: dict) -> RetargetOptions:
    """Retarget options of a control take (see the module docstring)."""
    opts = replace(options, root_motion="full" if options.root_motion == "root_track" else options.root_motion)
    if control.get("world"):
        opts = replace(opts, world_xy=True, scale_by_leg_length=False, scale=float(control["scale"]),
                       lock_travel=False)
    if control.get("continue"):
        opts = replace(opts, keep_first=CONTINUE_BLEND_FRAMES)
    return opts


def close_loop(joints: np.ndarray, contacts, cycle: dict):
    """Append the closing frame: the first pose moved by the per-cycle ground offset (not turned)."""
    offset = np.asarray(cycle.get("translation_xz", (0.0, 0.0)), float)
    first = joints[:1].copy()
    first[..., 0] += offset[0]
    first[..., 2] += offset[1]
    contacts = None if contacts is None else np.concatenate([contacts, contacts[:1]])
    return np.concatenate([joints, first]), contacts


def solved_travel(rig, result) -> np.ndarray:
    """World ground displacement (F, 3) of the solved hips from the rest hips (z = 0)."""
    b = rig.names.index(result.names[result.root])
    m = rig.object_matrix
    hips = result.pose[:, result.root, :3, 3] @ m[:3, :3].T + m[:3, 3]
    d = hips - (m[:3, :3] @ rig.rest[b, :3, 3] + m[:3, 3])
    d[:, 2] = 0.0
    return d


def _local(rig, bone: str, d_world: np.ndarray) -> np.ndarray:
    """World displacements (F, 3) in the rest frame of ``bone`` (its ``location`` channel; parents at rest)."""
    b = rig.names.index(bone)
    return d_world @ np.linalg.inv(rig.object_matrix[:3, :3]).T @ rig.rest[b, :3, :3]


def without_travel(channels: list, rig, result, d_world: np.ndarray) -> list:
    """The channels with the hips' location moved back by the travel (the body stays in place)."""
    name = result.names[result.root]
    path = f'pose.bones["{bpy.utils.escape_identifier(name)}"].location'
    local = _local(rig, name, d_world)
    return [(p, i, g, v - local[:, i] if p == path else v) for p, i, g, v in channels]


def root_bone_of(obj: bpy.types.Object) -> str | None:
    """The root bone that carries a root track (None: the armature object does).

    The hips bone's nearest ancestor named ``root`` (any case, after a ``prefix:``; the UE mannequin's), else
    its top ancestor; a generated Rigify rig's ``root`` (its hips control ``torso`` hangs under a parentless
    ``MCH-torso.parent`` that follows ``root`` through a constraint). None when the hips have no parent.
    """
    bones = obj.data.bones
    if ROOT_NAME in bones and rigify.is_generated_rigify(bones.keys(), "rig_id" in obj.data):
        return ROOT_NAME
    hips = armature_io.get_bone_map(obj).get("pelvis")
    ancestors = list(bones[hips].parent_recursive) if hips and hips in bones else []    # nearest first
    if not ancestors:
        return None
    named = [b for b in ancestors if b.name.rsplit(":", 1)[-1].lower() == ROOT_NAME]
    return (named[0] if named else ancestors[-1]).name


def _object_base(obj: bpy.types.Object) -> np.ndarray:
    """The armature object's location without root tracks (remembered on the object at its first root track)."""
    if BASE_PROP not in obj:
        obj[BASE_PROP] = list(obj.location)
    base = np.array(obj[BASE_PROP], float)
    obj.location = base
    return base


def _bone_track_channels(rig, root: str, d_world: np.ndarray) -> list:
    """``location`` channels (bone rest frame) of a parentless root bone moved by d_world (F, 3)."""
    local = _local(rig, root, d_world)
    path = f'pose.bones["{bpy.utils.escape_identifier(root)}"].location'
    return [(path, i, root, local[:, i]) for i in range(3)]


def _closed(channel: tuple) -> tuple:
    """A loop channel: the closing key of a non-location channel equals the first key exactly."""
    path, index, group, values = channel
    if not path.endswith("location"):
        values = np.array(values, float)
        values[-1] = values[0]
    return path, index, group, values


def make_cyclic(action: bpy.types.Action, obj, frames: np.ndarray, strip, cycles: int) -> None:
    """Cycles F-modifiers on every F-curve, the cycle as the Action's cyclic frame range, strip over ``cycles``."""
    fcurves, _, _ = keying.action_channels(action, obj)
    for fc in fcurves:
        mod = fc.modifiers.new("CYCLES")
        mode = "REPEAT_OFFSET" if fc.data_path.endswith("location") else "REPEAT"
        mod.mode_before, mod.mode_after = mode, mode
    action.use_frame_range = True
    action.frame_start, action.frame_end = float(frames[0]), float(frames[-1])
    action.use_cyclic = True
    if strip is not None:
        strip.action_frame_start = float(frames[0])
        strip.action_frame_end = float(frames[0] + cycles * (frames[-1] - frames[0]))


def stash_keys(obj: bpy.types.Object, name: str) -> None:
    """Move the user's keyed-pose Action off the active slot onto a muted NLA track (nothing is deleted)."""
    anim = obj.animation_data
    action = bpy.data.actions.get(name)
    if anim is None or action is None or anim.action != action:
        return
    action.use_fake_user = True
    track = anim.nla_tracks.new()
    track.name = (KEYS_PREFIX + action.name)[:63]
    strip = track.strips.new(action.name[:63], int(np.floor(action.frame_range[0])), action)
    keying.assign_slot(anim, action, strip)
    track.mute = True
    anim.action = None


def _solve(obj: bpy.types.Object, joints: np.ndarray, contacts, options: RetargetOptions, control: dict):
    """Retarget a take -> (result, channels, root bone or None, object base or None, travel (F, 3) or None)."""
    tracked = bool(control.get("root_track"))
    root = root_bone_of(obj) if tracked else None
    base = _object_base(obj) if tracked and root is None else None
    if root is not None:    # the body is solved (a Rigify rig evaluated) on the root at rest
        obj.pose.bones[root].matrix_basis = Matrix.Identity(4)
    bpy.context.view_layer.update()
    rig = armature_io.rig_from_object(obj)
    result = control_rigs.retarget_object(obj, rig, joints, armature_io.get_bone_map(obj),
                                          take_options(options, control), contacts)
    channels = armature_io.take_channels(obj, result)
    d_world = solved_travel(rig, result) if tracked and result.root >= 0 else None
    if d_world is not None:
        channels = without_travel(channels, rig, result, d_world)
        if root is not None:
            channels += _bone_track_channels(rig, root, d_world)
    return result, channels, root, base, d_world


def bake(obj: bpy.types.Object, motion: dict, meta: dict, start: float, options: RetargetOptions, control: dict,
         cycles: int = 4, timing: dict | None = None):
    """Bake one control take (see the module docstring) -> (body Action, its strip, RetargetResult)."""
    laps = armature_io.Laps(timing)
    joints, contacts = np.asarray(motion["joints"], float), motion.get("contacts")
    cycle = motion.get("cycle") if control.get("loop") else None
    if cycle is not None:
        joints, contacts = close_loop(joints, contacts, cycle)
    result, channels, root, base, d_world = _solve(obj, joints, contacts, options, control)
    if cycle is not None:
        channels = [_closed(c) for c in channels]
    laps.lap("retarget_s")
    scene = bpy.context.scene
    frames = frame_times(len(joints), scene.render.fps / scene.render.fps_base, start)
    action = armature_io.new_take_action(obj, {**meta, **_control_meta(motion, control, root, cycle)})
    keying.write_curves(action, obj, frames, channels)
    follow = bool(control.get("continue"))
    strip = armature_io.add_strip(obj, action, start, mute_older=not follow)
    if follow:
        strip.extrapolation = "HOLD_FORWARD"
    if cycle is not None:
        make_cyclic(action, obj, frames, strip, cycles)
    if base is not None and d_world is not None:
        _object_track(obj, meta, start, frames, base + d_world, cycles if cycle is not None else 0, follow)
    if control.get("stash"):
        stash_keys(obj, str(control["stash"]))
    if motion.get("sequence"):
        mark_segments(scene, motion["sequence"], frames)
    laps.lap("keying_s")
    return action, strip, result


def mark_segments(scene, segments: list[dict], frames: np.ndarray) -> None:
    """A timeline marker at each sequence segment's first frame, named by its prompt (kept if already there)."""
    for segment in segments:
        frame = int(round(float(frames[min(int(segment["start"]), len(frames) - 1)])))
        name = str(segment.get("prompt", "")).encode()[:MARKER_BYTES].decode(errors="ignore")
        if not any(m.name == name and m.frame == frame for m in scene.timeline_markers):
            scene.timeline_markers.new(name, frame=frame)


def bake_joints(obj: bpy.types.Object, joints: np.ndarray, meta: dict, start: float = 1.0,
                options: RetargetOptions | None = None, contacts: np.ndarray | None = None,
                timing: dict | None = None):
    """``armature_io.bake`` for plain takes (Generate, Regenerate, Batch bake, joints files, batch results),
    through ``bake`` when *Root motion* is *Root track*."""
    options = options or RetargetOptions()
    if options.root_motion != "root_track":
        return armature_io.bake(obj, joints, meta, start, options, contacts, timing)
    return bake(obj, {"joints": joints, "contacts": contacts}, meta, start, options, {"root_track": True},
                timing=timing)


def _object_track(obj, meta: dict, start: float, frames: np.ndarray, location: np.ndarray, cycles: int,
                  follow: bool) -> bpy.types.Action:
    """The root track on the armature object: its own Action ("RA root ...") and NLA track above the body's."""
    action = armature_io.new_take_action(obj, meta)
    action.name = ("RA root " + armature_io.take_name(str(meta.get("prompt", "")), obj)[3:])[:60]
    action["realign_root_track"] = "object"
    keying.write_curves(action, obj, frames, [("location", i, OBJECT_GROUP, location[:, i]) for i in range(3)])
    strip = armature_io.add_strip(obj, action, start, mute_older=False)
    if follow:
        strip.extrapolation = "HOLD_FORWARD"
    if cycles:
        make_cyclic(action, obj, frames, strip, cycles)
    return action


def _control_meta(motion: dict, control: dict, root: str | None, cycle: dict | None) -> dict:
    """Custom properties describing the control take on its Action."""
    meta = {"realign_control": json.dumps({k: v for k, v in control.items() if k != "stash"}, sort_keys=True)}
    if control.get("root_track"):
        meta["realign_root_track"] = f"bone:{root}" if root else "object"
    if cycle is not None:
        meta["realign_cycle_yaw"] = float(cycle.get("yaw", 0.0))
    if motion.get("sequence"):
        meta["realign_sequence"] = json.dumps(motion["sequence"])
    return meta
