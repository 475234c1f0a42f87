"""Start a generation server as a subprocess and wait until it listens (tests, ``realign bench``).

``start_server(models)`` runs ``python -m server --models MODELS --port 0
--port-file FILE`` (so parallel servers never collide), waits for the port
file, and returns a :class:`ServerProcess`; ``stop()`` sends SIGTERM (the
server cancels its jobs and exits) and kills it if it does not exit in time.
Its stdout and stderr go to a log file, whose tail is shown when it fails.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ServerProcess:
    """A running server subprocess and where it listens."""

    host: str
    port: int
    process: subprocess.Popen
    log_path: Path
    device: str = "cpu"
    _workdir: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def client(self, **kwargs):
        """A connected ``server.client.Client`` (keyword arguments: token, timeout)."""
        from .client import Client

        return Client(self.host, self.port, **kwargs)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout_s`` -> the exit code."""
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_server(models: str | Path, *args: str, log_path: str | Path | None = None, timeout_s: float = 300.0,
                 python: str = sys.executable, env: dict[str, str] | None = None) -> ServerProcess:
    """Start ``python -m server --models MODELS --port 0 ARGS...`` and wait until it listens.

    env: variables added to this process's environment for the server (e.g. REALIGN_SERVER_TOKEN, which
    keeps the token off the command line).
    """
    workdir = tempfile.TemporaryDirectory(prefix="realign_server_")
    port_file = Path(workdir.name) / "port.json"
    log_path = Path(log_path) if log_path else Path(workdir.name) / "server.log"
    cmd = [python, "-m", "server", "--models", str(models), "--port", "0", "--port-file", str(port_file), *args]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, **env} if env else None)
    deadline = time.monotonic() + timeout_s
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
            process.wait()
            tail = log_path.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"server did not start (exit code {process.returncode}): {' '.join(cmd)}\n{tail}")
        time.sleep(0.1)
    info = json.loads(port_file.read_text())
    return ServerProcess(info["host"], int(info["port"]), process, log_path, info.get("device", "cpu"), workdir)
