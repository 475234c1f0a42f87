"""The built extension in real Blender (bpy 5.0.1 and 4.5.15): register, skeleton, retarget + keying,
NLA strips, BVH rigs, save/reload, and the non-blocking generate/regenerate/cancel/batch flow
against a loopback protocol-v1 stand-in server."""
from __future__ import annotations

import json
import socket
import time

import numpy as np
import pytest

from tests.blender.conftest import NO_BPY
from tests.blender.helpers import FakeServer, armature_from_rig, evaluated_heads, foot_contacts, limb_errors
from tests.blender.motion import BANDAI, source_motion, synthetic_walk

bpy = pytest.importorskip("bpy", reason=NO_BPY)

from tests import retarget_rigs


def _keys(action, obj) -> dict[str, int]:
    addon_keying = pytest.importorskip("bl_ext.user_default.realign_blender.keying")
    fcurves, _, _ = addon_keying.action_channels(action, obj)
    return {f"{fc.data_path}[{fc.array_index}]": len(fc.keyframe_points) for fc in fcurves}


def test_registers_ui_and_preferences(addon):
    assert bpy.types.REALIGN_PT_main.bl_category == "ReAlign"
    for op in ("generate", "regenerate", "cancel", "dice", "check_server", "start_server", "stop_server",
               "create_skeleton", "add_mannequin", "add_smpl_body", "batch_bake", "batch_import_csv"):
        assert hasattr(bpy.ops.realign, op)
    prefs = bpy.context.preferences.addons[addon.__name__].preferences
    assert (prefs.host, prefs.port) == ("127.0.0.1", 8765)
    seed = bpy.context.scene.realign.seed
    bpy.ops.realign.dice()
    assert bpy.context.scene.realign.seed != seed or seed != 0


def test_create_skeleton(addon):
    assert bpy.ops.realign.create_skeleton() == {"FINISHED"}
    obj = bpy.context.active_object
    assert obj.type == "ARMATURE" and len(obj.data.bones) == 22
    assert obj.data.bones["left_knee"].parent.name == "left_hip"
    assert json.loads(obj["realign_bone_map"])["pelvis"] == "pelvis"


def test_bake_onto_realign_skeleton_at_scene_rate(addon):
    bpy.ops.realign.create_skeleton()
    obj = bpy.context.active_object
    bpy.context.scene.render.fps = 24
    name, joints = source_motion()
    meta = {"prompt": "a person walks", "seed": 3, "strength": 1.5, "cfg": 7.5, "model": "test",
            "server_version": "t"}
    start = time.perf_counter()
    action, strip, result = addon.armature_io.bake(obj, joints, meta, start_frame=10)
    took = time.perf_counter() - start
    print(f"bake {name} ({len(joints)} frames) onto ReAlign skeleton: {took * 1000:.0f} ms")
    assert action.use_fake_user and action["prompt"] == "a person walks" and action["seed"] == 3
    keys = _keys(action, obj)
    assert keys['pose.bones["left_knee"].rotation_quaternion[0]'] == len(joints)
    assert 'pose.bones["pelvis"].location[2]' in keys
    assert strip.action == action and strip.frame_start == 10
    assert strip.frame_end == pytest.approx(10 + (len(joints) - 1) * 24 / 20, abs=1e-3)
    assert obj.animation_data.action is None  # nothing the user had is replaced
    idx = np.arange(0, len(joints), 7)
    frames = 10 + idx * 24 / 20
    bone_map = json.loads(obj["realign_bone_map"])
    err = limb_errors(obj, bone_map, result.placed, frames, idx, legs=False)
    print(f"  evaluated arm/foot direction error (legs pinned): mean {err.mean():.4f} max {err.max():.4f} deg")
    assert err.mean(axis=1).max() < 1.0
    heads = evaluated_heads(obj, list(result.names), frames)
    assert np.abs(heads - result.pose[idx][..., :3, 3]).max() < 1e-4  # Blender's evaluation = our FK


