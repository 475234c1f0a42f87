"""The sampler and step count, chosen on the validation split by the judges (``realign choose-sampler``).

Candidates are (sampler, steps) pairs such as the consistency model at 1, 2 and 4 steps (``lcm:4``); the
reference is the models' validated sampler (guidance.toml: DDIM 10).  Every candidate and the reference is
generated unguided and with the models' default ReAlign guidance (guided steps capped at the sampler's steps),
with the same prompts and seed sets as ``realign choose-cfg``, scored by every judge (never the report
evaluators), timed, and checked by the validation kinematic suite.

Rule (:func:`choose_sampler`), about what users get -- the default guided take: a candidate is eligible when
its guided judge R@1 is at least the reference's minus ``r1_slack`` and its guided judge FID at most the
reference's, by every judge, and its guided kinematic pass rate at most ``kin_slack`` below the reference's;
the choice is the eligible candidate with the lowest measured seconds per motion, else the reference.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from realign_core.evaluation.cfg_choice import judge_columns, judge_row, kinematic_text
from realign_core.evaluation.guidance_choice import JudgeSpec, Precision, judge_scores
from realign_core.evaluation.guidance_tuning import load_judge
from realign_core.evaluation.kinematic.val_prompts import split_prompts
from realign_core.evaluation.results_table import eval_subset
from realign_core.pipeline import SAMPLERS, SamplingConfig, TextToMotionPipeline


def parse_candidate(text: str) -> tuple[str, int]:
    """"lcm:4" -> ("lcm", 4); ValueError naming the problem otherwise."""
    name, _, steps = text.partition(":")
    if name not in SAMPLERS or not steps.isdigit() or int(steps) < 1:
        raise ValueError(f"candidate {text!r}: expected SAMPLER:STEPS with SAMPLER one of {', '.join(SAMPLERS)} "
                         f"and STEPS >= 1")
    return name, int(steps)


@dataclass(frozen=True)
class SamplerChoiceConfig:
    candidates: tuple[str, ...] = ("lcm:1", "lcm:2", "lcm:4")
    r1_slack: float = 0.01      # allowed drop of the guided judge R@1 against the reference, per judge
    kin_slack: float = 0.08     # allowed drop of the guided validation kinematic pass rate (fraction)
    kin_samples: int = 4        # samples per validation kinematic prompt (0 = no kinematic guard)
    batch: int = 32

    def __post_init__(self) -> None:
        for c in self.candidates:
            parse_candidate(c)


def _key(sampler: str, steps: int, guided: bool, consistency: str | None = None) -> str:
    """A row's identity; the consistency model's rows also carry its checkpoint's hash (another adapter, other rows)."""
    tail = f":{consistency}" if sampler == "lcm" else ""
    return f"{sampler}:{steps}:{'guided' if guided else 'unguided'}{tail}"


def consistency_id(models: Path) -> str | None:
    """The first 12 hex digits of the sha256 of MODELS/denoiser_lcm/best.pt, or None when there is none."""
    from realign_core.models.layout import checkpoint_path
    from realign_core.guidance.reward_bank import file_sha256

    path = checkpoint_path(models, "denoiser_lcm")
    return file_sha256(path)[:12] if path.is_file() else None


