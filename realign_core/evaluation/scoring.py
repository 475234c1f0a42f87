"""Scoring real and generated motions with the independent evaluators (Guo et al. protocol).

Two evaluators score every table when both are present (``load_evaluators``): ``evaluator`` (conv +
GRU motion side, GRU over frozen MiniLM token states) and ``evaluator_words`` (temporal-convolution
motion side, words learned from scratch: nothing shared with MiniLM or the reward model).

An ``EvalSet`` fixes, for one split, one caption and one length per entry
(seeded), so that every repeat and every method is scored on the same prompts.
Generated motions are produced for exactly those captions and lengths and
normalised with the dataset's Mean/Std before the evaluator sees them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from realign_core.data.dataset import MotionTextDataset, collate
from realign_core.evaluation import metrics as M
from realign_core.models.evaluator import MetricSpaceScorer, load_evaluator
from realign_core.models.layout import checkpoint_path
from realign_core.models.word_evaluator import load_word_evaluator

MetricDict = dict[str, tuple[float, float]]  # name -> (mean, 95 % half-width)
AnyEvaluator = MetricSpaceScorer        # Evaluator or WordEvaluator
EVALUATOR_KINDS = ("evaluator", "evaluator_words")   # the first is the primary one (``rows`` of a table)


def load_scorer(kind: str, path: str | Path, device: torch.device | str = "cpu") -> AnyEvaluator:
    """The evaluator-style scorer of ``kind`` (one of ``EVALUATOR_KINDS``) from its checkpoint, in eval mode."""
    loaders = {"evaluator": load_evaluator, "evaluator_words": load_word_evaluator}
    return loaders[kind](path, device)


def load_evaluators(models: str | Path, device: torch.device | str = "cpu") -> dict[str, AnyEvaluator]:
    """{kind: evaluator} of the evaluator checkpoints present under ``models``, primary first."""
    return {kind: load_scorer(kind, checkpoint_path(models, kind), device)
            for kind in EVALUATOR_KINDS if checkpoint_path(models, kind).is_file()}


@dataclass
class EvalSet:
    """Prompts of one split: captions, lengths (feature rows) and real normalised features."""

    captions: list[str]
    lengths: list[int]
    features: list[np.ndarray]  # (T_i, 263) normalised


def make_eval_set(data_dir: str | Path, split: str = "test", seed: int = 0) -> EvalSet:
    """One (caption, length, motion) per entry of the split, chosen with ``seed``."""
    ds = MotionTextDataset(data_dir, split, seed=seed)
    items = [ds[i] for i in range(len(ds))]
    return EvalSet([it["caption"] for it in items], [it["length"] for it in items], [it["features"] for it in items])


@torch.no_grad()
def embed_feature_list(embed: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], features: list[np.ndarray],
                       batch: int = 64, device: torch.device | str = "cpu") -> np.ndarray:
    """Embeddings (N, D) of normalised feature arrays (T_i, 263), padded into batches for ``embed(x, mask)``."""
    out = []
    for i in range(0, len(features), batch):
        b = collate([{"features": f.astype(np.float32), "length": len(f), "caption": "", "id": ""}
                     for f in features[i:i + batch]])
        out.append(embed(b["features"].to(device), b["mask"].to(device)).cpu().numpy())
    return np.concatenate(out)


def embed_motions(evaluator: AnyEvaluator, features: list[np.ndarray], batch: int = 64) -> np.ndarray:
    """Metric-space embeddings (N, D) of normalised feature arrays."""
    return embed_feature_list(evaluator.embed_motions, features, batch)


@torch.no_grad()
def embed_texts(evaluator: AnyEvaluator, captions: list[str], batch: int = 256) -> np.ndarray:
    return np.concatenate([evaluator.embed_texts(captions[i:i + batch]).cpu().numpy()
                           for i in range(0, len(captions), batch)])


def _scores(text: np.ndarray, motion: np.ndarray, real_motion: np.ndarray | None, seed: int) -> dict[str, float]:
    r = M.r_precision(text, motion, seed=seed)
    out = {"r1": float(r[0]), "r2": float(r[1]), "r3": float(r[2]),
           "mm_dist": M.matching_score(text, motion), "diversity": M.diversity(motion, seed=seed)}
    if real_motion is not None:
        out["fid"] = M.fid(motion, real_motion)
    return out


def summarize(runs: list[dict[str, float]]) -> MetricDict:
    """Mean and 95 % half-width of each metric over repeated runs."""
    return {k: M.mean_ci([r[k] for r in runs]) for k in runs[0]}


def real_metrics(evaluator: AnyEvaluator, test: EvalSet, train: EvalSet | None = None, repeats: int = 20) -> MetricDict:
    """Scores of the real test motions (repeats = reshuffles of the R-precision groups).

    With ``train`` given, ``fid`` is FID(real train, real test): the floor for generated motions.
    """
    text, motion = embed_texts(evaluator, test.captions), embed_motions(evaluator, test.features)
    floor = embed_motions(evaluator, train.features) if train is not None else None
    runs = [_scores(text, motion, floor, seed) for seed in range(repeats)]
    return summarize(runs)


Generate = Callable[[list[str], list[int], list[int]], list[np.ndarray]]  # captions, lengths, seeds -> normalised feats


def generated_metrics(generate: Generate, evaluators: dict[str, AnyEvaluator], test: EvalSet, repeats: int = 5,
                      batch: int = 64, progress: bool = True) -> dict[str, MetricDict]:
    """Generate one motion per test prompt ``repeats`` times (seeds differ per repeat) and score each run
    with every evaluator: {kind: metrics}."""
    text = {k: embed_texts(e, test.captions) for k, e in evaluators.items()}
    real = {k: embed_motions(e, test.features) for k, e in evaluators.items()}
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in evaluators}
    for rep in range(repeats):
        feats: list[np.ndarray] = []
        for i in tqdm(range(0, len(test.captions), batch), desc=f"generating (repeat {rep + 1}/{repeats})",
                      disable=not progress, leave=False):
            seeds = [rep * 1_000_003 + j for j in range(i, min(i + batch, len(test.captions)))]
            feats += generate(test.captions[i:i + batch], test.lengths[i:i + batch], seeds)
        for k, e in evaluators.items():
            runs[k].append(_scores(text[k], embed_motions(e, feats), real[k], seed=rep))
    return {k: summarize(r) for k, r in runs.items()}


def format_metrics(name: str, m: MetricDict) -> str:
    cells = "  ".join(f"{k} {v:.3f}±{ci:.3f}" for k, (v, ci) in m.items())
    return f"{name:28s} {cells}"
