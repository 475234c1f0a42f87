"""The few-step consistency denoiser (``ROOT/denoiser_lcm/best.pt``): a low-rank adapter on ROOT/denoiser.

The checkpoint (written by ``realign train denoiser_lcm`` and ``realign export``) holds the adapter's factors,
its settings (``rank``, ``alpha``, the baked-in ``cfg_scale``, ``original_steps``, ``timestep_scaling``) and the
fingerprint of the teacher it was distilled from.  Loading checks that fingerprint against the denoiser it is
applied to (a consistency model trained on another denoiser would silently produce other motions) and
returns a plain ``LatentDenoiser`` with the deltas merged: sampling costs one conditional forward per step.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from realign_core.models.checkpoint import float_weights
from realign_core.models.latent_denoiser import LatentDenoiser
from realign_core.models.low_rank import LowRankAdapter, weights_fingerprint

TASK = "denoiser_lcm"


def load_consistency_denoiser(path: str | Path, teacher: LatentDenoiser, teacher_path: str | Path = "denoiser",
                              device: str | torch.device = "cpu") -> tuple[LatentDenoiser, dict[str, Any]]:
    """(merged student in eval mode on ``device``, checkpoint dict) for the adapter at ``path`` on ``teacher``.

    Raises FileNotFoundError when ``path`` is missing and ValueError when it is not a ``denoiser_lcm``
    checkpoint or was distilled from a different denoiser than ``teacher`` (``teacher_path`` names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no consistency denoiser; distil one with `realign train denoiser_lcm`")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("task") != TASK:
        found = ckpt.get("task") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: not a {TASK} checkpoint (task={found!r})")
    cfg = ckpt["config"]
    base = copy.deepcopy(teacher).float().cpu()
    found = weights_fingerprint(base)
    if found != cfg["teacher_fingerprint"]:
        raise ValueError(f"{path}: distilled from a denoiser with fingerprint {cfg['teacher_fingerprint']}, but "
                         f"{teacher_path} has {found}; distil it again for this denoiser "
                         f"(`realign train denoiser_lcm`)")
    adapter = LowRankAdapter(base, int(cfg["rank"]), float(cfg["alpha"]))
    adapter.load_state_dict(float_weights(ckpt["model"]))
    return adapter.merged().to(device), ckpt
