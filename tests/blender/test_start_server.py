"""The add-on's *Start server* button in real Blender (bpy 5.0.1 and 4.5.15), with no preferences edited: it
finds the checkout that built the zip (server_location.json, written by build.py), starts that checkout's
.venv server with the shipped models, and hands it the token through $REALIGN_SERVER_TOKEN, never on the
command line. Without a usable checkout it says exactly what to set."""
from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import pytest

from tests.blender.conftest import NO_BPY, REPO

bpy = pytest.importorskip("bpy", reason=NO_BPY)
TOKEN = "start-button-token-7f3a"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_hello(addon, port: int, token: str, timeout_s: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return addon.connection.hello("127.0.0.1", port, token)
        except addon.connection.ServerUnavailable:
            process = addon.operators.SERVER_PROCESS[-1]
            assert process.poll() is None, f"the server exited with {process.returncode}"
            assert time.monotonic() < deadline, f"no server on port {port} after {timeout_s} s"
            time.sleep(0.5)


def test_zip_records_the_checkout_that_built_it(addon):
    location = json.loads((Path(addon.__file__).parent / "server_location.json").read_text())
    assert Path(location["repo"]) == REPO


def test_start_server_without_preferences_runs_the_checkouts_server(addon, monkeypatch):
    if not addon.server_launch.venv_python(REPO).is_file():
        pytest.skip(f"{REPO}/.venv is absent: 'python3.11 build.py setup' creates the server's environment")
    monkeypatch.delenv("REALIGN_REPO", raising=False)
    monkeypatch.delenv("REALIGN_SERVER_TOKEN", raising=False)
    prefs = bpy.context.preferences.addons[addon.__name__].preferences
    assert prefs.server_command == ""  # nothing edited
    port = _free_port()
    prefs.port, prefs.token = port, TOKEN
    start = time.perf_counter()
    assert bpy.ops.realign.start_server() == {"FINISHED"}
    process = addon.operators.SERVER_PROCESS[-1]
    try:
        hello = _wait_hello(addon, port, TOKEN)
        print(f"Start server -> hello in {time.perf_counter() - start:.1f} s: {hello['model']['name']} on "
              f"{hello['device']}")
        assert hello["model"]["joints"] == 22
        assert process.args[:3] == [str(addon.server_launch.venv_python(REPO)), "-m", "server"]
        assert TOKEN not in " ".join(process.args)
        proc = Path(f"/proc/{process.pid}")
        if proc.is_dir():  # what another user of the machine could read, and where the token really is
            assert TOKEN.encode() not in (proc / "cmdline").read_bytes()
            assert f"REALIGN_SERVER_TOKEN={TOKEN}".encode() in (proc / "environ").read_bytes().split(b"\0")
        with pytest.raises(addon.client.ServerError) as refused:  # the server wants the token
            addon.connection.hello("127.0.0.1", port, "")
        print(f"  without the token: {refused.value}")
    finally:
        assert bpy.ops.realign.stop_server() == {"FINISHED"}
    assert process.poll() is not None and not addon.operators.SERVER_PROCESS


def test_start_server_says_what_to_set_when_nothing_is_found(addon, monkeypatch, tmp_path):
    launch = addon.server_launch
    monkeypatch.delenv("REALIGN_REPO", raising=False)
    (tmp_path / "where.json").write_text(json.dumps({"repo": str(tmp_path / "gone")}))
    with pytest.raises(launch.CannotStart) as info:
        launch.find_command(location_file=tmp_path / "where.json")
    message = str(info.value)
    assert "gone" in message and "build.py all" in message and "REALIGN_REPO" in message and "Server command" in message
    monkeypatch.setenv("REALIGN_REPO", str(REPO))
    if launch.venv_python(REPO).is_file():
        assert launch.find_command(location_file=tmp_path / "where.json").cwd == str(REPO)
    with pytest.raises(launch.CannotStart, match="Remove --token"):
        launch.find_command("python -m server --token abcdefgh12")
    prefs = bpy.context.preferences.addons[addon.__name__].preferences
    prefs.server_command, prefs.host = f"{sys.executable} -m server", "192.0.2.1"
    with pytest.raises(RuntimeError, match="Host is 192.0.2.1"):
        bpy.ops.realign.start_server()
    prefs.host, prefs.token = "127.0.0.1", "short"
    with pytest.raises(RuntimeError, match="at least 8 characters"):
        bpy.ops.realign.start_server()
    assert not addon.operators.SERVER_PROCESS
