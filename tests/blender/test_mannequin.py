"""The mannequin body in real Blender (bpy 5.0.1 and 4.5.15): made by "Create ReAlign skeleton" and by
"Add preview mannequin" on any mapped armature; every vertex weighted, deformed exactly by Blender's
linear blend skinning of the posed bones, sized to the rig."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests import retarget_rigs
from tests.blender.conftest import NO_BPY
from tests.blender.helpers import armature_from_rig
from tests.blender.motion import synthetic_walk

bpy = pytest.importorskip("bpy", reason=NO_BPY)


def _mannequin(addon, armature):
    body = addon.body_objects.body_of(armature, "mannequin")
    assert body is not None and body.type == "MESH" and body.parent == armature
    assert [m.object for m in body.modifiers if m.type == "ARMATURE"] == [armature]
    return body


def _weights(body) -> tuple[np.ndarray, list[str]]:
    """(V, G) vertex-group weights and the group names."""
    names = [g.name for g in body.vertex_groups]
    w = np.zeros((len(body.data.vertices), len(names)))
    for v in body.data.vertices:
        for g in v.groups:
            w[v.index, g.group] = g.weight
    return w, names


def _evaluated(body) -> np.ndarray:
    """(V, 3) evaluated vertex positions in the body's own (= armature) space."""
    bpy.context.view_layer.update()
    evaluated = body.evaluated_get(bpy.context.evaluated_depsgraph_get())
    mesh = evaluated.to_mesh()
    co = np.empty(len(mesh.vertices) * 3)
    mesh.vertices.foreach_get("co", co)
    evaluated.to_mesh_clear()
    return co.reshape(-1, 3)


def _expected_lbs(armature, body) -> np.ndarray:
    """Linear blend skinning computed with numpy from the posed bones: sum_b w_b (pose_b rest_b^-1) v."""
    w, names = _weights(body)
    rest = np.array([v.co for v in body.data.vertices])
    pose = [np.array(armature.pose.bones[n].matrix) for n in names]
    skin = np.array([p @ np.linalg.inv(np.array(armature.data.bones[n].matrix_local)) for p, n in zip(pose, names)])
    moved = np.einsum("gab,vb->vga", skin[:, :3, :3], rest) + skin[None, :, :3, 3]
    return np.einsum("vg,vga->va", w / w.sum(1, keepdims=True), moved)


def _world_bounds(body) -> tuple[np.ndarray, np.ndarray]:
    mw = np.array(body.matrix_world)
    world = _evaluated(body) @ mw[:3, :3].T + mw[:3, 3]
    return world.min(0), world.max(0)


def test_create_skeleton_adds_a_skinned_mannequin(addon):
    assert bpy.ops.realign.create_skeleton() == {"FINISHED"}
    armature = bpy.context.active_object
    assert armature.type == "ARMATURE"  # the armature stays active for Generate
    body = _mannequin(addon, armature)
    w, names = _weights(body)
    print(f"mannequin: {len(body.data.vertices)} vertices, {len(body.data.polygons)} faces, {len(names)} groups")
    assert sorted(names) == sorted(b.name for b in armature.data.bones)  # all 22 bones carry weight
    assert np.all((w > 0).sum(1) >= 1) and np.allclose(w.sum(1), 1.0, atol=1e-3)  # every vertex, summing to 1
    assert all(w[:, k].max() == 1.0 for k in range(len(names)))
    assert [m.name for m in body.data.materials] == ["ReAlign mannequin", "ReAlign mannequin joints"]
    lo, hi = _world_bounds(body)
    head = np.array(armature.data.bones["head"].head_local)
    toes = min(armature.data.bones[n].head_local.z for n in ("left_foot", "right_foot"))
    print(f"  size {hi - lo} m, top {hi[2]:.3f}, sole {lo[2]:.3f}, head joint {head[2]:.3f}, toes {toes:.3f}")
    assert 1.6 < hi[2] - lo[2] < 1.9 and hi[2] > head[2] + 0.1 and lo[2] < toes  # standing, head on top
    assert 1.8 < hi[0] - lo[0] < 2.1  # T-pose arm span, hands included
    assert 0.2 < hi[1] - lo[1] < 0.5  # body depth: heel to toe tip, chest
    assert body.matrix_world == armature.matrix_world


