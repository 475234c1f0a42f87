"""What the control actions send, read from the scene: paths from curves and empties, poses from the rig.

The *motion frame* of a control take is the Blender world seen the way the
server's motions are: metres, Y up, divided by the take's fixed scale ``s``
(rig leg length / the ReAlign skeleton's leg length, or 1 when *Scale by leg
length* is off) about the world origin, heights from the armature object's
origin -- the exact inverse of ``retarget.place_source`` with
``RetargetOptions.world_xy``: Blender (bx, by, bz) -> motion (bx / s, (bz - oz) / s, -by / s)
(``rotations.yup_to_blender`` is (x, y, z) -> (x, -z, y)). The server places
a constrained motion in that frame (at the path's start, or at the frame-0
key pose), so the baked take stands where the curve, empty or current pose is.

Errors are ``ControlInputError`` with a message for the panel; nothing here
changes the scene except the current frame while reading keyed poses (restored).
"""
from __future__ import annotations

import bpy
import numpy as np

from . import armature_io
from .retarget import frame_times, leg_length_target
from .rig import CHAIN_CHILD, LEGS, J, make_plan, rest_joints
from .skeleton import FPS, JOINT_NAMES, PARENTS

MAX_PATH_POINTS = 200       # control points sent (the server accepts up to its max_path_points, 1000)
MIN_PATH_LENGTH_M = 0.05
LEAD_IN_M = 0.01            # a curve starting farther than this from the hips (on the ground) gets a lead-in


class ControlInputError(ValueError):
    """The scene does not hold what the action needs (the message says what to do)."""


# ----------------------------------------------------------------- motion frame

def source_leg_length() -> float:
    """Hip->knee->ankle length (m) of the ReAlign skeleton's rest pose (mean of the legs)."""
    pos = rest_joints()
    return float(np.mean([np.linalg.norm(pos[J[k]] - pos[J[h]]) + np.linalg.norm(pos[J[a]] - pos[J[k]])
                          for h, k, a, _ in LEGS.values()]))


def take_scale(obj: bpy.types.Object, scale_by_leg_length: bool) -> float:
    """The fixed scale s of a control take on ``obj`` (world units per motion metre)."""
    if not scale_by_leg_length:
        return 1.0
    plan = make_plan(armature_io.rig_from_object(obj), armature_io.get_bone_map(obj))
    target = leg_length_target(plan)
    return float(target / source_leg_length()) if target else 1.0


def world_to_motion(points: np.ndarray, scale: float, floor_z: float) -> np.ndarray:
    """Blender world points (..., 3) -> motion-frame points (..., 3) (metres, Y up)."""
    p = np.asarray(points, float)
    return np.stack([p[..., 0], p[..., 2] - floor_z, -p[..., 1]], -1) / scale


def ground_xz(points: np.ndarray, scale: float) -> np.ndarray:
    """Blender world points (..., 3) -> the motion frame's ground coordinates [x, z] (..., 2)."""
    p = np.asarray(points, float)
    return np.stack([p[..., 0], -p[..., 1]], -1) / scale


# ------------------------------------------------------------------------ paths

def curve_points(obj: bpy.types.Object, depsgraph) -> np.ndarray:
    """World points (N, 3) of the curve's first spline, in order (a cyclic spline ends at its start)."""
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        co = np.array([v.co[:] for v in mesh.vertices] if mesh else [], float).reshape(-1, 3)
        edges = [tuple(e.vertices) for e in mesh.edges] if mesh else []
    finally:
        evaluated.to_mesh_clear()
    if len(co) < 2 or not edges:
        raise ControlInputError(f"curve '{obj.name}' has no points to follow (give it at least two points)")
    order = _walk(len(co), edges)
    world = co[order] @ np.array(obj.matrix_world)[:3, :3].T + np.array(obj.matrix_world)[:3, 3]
    return world


def _walk(count: int, edges: list[tuple[int, int]]) -> list[int]:
    """Vertex order along the connected polyline that holds vertex 0 (from one of its ends)."""
    links: dict[int, list[int]] = {i: [] for i in range(count)}
    for a, b in edges:
        links[a].append(b)
        links[b].append(a)
    component = _component(links, 0)
    start = min((v for v in component if len(links[v]) == 1), default=0)
    seen: set[int] = set()
    order: list[int] = []
    node: int | None = start
    while node is not None and node not in seen:
        seen.add(node)
        order.append(node)
        node = next((n for n in links[node] if n not in seen), None)
    if len(order) > 2 and start in links[order[-1]]:    # cyclic: close the loop
        order.append(start)
    return order


