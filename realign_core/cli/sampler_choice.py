"""``realign choose-sampler``: the sampler and step count chosen on the validation split by the judges
(``realign_core/evaluation/sampler_choice.py``)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from realign_core.cli.evaluate import DATA_HELP


def add_choose_sampler_command(sub: argparse._SubParsersAction) -> None:
    """The ``realign choose-sampler`` sub-command."""
    cs = sub.add_parser("choose-sampler", help="choose the sampler and step count on the validation split (e.g. the "
                        "consistency model at 1-4 steps against the validated DDIM; unguided and default-guided, judged)")
    cs.add_argument("--models", required=True, help="model root (generator, reward models, guidance.toml)")
    cs.add_argument("--data", required=True, help=DATA_HELP)
    cs.add_argument("--candidates", nargs="+", default=["lcm:1", "lcm:2", "lcm:4"], help="SAMPLER:STEPS pairs")
    cs.add_argument("--judges", nargs="+", default=["reward_plain"], help="KIND or KIND@ROOT (as choose-guidance)")
    cs.add_argument("--prompts", type=int, default=0, help="validation prompts (0: the whole split)")
    cs.add_argument("--seeds", type=int, default=1, help="seed sets, scores averaged")
    cs.add_argument("--r1-slack", type=float, default=0.01, help="allowed drop of the guided judge R@1, per judge")
    cs.add_argument("--kin-slack", type=float, default=0.08)
    cs.add_argument("--kin-samples", type=int, default=4, help="samples per validation kinematic prompt (0: none)")
    cs.add_argument("-o", "--output", required=True, help="JSON of every row and the choice (resumable)")
    cs.add_argument("--device", default="auto")
    cs.set_defaults(func=run_choose_sampler)


def run_choose_sampler(args: argparse.Namespace) -> int:
    """Judge the reference and every candidate, apply the rule, write the JSON and print the table."""
    from realign_core.device import pick_device
    from realign_core.evaluation.guidance_choice import JudgeSpec, Precision
    from realign_core.evaluation.sampler_choice import (SamplerChoiceConfig, choose_sampler, format_sampler_choice,
                                                        judge_samplers)

    models, out = Path(args.models), Path(args.output)
    try:
        cfg = SamplerChoiceConfig(candidates=tuple(args.candidates), r1_slack=args.r1_slack, kin_slack=args.kin_slack,
                                  kin_samples=args.kin_samples)
        judges = [JudgeSpec.parse(j, models) for j in args.judges]
        result = judge_samplers(models, Path(args.data), judges, cfg, pick_device(args.device),
                                Precision(args.prompts, args.seeds), out)
        choice = choose_sampler(result, cfg)
    except (OSError, ValueError, KeyError) as err:
        raise SystemExit(f"realign choose-sampler: {err}") from None
    out.write_text(json.dumps({**result, "choice": choice}, indent=1) + "\n")
    print(format_sampler_choice(result, choice))
    print(f"choice: {choice['choice']} (reference {choice['reference']}) -> {out}")
    return 0
