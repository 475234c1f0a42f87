"""A moving average of a model's weights (EMA), kept as a plain frozen copy of the model.

Both trainers (``trainer.Trainer`` on the CPU, ``gpu_train`` for the GPU one-shot) validate the average beside
the raw weights and save it as an ordinary checkpoint: the copy has the model's own class and state-dict keys,
so loaders need nothing new.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def averaged_copy(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` (eval mode, no gradients) to hold the average."""
    return copy.deepcopy(model).eval().requires_grad_(False)


def update_average(average: nn.Module, model: nn.Module, decay: float) -> None:
    """average <- decay * average + (1 - decay) * model for parameters; buffers are copied."""
    with torch.no_grad():
        torch._foreach_lerp_(list(average.parameters()), list(model.parameters()), 1 - decay)
        for mine, theirs in zip(average.buffers(), model.buffers()):
            mine.copy_(theirs)