def test_mannequin_deforms_with_the_posed_bones(addon):
    bpy.ops.realign.create_skeleton()
    armature = bpy.context.active_object
    body = _mannequin(addon, armature)
    rest = _evaluated(body)
    w, names = _weights(body)
    poses = {"left_shoulder": (0.0, 0.0, 1.0), "right_knee": (1.0, 0.0, 0.0), "spine2": (0.0, 1.0, 0.0),
             "head": (0.0, 0.0, 1.0)}
    for name, axis in poses.items():
        pb = armature.pose.bones[name]
        pb.rotation_quaternion = (np.cos(0.4), *(np.sin(0.4) * np.array(axis)))
    armature.pose.bones["pelvis"].location = (0.0, 0.1, 0.0)
    posed = _evaluated(body)
    expected = _expected_lbs(armature, body)
    err = np.abs(posed - expected).max()
    print(f"evaluated mannequin vs numpy skinning of the posed bones: max {err:.2e} m")
    assert err < 1e-4
    hand = w[:, names.index("left_wrist")] == 1.0
    assert np.linalg.norm(posed[hand] - rest[hand], axis=1).min() > 0.15  # the arm swung up, hand and all
    armature.pose.bones["pelvis"].location = (0.0, 0.0, 0.0)
    for name in poses:
        armature.pose.bones[name].rotation_quaternion = (1.0, 0.0, 0.0, 0.0)
    assert np.abs(_evaluated(body) - rest).max() < 1e-5


def test_preview_mannequin_on_a_mixamo_like_rig_follows_a_baked_take(addon):
    rig, _ = retarget_rigs.mixamo_rig(np.random.default_rng(5))  # cm, 0.01 scale, A-pose, random bone rolls
    armature = armature_from_rig(rig, "MixamoLike")
    assert bpy.ops.realign.add_mannequin() == {"FINISHED"}
    assert bpy.context.active_object == armature
    body = _mannequin(addon, armature)
    w, names = _weights(body)
    mapping = json.loads(armature["realign_bone_map"])
    assert set(names) == {mapping[j] for j in mapping} and all(n.startswith("mixamorig:") for n in names)
    assert np.allclose(w.sum(1), 1.0, atol=1e-3)
    lo, hi = _world_bounds(body)
    mw = np.array(armature.matrix_world)
    head = (mw @ np.append(np.array(armature.data.bones[mapping["head"]].head_local), 1.0))[:3]
    print(f"mixamo-like mannequin: world size {hi - lo} m, head joint at {head[2]:.3f} m")
    assert 1.3 < hi[2] - lo[2] < 2.2 and hi[2] > head[2]  # metres in the world despite the cm armature
    assert bpy.ops.realign.add_mannequin() == {"FINISHED"}  # rebuilding replaces the first one
    assert sum(1 for c in armature.children if c.get("realign_body") == "mannequin") == 1
    body = _mannequin(addon, armature)
    addon.armature_io.bake(armature, synthetic_walk(40), {"prompt": "walk"}, start_frame=1)
    rest = _evaluated(body)
    bpy.context.scene.frame_set(30)
    posed = _evaluated(body)
    assert np.abs(posed - _expected_lbs(armature, body)).max() < 1e-2  # armature units (cm)
    assert np.linalg.norm(posed - rest, axis=1).max() > 20.0  # it walked


def test_mannequin_needs_the_core_joints_and_selecting_it_selects_its_armature(addon):
    bpy.ops.realign.create_skeleton()
    armature = bpy.context.active_object
    body = _mannequin(addon, armature)
    bpy.context.view_layer.objects.active = body
    assert addon.operators._armature(bpy.context) == armature  # clicking the body still targets the armature
    addon.armature_io.set_bone_map(armature, {"pelvis": "pelvis", "neck": "neck"})
    bpy.context.view_layer.objects.active = armature
    with pytest.raises(RuntimeError, match="left_hip"):
        bpy.ops.realign.add_mannequin()
