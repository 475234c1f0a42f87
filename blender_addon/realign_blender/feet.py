"""Feet on the ground: ground snap, foot pinning with two-bone IK (numpy only).

Contacts are (F, 4) bool in ``FOOT_JOINTS`` order (left ankle, left toe, right
ankle, right toe): the server's ``foot_contacts`` or ``kinematics.planted_feet``
of the motion (both vendored from realign_core by build.py: one rule).
"""
from __future__ import annotations

import numpy as np

from .kinematics import FOOT_JOINTS, runs
from .rig import LEGS, Plan, to_armature, to_world
from .rotations import EPS, normalize, rigid, swing


def _subtree(plan: Plan, b: int) -> list[int]:
    """Bone b and all its descendants."""
    out, stack = [], [b]
    while stack:
        c = stack.pop()
        out.append(c)
        stack.extend(plan.children[c])
    return out


def _foot_points(plan: Plan, pose: np.ndarray, leg: str) -> np.ndarray:
    """World positions (F, 2, 3) of the target's ankle and toe joints of one leg."""
    _, _, ankle, toe = LEGS[leg]
    a = plan.bone_of[ankle]
    toe_pt = pose[:, plan.bone_of[toe], :3, 3] if toe in plan.bone_of else _tail(plan, pose, a)
    return to_world(plan, np.stack([pose[:, a, :3, 3], toe_pt], 1))


def _tail(plan: Plan, pose: np.ndarray, b: int) -> np.ndarray:
    """Armature-space posed tail (F, 3) of bone b."""
    local_tail = np.linalg.inv(plan.rig.rest[b]) @ np.append(plan.rig.tails[b], 1.0)
    return (pose[:, b] @ local_tail)[:, :3]


def _legs(plan: Plan) -> list[str]:
    """Legs whose thigh, shin and foot are mapped and chained parent-to-child."""
    out = []
    for leg, (hip, knee, ankle, _) in LEGS.items():
        if all(j in plan.bone_of for j in (hip, knee, ankle)):
            t, s, f = (plan.bone_of[j] for j in (hip, knee, ankle))
            if s in _subtree(plan, t) and f in _subtree(plan, s):
                out.append(leg)
    return out


def ground_snap(plan: Plan, pose: np.ndarray, contacts: np.ndarray) -> np.ndarray:
    """Shift the hips' subtree vertically so planted feet sit at their rest heights; returns new poses."""
    legs = _legs(plan)
    if plan.root < 0 or not legs:
        return pose
    rest_pose = plan.rig.rest[None]
    offsets, lowest = [], []
    for leg in legs:
        cols = [FOOT_JOINTS.index(j) for j in LEGS[leg][2:]]
        now = _foot_points(plan, pose, leg)[..., 2]
        rest = _foot_points(plan, rest_pose, leg)[0, :, 2]
        offsets.append((rest[None] - now)[contacts[:, cols]])
        lowest.append(rest.min() - now.min())
    offs = np.concatenate(offsets)
    dz = float(np.median(offs)) if len(offs) else float(min(lowest))
    shift = np.linalg.inv(plan.rig.object_matrix)[:3, :3] @ np.array([0.0, 0.0, dz])
    pose = pose.copy()
    _translate(pose, _subtree(plan, plan.root), np.broadcast_to(shift, (len(pose), 3)))
    return pose


def keep_first_frame(plan: Plan, before: np.ndarray, after: np.ndarray, frames: int) -> np.ndarray:
    """Undo at frame 0 the rigid shift of the hips' subtree that ``ground_snap``, ``lock_root`` and
    ``pin_feet``'s hip lowering made between ``before`` and ``after`` (poses (F, B, 4, 4)), fading the undo out
    over ``frames`` frames (raised cosine): a take that continues from a pose starts with its hips exactly
    there (the legs keep their pinning) and is grounded from ``frames`` on."""
    if plan.root < 0 or frames <= 0:
        return after
    shift0 = after[0, plan.root, :3, 3] - before[0, plan.root, :3, 3]
    u = np.clip(np.arange(len(after)) / frames, 0.0, 1.0)
    weight = 0.5 * (1 + np.cos(np.pi * u))
    pose = after.copy()
    _translate(pose, _subtree(plan, plan.root), -weight[:, None] * shift0[None])
    return pose


def _translate(pose: np.ndarray, bones: list[int], offset: np.ndarray) -> None:
    """Add per-frame offsets (F, 3) to the positions of ``bones``, in place."""
    block = pose[:, bones]
    block[..., :3, 3] += offset[:, None]
    pose[:, bones] = block


