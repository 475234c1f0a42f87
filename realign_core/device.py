"""The one place that picks the compute device and the torch thread count.

``pick_device("auto")`` is CUDA when torch sees a usable GPU, else the CPU; an explicit
``"cuda[:N]"`` must exist.  ``configure_threads`` sets torch's intra-op threads: on the
CPU all cores but one (the other serves I/O, e.g. the server's sockets), on a GPU a few.
"""
from __future__ import annotations

import os

import torch


def pick_device(requested: str | torch.device | None = "auto") -> str:
    """'auto' (or None) -> 'cuda' when available, else 'cpu'; anything else as given, checked."""
    requested = "auto" if requested is None else str(requested)
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r}: CUDA is not available on this machine")
    return requested


def configure_threads(device: str, threads: int | None = None) -> int:
    """Set torch's intra-op threads (None: all cores but one on the CPU, up to 4 on a GPU); returns the count."""
    cores = os.cpu_count() or 2
    if threads is None:
        threads = max(1, cores - 1) if device == "cpu" else min(4, cores)
    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()
