"""Constrained generation: paths, keyed poses, seamless loops and in-place clips with a root track.

``generate_controlled(pipe, captions, frames, seeds, controls, ...)`` runs the pipeline with the
ControlSpecs' constraint hook (:mod:`realign_core.guidance.constraints`) and finishes each motion:

* a layered body part (``ControlSpec.part``, :mod:`realign_core.control.parts`) is set exactly onto the
  body's anchors unless ``exact_keys`` is False (guidance brings the rest of the body along);
* keyed poses are met exactly by ``warp.warp_to_keyframes`` (guidance brings the motion close, the warp
  removes the rest smoothly) unless ``exact_keys`` is False;
* a loop is generated with one extra frame F that the loop cost ties to frame 0 (pose, velocities and
  contacts, all root-relative); the cycle transform T (frame 0 -> frame F: a ground translation and a
  turn) is read from that frame, the last frames are warped so that frame F is exactly T(frame 0), and
  the clip's F frames are returned with ``Cycle`` (the per-cycle root offset).  Repeating the clip with
  the offset applied each time gives one seamless motion;
* ``in_place`` moves the pelvis's ground track (XZ) off the joints onto a separate ``root_track``
  (F, 3): x, z (m) and heading (rad, about +Y, 0 = +Z, positive toward +X); joints minus the track's
  XZ stay in place (heading stays in the pose).

All joints are (F, 22, 3) float32 metres, Y up, 20 fps, in the world frame of the constraints.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from realign_core.control.parts import layer_part
from realign_core.control.warp import DEFAULT_RADIUS, warp_to_keyframes
from realign_core.guidance.control_spec import ControlSpec, Placement
from realign_core.motion.features import features_to_joints, recover_root


@dataclass(frozen=True)
class Cycle:
    """How the next cycle of a loop continues, in the world frame: turn by ``yaw`` (rad, about +Y) about
    the clip's first pelvis position, then move by ``translation_xz`` (m) -- the pelvis's ground
    displacement per cycle.  For a straight walk cycle yaw is ~0 and this is Blender's Cycles-modifier
    offset."""

    translation_xz: tuple[float, float]
    yaw: float

    def as_dict(self) -> dict:
        return {"translation_xz": list(self.translation_xz), "yaw": self.yaw}


@dataclass
class ControlledMotion:
    """One finished motion: joints (F, 22, 3) world; features (F, 263) canonical; root_track (F, 3) when
    in place; cycle when looped."""

    joints: np.ndarray
    features: np.ndarray
    root_track: np.ndarray | None = None
    cycle: Cycle | None = None


def cycle_transform(features: np.ndarray) -> tuple[np.ndarray, float]:
    """(F+1, 263) canonical features -> (root XZ of frame F (2,), heading of frame F rad): frame 0 -> frame F."""
    yaw, root = recover_root(torch.from_numpy(np.asarray(features, dtype=np.float64)))
    return root[-1, [0, 2]].numpy(), float(yaw[-1])


def close_loop(joints: np.ndarray, features: np.ndarray, radius: int = DEFAULT_RADIUS) -> tuple[np.ndarray, Placement]:
    """Canonical (F+1, 22, 3) joints and their features -> (F frames warped so that frame F = T(frame 0), T)."""
    xz, yaw = cycle_transform(features)
    cycle = Placement((float(xz[0]), float(xz[1])), yaw)
    warped = warp_to_keyframes(joints, (len(joints) - 1,), cycle.to_world(joints[0])[None],
                               radius=min(radius, len(joints) - 2))
    return warped[:-1], cycle


def world_cycle(cycle: Placement, placement: Placement) -> Cycle:
    """The canonical cycle transform expressed in the world frame of ``placement``."""
    start = placement.to_world(np.zeros(3))
    end = placement.to_world(np.array([cycle.origin[0], 0.0, cycle.origin[1]]))
    # world next = P T P^-1: a turn by yaw about the clip's first pelvis position, then the world displacement
    return Cycle((float(end[0] - start[0]), float(end[2] - start[2])), float(cycle.yaw))


def root_track(joints: np.ndarray) -> np.ndarray:
    """(F, 22, 3) -> (F, 3): pelvis x, z (m) and hips-and-shoulders heading (rad, unwrapped)."""
    from realign_core.motion.kinematics import facing_yaw

    return np.concatenate([joints[:, 0, [0, 2]], facing_yaw(np.asarray(joints, np.float64))[:, None]],
                          axis=-1).astype(np.float32)


def to_in_place(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F, 22, 3) -> (joints with the pelvis's XZ track removed, root_track (F, 3))."""
    track = root_track(joints)
    moved = np.array(joints, dtype=np.float32, copy=True)
    moved[..., 0] -= track[:, None, 0]
    moved[..., 2] -= track[:, None, 1]
    return moved, track


