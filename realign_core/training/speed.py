"""Training throughput: optimiser steps and samples per second of one model kind, before and after
the training-speed levers (``realign bench --train denoiser``).

Each variant builds the real task and ``Trainer`` from a config file (with some [kind.train] fields
replaced), then times ``steps`` real optimiser steps on real batches after ``warmup`` steps.  Wall
time is the machine's; CPU time is the process's (all threads), so "per CPU-hour" counts both
cores when two threads run.  Building the latent cache is a one-off cost per VAE checkpoint and
is reported separately (``setup_s``), not inside the step time.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from realign_core.device import cpu_model, native_bf16
from realign_core.training.config import TrainConfig, load_config
from realign_core.training.registry import make_task
from realign_core.training.trainer import Trainer


@dataclass(frozen=True)
class SpeedVariant:
    """One way of training: the [kind.train] fields that the levers change."""

    name: str
    torch_threads: int = 1
    cache_latents: bool = False
    bucket_by_length: bool = False
    batch_size: int = 64
    amp: str = "off"

    def apply(self, cfg: TrainConfig) -> TrainConfig:
        return replace(cfg, torch_threads=self.torch_threads, cache_latents=self.cache_latents,
                       bucket_by_length=self.bucket_by_length, batch_size=self.batch_size, amp=self.amp)


BEFORE = SpeedVariant("before: VAE encoder every step, random batches, 1 thread")
VARIANTS = (
    BEFORE,
    SpeedVariant("cached VAE posteriors", cache_latents=True),
    SpeedVariant("+ length buckets", cache_latents=True, bucket_by_length=True),
    SpeedVariant("+ bf16 autocast", cache_latents=True, bucket_by_length=True, amp="bf16"),
    SpeedVariant("+ 2 threads", torch_threads=2, cache_latents=True, bucket_by_length=True, amp="bf16"),
    SpeedVariant("+ batch 128", torch_threads=2, cache_latents=True, bucket_by_length=True, batch_size=128,
                 amp="bf16"),
    SpeedVariant("2 threads, float32 (for comparison)", torch_threads=2, cache_latents=True, bucket_by_length=True),
)


def measure(kind: str, config: str | Path, data: str | Path, models: str | Path, variant: SpeedVariant,
            steps: int = 10, warmup: int = 2) -> dict[str, Any]:
    """Time ``steps`` optimiser steps of ``kind`` trained as ``variant`` -> one result row."""
    section, cfg = load_config(config, kind)
    cfg = replace(variant.apply(cfg), device="cpu" if not torch.cuda.is_available() else cfg.device)
    previous = torch.get_num_threads()
    torch.set_num_threads(cfg.torch_threads)
    try:
        start = time.perf_counter()
        task = make_task(kind, section, Path(data), Path(models), f"{config} [{kind}.model]", cfg)
        with tempfile.TemporaryDirectory() as out:
            trainer = Trainer(task, data, out, cfg, progress=False)
            setup_s = time.perf_counter() - start
            batches = _endless(trainer)
            for _ in range(warmup):
                trainer.train_step(next(batches))
            samples, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
            for _ in range(steps):
                batch = next(batches)
                samples += len(batch["ids"])
                trainer.train_step(batch)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        torch.set_num_threads(previous)
    return {"variant": variant.name, "parameters": sum(p.numel() for p in trainer.model.parameters()),
            "threads": cfg.torch_threads, "batch": cfg.batch_size, "amp": cfg.amp,
            "native_bf16": native_bf16(trainer.device), "steps": steps,
            "samples": samples, "setup_s": round(setup_s, 1), "step_s": wall / steps, "step_cpu_s": cpu / steps,
            "samples_per_s": samples / wall, "samples_per_cpu_s": samples / cpu}


def machine_facts() -> dict[str, Any]:
    """What the rows were measured on: CPU model, logical cores, native bf16, torch version."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "native_bf16": native_bf16("cpu"), "torch": torch.__version__}


def _endless(trainer: Trainer):
    """Training batches across as many epochs as it takes."""
    while True:
        yield from trainer.train_loader()


def with_speedups(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``speedup`` (samples per wall second) and ``speedup_cpu`` against the first row."""
    base = rows[0]
    return [{**r, "speedup": r["samples_per_s"] / base["samples_per_s"],
             "speedup_cpu": r["samples_per_cpu_s"] / base["samples_per_cpu_s"]} for r in rows]


def format_rows(rows: list[dict[str, Any]]) -> str:
    """Markdown table of ``with_speedups`` rows."""
    lines = ["| variant | threads | batch | precision | s/step (wall) | samples/s (wall) | samples/CPU-s | speed-up wall | "
             "speed-up per CPU-s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['threads']} | {r['batch']} | {_precision(r)} | {r['step_s']:.2f} | "
                     f"{r['samples_per_s']:.1f} | {r['samples_per_cpu_s']:.1f} | {r['speedup']:.2f}x | "
                     f"{r['speedup_cpu']:.2f}x |")
    return "\n".join(lines)


def _precision(row: dict[str, Any]) -> str:
    """'float32', or 'bf16' with whether the machine multiplies bf16 in hardware (rows before this field: float32)."""
    if row.get("amp", "off") == "off":
        return "float32"
    return "bf16 (native)" if row.get("native_bf16") else "bf16 (emulated)"
