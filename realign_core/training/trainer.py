"""The shared training loop: seeded, resumable, logged, plotted, best-by-validation.

Writes into ``out_dir``::

    last.pt       everything needed to resume (model, optimiser, epoch, step, RNG states, history)
    best.pt       {"task", "config", "model", "normalizer", "epoch", "metrics", "train_config"}; with
                  ``ema > 0`` the moving average of the weights, chosen by its validation (the raw
                  weights' metrics are logged beside it with a ``_raw`` suffix)
    log.jsonl     one line per logged step and per validation
    curves.png    training loss and validation metrics per epoch
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from realign_core.data.dataset import MotionTextDataset, collate
from realign_core.device import native_bf16, pick_device
from realign_core.models.checkpoint import load_weights_for_training
from realign_core.models.layout import BEST_FILE, LAST_FILE
from realign_core.training.config import TrainConfig
from realign_core.training.ema import averaged_copy, update_average
from realign_core.training.task import TrainingTask


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else as given (``realign_core.device``)."""
    return torch.device(pick_device(name))


def uses_bf16(amp: str, device: torch.device) -> bool:
    """Whether training steps run under bf16 autocast (``TrainConfig.amp`` on ``device``)."""
    return amp == "bf16" or (amp == "auto" and native_bf16(device))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def bucketed_batches(lengths: np.ndarray, batch_size: int, generator: torch.Generator, drop_last: bool,
                     pool_batches: int = 50) -> list[list[int]]:
    """Batches of similar lengths in a new random order: shuffle the indices, sort each pool of
    ``pool_batches`` batches by length, cut it into batches, shuffle the batches.  Every index
    appears once (or, with ``drop_last``, in full batches only)."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    pool = batch_size * pool_batches
    batches = []
    for lo in range(0, len(order), pool):
        chunk = sorted(order[lo:lo + pool], key=lambda i: int(lengths[i]))
        batches += [chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size)]
    if drop_last:
        batches = [b for b in batches if len(b) == batch_size]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


class Trainer:
    """Trains one task on a HumanML3D-layout dataset."""

    def __init__(self, task: TrainingTask, data_dir: str | Path, out_dir: str | Path, cfg: TrainConfig,
                 progress: bool = True):
        self.task, self.cfg, self.progress = task, cfg, progress
        self.data_dir, self.out_dir = Path(data_dir), Path(out_dir)
        self.device = resolve_device(cfg.device)
        self.bf16 = uses_bf16(cfg.amp, self.device)
        if cfg.torch_threads > 0:
            torch.set_num_threads(cfg.torch_threads)
        seed_everything(cfg.seed)
        sources = set(cfg.caption_sources) or None
        self.train_set = MotionTextDataset(self.data_dir, "train", cfg.min_frames, cfg.max_frames,
                                           caption_sources=sources, seed=cfg.seed)
        self.val_set = MotionTextDataset(self.data_dir, "val", cfg.min_frames, cfg.max_frames,
                                         normalizer=self.train_set.normalizer, caption_sources=sources,
                                         seed=cfg.seed + 1)
        self.model = task.build_model().to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.ema = averaged_copy(self.model) if cfg.ema > 0 else None
        self.epoch, self.step = 0, 0
        self.history: list[dict[str, float]] = []
        self.best: float | None = None
        self._steps_per_epoch: int | None = None   # for the cosine schedule; found on first use

    # ------------------------------------------------------------------ data
    def _loader(self, dataset: MotionTextDataset, shuffle: bool, epoch: int) -> DataLoader:
        gen = torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch)
        if shuffle and self.cfg.bucket_by_length:
            batches = bucketed_batches(dataset.lengths(), self.cfg.batch_size, gen,
                                       drop_last=len(dataset) > self.cfg.batch_size)
            return DataLoader(dataset, batch_sampler=batches, collate_fn=collate)
        return DataLoader(dataset, batch_size=self.cfg.batch_size, shuffle=shuffle, collate_fn=collate,
                          generator=gen, drop_last=shuffle and len(dataset) > self.cfg.batch_size)

    def val_loader(self) -> DataLoader:
        self.val_set.rng = np.random.default_rng(self.cfg.seed + 1)  # same crops/captions every time
        return self._loader(self.val_set, shuffle=False, epoch=0)

    # ---------------------------------------------------------- checkpoints
    def _state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "epoch": self.epoch, "step": self.step, "history": self.history, "best": self.best,
                "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(),
                "dataset_rng": self.train_set.rng.bit_generator.state, "train_config": asdict(self.cfg)}

    def resume(self) -> bool:
        """Load ``last.pt`` if present, else continue from the weights of ``best.pt`` (e.g. a
        committed fp16 checkpoint) with a fresh optimiser. Returns whether training resumes."""
        path = self.out_dir / LAST_FILE
        if not path.is_file():
            return self._resume_from_best()
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._restore_ema(state.get("ema"))
        self.epoch, self.step = state["epoch"], state["step"]
        self.history, self.best = state["history"], state["best"]
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        self.train_set.rng.bit_generator.state = state["dataset_rng"]
        return True

    def _resume_from_best(self) -> bool:
        path = self.out_dir / BEST_FILE
        if not path.is_file():
            return False
        best = torch.load(path, map_location=self.device, weights_only=False)
        if best.get("task") != self.task.name:
            raise ValueError(f"{path}: holds a {best.get('task')!r} model, not {self.task.name!r}")
        fresh = load_weights_for_training(self.model, best, path)
        if fresh:
            print(f"{path}: shipped without {', '.join(fresh)} (training only); starting them afresh")
        self.history = list(best.get("history", []))
        self.epoch = int(best.get("epoch", len(self.history)))
        self.history = [h for h in self.history if h["epoch"] <= self.epoch]
        self.step = int(self.history[-1]["step"]) if self.history else 0
        self.best = best["metrics"][self.task.selection_metric]
        self._restore_ema(None)
        return True

    def _restore_ema(self, state: dict[str, Any] | None) -> None:
        """The moving average from a last.pt, or (a run that had none) the weights just loaded."""
        if self.ema is not None:
            self.ema.load_state_dict(state if state is not None else self.model.state_dict())

    def _update_ema(self) -> None:
        """ema <- decay * ema + (1 - decay) * weights, decay warmed up as min(ema, (1 + step) / (10 + step))."""
        update_average(self.ema, self.model, min(self.cfg.ema, (1 + self.step) / (10 + self.step)))

    def selected_model(self) -> torch.nn.Module:
        """The weights validation chooses among and best.pt holds: the moving average when kept."""
        return self.ema if self.ema is not None else self.model

    def _validate(self) -> dict[str, float]:
        """The selected weights' validation metrics, plus the raw weights' with a ``_raw`` suffix (EMA runs)."""
        self.model.eval()
        metrics = self.task.validate(self.selected_model(), self.val_loader())
        if self.ema is not None:
            metrics.update({f"{k}_raw": v for k, v in self.task.validate(self.model, self.val_loader()).items()})
        return metrics

    def _save(self, metrics: dict[str, float]) -> bool:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        value = metrics[self.task.selection_metric]
        better = self.best is None or (value > self.best if self.task.selection_mode == "max" else value < self.best)
        if better:
            self.best = value
            norm = self.train_set.normalizer
            torch.save({"task": self.task.name, "config": self.task.config_dict(),
                        "model": self.selected_model().state_dict(),
                        "normalizer": {"mean": norm.mean, "std": norm.std}, "epoch": self.epoch,
                        "metrics": metrics, "train_config": asdict(self.cfg), "history": self.history},
                       self.out_dir / BEST_FILE)
        torch.save(self._state(), self.out_dir / f"{LAST_FILE}.tmp")
        (self.out_dir / f"{LAST_FILE}.tmp").replace(self.out_dir / LAST_FILE)
        return better

    def _log(self, record: dict[str, Any]) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    # ----------------------------------------------------------------- loop
    def learning_rate(self) -> float:
        """This step's learning rate: linear warm-up, then constant or cosine down to ``min_lr`` at the
        last step of ``cfg.epochs`` (so a resumed run continues the same curve)."""
        warm = min(1.0, (self.step + 1) / self.cfg.warmup_steps) if self.cfg.warmup_steps else 1.0
        if self.cfg.lr_schedule == "constant":
            return self.cfg.lr * warm
        if self._steps_per_epoch is None:
            self._steps_per_epoch = len(self.train_loader())
        total = max(1, self.cfg.epochs * self._steps_per_epoch)
        progress = min(1.0, self.step / total)
        return warm * (self.cfg.min_lr + (self.cfg.lr - self.cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * progress)))

    def train_step(self, batch: dict[str, Any]) -> tuple[float, dict[str, float]]:
        """One optimiser step on a collated batch; returns (loss, named parts)."""
        lr = self.learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss, parts = self.task.training_loss(self.model, to_device(batch, self.device), self.step)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{self.task.name}: non-finite loss at step {self.step}: {parts}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self._update_ema()
        self.step += 1
        return loss.item(), parts

    def train_loader(self) -> DataLoader:
        """This epoch's shuffled (or length-bucketed) training batches."""
        return self._loader(self.train_set, shuffle=True, epoch=self.epoch)

    def _train_epoch(self) -> float:
        self.model.train()
        loader = self.train_loader()
        losses = []
        bar = tqdm(loader, desc=f"{self.task.name} epoch {self.epoch + 1}/{self.cfg.epochs}",
                   disable=not self.progress, leave=False)
        for batch in bar:
            loss, parts = self.train_step(batch)
            losses.append(loss)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if self.step % self.cfg.log_every == 0:
                self._log({"step": self.step, "epoch": self.epoch, "loss": losses[-1], **parts})
        return float(np.mean(losses)) if losses else math.nan

    def fit(self) -> dict[str, Any]:
        """Train until cfg.epochs (or the time budget); returns a summary dict."""
        resumed = self.resume()
        start = time.time()
        while self.epoch < self.cfg.epochs:
            epoch_start, cpu_start = time.time(), time.process_time()
            train_loss = self._train_epoch()
            metrics = self._validate()
            self.epoch += 1
            record = {"epoch": self.epoch, "step": self.step, "train_loss": train_loss,
                      "epoch_seconds": round(time.time() - epoch_start, 2),
                      "epoch_cpu_seconds": round(time.process_time() - cpu_start, 2), **metrics}
            self.history.append(record)
            improved = self._save(metrics)
            self._log({"validation": True, "improved": improved, **record})
            self.plot()
            if self.progress:
                shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
                print(f"[{self.task.name}] epoch {self.epoch}: train_loss={train_loss:.4f} {shown}"
                      f"{' *best*' if improved else ''}", flush=True)
            if self.cfg.max_minutes and (time.time() - start) / 60 > self.cfg.max_minutes:
                break
        return {"resumed": resumed, "epochs_done": self.epoch, "steps": self.step, "best": self.best,
                "finished": self.epoch >= self.cfg.epochs, "history": self.history}

    def plot(self) -> None:
        """Training loss and validation metrics per epoch -> curves.png."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if not self.history:
            return
        keys = [k for k in self.history[-1]
                if k not in ("epoch", "step", "train_loss", "epoch_seconds", "epoch_cpu_seconds")]
        epochs = [h["epoch"] for h in self.history]
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), dpi=90)
        axes[0].plot(epochs, [h["train_loss"] for h in self.history], marker=".")
        axes[0].set(title=f"{self.task.name}: training loss", xlabel="epoch")
        for k in keys:
            axes[1].plot(epochs, [h.get(k, math.nan) for h in self.history], marker=".", label=k)
        axes[1].set(title="validation", xlabel="epoch")
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(self.out_dir / "curves.png")
        plt.close(fig)
