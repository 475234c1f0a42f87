"""Training task of the second, MiniLM-free evaluator (:mod:`realign_core.models.word_evaluator`).

Same loss and validation as :class:`~realign_core.training.tasks.evaluator.EvaluatorTask` (symmetric
InfoNCE; R-precision and MM-Dist on the val split), except that negatives are masked by word overlap
instead of MiniLM similarity, and the vocabulary is built from the train split's captions when the
task is made (and then travels inside the checkpoint's config).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import Tensor

from realign_core.data.dataset import MotionTextDataset
from realign_core.models.word_evaluator import TASK_NAME, WordEvaluator, WordEvaluatorConfig
from realign_core.text.words import build_vocabulary, word_overlap_mask
from realign_core.training.tasks.evaluator import EvaluatorTask


class WordEvaluatorTask(EvaluatorTask):
    """The word evaluator as a ``TrainingTask``."""

    name = TASK_NAME

    def __init__(self, config: WordEvaluatorConfig) -> None:
        self.config = config

    def build_model(self) -> WordEvaluator:
        return WordEvaluator(self.config)

    def excluded_negatives(self, model: WordEvaluator, captions: list[str], tokens: Tensor) -> Tensor:
        """(B, B) bool: pairs whose word sets overlap (Jaccard > duplicate_threshold)."""
        return word_overlap_mask(tokens, self.config.duplicate_threshold)


def train_captions(data_dir: Path) -> list[str]:
    """Every caption of every train-split entry."""
    dataset = MotionTextDataset(data_dir, "train")
    return [c.caption for entry in dataset.entries for c in entry.captions]


def make_word_evaluator_task(model_section: dict[str, Any], data_dir: Path, where: str) -> WordEvaluatorTask:
    """WordEvaluatorTask from an [evaluator_words.model] table; the vocabulary comes from the train split
    (a table that lists one is an error: it belongs to the data)."""
    from realign_core.training.config import build_dataclass

    if "vocabulary" in model_section:
        raise ValueError(f"{where}: 'vocabulary' is built from the training captions; remove it from the table")
    config = build_dataclass(WordEvaluatorConfig, model_section, where)
    vocabulary = build_vocabulary(train_captions(data_dir), config.min_word_count)
    return WordEvaluatorTask(replace(config, vocabulary=vocabulary))