def generate_controlled(pipe, captions: list[str], frames: list[int], seeds: list[int],
                        controls: list[ControlSpec | None], cfg=None, guidance=None, callback=None,
                        in_place: bool | list[bool] = False, exact_keys: bool = True,
                        constraint_schedule=None) -> list[ControlledMotion]:
    """Generate one finished motion per caption (see the module docstring); frames at 20 fps."""
    from realign_core.pipeline import SamplingConfig

    n = len(captions)
    controls = list(controls) if controls is not None else [None] * n
    places = list(in_place) if isinstance(in_place, (list, tuple)) else [bool(in_place)] * n
    if not len(controls) == len(places) == len(frames) == n:
        raise ValueError(f"got {len(controls)} controls / {len(places)} in_place flags for {n} motions")
    loops = [c is not None and c.loop for c in controls]
    run_frames = [int(f) + (1 if lp else 0) for f, lp in zip(frames, loops)]
    for f, lp in zip(run_frames, loops):
        if lp and f > pipe.max_frames:
            raise ValueError(f"loop: a looped clip needs one extra frame; at most {pipe.max_frames - 1} frames "
                             f"({(pipe.max_frames - 1) / 20:g} s), got {f - 1}")
    # the loop's extra frame is part of the guided run; its own ControlSpec keeps loop=True
    out = pipe(list(captions), run_frames, list(seeds), cfg or SamplingConfig(), guidance, callback=callback,
               control=[c if c is None or c.active else None for c in controls],
               constraint_schedule=constraint_schedule)
    motions = []
    for i in range(n):
        feats = out.features[i, :run_frames[i]].cpu().numpy()
        motions.append(finish(feats, controls[i], places[i], exact_keys))
    return motions


def finish(features: np.ndarray, spec: ControlSpec | None, in_place: bool, exact_keys: bool) -> ControlledMotion:
    """Canonical features of one guided sample -> the finished ControlledMotion."""
    if spec is not None and spec.part is not None and exact_keys:
        features = layer_part(features, spec.part)
    joints = features_to_joints(features)
    placement = spec.placement() if spec is not None else Placement()
    keys = spec.canonical_keyframes() if spec is not None else None
    if keys is not None and exact_keys:
        joints = warp_to_keyframes(joints, keys[0], keys[1])
    cycle = None
    if spec is not None and spec.loop:   # after the keys: the seam is closed onto the (keyed) first frame
        joints, canon_cycle = close_loop(joints, features)
        features = features[:-1]
        cycle = world_cycle(canon_cycle, placement)
    joints = placement.to_world(joints).astype(np.float32)
    track = None
    if in_place:
        joints, track = to_in_place(joints)
    return ControlledMotion(joints, features.astype(np.float32), track, cycle)


def loop_seam_gaps(joints: np.ndarray, cycle: Cycle) -> dict[str, float]:
    """How well a clip's end flows into the next cycle's start, in cm (per frame, mean over joints):
    ``position`` |next0 - (last + last velocity)| (a pop shows here), ``velocity`` |(next1 - next0) -
    (next0 - last)|, and the same second difference measured inside the clip (median) for comparison."""
    j = np.asarray(joints, dtype=np.float64)
    start = j[0, 0].copy()
    turned = _turn_about(j[:2], start, cycle.yaw)
    nxt = turned + np.array([cycle.translation_xz[0], 0.0, cycle.translation_xz[1]])
    pos = np.linalg.norm(nxt[0] - (2 * j[-1] - j[-2]), axis=-1).mean()
    vel = np.linalg.norm((nxt[1] - nxt[0]) - (nxt[0] - j[-1]), axis=-1).mean()
    inside = np.linalg.norm(j[2:] - 2 * j[1:-1] + j[:-2], axis=-1).mean(-1)
    return {"position_cm": 100 * float(pos), "velocity_cm": 100 * float(vel),
            "inside_median_cm": 100 * float(np.median(inside))}


def _turn_about(points: np.ndarray, pivot: np.ndarray, yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    d = points - pivot
    out = d.copy()
    out[..., 0] = d[..., 0] * c + d[..., 2] * s
    out[..., 2] = d[..., 2] * c - d[..., 0] * s
    return out + pivot


__all__ = ["ControlledMotion", "Cycle", "close_loop", "finish", "generate_controlled", "loop_seam_gaps",
           "root_track", "to_in_place"]
