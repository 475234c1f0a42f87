"""The classifier-free guidance (CFG) scale, chosen on the validation split by the judges (``realign choose-cfg``).

CFG trades realism for text alignment: a larger scale follows the text more and looks less like real
motion.  The MLD-style generator shipped with MLD's 7.5; issue 11 asks for the scale to be chosen again on
validation for the trained generator.  For each candidate scale this module generates, with the same
prompts and seed sets as ``realign choose-guidance`` (set r gives prompt i seed r * 100003 + i):

* the unguided generator, and
* the models' default ReAlign guidance (guidance.toml: what a user gets),

scores both with every judge (judge R@1 and FID; never the report evaluators) and measures the
validation kinematic pass rate of both (the model-free guard of ``tune-guidance``).

Rule (:func:`choose_cfg`), about what users get -- the default guided take: among the scales whose guided
judge R@1 is at least the current scale's minus ``r1_slack`` by every judge and whose guided kinematic pass
rate is at least the current one's minus ``kin_slack``, the one with the lowest guided judge FID relative to
the current scale's, averaged over the judges; the current scale when no other is lower.  The unguided rows
are reported, not used by the rule.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from realign_core.evaluation.guidance_choice import JudgeSpec, Precision, judge_candidate, judge_scores
from realign_core.evaluation.guidance_tuning import kinematic_pass, load_judge
from realign_core.evaluation.kinematic.val_prompts import split_prompts
from realign_core.evaluation.results_table import eval_subset
from realign_core.pipeline import SamplingConfig, TextToMotionPipeline


@dataclass(frozen=True)
class CfgChoiceConfig:
    scales: tuple[float, ...] = (3.0, 4.0, 5.0, 6.0, 7.5)
    r1_slack: float = 0.01      # allowed drop of the guided judge R@1 against the current scale, per judge
    kin_slack: float = 0.03     # allowed drop of the guided validation kinematic pass rate (fraction)
    kin_samples: int = 4        # samples per validation kinematic prompt (0 = no kinematic guard)
    batch: int = 32


def judge_cfg_scales(models: Path, data: Path, judges: list[JudgeSpec], cfg: CfgChoiceConfig = CfgChoiceConfig(),
                     generator: str = "mld", device: str = "cpu", precision: Precision = Precision(0, 1),
                     out: Path | None = None) -> dict[str, Any]:
    """Rows {cfg_scale, guided, judges: {name: {judge_r1, judge_fid, per_seed}}, kin_pass, seconds_per_motion}
    for every scale, unguided and with the default guidance.  ``out`` is written after each row; rows already
    there are reused (:func:`reusable_cfg_rows`), so an interrupted run continues and another guide keeps the
    unguided rows."""
    prompts = eval_subset(data, "val", precision.prompts or None)
    pipe = TextToMotionPipeline.from_checkpoints(models, device, generator=generator, reward_kind="reward")
    sampling = pipe.default_sampling
    settings = pipe.default_guidance
    result: dict[str, Any] = {
        "generator": generator, "models": str(models), "split": "val", "prompts": len(prompts.captions),
        "seeds": precision.seeds, "sampler": sampling.sampler, "steps": sampling.steps,
        "current_cfg": pipe.default_cfg, "guidance": {"scale": pipe.calibration.scale, **settings.__dict__},
        "judges": {j.name: {"root": str(j.root), "kind": j.kind} for j in judges}, "config": cfg.__dict__,
        "foot_lock": sampling.foot_lock, "checkpoints": checkpoint_ids(models, generator), "rows": []}
    done = reusable_cfg_rows(out, result)
    loaded = {j.name: load_judge(j.root, j.kind, prompts, device) for j in judges}
    kin_prompts = split_prompts(data, "val") if cfg.kin_samples > 0 else []
    for scale in cfg.scales:
        for guided in (False, True):
            key = _row_key(scale, guided)
            if key not in done:
                done[key] = judge_row(pipe, prompts, replace(sampling, cfg_scale=scale), guided, loaded,
                                      precision.seeds, cfg.batch, cfg.kin_samples, kin_prompts)
            result["rows"].append(done[key])
            print(describe(done[key]), flush=True)
            if out is not None:
                out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def judge_row(pipe: TextToMotionPipeline, prompts, sampling: SamplingConfig, guided: bool, judges: dict[str, Any],
              seeds: int, batch: int, kin_samples: int, kin_prompts: list) -> dict[str, Any]:
    """One row: unguided or default-guided takes with ``sampling``, judged by every judge over ``seeds`` seed sets
    (``cfg_scale``, ``guided``, ``seconds_per_motion``, ``judges``) and, with ``kin_prompts``, the kinematic
    pass rate of ``kin_samples`` motions per prompt."""
    settings = pipe.default_guidance if guided else None
    scale = pipe.calibration.scale
    cand = {"scale": scale, "settings": asdict(settings) if guided else None}
    judged = judge_candidate(pipe, prompts, cand, sampling, batch, judges, seeds)
    row = {"cfg_scale": sampling.cfg_scale, "guided": guided, "seconds_per_motion": judged["seconds_per_motion"],
           "judges": judged["judges"]}
    if kin_prompts:
        row.update(kinematic_pass(pipe, settings, scale, sampling, kin_prompts, kin_samples, batch))
    return row


def _row_key(scale: float, guided: bool) -> tuple[float, bool]:
    return float(scale), bool(guided)


def checkpoint_ids(models: Path, generator: str) -> dict[str, dict[str, str | None]]:
    """{"generator": {kind: id}, "guide": {kind: id}}: the first 12 hex digits of the sha256 of each checkpoint
    the unguided takes (the generator) and the guided takes add (the reward models) are made with; None where a
    root has none."""
    from realign_core.guidance.reward_bank import file_sha256
    from realign_core.models.layout import checkpoint_path

    def ids(kinds: tuple[str, ...]) -> dict[str, str | None]:
        paths = {k: checkpoint_path(models, k) for k in kinds}
        return {k: file_sha256(p)[:12] if p.is_file() else None for k, p in paths.items()}

    return {"generator": ids(("vae", "denoiser") if generator == "mld" else ("mdm",)),
            "guide": ids(("reward", "latent_reward"))}


def reusable_cfg_rows(out: Path | None, result: dict[str, Any]) -> dict[tuple[float, bool], dict[str, Any]]:
    """The rows of an earlier ``out`` judged by the same judges that this run would make again: unguided rows when
    the generator's checkpoints, prompts, seeds, sampler, foot lock and kinematic samples are the same; guided rows
    when, in addition, the guidance settings and the reward checkpoints are."""
    if out is None or not out.is_file():
        return {}
    old = json.loads(out.read_text())
    same = ("generator", "prompts", "seeds", "sampler", "steps")
    ckpt_old, ckpt = old.get("checkpoints", {}), result["checkpoints"]
    if any(old.get(k) != result[k] for k in same) or ckpt_old.get("generator") != ckpt["generator"] or \
            bool(old.get("foot_lock")) != bool(result["foot_lock"]) or \
            old.get("config", {}).get("kin_samples") != result["config"]["kin_samples"]:
        return {}
    same_guide = old.get("guidance") == result["guidance"] and ckpt_old.get("guide") == ckpt["guide"]
    return {_row_key(r["cfg_scale"], r["guided"]): r for r in old.get("rows", [])
            if all(n in r.get("judges", {}) for n in result["judges"]) and (same_guide or not r["guided"])}


def choose_cfg(result: dict[str, Any], cfg: CfgChoiceConfig | None = None) -> dict[str, Any]:
    """The rule of the module docstring on ``judge_cfg_scales``' result: {"current", "choice", "rows"} with
    each guided row annotated (``r1_ok``, ``kin_ok``, ``relative_fid``)."""
    cfg = cfg or CfgChoiceConfig(**{k: tuple(v) if k == "scales" else v for k, v in result["config"].items()})
    guided = {r["cfg_scale"]: r for r in result["rows"] if r["guided"]}
    current = guided.get(float(result["current_cfg"]))
    if current is None:
        raise ValueError(f"no guided row at the current CFG scale {result['current_cfg']:g}: add it to the scales")
    rows = []
    for scale, row in sorted(guided.items()):
        r1_ok = all(row["judges"][n]["judge_r1"] >= v["judge_r1"] - cfg.r1_slack - 1e-9
                    for n, v in current["judges"].items())
        kin_ok = (row.get("kin_pass") is None or current.get("kin_pass") is None
                  or row["kin_pass"] >= current["kin_pass"] - cfg.kin_slack - 1e-9)
        rel = float(np.mean([row["judges"][n]["judge_fid"] / v["judge_fid"] for n, v in current["judges"].items()]))
        rows.append({**row, "r1_ok": r1_ok, "kin_ok": kin_ok, "relative_fid": rel})
    eligible = [r for r in rows if r["r1_ok"] and r["kin_ok"]]
    best = min(eligible, key=lambda r: (r["relative_fid"], r["cfg_scale"] != current["cfg_scale"]))
    return {"current": current["cfg_scale"], "choice": best["cfg_scale"], "rule": cfg.__dict__, "rows": rows}


def kinematic_text(row: dict[str, Any], prefix: str = ", kinematic ", missing: str = "") -> str:
    """A judged row's kinematic pass rate as text (``missing`` when it was not measured)."""
    return f"{prefix}{row['kin_pass']:.1%}" if row.get("kin_pass") is not None else missing


