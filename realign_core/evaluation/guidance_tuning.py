"""Choosing ReAlign's guidance settings on the validation split, without the evaluator.

The evaluator scores the results table and is never used to choose anything.
Tuning needs its own judge: the *non-step-aware* reward model
(``reward_plain``), a separately trained retrieval model that the step-aware
guide never sees, scores clean generated motions of validation prompts:

* judge R@1: text-to-motion retrieval in groups of 32 (cosine);
* judge FID: Frechet distance between generated and real validation motions
  in the judge's embedding space (realism guard against reward hacking);
* kinematic pass rate: the model-free checks of
  :mod:`realign_core.evaluation.kinematic` on prompts taken from the validation
  split's own human captions (:func:`~realign_core.evaluation.kinematic.val_prompts.split_prompts`),
  a guard no learned model shares with the guide (a walk must still walk).

Search (each candidate generates the same prompts with the same seeds):

1. step scale, with mu = eta = 1: ``scales`` candidates;
2. at the chosen scale, the reward mix (mu, eta) in ``mixes``;
3. the cost lever: the number of guided steps in ``guided_steps_options``,
   each at the chosen scale times each of ``stage3_scale_factors`` (fewer
   guided steps may need a stronger push per step).

Rule: a candidate qualifies if its judge FID is at most ``fid_slack`` x the
baseline's and its kinematic pass rate is at least the baseline's minus
``kin_slack`` (if none does, those meeting the kinematic guard alone; if none
does either, the candidate with the highest pass rate).  Stages 1 and 2: among qualifying ones the highest judge R@1 wins.
Stage 3 (speed): the *fewest* guided steps whose judge R@1 gain over the
baseline is at least ``keep_gain`` of the best qualifying gain (ties: lower
judge FID, as R@1 differences within the kept gain are noise) -- ReAlign's
quality at the least extra latency.  The winner is written to
``guidance.toml`` as ``scale`` plus the defaults that strength 1 means.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from realign_core.evaluation import metrics as M
from realign_core.evaluation.kinematic.checks import KinematicPrompt
from realign_core.evaluation.kinematic.report import kinematic_alignment, pipeline_generator
from realign_core.evaluation.kinematic.val_prompts import split_prompts
from realign_core.evaluation.results_table import eval_subset, generate_set
from realign_core.evaluation.scoring import EVALUATOR_KINDS, EvalSet, embed_feature_list, embed_texts, load_scorer
from realign_core.guidance.reward_guidance import UNTUNED_KEYS, GuidanceSettings, guided_step_indices
from realign_core.models.evaluator import MetricSpaceScorer
from realign_core.models.layout import checkpoint_path
from realign_core.pipeline import SamplingConfig, TextToMotionPipeline


@dataclass(frozen=True)
class TuningConfig:
    scales: tuple[float, ...] = (3.0, 10.0, 30.0, 100.0)
    mixes: tuple[tuple[float, float], ...] = ((1.0, 0.0), (0.0, 1.0), (1.0, 1.0))
    guided_steps_options: tuple[int, ...] = (5, 10, 25)
    stage3_scale_factors: tuple[float, ...] = (1.0, 3.0)
    placements: tuple[str, ...] = ("spread",)   # stage 3: where the guided steps sit
    keep_gain: float = 0.9
    fid_slack: float = 1.0
    kin_slack: float = 0.03        # allowed drop of the validation kinematic pass rate (fraction)
    kin_samples: int = 4           # samples per validation kinematic prompt (0 = no kinematic guard)
    prompts: int = 256
    steps: int = 50
    sampler: str = "ddim"
    batch: int = 32
    reward_space: str = "motion"   # which reward model guides every candidate ("latent": no decoder in the loop)


class Judge:
    """R@1 and FID in the unit-sphere embedding space of a retrieval model that does not guide: a reward
    model (``reward_plain``: its clean-motion view) or an evaluator-style scorer (``MetricSpaceScorer``,
    e.g. the validation-only words judge of ``configs/judge_words.toml``; its metric-space embeddings
    divided by ``metric_scale``)."""

    def __init__(self, model, prompts: EvalSet):
        self.model = model
        self.text = self._embed_text(prompts.captions)
        self.real = self.embed(prompts.features)

    def _embed_text(self, captions: list[str]) -> np.ndarray:
        if isinstance(self.model, MetricSpaceScorer):
            return embed_texts(self.model, captions) / self.model.config.metric_scale
        return self.model.encode_text(captions).cpu().numpy()

    def embed(self, features: list[np.ndarray]) -> np.ndarray:
        """(N, D) unit embeddings of normalised feature arrays (T_i, 263)."""
        if isinstance(self.model, MetricSpaceScorer):
            scale = self.model.config.metric_scale
            return embed_feature_list(lambda x, mask: self.model.embed_motions(x, mask) / scale, features,
                                      device=self.model.device)
        return embed_feature_list(lambda x, mask: self.model.encode_motion(x, mask, 0), features,
                                  device=self.model.device)

    def score(self, features: list[np.ndarray]) -> dict[str, float]:
        emb = self.embed(features)
        sims = [self._r1(emb, seed) for seed in range(5)]
        return {"judge_r1": float(np.mean(sims)), "judge_fid": M.fid(emb, self.real)}

    def _r1(self, emb: np.ndarray, seed: int) -> float:
        order = np.random.default_rng(seed).permutation(len(emb))
        hits, groups = 0.0, 0
        for g in range(len(order) // 32):
            idx = order[g * 32:(g + 1) * 32]
            sims = self.text[idx] @ emb[idx].T
            hits += float((sims.argmax(axis=1) == np.arange(32)).mean())
            groups += 1
        return hits / max(groups, 1)


def load_judge(root: str | Path, kind: str, prompts: EvalSet, device: str = "cpu") -> Judge:
    """The judge ``kind`` under model root ``root``: a reward model (``reward_plain``; tests use ``reward``)
    or an evaluator kind (``evaluator_words`` trained with ``configs/judge_words.toml`` into its own root)."""
    from realign_core.models.reward_model import REWARD_TASKS, load_reward_model

    path = checkpoint_path(root, kind)
    if kind not in (*REWARD_TASKS, *EVALUATOR_KINDS):
        raise ValueError(f"judge kind must be one of {[*REWARD_TASKS, *EVALUATOR_KINDS]}, got {kind!r}")
    if not path.is_file():
        raise FileNotFoundError(f"judge checkpoint {path} not found (realign train {kind} ... --out {root})")
    model = load_reward_model(path, device) if kind in REWARD_TASKS else load_scorer(kind, path, device)
    return Judge(model, prompts)


def candidate_key(scale: float, settings: GuidanceSettings | dict | None) -> str:
    """Identity of a candidate within one tuning run (same prompts, seeds and sampler)."""
    s = asdict(settings) if isinstance(settings, GuidanceSettings) else settings
    return json.dumps({"scale": float(scale) if s else 0.0, "settings": s}, sort_keys=True)


def reusable_rows(previous: Path | None, generator: str, prompts: int, cfg: TuningConfig) -> dict[str, dict]:
    """Scored candidates of an earlier run on the same generator, prompts and sampler (scores are
    deterministic under the seeds, so an interrupted or extended search need not redo them)."""
    if previous is None or not previous.is_file():
        return {}
    old = json.loads(previous.read_text())
    old_cfg = old.get("config", {})
    same = (old.get("generator") == generator and old.get("prompts") == prompts
            and all(old_cfg.get(k) == getattr(cfg, k) for k in ("steps", "batch", "sampler", "kin_samples")))
    rows = [old["baseline"], *(r for stage in old.get("stages", []) for r in stage)] if same else []
    # settings re-read through GuidanceSettings, so fields added since (at their defaults) still match
    return {candidate_key(r["scale"], GuidanceSettings(**r["settings"]) if r["settings"] else None): r for r in rows}


def _describe(row: dict[str, Any]) -> str:
    kin = f", kinematic {100 * row['kin_pass']:.1f} %" if row.get("kin_pass") is not None else ""
    return (f"  scale {row['scale']:g} {row['settings']}: judge R@1 {row['judge_r1']:.3f}, "
            f"FID {row['judge_fid']:.3f}{kin}, {row['seconds_per_motion']:.3f} s/motion")


def generate_candidate(pipe: TextToMotionPipeline, prompts: EvalSet, settings: GuidanceSettings | None, scale: float,
                       sampling: SamplingConfig, batch: int, seed_offset: int = 0) -> tuple[list[np.ndarray], float]:
    """One normalised motion (T_i, 263) per prompt, prompt i with seed ``seed_offset + i``, guided by
    ``settings`` at step ``scale``; and the wall seconds per motion it took."""
    pipe.calibration = replace(pipe.calibration, scale=scale)
    start = time.perf_counter()
    seeds = [seed_offset + i for i in range(len(prompts.captions))]
    feats = generate_set(pipe, prompts, seeds, sampling, settings, batch)
    return feats, (time.perf_counter() - start) / len(prompts.captions)


def evaluate_candidate(pipe: TextToMotionPipeline, judge: Judge, prompts: EvalSet, settings: GuidanceSettings | None,
                       scale: float, cfg: TuningConfig, known: dict[str, dict] | None = None,
                       kin_prompts: Sequence[KinematicPrompt] = ()) -> dict[str, Any]:
    """Generate the prompts with these settings and score them with the judge and the validation
    kinematic checks (or reuse ``known``).  ``seconds_per_motion``: wall time of the judge prompts'
    generation per prompt (a load-sensitive indication; ``realign bench`` measures latency)."""
    key = candidate_key(scale, settings)
    if known and key in known:
        print(_describe(known[key]) + " (scored by an earlier run)", flush=True)
        return known[key]
    sampling = SamplingConfig(sampler=cfg.sampler, steps=cfg.steps)
    feats, seconds = generate_candidate(pipe, prompts, settings, scale, sampling, cfg.batch)
    row: dict[str, Any] = {"seconds_per_motion": seconds, **judge.score(feats), "kin_pass": None, "kin_matched": None}
    if kin_prompts and cfg.kin_samples > 0:
        row.update(kinematic_pass(pipe, settings, scale, sampling, kin_prompts, cfg.kin_samples, cfg.batch))
    row.update({"scale": scale, "settings": asdict(settings) if settings else None})
    print(_describe(row), flush=True)
    return row


def kinematic_pass(pipe: TextToMotionPipeline, settings: GuidanceSettings | None, scale: float,
                   sampling: SamplingConfig, kin_prompts: Sequence[KinematicPrompt], samples: int,
                   batch: int) -> dict[str, Any]:
    """{"kin_pass", "kin_matched"}: the validation kinematic checks of ``samples`` motions per prompt
    generated with these settings at this step scale (the tuning's kinematic guard)."""
    pipe.calibration = replace(pipe.calibration, scale=scale)
    report = kinematic_alignment(pipeline_generator(pipe, sampling, settings), kin_prompts, samples, batch_size=batch)
    return {"kin_pass": report.overall, "kin_matched": report.matched}


def meets_kinematic_guard(row: dict[str, Any], baseline: dict[str, Any], slack: float) -> bool:
    """Whether a candidate keeps the validation kinematic pass rate within ``slack`` of the baseline's
    (true when either was not measured)."""
    if row.get("kin_pass") is None or baseline.get("kin_pass") is None:
        return True
    return row["kin_pass"] >= baseline["kin_pass"] - slack - 1e-9


def _qualifying(rows: list[dict[str, Any]], baseline: dict[str, Any], cfg: TuningConfig) -> list[dict[str, Any]]:
    """Rows meeting both guards; else those meeting the kinematic one; else the best by kinematics."""
    kin_ok = [r for r in rows if meets_kinematic_guard(r, baseline, cfg.kin_slack)]
    both = [r for r in kin_ok if r["judge_fid"] <= cfg.fid_slack * baseline["judge_fid"]]
    return both or kin_ok or [max(rows, key=lambda r: r.get("kin_pass") or 0.0)]


def _best(rows: list[dict[str, Any]], baseline: dict[str, Any], cfg: TuningConfig) -> dict[str, Any]:
    return max(_qualifying(rows, baseline, cfg), key=lambda r: r["judge_r1"])


def _guided_count(row: dict[str, Any], steps: int) -> int:
    k = row["settings"]["guided_steps"]
    return steps if k is None else min(k, steps)


def cheapest_keeping_gain(rows: list[dict[str, Any]], baseline: dict[str, Any], cfg: TuningConfig) -> dict[str, Any]:
    """The stage-3 rule: fewest guided steps keeping ``keep_gain`` of the best R@1 gain (FID within
    slack); among those, the most realistic (lowest judge FID)."""
    ok = _qualifying(rows, baseline, cfg)
    best_gain = max(r["judge_r1"] for r in ok) - baseline["judge_r1"]
    enough = [r for r in ok if r["judge_r1"] - baseline["judge_r1"] >= cfg.keep_gain * best_gain]
    return min(enough, key=lambda r: (_guided_count(r, cfg.steps), r["judge_fid"], -r["judge_r1"]))


def stage3_schedules(cfg: TuningConfig) -> list[tuple[int, str]]:
    """(guided steps, placement) pairs of stage 3, one per distinct set of guided steps (one guided step
    is the last one whether spread or late)."""
    seen: set[frozenset[int]] = set()
    out = []
    for k in cfg.guided_steps_options:
        for p in cfg.placements:
            steps = frozenset(guided_step_indices(cfg.steps, k, p))
            if k < cfg.steps and steps not in seen:
                seen.add(steps)
                out.append((k, p))
    return out


def tune(models: Path, data: Path, generator: str = "mld", cfg: TuningConfig = TuningConfig(),
         device: str = "cpu", reuse: Path | None = None) -> dict[str, Any]:
    """Run the three-stage search on the validation split; returns every row and the winner.

    reuse: an earlier ``guidance_tuning_GEN.json`` whose candidates are taken instead of re-scored
    when the generator, prompt count and sampler match.
    """
    prompts = eval_subset(data, "val", cfg.prompts)
    kin_prompts = split_prompts(data, "val") if cfg.kin_samples > 0 else []
    known = reusable_rows(reuse, generator, len(prompts.captions), cfg)
    judge = load_judge(models, "reward_plain", prompts, device)
    pipe = TextToMotionPipeline.from_checkpoints(models, device, generator=generator, reward_kind="reward")

    def score(settings: GuidanceSettings | None, scale: float) -> dict[str, Any]:
        return evaluate_candidate(pipe, judge, prompts, settings, scale, cfg, known, kin_prompts)

    baseline = score(None, 0.0)
    both = GuidanceSettings(strength=1.0, reward_space=cfg.reward_space)
    stage1 = [score(both, s) for s in cfg.scales]
    scale = _best(stage1, baseline, cfg)["scale"]
    stage2 = [score(replace(both, mu=mu, eta=eta), scale)
              for mu, eta in cfg.mixes if (mu, eta) != (1.0, 1.0)] + [r for r in stage1 if r["scale"] == scale]
    mix = GuidanceSettings(**_best(stage2, baseline, cfg)["settings"])
    stage3 = [score(replace(mix, guided_steps=k, placement=p), scale * f)
              for k, p in stage3_schedules(cfg) for f in cfg.stage3_scale_factors]
    stage3 += [r for r in stage2 if GuidanceSettings(**r["settings"]) == mix]
    winner = cheapest_keeping_gain(stage3, baseline, cfg)
    return {"generator": generator, "split": "val", "prompts": len(prompts.captions), "config": asdict(cfg),
            "kinematic_prompts": [{"name": p.name, "caption": p.caption} for p in kin_prompts],
            "baseline": baseline, "stages": [stage1, stage2, stage3], "winner": winner,
            "guards_met": meets_kinematic_guard(winner, baseline, cfg.kin_slack)
            and winner["judge_fid"] <= cfg.fid_slack * baseline["judge_fid"]}


def format_tuning(result: dict[str, Any]) -> str:
    """Markdown table of every scored candidate of a ``tune`` result, the winner in bold."""
    lines = ["| stage | scale | mu | eta | guided steps | judge R@1 | judge FID | kinematic % | s/motion |",
             "|---|---|---|---|---|---|---|---|---|"]
    b = result["baseline"]
    lines.append(f"| baseline (no guidance) | – | – | – | – | {b['judge_r1']:.3f} | {b['judge_fid']:.3f} | "
                 f"{_kin(b)} | {b.get('seconds_per_motion', float('nan')):.3f} |")
    win = candidate_key(result["winner"]["scale"], result["winner"]["settings"])
    for stage, rows in enumerate(result["stages"], 1):
        for r in rows:
            s, bold = r["settings"], "**" if candidate_key(r["scale"], r["settings"]) == win else ""
            where = "" if s["placement"] == "spread" or s["guided_steps"] is None else f" ({s['placement']})"
            lines.append(f"| {stage} | {r['scale']:g} | {s['mu']:g} | {s['eta']:g} | {s['guided_steps'] or 'all'}{where} "
                         f"| {bold}{r['judge_r1']:.3f}{bold} | {bold}{r['judge_fid']:.3f}{bold} | {_kin(r)} | "
                         f"{r.get('seconds_per_motion', float('nan')):.3f} |")
    return "\n".join(lines)


def _kin(row: dict[str, Any]) -> str:
    return "–" if row.get("kin_pass") is None else f"{100 * row['kin_pass']:.1f}"


def write_guidance_toml(path: Path, generator: str, winner: dict[str, Any], sampling: dict[str, Any] | None = None) -> None:
    """Write/replace table [generator] of guidance.toml with the winner (keeps other tables and the
    table's ``UNTUNED_KEYS``: control steps and iterations, CFG scale, which the tuning does not choose)."""
    import tomllib

    tables: dict[str, dict[str, Any]] = {}
    if path.is_file():
        tables = tomllib.loads(path.read_text())
    s = winner["settings"]
    kept = {k: v for k, v in tables.get(generator, {}).items() if k in UNTUNED_KEYS}
    tables[generator] = {**kept, "scale": winner["scale"], "strength": 1.0, "mu": s["mu"], "eta": s["eta"],
                         "placement": s["placement"],
                         **({"guided_steps": s["guided_steps"]} if s["guided_steps"] is not None else {}),
                         **({"reward_space": s["reward_space"]} if s.get("reward_space", "motion") != "motion" else {}),
                         **(sampling or {})}
    _dump_guidance_toml(path, tables)


def write_guidance_key(path: Path, generator: str, key: str, value: Any) -> None:
    """Set one key (e.g. ``realign choose-cfg``'s ``cfg_scale``, ``realign choose-foot-lock``'s ``foot_lock``) in
    table [generator] of guidance.toml, keeping the rest."""
    import tomllib

    tables = tomllib.loads(path.read_text()) if path.is_file() else {}
    tables.setdefault(generator, {})[key] = value
    _dump_guidance_toml(path, tables)


def _dump_guidance_toml(path: Path, tables: dict[str, dict[str, Any]]) -> None:
    lines = ["# ReAlign guidance calibration, chosen on the validation split by `realign tune-guidance` or `realign",
             "# choose-guidance` (judges: the non-step-aware reward model, and a words-only judge; the evaluators are",
             "# never used); cfg_scale by `realign choose-cfg`, foot_lock by `realign choose-foot-lock`. strength 1 =",
             "# this setting."]
    for name, table in tables.items():
        lines.append(f"\n[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
