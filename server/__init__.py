"""The ReAlign local generation server: newline-delimited JSON over TCP (protocol v1).

Modules, one concept each:

* :mod:`server.protocol` -- limits, request validation, error codes, event encoding;
* :mod:`server.jobs` -- generation jobs and the fair (round-robin) queue that batches them;
* :mod:`server.engine` -- the loaded models and the one adapter that calls the pipeline;
* :mod:`server.results` -- joints encoding, foot contacts and root motion of a result;
* :mod:`server.worker` -- the thread that runs batches and streams progress/results;
* :mod:`server.connection` -- line framing, line budgets and output buffering of one client;
* :mod:`server.admission` -- connection slots: keepalive, idle eviction, ``busy`` refusals;
* :mod:`server.app` -- the ``selectors`` socket loop and request dispatch;
* :mod:`server.cli` -- ``python -m server`` / ``realign serve`` and the bind checks;
* :mod:`server.client` -- the stdlib-only client (vendored by the Blender add-on);
* :mod:`server.launch` / :mod:`server.bench` -- start a server subprocess; ``realign bench --server``;
* :mod:`server.soak` / :mod:`server.soak_actors` -- ``realign bench --server --soak``: mixed load with bad actors;
* :mod:`server.prompt_memory` -- RSS and text caches against never-seen prompts;
* :mod:`server.sysinfo` -- memory, threads and open files for ``status``; heap trimming.

See ``docs/server.md`` for the protocol.
"""
from __future__ import annotations

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
