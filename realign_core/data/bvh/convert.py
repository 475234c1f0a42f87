"""BVH motion -> 22-joint SMPL / HumanML3D joint positions at 20 fps.

Pipeline (``bvh_to_smpl22``):

1. ``parse_bvh`` (``parse.py``) reads the hierarchy (joint names, parents,
   rest offsets, per-joint channel layout) and the motion block ``(F, C)``.
2. ``forward_kinematics`` (``parse.py``) turns it into world joint positions
   ``(F, J, 3)`` in the file's own units and axes.
3. ``map_joints`` (``rigs.py``) recognises the rig (Bandai Namco, Mixamo,
   CMU) from its joint names and maps our 22 joints onto BVH joints; joints
   the rig lacks (extra spine bones, collars) are synthesised here
   (``assemble_smpl22``), see ``map_joints``.
4. The up axis, the length unit and the handedness are detected and the
   positions converted to metres, Y up, right-handed (a character facing +Z
   has its left side at +X), see ``bvh_to_smpl22``.
5. ``resample_positions`` (``realign_core.motion.resample``) brings the clip
   to 20 fps (PCHIP).

The result is a ``Smpl22Motion``: positions ``(T, 22, 3)`` float64 metres
plus what was detected (rig, unit, scale, up axis, mirroring, joint map).
Every problem with the input is reported as ``BvhError`` (a ``ValueError``)
whose message starts with the file name.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from realign_core.data.bvh.parse import (
    DEFAULT_CONFIG,
    POSITION_CHANNELS,
    BvhError,
    BvhMotion,
    ImportConfig,
    forward_kinematics,
    parse_bvh,
)
from realign_core.data.bvh.rigs import detect_rig, map_joints
from realign_core.motion.resample import resample_positions
from realign_core.motion.skeleton import FPS, JOINT_INDEX, NUM_JOINTS

# --------------------------------------------------------------------------
# Result type
# --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Smpl22Motion:
    """A BVH clip converted to our skeleton.

    positions: (T, 22, 3) float64 metres, world Y up, right-handed, at ``fps``.
    fps: output frame rate (20 by default).
    source_fps: frame rate of the BVH file.
    source_file: path of the BVH file.
    rig: detected (or requested) rig name.
    scale: metres per file unit that was applied.
    unit: name of the unit ("cm", "m", ..., or "normalised" when no known
        unit gave a plausible height).
    up_axis: the file's up axis ("+Y", "+Z", ...).
    mirrored: True when the file was left-handed and X was negated.
    joint_map: our joint index -> BVH joint name for directly mapped joints;
        the others were synthesised.
    """

    positions: np.ndarray
    fps: float
    source_fps: float
    source_file: str
    rig: str
    scale: float
    unit: str
    up_axis: str
    mirrored: bool
    joint_map: dict[int, str] = field(default_factory=dict)


# --------------------------------------------------------------------------
# Assembling the 22 joints
# --------------------------------------------------------------------------


def _ancestors(parents: Sequence[int], joint: int) -> list[int]:
    """``joint`` and its ancestors, from the joint up to its root."""
    chain = [joint]
    while parents[chain[-1]] >= 0:
        chain.append(parents[chain[-1]])
    return chain


def _bone_path(parents: Sequence[int], start: int, end: int) -> list[int]:
    """BVH joints from ``start`` to its descendant ``end`` (both included).

    Falls back to ``[start, end]`` when ``start`` is not an ancestor of ``end``.
    """
    up = _ancestors(parents, end)
    if start not in up:
        return [start, end]
    return up[: up.index(start) + 1][::-1]


def _point_along_path(points: np.ndarray, fraction: float) -> np.ndarray:
    """Point at ``fraction`` of the arc length of a polyline.

    points: (T, K, 3) polyline vertices per frame -> (T, 3).
    """
    if points.shape[1] == 1:
        return points[:, 0].copy()
    seg = np.linalg.norm(np.diff(points, axis=1), axis=-1)  # (T, K-1)
    cum = np.concatenate([np.zeros((len(seg), 1)), np.cumsum(seg, axis=1)], axis=1)
    target = fraction * cum[:, -1]
    k = np.clip((cum[:, 1:] < target[:, None]).sum(axis=1), 0, seg.shape[1] - 1)
    rows = np.arange(len(points))
    t = (target - cum[rows, k]) / np.maximum(seg[rows, k], 1e-12)
    return points[rows, k] + t[:, None] * (points[rows, k + 1] - points[rows, k])


def _common_ancestor(parents: Sequence[int], a: int, b: int) -> int:
    """Nearest common ancestor of two BVH joints (-1 if in different trees)."""
    up_a = _ancestors(parents, a)
    return next((j for j in _ancestors(parents, b) if j in up_a), -1)


@dataclass(frozen=True)
class _Resolved:
    """Our joint index -> BVH joint index for the directly mapped joints."""

    direct: dict[int, int]
    names: dict[int, str]


def _resolve(bvh: BvhMotion, rig: str) -> _Resolved:
    """Direct joints of ``rig`` in ``bvh``, spine3 falling back to the arm branch."""
    names = map_joints(bvh.names, rig, bvh.source)
    index = {name: i for i, name in enumerate(bvh.names)}
    direct = {ours: index[name] for ours, name in names.items()}
    for side in ("left", "right"):
        collar = JOINT_INDEX[f"{side}_collar"]
        if collar in direct and _is_zero_bone(bvh, direct[collar]):
            del direct[collar], names[collar]
    spine3 = JOINT_INDEX["spine3"]
    if spine3 not in direct:
        branch = _common_ancestor(bvh.parents, direct[JOINT_INDEX["left_shoulder"]],
                                  direct[JOINT_INDEX["right_shoulder"]])
        if branch >= 0 and branch != direct[JOINT_INDEX["pelvis"]]:
            direct[spine3] = branch
            names[spine3] = bvh.names[branch]
    return _Resolved(direct, names)


def _is_zero_bone(bvh: BvhMotion, joint: int) -> bool:
    """True when the joint sits on its parent (zero offset, no position channels)."""
    has_position = any(c in POSITION_CHANNELS for c in bvh.channels[joint])
    length = float(np.linalg.norm(bvh.offsets[joint]))
    return not has_position and length < DEFAULT_CONFIG.zero_offset_eps


def _synthesise_spine(world: np.ndarray, parents: Sequence[int], out: np.ndarray,
                      direct: dict[int, int]) -> None:
    """Fill missing spine joints of ``out`` (T, 22, 3) along the BVH chain.

    world: (T, J, 3) BVH joint positions. Anchors are pelvis (0), spine1,
    spine2, spine3 (3) where mapped; a missing spine3 goes 2/3 of the way
    from the pelvis to the neck.
    """
    spine = [JOINT_INDEX[n] for n in ("pelvis", "spine1", "spine2", "spine3")]
    neck = JOINT_INDEX["neck"]
    known = [k for k, j in enumerate(spine) if j in direct]
    anchors = {k: direct[spine[k]] for k in known}
    top = direct[neck] if 3 not in anchors else anchors[3]
    top_level = 4.5 if 3 not in anchors else 3  # neck counts as 1.5 spine steps above spine3
    for k in range(1, 4):
        if k in anchors:
            continue
        lo = max(a for a in anchors if a < k)
        hi_candidates = [a for a in anchors if a > k]
        hi, hi_joint = (min(hi_candidates), anchors[min(hi_candidates)]) if hi_candidates \
            else (top_level, top)
        path = _bone_path(parents, anchors[lo], hi_joint)
        out[:, spine[k]] = _point_along_path(world[:, path], (k - lo) / (hi - lo))


def _synthesise_collars(out: np.ndarray, direct: dict[int, int], config: ImportConfig) -> None:
    """Fill missing collars of ``out`` (T, 22, 3) between neck and upper arm."""
    neck = out[:, JOINT_INDEX["neck"]]
    for side in ("left", "right"):
        collar = JOINT_INDEX[f"{side}_collar"]
        if collar not in direct:
            shoulder = out[:, JOINT_INDEX[f"{side}_shoulder"]]
            out[:, collar] = neck + config.collar_fraction * (shoulder - neck)


def assemble_smpl22(world: np.ndarray, bvh: BvhMotion, direct: dict[int, int],
                    config: ImportConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Our 22 joints (T, 22, 3) from BVH world positions (T, J, 3), same units.

    direct: our joint index -> BVH joint index; missing spine joints and
    collars are synthesised as documented in ``map_joints``.
    """
    out = np.full((world.shape[0], NUM_JOINTS, 3), np.nan)
    for ours, theirs in direct.items():
        out[:, ours] = world[:, theirs]
    _synthesise_spine(world, bvh.parents, out, direct)
    _synthesise_collars(out, direct, config)
    return out


