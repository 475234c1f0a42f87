"""Process figures for ``status``: resident memory, thread counts, open files, GPU memory."""
from __future__ import annotations

import os
import sys
import threading
from typing import Any


def _proc_status(key: str) -> int | None:
    """An integer field of /proc/self/status (Linux), e.g. VmRSS (kB) or Threads; None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_bytes() -> int | None:
    """Current resident set size; on systems without /proc the peak (ru_maxrss) instead."""
    kb = _proc_status("VmRSS")
    if kb is not None:
        return kb * 1024
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def thread_counts() -> dict[str, int | None]:
    """Python threads (``threading``) and OS threads of the process (torch's pools included)."""
    return {"python": threading.active_count(), "native": _proc_status("Threads")}


def open_fds() -> int | None:
    """Open file descriptors of the process (Linux /proc; None elsewhere)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


_LIBC: Any = None


def trim_heap() -> bool:
    """Give freed heap memory back to the OS (glibc ``malloc_trim(0)``) -> whether it could.

    Tensors of many sizes (prompts of many lengths) leave freed but retained blocks in glibc's heap,
    which shows as RSS growth with every new prompt length; trimming after each batch keeps RSS level.
    A no-op (False) where glibc is not the allocator.
    """
    global _LIBC
    if _LIBC is None:
        _LIBC = False
        if sys.platform.startswith("linux"):
            import ctypes
            import ctypes.util

            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _LIBC = libc if hasattr(libc, "malloc_trim") else False
            except OSError:
                pass
    if not _LIBC:
        return False
    _LIBC.malloc_trim(0)
    return True


def cuda_memory(device: str) -> dict[str, int]:
    """Allocated / reserved / peak bytes on a CUDA device; empty on the CPU."""
    if not device.startswith("cuda"):
        return {}
    import torch

    return {"cuda_allocated_bytes": int(torch.cuda.memory_allocated(device)),
            "cuda_reserved_bytes": int(torch.cuda.memory_reserved(device)),
            "cuda_peak_allocated_bytes": int(torch.cuda.max_memory_allocated(device))}


def memory(device: str) -> dict[str, Any]:
    """The ``memory`` object of ``status``."""
    return {"rss_bytes": rss_bytes(), **cuda_memory(device)}
