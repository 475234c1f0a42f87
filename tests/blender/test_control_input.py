"""What the Control panel reads from the scene, in real Blender (bpy 5.0.1 and 4.5.15), without a server:
curve sampling, the motion frame, poses read back from rigs, keyed frames -> motion frames, saved settings,
the request Regenerate resends, which bone carries a root track, sequence markers. The actions themselves run
against a real server in tests/test_blender_control.py."""
from __future__ import annotations

import numpy as np
import pytest

from tests.blender.conftest import NO_BPY
from tests.blender.helpers import armature_from_rig

bpy = pytest.importorskip("bpy", reason=NO_BPY)

from tests import retarget_rigs


def _curve(points, kind: str = "BEZIER", cyclic: bool = False, location=(0.0, 0.0, 0.0)):
    data = bpy.data.curves.new("Path", "CURVE")
    data.dimensions = "3D"
    spline = data.splines.new(kind)
    if kind == "BEZIER":
        spline.bezier_points.add(len(points) - 1)
        for p, xyz in zip(spline.bezier_points, points):
            p.co, p.handle_left_type, p.handle_right_type = xyz, "AUTO", "AUTO"
    else:
        spline.points.add(len(points) - 1)
        for p, xyz in zip(spline.points, points):
            p.co = (*xyz, 1.0)
    spline.use_cyclic_u = cyclic
    obj = bpy.data.objects.new("Path", data)
    obj.location = location
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.update()
    return obj


def test_curve_points_follow_the_spline_in_world_space(addon):
    ci = addon.control_input
    obj = _curve([(0, 0, 0), (1, -2, 0), (3, -2, 0)], location=(5.0, 1.0, 0.0))
    pts = ci.curve_points(obj, bpy.context.evaluated_depsgraph_get())
    assert len(pts) > 3
    assert np.allclose(pts[0], (5, 1, 0), atol=1e-5) and np.allclose(pts[-1], (8, -1, 0), atol=1e-5)
    ring = _curve([(0, 0, 0), (2, 0, 0), (2, 2, 0), (0, 2, 0)], kind="POLY", cyclic=True)
    loop = ci.curve_points(ring, bpy.context.evaluated_depsgraph_get())
    assert len(loop) == 5 and np.allclose(loop[0], loop[-1])
    empty = bpy.data.objects.new("Nothing", bpy.data.curves.new("Nothing", "CURVE"))
    bpy.context.scene.collection.objects.link(empty)
    with pytest.raises(ci.ControlInputError, match="no points"):
        ci.curve_points(empty, bpy.context.evaluated_depsgraph_get())


def test_path_field_is_the_motion_frame_and_spans_the_take(addon):
    ci = addon.control_input
    world = np.array([[1.0, 0.0, 0.0], [1.0, -3.0, 0.0], [4.0, -3.0, 0.0]])
    field = ci.path_field(world, 120, 2.0, "test")
    pts, times = np.array(field["points"]), field["times"]
    assert np.allclose(pts[0], [0.5, 0.0]) and np.allclose(pts[-1], [2.0, 1.5])   # (x, -y) / scale
    assert times[0] == 0 and times[-1] == pytest.approx(119 / 20) and np.all(np.diff(times) > 0)
    speed = np.linalg.norm(np.diff(pts, axis=0), axis=1) / np.diff(times)
    assert np.ptp(speed) < 1e-3 * speed.mean()                                   # constant speed
    assert speed.mean() == pytest.approx(3.0 / (119 / 20), rel=0.03)             # 3 m in motion metres
    with pytest.raises(ci.ControlInputError, match="long on the ground"):
        ci.path_field(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 2.0]]), 120, 1.0, "a vertical line")