# --------------------------------------------------------------------------
# Axes, units, handedness, frame rate
# --------------------------------------------------------------------------

_AXIS_LABELS = ("X", "Y", "Z")


def detect_up_axis(positions: np.ndarray) -> tuple[int, float]:
    """Up axis of a clip: (axis index 0/1/2, sign +-1).

    positions: (T, 22, 3). Uses the median over frames of the vector from
    the mid-ankle point to the head; its largest component is "up".
    """
    ankles = positions[:, [JOINT_INDEX["left_ankle"], JOINT_INDEX["right_ankle"]]].mean(axis=1)
    body = np.median(positions[:, JOINT_INDEX["head"]] - ankles, axis=0)
    axis = int(np.argmax(np.abs(body)))
    return axis, float(np.sign(body[axis]) or 1.0)


def up_rotation(axis: int, sign: float) -> np.ndarray:
    """Proper rotation (3, 3) taking the unit vector ``sign * e_axis`` to +Y.

    +Z up maps (x, y, z) -> (x, z, -y); a quarter turn about the axis
    perpendicular to both, or a half turn about X for -Y.
    """
    source = np.zeros(3)
    source[axis] = sign
    target = np.array([0.0, 1.0, 0.0])
    if np.allclose(source, target):
        return np.eye(3)
    if np.allclose(source, -target):
        return np.diag([1.0, -1.0, -1.0])
    k = np.cross(source, target)  # unit, since source is perpendicular to Y
    skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + skew + skew @ skew  # Rodrigues with a 90 degree angle


