"""The GPU pack: everything the latent denoiser trains on, without the dataset, the VAE or the text encoder.

A machine lent for a few minutes gets the working tree (at most 64 MiB) and nothing else, so the
training data travels as one compact file (``realign gpu pack``, see ``gpu_pack_build``)::

    format        "realign_gpu_pack/1"
    train, val    PackedSplit: the VAE posteriors of the windows, concatenated over latent tokens
    sentences     (C, 384) float16: MiniLM sentence embeddings of every caption the windows use
    captions      C strings (row i of ``sentences`` embeds captions[i])
    logvar_lo, logvar_step   (D,) float32: per-dimension affine code of the uint8 log-variances
    mean, std     (263,) float32: the training split's feature normaliser (checkpoints carry it)
    meta          dict: latent_scale, latent_dim, val_batch_size, vae_sha256, source paths, counts

Sizes per latent token: mu float16 (2 bytes x D) + logvar uint8 (1 byte x D).  The uint8 code
spends 256 levels on each dimension's observed range, so exp(logvar / 2) is off by at most
half a step (``max_logvar_error``).  Loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

PACK_FORMAT = "realign_gpu_pack/1"


@dataclass
class PackedSplit:
    """N windows of one split.

    mu (N_tok, D) float16 and logvar_q (N_tok, D) uint8: window i's latent tokens are rows
    offsets[i]:offsets[i+1]; frames (N,) long: the window's feature rows; caption_ids (M,) long:
    rows of the sentence table, window i's captions at caption_offsets[i]:caption_offsets[i+1]
    (training: all its captions, repeats kept; validation: the one caption the validation loader drew).
    """

    mu: Tensor
    logvar_q: Tensor
    offsets: Tensor
    frames: Tensor
    caption_ids: Tensor
    caption_offsets: Tensor

    def __len__(self) -> int:
        return int(self.frames.numel())

    @property
    def token_counts(self) -> Tensor:
        """(N,) latent tokens per window."""
        return self.offsets[1:] - self.offsets[:-1]

    def padded(self, lo: Tensor, step: Tensor, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor]:
        """(mu, logvar) (N, L, D) float32 zero-padded to the longest window, and the token mask (N, L)."""
        counts = self.token_counts
        n, length, dim = len(self), int(counts.max()), self.mu.shape[1]
        tokens = torch.arange(length)[None] < counts[:, None]
        mu = torch.zeros(n, length, dim)
        logvar = torch.zeros(n, length, dim)
        mu[tokens] = self.mu.float()
        logvar[tokens] = dequantize(self.logvar_q, lo, step)
        return mu.to(device), logvar.to(device), tokens.to(device)

    def check(self, name: str, sentences: int) -> None:
        """Raise ValueError naming the split and field when the arrays do not fit together."""
        n = len(self)
        problems = []
        if self.offsets.shape != (n + 1,) or int(self.offsets[-1]) != self.mu.shape[0]:
            problems.append(f"offsets {tuple(self.offsets.shape)} end at {int(self.offsets[-1])}, mu has "
                            f"{self.mu.shape[0]} rows")
        if self.logvar_q.shape != self.mu.shape or self.logvar_q.dtype != torch.uint8:
            problems.append(f"logvar_q {tuple(self.logvar_q.shape)} {self.logvar_q.dtype} vs mu {tuple(self.mu.shape)}")
        if self.caption_offsets.shape != (n + 1,) or int(self.caption_offsets[-1]) != self.caption_ids.numel():
            problems.append("caption_offsets do not index caption_ids")
        if n and bool((self.caption_offsets[1:] <= self.caption_offsets[:-1]).any()):
            problems.append("a window has no caption")
        if self.caption_ids.numel() and not 0 <= int(self.caption_ids.min()) <= int(self.caption_ids.max()) < sentences:
            problems.append(f"caption_ids outside the {sentences} sentence rows")
        if n == 0:
            problems.append("no windows")
        if problems:
            raise ValueError(f"pack split {name!r}: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Tensor]:
        return {k: getattr(self, k) for k in ("mu", "logvar_q", "offsets", "frames", "caption_ids", "caption_offsets")}


@dataclass
class GpuPack:
    """The training and validation windows of one VAE checkpoint, with their caption embeddings."""

    train: PackedSplit
    val: PackedSplit
    sentences: Tensor
    captions: list[str]
    logvar_lo: Tensor
    logvar_step: Tensor
    mean: Tensor
    std: Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def latent_scale(self) -> float:
        return float(self.meta["latent_scale"])

    @property
    def val_batch_size(self) -> int:
        """Batch size of the validation loader whose batches (and fixed noise) the pack reproduces."""
        return int(self.meta["val_batch_size"])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": PACK_FORMAT, "train": self.train.to_dict(), "val": self.val.to_dict(),
                   "sentences": self.sentences, "captions": list(self.captions), "logvar_lo": self.logvar_lo,
                   "logvar_step": self.logvar_step, "mean": self.mean, "std": self.std, "meta": self.meta}
        tmp = path.with_name(path.name + ".tmp")
        torch.save(payload, tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> GpuPack:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such pack (build it with `realign gpu pack`)")
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != PACK_FORMAT:
            found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
            raise ValueError(f"{path}: not a {PACK_FORMAT} pack (format={found!r})")
        pack = cls(PackedSplit(**payload["train"]), PackedSplit(**payload["val"]), payload["sentences"],
                   list(payload["captions"]), payload["logvar_lo"], payload["logvar_step"], payload["mean"],
                   payload["std"], dict(payload["meta"]))
        pack.check(path)
        return pack

    def check(self, where: str | Path = "pack") -> None:
        rows = self.sentences.shape[0]
        if self.sentences.ndim != 2 or len(self.captions) != rows:
            raise ValueError(f"{where}: sentences {tuple(self.sentences.shape)} vs {len(self.captions)} captions")
        for name in ("latent_scale", "val_batch_size", "latent_dim"):
            if name not in self.meta:
                raise ValueError(f"{where}: meta lacks {name!r}")
        for name, split in (("train", self.train), ("val", self.val)):
            try:
                split.check(name, rows)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            if split.mu.shape[1] != int(self.meta["latent_dim"]):
                raise ValueError(f"{where}: {name} latents are {split.mu.shape[1]}-d, meta says {self.meta['latent_dim']}")

    def describe(self) -> str:
        t, v = self.train, self.val
        return (f"{len(t)} train windows ({t.mu.shape[0]} latent tokens), {len(v)} val windows "
                f"({v.mu.shape[0]} tokens), {len(self.captions)} captions, latent_dim {self.meta['latent_dim']}, "
                f"latent_scale {self.latent_scale:.6g}")


def quantize_logvar(logvar: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(N_tok, D) float -> (codes (N_tok, D) uint8, lo (D,), step (D,)): logvar ~ lo + code * step."""
    lo = logvar.min(0).values.float()
    step = ((logvar.max(0).values.float() - lo) / 255).clamp(min=1e-8)
    codes = torch.round((logvar.float() - lo) / step).clamp(0, 255).to(torch.uint8)
    return codes, lo, step


def dequantize(codes: Tensor, lo: Tensor, step: Tensor) -> Tensor:
    """uint8 codes (..., D) -> float32 log-variances."""
    return lo + codes.float() * step


def max_logvar_error(step: Tensor) -> float:
    """Largest |logvar - dequantize(quantize(logvar))|: half the widest step."""
    return float(step.max()) / 2
