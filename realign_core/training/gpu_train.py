"""Dataset-free denoiser training on a GPU pack (``realign gpu train``): what runs on a lent GPU.

Reads only the pack (``gpu_pack``) and, to continue it, a denoiser checkpoint; imports neither the
dataset code nor the text encoder, so it runs where only torch and numpy are installed.  Per step:
B windows drawn from a shuffled order of the training windows (all on the device, no host copy or
sync), one of each window's captions at random, z0 = (mu + sigma * eps) * latent_scale, then the
loss of ``DenoiserObjective`` (the one ``DenoiserTask`` uses) under bf16 autocast on CUDA.
AdamW with linear warm-up and a cosine decay over the time budget (or ``steps``); an exponential
moving average (EMA) of the weights is kept beside them.

Every ``val_every`` steps both the raw and the EMA weights are validated on the pack's validation
windows exactly as ``DenoiserTask.validate`` does (same windows, captions, batches and seeded
noise; float32), and whichever is lowest so far is written.  OUT receives (fp16 weights, in the
format of ``Trainer``'s exported ``best.pt``)::

    best.pt          lowest validation loss seen (the starting weights count too)
    final.pt         the EMA (or raw) weights at the end
    snap_K.pt        EMA weights at K/(snapshots+1) of the budget
    log.jsonl        one line per validation; summary.json: throughput, device, best, pack facts
    curves.png       training and validation loss against training seconds
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from realign_core.models.latent_denoiser import DenoiserConfig, LatentDenoiser, load_denoiser
from realign_core.training.config import build_dataclass
from realign_core.training.denoiser_objective import VALIDATION_SEED, DenoiserObjective, DiffusionConfig
from realign_core.training.ema import averaged_copy, update_average
from realign_core.training.gpu_pack import GpuPack

MAX_OUT_FILES = 8          # what a device call brings back
OUR_FILES = 5              # best, final, log.jsonl, summary.json, curves.png (+ snapshots)


@dataclass(frozen=True)
class GpuTrainConfig:
    """How ``realign gpu train`` trains (its command-line options)."""

    minutes: float = 8.0          # training budget (the process needs ~0.5 min more to start and save)
    steps: int = 0                # > 0: also stop after this many steps; the cosine then follows steps
    batch_size: int = 512
    lr: float = 2e-4
    min_lr: float = 1e-5
    warmup_steps: int = 500
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema: float = 0.999            # EMA decay per step; 0 = no EMA
    val_every: int = 1000         # steps
    snapshots: int = 1
    seed: int = 0
    device: str = "auto"          # auto = cuda when available
    amp: str = "auto"             # auto = bf16 autocast on CUDA, off on the CPU; "bf16" or "off"
    max_file_mib: float = 16.0    # largest file a device call brings back

    def check(self) -> None:
        bad = []
        if self.minutes <= 0 and self.steps <= 0:
            bad.append("give minutes > 0 or steps > 0")
        if self.batch_size < 1 or self.val_every < 1 or self.warmup_steps < 0:
            bad.append(f"batch_size {self.batch_size}, val_every {self.val_every}, warmup_steps {self.warmup_steps}")
        if not 0 <= self.ema < 1:
            bad.append(f"ema {self.ema} must be in [0, 1)")
        if not 0 <= self.snapshots <= MAX_OUT_FILES - OUR_FILES - 1:
            bad.append(f"snapshots {self.snapshots}: at most {MAX_OUT_FILES - OUR_FILES - 1} (a device call "
                       f"brings back {MAX_OUT_FILES} files, one is kept for the console log)")
        if self.amp not in ("auto", "bf16", "off"):
            bad.append(f"amp {self.amp!r} (auto, bf16 or off)")
        if bad:
            raise ValueError("gpu train: " + "; ".join(bad))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: CUDA is not available here")
    return device


def fp16_state(model: nn.Module) -> dict[str, Tensor]:
    """The model's weights as the exported checkpoints store them: floating point in fp16, on the CPU."""
    return {k: (v.detach().half() if v.is_floating_point() else v.detach()).cpu() for k, v in model.state_dict().items()}


def fp16_bytes(model: nn.Module) -> int:
    return sum(p.numel() * (2 if p.is_floating_point() else p.element_size()) for p in model.state_dict().values())


