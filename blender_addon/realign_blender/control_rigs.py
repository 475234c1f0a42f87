"""Retargeting onto control rigs through Blender's own evaluation (bpy): generated Rigify rigs.

Plain armatures are solved by ``retarget`` alone. A generated Rigify rig is
solved on its deforming bones (``rigify.plan_rigify``), and its FK controls
are keyed by *visual keying*: a temporary empty holds the target pose of
every control, each control copies it (a Copy Transforms constraint),
Blender evaluates the whole rig (MCH parents, follow constraints, drivers)
once per frame, and each control's evaluated pose is converted to the
``matrix_basis`` that reproduces it without the constraint. The empties and
the constraints are removed afterwards; the IK/FK switches are keyed to FK.
"""
from __future__ import annotations

import bpy
import numpy as np
from mathutils import Matrix

from . import rigify
from .retarget import RetargetOptions, RetargetResult, retarget
from .rig import Rig
from .rotations import make_continuous, matrix_to_quaternion

HELPER_NAME = "ReAlign solve target"
CONSTRAINT_NAME = "ReAlign visual key"


def rigify_plan(obj: bpy.types.Object, rig: Rig, bone_map: dict[str, str]) -> rigify.RigifyPlan | None:
    """The Rigify plan of a generated Rigify armature (None for any other armature)."""
    if not rigify.is_generated_rigify(rig.names, "rig_id" in obj.data):
        return None
    switches = [pb.name for pb in obj.pose.bones if rigify.SWITCH_PROPERTY in pb]
    return rigify.plan_rigify(rig, bone_map, switches)


def retarget_object(obj: bpy.types.Object, rig: Rig, joints: np.ndarray, bone_map: dict[str, str],
                    options: RetargetOptions | None = None, contacts: np.ndarray | None = None) -> RetargetResult:
    """``retarget`` for an armature object; generated Rigify rigs go through their FK controls.

    For Rigify the result's bones are the keyed controls (``names``), its
    ``pose`` their evaluated armature-space poses, ``deform_map`` the DEF map
    the motion was solved on, and ``properties`` the IK/FK switch keys.
    """
    plan = rigify_plan(obj, rig, bone_map)
    if plan is None:
        return retarget(joints, rig, bone_map, options, contacts)
    solved = retarget(joints, plan.deform_rig, plan.deform_map, options, contacts)
    targets = rigify.control_targets(plan, rig, solved.pose)
    names = list(targets)
    basis, pose = visual_keys(obj, targets)
    quats = make_continuous(matrix_to_quaternion(basis[..., :3, :3]))
    frames = len(joints)
    switches = [(f'pose.bones["{bpy.utils.escape_identifier(b)}"]["{rigify.SWITCH_PROPERTY}"]', 0, b,
                 np.full(frames, rigify.FK)) for b in plan.switches]
    root = names.index(rigify.ROOT_CONTROL) if rigify.ROOT_CONTROL in names else -1
    return RetargetResult(names, quats, basis[..., :3, 3], np.ones(len(names), bool), root, pose, solved.contacts,
                          solved.placed, solved.scale, switches, plan.deform_map)


def _targets(names: list[str]) -> list[bpy.types.Object]:
    """One empty per control, linked to the scene: the poses the controls copy (no mode switch needed)."""
    out = []
    for name in names:
        empty = bpy.data.objects.new(f"{HELPER_NAME}: {name}", None)
        bpy.context.scene.collection.objects.link(empty)
        out.append(empty)
    return out


def visual_keys(obj: bpy.types.Object, targets: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``matrix_basis`` (F, n, 4, 4) per frame that puts each named pose bone at its armature-space target.

    targets: bone name -> (F, 4, 4) armature-space poses. Blender evaluates
    the rig (constraints, drivers, mechanism bones) once per frame with every
    bone copying an empty placed at its target; returns (basis, evaluated
    poses), both (F, n, 4, 4).
    """
    names = list(targets)
    world = np.array(obj.matrix_world) @ np.stack([targets[n] for n in names], 1)
    pbones = [obj.pose.bones[n] for n in names]
    empties = _targets(names)
    added = []
    try:
        for pb, empty in zip(pbones, empties):
            con = pb.constraints.new("COPY_TRANSFORMS")
            con.name, con.target = CONSTRAINT_NAME, empty
            added.append((pb, con))
        basis = np.zeros(world.shape)
        pose = np.zeros_like(basis)
        view_layer = bpy.context.view_layer
        for f in range(len(world)):
            for empty, target in zip(empties, world[f]):
                empty.matrix_world = Matrix(target.tolist())
            view_layer.update()
            for i, pb in enumerate(pbones):
                pose[f, i] = np.array(pb.matrix)
                basis[f, i] = np.array(obj.convert_space(pose_bone=pb, matrix=pb.matrix, from_space="POSE",
                                                         to_space="LOCAL"))
    finally:
        for pb, con in added:
            pb.constraints.remove(con)
        for empty in empties:
            bpy.data.objects.remove(empty)
        bpy.context.view_layer.update()
    return basis, pose
