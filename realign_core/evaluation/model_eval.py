"""``realign eval``: the measured numbers of a trained model stack on the test split.

Writes ``OUT/eval_models.json`` and prints a summary:

* VAE reconstruction error (MPJPE, mm) on the test split;
* evaluator on real test motions: R@1/2/3, MM-Dist, Diversity, and the FID
  floor FID(real train, real test);
* generator without guidance: R@1/2/3, FID, MM-Dist, Diversity (mean ± 95 %
  CI over repeated generations);
* the same two with the second evaluator (``evaluator_words``) when present, under
  ``by_evaluator``;
* reward models (step-aware and plain): T2M / M2T retrieval R@k on clean and
  noised test motions (batches of 32).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from realign_core.data.dataset import MotionTextDataset, collate
from realign_core.device import pick_device
from realign_core.evaluation.results_table import eval_subset
from realign_core.evaluation.scoring import (
    format_metrics,
    generated_metrics,
    load_evaluators,
    make_eval_set,
    real_metrics,
)
from realign_core.models.layout import checkpoint_path
from realign_core.pipeline import SamplingConfig, TextToMotionPipeline

NOISE_LEVELS = (0, 100, 300, 500, 700, 900)


def vae_test_error(models: Path, data: Path, device: torch.device) -> dict[str, float]:
    """MPJPE (global and pose, mm) of VAE reconstructions (posterior mean) on the test split."""
    from realign_core.evaluation.reconstruction import measure_reconstructions
    from realign_core.models.motion_vae import load_vae
    from realign_core.motion.normalization import Normalizer

    vae, ckpt = load_vae(checkpoint_path(models, "vae"), device)
    stats = ckpt["normalizer"]
    norm = Normalizer(np.asarray(stats["mean"], np.float32), np.asarray(stats["std"], np.float32))
    loader = DataLoader(MotionTextDataset(data, "test", seed=0), batch_size=64, collate_fn=collate)
    return measure_reconstructions(vae, loader, norm.denormalize)


def reward_retrieval_table(checkpoint: Path, data: Path, levels: tuple[int, ...], repeats: int,
                           device: torch.device) -> dict[str, dict[str, tuple[float, float]]]:
    """{"t": {"t2m_r1": (mean, ci), ...}} of a reward model on test motions noised to each level."""
    from realign_core.evaluation.retrieval import retrieval_by_noise_level
    from realign_core.models.reward_model import load_reward_model

    model = load_reward_model(checkpoint, device)
    loader = DataLoader(MotionTextDataset(data, "test", seed=0), batch_size=64, collate_fn=collate)
    with torch.no_grad():
        table = retrieval_by_noise_level(model.encode_motion, model.encode_text, loader, levels, seed=0,
                                         repeats=repeats, device=device)
    return {str(t): {k: (row[k], row[f"{k}_ci"]) for k in row if not k.endswith("_ci")} for t, row in table.items()}


def _generator(pipe: TextToMotionPipeline, sampling: SamplingConfig):
    def generate(captions: list[str], lengths: list[int], seeds: list[int]) -> list[np.ndarray]:
        feats = pipe(captions, lengths, seeds, sampling).features
        normed = pipe.normalizer.normalize(feats)
        return [normed[i, :n].cpu().numpy() for i, n in enumerate(lengths)]
    return generate


PARTS = ("vae", "real", "generator", "reward")


def evaluate_models(models: Path, data: Path, repeats: int = 5, real_repeats: int = 20,
                    sampling: SamplingConfig = SamplingConfig(), device: str = "auto",
                    limit: int | None = None, parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    """Run the measurements in ``parts`` (default all); missing checkpoints are reported as skipped.

    ``limit`` scores a seeded random subset of that many test prompts (the same for every part)."""
    dev = torch.device(pick_device(device))
    result: dict[str, Any] = {"models": str(models), "data": str(data), "device": str(dev), "skipped": {}}
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown evaluation parts {sorted(unknown)}; choose from {PARTS}")
    test = eval_subset(data, "test", limit)
    result["test_prompts"] = len(test.captions)
    result["prompts_per_part"] = {part: len(test.captions) for part in parts}
    result["generator_repeats"] = repeats

    if "vae" not in parts:
        pass
    elif (checkpoint_path(models, "vae")).is_file():
        result["vae_test"] = vae_test_error(models, data, dev)
    else:
        result["skipped"]["vae"] = "no vae/best.pt"

    evaluators = load_evaluators(models, dev)
    if "evaluator" in evaluators:
        by_kind: dict[str, dict[str, Any]] = {kind: {} for kind in evaluators}
        if "real" in parts:
            train = make_eval_set(data, "train")
            for kind, evaluator in evaluators.items():
                by_kind[kind]["real"] = real_metrics(evaluator, test, train, real_repeats)
        if "generator" not in parts:
            pass
        elif (checkpoint_path(models, "denoiser")).is_file():
            pipe = TextToMotionPipeline.from_checkpoints(models, dev)
            scores = generated_metrics(_generator(pipe, sampling), evaluators, test, repeats)
            for kind, metrics in scores.items():
                by_kind[kind]["generator"] = metrics
            result["sampling"] = sampling.__dict__
        else:
            result["skipped"]["generator"] = "no denoiser/best.pt"
        result.update(by_kind.pop("evaluator"))
        result["by_evaluator"] = by_kind
    else:
        result["skipped"]["evaluator"] = "no evaluator/best.pt (real and generator metrics need it)"

    for kind in ("reward", "reward_plain") if "reward" in parts else ():
        if (checkpoint_path(models, kind)).is_file():
            result[f"{kind}_retrieval"] = reward_retrieval_table(checkpoint_path(models, kind), data, NOISE_LEVELS,
                                                                 real_repeats, dev)
        else:
            result["skipped"][kind] = f"no {kind}/best.pt"
    return result


def format_result(result: dict[str, Any]) -> str:
    lines = [f"models {result['models']} on {result['device']}, {result['test_prompts']} test prompts"]
    if "vae_test" in result:
        v = result["vae_test"]
        lines.append(f"VAE test MPJPE: {v['mpjpe_mm']:.1f} mm global, {v['mpjpe_pose_mm']:.1f} mm pose "
                     f"(root-relative, facing frame); latent use {v['latent_use']:.2f}")
    if "real" in result:
        lines.append(format_metrics("real (fid = train vs test)", result["real"]))
    if "generator" in result:
        lines.append(format_metrics("generator, no guidance", result["generator"]))
    for kind, parts in result.get("by_evaluator", {}).items():
        for part, name in (("real", "real"), ("generator", "generator, no guidance")):
            if part in parts:
                lines.append(format_metrics(f"{name} [{kind}]", parts[part]))
    for kind in ("reward", "reward_plain"):
        table = result.get(f"{kind}_retrieval")
        if table:
            for t, row in table.items():
                cells = "  ".join(f"{k} {v[0]:.3f}±{v[1]:.3f}" for k, v in row.items())
                lines.append(f"{kind:12s} t={t:>4s}  {cells}")
    for what, why in result["skipped"].items():
        lines.append(f"skipped {what}: {why}")
    return "\n".join(lines)


def merge_partial_result(previous: dict[str, Any], result: dict[str, Any], parts: tuple[str, ...]) -> dict[str, Any]:
    """An earlier ``evaluate_models`` result updated by a run of only ``parts``: what the run measured replaces
    the earlier values (per evaluator and part under ``by_evaluator``); everything else, and the earlier
    ``test_prompts``, is kept; ``prompts_per_part`` says how many test prompts each part was measured on."""
    earlier = previous.get("prompts_per_part", {p: previous.get("test_prompts") for p in PARTS})
    by_evaluator = {kind: dict(rows) for kind, rows in previous.get("by_evaluator", {}).items()}
    for kind, rows in result.get("by_evaluator", {}).items():
        by_evaluator.setdefault(kind, {}).update(rows)
    keep = ("skipped", "by_evaluator", "test_prompts", "prompts_per_part")
    merged = {**previous, **{k: v for k, v in result.items() if k not in keep}}
    merged["test_prompts"] = previous.get("test_prompts", result.get("test_prompts"))
    merged["skipped"] = {**{k: v for k, v in previous.get("skipped", {}).items()
                            if k.removesuffix("_plain") not in parts}, **result["skipped"]}
    merged["prompts_per_part"] = {**earlier, **result["prompts_per_part"]}
    merged["by_evaluator"] = by_evaluator
    return merged


def save_result(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(result, indent=2, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))
