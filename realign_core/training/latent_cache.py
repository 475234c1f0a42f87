"""Cached VAE posteriors of every training window: the denoiser's step never runs the VAE encoder.

The motion VAE is frozen while the latent denoiser trains and its encoder is deterministic in
eval mode, so the posterior (mu, logvar) of a window depends only on the clip and the crop
``MotionTextDataset`` picks.  ``PosteriorCache.build`` encodes every window a dataset can yield
(each entry x each crop start) once per VAE checkpoint; a training step then looks its batch up
by (id, start, length) and only draws ``z = mu + exp(logvar / 2) * eps`` -- the same
distribution as encoding the batch every step (tests/test_training_speed.py checks it).

Stored beside the dataset, keyed by the VAE checkpoint's hash and the window size::

    DATA/cache/vae_posteriors_<sha256[:12] of vae/best.pt>_<max_frames>.pt

(~12 KB per window for a 49 x 32 latent; about 160 MB for our training + validation split).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from realign_core.data.dataset import MotionTextDataset, collate
from realign_core.guidance.reward_bank import file_sha256
from realign_core.models.motion_vae import MotionVAE

Key = tuple[str, int, int]   # (entry id, crop start, feature rows)


def cache_path(data_dir: str | Path, vae_checkpoint: str | Path, max_frames: int) -> Path:
    return Path(data_dir) / "cache" / f"vae_posteriors_{file_sha256(vae_checkpoint)[:12]}_{max_frames}.pt"


class PosteriorCache:
    """(id, start, length) -> (mu, logvar), each (Lz, latent_dim) float32 on the CPU."""

    def __init__(self, table: dict[Key, tuple[Tensor, Tensor]]):
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    @classmethod
    @torch.no_grad()
    def build(cls, vae: MotionVAE, datasets: list[MotionTextDataset], batch: int = 64,
              progress: bool = True) -> "PosteriorCache":
        """Encode every window of every dataset (same normalisation as the datasets use)."""
        device = next(vae.parameters()).device
        vae.eval()
        windows = [(ds, i, s) for ds in datasets for i in range(len(ds)) for s in ds.crop_starts(i)]
        table: dict[Key, tuple[Tensor, Tensor]] = {}
        for lo in tqdm(range(0, len(windows), batch), desc="caching VAE posteriors", disable=not progress,
                       leave=False):
            items = [{**ds.window(i, s), "caption": ""} for ds, i, s in windows[lo:lo + batch]]
            b = collate(items)
            mu, logvar = vae.encode(b["features"].to(device), b["mask"].to(device))
            for k, it in enumerate(items):
                n = vae.cfg.latent_length(it["length"])
                table[(it["id"], it["start"], it["length"])] = (mu[k, :n].float().cpu(), logvar[k, :n].float().cpu())
        return cls(table)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"keys": list(self.table), "values": list(self.table.values())}, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "PosteriorCache":
        payload = torch.load(path, map_location="cpu", weights_only=False)
        return cls(dict(zip((tuple(k) for k in payload["keys"]), payload["values"])))

    def lookup(self, ids: list[str], starts: Tensor, lengths: Tensor, latent_len: int,
               device: torch.device) -> tuple[Tensor, Tensor] | None:
        """Padded (mu, logvar) (B, latent_len, D) of a batch, zero on padding; None if a window is missing."""
        rows = [self.table.get((i, int(s), int(n))) for i, s, n in zip(ids, starts, lengths)]
        if any(r is None for r in rows):
            return None
        dim = rows[0][0].shape[-1]
        mu = torch.zeros(len(rows), latent_len, dim)
        logvar = torch.zeros(len(rows), latent_len, dim)
        for k, (m, lv) in enumerate(rows):
            mu[k, :len(m)], logvar[k, :len(lv)] = m, lv
        return mu.to(device), logvar.to(device)


def load_or_build(vae: MotionVAE, vae_checkpoint: str | Path, data_dir: str | Path, splits=("train", "val"),
                  max_frames: int = 196, progress: bool = True) -> PosteriorCache:
    """The cache of ``splits`` for this VAE checkpoint, read from DATA/cache or built and written there."""
    path = cache_path(data_dir, vae_checkpoint, max_frames)
    if path.is_file():
        return PosteriorCache.load(path)
    train = MotionTextDataset(data_dir, "train", max_frames=max_frames)
    datasets = [train] + [MotionTextDataset(data_dir, s, max_frames=max_frames, normalizer=train.normalizer)
                          for s in splits if s != "train"]
    cache = PosteriorCache.build(vae, datasets, progress=progress)
    cache.save(path)
    return cache