def judge_columns(judges: list[str], row: dict[str, Any] | None = None) -> str:
    """Markdown cells of every judge's R@1 and FID: the header's (``row`` None) or a judged row's."""
    if row is None:
        return " | ".join(f"{n} R@1 | {n} FID" for n in judges)
    return " | ".join(f"{row['judges'][n]['judge_r1']:.3f} | {row['judges'][n]['judge_fid']:.3f}" for n in judges)


def describe(row: dict[str, Any]) -> str:
    what = f"cfg {row['cfg_scale']:g} {'guided' if row['guided'] else 'unguided'}"
    return f"{what}: {judge_scores(row)}{kinematic_text(row)}"


def format_cfg_choice(result: dict[str, Any], choice: dict[str, Any]) -> str:
    """A markdown table: per scale and row, every judge's R@1 / FID and the kinematic pass rate."""
    judges = list(result["judges"])
    head = "| CFG | row | " + judge_columns(judges) + " | kinematic | rule |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    notes = {r["cfg_scale"]: r for r in choice["rows"]}
    for row in sorted(result["rows"], key=lambda r: (r["cfg_scale"], r["guided"])):
        scores, kin = judge_columns(judges, row), kinematic_text(row, "", "-")
        rule = ""
        if row["guided"]:
            n = notes[row["cfg_scale"]]
            rule = (("**chosen** " if n["cfg_scale"] == choice["choice"] else "")
                    + f"FID x{n['relative_fid']:.3f}" + ("" if n["r1_ok"] else ", R@1 drop")
                    + ("" if n["kin_ok"] else ", kinematic drop"))
        lines.append(f"| {row['cfg_scale']:g} | {'default guidance' if row['guided'] else 'unguided'} | {scores} "
                     f"| {kin} | {rule} |")
    return "\n".join(lines)


