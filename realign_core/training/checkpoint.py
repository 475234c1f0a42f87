"""Rebuilding a model from a trainer ``best.pt`` (or an exported fp16 copy)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn


def load_model_checkpoint(path: str | Path, task: str, config_cls: type, model_cls: type[nn.Module],
                          device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, checkpoint dict); the model is rebuilt from the saved config fields of
    ``config_cls`` (other saved keys, e.g. loss weights, are ignored) and its weights cast to float32."""
    ckpt = torch.load(path, map_location=device, weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("task") != task:
        found = ckpt.get("task") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: not a {task} checkpoint (task={found!r})")
    cfg = {k: v for k, v in ckpt["config"].items() if k in config_cls.__dataclass_fields__}
    model = model_cls(config_cls(**cfg)).to(device)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()})
    return model.eval(), ckpt
