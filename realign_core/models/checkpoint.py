"""Checkpoints: rebuilding a model from a trainer ``best.pt``, and shippable fp16 exports.

A checkpoint is a plain dict ``{"task", "config", "model", "normalizer"?, "history"?, ...}``:
the model is rebuilt from the saved config fields (no pickled classes), so moving code
never breaks loading.  ``realign export`` writes ``DST/KIND/best.pt`` with floating-point
weights in half precision, no optimiser state and without the submodules only training uses
(``TRAINING_ONLY_MODULES``, listed in the checkpoint's ``"dropped"``); loaders cast back to float32
and leave those submodules out (``None``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from realign_core.models.layout import BEST_FILE, KINDS, LAST_FILE, TRAINING_ONLY_MODULES


def load_model_checkpoint(path: str | Path, task: str | tuple[str, ...], config_cls: type,
                          model_cls: type[nn.Module],
                          device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, checkpoint dict); the model is rebuilt from the saved config fields of
    ``config_cls`` (other saved keys, e.g. loss weights, are ignored) and its weights cast to float32.
    ``task``: the checkpoint's expected ``task`` name (or a tuple of accepted names)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    tasks = (task,) if isinstance(task, str) else tuple(task)
    ckpt = torch.load(path, map_location=device, weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("task") not in tasks:
        found = ckpt.get("task") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: not a {' or '.join(tasks)} checkpoint (task={found!r})")
    cfg = {k: v for k, v in ckpt["config"].items() if k in config_cls.__dataclass_fields__}
    model = model_cls(config_cls(**cfg)).to(device)
    for name in ckpt.get("dropped", ()):
        setattr(model, name, None)          # left out by `realign export`: inference never runs it
    model.load_state_dict(float_weights(ckpt["model"]))
    return model.eval(), ckpt


def float_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with floating-point tensors cast to float32 (exports are fp16)."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_weights_for_training(model: nn.Module, ckpt: dict[str, Any], where: str | Path) -> list[str]:
    """Load a checkpoint's weights into a model being trained; submodules the export dropped
    (``ckpt["dropped"]``) keep their fresh initialisation.  Returns the names of those submodules;
    raises ValueError on any other missing or unexpected weight."""
    dropped = tuple(ckpt.get("dropped", ()))
    missing, unexpected = model.load_state_dict(float_weights(ckpt["model"]), strict=False)
    bad = [k for k in missing if k.split(".")[0] not in dropped] + list(unexpected)
    if bad:
        raise ValueError(f"{where}: weights do not match the model: {bad[:5]}")
    return list(dropped)


RUN_BOOKKEEPING = ("epoch", "step", "train_loss", "epoch_seconds", "epoch_cpu_seconds", "validation", "improved",
                   "gpu")   # fields of a training-log record that are not validation metrics


def validation_metrics(record: dict[str, Any]) -> dict[str, Any]:
    """A training-log epoch record without its bookkeeping: the validation metrics only."""
    return {k: v for k, v in record.items() if k not in RUN_BOOKKEEPING}


def export_checkpoint(src: Path, dst: Path, last_raw: bool = False) -> int:
    """One kind's SRC/best.pt -> fp16 copy at DST/best.pt without training-only submodules (history from
    SRC/last.pt); returns its size in bytes.  ``last_raw``: the raw weights at the end of the run (SRC/last.pt's
    ``model``, not a moving average) in best.pt's format, with the epoch and metrics of that end."""
    ckpt = torch.load(src / BEST_FILE, map_location="cpu", weights_only=False)
    last = src / LAST_FILE
    state = torch.load(last, map_location="cpu", weights_only=False) if last.is_file() else None
    if last_raw:
        if state is None:
            raise FileNotFoundError(f"{last}: --last-raw exports the end of a run, which needs its {LAST_FILE}")
        end = state["history"][-1] if state.get("history") else {}
        ckpt.update(model=state["model"], epoch=state["epoch"], weights="raw (end of run)",
                    metrics={k.removesuffix("_raw"): v for k, v in end.items() if k.endswith("_raw")}
                    or validation_metrics(end))
    dropped = tuple(sorted(set(ckpt.get("dropped", ())) | set(TRAINING_ONLY_MODULES.get(ckpt.get("task"), ()))))
    ckpt["model"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()
                     if k.split(".")[0] not in dropped}
    if dropped:
        ckpt["dropped"] = list(dropped)
    if state is not None:
        ckpt["history"] = state.get("history", [])
    dst.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, dst / BEST_FILE)
    return (dst / BEST_FILE).stat().st_size


def export_models(src: Path, dst: Path, last_raw: bool = False) -> dict[str, int]:
    """``realign export``: every trained kind found in SRC -> fp16 under DST; returns {kind: bytes}.
    ``last_raw``: the raw weights at the end of the run of each kind that has a last.pt (``export_checkpoint``);
    kinds without one (e.g. a linked, already exported VAE) are exported from their best.pt."""
    sizes = {kind: export_checkpoint(src / kind, dst / kind, last_raw and (src / kind / LAST_FILE).is_file())
             for kind in KINDS
             if (src / kind / BEST_FILE).is_file()}
    if not sizes:
        raise FileNotFoundError(f"{src}: no KIND/{BEST_FILE} checkpoints to export (kinds: {KINDS})")
    for extra in ("eval_models.json",):
        if (src / extra).is_file():
            (dst / extra).write_text((src / extra).read_text())
    return sizes
