"""Measuring a baked take the way a viewer sees it: Blender evaluates the rig, we read the bones that deform.

Limb directions (hip->knee, knee->ankle, ankle->toe, collar->shoulder,
shoulder->elbow, elbow->wrist: ``rig.LIMB_CHILD``) are taken between the
evaluated world heads of the deforming bones of the joints (the bone map, or
for a generated Rigify rig its ``DEF-`` map) and compared with the generated
joints placed in the world. Foot skate is the largest horizontal drift of a
planted ankle (or toe, while the ankle is free) from where its contact run
started, in metres.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tests.addon_modules import load
from tests.blender.helpers import angle_deg

rig_mod = load("rig")
kinematics = load("kinematics")


@dataclass
class Measure:
    """Limb direction errors (deg), (frames, pairs), foot skate (m) per planted foot joint, share of contact frames."""

    rig: str
    motion: str
    frames: int
    limb_deg: np.ndarray
    skate_m: dict[str, float]
    contact_share: float

    @property
    def skate_cm(self) -> float:
        return 100 * max(self.skate_m.values(), default=0.0)

    def line(self) -> str:
        return (f"{self.rig:18s} {self.motion:15s} {self.frames:4d} frames  limb direction error mean "
                f"{self.limb_deg.mean():6.3f} max {self.limb_deg.max():6.3f} deg  foot skate {self.skate_cm:5.2f} cm "
                f"({self.contact_share:.0%} contact frames)")


def world_heads(obj, names: list[str], times) -> np.ndarray:
    """World head positions (len(times), len(names), 3) of pose bones as Blender evaluates them."""
    import bpy

    out = np.empty((len(times), len(names), 3))
    pbones = [obj.pose.bones[n] for n in names]
    for i, t in enumerate(times):
        bpy.context.scene.frame_set(int(np.floor(t)), subframe=float(t - np.floor(t)))
        mw = np.array(obj.matrix_world)
        heads = np.array([pb.head for pb in pbones])
        out[i] = heads @ mw[:3, :3].T + mw[:3, 3]
    return out


def measure(obj, deform_map: dict[str, str], placed: np.ndarray, contacts: np.ndarray, start_frame: float,
            rig: str, motion: str, unit_m: float = 1.0, every: int = 1) -> Measure:
    """Evaluate every motion frame of a baked take on obj and measure it (see the module docstring).

    placed: (F, 22, 3) generated joints in the world (``RetargetResult.placed``); contacts: (F, 4) bool
    (``FOOT_JOINTS`` order); unit_m: metres per world unit. Directions use every ``every``-th frame, skate
    every frame.
    """
    import bpy

    scene = bpy.context.scene
    fps = scene.render.fps / scene.render.fps_base
    frames = len(placed)
    pairs = [(j, c) for j, c in rig_mod.LIMB_CHILD.items() if j in deform_map and c in deform_map]
    joints = sorted({x for pair in pairs for x in pair} | set(kinematics.FOOT_JOINTS) & set(deform_map))
    col = {j: i for i, j in enumerate(joints)}
    heads = world_heads(obj, [deform_map[j] for j in joints], start_frame + np.arange(frames) * fps / 20)
    idx = np.arange(0, frames, every)
    errs = [angle_deg(heads[idx, col[c]] - heads[idx, col[j]], placed[idx, rig_mod.J[c]] - placed[idx, rig_mod.J[j]])
            for j, c in pairs]
    return Measure(rig, motion, frames, np.stack(errs, 1), skate(heads * unit_m, col, contacts),
                   float(np.any(contacts, axis=1).mean()))


def skate(heads: np.ndarray, col: dict[str, int], contacts: np.ndarray) -> dict[str, float]:
    """Largest horizontal drift (heads' units) of each planted foot joint within its contact runs.

    heads: (F, joints, 3) world positions; col: joint name -> column; contacts: (F, 4) bool.
    """
    out = {}
    for leg in rig_mod.LEGS.values():
        ankle, toe = leg[2], leg[3]
        ca, ct = (contacts[:, kinematics.FOOT_JOINTS.index(j)] for j in (ankle, toe))
        for joint, mask in ((ankle, ca), (toe, ct & ~ca)):
            if joint not in col:
                continue
            pts = heads[:, col[joint], :2]
            worst = 0.0
            for start, stop in kinematics.runs(mask):
                worst = max(worst, float(np.abs(pts[start:stop] - pts[start]).max()))
            out[joint] = worst
    return out
