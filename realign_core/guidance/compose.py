"""Several ``denoise_loop`` guidance hooks as one: each sees the previous one's output, in order.

``compose([reward_hook, constraint_hook])`` -> a hook, or None when every entry is None (so a run
without guidance and constraints passes ``guidance=None`` and stays bit-identical to the plain sampler).
Every hook has the signature ``hook(step_index, t, x_prev, pred_x0) -> x_prev``; the x0 estimate is the
sampler's, passed unchanged to each hook.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor

Hook = Callable[[int, int, Tensor, Tensor], Tensor]


class ComposedGuidance:
    """Calls ``hooks`` in order after each sampler step."""

    def __init__(self, hooks: Sequence[Hook]):
        self.hooks = list(hooks)

    def __call__(self, step_index: int, t: int, x_prev: Tensor, pred_x0: Tensor) -> Tensor:
        for hook in self.hooks:
            x_prev = hook(step_index, t, x_prev, pred_x0)
        return x_prev


def compose(hooks: Sequence[Hook | None]) -> Hook | None:
    """The non-None hooks as one (the hook itself when there is one; None when there are none)."""
    present = [h for h in hooks if h is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else ComposedGuidance(present)
