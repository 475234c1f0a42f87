"""The built extension in bpy 5.0.1 / 4.5.15 against a real server process with tiny real models.

The server needs torch (this environment); Blender runs in its own bpy
environment as a subprocess driving the add-on (tests/blender/drive_real_server.py).
``python build.py test`` creates both bpy environments and the zip before the main suite.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.server_fixtures import BPY, bpy_python, launch_tiny_server

SCRIPT = REPO_ROOT / "tests" / "blender" / "drive_real_server.py"


@pytest.fixture(scope="module")
def guided_server(tiny_guided, tmp_path_factory):
    process = launch_tiny_server(tiny_guided, tmp_path_factory)
    yield process
    process.stop()


@pytest.mark.slow
@pytest.mark.parametrize("version", list(BPY))
def test_addon_generates_regenerates_cancels_and_batch_bakes(version, guided_server, tmp_path):
    python, zip_path = bpy_python(version)
    out = tmp_path / "report.json"
    cmd = [str(python), str(SCRIPT), "--zip", str(zip_path), "--port", str(guided_server.port), "--out", str(out),
           "--blend", str(tmp_path / "takes.blend")]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT),
                               "BLENDER_USER_RESOURCES": str(tmp_path / "blender_user")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + guided_server.log_tail()
    report = json.loads(out.read_text())
    print(json.dumps(report, indent=1), file=sys.stderr)
    assert report["status"]["status"] == "connected"
    first = report["generate"]
    assert sorted(t["seed"] for t in first) == [7, 8] and all(t["server_version"] for t in first)
    assert all(t["foot_lock"] for t in first)      # the panel's foot lock went to the server and came back locked
    regen = [t for t in report["after_regenerate"] if t["strength"] == 2.0]
    assert len(regen) == 1 and regen[0]["seed"] == 7
    assert report["track_mutes"] == [True, True, False]
    assert "cancelled" in report["cancel"]["message"] and not report["cancel"]["busy"]
    assert "3 take(s) baked" in report["batch"]["message"]
    assert report["batch"]["mixamo_strips"] == [1, 150]
    assert "1 take(s) baked" in report["benchmark_message"]
    assert (tmp_path / "takes.blend").exists()
