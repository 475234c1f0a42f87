"""The main job on a user's checkout: ``python3.11 build.py all`` in a copy of this repository in a temporary
folder, with no ``../shared`` (no training data) beside it, end to end.

The copy holds the tracked and untracked-but-not-ignored files (what a clone plus the work in progress
has); its ``.venv`` and ``.venv-bpy50`` link to this checkout's environments, so ``setup`` finds them up to
date instead of installing torch and bpy again.  ``--quick`` keeps the pictures small and the GIF at 2 fps
(the full-size run is the same code).  Checked: the generated motion, the bake report, the .blend
reloaded in bpy (both armatures with their Action on an NLA strip and a skinned mannequin), the strip
PNG and the animated GIF's frames, and that the checkout's README pictures were left alone.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO_ROOT

PROMPT = "a person walks forward and waves with the right hand."
LINKED = (".venv", ".venv-bpy50")


def _bpy_python() -> Path:
    python = REPO_ROOT / ".venv-bpy50" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not python.exists():
        pytest.skip(f"{python.parent.parent} is absent: 'python build.py test' (or 'build.py blender-test') creates it")
    return python


def _checkout_files() -> list[str]:
    """Tracked and untracked, not ignored files of this checkout (relative paths)."""
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout to copy the repository as a clone would")
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                         check=True, capture_output=True).stdout.decode()
    return [f for f in out.split("\0") if f and (REPO_ROOT / f).is_file()]


def _editable_target() -> str:
    """Where this checkout's .venv resolves the editable ``realign`` install (its finder's mapping)."""
    finders = sorted((REPO_ROOT / ".venv").glob("lib*/python3*/site-packages/__editable___realign_*_finder.py"))
    return finders[0].read_text() if finders else ""


def _clone(dest: Path) -> Path:
    """Copy the checkout's files into dest (no ../shared beside it) and link its Python environments."""
    for rel in _checkout_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, target)
    for name in LINKED:
        (dest / name).symlink_to(REPO_ROOT / name, target_is_directory=True)
    return dest


@pytest.mark.slow
def test_main_job_runs_from_a_checkout_without_training_data(tmp_path):
    bpy_python = _bpy_python()
    # The clone links this checkout's .venv: it must already be up to date, or the clone's setup would
    # re-point the shared editable install at the temporary clone.
    subprocess.run([sys.executable, "build.py", "setup"], cwd=REPO_ROOT, check=True, capture_output=True)
    editable = _editable_target()
    clone = _clone(tmp_path / "realign")
    assert not (clone.parent / "shared").exists()
    out = tmp_path / "out"
    dropped = ("PYTHONPATH", "REALIGN_ADDON_ZIP", "BLENDER_USER_RESOURCES")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["HF_HUB_OFFLINE"] = "1"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "build.py", "all", "--out", str(out), "--quick"], cwd=clone, env=env,
                          check=False, capture_output=True, text=True, timeout=900)
    took = time.perf_counter() - start
    assert _editable_target() == editable, "the clone's setup re-installed into this checkout's .venv"
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    summary = proc.stdout[proc.stdout.index("main job done:"):]
    print(f"build.py all --quick in a clone without ../shared: {took:.1f} s\n{summary}")
    assert "shared/data is missing" not in proc.stdout + proc.stderr
    assert "kinematic checks   walk_forward " in summary     # what the demo does, measured (realign check-motion)

    demo = out / "demo"
    motion = np.load(demo / "walk_wave.npy")
    assert motion.shape == (120, 22, 3) and np.all(np.isfinite(motion))
    report = json.loads((demo / "walk_wave_bake.json").read_text())
    assert report["frames"] == 120 and [r["bones_driven"] for r in report["rigs"]] == [22, 22]
    assert [b["vertex_groups"] for b in report["bodies"]] == [22, 22]
    assert Path(report["blend"]).parent == demo and not (demo / "gif_frames").exists()
    assert (clone / "dist").is_dir() and list((clone / "dist").glob("realign_blender-*.zip"))

    inspect = subprocess.run([str(bpy_python), str(REPO_ROOT / "tests" / "blender" / "inspect_blend.py"),
                              str(demo / "walk_wave.blend")], check=False, capture_output=True, text=True, timeout=300,
                             env={**env, "BLENDER_USER_RESOURCES": str(tmp_path / "blender_user")})
    assert inspect.returncode == 0, inspect.stdout[-3000:] + inspect.stderr[-3000:]
    saved = json.loads(inspect.stdout.split("INSPECT ", 1)[1].splitlines()[0])
    assert set(saved["armatures"]) == {"ReAlign Skeleton", "Mixamo Rig"}
    for name, arm in saved["armatures"].items():
        (strip,) = arm["strips"]
        action = saved["actions"][strip["action"]]
        assert action["prompt"] == PROMPT and action["seed"] == 0 and action["fake_user"], name
        assert strip["start"] == 1 and strip["end"] > 100
        (body,) = arm["bodies"]
        assert body["kind"] == "mannequin" and body["armature_modifier"] and body["groups"] == 22, name
    assert len([a for a in saved["actions"].values() if a["prompt"] == PROMPT]) == 2

    with Image.open(demo / "retarget_demo.png") as strip_png:
        assert strip_png.size[0] == 480 and strip_png.size[1] > 200
        pixels = np.asarray(strip_png.convert("L"), float)
    assert pixels.std() > 20  # figures, floor and labels, not a blank page
    with Image.open(report["gif"]) as gif:
        assert gif.format == "GIF" and gif.n_frames == report["gif_frames"] == 12
        first = np.asarray(gif.convert("L"), float)
        gif.seek(gif.n_frames - 1)
        last = np.asarray(gif.convert("L"), float)
    assert np.abs(first - last).mean() > 0.5  # it moves
    for picture in ("retarget_demo.png", "retarget_demo.gif"):
        original = REPO_ROOT / "docs" / "img" / picture
        if original.exists():
            assert (clone / "docs" / "img" / picture).read_bytes() == original.read_bytes()  # --quick never publishes