def test_current_pose_round_trips_on_the_realign_skeleton(addon):
    """Read back in the motion frame and mapped to Blender again, the pose is the rig's own (same lengths)."""
    from mathutils import Quaternion

    ci = addon.control_input
    bpy.context.scene.cursor.location = (2.0, -1.0, 0.0)
    bpy.ops.realign.create_skeleton(body=False)
    obj = bpy.context.active_object
    obj.pose.bones["left_shoulder"].rotation_quaternion = Quaternion((0.0, 1.0, 0.0), 0.8)
    obj.pose.bones["right_knee"].rotation_quaternion = Quaternion((1.0, 0.0, 0.0), -0.6)
    obj.pose.bones["spine2"].rotation_quaternion = Quaternion((0.0, 0.0, 1.0), 0.4)
    obj.pose.bones["pelvis"].location = (0.3, 0.1, -0.2)
    bpy.context.view_layer.update()
    assert ci.take_scale(obj, True) == pytest.approx(1.0, abs=1e-6)
    joints = ci.current_joints(obj, 1.0)
    back = addon.rotations.yup_to_blender(joints)
    names = addon.skeleton.JOINT_NAMES
    heads = np.array([np.array(obj.matrix_world) @ np.append(np.array(obj.pose.bones[n].head), 1.0)
                      for n in names])[:, :3]
    assert np.abs(back - heads).max() < 1e-5


def test_current_pose_of_a_mixamo_rig_keeps_its_bone_directions(addon):
    ci = addon.control_input
    rig, _ = retarget_rigs.mixamo_rig(np.random.default_rng(0))
    obj = armature_from_rig(rig, "Mixamo")
    bpy.ops.realign.detect_bone_map()
    bpy.context.view_layer.update()
    scale = ci.take_scale(obj, True)
    assert 0.5 < scale < 2.0 and ci.take_scale(obj, False) == 1.0
    joints = ci.current_joints(obj, scale)
    bone_map = addon.armature_io.get_bone_map(obj)
    mw = np.array(obj.matrix_world)
    rig_heads = {j: (mw @ np.append(np.array(obj.pose.bones[b].head), 1.0))[:3] for j, b in bone_map.items()}
    J, parents = addon.skeleton.JOINT_INDEX, addon.skeleton.PARENTS
    hips = ci.world_to_motion(rig_heads["pelvis"], scale, mw[2, 3])
    assert np.allclose(joints[0], hips)
    for name in ("left_knee", "right_elbow", "left_wrist", "head"):
        j = J[name]
        parent = addon.skeleton.JOINT_NAMES[parents[j]]
        want = ci.world_to_motion(rig_heads[name], 1, 0) - ci.world_to_motion(rig_heads[parent], 1, 0)
        got = joints[j] - joints[parents[j]]
        cos = want @ got / np.linalg.norm(want) / np.linalg.norm(got)
        assert cos > 1 - 1e-9, name


def test_keyed_frames_map_to_motion_frames(addon):
    ci = addon.control_input
    assert ci.inbetween_keys([1, 25, 49], 24.0, 196) == ([0, 20, 40], 41)
    for frames, words in (([10], "at least two"), ([1, 10], "must span 1 s"), ([1, 400], "must span 1 s"),
                          ([1.0, 1.4, 40], "closer than one motion frame")):
        with pytest.raises(ci.ControlInputError, match=words):
            ci.inbetween_keys(frames, 24.0, 196)


def test_control_settings_and_old_root_motion_values_survive_a_save(addon, tmp_path):
    import addon_utils

    s = bpy.context.scene.realign
    s.root_motion = "in_place"
    s.loop, s.control_strength, s.path_from_current = True, 2.5, True
    row = s.sequence.add()
    row.prompt, row.seconds = "a person jumps", 3.0
    s.path_target = _curve([(0, 0, 0), (0, -2, 0)])
    batch = s.batch.add()
    batch.loop, batch.path_target = True, s.path_target
    addon.jobs.remember(s, {"id": "x", "op": "generate", "prompt": "a person walks", "path": [[0, 0], [0, 1]]},
                        addon.jobs.Target("Rig", 5.0, {"world": True, "scale": 1.0}))
    path = tmp_path / "control.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable(addon.__name__, default_set=True)
    bpy.ops.wm.open_mainfile(filepath=str(path))
    s = bpy.context.scene.realign
    assert s.root_motion == "in_place" and s.loop and s.control_strength == 2.5
    assert [(r.prompt, r.seconds) for r in s.sequence] == [("a person jumps", 3.0)]
    assert s.path_from_current and s.batch[0].loop and s.batch[0].path_target.name == "Path"
    req, target = addon.jobs.regenerate_request(s, 2.0)     # Regenerate works after the file is reopened
    assert req["path"] == [[0, 0], [0, 1]] and (target.armature, target.start_frame) == ("Rig", 5.0)
    s.root_motion = "root_track"
    assert addon.jobs.retarget_options(s).kept_axes().all()


