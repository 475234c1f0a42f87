"""Hard negatives for the reward model: a clip with a body part held still, scored against its own caption.

The shipped reward cannot tell the generator's waving samples from its others (docs/models.md, "Why the guided
takes wave less"): in-batch negatives are other clips, which differ in much more than what an arm does over
time.  Here each clip whose ``part`` (``right_arm``, ``left_arm``, ``arms``) moves gets a twin with that part
held at its mean pose relative to its anchor (the shoulder), and :func:`held_negative_loss` asks the clip's
caption to score the captured clip above its twin.  Held in feature space by ``control.parts.hold_part_features``
(un-normalised HumanML3D features (B, T, 263); positions in metres).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from realign_core.control.parts import hold_part_features


def held_negative_loss(text_emb: Tensor, motion_emb: Tensor, held_emb: Tensor, temperature: float) -> Tensor:
    """Mean over the rows of -log softmax of (captured, held) cosines / temperature for the row's caption:
    text, captured and held embeddings (N, D)."""
    text = F.normalize(text_emb, dim=-1)
    captured = (text * F.normalize(motion_emb, dim=-1)).sum(-1) / temperature
    held = (text * F.normalize(held_emb, dim=-1)).sum(-1) / temperature
    return F.softplus(held - captured).mean()


__all__ = ["held_negative_loss", "hold_part_features"]
