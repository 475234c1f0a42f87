"""Command line of the server: ``python -m server`` and ``realign serve`` share these arguments.

The address is checked before any model is loaded: a non-loopback ``--host``
is refused unless ``--allow-remote`` comes with a token of at least 8
characters, which every request must then carry.  The token comes from the
``REALIGN_SERVER_TOKEN`` environment variable or ``--token-file FILE`` (its first
line); ``--token T`` works too but puts the secret on the command line, where
every local user can read it (``ps``), so the server warns about it.

Once listening, the server prints one line ``realign server listening on
HOST:PORT (device ...)`` on stdout and, with ``--port-file``, writes ``{"host",
"port", "pid", "device"}`` there as JSON (written atomically, so a launcher can
poll for it).  SIGINT/SIGTERM stop it cleanly (exit code 0), also while the
models are still loading.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import signal
import socket
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import DEFAULT_HOST, DEFAULT_PORT

if TYPE_CHECKING:
    from .app import Server, ServerConfig

TOKEN_ENV = "REALIGN_SERVER_TOKEN"
MIN_TOKEN_CHARS = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The server's options (used by ``python -m server`` and ``realign serve``)."""
    parser.add_argument("--models", default="models/default", help="model folder (default: models/default)")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT}; 0 = any)")
    parser.add_argument("--device", default="auto", help="auto (GPU when available), cpu, cuda, cuda:1 ...")
    parser.add_argument("--token", default=None,
                        help=f"shared secret every request must carry; visible to other users in `ps`: prefer "
                             f"${TOKEN_ENV} or --token-file")
    parser.add_argument("--token-file", default=None, metavar="FILE",
                        help=f"read the token from the first line of FILE (default: ${TOKEN_ENV})")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow binding a non-loopback address (requires --token)")
    parser.add_argument("--port-file", default=None, help="write the actual host/port here as JSON once listening")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: cores - 1 on CPU)")
    parser.add_argument("--max-batch", type=int, default=32, help="motions per sampling run (default 32)")
    parser.add_argument("--batch-window-ms", type=float, default=20.0,
                        help="an idle worker waits this long for more jobs to batch (default 20)")
    parser.add_argument("--generator", default=None, help="base generator kind for the pipeline (default: its own)")
    bounds = parser.add_argument_group("connection bounds (docs/server.md, Limits)")
    bounds.add_argument("--max-clients", type=int, default=64, help="connections at once (default 64)")
    bounds.add_argument("--idle-timeout", type=float, default=60.0, metavar="S",
                        help="close a connection without job or traffic for S seconds (default 60; 0 = never)")
    bounds.add_argument("--evict-idle", type=float, default=5.0, metavar="S",
                        help="when all slots are taken, a connection idle S seconds makes room (default 5)")
    bounds.add_argument("--max-unsent-kib", type=int, default=1024,
                        help="stop reading a client while this much of its output is unsent (default 1024)")
    bounds.add_argument("--lines-per-s", type=float, default=200.0,
                        help="request lines answered per second per client, bursts of as many (default 200; "
                             "0 = no limit)")
    bounds.add_argument("--drain-timeout", type=float, default=2.0, metavar="S",
                        help="at shutdown, send pending output to all clients for at most S seconds (default 2)")
    bounds.add_argument("--text-cache-entries", type=int, default=1024,
                        help="prompts kept per text-encoder cache (sentences, token states; default 1024)")
    bounds.add_argument("--text-cache-mib", type=float, default=32.0,
                        help="MiB of tensors per text-encoder cache (default 32)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def is_loopback(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def check_bind(host: str, allow_remote: bool, token: str | None) -> str | None:
    """Why binding ``host`` is refused, or None when it is allowed."""
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        return f"--token must have at least {MIN_TOKEN_CHARS} characters"
    if is_loopback(host):
        return None
    if not allow_remote:
        return (f"refusing to bind non-loopback address {host!r}: anyone who can reach it could use this "
                "server. Use an ssh tunnel (ssh -L 8765:127.0.0.1:8765 gpu-host) or pass --allow-remote "
                f"together with a token (${TOKEN_ENV} or --token-file)")
    if not token:
        return (f"--allow-remote needs a token (${TOKEN_ENV}, --token-file or --token): every request must "
                "carry that token")
    return None


def resolve_token(args: argparse.Namespace, environ: dict[str, str] | None = None) -> tuple[str | None, list[str]]:
    """The token from --token, --token-file or $REALIGN_SERVER_TOKEN -> (token, warnings).

    Raises ValueError naming the option or file when the token cannot be read.
    """
    environ = os.environ if environ is None else environ
    warnings: list[str] = []
    if args.token is not None and args.token_file is not None:
        raise ValueError("give --token or --token-file, not both")
    if args.token is not None:
        warnings.append(f"--token on the command line is visible to every local user (ps, /proc); pass it in "
                        f"${TOKEN_ENV} or --token-file instead")
        return args.token, warnings
    if args.token_file is not None:
        return _read_token_file(Path(args.token_file), warnings), warnings
    return environ.get(TOKEN_ENV) or None, warnings


def _read_token_file(path: Path, warnings: list[str]) -> str:
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--token-file {path}: cannot read it ({exc})") from None
    token = text.splitlines()[0].strip() if text.strip() else ""
    if not token:
        raise ValueError(f"--token-file {path}: the file is empty (the token is its first line)")
    if os.name == "posix" and mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.append(f"--token-file {path} is readable by other users (mode {stat.S_IMODE(mode):o}); "
                        f"chmod 600 it")
    return token


def write_port_file(path: str | Path, host: str, port: int, device: str) -> None:
    """Atomically write the listening address as JSON."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"host": host, "port": port, "pid": os.getpid(), "device": device}))
    os.replace(tmp, path)


class _Stopped(Exception):
    """SIGINT/SIGTERM arrived before the server was listening."""


def _stop_while_loading(signum: int, frame: object) -> None:
    raise _Stopped(signal.Signals(signum).name)


def server_config(args: argparse.Namespace, token: str | None) -> ServerConfig:
    """The ``ServerConfig`` of the parsed options."""
    from .app import ServerConfig
    from .connection import ConnectionPolicy
    from .protocol import Limits

    rate = max(0.0, args.lines_per_s)
    policy = ConnectionPolicy(max_unsent_bytes=max(1, args.max_unsent_kib) * 1024,
                              max_lines_per_s=rate, line_burst=max(rate, 1.0))
    return ServerConfig(host=args.host, port=args.port, token=token, max_batch=max(1, args.max_batch),
                        batch_window_s=max(0.0, args.batch_window_ms) / 1000,
                        limits=Limits(max_clients=max(1, args.max_clients)), policy=policy,
                        idle_timeout_s=max(0.0, args.idle_timeout), evict_idle_s=max(0.0, args.evict_idle),
                        drain_timeout_s=max(0.0, args.drain_timeout))


def serve(args: argparse.Namespace) -> int:
    """Check the address, load the models once, listen, and serve until SIGINT/SIGTERM."""
    try:
        token, warnings = resolve_token(args)
    except ValueError as exc:
        print(f"realign serve: error: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"realign serve: warning: {warning}", file=sys.stderr, flush=True)
    problem = check_bind(args.host, args.allow_remote, token)
    if problem:
        print(f"realign serve: error: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop_while_loading)
    try:
        print(f"realign serve: loading the models from {args.models} ...", file=sys.stderr, flush=True)
        server, device, threads = _load(args, token)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: server.shutdown())
    except _Stopped as stop:
        print(f"realign serve: stopped by {stop} while loading the models; exiting", file=sys.stderr, flush=True)
        return 0
    except (ValueError, FileNotFoundError) as exc:
        print(f"realign serve: error: {exc}", file=sys.stderr)
        return 2
    try:
        host, port = server.bind()
    except OSError as exc:
        print(f"realign serve: error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    print(f"realign server listening on {host}:{port} (device {device}, {threads} CPU threads, "
          f"model {server.engine.name})", flush=True)
    if args.port_file:
        write_port_file(args.port_file, host, port, device)
    server.serve_forever()
    return 0


def _load(args: argparse.Namespace, token: str | None) -> tuple[Server, str, int]:
    """Load the models (seconds) -> (the server, its device, torch CPU threads)."""
    from realign_core.device import configure_threads, pick_device

    from .app import Server
    from .engine import Engine

    device = pick_device(args.device)
    threads = configure_threads(device, args.threads)
    engine = Engine.load(args.models, device, args.generator)
    engine.limit_text_cache(max(0, args.text_cache_entries), int(max(0.0, args.text_cache_mib) * 2 ** 20))
    return Server(engine, server_config(args, token)), device, threads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server", description="ReAlign local generation server "
                                     "(newline-delimited JSON over TCP; see docs/server.md)")
    add_arguments(parser)
    return serve(parser.parse_args(argv))
