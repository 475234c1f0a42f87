"""Training task of the independent evaluator (a ``TrainingTask`` for the shared ``Trainer``).

Loss: symmetric InfoNCE on the cosine similarity of L2-normalised text and
motion embeddings, ``logits = cos / temperature``.  Off-diagonal pairs whose
captions are near-duplicates (MiniLM sentence-embedding cosine >
``duplicate_threshold``, identical captions included) are removed from the
negatives, so "a person walks." is not pushed away from another walking clip.

Validation: metric-space embeddings of the whole val loader, then Guo et al.'s
R-precision (top-1/2/3, groups of ``val_group_size`` clipped to the number of
val pairs, averaged over ``val_repeats`` shuffles) and the matching score
(MM-Dist).  The best checkpoint is the one with the highest ``r1``.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from realign_core.evaluation.metrics import matching_score, r_precision
from realign_core.models.evaluator import TASK_NAME, Evaluator, EvaluatorConfig
from realign_core.training.losses import info_nce_with_logits, near_duplicate_mask


class EvaluatorTask:
    """The evaluator as a ``TrainingTask``: contrastive loss, R-precision validation."""

    name = TASK_NAME
    selection_metric = "r1"
    selection_mode = "max"

    def __init__(self, config: EvaluatorConfig | dict[str, Any] | None = None) -> None:
        if config is None:
            config = EvaluatorConfig()
        self.config = config if isinstance(config, EvaluatorConfig) else EvaluatorConfig(**config)

    def build_model(self) -> Evaluator:
        return Evaluator(self.config)

    def training_loss(self, model: Evaluator, batch: dict[str, Any], step: int) -> tuple[Tensor, dict[str, float]]:
        """InfoNCE over the batch; logs the loss, in-batch top-1 accuracy and masked-negative fraction."""
        captions = batch["captions"]
        tokens, token_mask = model.token_states(captions)
        text = model.encode_text(tokens, token_mask)
        motion = model.encode_motion(batch["features"], batch["mask"])
        excluded = self.excluded_negatives(model, captions, tokens).to(text.device)
        loss, logits = info_nce_with_logits(text, motion, self.config.temperature, excluded)
        with torch.no_grad():
            accuracy = (logits.argmax(dim=1) == torch.arange(len(text), device=text.device)).float().mean()
            masked = excluded.float().mean()
        return loss, {"info_nce": float(loss.detach()), "batch_top1": float(accuracy),
                      "masked_negatives": float(masked)}

    def excluded_negatives(self, model: Evaluator, captions: list[str], tokens: Tensor) -> Tensor:
        """(B, B) bool: pairs that are not negatives (MiniLM sentence cosine > duplicate_threshold)."""
        sentences = model.text_model().encode_sentences(captions)
        return near_duplicate_mask(sentences, self.config.duplicate_threshold)

    @torch.no_grad()
    def embed_loader(self, model: Evaluator, loader: DataLoader) -> tuple[np.ndarray, np.ndarray]:
        """Metric-space (text (N, D), motion (N, D)) embeddings of every pair in ``loader``."""
        texts, motions = [], []
        for batch in loader:
            texts.append(model.embed_texts(batch["captions"]).cpu())
            motions.append(model.embed_motions(batch["features"], batch["mask"]).cpu())
        return torch.cat(texts).double().numpy(), torch.cat(motions).double().numpy()

    @torch.no_grad()
    def validate(self, model: Evaluator, loader: DataLoader) -> dict[str, float]:
        """r1, r2, r3 (Guo R-precision) and matching_score (MM-Dist) over the whole loader.

        Groups hold min(val_group_size, N) pairs, so chance R@k is k / that size.
        """
        text, motion = self.embed_loader(model, loader)
        group = min(self.config.val_group_size, len(text))
        if group < 3:
            raise ValueError(f"validation needs at least 3 pairs for top-3 R-precision, got {len(text)}")
        r = np.mean([r_precision(text, motion, group, 3, seed) for seed in range(self.config.val_repeats)], axis=0)
        return {"r1": float(r[0]), "r2": float(r[1]), "r3": float(r[2]),
                "matching_score": matching_score(text, motion)}

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)


def make_evaluator_task(model_section: dict[str, Any], where: str) -> EvaluatorTask:
    """EvaluatorTask from a [evaluator.model] table; unknown keys are errors naming ``where``."""
    from realign_core.training.config import build_dataclass

    return EvaluatorTask(build_dataclass(EvaluatorConfig, model_section, where))