class PackValidator:
    """``DenoiserTask.validate`` on the pack's validation windows: same batches, captions and seeded noise."""

    def __init__(self, pack: GpuPack, objective: DenoiserObjective, device: torch.device):
        mu, logvar, tokens = pack.val.padded(pack.logvar_lo, pack.logvar_step)
        counts = pack.val.token_counts
        text = pack.sentences.float()[pack.val.caption_ids[pack.val.caption_offsets[:-1]]]
        gen = torch.Generator().manual_seed(VALIDATION_SEED)
        self.batches = []
        size = pack.val_batch_size
        for lo in range(0, len(pack.val), size):
            sl = slice(lo, min(lo + size, len(pack.val)))
            length = int(counts[sl].max())
            z0 = objective.latents(mu[sl, :length], logvar[sl, :length], tokens[sl, :length], sample=False)
            t, noise = objective.validation_draws(tuple(z0.shape), gen)
            self.batches.append(tuple(v.to(device) for v in (z0, tokens[sl, :length], text[sl], t, noise)))
        self.objective, self.size = objective, len(pack.val)

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> float:
        was_training = model.training
        model.eval()
        total = 0.0
        for z0, tokens, text, t, noise in self.batches:
            use_cond = torch.ones(z0.shape[0], dtype=torch.bool, device=z0.device)
            total += float(self.objective.loss(model, z0, tokens, text, t, noise, use_cond)) * z0.shape[0]
        model.train(was_training)
        return total / self.size


