"""Reusable fixtures: a real generation server (subprocess) serving the tiny trained models.

Import the fixtures into a test module to use them::

    from tests.server_fixtures import server_client, tiny_server  # noqa: F401

    def test_something(tiny_server):          # a ServerProcess: .host, .port, .client(), .log_tail()
        with tiny_server.client() as c:        # a connected server.client.Client
            result = c.generate("a person walks", frames=40, steps=FAST_STEPS, seed=1)
            joints = decode_joints(result["motions"][0]["joints"])     # (40, 22, 3) float32

``tiny_server`` is session-scoped (one server process for all modules; it needs
the session's ``tiny_generator`` from conftest.py) and listens on a free port of
127.0.0.1; ``launch_tiny_server`` starts another one with extra options (e.g. a
token).  Use few sampler steps (``FAST_STEPS``) to keep tests fast; ``long_job``
submits a job that runs for seconds (to hold the worker busy), ``first_progress``
waits until a job runs and ``wait_until`` polls a condition.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from server.client import Client
from server.launch import ServerProcess, start_server

FAST_STEPS = 5
SERVER_ARGS = ("--device", "cpu", "--threads", "1", "--log-level", "WARNING")


def launch_tiny_server(models, tmp_path_factory, *extra: str, env: dict[str, str] | None = None) -> ServerProcess:
    """Start a server on ``models`` with the test settings (its log in a fresh temp folder); ``env``: extra
    environment variables (e.g. the token)."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    return start_server(models, *SERVER_ARGS, *extra, log_path=log, env=env)


_SHARED: dict[str, ServerProcess] = {}


@pytest.fixture(scope="session")
def tiny_server(tiny_generator, tmp_path_factory) -> Iterator[ServerProcess]:
    """A server process on the tiny trained generator, shared by the whole session.

    Every module that imports this fixture gets its own session-scoped copy of it
    (pytest's rule for imported fixtures), so the process is cached here: the first
    copy starts it, the others reuse it, and the first copy stops it at session end.
    """
    key = str(tiny_generator[0])
    owner = key not in _SHARED or not _SHARED[key].alive
    if owner:
        _SHARED[key] = launch_tiny_server(tiny_generator[0], tmp_path_factory)
    process = _SHARED[key]
    yield process
    if owner:
        del _SHARED[key]
        code = process.stop()
        assert code == 0, f"the server exited with {code}:\n{process.log_tail()}"


@pytest.fixture
def server_client(tiny_server) -> Iterator[Client]:
    """A fresh connected client of ``tiny_server``, closed after the test."""
    with tiny_server.client(timeout=120) as client:
        yield client


def wait_until(predicate: Callable[[], object], timeout_s: float = 30.0, interval_s: float = 0.05) -> object:
    """Poll ``predicate`` until it returns something truthy -> that value; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)


def first_event(job, kind: str, timeout_s: float = 60.0) -> dict:
    """Wait for a job's first event of ``kind`` (``accepted``, ``progress``, ...)."""
    for event in job.iter_events(timeout_s):
        if event["event"] == kind:
            return event
    pytest.fail(f"job {job.id} ended without a {kind!r} event: {job.result or job.error}")


def first_progress(job, timeout_s: float = 60.0) -> dict:
    """Wait for a running job's first ``progress`` event."""
    return first_event(job, "progress", timeout_s)


def long_job(client: Client, **fields):
    """A job that runs for many seconds on the tiny model (32 motions x 1000 DDPM steps): a blocker."""
    return client.submit(prompts=["a person stands still.", "a person waves."], samples=16, frames=196,
                         steps=1000, sampler="ddpm", seed=0, **fields)


REPO_ROOT = Path(__file__).resolve().parents[1]
BPY = {"5.0.1": REPO_ROOT / ".venv-bpy50", "4.5.15": REPO_ROOT / ".venv-bpy45"}


def bpy_python(version: str) -> tuple[Path, Path]:
    """(python of the bpy ``version`` environment, newest built add-on zip); skips when either is absent."""
    venv = BPY[version]
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not python.exists():
        pytest.skip(f"{venv} is absent: 'python build.py test' (or 'build.py blender-test') creates it")
    zips = sorted((REPO_ROOT / "dist").glob("realign_blender-*.zip"), key=lambda p: p.stat().st_mtime)
    if not zips:
        pytest.skip("no dist/realign_blender-*.zip: run 'python build.py addon' first")
    return python, zips[-1]