def test_bake_without_foot_pinning_matches_every_bone_direction(addon):
    bpy.ops.realign.create_skeleton()
    obj = bpy.context.active_object
    _, joints = source_motion()
    options = addon.retarget.RetargetOptions(pin_feet=False, ground_snap=False)
    _, _, result = addon.armature_io.bake(obj, joints, {"prompt": "walk"}, 1, options)
    idx = np.arange(0, len(joints), 7)
    fps = bpy.context.scene.render.fps / bpy.context.scene.render.fps_base
    err = limb_errors(obj, json.loads(obj["realign_bone_map"]), result.placed, 1 + idx * fps / 20, idx)
    print(f"ReAlign skeleton, no pinning: limb direction error mean {err.mean():.2e} max {err.max():.2e} deg")
    assert err.max() < 1.0


def test_blender_pose_matches_numpy_forward_kinematics_on_mixamo_like_rig(addon):
    rig, _ = retarget_rigs.mixamo_rig(np.random.default_rng(3))
    obj = armature_from_rig(rig, "MixamoLike")
    assert np.allclose(np.array(obj.data.bones["mixamorig:LeftArm"].matrix_local), rig.rest[rig.index("mixamorig:LeftArm")],
                       atol=1e-4)
    _, joints = source_motion()
    _, _, result = addon.armature_io.bake(obj, joints, {"prompt": "walk"}, start_frame=1)
    bone_map = json.loads(obj["realign_bone_map"])
    assert bone_map["left_hip"] == "mixamorig:LeftUpLeg"
    idx = np.arange(0, len(joints), 9)
    frames = 1 + idx * bpy.context.scene.render.fps / 20
    names = list(result.names)  # Blender's bone order
    heads = evaluated_heads(obj, names, frames)
    numpy_heads = np.einsum("ij,fbj->fbi", rig.object_matrix[:3, :3], result.pose[idx][..., :3, 3]) + \
        rig.object_matrix[:3, 3]
    worst = np.abs(heads - numpy_heads).max(axis=(0, 2))
    assert worst.max() < 1e-3, [(names[i], w) for i, w in enumerate(worst) if w > 1e-3]  # Blender = our FK
    err = limb_errors(obj, bone_map, result.placed, frames, idx, legs=False)
    print(f"mixamo-like: evaluated arm/foot direction error mean {err.mean():.4f} max {err.max():.4f} deg")
    assert err.mean(axis=1).max() < 1.0


def test_keying_compat_writes_fast(addon):
    bpy.ops.realign.create_skeleton()
    obj = bpy.context.active_object
    action = bpy.data.actions.new("compat")
    frames = np.arange(200, dtype=float) + 1
    channels = [(f'pose.bones["{b.name}"].rotation_quaternion', i, b.name, np.full(200, 0.5))
                for b in obj.pose.bones for i in range(4)]
    start = time.perf_counter()
    n = addon.keying.write_curves(action, obj, frames, channels)
    took = time.perf_counter() - start
    print(f"keying 22 bones x 4 channels x 200 frames: {took * 1000:.1f} ms (Blender {bpy.app.version_string})")
    assert n == 22 * 4 * 200
    assert len(_keys(action, obj)) == 88


@pytest.mark.skipif(not BANDAI.is_dir(), reason=f"{BANDAI} is absent: needs the shared data folder beside the repo")
def test_retarget_onto_imported_bandai_bvh_rig(addon):
    bvh = sorted(BANDAI.glob("*walk*.bvh"))[0]
    bpy.ops.import_anim.bvh(filepath=str(bvh))
    obj = bpy.context.active_object
    user_action = obj.animation_data.action
    user_keys = sum(len(fc.keyframe_points) for fc in _fcurves(user_action, obj))
    _, joints = source_motion()
    _, _, result = addon.armature_io.bake(obj, joints, {"prompt": "walk on a bvh rig"}, start_frame=1)
    bone_map = json.loads(obj["realign_bone_map"])
    assert bone_map["left_hip"] == "UpperLeg_L" and bone_map["left_collar"] == "Shoulder_L"
    assert obj.animation_data.action == user_action  # the imported motion is untouched
    assert sum(len(fc.keyframe_points) for fc in _fcurves(user_action, obj)) == user_keys
    assert obj.pose.bones["UpperLeg_L"].rotation_mode != "QUATERNION"  # keyed as Euler in its own mode
    obj.animation_data.action = None  # evaluate only the new take
    scene_fps = bpy.context.scene.render.fps / bpy.context.scene.render.fps_base
    idx = np.arange(0, len(joints), 9)
    err = limb_errors(obj, bone_map, result.placed, 1 + idx * scene_fps / 20, idx, legs=False)
    print(f"Bandai BVH rig {bvh.name}: limb direction error mean {err.mean():.4f} max {err.max():.4f} deg")
    assert err.mean(axis=1).max() < 1.0
    obj.animation_data.action = user_action


