"""``realign batch`` in this process with the tiny trained models: files, manifest, server batching, resume, CLI."""
from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from realign_core.batch import BatchConfig, read_manifest, run_batch
from realign_core.cli.main import main
from realign_core.pipeline import SamplingConfig, TextToMotionPipeline
from tests.conftest import REPO_ROOT

JOBS = ("prompt,seconds,seed,samples,steps,cfg,name,armature,start_frame\n"
        "a person walks forward,2,5,2,8,,walk,Hero,1\n"
        "a person jumps,1.5,9,1,12,,,,\n"
        "a person waves,1,3,1,8,,wave,Crowd,40\n")


@pytest.fixture
def jobs(tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_text(JOBS)
    return path


def test_local_run_writes_files_and_a_complete_manifest(tiny_generator, jobs, tmp_path, one_thread):
    models = tiny_generator[0]
    out = tmp_path / "out"
    summary = run_batch(jobs, out, BatchConfig(models=models, formats=("npy", "bvh"), progress=False))
    assert (summary.motions, summary.generated, summary.skipped, summary.batches) == (4, 4, 0, 2)
    entries = read_manifest(out)
    assert [e["name"] for e in entries] == ["walk_s0", "walk_s1", "row0002", "wave"]
    # the server's batching: rows 1 and 3 (8 steps) in one sampling run, row 2 (12 steps) in another
    assert [(e["timing"]["batch"], e["timing"]["batch_motions"]) for e in entries] == [(0, 3), (0, 3), (1, 1), (0, 3)]
    walk = entries[0]
    assert (walk["row"], walk["line"], walk["sample"], walk["seed"], walk["frames"]) == (1, 2, 0, 5, 40)
    assert entries[1]["seed"] == 6 and entries[2]["seed"] == 9 and entries[3]["start_frame"] == 40.0
    assert (walk["armature"], walk["settings"]["steps"], walk["settings"]["guidance"]["strength"]) == ("Hero", 8, 0.0)
    assert walk["model"]["hash"] == summary.model_hash and len(summary.model_hash) == 16
    for e in entries:
        joints = np.load(out / e["files"]["npy"])
        assert joints.dtype == np.float32 and joints.shape == (e["frames"], 22, 3) and np.isfinite(joints).all()
        assert (out / e["files"]["bvh"]).read_text().startswith("HIERARCHY")
    # each motion is what the pipeline makes for its seed alone (per-sample noise; the batch does not matter)
    pipe = TextToMotionPipeline.from_checkpoints(models)
    alone = pipe(["a person waves"], [20], [3], SamplingConfig(steps=8), return_joints=True).joints[0]
    np.testing.assert_allclose(np.load(out / "wave.npy"), alone, atol=1e-5)


def test_rerun_skips_done_motions_and_redoes_missing_or_changed_ones(tiny_generator, jobs, tmp_path, one_thread):
    models, out = tiny_generator[0], tmp_path / "out"
    cfg = BatchConfig(models=models, progress=False)
    run_batch(jobs, out, cfg)
    before = {n: np.load(out / f"{n}.npy") for n in ("walk_s0", "walk_s1", "row0002", "wave")}
    assert run_batch(jobs, out, cfg).generated == 0
    (out / "walk_s1.npy").unlink()
    jobs.write_text(JOBS.replace("a person jumps", "a person hops"))
    again = run_batch(jobs, out, cfg)
    assert (again.generated, again.skipped) == (2, 2)
    # now in a sampling run of its own: the same motion to float rounding (a batch changes summation order)
    np.testing.assert_allclose(np.load(out / "walk_s1.npy"), before["walk_s1"], atol=1e-5)
    assert read_manifest(out)[2]["prompt"] == "a person hops"
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 6   # appended, latest line wins


def test_cli_runs_and_reports_bad_rows(tiny_generator, jobs, tmp_path, capsys, one_thread):
    out = tmp_path / "cli"
    assert main(["batch", str(jobs), "--out", str(out), "--models", str(tiny_generator[0]), "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.splitlines()[0])
    assert summary["generated"] == 4 and summary["runner"] == "local"
    assert "realign batch (local): 100%" in captured.err and "4/4" in captured.err   # the progress bar
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,strength\na person walks,1\n")
    with pytest.raises(SystemExit) as err:   # the tiny models have no reward model: guidance is refused
        main(["batch", str(bad), "--out", str(out), "--models", str(tiny_generator[0])])
    assert f"{bad}, line 2 (row 1), column 'strength'" in str(err.value) and "reward model" in str(err.value)


def test_manifest_bakes_into_a_blend_with_the_farm_script(tiny_generator, jobs, tmp_path, one_thread):
    """The real manifest of a run, baked by blender_addon/scripts/bake_manifest.py in bpy 5.0.1."""
    python = REPO_ROOT / ".venv-bpy50" / "bin" / "python"
    zips = sorted((REPO_ROOT / "dist").glob("realign_blender-*.zip"), key=lambda p: p.stat().st_mtime)
    if not python.exists() or not zips:
        pytest.skip("needs .venv-bpy50 and dist/realign_blender-*.zip ('python build.py blender-test' makes both)")
    out = tmp_path / "out"
    run_batch(jobs, out, BatchConfig(models=tiny_generator[0], progress=False))
    report = tmp_path / "report.json"
    cmd = [str(python), str(REPO_ROOT / "blender_addon" / "scripts" / "bake_manifest.py"), "--zip", str(zips[-1]),
           "--manifest", str(out), "--blend", str(tmp_path / "scene.blend"), "--create-missing", "--report",
           str(report)]
    env = {k: v for k, v in os.environ.items() if k != "BLENDER_USER_RESOURCES"}
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    # row 2 names no armature and no --armature is given: reported, exit status 1, the rest baked
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    facts = json.loads(report.read_text())
    assert facts["created"] == ["Hero", "Crowd"]
    assert [(b["name"], b["armature"]) for b in facts["baked"]] == [("walk_s0", "Hero"), ("walk_s1", "Hero"),
                                                                    ("wave", "Crowd")]
    assert facts["problems"] == ["row0002: the row names no armature (choose one)"]
    assert (tmp_path / "scene.blend").is_file()
