"""Between Blender armatures and the numpy retargeter: read rigs, make the ReAlign skeleton, bake takes."""
from __future__ import annotations

import json
import time

import bpy
import numpy as np

from . import bone_maps, control_rigs, keying, rig_maps
from .retarget import RetargetOptions, frame_times
from .rig import CHAIN_CHILD, Rig, rest_joints
from .rotations import make_continuous, make_euler_continuous, matrix_to_euler, quaternion_to_matrix
from .skeleton import FPS, JOINT_NAMES, PARENTS

TRACK_PREFIX = "ReAlign: "
MAP_PROP = "realign_bone_map"


class Laps:
    """Adds the seconds since the previous lap to ``timing[name]`` (nothing without a dict)."""

    def __init__(self, timing: dict | None):
        self.timing, self.last = timing, time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        if self.timing is not None:
            self.timing[name] = self.timing.get(name, 0.0) + now - self.last
        self.last = now


def create_skeleton(context: bpy.types.Context, name: str = "ReAlign Skeleton") -> bpy.types.Object:
    """A 22-joint armature (bones named like the joints) at the 3D cursor, selected and active."""
    arm = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, arm)
    context.scene.collection.objects.link(obj)
    obj.location = context.scene.cursor.location
    pos = rest_joints()
    prev_active = context.view_layer.objects.active
    context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    for j, joint in enumerate(JOINT_NAMES):
        bone = arm.edit_bones.new(joint)
        bone.head = pos[j]
        if j in CHAIN_CHILD:
            bone.tail = pos[CHAIN_CHILD[j]]
        else:
            d = pos[j] - pos[PARENTS[j]]
            bone.tail = pos[j] + 0.08 * d / np.linalg.norm(d)
        if PARENTS[j] >= 0:
            bone.parent = arm.edit_bones[JOINT_NAMES[PARENTS[j]]]
    bpy.ops.object.mode_set(mode="OBJECT")
    for b in obj.pose.bones:
        b.rotation_mode = "QUATERNION"
    if prev_active is not None and prev_active != obj:
        prev_active.select_set(False)
    obj.select_set(True)
    set_bone_map(obj, dict(zip(JOINT_NAMES, JOINT_NAMES)))
    return obj


def rig_from_object(obj: bpy.types.Object) -> Rig:
    """The rest pose, hierarchy, world matrix and current pose (kept by unmapped bones) of an armature."""
    bones = obj.data.bones
    names = [b.name for b in bones]
    index = {n: i for i, n in enumerate(names)}
    parents = [index[b.parent.name] if b.parent else -1 for b in bones]
    rest = np.array([np.array(b.matrix_local) for b in bones])
    tails = np.array([np.array(b.tail_local) for b in bones])
    basis = np.array([np.array(obj.pose.bones[n].matrix_basis) for n in names])
    return Rig(names, parents, rest, tails, np.array(obj.matrix_world), basis)


def get_bone_map(obj: bpy.types.Object) -> dict[str, str]:
    """The object's stored bone map, else the map saved for its bone names (``rig_maps``), else a detected one
    (stored on the object for next time). A broken saved file is left alone (the panel shows why)."""
    raw = obj.get(MAP_PROP)
    if raw:
        mapping = json.loads(raw)
        if isinstance(mapping, dict) and mapping:
            return mapping
    try:
        saved = rig_maps.user_store().find([b.name for b in obj.data.bones])
    except (OSError, ValueError):
        saved = None
    if saved is not None:
        set_bone_map(obj, saved.mapping)
        return saved.mapping
    _, mapping = bone_maps.detect_bone_map([b.name for b in obj.data.bones])
    set_bone_map(obj, mapping)
    return mapping


def set_bone_map(obj: bpy.types.Object, mapping: dict[str, str]) -> None:
    """Store a bone map on the armature object (a JSON custom property)."""
    obj[MAP_PROP] = json.dumps({j: b for j, b in mapping.items() if b})


