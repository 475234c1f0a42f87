"""``realign export``: shippable fp16 checkpoints (weights + config + normaliser + training history).

Reads ``SRC/KIND/best.pt`` (and the history in ``last.pt``), writes ``DST/KIND/best.pt`` with
floating-point weights in half precision and no optimiser state.  The loaders cast back to
float32, so an exported stack is used exactly like a training folder.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .training.registry import KINDS


def export_checkpoint(src: Path, dst: Path) -> int:
    """One kind's best.pt -> fp16 copy at dst; returns the file size in bytes."""
    ckpt = torch.load(src / "best.pt", map_location="cpu", weights_only=False)
    ckpt["model"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    last = src / "last.pt"
    if last.is_file():
        ckpt["history"] = torch.load(last, map_location="cpu", weights_only=False).get("history", [])
    dst.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, dst / "best.pt")
    return (dst / "best.pt").stat().st_size


def export_models(src: Path, dst: Path) -> dict[str, int]:
    """Export every trained kind found in src; returns {kind: bytes}."""
    sizes = {kind: export_checkpoint(src / kind, dst / kind) for kind in KINDS if (src / kind / "best.pt").is_file()}
    if not sizes:
        raise FileNotFoundError(f"{src}: no KIND/best.pt checkpoints to export (kinds: {KINDS})")
    for extra in ("eval_models.json",):
        if (src / extra).is_file():
            (dst / extra).write_text((src / extra).read_text())
    return sizes
