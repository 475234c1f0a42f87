"""The one place that picks the compute device and the torch thread count.

``pick_device("auto")`` is CUDA when torch sees a usable GPU, else the CPU; an explicit
``"cuda[:N]"`` must exist.  ``configure_threads`` sets torch's intra-op threads: on the
CPU all cores but one (the other serves I/O, e.g. the server's sockets), on a GPU a few.
``native_bf16`` says whether bfloat16 matrix products run in hardware (so bf16 autocast pays):
CUDA GPUs that support bf16, CPUs with AVX-512 BF16 or AMX (on other CPUs oneDNN emulates bf16
and a training step gets several times *slower*).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


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


def _cpuinfo_values(key: str, cpuinfo: str | Path = "/proc/cpuinfo") -> list[str]:
    """The values of ``key`` lines in the kernel's CPU info (empty where the file does not exist, e.g. macOS)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [line.split(":", 1)[1].strip() for line in text.splitlines()
            if line.split(":", 1)[0].strip() == key and ":" in line]


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags the kernel reports (empty where ``cpuinfo`` does not exist)."""
    return {flag for value in _cpuinfo_values("flags", cpuinfo) for flag in value.split()}


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's model name ("AMD EPYC ..."), else what ``platform`` knows."""
    import platform

    names = _cpuinfo_values("model name", cpuinfo)
    return names[0] if names else platform.processor() or platform.machine()


def native_bf16(device: str | torch.device) -> bool:
    """True when bfloat16 matrix products on ``device`` run in hardware (see the module docstring)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return any(flag in cpu_flags() for flag in BF16_CPU_FLAGS)
    return False
