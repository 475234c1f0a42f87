"""Bringing a GPU run's checkpoints in (``realign gpu apply``).

1. ``compare``: the validation loss on the pack of the model folder's denoiser and of every
   checkpoint the run brought back, computed here with the same code the run used (so a number
   from the device and one from this machine are comparable), after checking that each
   checkpoint was trained on the VAE the model folder holds;
2. ``stage``: a candidate model root (the folder's VAE + one checkpoint) for
   ``realign eval --judge-val --models CANDIDATE --judge-models MODELS``;
3. ``install``: copy the chosen checkpoint to MODELS/denoiser/best.pt and the run's log beside it.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from realign_core.guidance.reward_bank import file_sha256
from realign_core.models.latent_denoiser import load_denoiser
from realign_core.models.layout import checkpoint_path
from realign_core.training.denoiser_objective import DenoiserObjective, DiffusionConfig
from realign_core.training.gpu_pack import GpuPack
from realign_core.training.gpu_train import PackValidator

RESULT_FILES = ("best.pt", "final.pt", "snap_1.pt", "snap_2.pt")


def pack_val_loss(path: str | Path, pack: GpuPack, device: str = "cpu") -> float:
    """Validation loss of the denoiser checkpoint ``path`` on the pack's validation windows."""
    model, ckpt = load_denoiser(path, device)
    config = ckpt["config"]
    diffusion = DiffusionConfig(**{k: config[k] for k in DiffusionConfig.__dataclass_fields__ if k in config})
    return PackValidator(pack, DenoiserObjective(diffusion, float(config["latent_scale"])), torch.device(device))(model)


def check_vae(path: Path, models: Path) -> None:
    """A GPU checkpoint records the SHA-256 of the VAE its pack was built from; it must be MODELS' VAE."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if ckpt.get("task") != "denoiser":
        raise ValueError(f"{path}: not a denoiser checkpoint (task={ckpt.get('task')!r})")
    recorded, vae = ckpt.get("vae_sha256"), checkpoint_path(models, "vae")
    if recorded is None:
        raise ValueError(f"{path}: records no vae_sha256 (not written by `realign gpu train`)")
    if not vae.is_file() or file_sha256(vae) != recorded:
        raise ValueError(f"{path}: trained on the latents of VAE {recorded[:12]}, but {vae} is "
                         f"{file_sha256(vae)[:12] if vae.is_file() else 'missing'}; it would decode wrongly")


def result_checkpoints(result: Path) -> list[Path]:
    """The checkpoints of a run folder (or the one file given)."""
    if result.is_file():
        return [result]
    found = [result / name for name in RESULT_FILES if (result / name).is_file()]
    if not found:
        raise FileNotFoundError(f"{result}: none of {RESULT_FILES} (the files a `realign gpu train` run writes)")
    return found


def compare(result: Path, models: Path, pack: GpuPack, device: str = "cpu") -> list[dict[str, Any]]:
    """One row per checkpoint, the model folder's current denoiser first: its pack validation loss here,
    the loss the run recorded, and the run's step / seconds."""
    current = checkpoint_path(models, "denoiser")
    rows = [{"name": f"current ({current})", "path": str(current), "val_loss": pack_val_loss(current, pack, device),
             "recorded": None, "weights": "", "step": None}]
    for path in result_checkpoints(result):
        check_vae(path, models)
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        run = ckpt.get("gpu_run", {})
        rows.append({"name": path.name, "path": str(path), "val_loss": pack_val_loss(path, pack, device),
                     "recorded": ckpt["metrics"]["val_loss"], "weights": run.get("weights", ""),
                     "step": run.get("step"), "seconds": run.get("seconds"), "epochs": run.get("epochs")})
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    lines = ["| checkpoint | val loss (pack, here) | val loss (recorded by the run) | weights | step | equiv. epochs |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        rec = "" if r["recorded"] is None else f"{r['recorded']:.5f}"
        lines.append(f"| {r['name']} | {r['val_loss']:.5f} | {rec} | {r['weights']} | {r.get('step') or ''} | "
                     f"{r.get('epochs') or ''} |")
    return "\n".join(lines)


def stage(checkpoint: Path, models: Path, out: Path) -> Path:
    """A model root OUT with MODELS' VAE and ``checkpoint`` as its denoiser, for ``realign eval --judge-val``."""
    check_vae(checkpoint, models)
    for kind, src in (("vae", checkpoint_path(models, "vae")), ("denoiser", checkpoint)):
        (out / kind).mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, checkpoint_path(out, kind))
    return out


def install(checkpoint: Path, models: Path) -> Path:
    """Copy ``checkpoint`` to MODELS/denoiser/best.pt and its run's log.jsonl to MODELS/denoiser/gpu_log.jsonl."""
    check_vae(checkpoint, models)
    dst = checkpoint_path(models, "denoiser")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(checkpoint, dst)
    log = checkpoint.parent / "log.jsonl"
    if log.is_file():
        shutil.copy2(log, dst.parent / "gpu_log.jsonl")
    return dst
