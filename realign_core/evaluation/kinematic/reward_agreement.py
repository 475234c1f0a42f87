"""Does the reward model prefer the motions that do what the prompt asks?  The model-free checks as its referee.

Guidance climbs the motion-space step-aware reward's text-to-motion score (and the latent reward distilled from
it).  For a prompt whose check the unguided generator passes on some seeds and fails on others, the reward can
only steer towards passing if it scores the passing motions higher.  :func:`reward_agreement` generates
unguided samples, checks them and scores each clean motion with the reward (``control.parts.rank_by_reward``),
and reports per prompt the mean reward of passing and failing samples and the AUC: the probability that a
passing sample outscores a failing one (0.5 = the reward cannot tell them apart).  Motions are joints
(F, 22, 3) in metres, Y up, 20 fps; features (F, 263) un-normalised.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu

from realign_core.evaluation.kinematic.checks import KinematicPrompt, MeasuredMotion
from realign_core.evaluation.kinematic.report import label_width
from realign_core.motion.skeleton import FPS


def agreement_auc(passed: Sequence[bool], reward: Sequence[float]) -> dict[str, Any]:
    """Mean reward of passing and failing samples and P(reward of a passing > a failing sample) with the
    two-sided Mann-Whitney p-value; AUC and p are None when either group is empty."""
    passed, reward = np.asarray(passed, dtype=bool), np.asarray(reward, dtype=float)
    if passed.shape != reward.shape:
        raise ValueError(f"agreement: {passed.shape[0]} verdicts for {reward.shape[0]} rewards")
    out: dict[str, Any] = {"n": int(passed.size), "passing": int(passed.sum()),
                           "reward_passing": float(reward[passed].mean()) if passed.any() else None,
                           "reward_failing": float(reward[~passed].mean()) if (~passed).any() else None,
                           "auc": None, "p_value": None}
    if passed.any() and (~passed).any():
        test = mannwhitneyu(reward[passed], reward[~passed], alternative="two-sided")
        out["auc"] = float(test.statistic) / (passed.sum() * (~passed).sum())
        out["p_value"] = float(test.pvalue)
    return out


def reward_agreement(pipe: Any, prompts: Sequence[KinematicPrompt], samples: int, seconds: float,
                     sampling: Any, seed: int = 0, batch_size: int = 32) -> dict[str, dict[str, Any]]:
    """Per prompt: unguided samples (seeds ``seed + i * samples + k`` as the kinematic report), their check
    verdicts and the motion-space reward of each for the prompt's caption -> :func:`agreement_auc` plus the
    per-sample ``passed`` and ``reward`` lists."""
    from realign_core.control.parts import rank_by_reward

    frames = min(max(2, round(seconds * FPS)), pipe.max_frames)
    out: dict[str, dict[str, Any]] = {}
    for i, prompt in enumerate(prompts):
        passed: list[bool] = []
        reward: list[float] = []
        for start in range(0, samples, batch_size):
            seeds = [seed + i * samples + k for k in range(start, min(samples, start + batch_size))]
            result = pipe([prompt.caption] * len(seeds), [frames] * len(seeds), seeds, sampling, None)
            passed += [prompt.matches(MeasuredMotion(j, FPS)) for j in pipe.to_joints(result.features, result.mask)]
            reward += rank_by_reward(pipe, prompt.caption, result.features).tolist()
        out[prompt.name] = {"caption": prompt.caption, **agreement_auc(passed, reward), "passed": passed,
                            "reward": reward}
    return out


def format_agreement(rows: dict[str, dict[str, Any]]) -> str:
    """A text table: prompt, passing samples, mean reward passing / failing, AUC [p]."""
    width = label_width(list(rows))
    lines = [f"{'prompt':{width}s} | passing | reward passing / failing | AUC (p)", "-" * (width + 50)]
    for name, r in rows.items():
        def fmt(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f}"
        auc = "-" if r["auc"] is None else f"{r['auc']:.2f} (p {r['p_value']:.2f})"
        lines.append(f"{name:{width}s} | {r['passing']:3d}/{r['n']:<3d} | {fmt(r['reward_passing']):>7s} / "
                     f"{fmt(r['reward_failing']):<7s}         | {auc}")
    lines.append("unguided samples; reward: the motion-space reward's T2M cosine of each clean motion for the caption; "
                 "AUC: P(a passing sample outscores a failing one), 0.5 = blind")
    return "\n".join(lines)


__all__ = ["agreement_auc", "format_agreement", "reward_agreement"]