def test_bake_file_with_root_track_moves_the_travel_onto_the_object(addon, tmp_path):
    """Root track for a plain take (a joints file): the object carries the travel, the hips stay over it."""
    from tests.blender.motion import synthetic_walk

    joints = synthetic_walk(frames=60, speed=1.2)
    path = tmp_path / "walk.npy"
    np.save(path, joints)
    bpy.context.scene.cursor.location = (1.0, 2.0, 0.0)
    bpy.ops.realign.create_skeleton(body=False)
    obj = bpy.context.active_object
    s = bpy.context.scene.realign
    s.root_motion, s.start_frame = "root_track", 1
    bpy.context.scene.render.fps = 20
    assert bpy.ops.realign.bake_file(filepath=str(path)) == {"FINISHED"}
    tracks = obj.animation_data.nla_tracks
    body, root = tracks[0].strips[0].action, tracks[1].strips[0].action
    assert body["realign_root_track"] == "object" and root["realign_root_track"] == "object"
    loc, hips = [], []
    for f in (1, 30, 60):
        bpy.context.scene.frame_set(f)
        loc.append(np.array(obj.location))
        hips.append((np.array(obj.matrix_world) @ np.append(np.array(obj.pose.bones["pelvis"].head), 1.0))[:3])
    loc, hips = np.array(loc), np.array(hips)
    assert np.allclose(loc[0], (1.0, 2.0, 0.0), atol=1e-4)
    assert np.linalg.norm(loc[-1, :2] - loc[0, :2]) > 0.5 * 1.2 * 59 / 20     # the walk's travel (before locking)
    assert np.abs((hips - loc)[:, :2] - (hips - loc)[0, :2]).max() < 1e-4     # the body stays over the root


def test_regenerate_resends_the_last_request_but_the_strength(addon):
    jobs = addon.jobs
    s = bpy.context.scene.realign
    with pytest.raises(LookupError, match="Nothing generated"):
        jobs.regenerate_request(s, 1.0)
    sent = {"id": "gen-1", "op": "generate", "prompt": "a person walks", "frames": 80, "seed": 7, "samples": 3,
            "steps": 5, "guidance": {"strength": 0.0, "mu": 1.0, "eta": 1.0, "cfg": 7.5},
            "path": {"points": [[0, 0], [0, 2]], "times": [0, 3.95]}, "keyframes": [{"frame": 0, "joints": []}],
            "loop": True, "control_strength": 2.0}
    flags = {"world": True, "scale": 1.1, "continue": True, "loop": True, "root_track": True}
    jobs.remember(s, sent, jobs.Target("Walker", 41.0, flags))
    s.root_motion = "full"
    req, target = jobs.regenerate_request(s, 3.0)
    assert req["id"] != sent["id"] and req["samples"] == 1
    assert req["guidance"] == {**sent["guidance"], "strength": 3.0}
    assert {k: v for k, v in req.items() if k not in ("id", "samples", "guidance")} == \
        {k: v for k, v in sent.items() if k not in ("id", "samples", "guidance")}
    assert (target.armature, target.start_frame) == ("Walker", 41.0)
    assert target.control == {"world": True, "scale": 1.1, "continue": True, "loop": True}   # Root track: as now
    s.root_motion = "root_track"
    assert jobs.regenerate_request(s, 3.0)[1].control["root_track"]
    jobs.remember(s, {"id": "seq-1", "op": "generate", "sequence": [{"prompt": "a", "seconds": 2.0}], "seed": 0,
                      "guidance": {"strength": 1.0}}, jobs.Target("Walker", 1.0, None))
    req, target = jobs.regenerate_request(s, 0.5)
    assert "samples" not in req and req["sequence"] == [{"prompt": "a", "seconds": 2.0}] and target.control is None


