"""Rig maps that stay, in real Blender 5.0.1 and 4.5.15: a corrected bone map is remembered under the fingerprint of
the rig's bone names and used by a NEW Blender process for a new armature with those bones; maps export to and
import from JSON files; a broken file is refused with the file and the field named, losing nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.blender.conftest import NO_BPY, REPO

bpy = pytest.importorskip("bpy", reason=NO_BPY)

from tests.blender.rig_map_process import odd_rig

SCRIPT = REPO / "tests" / "blender" / "rig_map_process.py"


@pytest.fixture()
def store(addon):
    """The add-on's user-folder map store, emptied before and after the test."""
    store = addon.rig_maps.user_store()
    for path in store.folder.glob("*.json"):
        path.unlink()
    yield store
    for path in store.folder.glob("*.json"):
        path.unlink()


def _hero(name: str = "Hero"):
    from tests.blender.helpers import armature_from_rig

    return armature_from_rig(odd_rig(), name)


def _correct_hips() -> None:
    bpy.ops.realign.set_bone_map_entry(joint="left_hip", bone="Oberschenkel_links")
    bpy.ops.realign.set_bone_map_entry(joint="right_hip", bone="Oberschenkel_rechts")


def test_corrected_map_is_remembered_and_used_by_a_new_blender_process(addon, store, tmp_path):
    obj = _hero()
    bpy.ops.realign.detect_bone_map()
    detected = json.loads(obj["realign_bone_map"])
    assert "left_hip" not in detected and "right_hip" not in detected
    _correct_hips()
    edited = json.loads(obj["realign_bone_map"])
    assert edited == {**detected, "left_hip": "Oberschenkel_links", "right_hip": "Oberschenkel_rechts"}
    names = [b.name for b in obj.data.bones]
    saved = json.loads(store.path(names).read_text())
    assert saved["format"] == "realign-bone-map" and saved["rig"] == "Hero"
    assert saved["fingerprint"] == addon.rig_maps.fingerprint(list(reversed(names))) and saved["joints"] == edited
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "hero.blend"))

    out = tmp_path / "new_process.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out)], check=False, capture_output=True, text=True,
                          timeout=300, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    print(f"new bpy process (Blender {report['blender']}): remembered map used, {report['pairs']} limbs, "
          f"worst direction error {report['limb_deg_max']:.4f} deg")
    assert report["map"] == edited
    assert "Oberschenkel_links" in report["driven"] and report["pairs"] == 12
    assert report["limb_deg_max"] < 0.1


def _refused(operator, path, *words) -> str:
    with pytest.raises(RuntimeError) as info:
        operator(filepath=str(path))
    message = str(info.value)
    for word in (str(path), *words):
        assert word in message, message
    return message


BROKEN = {
    "not_json.json": ('{"format": "realign-bone-map", "joints": {"left_hip": }', ("not valid JSON", "line 1")),
    "bone_not_text.json": ('{"format": "realign-bone-map", "version": 1, "joints": {"left_hip": 3}}',
                           ("'joints.left_hip'",)),
    "unknown_joint.json": ('{"joints": {"left_tail": "Oberschenkel_links"}}', ("'joints.left_tail'",)),
    "wrong_format.json": ('{"format": "some-other-map", "joints": {}}', ("'format'",)),
    "newer_version.json": ('{"format": "realign-bone-map", "version": 7, "joints": {}}', ("'version'",)),
    "joints_list.json": ('{"format": "realign-bone-map", "joints": ["Hips"]}', ("'joints'",)),
}


def test_export_import_and_broken_files(addon, store, tmp_path):
    obj = _hero()
    _correct_hips()
    edited = json.loads(obj["realign_bone_map"])
    exported = tmp_path / "hero_map.json"
    assert bpy.ops.realign.save_bone_map(filepath=str(exported)) == {"FINISHED"}
    names = [b.name for b in obj.data.bones]
    assert json.loads(exported.read_text())["fingerprint"] == addon.rig_maps.fingerprint(names)
    assert bpy.ops.realign.forget_bone_map() == {"FINISHED"} and not store.path(names).exists()

    copy = _hero("Hero copy")  # same bones, nothing remembered: detection alone misses the hips
    assert "left_hip" not in addon.armature_io.get_bone_map(copy)
    assert bpy.ops.realign.load_bone_map(filepath=str(exported)) == {"FINISHED"}
    assert json.loads(copy["realign_bone_map"]) == edited
    remembered = store.path(names).read_bytes()  # an imported map is remembered for the rig too
    assert json.loads(remembered)["joints"] == edited

    for file_name, (text, words) in BROKEN.items():
        bad = tmp_path / file_name
        bad.write_text(text)
        message = _refused(bpy.ops.realign.load_bone_map, bad, *words)
        print(f"refused: {message.splitlines()[-1]}")
        assert json.loads(copy["realign_bone_map"]) == edited  # nothing lost
        assert store.path(names).read_bytes() == remembered


def test_broken_remembered_map_is_reported_and_kept(addon, store):
    obj = _hero()
    names = [b.name for b in obj.data.bones]
    path = store.path(names)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = '{"format": "realign-bone-map", "version": 1, "joints": {"left_hip": "no_such_bone"}}'
    path.write_text(text)
    saved, problem = addon.map_operators.saved_map(obj)
    assert saved is None and str(path) in problem and "'joints.left_hip'" in problem
    mapping = addon.armature_io.get_bone_map(obj)  # a bake still works: detection, with the panel showing why
    assert mapping["left_ankle"] == "mixamorig:LeftFoot" and "left_hip" not in mapping
    with pytest.raises(RuntimeError, match="joints.left_hip"):
        bpy.ops.realign.use_saved_bone_map()
    assert path.read_text() == text
