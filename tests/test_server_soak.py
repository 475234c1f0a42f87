"""The soak command (``realign bench --server --soak``) in a short run: every actor, no lost result."""
from __future__ import annotations

import re
import subprocess
import sys

from server.launch import REPO_ROOT
from tests.server_fixtures import tiny_server  # noqa: F401


def test_short_soak_loses_nothing_and_leaks_nothing(tiny_server):
    """6 s of mixed load after a 5 s baseline on the tiny model (the documented run is 120 s, docs/server.md)."""
    res = subprocess.run([sys.executable, "-m", "realign_core.cli", "bench", "--server", "--soak", "6", "--connect",
                          f"{tiny_server.host}:{tiny_server.port}", "--clients", "2", "--steps", "3", "--frames", "30"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    assert "results lost: 0; cross-talk: 0; internal errors: 0; bad hostile replies: 0" in out, out
    for actor in ("hostile lines answered", "half-close results", "cancelled", "disconnects", "churned connections"):
        assert re.search(rf"{actor} [1-9]", out), (actor, out)
    fds = re.search(r"open fds: (\d+) -> (\d+); clients (\d+) -> (\d+)", out).groups()
    assert fds[0] == fds[1] and fds[2] == fds[3], out            # every connection of the actors is gone
    threads = re.search(r"threads \(python/native\): (\S+) -> (\S+);", out).groups()
    assert threads[0] == threads[1], out
    for phase in ("generate", "ping"):
        assert re.search(rf"  {phase} .*n= *[1-9].*n= *[1-9]", out), (phase, out)
