"""Command line of the server: ``python -m server`` and ``realign serve`` share these arguments.

The address is checked before any model is loaded: a non-loopback ``--host``
is refused unless ``--allow-remote`` comes with a ``--token`` (or the
``REALIGN_SERVER_TOKEN`` environment variable) of at least 8 characters, which
every request must then carry.  Once listening, the server prints one line
``realign server listening on HOST:PORT (device ...)`` on stdout and, with
``--port-file``, writes ``{"host", "port", "pid", "device"}`` there as JSON
(written atomically, so a launcher can poll for it).
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from . import DEFAULT_HOST, DEFAULT_PORT

TOKEN_ENV = "REALIGN_SERVER_TOKEN"
MIN_TOKEN_CHARS = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The server's options (used by ``python -m server`` and ``realign serve``)."""
    parser.add_argument("--models", default="models/default", help="model folder (default: models/default)")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT}; 0 = any)")
    parser.add_argument("--device", default="auto", help="auto (GPU when available), cpu, cuda, cuda:1 ...")
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                        help=f"shared secret every request must carry (default: ${TOKEN_ENV})")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow binding a non-loopback address (requires --token)")
    parser.add_argument("--port-file", default=None, help="write the actual host/port here as JSON once listening")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: cores - 1 on CPU)")
    parser.add_argument("--max-batch", type=int, default=32, help="motions per sampling run (default 32)")
    parser.add_argument("--batch-window-ms", type=float, default=20.0,
                        help="an idle worker waits this long for more jobs to batch (default 20)")
    parser.add_argument("--generator", default=None, help="base generator kind for the pipeline (default: its own)")
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
                "together with --token")
    if not token:
        return f"--allow-remote needs --token (or ${TOKEN_ENV}): every request must carry that token"
    return None


def write_port_file(path: str | Path, host: str, port: int, device: str) -> None:
    """Atomically write the listening address as JSON."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"host": host, "port": port, "pid": os.getpid(), "device": device}))
    os.replace(tmp, path)


def serve(args: argparse.Namespace) -> int:
    """Check the address, load the models once, listen, and serve until SIGINT/SIGTERM."""
    problem = check_bind(args.host, args.allow_remote, args.token)
    if problem:
        print(f"realign serve: error: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from realign_core.device import configure_threads, pick_device

    from .app import Server, ServerConfig
    from .engine import Engine

    try:
        device = pick_device(args.device)
        threads = configure_threads(device, args.threads)
        engine = Engine.load(args.models, device, args.generator)
    except (ValueError, FileNotFoundError) as exc:
        print(f"realign serve: error: {exc}", file=sys.stderr)
        return 2
    config = ServerConfig(host=args.host, port=args.port, token=args.token, max_batch=max(1, args.max_batch),
                          batch_window_s=max(0.0, args.batch_window_ms) / 1000)
    server = Server(engine, config)
    try:
        host, port = server.bind()
    except OSError as exc:
        print(f"realign serve: error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: server.shutdown())
    print(f"realign server listening on {host}:{port} (device {device}, {threads} CPU threads, "
          f"model {engine.name})", flush=True)
    if args.port_file:
        write_port_file(args.port_file, host, port, device)
    server.serve_forever()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server", description="ReAlign local generation server "
                                     "(newline-delimited JSON over TCP; see docs/server.md)")
    add_arguments(parser)
    return serve(parser.parse_args(argv))
