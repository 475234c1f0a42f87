"""Import batch results: a ``realign batch`` manifest baked onto armatures (column / chosen, rows / sequence),
and the farm script (blender_addon/scripts/bake_manifest.py) writing a .blend."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.blender.conftest import NO_BPY, REPO, addon_zip
from tests.blender.motion import synthetic_walk

bpy = pytest.importorskip("bpy", reason=NO_BPY)

SCRIPT = REPO / "blender_addon" / "scripts" / "bake_manifest.py"


def write_manifest(folder, rows: list[tuple[str, str, float, int]]) -> None:
    """A manifest as realign batch writes it (realign_core/batch/manifest.py): (name, armature, start, frames)."""
    lines = []
    for i, (name, armature, start, frames) in enumerate(rows):
        np.save(folder / f"{name}.npy", synthetic_walk(frames).astype(np.float32))
        lines.append(json.dumps({
            "row": i + 1, "line": i + 2, "name": name, "sample": 0, "prompt": f"a person walks {i}",
            "frames": frames, "seconds": frames / 20, "seed": 100 + i, "armature": armature, "start_frame": start,
            "settings": {"sampler": "ddim", "steps": 50, "guidance": {"strength": 1.0, "mu": 1, "eta": 1, "cfg": 7.5}},
            "model": {"name": "default", "hash": "0123456789abcdef", "generator": "mld"},
            "files": {"npy": f"{name}.npy"}, "key": "k", "timing": {"batch": 0}}))
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")


def skeleton(name: str):
    bpy.ops.realign.create_skeleton()
    obj = bpy.context.active_object
    obj.name = name
    return obj


def strips(obj) -> list[tuple[str, float, float]]:
    return sorted((s.action["batch_name"], s.frame_start, s.frame_end)
                  for t in obj.animation_data.nla_tracks for s in t.strips)


def test_column_targets_rows_layout_and_problems(addon, tmp_path):
    hero, crowd = skeleton("Hero"), skeleton("Crowd")
    write_manifest(tmp_path, [("a", "Hero", 1, 40), ("b", "Crowd", 30, 20), ("c", "Hero", 50, 20),
                              ("d", "Ghost", 1, 20)])
    # a rerun's later line for the same name replaces the first
    (tmp_path / "manifest.jsonl").write_text((tmp_path / "manifest.jsonl").read_text().replace(
        '"start_frame": 30', '"start_frame": 3') + (tmp_path / "manifest.jsonl").read_text().splitlines()[1] + "\n")
    report = addon.batch_import.import_results(bpy.context, tmp_path, "column")
    assert [(n, o) for _, o, n in report.baked] == [("a", "Hero"), ("b", "Crowd"), ("c", "Hero")]
    assert report.problems == ["d: no armature named 'Ghost' in this file"]
    fps = bpy.context.scene.render.fps / bpy.context.scene.render.fps_base
    assert strips(hero) == [("a", 1, pytest.approx(1 + 39 * fps / 20)), ("c", 50, pytest.approx(50 + 19 * fps / 20))]
    assert strips(crowd) == [("b", 30, pytest.approx(30 + 19 * fps / 20))]
    tracks = hero.animation_data.nla_tracks
    assert [t.mute for t in tracks] == [True, False]   # like Bake batch: the newest take plays
    action = tracks[1].strips[0].action
    assert (action["prompt"], action["seed"], action["model_hash"], action["strength"]) == \
        ("a person walks 2", 102, "0123456789abcdef", 1.0)
    assert bpy.context.scene.frame_end >= 50 + 19 * fps / 20


def test_chosen_armature_in_sequence_and_the_operator(addon, tmp_path):
    write_manifest(tmp_path, [("a", "", 1, 40), ("b", "Nobody", 1, 20)])
    obj = skeleton("Solo")
    bpy.context.scene.realign.start_frame = 5
    assert bpy.ops.realign.import_batch(filepath=str(tmp_path / "manifest.jsonl"), source="chosen",
                                        layout="sequence", gap=4) == {"FINISHED"}
    fps = bpy.context.scene.render.fps / bpy.context.scene.render.fps_base
    end_a = 5 + 39 * fps / 20
    assert strips(obj) == [("a", 5, pytest.approx(end_a)), ("b", np.ceil(end_a + 4), pytest.approx(
        np.ceil(end_a + 4) + 19 * fps / 20))]
    assert "2 take(s) baked" in bpy.context.scene.realign.message
    assert hasattr(bpy.types, "REALIGN_PT_batch")


def test_bad_manifests_say_where(addon, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such manifest"):
        addon.batch_import.read_manifest(tmp_path)
    (tmp_path / "manifest.jsonl").write_text('{"name": "a", "files": {"npy": "a.npy"}}\n{oops\n')
    with pytest.raises(ValueError, match=r"manifest.jsonl, line 2: not JSON"):
        addon.batch_import.read_manifest(tmp_path)
    (tmp_path / "manifest.jsonl").write_text('{"name": "a", "files": {"npy": "a.npy"}}\n')
    skeleton("Solo")
    report = addon.batch_import.import_results(bpy.context, tmp_path, "chosen", bpy.context.active_object)
    assert report.baked == [] and "a.npy is missing" in report.problems[0]


def test_farm_script_bakes_a_manifest_into_a_blend(tmp_path):
    write_manifest(tmp_path, [("a", "Hero", 1, 30), ("b", "Extra 1", 10, 20), ("c", "Hero", 40, 20)])
    env = {k: v for k, v in os.environ.items() if k != "BLENDER_USER_RESOURCES"}   # the script makes its own
    blend, report_path = tmp_path / "out" / "crowd.blend", tmp_path / "report.json"
    cmd = [sys.executable, str(SCRIPT), "--zip", str(addon_zip()), "--manifest", str(tmp_path), "--blend",
           str(blend), "--create-missing", "--report", str(report_path)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["created"] == ["Hero", "Extra 1"] and report["problems"] == []
    assert [(b["name"], b["armature"]) for b in report["baked"]] == [("a", "Hero"), ("b", "Extra 1"), ("c", "Hero")]
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    hero = bpy.data.objects["Hero"]
    assert sorted(s.frame_start for t in hero.animation_data.nla_tracks for s in t.strips) == [1, 40]
    assert bpy.data.objects["Extra 1"].animation_data.nla_tracks[0].strips[0].action["seed"] == 101
    bpy.ops.wm.read_factory_settings(use_empty=True)
