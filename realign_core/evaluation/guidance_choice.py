"""The default guidance, chosen across reward spaces by several validation judges under a latency budget.

``realign tune-guidance`` searches one reward space with one judge (``reward_plain``).  Issue 13 asks
that the default cost at most ``max_slowdown`` x the unguided sampler while keeping ``keep_gain`` of
*full guidance*'s gain -- every step guided by the motion-space reward, the paper's method -- in R@1
and in FID, by every judge.  This module:

1. pools the candidates of one or more tuning JSONs (same generator, prompts, sampler, steps, batch);
2. re-generates each one (same prompts, same seeds) and scores it with every judge -- one that shares
   the motion-space guide's design (``reward_plain``) and one that shares nothing with either guide
   (the words judge of ``configs/judge_words.toml``); the model-free kinematic pass rate does not
   depend on the judge and is carried over from the tuning rows;
3. joins the latency measured by ``realign bench --json`` (per reward space and guided-step count);
4. picks the cheapest candidate within the budget that keeps the gain by every judge and meets the
   kinematic guard; if none does, the cheapest that keeps the gain at any cost (``budget_met`` false);
5. (``combine_choices``) applies the same rule across runs that differ only in the latent reward model
   (e.g. a smaller, cheaper one), the unguided and motion-space rows reused from one run (``reuse``).

All of it reads the validation split only; the report evaluators never choose anything.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from realign_core.evaluation.benchmark.report import guided_key, load_bench_rows
from realign_core.evaluation.guidance_tuning import (candidate_key, generate_candidate, kinematic_pass, load_judge,
                                                     meets_kinematic_guard)
from realign_core.evaluation.kinematic.val_prompts import split_prompts
from realign_core.evaluation.results_table import eval_subset
from realign_core.evaluation.scoring import EvalSet
from realign_core.guidance.reward_guidance import GuidanceSettings
from realign_core.pipeline import SamplingConfig, TextToMotionPipeline

SAME_FIELDS = ("steps", "sampler", "batch", "kin_samples")   # tuning config fields the pooled runs share


@dataclass(frozen=True)
class ChoiceConfig:
    max_slowdown: float = 1.3   # latency budget, x the unguided latency of the same sampler
    keep_gain: float = 0.9      # fraction of full guidance's R@1 and FID gains to keep, by every judge
    kin_slack: float = 0.03     # allowed drop of the validation kinematic pass rate (fraction)
    batch: int = 1              # latency rows of this batch size


@dataclass(frozen=True)
class JudgeSpec:
    """A judge: model ``kind`` under model root ``root``; ``name`` labels its scores."""

    name: str
    root: Path
    kind: str

    @classmethod
    def parse(cls, text: str, models: Path | None) -> "JudgeSpec":
        """``KIND`` (under ``models``) or ``KIND@ROOT`` (named ``KIND@<ROOT's folder name>``)."""
        kind, _, root = text.partition("@")
        if not kind:
            raise ValueError(f"judge {text!r}: expected KIND or KIND@ROOT")
        if not root and models is None:
            raise ValueError(f"judge {text!r}: no model root to find it in (give KIND@ROOT)")
        return cls(f"{kind}@{Path(root).name}" if root else kind, Path(root) if root else Path(models), kind)


def pool_candidates(tunings: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(baseline row, every other candidate row once) of tuning results that share generator, prompts,
    steps, sampler, batch and kinematic samples (else ValueError naming the field)."""
    if not tunings:
        raise ValueError("no tuning results to pool")
    first = tunings[0]
    for t in tunings[1:]:
        for field in ("generator", "prompts"):
            if t[field] != first[field]:
                raise ValueError(f"tunings differ in {field}: {first[field]!r} vs {t[field]!r}")
        for field in SAME_FIELDS:
            if t["config"].get(field) != first["config"].get(field):
                raise ValueError(f"tunings differ in config.{field}: {first['config'].get(field)!r} vs "
                                 f"{t['config'].get(field)!r}")
    seen, rows = set(), []
    for t in tunings:
        for row in (r for stage in t["stages"] for r in stage):
            key = _key(row)
            if key not in seen:
                seen.add(key)
                rows.append(row)
    return first["baseline"], rows


def _key(row: dict[str, Any]) -> str:
    return candidate_key(row["scale"], GuidanceSettings(**row["settings"]) if row["settings"] else None)


@dataclass(frozen=True)
class Precision:
    """How many validation prompts and seeds each candidate is judged on: ``prompts`` None = the tunings'
    own subset (their scores are then reproduced), 0 = the whole split; ``seeds`` sets of seeds (set r gives
    prompt i seed r * 100003 + i; set 0 is the tunings'), whose scores are averaged."""

    prompts: int | None = None
    seeds: int = 1


SEED_STRIDE = 100003


def rejudge(models: Path, data: Path, tunings: list[dict[str, Any]], judges: list[JudgeSpec], device: str = "cpu",
            out: Path | None = None, precision: Precision = Precision(), only: set[str] | None = None,
            reuse: Path | None = None, own_kinematic: bool = False) -> dict[str, Any]:
    """Every pooled candidate (or those whose ``candidate_key`` is in ``only``, and the baseline) generated
    again and scored by every judge (rows: ``judges`` {name: {judge_r1, judge_fid, per_seed}}, ``kin_pass``
    carried over from the tunings).  ``out``: written after each candidate; rows already there, judged on
    the same prompts and seeds by every judge, are reused, so an interrupted run continues.  ``reuse``: an
    earlier run (other ``models``) whose rows that do not read the latent reward model -- unguided and
    motion-space guides, the same generator and reward models -- are taken as they are when judged on the
    same prompts and seeds by every judge (to compare latent reward models without re-generating the rest);
    the latent rows' kinematic pass rates are then measured again with this model (``kin_own``), as the
    tunings measured them (same validation prompts, samples and batch).  ``own_kinematic``: every row's
    kinematic pass rate is measured again with ``models`` (the generator changed since the tunings)."""
    baseline, candidates = pool_candidates(tunings)
    candidates = [c for c in candidates if only is None or _key(c) in only]
    first = tunings[0]
    cfg = first["config"]
    n_prompts = first["prompts"] if precision.prompts is None else (precision.prompts or None)
    prompts = eval_subset(data, "val", n_prompts)
    names = [j.name for j in judges]
    done = reusable_without_latent(reuse, names, len(prompts.captions), precision.seeds)
    done.update(_reusable(out, names, len(prompts.captions), precision.seeds))
    loaded = {j.name: load_judge(j.root, j.kind, prompts, device) for j in judges}
    pipe = TextToMotionPipeline.from_checkpoints(models, device, generator=first["generator"], reward_kind="reward")
    sampling = SamplingConfig(sampler=cfg["sampler"], steps=cfg["steps"])
    result: dict[str, Any] = {"generator": first["generator"], "models": str(models), "split": "val",
                              "prompts": len(prompts.captions),
                              "seeds": precision.seeds, "steps": cfg["steps"], "sampler": cfg["sampler"],
                              "cfg_scale": pipe.default_cfg,
                              "batch": cfg["batch"],
                              "judges": {j.name: {"root": str(j.root), "kind": j.kind} for j in judges}, "rows": []}
    own_kin = (reuse is not None or own_kinematic) and cfg.get("kin_samples", 0) > 0   # not the tunings' models
    kin_prompts = split_prompts(data, "val") if own_kin else []
    for n, cand in enumerate([baseline, *candidates]):
        key = _key(cand)
        if key not in done:
            done[key] = judge_candidate(pipe, prompts, cand, sampling, cfg["batch"], loaded, precision.seeds)
        remeasure = own_kinematic or (cand["settings"] and _space(cand) == "latent")
        if own_kin and remeasure and not done[key].get("kin_own"):
            settings = GuidanceSettings(**cand["settings"]) if cand["settings"] else None
            done[key].update(kinematic_pass(pipe, settings, cand["scale"], sampling, kin_prompts, cfg["kin_samples"],
                                            cfg["batch"]), kin_own=True)
        result["rows"].append(done[key])
        print(f"[{n + 1}/{len(candidates) + 1}] {describe(done[key])}", flush=True)
        if out is not None:
            out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def judge_candidate(pipe: TextToMotionPipeline, prompts: EvalSet, cand: dict[str, Any], sampling: SamplingConfig,
                    batch: int, judges: dict[str, Any], seeds: int) -> dict[str, Any]:
    """One candidate generated with each seed set and scored by every judge (means over the seed sets)."""
    settings = GuidanceSettings(**cand["settings"]) if cand["settings"] else None
    per_seed: dict[str, list[dict[str, float]]] = {name: [] for name in judges}
    seconds = 0.0
    for r in range(seeds):
        feats, s = generate_candidate(pipe, prompts, settings, cand["scale"], sampling, batch, r * SEED_STRIDE)
        seconds += s / seeds
        for name, judge in judges.items():
            per_seed[name].append(judge.score(feats))
    scores = {name: {"judge_r1": float(np.mean([x["judge_r1"] for x in runs])),
                     "judge_fid": float(np.mean([x["judge_fid"] for x in runs])), "per_seed": runs}
              for name, runs in per_seed.items()}
    return {"scale": cand["scale"], "settings": cand["settings"], "kin_pass": cand.get("kin_pass"),
            "seconds_per_motion": seconds, "judges": scores}


def _reusable(out: Path | None, names: list[str], prompts: int, seeds: int) -> dict[str, dict[str, Any]]:
    if out is None or not out.is_file():
        return {}
    old = json.loads(out.read_text())
    if old.get("prompts") != prompts or old.get("seeds", 1) != seeds:
        return {}
    return {_key(r): r for r in old.get("rows", []) if all(n in r.get("judges", {}) for n in names)}


def reusable_without_latent(path: Path | None, names: list[str], prompts: int, seeds: int) -> dict[str, dict[str, Any]]:
    """{candidate key: row} of an earlier run's rows judged on as many prompts and seeds by every judge in
    ``names``, except those guided by the latent reward model (they depend on which one it was)."""
    rows = _reusable(path, names, prompts, seeds)
    return {k: r for k, r in rows.items() if not r["settings"] or _space(r) != "latent"}


def screened(choice: dict[str, Any], min_kept: float, budget: float | None = None) -> set[str]:
    """Candidate keys worth judging more precisely: the reference, the choice, and every row within
    ``budget`` (default: the choice's own) keeping at least ``min_kept`` of full guidance's gains (R@1 and
    FID) by every judge."""
    budget = (choice["config"]["max_slowdown"] if budget is None else budget) + 1e-9
    keys = {_key(choice["reference"])} | ({_key(choice["choice"])} if choice["choice"] else set())
    return keys | {_key(r) for r in choice["rows"]
                   if r["slowdown"] is not None and r["slowdown"] <= budget and _min_kept(r) >= min_kept}


def describe(row: dict[str, Any]) -> str:
    s = row["settings"]
    what = "unguided" if s is None else (f"{s.get('reward_space', 'motion')} {s['guided_steps'] or 'all'} "
                                         f"{s['placement']} x{row['scale']:g} mu {s['mu']:g} eta {s['eta']:g}")
    return f"{what}: {judge_scores(row)}"


def judge_scores(row: dict[str, Any]) -> str:
    """Every judge's R@1 and FID of a judged row, on one line."""
    return ", ".join(f"{n}: R@1 {v['judge_r1']:.3f} FID {v['judge_fid']:.3f}" for n, v in row["judges"].items())


def latency_table(bench: str | Path | dict | list, batch: int = 1
                  ) -> tuple[float, dict[tuple[str, str], tuple[float, float]]]:
    """(unguided seconds per motion, {(reward space, guided-step key): (seconds, slowdown)}) from ``realign
    bench --json`` rows of one batch size (a guided step costs the same wherever it sits, so placement is
    ignored).  slowdown: the row's own (with ``--rounds``, the median of paired per-round ratios), else the
    seconds over the unguided row's."""
    rows = [r for r in load_bench_rows(bench) if r["batch"] == batch]
    unguided = [r["per_motion_s"] for r in rows if guided_key(r["guided_steps"]) == "0"]
    if not unguided:
        raise ValueError(f"latency rows have no unguided row at batch {batch}")
    table = {(r.get("reward_space", "motion"), guided_key(r["guided_steps"], r.get("steps"))):
             (r["per_motion_s"], r.get("slowdown", r["per_motion_s"] / unguided[0]))
             for r in rows if guided_key(r["guided_steps"]) != "0"}
    return unguided[0], table


def gain_fractions(row: dict[str, Any], baseline: dict[str, Any], reference: dict[str, Any]) -> dict[str, float]:
    """{"r1", "fid"}: the fraction of the reference's gain over the baseline that ``row`` keeps (one judge's
    scores).  When the reference does not lower FID there is no FID gain to keep: "fid" is 1 if the row raises
    FID no more than the reference does (not at all, if the reference leaves it unchanged), else 0.  (Until the
    ds2 generator, whose unguided samples every guided setting makes less realistic by the judges, it was 1 only
    for rows not raising FID at all; for every earlier choice the two readings pick the same row.)"""
    r1_gain = reference["judge_r1"] - baseline["judge_r1"]
    fid_gain = baseline["judge_fid"] - reference["judge_fid"]
    r1 = (row["judge_r1"] - baseline["judge_r1"]) / r1_gain if r1_gain > 0 else 1.0
    fid = ((baseline["judge_fid"] - row["judge_fid"]) / fid_gain if fid_gain > 0
           else float(row["judge_fid"] <= reference["judge_fid"]))
    return {"r1": r1, "fid": fid}


def _space(row: dict[str, Any]) -> str:
    return row["settings"].get("reward_space", "motion")


def full_guidance(rows: list[dict[str, Any]], baseline: dict[str, Any], primary: str, kin_slack: float) -> dict[str, Any]:
    """The reference: motion-space guidance on every step, the scale and mix the primary judge scores best
    among those keeping the kinematic guard and not raising its FID (the tuning's own stage-1/2 rule)."""
    full = [r for r in rows if r["settings"] and r["settings"]["guided_steps"] is None and _space(r) == "motion"]
    if not full:
        raise ValueError("no motion-space candidate guides every step (the full-guidance reference)")
    ok = [r for r in full if meets_kinematic_guard(r, baseline, kin_slack)
          and r["judges"][primary]["judge_fid"] <= baseline["judges"][primary]["judge_fid"]]
    return max(ok or full, key=lambda r: r["judges"][primary]["judge_r1"])


def choose(result: dict[str, Any], bench: str | Path | dict | list, cfg: ChoiceConfig = ChoiceConfig()) -> dict[str, Any]:
    """Annotate every re-judged row with its slowdown and kept gains, and pick the default (module docstring)."""
    baseline, rows = result["rows"][0], result["rows"][1:]
    judges = list(result["judges"])
    reference = full_guidance(rows, baseline, judges[0], cfg.kin_slack)
    unguided, lat = latency_table(bench, cfg.batch)
    annotated = []
    for row in rows:
        seconds, slowdown = lat.get((_space(row), guided_key(row["settings"]["guided_steps"], result["steps"])),
                                    (None, None))
        kept = {n: gain_fractions(row["judges"][n], baseline["judges"][n], reference["judges"][n]) for n in judges}
        annotated.append({**row, "latency_s": seconds, "slowdown": slowdown,
                          "kept": kept, "kin_ok": meets_kinematic_guard(row, baseline, cfg.kin_slack),
                          "keeps_gain": all(v >= cfg.keep_gain for k in kept.values() for v in k.values())})
    pick, within = pick_default(annotated, cfg)
    return {"config": cfg.__dict__, "steps": result["steps"], "unguided_s": unguided, "baseline": baseline,
            "reference": reference,
            "rows": annotated, "choice": pick, "budget_met": within}


def pick_default(rows: list[dict[str, Any]], cfg: ChoiceConfig) -> tuple[dict[str, Any] | None, bool]:
    """(choice, whether it is within the budget) among annotated rows: the cheapest keeping ``keep_gain`` of
    the reference's gains by every judge and the kinematic guard within ``max_slowdown``, else the cheapest
    keeping them at any cost, else None."""
    eligible = [r for r in rows if r["kin_ok"] and r["slowdown"] is not None and _min_kept(r) >= cfg.keep_gain]
    within = [r for r in eligible if r["slowdown"] <= cfg.max_slowdown + 1e-9]
    return min(within or eligible, key=lambda r: (round(r["slowdown"], 3), -_min_kept(r)), default=None), bool(within)


def combine_choices(labelled: dict[str, dict[str, Any]], cfg: ChoiceConfig | None = None) -> dict[str, Any]:
    """One choice across several ``choose-guidance`` results ({label: result}) that differ only in the latent
    reward model (each run's ``--models`` root holds another ``latent_reward``; every other row is the same
    guide).  Their baseline and reference must carry the same judge scores (same prompts, seeds and judges,
    else ValueError naming the run); latent rows are tagged ``latent_model`` = label and kept per run, the
    others once; the rule is applied again with ``cfg`` (default: the first run's)."""
    if not labelled:
        raise ValueError("no choose-guidance results to combine")
    first_label, first = next(iter(labelled.items()))
    head = first["choice"]
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str | None]] = set()
    for label, result in labelled.items():
        choice = result["choice"]
        for field in ("baseline", "reference"):
            if _scores(choice[field]) != _scores(head[field]):
                raise ValueError(f"{label}: its {field} scores differ from {first_label}'s (other prompts, seeds, "
                                 f"judges or models); only runs that share them can be combined")
        for row in choice["rows"]:
            latent = bool(row["settings"]) and _space(row) == "latent"
            key = (_key(row), label if latent else None)
            if key not in seen:
                seen.add(key)
                rows.append({**row, "latent_model": label} if latent else dict(row))
    cfg = cfg or ChoiceConfig(**head["config"])
    for row in rows:
        row["keeps_gain"] = _min_kept(row) >= cfg.keep_gain
    pick, within = pick_default(rows, cfg)
    return {**head, "config": cfg.__dict__, "rows": rows, "choice": pick, "budget_met": within,
            "combined": {label: result.get("models") for label, result in labelled.items()}}


def _scores(row: dict[str, Any]) -> dict[str, tuple[float, float]]:
    return {n: (round(j["judge_r1"], 9), round(j["judge_fid"], 9)) for n, j in row["judges"].items()}


def _min_kept(row: dict[str, Any]) -> float:
    return min(v for k in row["kept"].values() for v in k.values())


def _identity(row: dict[str, Any]) -> tuple[str, str | None]:
    return _key(row), row.get("latent_model")


def _label(row: dict[str, Any]) -> str:
    """The guide's name in tables and plots: the reward space, and which latent model when combined."""
    return _space(row) + (f" ({row['latent_model']})" if row.get("latent_model") else "")


def format_choice(choice: dict[str, Any], max_slowdown: float = 2.0) -> str:
    """Markdown table: the baseline, the reference and every row at most ``max_slowdown`` x unguided,
    cheapest first; kept gains in % of the reference's, the choice in bold."""
    judges = list(choice["baseline"]["judges"])
    head = ["reward space", "guided steps", "scale", "mu, eta", "x unguided", "kinematic %"]
    for n in judges:
        head += [f"{n} R@1", f"{n} FID", f"{n} kept R@1 / FID %"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    b = choice["baseline"]
    lines.append("| none | – | – | – | 1.00 | " + _pct(b.get("kin_pass")) + " | "
                 + " | ".join(f"{b['judges'][n]['judge_r1']:.3f} | {b['judges'][n]['judge_fid']:.3f} | –" for n in judges) + " |")
    pick = _identity(choice["choice"]) if choice["choice"] else None
    ref = _key(choice["reference"])
    shown = sorted((r for r in choice["rows"] if r["slowdown"] is not None
                    and (r["slowdown"] <= max_slowdown or _key(r) == ref)),
                   key=lambda r: (r["slowdown"], -_min_kept(r)))
    for r in shown:
        s, bold = r["settings"], "**" if _identity(r) == pick else ""
        label = ("all" if s["guided_steps"] is None else f"{s['guided_steps']} ({s['placement']})") + \
            (" = full guidance" if _key(r) == ref else "")
        cells = [_label(r), label, f"{r['scale']:g}", f"{s['mu']:g}, {s['eta']:g}", f"{bold}{r['slowdown']:.2f}{bold}",
                 _pct(r.get("kin_pass"))]
        for n in judges:
            j, k = r["judges"][n], r["kept"][n]
            cells += [f"{j['judge_r1']:.3f}", f"{j['judge_fid']:.3f}", f"{bold}{100 * k['r1']:.1f} / {100 * k['fid']:.1f}{bold}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def plot_choice(choice: dict[str, Any], out: str | Path) -> Path:
    """One panel per judge: the share of full guidance's gain kept (the smaller of R@1 and FID, %) against
    the slowdown, one series per reward space and placement (the best scale and mix at each guided-step
    count, by the smallest share over all judges); dotted lines at the budget and ``keep_gain``; the
    choice starred."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from realign_core.evaluation.benchmark.report import save_figure

    judges = list(choice["baseline"]["judges"])
    best: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in (r for r in choice["rows"] if r["slowdown"] is not None):
        s = r["settings"]
        series = (_label(r), "all steps" if s["guided_steps"] is None else s["placement"])
        count = guided_key(s["guided_steps"], choice.get("steps"))
        held = best.setdefault(series, {})
        if count not in held or _min_kept(r) > _min_kept(held[count]):
            held[count] = r
    fig, axes = plt.subplots(1, len(judges), figsize=(5 * len(judges), 3.8), squeeze=False)
    cfg = choice["config"]
    for ax, judge in zip(axes[0], judges):
        for (space, placement), held in sorted(best.items()):
            pts = sorted(held.items(), key=lambda kv: kv[1]["slowdown"])
            ys = [100 * min(r["kept"][judge].values()) for _, r in pts]
            ax.plot([r["slowdown"] for _, r in pts], ys, marker="o", linestyle="-" if space.startswith("latent") else "--",
                    label=f"{space} reward, {placement}")
            for (count, r), y in zip(pts, ys):
                ax.annotate(count, (r["slowdown"], y), textcoords="offset points", xytext=(3, 3), fontsize=7)
        if choice["choice"] is not None:
            pick = choice["choice"]
            ax.plot([pick["slowdown"]], [100 * min(pick["kept"][judge].values())], marker="*", markersize=14,
                    color="black", linestyle="none", label="choice")
        ax.axhline(100 * cfg["keep_gain"], linestyle=":", color="grey")
        ax.axvline(cfg["max_slowdown"], linestyle=":", color="grey")
        ax.set_xlabel("x unguided latency (batch 1, measured)")
        ax.set_title(f"judge: {judge}", fontsize=9)
        ax.set_ylabel("% of full guidance's gain kept")
        ax.set_ylim(bottom=min(0, ax.get_ylim()[0]))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("Guidance default on validation: gain kept (the smaller of R@1's and FID's) vs cost "
                 "(numbers: guided steps)", fontsize=10)
    return save_figure(fig, out)
