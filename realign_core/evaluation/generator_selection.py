"""Judging a base generator on the validation split, to choose checkpoints and sizes (never the evaluator).

The judge is the tuning judge of ``guidance_tuning``: the non-step-aware reward model
(``reward_plain``), which the step-aware guide never sees.  Unguided samples of a seeded subset
of validation prompts (one per prompt, the prompt's real length) are scored by judge R@1 (groups
of 32, 5 shuffles) and judge FID against the real validation motions in the judge's space.
``realign eval --judge-val`` runs it on a model root and writes ``MODELS/generator_val_judge.json``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from realign_core.evaluation.guidance_tuning import load_judge
from realign_core.evaluation.results_table import eval_subset, generate_set
from realign_core.models.layout import checkpoint_path
from realign_core.pipeline import SPACING, SamplingConfig, TextToMotionPipeline


def judge_generator(models: str | Path, data: str | Path, generator: str = "mld", prompts: int = 256,
                    steps: int = 50, device: str = "cpu", judge_models: str | Path | None = None,
                    judge_kind: str = "reward_plain", sampler: str = "ddim",
                    spacing: str | None = None, cfg_scale: float | None = None) -> dict[str, Any]:
    """Judge R@1 / FID of ``generator`` under ``models`` on ``prompts`` validation prompts, unguided.

    judge_models: the root holding ``reward_plain/best.pt`` (default ``models``), so that checkpoints
    of one generator kept in different roots are judged by the same judge; judge_kind: which model
    judges (``reward_plain``; a words judge ``evaluator_words`` in its own root; tests use a tiny
    ``reward``); sampler / spacing / cfg_scale: as ``SamplingConfig``'s
    (cfg_scale None = the models' validated scale).
    """
    subset = eval_subset(Path(data), "val", prompts)
    judge = load_judge(judge_models or models, judge_kind, subset, device)
    pipe = TextToMotionPipeline.from_checkpoints(models, device, generator=generator, reward_kind=None)
    start = time.perf_counter()
    sampling = SamplingConfig(sampler, steps, cfg_scale=cfg_scale, spacing=spacing)
    feats = generate_set(pipe, subset, list(range(len(subset.captions))), sampling, None, desc=f"{generator} on val")
    kind = "denoiser_lcm" if sampler == "lcm" else None
    return {"models": str(models), "generator": generator, "epoch": checkpoint_epoch(models, generator, kind),
            "split": "val", "prompts": len(subset.captions),
            "sampler": sampler, "spacing": spacing or SPACING[sampler], "steps": steps,
            "cfg_scale": pipe.default_cfg if cfg_scale is None else cfg_scale, "guidance": None,
            "judge": judge_kind, **judge.score(feats),
            "seconds": round(time.perf_counter() - start, 1)}


def checkpoint_epoch(models: str | Path, generator: str = "mld", kind: str | None = None) -> int | None:
    """The training epoch stored in the generator's checkpoint (denoiser/ for mld, mdm/ for mdm; ``kind``: another
    part, e.g. denoiser_lcm for the 'lcm' sampler), if any."""
    import torch

    kind = kind or ("denoiser" if generator == "mld" else "mdm")
    ckpt = torch.load(checkpoint_path(models, kind), map_location="cpu", weights_only=False)
    return int(ckpt["epoch"]) if ckpt.get("epoch") is not None else None


def save(result: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path