class PackBatches:
    """Training windows on the device; ``next()`` draws a batch without touching the host."""

    def __init__(self, pack: GpuPack, batch_size: int, device: torch.device, seed: int):
        self.mu, self.logvar, self.tokens = pack.train.padded(pack.logvar_lo, pack.logvar_step, device)
        self.counts = pack.train.token_counts.to(device)
        self.cap_ids = pack.train.caption_ids.to(device)
        self.cap_start = pack.train.caption_offsets[:-1].to(device)
        self.cap_count = (pack.train.caption_offsets[1:] - pack.train.caption_offsets[:-1]).to(device)
        self.text = pack.sentences.float().to(device)
        self.n = len(pack.train)
        self.batch_size = min(batch_size, self.n)
        self.per_epoch = self.n // self.batch_size
        self.trim = device.type == "cpu"      # on a CPU, cut padding to the batch's longest window
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.order, self.cursor = None, self.per_epoch

    def next(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(mu, logvar) (B, L, D), tokens (B, L), text (B, 384) of the next batch."""
        if self.cursor == self.per_epoch:
            self.order = torch.randperm(self.n, device=self.mu.device, generator=self.gen)
            self.cursor = 0
        idx = self.order[self.cursor * self.batch_size:(self.cursor + 1) * self.batch_size]
        self.cursor += 1
        pick = (torch.rand(idx.shape[0], device=idx.device, generator=self.gen) * self.cap_count[idx]).long()
        text = self.text[self.cap_ids[self.cap_start[idx] + pick]]
        length = int(self.counts[idx].max()) if self.trim else self.mu.shape[1]
        return self.mu[idx, :length], self.logvar[idx, :length], self.tokens[idx, :length], text


def model_from_checkpoint(path: str | Path, pack: GpuPack) -> tuple[LatentDenoiser, dict[str, Any], dict[str, Any]]:
    """(model float32, its config dict, the checkpoint) to continue; checks it fits the pack."""
    model, ckpt = load_denoiser(path)
    config = dict(ckpt["config"])
    if int(config["latent_dim"]) != int(pack.meta["latent_dim"]):
        raise ValueError(f"{path}: latent_dim {config['latent_dim']} but the pack's is {pack.meta['latent_dim']}")
    if not math.isclose(float(config["latent_scale"]), pack.latent_scale, rel_tol=1e-6):
        raise ValueError(f"{path}: latent_scale {config['latent_scale']} differs from the pack's "
                         f"{pack.latent_scale}: the pack was built for another VAE or denoiser")
    return model.train(), config, ckpt


def model_from_section(section: dict[str, Any], pack: GpuPack, where: str, seed: int) -> tuple[LatentDenoiser, dict]:
    """A fresh model from a ``[denoiser.model]`` table (diffusion fields included); latent shape from the pack."""
    section = dict(section)
    diff = {k: section.pop(k) for k in list(section) if k in DiffusionConfig.__dataclass_fields__}
    diffusion = build_dataclass(DiffusionConfig, diff, where)
    section.setdefault("latent_tokens", int(pack.meta.get("latent_tokens", 0)))
    section.setdefault("latent_dim", int(pack.meta["latent_dim"]))
    cfg = build_dataclass(DenoiserConfig, section, where)
    if cfg.latent_dim != int(pack.meta["latent_dim"]):
        raise ValueError(f"{where}: latent_dim {cfg.latent_dim} but the pack's VAE has {pack.meta['latent_dim']}")
    scale = diffusion.latent_scale or pack.latent_scale
    torch.manual_seed(seed)
    return LatentDenoiser(cfg).train(), {**cfg.to_dict(), **asdict(diffusion), "latent_scale": scale}


class PackTrainer:
    """Trains ``model`` on ``pack`` for a time budget; writes checkpoints and logs into ``out``."""

    def __init__(self, pack: GpuPack, model: LatentDenoiser, config: dict[str, Any], cfg: GpuTrainConfig,
                 out: str | Path, start: dict[str, Any] | None = None, log=print):
        cfg.check()
        self.pack, self.cfg, self.config, self.out, self.log = pack, cfg, config, Path(out), log
        self.device = resolve_device(cfg.device)
        size = fp16_bytes(model)
        if size > cfg.max_file_mib * 2 ** 20 * 0.98:
            raise ValueError(f"gpu train: the model's fp16 checkpoint would be {size / 2 ** 20:.1f} MiB, over the "
                             f"{cfg.max_file_mib:g} MiB a device call brings back per file; choose a smaller model")
        torch.manual_seed(cfg.seed)
        self.model = model.to(self.device).train()
        diffusion = DiffusionConfig(**{k: config[k] for k in DiffusionConfig.__dataclass_fields__ if k in config})
        self.objective = DenoiserObjective(diffusion, float(config["latent_scale"]))
        self.validator = PackValidator(pack, self.objective, self.device)
        self.data = PackBatches(pack, cfg.batch_size, self.device, cfg.seed)
        fused = {"fused": True} if self.device.type == "cuda" else {}
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
        self.ema = averaged_copy(self.model) if cfg.ema > 0 else None
        self.bf16 = cfg.amp == "bf16" or (cfg.amp == "auto" and self.device.type == "cuda")
        start = start or {}
        self.start_history = [h for h in start.get("history", []) if h.get("epoch", 0) <= start.get("epoch", 0)]
        self.start_epoch = int(start.get("epoch", 0))
        self.start_step = int(self.start_history[-1]["step"]) if self.start_history else 0
        self.step, self.history, self.best = 0, [], (math.inf, "")
        self.seconds = 0.0

    # ------------------------------------------------------------------ step
    def learning_rate(self, progress: float) -> float:
        warm = min(1.0, (self.step + 1) / self.cfg.warmup_steps) if self.cfg.warmup_steps else 1.0
        cos = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return warm * (self.cfg.min_lr + (self.cfg.lr - self.cfg.min_lr) * cos)

    def train_step(self, lr: float) -> Tensor:
        """One optimiser step; returns the loss as a device tensor (no sync)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        mu, logvar, tokens, text = self.data.next()
        with torch.no_grad():
            z0 = self.objective.latents(mu, logvar, tokens, sample=True)
        t, use_cond, noise = self.objective.training_draws(z0)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.objective.loss(self.model, z0, tokens, text, t, noise, use_cond, weighted=True)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip, foreach=True)
        self.optimizer.step()
        if self.ema is not None:
            update_average(self.ema, self.model, self.cfg.ema)
        self.step += 1
        return loss.detach()

    # ------------------------------------------------------------- outputs
    def _epochs(self) -> float:
        return self.step * self.data.batch_size / self.data.n

    def _payload(self, model: nn.Module, val_loss: float, weights: str) -> dict[str, Any]:
        return {"task": "denoiser", "config": self.config, "model": fp16_state(model),
                "normalizer": {"mean": self.pack.mean.numpy(), "std": self.pack.std.numpy()},
                "epoch": self.start_epoch + int(self._epochs()), "metrics": {"val_loss": val_loss},
                "train_config": {"gpu_pack": dict(self.pack.meta), **asdict(self.cfg)},
                "history": self.start_history + self.history, "vae_sha256": self.pack.meta.get("vae_sha256"),
                "gpu_run": {"weights": weights, "step": self.step, "seconds": round(self.seconds, 1),
                            "epochs": round(self._epochs(), 2), "device": device_name(self.device)}}

    def save(self, name: str, model: nn.Module, val_loss: float, weights: str) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / name
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self._payload(model, val_loss, weights), tmp)
        tmp.replace(path)
        return path

    def validate(self, train_loss: float, since: float) -> dict[str, Any]:
        """Validate raw and EMA weights, keep the best, log one line."""
        raw = self.validator(self.model)
        ema = self.validator(self.ema) if self.ema is not None else math.nan
        weights, value, model = ("raw", raw, self.model)
        if self.ema is not None and ema < raw:
            weights, value, model = ("ema", ema, self.ema)
        if self.step == 0:
            weights = "initial"
        improved = value < self.best[0]
        if improved:
            self.best = (value, weights)
            self.save("best.pt", model, value, weights)
        record = {"epoch": self.start_epoch + int(self._epochs()), "step": self.start_step + self.step,
                  "train_loss": train_loss, "epoch_seconds": round(self.seconds - since, 2), "val_loss": raw,
                  "val_loss_ema": ema, "gpu": True, "gpu_step": self.step, "samples": self.step * self.data.batch_size,
                  "seconds": round(self.seconds, 2), "lr": self.optimizer.param_groups[0]["lr"],
                  "improved": improved, "best": self.best[0], "best_weights": self.best[1]}
        self.history.append(record)
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        self.log(f"step {self.step} ({self._epochs():.1f} epochs, {self.seconds:.0f} s): train {train_loss:.4f} "
                 f"val raw {raw:.4f} ema {ema:.4f}{' *best*' if improved else ''}")
        return record

    # ----------------------------------------------------------------- loop
    def fit(self) -> dict[str, Any]:
        cfg, budget = self.cfg, self.cfg.minutes * 60 if self.cfg.minutes > 0 else math.inf
        snaps = [k / (cfg.snapshots + 1) for k in range(1, cfg.snapshots + 1)]
        initial = self.validate(math.nan, 0.0)
        self.log(f"training on {device_name(self.device)} ({'bf16 autocast' if self.bf16 else 'float32'}): batch "
                 f"{self.data.batch_size}, {self.data.n} windows, budget {cfg.minutes:g} min"
                 f"{f' / {cfg.steps} steps' if cfg.steps else ''}")
        running, count, since, train_seconds = torch.zeros((), device=self.device), 0, 0.0, 0.0
        t0 = time.perf_counter()
        while True:
            self.seconds = time.perf_counter() - t0
            progress = max(self.seconds / budget, self.step / cfg.steps if cfg.steps else 0.0)
            if progress >= 1.0:
                break
            running += self.train_step(self.learning_rate(progress))
            count += 1
            due_snap = snaps and progress >= snaps[0]
            if self.step % cfg.val_every == 0 or due_snap:
                loss = float(running) / count
                if not math.isfinite(loss):
                    raise FloatingPointError(f"gpu train: non-finite training loss by step {self.step}; "
                                             f"best.pt holds the last good weights")
                self.seconds = time.perf_counter() - t0
                self.validate(loss, since)
                since, running, count = self.seconds, running.zero_(), 0
                if due_snap:
                    k = cfg.snapshots - len(snaps) + 1
                    snaps.pop(0)
                    final = self.ema if self.ema is not None else self.model
                    self.save(f"snap_{k}.pt", final, self.history[-1]["val_loss_ema" if self.ema else "val_loss"],
                              "ema" if self.ema else "raw")
        train_seconds = time.perf_counter() - t0
        self.seconds = train_seconds
        last = self.validate(float(running) / count if count else math.nan, since)
        final = self.ema if self.ema is not None else self.model
        self.save("final.pt", final, last["val_loss_ema" if self.ema else "val_loss"], "ema" if self.ema else "raw")
        summary = self.summary(initial, last, train_seconds)
        (self.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        plot_log(self.history, self.out / "curves.png")
        return summary

    def summary(self, initial: dict[str, Any], last: dict[str, Any], seconds: float) -> dict[str, Any]:
        return {"device": device_name(self.device), "torch": torch.__version__, "bf16": self.bf16,
                "parameters": sum(p.numel() for p in self.model.parameters()), "steps": self.step,
                "batch_size": self.data.batch_size, "samples": self.step * self.data.batch_size,
                "epochs": round(self._epochs(), 2), "seconds": round(seconds, 1),
                "steps_per_s": round(self.step / max(seconds, 1e-9), 2),
                "samples_per_s": round(self.step * self.data.batch_size / max(seconds, 1e-9), 1),
                "initial_val_loss": initial["val_loss"], "final_val_loss": last["val_loss"],
                "final_val_loss_ema": last["val_loss_ema"], "best_val_loss": self.best[0],
                "best_weights": self.best[1], "validations": len(self.history), "config": self.config,
                "train": asdict(self.cfg), "pack": dict(self.pack.meta)}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu ({torch.get_num_threads()} threads)"


def plot_log(history: list[dict[str, Any]], path: Path) -> None:
    """Training and validation loss against training seconds -> ``path`` (skipped without matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    secs = [h["seconds"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=90)
    ax.plot(secs, [h["train_loss"] for h in history], marker=".", label="train (mean since last val)")
    ax.plot(secs, [h["val_loss"] for h in history], marker=".", label="val, raw weights")
    ax.plot(secs, [h["val_loss_ema"] for h in history], marker=".", label="val, EMA weights")
    ax.set(xlabel="training seconds", ylabel="masked MSE", title="latent denoiser on the GPU pack")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