def judge_samplers(models: Path, data: Path, judges: list[JudgeSpec], cfg: SamplerChoiceConfig = SamplerChoiceConfig(),
                   device: str = "cpu", precision: Precision = Precision(0, 1),
                   out: Path | None = None) -> dict[str, Any]:
    """Rows {sampler, steps, guided, judges: {name: {judge_r1, judge_fid, per_seed}}, kin_pass,
    seconds_per_motion} for the reference and every candidate, unguided and with the default guidance.
    ``out`` is written after each row; rows already there (same prompts, seeds, guidance, judges) are reused."""
    prompts = eval_subset(data, "val", precision.prompts or None)
    pipe = TextToMotionPipeline.from_checkpoints(models, device, generator="mld", reward_kind="reward")
    reference = pipe.default_sampling
    result: dict[str, Any] = {
        "models": str(models), "split": "val", "prompts": len(prompts.captions), "seeds": precision.seeds,
        "reference": f"{reference.sampler}:{reference.steps}", "cfg_scale": pipe.default_cfg,
        "consistency_model": consistency_id(models),
        "guidance": {"scale": pipe.calibration.scale, **pipe.default_guidance.__dict__},
        "judges": {j.name: {"root": str(j.root), "kind": j.kind} for j in judges}, "config": cfg.__dict__, "rows": []}
    done = _reusable(out, result)
    loaded = {j.name: load_judge(j.root, j.kind, prompts, device) for j in judges}
    kin_prompts = split_prompts(data, "val") if cfg.kin_samples > 0 else []
    for name, steps in [(reference.sampler, reference.steps)] + [parse_candidate(c) for c in cfg.candidates]:
        sampling = replace(reference, sampler=name, steps=steps, cfg_scale=None if name == "lcm" else pipe.default_cfg)
        for guided in (False, True):
            key = _key(name, steps, guided, result["consistency_model"])
            if key not in done:
                row = judge_row(pipe, prompts, sampling, guided, loaded, precision.seeds, cfg.batch, cfg.kin_samples,
                                kin_prompts)
                done[key] = {"sampler": name, "steps": steps, **row}
                if name == "lcm":
                    done[key]["consistency_model"] = result["consistency_model"]
            result["rows"].append(done[key])
            print(describe(done[key]), flush=True)
            if out is not None:
                out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def _reusable(out: Path | None, result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    if out is None or not out.is_file():
        return {}
    old = json.loads(out.read_text())
    if any(old.get(k) != result[k] for k in ("prompts", "seeds", "guidance", "cfg_scale")) or \
            old.get("config", {}).get("kin_samples") != result["config"]["kin_samples"]:
        return {}
    return {_key(r["sampler"], r["steps"], r["guided"], r.get("consistency_model")): r for r in old.get("rows", [])
            if all(n in r.get("judges", {}) for n in result["judges"])}


def choose_sampler(result: dict[str, Any], cfg: SamplerChoiceConfig | None = None) -> dict[str, Any]:
    """The rule of the module docstring: {"reference", "choice", "rows"} with each guided candidate row
    annotated (``r1_ok``, ``fid_ok``, ``kin_ok``, ``eligible``)."""
    cfg = cfg or SamplerChoiceConfig(**{k: tuple(v) if k == "candidates" else v for k, v in result["config"].items()})
    guided = {f"{r['sampler']}:{r['steps']}": r for r in result["rows"] if r["guided"]}
    ref = guided.get(result["reference"])
    if ref is None:
        raise ValueError(f"no guided row of the reference sampler {result['reference']}")
    rows = []
    for name, row in guided.items():
        r1_ok = all(row["judges"][n]["judge_r1"] >= v["judge_r1"] - cfg.r1_slack - 1e-9 for n, v in ref["judges"].items())
        fid_ok = all(row["judges"][n]["judge_fid"] <= v["judge_fid"] + 1e-9 for n, v in ref["judges"].items())
        kin_ok = (row.get("kin_pass") is None or ref.get("kin_pass") is None
                  or row["kin_pass"] >= ref["kin_pass"] - cfg.kin_slack - 1e-9)
        rows.append({"candidate": name, "r1_ok": r1_ok, "fid_ok": fid_ok, "kin_ok": kin_ok,
                     "eligible": r1_ok and fid_ok and kin_ok, "seconds_per_motion": row["seconds_per_motion"]})
    eligible = [r for r in rows if r["eligible"]]
    best = min(eligible, key=lambda r: r["seconds_per_motion"]) if eligible else None
    return {"reference": result["reference"], "choice": best["candidate"] if best else result["reference"],
            "rule": cfg.__dict__, "rows": rows}


def describe(row: dict[str, Any]) -> str:
    what = f"{row['sampler']} {row['steps']} {'guided' if row['guided'] else 'unguided'}"
    return f"{what}: {judge_scores(row)}{kinematic_text(row)}, {row['seconds_per_motion']:.3f} s/motion"


def format_sampler_choice(result: dict[str, Any], choice: dict[str, Any]) -> str:
    """A markdown table: per sampler and row, every judge's R@1 / FID, the kinematic rate, the time, the rule."""
    judges = list(result["judges"])
    head = "| sampler | row | " + judge_columns(judges) + " | kinematic | s/motion | rule |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    notes = {r["candidate"]: r for r in choice["rows"]}
    for row in result["rows"]:
        name = f"{row['sampler']}:{row['steps']}"
        scores, kin = judge_columns(judges, row), kinematic_text(row, "", "-")
        rule = ""
        if row["guided"]:
            n = notes[name]
            rule = ("reference" if name == choice["reference"] else "eligible" if n["eligible"] else
                    ", ".join(w for w, ok in (("R@1 drop", n["r1_ok"]), ("FID higher", n["fid_ok"]),
                                              ("kinematic drop", n["kin_ok"])) if not ok))
            rule = ("**chosen** " if name == choice["choice"] else "") + rule
        lines.append(f"| {row['sampler']} {row['steps']} | {'default guidance' if row['guided'] else 'unguided'} | "
                     f"{scores} | {kin} | {row['seconds_per_motion']:.3f} | {rule} |")
    return "\n".join(lines)
