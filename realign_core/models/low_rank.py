"""Low-rank weight deltas (LoRA, Hu et al. 2021) on a frozen base model.

``LowRankAdapter(base, rank, alpha)`` holds, for each 2-D weight W (out, in) of the base that it adapts, two
factors ``up`` (out, rank) and ``down`` (rank, in); its forward runs the base with W + (alpha / rank) up @ down
through ``torch.func.functional_call``, so the base itself is never modified.  Only the factors are the
adapter's parameters and state dict: a checkpoint of it is small (what the consistency-distilled denoiser
ships, ``realign_core/models/consistency_denoiser.py``), and ``merged()`` returns a plain copy of the base with
the deltas added, which runs at the base's own cost.

``up`` starts at zero, so a fresh adapter computes exactly the base model.
"""
from __future__ import annotations

import copy
import hashlib
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call


def adaptable_weights(base: nn.Module) -> list[str]:
    """Names of the base's 2-D weight matrices that a LowRankAdapter adapts (linear and attention
    projections: every 2-D parameter whose name ends in ``weight``), in ``named_parameters`` order."""
    return [name for name, p in base.named_parameters() if p.ndim == 2 and name.endswith("weight")]


def weights_fingerprint(model: nn.Module) -> str:
    """sha256 (hex, first 16) of a model's float32 weights in state-dict order: identifies the base an
    adapter was trained on."""
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        digest.update(name.encode())
        digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _key(name: str) -> str:
    return name.replace(".", "__")


class LowRankAdapter(nn.Module):
    """forward(*args, **kwargs) = base(*args, **kwargs) with every adapted W replaced by W + s up @ down.

    base: the frozen model (kept out of this module's parameters and state dict); rank >= 1; alpha: the
    LoRA scale numerator (s = alpha / rank); names: the adapted weights (default ``adaptable_weights``).
    """

    def __init__(self, base: nn.Module, rank: int, alpha: float, names: list[str] | None = None) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        self._base = (base.requires_grad_(False),)     # a tuple: not registered as a submodule
        self.rank, self.scale = int(rank), float(alpha) / rank
        self.names = list(names if names is not None else adaptable_weights(base))
        params = dict(base.named_parameters())
        unknown = [n for n in self.names if n not in params or params[n].ndim != 2]
        if unknown:
            raise ValueError(f"not 2-D weights of {type(base).__name__}: {unknown[:5]}")
        self.down = nn.ParameterDict({_key(n): nn.Parameter(torch.randn(rank, params[n].shape[1]) / rank)
                                      for n in self.names})
        self.up = nn.ParameterDict({_key(n): nn.Parameter(torch.zeros(params[n].shape[0], rank))
                                    for n in self.names})

    @property
    def base(self) -> nn.Module:
        return self._base[0]

    def deltas(self) -> dict[str, Tensor]:
        """{weight name: s up @ down} (out, in) for every adapted weight."""
        return {n: self.scale * (self.up[_key(n)] @ self.down[_key(n)]) for n in self.names}

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        params = dict(self.base.named_parameters())
        weights = {n: params[n] + d.to(params[n].dtype) for n, d in self.deltas().items()}
        return functional_call(self.base, weights, args, kwargs, strict=False)

    @torch.no_grad()
    def merged(self) -> nn.Module:
        """A plain copy of the base with the deltas added (eval mode, no gradients)."""
        model = copy.deepcopy(self.base)
        params = dict(model.named_parameters())
        for name, delta in self.deltas().items():
            params[name].add_(delta.to(params[name].dtype))
        return model.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "LowRankAdapter":
        """Train/eval mode for the adapter and its base (dropout runs as the base was trained)."""
        super().train(mode)
        self.base.train(mode)
        return self

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> "LowRankAdapter":
        """``.to`` / ``.half`` / ``.float`` also move the base."""
        self.base._apply(fn)
        return super()._apply(fn, recurse)