def plot_cfg_choice(result: dict[str, Any], choice: dict[str, Any], out: str | Path) -> Path:
    """Judge R@1 and FID against the CFG scale, one colour per judge, solid = default guidance, dashed =
    unguided; the chosen scale marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from realign_core.evaluation.benchmark.report import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, name in enumerate(result["judges"]):
        for guided, style in ((True, "-"), (False, "--")):
            rows = sorted((r for r in result["rows"] if r["guided"] == guided), key=lambda r: r["cfg_scale"])
            xs = [r["cfg_scale"] for r in rows]
            label = f"{name}, {'default guidance' if guided else 'unguided'}"
            for ax, metric in zip(axes, ("judge_r1", "judge_fid")):
                ax.plot(xs, [r["judges"][name][metric] for r in rows], style, marker="o", color=f"C{i}", label=label)
    for ax, title in zip(axes, ("judge R@1 (higher is better)", "judge FID (lower is better)")):
        ax.axvline(choice["choice"], linestyle=":", color="grey")
        ax.set_xlabel("CFG scale")
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"CFG scale on the validation split ({result['prompts']} prompts x {result['seeds']} seeds, "
                 f"{result['sampler']} {result['steps']}): chosen {choice['choice']:g}", fontsize=10)
    return save_figure(fig, out)