def _rotation_channels(pbone: bpy.types.PoseBone, quats: np.ndarray) -> list[tuple[str, int, np.ndarray]]:
    """Channels for one bone's rotations (F, 4) in the bone's own rotation mode."""
    path = f'pose.bones["{bpy.utils.escape_identifier(pbone.name)}"]'
    mode = pbone.rotation_mode
    if mode == "QUATERNION":
        return [(f"{path}.rotation_quaternion", i, quats[:, i]) for i in range(4)]
    if mode == "AXIS_ANGLE":
        q = make_continuous(quats)
        q = q * np.where(q[:, :1] < 0, -1.0, 1.0)
        angle = 2 * np.arccos(np.clip(q[:, 0], -1, 1))
        axis = q[:, 1:] / np.maximum(np.linalg.norm(q[:, 1:], axis=-1, keepdims=True), 1e-9)
        axis[np.linalg.norm(q[:, 1:], axis=-1) < 1e-9] = [0, 1, 0]
        vals = np.concatenate([angle[:, None], axis], 1)
        return [(f"{path}.rotation_axis_angle", i, vals[:, i]) for i in range(4)]
    euler = make_euler_continuous(matrix_to_euler(quaternion_to_matrix(quats), mode))
    return [(f"{path}.rotation_euler", i, euler[:, i]) for i in range(3)]


def take_name(prompt: str, obj: bpy.types.Object) -> str:
    """Action name from the prompt (Blender limits names to 63 bytes)."""
    words = " ".join(prompt.split())[:40] or "motion"
    return f"RA {words} ({obj.name})"[:60]


def bake(obj: bpy.types.Object, joints: np.ndarray, meta: dict, start_frame: float = 1.0,
         options: RetargetOptions | None = None, contacts: np.ndarray | None = None, timing: dict | None = None):
    """Retarget joints (F, 22, 3) metres Y up onto an armature as a new Action and NLA strip.

    meta: custom properties for the action (prompt, seed, strength, cfg, model,
    server_version, ...). Nothing existing is overwritten: the action is new
    (fake user), on a new NLA track; earlier ReAlign tracks of the object are
    muted so the new take plays. Returns (action, strip, RetargetResult).
    timing: when given, seconds are added to its retarget_s, keying_s and nla_s.
    """
    laps = Laps(timing)
    bpy.context.view_layer.update()
    rig = rig_from_object(obj)
    result = control_rigs.retarget_object(obj, rig, joints, get_bone_map(obj), options, contacts)
    scene = bpy.context.scene
    frames = frame_times(len(joints), scene.render.fps / scene.render.fps_base, start_frame)
    channels = take_channels(obj, result)
    laps.lap("retarget_s")
    action = new_take_action(obj, meta)
    keying.write_curves(action, obj, frames, channels)
    laps.lap("keying_s")
    strip = add_strip(obj, action, start_frame)
    laps.lap("nla_s")
    return action, strip, result


def take_channels(obj: bpy.types.Object, result) -> list[tuple[str, int, str, np.ndarray]]:
    """The channels to key for a RetargetResult: (data_path, index, group, values (F,))."""
    channels = list(result.properties)
    for b in np.flatnonzero(result.driven):
        pbone = obj.pose.bones[result.names[b]]
        channels += [(p, i, pbone.name, v) for p, i, v in _rotation_channels(pbone, result.quaternions[:, b])]
    if result.root >= 0:
        root = result.names[result.root]
        channels += [(f'pose.bones["{bpy.utils.escape_identifier(root)}"].location', i, root,
                      result.locations[:, result.root, i]) for i in range(3)]
    return channels


def new_take_action(obj: bpy.types.Object, meta: dict) -> bpy.types.Action:
    """A new Action (fake user) named after the prompt, with the scalar ``meta`` as custom properties."""
    action = bpy.data.actions.new(take_name(str(meta.get("prompt", "")), obj))
    action.use_fake_user = True
    for key, value in meta.items():
        if isinstance(value, (int, float, str)):
            action[key] = value
    action["realign_fps"] = FPS
    return action


def add_strip(obj: bpy.types.Object, action: bpy.types.Action, start_frame: float, mute_older: bool = True):
    """Put an action on a new NLA track of obj (older ReAlign tracks muted when mute_older); returns the strip."""
    anim = obj.animation_data or obj.animation_data_create()
    for track in anim.nla_tracks:
        if mute_older and track.name.startswith(TRACK_PREFIX):
            track.mute = True
    track = anim.nla_tracks.new()
    track.name = (TRACK_PREFIX + action.name)[:63]
    strip = track.strips.new(action.name[:63], int(round(start_frame)), action)
    keying.assign_slot(anim, action, strip)
    return strip
