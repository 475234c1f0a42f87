"""``python -m server``: run the generation server (see ``server.app``)."""
from __future__ import annotations

from .cli import main

raise SystemExit(main())