def _fcurves(action, obj):
    keying = pytest.importorskip("bl_ext.user_default.realign_blender.keying")
    return keying.action_channels(action, obj)[0]


def test_save_and_reload(addon, tmp_path):
    import addon_utils

    bpy.ops.realign.create_skeleton()
    obj = bpy.context.active_object
    _, joints = source_motion()
    action, _, _ = addon.armature_io.bake(obj, joints, {"prompt": "save me", "seed": 11}, start_frame=1)
    action_name, obj_name = action.name, obj.name
    path = tmp_path / "take.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("bl_ext.user_default.realign_blender", default_set=True)
    bpy.ops.wm.open_mainfile(filepath=str(path))
    loaded = bpy.data.actions[action_name]
    assert loaded["seed"] == 11 and loaded.use_fake_user
    obj = bpy.data.objects[obj_name]
    assert obj.animation_data.nla_tracks[0].strips[0].action == loaded
    assert len(_keys(loaded, obj)) > 60


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _prefs(addon):
    return bpy.context.preferences.addons[addon.__name__].preferences


def test_unreachable_server_is_reported_without_blocking(addon):
    bpy.ops.realign.create_skeleton()
    _prefs(addon).port = _closed_port()
    start = time.perf_counter()
    assert bpy.ops.realign.generate() == {"FINISHED"}
    assert time.perf_counter() - start < 0.2  # the operator returns at once; the worker does the talking
    addon.jobs.wait(bpy.context, timeout=10)
    settings = bpy.context.scene.realign
    assert "not reachable" in settings.message and settings.status == "not running"
    assert not settings.busy


@pytest.fixture()
def fake_server(addon):
    _, joints = source_motion()
    server = FakeServer(joints)
    _prefs(addon).port = server.port
    yield server
    server.close()


