"""``realign gpu pack``: the GPU pack (``gpu_pack``) of a model folder's VAE + denoiser and a dataset.

The windows are those the CPU ``Trainer`` trains and validates the denoiser on, built with the
dataset settings stored in the denoiser checkpoint's ``train_config`` (min/max frames, caption
sources, seed, batch size):

* train: every entry at crop start 0 with all its captions.  Other starts exist only for clips of
  ``max_frames + 1`` to ``max_clip_frames - 1`` rows (197..199 by default) and shift the window
  by at most 3 rows, so leaving them out halves the pack and changes the data by a hair;
* val: exactly the windows and captions ``Trainer.val_loader()`` yields, in its order and batch
  size, so the pack's validation loss reproduces ``DenoiserTask.validate``.

Posteriors come from the latent cache of the VAE checkpoint (``latent_cache``, built when
missing); sentence embeddings from the MiniLM encoder -- the GPU machine needs neither.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from realign_core.data.dataset import MotionTextDataset
from realign_core.guidance.reward_bank import file_sha256
from realign_core.models.layout import checkpoint_path
from realign_core.models.motion_vae import load_vae
from realign_core.text.encoder import TextEncoder, load_text_encoder
from realign_core.training.gpu_pack import GpuPack, PackedSplit, quantize_logvar
from realign_core.training.latent_cache import PosteriorCache, load_or_build

Window = tuple[str, int, int, list[str]]   # (entry id, crop start, feature rows, captions)


def dataset_settings(denoiser_ckpt: dict[str, Any], max_frames: int | None = None) -> dict[str, Any]:
    """The Trainer's dataset settings recorded in a denoiser checkpoint (defaults of ``TrainConfig``)."""
    tc = denoiser_ckpt.get("train_config") or {}
    return {"min_frames": int(tc.get("min_frames", 40)), "max_frames": int(max_frames or tc.get("max_frames", 196)),
            "caption_sources": tuple(tc.get("caption_sources", ())), "seed": int(tc.get("seed", 0)),
            "batch_size": int(tc.get("batch_size", 64))}


def train_windows(data: Path, settings: dict[str, Any]) -> tuple[MotionTextDataset, list[Window]]:
    """The training dataset as the Trainer builds it, and each entry's start-0 window with its captions."""
    sources = set(settings["caption_sources"]) or None
    ds = MotionTextDataset(data, "train", settings["min_frames"], settings["max_frames"], caption_sources=sources,
                           seed=settings["seed"])
    lengths = ds.lengths()
    return ds, [(e.id, 0, int(n), [c.caption for c in e.captions]) for e, n in zip(ds.entries, lengths)]


def val_windows(data: Path, settings: dict[str, Any], train: MotionTextDataset) -> list[Window]:
    """The windows and captions of ``Trainer.val_loader()``, in order (its RNG reset as the Trainer does)."""
    sources = set(settings["caption_sources"]) or None
    ds = MotionTextDataset(data, "val", settings["min_frames"], settings["max_frames"],
                           normalizer=train.normalizer, caption_sources=sources, seed=settings["seed"] + 1)
    ds.rng = np.random.default_rng(settings["seed"] + 1)
    items = [ds[i] for i in range(len(ds))]
    return [(it["id"], int(it["start"]), int(it["length"]), [it["caption"]]) for it in items]


def pack_split(windows: list[Window], cache: PosteriorCache, caption_row: dict[str, int],
               name: str) -> tuple[PackedSplit, torch.Tensor]:
    """PackedSplit of ``windows`` (logvar still float: quantised over both splits) -> (split, logvar)."""
    mus, logvars, ids, counts = [], [], [], []
    for wid, start, frames, captions in windows:
        found = cache.table.get((wid, start, frames))
        if found is None:
            raise ValueError(f"{name} window ({wid!r}, start {start}, {frames} rows) is not in the latent cache; "
                             f"it was built with other dataset settings (delete DATA/cache/vae_posteriors_* to rebuild)")
        mus.append(found[0])
        logvars.append(found[1])
        ids += [caption_row[c] for c in captions]
        counts.append(len(captions))
    tokens = torch.tensor([0] + [len(m) for m in mus]).cumsum(0)
    cap_offsets = torch.tensor([0] + counts).cumsum(0)
    mu = torch.cat(mus)
    split = PackedSplit(mu.half(), torch.zeros_like(mu, dtype=torch.uint8), tokens,
                        torch.tensor([w[2] for w in windows]), torch.tensor(ids), cap_offsets)
    return split, torch.cat(logvars)


def build_pack(models: str | Path, data: str | Path, max_frames: int | None = None,
               text_encoder: TextEncoder | None = None, progress: bool = True) -> GpuPack:
    """The pack of MODELS/vae + MODELS/denoiser on dataset DATA (``max_frames``: override the checkpoint's)."""
    models, data = Path(models), Path(data)
    den_path, vae_path = checkpoint_path(models, "denoiser"), checkpoint_path(models, "vae")
    for path in (den_path, vae_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; the pack needs the VAE and the denoiser it continues")
    ckpt = torch.load(den_path, map_location="cpu", weights_only=False)
    if ckpt.get("task") != "denoiser":
        raise ValueError(f"{den_path}: not a denoiser checkpoint (task={ckpt.get('task')!r})")
    vae, _ = load_vae(vae_path)
    config = ckpt["config"]
    if (config.get("latent_tokens"), config.get("latent_dim")) != (vae.cfg.latent_tokens, vae.cfg.latent_dim):
        raise ValueError(f"{den_path}: latent shape {(config.get('latent_tokens'), config.get('latent_dim'))} does "
                         f"not match {vae_path} {(vae.cfg.latent_tokens, vae.cfg.latent_dim)}")
    settings = dataset_settings(ckpt, max_frames)
    train_ds, train = train_windows(data, settings)
    val = val_windows(data, settings, train_ds)
    cache = load_or_build(vae, vae_path, data, max_frames=settings["max_frames"], progress=progress)
    captions = list(dict.fromkeys(c for w in train + val for c in w[3]))
    encoder = text_encoder or load_text_encoder()
    sentences = encoder.encode_sentences(captions).float().cpu().half()
    rows = {c: i for i, c in enumerate(captions)}
    train_split, train_lv = pack_split(train, cache, rows, "train")
    val_split, val_lv = pack_split(val, cache, rows, "val")
    codes, lo, step = quantize_logvar(torch.cat([train_lv, val_lv]))
    train_split.logvar_q, val_split.logvar_q = codes[:len(train_lv)], codes[len(train_lv):]
    norm = train_ds.normalizer
    meta = {"latent_scale": float(config["latent_scale"]), "latent_dim": int(vae.cfg.latent_dim),
            "latent_tokens": int(vae.cfg.latent_tokens), "val_batch_size": settings["batch_size"],
            "vae_sha256": file_sha256(vae_path), "denoiser_sha256": file_sha256(den_path),
            "denoiser_epoch": ckpt.get("epoch"), "denoiser_val_loss": (ckpt.get("metrics") or {}).get("val_loss"),
            "models": str(models), "data": str(data), "dataset": {k: v for k, v in settings.items() if k != "batch_size"}}
    pack = GpuPack(train_split, val_split, sentences, captions, lo, step,
                   torch.as_tensor(np.asarray(norm.mean, dtype=np.float32)),
                   torch.as_tensor(np.asarray(norm.std, dtype=np.float32)), meta)
    pack.check("built pack")
    return pack