def _pin_offsets(points: np.ndarray, contacts: np.ndarray, blend: int) -> np.ndarray:
    """World offsets (F, 3) that move one foot so its planted joint stays put.

    points: (F, 2, 3) ankle and toe world positions; contacts: (F, 2) bool.
    Ankle runs pin the ankle to its mean position over the run; toe runs pin
    the toe on frames where the ankle is free; offsets fade over ``blend``
    frames outside the runs.
    """
    frames = len(points)
    delta = np.zeros((frames, 3))
    planted = np.zeros(frames, bool)
    for col in (1, 0):
        for start, stop in runs(contacts[:, col]):
            pin = points[start:stop, col].mean(axis=0)
            sel = np.arange(start, stop)
            if col == 1:
                sel = sel[~contacts[start:stop, 0]]
            delta[sel] = pin - points[sel, col]
            planted[sel] = True
    if blend > 0 and planted.any() and not planted.all():
        idx = np.flatnonzero(planted)
        for t in np.flatnonzero(~planted):
            near = idx[np.argmin(np.abs(idx - t))]
            dist = abs(near - t)
            if dist <= blend:
                delta[t] = delta[near] * (1 - dist / (blend + 1))
    return delta


def _apply(pose: np.ndarray, bones: list[int], transform: np.ndarray, frames: np.ndarray) -> None:
    """Left-multiply poses of ``bones`` on ``frames`` by transforms (F, 4, 4), in place."""
    sub = pose[frames][:, bones]
    pose[np.ix_(frames, bones)] = transform[frames][:, None] @ sub