def test_generate_regenerate_and_batch_with_loopback_server(addon, fake_server):
    bpy.ops.realign.create_skeleton()
    skeleton = bpy.context.active_object
    settings = bpy.context.scene.realign
    settings.prompt, settings.seed, settings.takes, settings.seconds = "a person walks", 42, 2, 3.0
    bpy.ops.realign.check_server()
    bpy.ops.realign.generate()
    addon.jobs.wait(bpy.context, timeout=20)
    assert settings.status == "connected" and settings.model == "fake"
    takes = [a for a in bpy.data.actions if a.get("prompt") == "a person walks"]
    assert sorted(a["seed"] for a in takes) == [42, 43]
    assert len(skeleton.animation_data.nla_tracks) == 2 and settings.progress == 1.0
    assert "2 take(s) baked" in settings.message

    bpy.ops.realign.regenerate(strength=4.0)
    addon.jobs.wait(bpy.context, timeout=20)
    regen = [r for r in fake_server.requests if r.get("op") == "generate"][-1]
    assert regen["seed"] == 42 and regen["guidance"]["strength"] == 4.0 and regen["prompt"] == "a person walks"
    assert "mu" not in regen["guidance"] and "eta" not in regen["guidance"]   # the model's calibrated mix
    assert len(skeleton.animation_data.nla_tracks) == 3
    settings.custom_mix, settings.mu, settings.eta = True, 2.0, 0.0            # a custom mix is sent as set
    assert settings.cfg == 0.0 and "cfg" not in regen["guidance"]                 # 0: the model's validated CFG
    assert addon.jobs.guidance(settings) == {"strength": settings.strength, "mu": 2.0, "eta": 0.0}
    settings.cfg = 4.5                                                          # a CFG the user set is sent
    assert addon.jobs.guidance(settings) == {"strength": settings.strength, "cfg": 4.5, "mu": 2.0, "eta": 0.0}
    settings.custom_mix, settings.cfg = False, 0.0
    assert "foot_lock" not in regen                                              # the model's default
    settings.foot_lock = "off"                                                   # a choice the user made is sent
    assert addon.jobs.generate_request(settings, "a person walks", 2.0, 1, 1)["foot_lock"] is False
    settings.foot_lock = "on"
    assert addon.jobs.generate_request(settings, "a person walks", 2.0, 1, 1)["foot_lock"] is True
    settings.foot_lock = "model"
    assert [t.mute for t in skeleton.animation_data.nla_tracks] == [True, True, False]

    rig, _ = retarget_rigs.mixamo_rig(np.random.default_rng(1))
    mixamo = armature_from_rig(rig, "Mixamo")
    for prompt, arm, start in (("walk", skeleton, 200), ("jump", mixamo, 1), ("wave", mixamo, 120)):
        row = settings.batch.add()
        row.prompt, row.armature, row.start_frame, row.seconds, row.strength = prompt, arm, start, 2.0, 1.0
    bpy.ops.realign.batch_bake()
    addon.jobs.wait(bpy.context, timeout=30)
    assert "3 take(s) baked" in settings.message
    starts = sorted(s.frame_start for t in mixamo.animation_data.nla_tracks for s in t.strips)
    assert starts == [1, 120]


def test_generated_takes_pin_feet_on_the_server_contacts(addon, fake_server, monkeypatch):
    """The server's foot_contacts.per_joint drive the pinning; without them the add-on detects the same ones."""
    calls = []
    bake = addon.armature_io.bake

    def recording_bake(obj, joints, meta, start_frame=1.0, options=None, contacts=None, timing=None):
        out = bake(obj, joints, meta, start_frame, options, contacts, timing)
        calls.append((contacts, out[2]))
        return out

    monkeypatch.setattr(addon.armature_io, "bake", recording_bake)
    walk = synthetic_walk(30)
    fake_server.motion = np.concatenate([np.repeat(walk[:1], 30, axis=0), walk])  # stands 1.5 s, then walks
    settings = bpy.context.scene.realign
    settings.takes, settings.seconds = 1, 3.0
    for sends_contacts in (True, False):
        fake_server.contacts = sends_contacts
        bpy.ops.realign.create_skeleton()  # a fresh one: undriven bones keep the pose they are baked from
        bpy.ops.realign.generate()
        addon.jobs.wait(bpy.context, timeout=20)
    (sent, given), (none, detected) = calls
    expected = foot_contacts(fake_server.motion[:60])["per_joint"]
    assert sent is not None and sent.shape == (60, 4) and 0 < sent.mean() < 1
    assert [sent[:, i].tolist() for i in range(4)] == list(expected.values())
    assert none is None and np.array_equal(given.contacts, sent) and np.array_equal(detected.contacts, sent)
    assert np.array_equal(given.quaternions, detected.quaternions)


