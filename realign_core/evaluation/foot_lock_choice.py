"""Whether takes are foot-locked by default, chosen on the validation split by the judges
(``realign choose-foot-lock``).

The foot lock (``realign_core/motion/foot_lock.py``) shifts a generated body back by the sliding of its planted
feet.  It changes only where the body is, so it can cost realism only through the judges' view of root and joint
velocities.  For the models' default sampling (CFG, sampler, steps of guidance.toml) this module judges, with the
prompts and seed sets of ``realign choose-cfg``, four rows: unguided and default-guided, each with the lock off and
on -- judge R@1 and FID by every judge (never the report evaluators) and the validation kinematic pass rate.

Rule (:func:`choose_foot_lock`), about the default guided take: the lock is on when, guided, its judge R@1 is at
least the unlocked take's minus ``r1_slack`` by every judge, its judge FID relative to the unlocked take's,
averaged over the judges, is at most ``1 + fid_slack``, and its kinematic pass rate is at least the unlocked
take's.  The unguided rows are reported, not used.  Rows of an earlier ``realign choose-cfg`` JSON at the current
scale (same generator, guide, prompts, seeds, judges; made without the lock) stand in for the unlocked rows.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from realign_core.evaluation.cfg_choice import (checkpoint_ids, judge_columns, judge_row, kinematic_text,
                                                reusable_cfg_rows)
from realign_core.evaluation.guidance_choice import JudgeSpec, Precision, judge_scores
from realign_core.evaluation.guidance_tuning import load_judge
from realign_core.evaluation.kinematic.val_prompts import split_prompts
from realign_core.evaluation.results_table import eval_subset
from realign_core.pipeline import TextToMotionPipeline


@dataclass(frozen=True)
class FootLockChoiceConfig:
    r1_slack: float = 0.01      # allowed drop of the guided judge R@1 with the lock, per judge
    fid_slack: float = 0.03     # allowed rise of the guided judge FID (relative, averaged over the judges)
    kin_samples: int = 4        # samples per validation kinematic prompt (0 = no kinematic guard)
    batch: int = 32


def judge_foot_lock(models: Path, data: Path, judges: list[JudgeSpec],
                    cfg: FootLockChoiceConfig = FootLockChoiceConfig(), generator: str = "mld", device: str = "cpu",
                    precision: Precision = Precision(0, 1), reuse: Path | None = None) -> dict[str, Any]:
    """Rows {foot_lock, guided, judges: {name: {judge_r1, judge_fid, per_seed}}, kin_pass, seconds_per_motion}
    for the lock off and on, unguided and default-guided; unlocked rows taken from ``reuse`` where it has them."""
    prompts = eval_subset(data, "val", precision.prompts or None)
    pipe = TextToMotionPipeline.from_checkpoints(models, device, generator=generator, reward_kind="reward")
    sampling = pipe.default_sampling
    result: dict[str, Any] = {
        "generator": generator, "models": str(models), "split": "val", "prompts": len(prompts.captions),
        "seeds": precision.seeds, "sampler": sampling.sampler, "steps": sampling.steps, "cfg_scale": pipe.default_cfg,
        "current_foot_lock": pipe.default_foot_lock,
        "guidance": {"scale": pipe.calibration.scale, **pipe.default_guidance.__dict__},
        "judges": {j.name: {"root": str(j.root), "kind": j.kind} for j in judges}, "config": cfg.__dict__,
        "checkpoints": checkpoint_ids(models, generator), "rows": []}
    unlocked = reusable_cfg_rows(reuse, {**result, "foot_lock": False, "config": {"kin_samples": cfg.kin_samples}})
    loaded = {j.name: load_judge(j.root, j.kind, prompts, device) for j in judges}
    kin_prompts = split_prompts(data, "val") if cfg.kin_samples > 0 else []
    for lock in (False, True):
        for guided in (False, True):
            row = None if lock else unlocked.get((float(pipe.default_cfg), guided))
            if row is None:
                row = judge_row(pipe, prompts, replace(sampling, foot_lock=lock), guided, loaded, precision.seeds,
                                cfg.batch, cfg.kin_samples, kin_prompts)
            result["rows"].append({"foot_lock": lock, **{k: v for k, v in row.items() if k != "cfg_scale"}})
            print(describe(result["rows"][-1]), flush=True)
    return result


def choose_foot_lock(result: dict[str, Any], cfg: FootLockChoiceConfig | None = None) -> dict[str, Any]:
    """The rule of the module docstring: {"choice": bool, "r1_ok", "fid_ok", "kin_ok", "relative_fid"}."""
    cfg = cfg or FootLockChoiceConfig(**result["config"])
    guided = {r["foot_lock"]: r for r in result["rows"] if r["guided"]}
    off, on = guided[False], guided[True]
    r1_ok = all(on["judges"][n]["judge_r1"] >= v["judge_r1"] - cfg.r1_slack - 1e-9 for n, v in off["judges"].items())
    rel = float(np.mean([on["judges"][n]["judge_fid"] / v["judge_fid"] for n, v in off["judges"].items()]))
    kin_ok = on.get("kin_pass") is None or off.get("kin_pass") is None or on["kin_pass"] >= off["kin_pass"] - 1e-9
    fid_ok = rel <= 1 + cfg.fid_slack + 1e-9
    return {"choice": bool(r1_ok and fid_ok and kin_ok), "r1_ok": r1_ok, "fid_ok": fid_ok, "kin_ok": kin_ok,
            "relative_fid": rel, "rule": cfg.__dict__}


def describe(row: dict[str, Any]) -> str:
    what = f"foot lock {'on' if row['foot_lock'] else 'off'}, {'guided' if row['guided'] else 'unguided'}"
    return f"{what}: {judge_scores(row)}{kinematic_text(row)}"


def format_foot_lock_choice(result: dict[str, Any], choice: dict[str, Any]) -> str:
    """A markdown table: per row every judge's R@1 / FID and the kinematic pass rate, and the rule's verdict."""
    judges = list(result["judges"])
    head = "| foot lock | row | " + judge_columns(judges) + " | kinematic |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in sorted(result["rows"], key=lambda r: (r["guided"], r["foot_lock"])):
        lines.append(f"| {'on' if row['foot_lock'] else 'off'} | {'default guidance' if row['guided'] else 'unguided'} "
                     f"| {judge_columns(judges, row)} | {kinematic_text(row, '', '-')} |")
    verdict = ", ".join(f"{k} {'yes' if choice[k] else 'no'}" for k in ("r1_ok", "fid_ok", "kin_ok"))
    lines.append(f"\nguided, lock on vs off: FID x{choice['relative_fid']:.3f}; {verdict} -> "
                 f"foot lock {'on' if choice['choice'] else 'off'}")
    return "\n".join(lines)


def write_foot_lock(models: Path, generator: str, on: bool) -> Path:
    """Set ``foot_lock`` in table [generator] of MODELS/guidance.toml, keeping the rest."""
    from realign_core.evaluation.guidance_tuning import write_guidance_key
    from realign_core.models.layout import guidance_path

    write_guidance_key(guidance_path(models), generator, "foot_lock", bool(on))
    return guidance_path(models)


__all__ = ["FootLockChoiceConfig", "choose_foot_lock", "format_foot_lock_choice", "judge_foot_lock",
           "write_foot_lock"]
