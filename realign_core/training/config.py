"""Training configuration: one TOML file per size (``configs/tiny.toml``, ``configs/default.toml``).

Each model kind has two tables::

    [vae.model]     # hyper-parameters of the model (the task's config dataclass)
    [vae.train]     # TrainConfig fields

Unknown keys are errors that name the file, table and key.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

LR_SCHEDULES = ("constant", "cosine")
AMP_MODES = ("off", "bf16", "auto")


@dataclass(frozen=True)
class TrainConfig:
    """How one model is trained (shared by all kinds)."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"   # "constant" or "cosine" (to min_lr at the last step of `epochs`)
    min_lr: float = 0.0             # cosine's floor
    grad_clip: float = 1.0
    seed: int = 0
    min_frames: int = 40
    max_frames: int = 196
    device: str = "auto"            # "auto" = CUDA when available, else CPU
    torch_threads: int = 0          # 0 = torch's default
    max_minutes: float = 0.0        # > 0: stop after the epoch that passes this budget (resume later)
    log_every: int = 20             # steps
    caption_sources: tuple[str, ...] = ()  # empty = all sources
    bucket_by_length: bool = False  # batches of similar lengths (less padding); still a new order every epoch
    cache_latents: bool = False     # denoiser: VAE posteriors encoded once per VAE checkpoint, not every step
    ema: float = 0.0                # > 0: moving average of the weights (decay per step, warmed up); validated
                                    # beside the raw weights and chosen by its validation; best.pt holds it
    amp: str = "off"                # training steps under bf16 autocast: "bf16", "off", or "auto" = bf16 where
                                    # the device multiplies bf16 in hardware (device.native_bf16); validation
                                    # always runs in float32

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule = {self.lr_schedule!r}; allowed: {list(LR_SCHEDULES)}")
        if not 0.0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr = {self.min_lr} must lie in [0, lr = {self.lr}]")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp = {self.amp!r}; allowed: {list(AMP_MODES)}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema = {self.ema} must lie in [0, 1) (0 = no moving average)")


def _check_keys(cls, section: dict, where: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(known)}")


def build_dataclass(cls, section: dict, where: str):
    """cls(**section) with a clear error for unknown keys; lists become tuples."""
    _check_keys(cls, section, where)
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in section.items()})
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def load_config(path: str | Path, kind: str) -> tuple[dict[str, Any], TrainConfig]:
    """(model table as a dict, TrainConfig) for one kind from a TOML file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: invalid TOML ({exc})") from exc
    if kind not in data:
        raise ValueError(f"{path}: no [{kind}.*] tables (has: {sorted(data)})")
    section = data[kind]
    unknown = sorted(set(section) - {"model", "train"})
    if unknown:
        raise ValueError(f"{path}: [{kind}] may only contain 'model' and 'train' tables, got {unknown}")
    train = build_dataclass(TrainConfig, section.get("train", {}), f"{path} [{kind}.train]")
    return dict(section.get("model", {})), train