def _component(links: dict[int, list[int]], root: int) -> set[int]:
    seen, stack = {root}, [root]
    while stack:
        for n in links[stack.pop()]:
            if n not in seen:
                seen.add(n)
                stack.append(n)
    return seen


def resample(points: np.ndarray, count: int) -> np.ndarray:
    """count points (count, D) evenly spaced by arc length along a polyline (N, D)."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=-1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    u = np.linspace(0.0, cum[-1], count)
    return np.stack([np.interp(u, cum, points[:, d]) for d in range(points.shape[1])], -1)


def path_field(world_points: np.ndarray, frames: int, scale: float, what: str) -> dict:
    """The ``path`` field: ground points of a world polyline (N, 3), traversed at constant speed over the take.

    Times run from 0 to the last frame's time ((frames - 1) / 20 s), so the take ends at the path's end.
    """
    ground = ground_xz(world_points, scale)
    length = float(np.sum(np.linalg.norm(np.diff(ground, axis=0), axis=-1))) if len(ground) > 1 else 0.0
    if length * scale < MIN_PATH_LENGTH_M:
        raise ControlInputError(f"{what} is {length * scale:.3f} m long on the ground; a path needs at least "
                                f"{MIN_PATH_LENGTH_M} m")
    count = int(min(MAX_PATH_POINTS, max(2, len(ground) * 4)))
    points = resample(ground, count)
    cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=-1))])
    times = cum / cum[-1] * ((frames - 1) / FPS)
    return {"points": [[round(float(x), 5), round(float(z), 5)] for x, z in points],
            "times": [0.0] + [round(float(t), 5) for t in times[1:]]}


def hips_world(obj: bpy.types.Object) -> np.ndarray:
    """World position (3,) of the armature's hips as posed now (the object origin without a mapped hips bone)."""
    bone = armature_io.get_bone_map(obj).get("pelvis")
    world = np.array(obj.matrix_world)
    if bone and bone in obj.pose.bones:
        return world[:3, :3] @ np.array(obj.pose.bones[bone].head) + world[:3, 3]
    return world[:3, 3].copy()


def lead_in(hips: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The polyline (N, 3) from the hips (3,): the hips put in front when the ground start is elsewhere."""
    if np.linalg.norm((points[0] - hips)[:2]) <= LEAD_IN_M:
        return points
    return np.concatenate([hips[None], points])


def target_path(target: bpy.types.Object, obj: bpy.types.Object, context,
                from_hips: bool = False) -> tuple[np.ndarray, str]:
    """World polyline (N, 3) of a path target: a curve's first spline, or hips -> an empty (straight).

    from_hips: the polyline starts at the armature's hips as posed now (a take that starts in the current
    pose): a curve that starts elsewhere on the ground gets the hips put in front of it (a lead-in).
    """
    if target is None:
        raise ControlInputError("pick a curve or an empty as the path first (Control: Path)")
    if target.type == "CURVE":
        points = curve_points(target, context.evaluated_depsgraph_get())
        return (lead_in(hips_world(obj), points) if from_hips else points), f"curve '{target.name}'"
    if target.type == "EMPTY":
        end = np.array(target.matrix_world)[:3, 3]
        return np.stack([hips_world(obj), end]), f"the way to empty '{target.name}'"
    raise ControlInputError(f"'{target.name}' is a {target.type.lower()}; the path must be a curve or an empty")


# ------------------------------------------------------------------------ poses

def current_joints(obj: bpy.types.Object, scale: float) -> np.ndarray:
    """The armature's current pose as the 22 skeleton joints (22, 3) in the motion frame (metres, Y up).

    The mapped bones' heads give the directions; the lengths are the ReAlign
    skeleton's (the server's bodies), from the hips down the tree. A joint the
    map lacks points at its next mapped joint down the chain (spine bones of a
    rig with fewer), else along its rest direction.
    """
    bone_map = armature_io.get_bone_map(obj)
    world = np.array(obj.matrix_world)
    heads: dict[int, np.ndarray] = {}
    for j, name in enumerate(JOINT_NAMES):
        bone = bone_map.get(name)
        if bone and bone in obj.pose.bones:
            heads[j] = world[:3, :3] @ np.array(obj.pose.bones[bone].head) + world[:3, 3]
    if 0 not in heads:
        raise ControlInputError(f"'{obj.name}' has no hips bone in its bone map (Retarget: Detect)")
    rig_pts = {j: world_to_motion(p, scale, world[2, 3]) for j, p in heads.items()}
    rest = world_to_motion(rest_joints(), 1.0, 0.0)
    out = np.zeros((22, 3))
    out[0] = rig_pts[0]
    for j in range(1, 22):
        p = PARENTS[j]
        length = np.linalg.norm(rest[j] - rest[p])
        direction = _direction(j, rig_pts, rest)
        out[j] = out[p] + length * direction
    return out


def _direction(j: int, rig_pts: dict[int, np.ndarray], rest: np.ndarray) -> np.ndarray:
    """Unit direction (3,) of the segment parent(j) -> j in the rig's pose."""
    top = PARENTS[j]
    while top not in rig_pts and top > 0:
        top = PARENTS[top]
    bottom = j
    while bottom not in rig_pts and bottom in CHAIN_CHILD:
        bottom = CHAIN_CHILD[bottom]
    if top in rig_pts and bottom in rig_pts and bottom != top:
        d = rig_pts[bottom] - rig_pts[top]
        if np.linalg.norm(d) > 1e-9:
            return d / np.linalg.norm(d)
    d = rest[j] - rest[PARENTS[j]]
    return d / np.linalg.norm(d)