def body_chain_length(pose: np.ndarray, bvh_chain: float) -> float:
    """Pose-independent stature proxy: pelvis-to-head chain + mean leg chain.

    pose: (22, 3) one frame; bvh_chain: length of the BVH bone chain from the
    pelvis to the head joint (same units). Returns file units.
    """
    legs = []
    for side in ("left", "right"):
        hip, knee, ankle = (pose[JOINT_INDEX[f"{side}_{n}"]] for n in ("hip", "knee", "ankle"))
        legs.append(np.linalg.norm(knee - hip) + np.linalg.norm(ankle - knee))
    return bvh_chain + float(np.mean(legs))


def detect_unit(chain_length: float, config: ImportConfig = DEFAULT_CONFIG) -> tuple[str, float]:
    """(unit name, metres per unit) for a stature proxy in file units.

    The estimated body height is ``height_per_chain * chain_length * scale``;
    the candidate unit whose height is closest (in ratio) to
    ``target_height_m`` wins if that height lies in ``plausible_height_m``,
    otherwise the clip is scaled to exactly ``target_height_m``
    (unit "normalised").
    """
    if not np.isfinite(chain_length) or chain_length <= 0:
        raise ValueError(f"degenerate skeleton: body chain length {chain_length}")
    height = config.height_per_chain * chain_length
    name, scale = min(config.unit_candidates,
                      key=lambda c: abs(np.log(height * c[1] / config.target_height_m)))
    low, high = config.plausible_height_m
    if low <= height * scale <= high:
        return name, scale
    return "normalised", config.target_height_m / height


def facing_directions(positions: np.ndarray) -> np.ndarray:
    """Unit horizontal facing per frame (T, 3) of Y-up positions (T, 22, 3).

    across = (right_hip - left_hip) + (right_shoulder - left_shoulder);
    forward = cross(+Y, across).
    """
    j = JOINT_INDEX
    across = (positions[:, j["right_hip"]] - positions[:, j["left_hip"]]
              + positions[:, j["right_shoulder"]] - positions[:, j["left_shoulder"]])
    forward = np.cross(np.array([0.0, 1.0, 0.0]), across)
    return forward / np.maximum(np.linalg.norm(forward, axis=-1, keepdims=True), 1e-12)


