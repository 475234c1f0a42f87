"""The installed ``realign`` console script, run as a real subprocess."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.synthetic import walking_motion

REALIGN = Path(sys.executable).parent / "realign"


def realign(*args: str) -> subprocess.CompletedProcess:
    if not REALIGN.exists():
        pytest.skip(f"{REALIGN} not installed: run `python3.11 build.py setup` first")
    return subprocess.run([str(REALIGN), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_help_lists_subcommands():
    res = realign("--help")
    assert res.returncode == 0 and "data" in res.stdout and "render" in res.stdout


def test_data_build_and_report(synthetic_sources, tmp_path):
    src = synthetic_sources
    out = tmp_path / "ds"
    res = realign("data", "build", "--cmu", src / "cmu", "--kitml", src / "kitml",
                  "--humanml3d-index", src / "index", "--out", out, "--workers", "1")
    assert res.returncode == 0, res.stderr
    assert "clips:" in res.stdout and "test fraction" in res.stdout and (out / "report.json").is_file()
    rep = realign("data", "report", out)
    assert rep.returncode == 0 and "captions per clip" in rep.stdout


def test_data_build_names_a_missing_folder(tmp_path):
    res = realign("data", "build", "--cmu", tmp_path / "nope", "--kitml", tmp_path, "--humanml3d-index",
                  tmp_path, "--out", tmp_path / "o")
    assert res.returncode != 0 and str(tmp_path / "nope") in res.stdout + res.stderr


def test_render_joints_to_gif(tmp_path):
    np.save(tmp_path / "walk.npy", walking_motion(frames=8))
    res = realign("render", tmp_path / "walk.npy", "-o", tmp_path / "walk.gif")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "walk.gif").stat().st_size > 1000


def test_render_bad_file_is_a_clear_error(tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"junk")
    res = realign("render", tmp_path / "bad.npy", "-o", tmp_path / "x.gif")
    assert res.returncode == 2 and "bad.npy" in res.stderr and not (tmp_path / "x.gif").exists()


def test_check_representation_against_reference_vectors():
    from tests.conftest import shared_path

    res = realign("check-representation", "--vectors",
                  shared_path("testvectors", "humanml3d_reference_vectors.npz"))
    assert res.returncode == 0 and res.stdout.strip().endswith("PASS"), res.stdout + res.stderr