def test_fast_draft_asks_for_the_consistency_model(addon):
    """Fast draft: sampler "lcm" at 1 step (or the Steps field), no CFG (it is distilled into that model)."""
    import bpy

    s = bpy.context.scene.realign
    s.cfg, s.steps, s.draft = 4.0, 0, False
    plain = addon.jobs.generate_request(s, "a person walks", 4.0, 3, 1)
    assert "sampler" not in plain and plain["guidance"]["cfg"] == 4.0
    s.draft = True
    draft = addon.jobs.generate_request(s, "a person walks", 4.0, 3, 1)
    assert (draft["sampler"], draft["steps"]) == ("lcm", 1) and "cfg" not in draft["guidance"]
    s.steps = 2
    assert addon.jobs.generate_request(s, "a person walks", 4.0, 3, 1)["steps"] == 2
    s.cfg, s.steps, s.draft = 0.0, 0, False


def test_lead_in_puts_the_hips_before_a_curve_that_starts_elsewhere(addon):
    ci = addon.control_input
    curve = np.array([[1.0, 0.0, 0.0], [1.0, -2.0, 0.0]])
    assert np.array_equal(ci.lead_in(np.array([1.0, 0.005, 0.9]), curve), curve)    # within 1 cm on the ground
    led = ci.lead_in(np.array([0.0, 0.0, 0.9]), curve)
    assert led.shape == (3, 3) and np.array_equal(led[0], [0.0, 0.0, 0.9])


def test_root_track_bone_rule(addon):
    """The hips' nearest ancestor named root (any prefix, any case), else the top ancestor; no parent: None."""
    bake = addon.control_bake
    rig, _ = retarget_rigs.ue5_like_rig(None)
    ue = armature_from_rig(rig, "UE")
    assert bake.root_bone_of(ue) == "root"
    bpy.ops.object.mode_set(mode="EDIT")
    master = ue.data.edit_bones.new("master")
    master.head, master.tail = (0.0, 0.0, 0.0), (0.0, 30.0, 0.0)
    ue.data.edit_bones["root"].parent = master
    bpy.ops.object.mode_set(mode="OBJECT")
    assert bake.root_bone_of(ue) == "root"
    ue.data.bones["root"].name = "Rig:ROOT"
    assert bake.root_bone_of(ue) == "Rig:ROOT"
    ue.data.bones["Rig:ROOT"].name = "Armature"
    assert bake.root_bone_of(ue) == "master"
    mixamo = armature_from_rig(retarget_rigs.mixamo_rig(np.random.default_rng(0))[0], "Mixamo")
    assert bake.root_bone_of(mixamo) is None


def test_sequence_markers_name_each_segment_once(addon):
    scene = bpy.context.scene
    frames = 1 + np.arange(80) * 24 / 20
    long_prompt = "a person walks forward and then turns around to look behind them é" * 2
    segments = [{"prompt": "a person walks.", "start": 0, "end": 40}, {"prompt": long_prompt, "start": 40, "end": 80}]
    for _ in range(2):
        addon.control_bake.mark_segments(scene, segments, frames)
    marks = sorted((m.frame, m.name) for m in scene.timeline_markers)
    assert [f for f, _ in marks] == [1, 49] and marks[0][1] == "a person walks."
    assert long_prompt.startswith(marks[1][1]) and len(marks[1][1].encode()) <= 63
