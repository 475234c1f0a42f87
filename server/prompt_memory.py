"""Server memory against the number of never-seen prompts: do the per-prompt caches stay bounded?

    python -m server.prompt_memory --models models/default --prompts 2560 [--every 320] [SERVER OPTIONS...]

Starts a server (``--device cpu`` unless given among the server options), sends requests of 32 fresh
prompts each (20 frames, 1 step, the model's default guidance, so the reward model's token cache
fills too) and prints, every ``--every`` prompts, the RSS growth since a one-prompt warm-up and the
text-encoder caches' entries and bytes (``status.text_cache``).  Extra options go to the server,
e.g. ``--text-cache-entries 0`` (no cache) to see the working set alone.
"""
from __future__ import annotations

import argparse
import sys
import time

from .launch import start_server

MIB = 2 ** 20
BATCH = 32


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.prompt_memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="models/default")
    parser.add_argument("--prompts", type=int, default=2560, help="fresh prompts to send (default 2560)")
    parser.add_argument("--every", type=int, default=320, help="print a row every this many prompts (default 320)")
    args, server_args = parser.parse_known_args(argv)
    if args.prompts < BATCH or args.every < BATCH:
        parser.error(f"--prompts and --every must be >= {BATCH}")
    if "--device" not in server_args:
        server_args = ["--device", "cpu", *server_args]
    server = start_server(args.models, *server_args, "--log-level", "WARNING")
    try:
        with server.client(timeout=600) as client:
            client.generate("a person waves.", frames=20, steps=1, seed=0)
            base = client.status()["memory"]["rss_bytes"]
            print(f"server {args.models} {' '.join(server_args)}: RSS after warm-up {base / MIB:.1f} MiB")
            print("prompts  RSS growth  text cache entries  text cache MiB  seconds")
            t0, sent, next_row = time.monotonic(), 0, args.every
            while sent < args.prompts:
                prompts = [f"a person does move number {sent + i} of the churn." for i in range(BATCH)]
                client.generate(prompts=prompts, frames=20, steps=1, seed=sent)
                sent += BATCH
                if sent >= next_row:
                    next_row += args.every
                    status = client.status()
                    cache = status["text_cache"]
                    growth = (status["memory"]["rss_bytes"] - base) / MIB
                    print(f"{sent:7d}  {growth:+8.1f} MiB  {cache['entries']:18d}  {cache['bytes'] / MIB:14.1f}  "
                          f"{time.monotonic() - t0:7.0f}", flush=True)
    finally:
        code = server.stop()
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