def test_benchmark_click_to_keyed_action_10s(addon):
    """Generate click -> keyed Action for a 10 s motion (loopback stand-in: transfer + retarget + keying)."""
    server = FakeServer(synthetic_walk(200))
    _prefs(addon).port = server.port
    try:
        rig, _ = retarget_rigs.mixamo_rig(np.random.default_rng(5))
        armature_from_rig(rig, "Bench")
        settings = bpy.context.scene.realign
        settings.seconds, settings.takes = 10.0, 1
        start = time.perf_counter()
        bpy.ops.realign.generate()
        addon.jobs.wait(bpy.context, timeout=30)
        took = time.perf_counter() - start
    finally:
        server.close()
    action = next(a for a in bpy.data.actions if a.get("prompt") == settings.prompt)
    keys = max(len(fc.keyframe_points) for fc in _fcurves(action, bpy.data.objects["Bench"]))
    timing = addon.jobs.LAST_TIMING
    print(f"click -> keyed Action, 10 s motion (200 frames) on a Mixamo-like rig, Blender "
          f"{bpy.app.version_string}: {took * 1000:.0f} ms (stand-in server: no model time); parts (ms): "
          + ", ".join(f"{k} {v * 1000:.1f}" for k, v in timing.items()))
    assert keys == 200
    parts = ("decode_s", "retarget_s", "keying_s", "nla_s")
    assert timing["server_s"] == 0.01  # the stand-in's result timing.total_s
    assert timing["transfer_s"] == pytest.approx(timing["received_s"] - 0.01)
    assert all(timing[k] > 0 for k in parts) and timing["received_s"] > 0
    assert timing["received_s"] + sum(timing[k] for k in parts) <= timing["total_s"] <= took


def test_cancel_stops_a_running_job(addon, fake_server):
    bpy.ops.realign.create_skeleton()
    fake_server.hold = True
    bpy.ops.realign.generate()
    for _ in range(50):
        addon.jobs.drain(bpy.context, block_s=0.1)
        if bpy.context.scene.realign.progress > 0:
            break
    assert bpy.context.scene.realign.busy
    bpy.ops.realign.cancel()
    addon.jobs.wait(bpy.context, timeout=10)
    settings = bpy.context.scene.realign
    assert not settings.busy and "cancelled" in settings.message
    assert any(r.get("op") == "cancel" for r in fake_server.requests)


def test_batch_csv_import(addon, tmp_path):
    bpy.ops.realign.create_skeleton()
    csv_path = tmp_path / "batch.csv"
    csv_path.write_text("prompt,armature,start_frame,seconds,strength\n"
                        "a person walks,ReAlign Skeleton,1,3,1.0\n"
                        "a person jumps,,100,2.5,2\n"
                        ",,1,1,1\n")
    assert bpy.ops.realign.batch_import_csv(filepath=str(csv_path)) == {"FINISHED"}
    rows = bpy.context.scene.realign.batch
    assert [r.prompt for r in rows] == ["a person walks", "a person jumps"]
    assert rows[1].start_frame == 100 and rows[1].armature.name == "ReAlign Skeleton"
    assert not rows[0].loop and rows[0].path_target is None

    curve = bpy.data.objects.new("Road", bpy.data.curves.new("Road", "CURVE"))
    bpy.context.scene.collection.objects.link(curve)
    csv_path.write_text("prompt,armature,start_frame,seconds,strength,loop,path\n"
                        "a person runs,,1,3,1.0,yes,Road\n"
                        "a person hops,,1,3,1.0,maybe,\n")
    assert bpy.ops.realign.batch_import_csv(filepath=str(csv_path)) == {"FINISHED"}
    assert (rows[2].prompt, rows[2].loop, rows[2].path_target.name) == ("a person runs", True, "Road")
    assert len(rows) == 3      # line 3's loop value is refused (reported), the row skipped


def test_remove_row_removes_the_selected_row_of_the_batch_and_sequence_lists(addon):
    settings = bpy.context.scene.realign
    for name in ("batch", "sequence"):
        for prompt in ("a", "b", "c"):
            settings.prompt = prompt
            getattr(bpy.ops.realign, f"{name}_add")()
        setattr(settings, f"{name}_index", 1)
        assert getattr(bpy.ops.realign, f"{name}_remove")() == {"FINISHED"}
        rows = getattr(settings, name)
        assert [r.prompt for r in rows] == ["a", "c"] and getattr(settings, f"{name}_index") == 0
        setattr(settings, f"{name}_index", 5)                 # nothing selected: nothing removed
        getattr(bpy.ops.realign, f"{name}_remove")()
        assert len(rows) == 2