def is_mirrored(positions: np.ndarray, config: ImportConfig = DEFAULT_CONFIG) -> bool:
    """True when the toes point backwards w.r.t. the hip/shoulder facing.

    positions: (T, 22, 3) metres, Y up. In a right-handed file with correct
    left / right labels, ankle -> toe vectors point forward whenever the toe
    is on the ground (within ``contact_margin_m`` of its lowest height in
    the clip; in swing a pointed foot may point backwards). A left-handed
    file (or one with swapped labels) makes them point backwards.
    """
    forward = facing_directions(positions)
    along = []
    for side in ("left", "right"):
        ankle, toe = JOINT_INDEX[f"{side}_ankle"], JOINT_INDEX[f"{side}_foot"]
        heights = positions[:, toe, 1]
        contact = heights <= heights.min() + config.contact_margin_m
        toe_vectors = positions[contact, toe] - positions[contact, ankle]
        along.append(np.sum(toe_vectors * forward[contact], axis=-1))
    return float(np.median(np.concatenate(along))) < 0


def bvh_to_smpl22(path: str | Path, target_fps: float = FPS, rig: str | None = None,
                  config: ImportConfig = DEFAULT_CONFIG) -> Smpl22Motion:
    """Import a BVH file as 22-joint positions in metres, Y up, at ``target_fps``.

    Steps: parse, forward kinematics, joint mapping (``map_joints``), then

    * up axis: the median mid-ankle -> head direction picks the file's up
      axis; a proper rotation takes it to +Y (Z-up: (x, y, z) -> (x, z, -y));
    * unit: pelvis-to-head bone chain + hip-knee-ankle chain of the first
      frame, times ``height_per_chain``, estimates the body height; the
      unit (m, cm, mm, in, CMU) giving a height closest to 1.7 m inside
      1.4-2.0 m is used, else the body is scaled to 1.7 m (``detect_unit``);
    * handedness: if the grounded toes point backwards w.r.t. the
      hip/shoulder facing, the file is left-handed and X is negated
      (``mirrored``, see ``is_mirrored``);
    * frame rate: shape-preserving cubic resampling (``resample_positions``).

    Raises BvhError naming the file for malformed files, unmappable rigs and
    clips with fewer than 2 frames.
    """
    bvh = parse_bvh(path)
    if bvh.num_frames < 2:
        raise BvhError(f"{bvh.source}: need at least 2 frames, file has {bvh.num_frames}")
    chosen = rig if rig is not None else detect_rig(bvh.names)
    resolved = _resolve(bvh, chosen)
    world = forward_kinematics(bvh)
    positions = assemble_smpl22(world, bvh, resolved.direct, config)
    axis, sign = detect_up_axis(positions)
    positions = positions @ up_rotation(axis, sign).T
    unit, scale = _unit_for(bvh, world, positions, resolved, config)
    positions = positions * scale
    mirrored = is_mirrored(positions, config)
    if mirrored:
        positions[..., 0] *= -1.0
    return Smpl22Motion(
        positions=resample_positions(positions, bvh.fps, target_fps), fps=float(target_fps),
        source_fps=bvh.fps, source_file=str(path), rig=chosen, scale=scale, unit=unit,
        up_axis=f"{'+' if sign > 0 else '-'}{_AXIS_LABELS[axis]}", mirrored=mirrored,
        joint_map=dict(sorted(resolved.names.items())),
    )


def _unit_for(bvh: BvhMotion, world: np.ndarray, positions: np.ndarray,
              resolved: _Resolved, config: ImportConfig) -> tuple[str, float]:
    """Detected (unit, scale) from the first frame's bone chains."""
    pelvis, head = resolved.direct[JOINT_INDEX["pelvis"]], resolved.direct[JOINT_INDEX["head"]]
    path = _bone_path(bvh.parents, pelvis, head)
    chain = float(np.sum(np.linalg.norm(np.diff(world[0, path], axis=0), axis=-1)))
    try:
        return detect_unit(body_chain_length(positions[0], chain), config)
    except ValueError as exc:
        raise BvhError(f"{bvh.source}: {exc}") from None