def _about(point: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """Rigid transforms (F, 4, 4) rotating by rot (F, 3, 3) about points (F, 3)."""
    return rigid(rot, point - np.einsum("fij,fj->fi", rot, point))


def two_bone_ik(plan: Plan, pose: np.ndarray, leg: str, target: np.ndarray, frames: np.ndarray) -> None:
    """Bend thigh and shin so the ankle reaches armature-space target (F, 3) on ``frames``, in place.

    The knee stays in the plane of hip, target and current knee; the foot
    keeps its orientation.
    """
    hip, knee, ankle, _ = (plan.bone_of.get(j, -1) for j in LEGS[leg])
    h, k, a = (pose[:, b, :3, 3] for b in (hip, knee, ankle))
    l1 = np.linalg.norm(k - h, axis=-1)
    l2 = np.linalg.norm(a - k, axis=-1)
    d = target - h
    dist = np.clip(np.linalg.norm(d, axis=-1), np.abs(l1 - l2) * 1.001 + EPS, (l1 + l2) * 0.99999)
    dhat = normalize(d)
    cos = np.clip((l1 ** 2 + dist ** 2 - l2 ** 2) / (2 * l1 * dist), -1.0, 1.0)
    bend = (k - h) - np.sum((k - h) * dhat, -1, keepdims=True) * dhat
    fwd = _tail(plan, pose, ankle) - a
    fwd = fwd - np.sum(fwd * dhat, -1, keepdims=True) * dhat
    weak = np.linalg.norm(bend, axis=-1) < 1e-4 * l1
    bend = normalize(np.where(weak[:, None], fwd, bend))
    k_new = h + l1[:, None] * (cos[:, None] * dhat + np.sqrt(1 - cos ** 2)[:, None] * bend)
    a_new = h + dist[:, None] * dhat
    r1 = swing(k - h, k_new - h)
    _apply(pose, _subtree(plan, hip), _about(h, r1), frames)
    r2 = swing(pose[:, ankle, :3, 3] - k_new, a_new - k_new)
    _apply(pose, _subtree(plan, knee), _about(k_new, r2), frames)
    undo = (r2 @ r1).swapaxes(-1, -2)
    _apply(pose, _subtree(plan, ankle), _about(a_new, undo), frames)


def _planted_masks(contacts: np.ndarray, leg: str) -> tuple[np.ndarray, np.ndarray]:
    """(ankle planted, toe planted while the ankle is free), each (F,) bool, of one leg."""
    planted = contacts[:, [FOOT_JOINTS.index(j) for j in LEGS[leg][2:]]]
    return planted[:, 0], planted[:, 1] & ~planted[:, 0]


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Moving average (F,) over ``window`` frames, edges held."""
    if window <= 1:
        return values
    half = window // 2
    padded = np.pad(values, half, mode="edge")
    return np.convolve(padded, np.ones(window) / window, mode="valid")[:len(values)]


def _height_error(plan: Plan, pose: np.ndarray, contacts: np.ndarray, legs: list[str], window: int) -> np.ndarray:
    """World Z shift (F,) that puts the planted foot joints at their rest heights (the ground), smoothed.

    Frames where no joint is planted interpolate between their neighbours.
    """
    frames = len(pose)
    total, count = np.zeros(frames), np.zeros(frames)
    for leg in legs:
        now = _foot_points(plan, pose, leg)[..., 2]
        rest = _foot_points(plan, plan.rig.rest[None], leg)[0, :, 2]
        for k, mask in enumerate(_planted_masks(contacts, leg)):
            total[mask] += rest[k] - now[mask, k]
            count[mask] += 1
    have = np.flatnonzero(count)
    if not len(have):
        return np.zeros(frames)
    dz = np.interp(np.arange(frames), have, total[have] / count[have])
    return _smooth(dz, window)


def _settle(steps: np.ndarray, ground: np.ndarray, leak: float) -> np.ndarray:
    """Sum of steps (F,) that relaxes toward ``ground`` (F,) by 1/leak of the gap per frame (no drift)."""
    out = np.empty(len(steps))
    z = ground[0]
    for t, step in enumerate(steps):
        z += step
        z += (ground[t] - z) / leak
        out[t] = z
    return out


def lock_root(plan: Plan, pose: np.ndarray, contacts: np.ndarray, kept: np.ndarray | None = None,
              heights: bool = True, window: int = 7, leak: float = 20.0) -> np.ndarray:
    """Move the body against the slide of its planted feet; returns new poses.

    Horizontally, between two frames on which a foot joint stays planted (its
    ankle, or its toe while the ankle is free) that joint should not move:
    the hips' subtree is shifted by minus the mean step of the planted
    joints, summed over time (continuous; the path may travel less than
    generated when the generated feet slide). Vertically (``heights``) the
    same steps are followed, but relaxed over ``leak`` frames toward the shift
    that puts planted joints at their rest heights (flat ground, smoothed over
    ``window`` frames), so the body cannot sink or float away. A rigid shift turns no
    bone, so the leg IK of ``pin_feet`` is left only what two planted feet
    disagree on. kept: (3,) bool world axes the root path may change on
    (``RetargetOptions.kept_axes``; Z is governed by ``heights``).
    """
    legs = _legs(plan)
    if plan.root < 0 or not legs:
        return pose
    steps = np.zeros((len(pose) - 1, 3))
    count = np.zeros(len(pose) - 1)
    for leg in legs:
        points = _foot_points(plan, pose, leg)
        for k, mask in enumerate(_planted_masks(contacts, leg)):
            held = mask[1:] & mask[:-1]
            steps[held] += np.diff(points[:, k], axis=0)[held]
            count[held] += 1
    move = np.zeros((len(pose), 3))
    move[1:] = -steps / np.maximum(count, 1)[:, None]
    if kept is not None:
        move[:, ~np.asarray(kept, bool)] = 0.0
    shift = np.cumsum(move, axis=0)
    if heights and (kept is None or kept[2]):
        shift[:, 2] = _settle(move[:, 2], _height_error(plan, pose, contacts, legs, window), leak)
    pose = pose.copy()
    _translate(pose, _subtree(plan, plan.root), shift @ np.linalg.inv(plan.rig.object_matrix)[:3, :3].T)
    return pose


def pin_feet(plan: Plan, pose: np.ndarray, contacts: np.ndarray, blend: int = 3) -> np.ndarray:
    """Two-bone IK on contact frames so planted ankles/toes do not slide; returns new poses.

    Where a pinned ankle is out of the leg's reach the hips are lowered
    (smoothly over time) just enough to reach it.
    """
    pose = pose.copy()
    targets = {}
    for leg in _legs(plan):
        cols = [FOOT_JOINTS.index(j) for j in LEGS[leg][2:]]
        points = _foot_points(plan, pose, leg)
        delta = _pin_offsets(points, contacts[:, cols], blend)
        frames = np.flatnonzero(np.linalg.norm(delta, axis=-1) > 1e-9)
        if len(frames):
            targets[leg] = (to_armature(plan, points[:, 0] + delta), frames)
    if plan.root >= 0 and targets:
        _lower_hips(plan, pose, targets, window=max(blend, 1) * 2 + 1)
    for leg, (target, frames) in targets.items():
        two_bone_ik(plan, pose, leg, target, frames)
    return pose


def _lower_hips(plan: Plan, pose: np.ndarray, targets: dict, window: int, reach: float = 0.995) -> None:
    """Move the hips' subtree down (world Z) where a leg cannot reach its ankle target, in place.

    targets: leg -> (armature-space ankle targets (F, 3), frames they apply to).
    The drop is a moving minimum followed by a moving mean (never shallower
    than needed, no jumps).
    """
    frames_n = len(pose)
    drop = np.zeros(frames_n)
    for leg, (target, frames) in targets.items():
        hip, knee, ankle, _ = (plan.bone_of[j] for j in LEGS[leg])
        length = (np.linalg.norm(pose[0, knee, :3, 3] - pose[0, hip, :3, 3])
                  + np.linalg.norm(pose[0, ankle, :3, 3] - pose[0, knee, :3, 3]))
        h, p = to_world(plan, pose[frames, hip, :3, 3]), to_world(plan, target[frames])
        scale = np.linalg.norm(plan.rig.object_matrix[:3, 0])
        r = reach * length * scale
        horiz = np.sum((p[:, :2] - h[:, :2]) ** 2, -1)
        need = p[:, 2] + np.sqrt(np.maximum(r * r - horiz, 0.0)) - h[:, 2]
        drop[frames] = np.minimum(drop[frames], np.minimum(need, 0.0))
    if not drop.any():
        return
    half = window // 2
    padded = np.pad(drop, half, mode="edge")
    eroded = np.array([padded[t:t + window].min() for t in range(frames_n)])
    padded = np.pad(eroded, half, mode="edge")
    smooth = np.array([padded[t:t + window].mean() for t in range(frames_n)])
    shift = np.linalg.inv(plan.rig.object_matrix)[:3, :3] @ np.array([0.0, 0.0, 1.0])
    _translate(pose, _subtree(plan, plan.root), smooth[:, None] * shift)

