"""The optional SMPL body in real Blender (bpy 5.0.1 and 4.5.15), from the synthetic SMPL-format model file
the main suite also uses (tests/smpl_synthetic.py): the add-on reads it with numpy alone, builds SMPL's
24 bones at the regressed joints, skins the model's mesh with the model's weights, and a baked take
drives the mesh."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.addon_modules import load
from tests.blender.conftest import NO_BPY
from tests.blender.helpers import evaluated_heads, limb_errors
from tests.blender.motion import synthetic_walk
from tests.smpl_synthetic import NUM_SMPL_JOINTS, write_synthetic_smpl

bpy = pytest.importorskip("bpy", reason=NO_BPY)


def _rest_yup() -> np.ndarray:
    """The ReAlign skeleton's rest joints (22, 3), Y up, as a stand-in SMPL body's joints."""
    skeleton = load("skeleton")
    pos = np.zeros((22, 3))
    for j, p in enumerate(skeleton.PARENTS):
        pos[j] = skeleton.TPOSE_OFFSETS[j] + (pos[p] if p >= 0 else 0)
    return pos


def _world_verts(mesh_obj) -> np.ndarray:
    bpy.context.view_layer.update()
    evaluated = mesh_obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    mesh = evaluated.to_mesh()
    co = np.empty(len(mesh.vertices) * 3)
    mesh.vertices.foreach_get("co", co)
    evaluated.to_mesh_clear()
    mw = np.array(mesh_obj.matrix_world)
    return co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3]


def test_smpl_body_from_a_model_file_is_driven_by_a_baked_take(addon, tmp_path):
    folder = write_synthetic_smpl(tmp_path / "models", _rest_yup())
    assert bpy.ops.realign.add_smpl_body(filepath=str(folder / "smpl" / "SMPL_NEUTRAL.pkl")) == {"FINISHED"}
    armature = bpy.context.active_object
    assert armature.type == "ARMATURE" and len(armature.data.bones) == NUM_SMPL_JOINTS
    mapping = json.loads(armature["realign_bone_map"])
    assert mapping["pelvis"] == "Pelvis" and mapping["left_wrist"] == "L_Wrist" and len(mapping) == 22
    mesh = addon.body_objects.body_of(armature, "smpl")
    assert len(mesh.data.vertices) == 52 and len(mesh.vertex_groups) == NUM_SMPL_JOINTS
    smpl = load("smpl_body")
    model = smpl.load_model(folder)
    _, joints = smpl.shaped(model)
    names = list(smpl.BONE_NAMES)
    heads = evaluated_heads(armature, names, [bpy.context.scene.frame_current])[0]
    assert np.abs(heads - load("rotations").yup_to_blender(joints)).max() < 1e-5  # bones at the regressed joints
    motion = synthetic_walk(40)
    _, _, result = addon.armature_io.bake(armature, motion, {"prompt": "walk"}, start_frame=1)
    fps = bpy.context.scene.render.fps / bpy.context.scene.render.fps_base
    idx = np.arange(0, 40, 6)
    frames = 1 + idx * fps / 20
    worst = 0.0
    for f in frames:
        bpy.context.scene.frame_set(int(f), subframe=float(f - int(f)))
        verts = _world_verts(mesh)
        pairs = (verts[:NUM_SMPL_JOINTS] + verts[NUM_SMPL_JOINTS:2 * NUM_SMPL_JOINTS]) / 2  # each pair on one joint
        worst = max(worst, float(np.abs(pairs - evaluated_heads(armature, names, [f])[0]).max()))
    err = limb_errors(armature, mapping, result.placed, frames, idx, legs=False)
    print(f"SMPL body: mesh vs bones max {worst:.2e} m; arm/foot direction error mean {err.mean():.3f} deg")
    assert worst < 1e-4  # the mesh moves with the bones the take drives
    assert err.mean(axis=1).max() < 1.0
    travelled = np.ptp(evaluated_heads(armature, ["Pelvis"], frames)[:, 0, 1])
    assert travelled > 0.5  # the synthetic walk goes 1.2 m/s forward


def test_add_smpl_body_reports_a_bad_model_file(addon, tmp_path):
    bad = tmp_path / "not_smpl.npz"
    np.savez(bad, v_template=np.zeros((4, 3)))
    with pytest.raises(RuntimeError, match="missing shapedirs"):
        bpy.ops.realign.add_smpl_body(filepath=str(bad))
    with pytest.raises(RuntimeError, match="no SMPL model"):
        bpy.ops.realign.add_smpl_body(filepath=str(tmp_path / "absent"))
    assert not [o for o in bpy.data.objects if o.type == "ARMATURE"]
