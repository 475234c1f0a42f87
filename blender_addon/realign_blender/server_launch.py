"""What the *Start server* button runs: find the local ReAlign server, start it, stop it (stdlib only; no bpy).

The server is found, first match wins:

1. the command in the add-on preferences (*Server command*, run in *Run in*);
2. the checkout named by the ``REALIGN_REPO`` environment variable;
3. the checkout that built this zip: ``build.py`` writes its path into
   ``server_location.json`` inside the add-on (``python3.11 build.py all``
   sets up ``.venv`` there and builds the zip).

A checkout qualifies when it has ``server/__main__.py`` and a ``.venv`` Python;
the server then runs as ``<repo>/.venv/bin/python -m server --models
<repo>/models/default --port PORT`` in the checkout.  When nothing qualifies,
``CannotStart`` says exactly what was looked at and what to set.

The token (preferences) reaches the server through the environment variable
``REALIGN_SERVER_TOKEN`` only, never on the command line, where other users of
the machine could read it in the process list.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

LOCATION_FILE = Path(__file__).resolve().parent / "server_location.json"
REPO_ENV = "REALIGN_REPO"
TOKEN_ENV = "REALIGN_SERVER_TOKEN"  # server/cli.py reads the token from it
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class CannotStart(RuntimeError):
    """No server command could be found or used; the message says what to set."""


MIN_TOKEN_CHARS = 8  # server/cli.py refuses shorter tokens


@dataclass
class ServerCommand:
    """argv to run in ``cwd``; ``source`` says where it came from (shown to the user)."""

    argv: list[str]
    cwd: str | None
    source: str
    env: dict[str, str] = field(default_factory=dict)


def venv_python(repo: Path) -> Path:
    """The Python of a checkout's ``.venv`` (POSIX or Windows layout)."""
    return repo / ".venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def recorded_repo(location_file: Path = LOCATION_FILE) -> Path | None:
    """The checkout that built this add-on (``server_location.json``), or None."""
    try:
        return Path(json.loads(location_file.read_text(encoding="utf-8"))["repo"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def repo_command(repo: Path, port: int) -> list[str] | None:
    """The server command of a checkout, or None when it has no server or no ``.venv``."""
    python = venv_python(repo)
    if not ((repo / "server" / "__main__.py").is_file() and python.is_file()):
        return None
    return [str(python), "-m", "server", "--models", str(repo / "models" / "default"), "--port", str(int(port))]


def find_command(command: str = "", cwd: str = "", port: int = 8765,
                 location_file: Path = LOCATION_FILE) -> ServerCommand:
    """The command to start (see the module docstring); CannotStart when there is none."""
    if command.strip():
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise CannotStart(f"Server command {command!r}: {exc}") from None
        if any(a == "--token" or a.startswith("--token=") for a in argv):
            raise CannotStart("Remove --token from the server command: put the token in the add-on preferences "
                                 f"(Token); Start server passes it as ${TOKEN_ENV}, not on the command line")
        return ServerCommand(argv, cwd or None, "the add-on preferences")
    tried = []
    for label, repo in ((f"${REPO_ENV}", os.environ.get(REPO_ENV)), ("the checkout that built this add-on",
                                                                      recorded_repo(location_file))):
        if not repo:
            continue
        argv = repo_command(Path(repo), port)
        if argv is not None:
            return ServerCommand(argv, str(repo), f"{label} ({repo})")
        tried.append(f"{repo} ({label}: no server/ or no {venv_python(Path(repo)).relative_to(repo)})")
    looked = "; ".join(tried) if tried else "no checkout recorded"
    raise CannotStart(
        f"No ReAlign server found ({looked}). Run 'python3.11 build.py all' in the ReAlign checkout and install "
        f"the zip it builds, or set {REPO_ENV} to the checkout, or set Preferences > Add-ons > ReAlign > Server "
        "command to '<checkout>/.venv/bin/python -m server' and Run in to the checkout")


def start(cmd: ServerCommand, token: str = "", host: str = "127.0.0.1") -> tuple[subprocess.Popen, Path]:
    """Start the server; its output goes to a log file. Returns (process, log path).

    The token travels in ``$REALIGN_SERVER_TOKEN``; a non-loopback host is refused (the button starts a
    server on this machine: use ``realign serve`` on the remote one).
    """
    if host not in LOOPBACK:
        raise CannotStart(f"Start server runs the server on this machine, but Host is {host}: start it on "
                             f"{host} with 'realign serve', or set Host to 127.0.0.1")
    if token and len(token) < MIN_TOKEN_CHARS:
        raise CannotStart(f"The token must have at least {MIN_TOKEN_CHARS} characters (Preferences > Token)")
    env = {**os.environ, **cmd.env}
    env.pop(TOKEN_ENV, None)
    if token:
        env[TOKEN_ENV] = token
    log = Path(tempfile.gettempdir()) / f"realign_server_{os.getpid()}.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(cmd.argv, cwd=cmd.cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    return process, log


def stop(process: subprocess.Popen, timeout_s: float = 10.0) -> int | None:
    """Terminate a started server (SIGTERM, then kill); returns its exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
