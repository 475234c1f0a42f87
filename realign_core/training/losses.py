"""Contrastive text-motion loss shared by the reward model and the evaluator."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def near_duplicate_mask(sentence_emb: Tensor, threshold: float) -> Tensor:
    """(B, S) unit sentence embeddings -> (B, B) bool, True = off-diagonal pair with cosine > threshold.

    Such pairs describe the same motion in other words and must not act as negatives.
    """
    sim = sentence_emb @ sentence_emb.T
    eye = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    return (sim > threshold) & ~eye


def info_nce_loss(text_emb: Tensor, motion_emb: Tensor, temperature: float,
                  excluded: Tensor | None = None) -> Tensor:
    """Symmetric InfoNCE on cosine similarities.

    text_emb, motion_emb: (B, D) (normalised here); excluded: (B, B) bool, True
    where pair (text i, motion j) is not used as a negative (diagonal ignored).
    Returns the mean of the text->motion and motion->text cross-entropies.
    """
    return info_nce_with_logits(text_emb, motion_emb, temperature, excluded)[0]


def info_nce_with_logits(text_emb: Tensor, motion_emb: Tensor, temperature: float,
                         excluded: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``info_nce_loss`` and the masked (B, B) logits it used."""
    logits = F.normalize(text_emb, dim=-1) @ F.normalize(motion_emb, dim=-1).T / temperature
    if excluded is not None:
        eye = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(excluded & ~eye, float("-inf"))
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)), logits