def selected_key_frames(obj: bpy.types.Object) -> list[float]:
    """Sorted distinct scene frames of the selected keyframes in the armature's active Action."""
    from . import keying

    anim = obj.animation_data
    action = anim.action if anim else None
    if action is None:
        raise ControlInputError(f"'{obj.name}' has no active Action with keyed poses (key poses in Pose Mode)")
    fcurves, _, _ = keying.action_channels(action, obj)
    frames = {round(float(k.co[0]), 3) for fc in fcurves for k in fc.keyframe_points if k.select_control_point}
    return sorted(frames)


def inbetween_keys(frames: list[float], scene_fps: float, max_frames: int) -> tuple[list[int], int]:
    """Motion frames (20 fps) of keyed scene frames (the first at 0) and the take's length in frames.

    Raises ControlInputError when fewer than two keys are selected or the keys span less than 1 s or more
    than the model's longest motion (``max_frames``), or two keys fall on the same motion frame.
    """
    if len(frames) < 2:
        raise ControlInputError(f"select at least two keyframes to in-between (selected: {len(frames)})")
    motion = [round((f - frames[0]) * FPS / scene_fps) for f in frames]
    length = motion[-1] + 1
    if length < FPS or length > max_frames:
        raise ControlInputError(f"the selected keys span frames {frames[0]:g}-{frames[-1]:g} = {length} motion "
                                f"frames at {FPS} fps; they must span 1 s to {max_frames / FPS:g} s "
                                f"({FPS}-{max_frames} frames)")
    if len(set(motion)) != len(motion):
        raise ControlInputError(f"keys closer than one motion frame ({1 / FPS:g} s): frames {frames}")
    return motion, length


def poses_at(obj: bpy.types.Object, scene, frames: list[float], scale: float) -> list[np.ndarray]:
    """The armature's pose (22, 3) motion frame at each scene frame (the current frame is restored)."""
    now, sub = scene.frame_current, scene.frame_subframe
    out = []
    try:
        for f in frames:
            scene.frame_set(int(np.floor(f)), subframe=float(f - np.floor(f)))
            out.append(current_joints(obj, scale))
    finally:
        scene.frame_set(now, subframe=sub)
    return out


def keyframes_field(poses: list[np.ndarray], motion_frames: list[int]) -> list[dict]:
    """The ``keyframes`` field from poses (22, 3) at motion frames."""
    return [{"frame": f, "joints": [[round(float(v), 5) for v in p] for p in pose]}
            for f, pose in zip(motion_frames, poses)]


def take_end(start: float, frames: int, scene) -> float:
    """Scene frame of a take's last motion frame."""
    return float(frame_times(frames, scene.render.fps / scene.render.fps_base, start)[-1])
