"""``realign choose-foot-lock``: whether takes are foot-locked by default, chosen on the validation split by the
judges (``realign_core/evaluation/foot_lock_choice.py``)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from realign_core.cli.evaluate import DATA_HELP


def add_choose_foot_lock_command(sub: argparse._SubParsersAction) -> None:
    """The ``realign choose-foot-lock`` sub-command."""
    fl = sub.add_parser("choose-foot-lock", help="choose on the validation split whether takes are foot-locked by "
                        "default (unguided and default-guided, lock off and on, judged)")
    fl.add_argument("--models", required=True, help="model root (generator, reward models, guidance.toml)")
    fl.add_argument("--data", required=True, help=DATA_HELP)
    fl.add_argument("--generator", default="mld", choices=("mld", "mdm"))
    fl.add_argument("--judges", nargs="+", default=["reward_plain"], help="KIND or KIND@ROOT (as choose-guidance)")
    fl.add_argument("--prompts", type=int, default=0, help="validation prompts (0: the whole split)")
    fl.add_argument("--seeds", type=int, default=1, help="seed sets, scores averaged")
    fl.add_argument("--r1-slack", type=float, default=0.01, help="allowed drop of the guided judge R@1, per judge")
    fl.add_argument("--fid-slack", type=float, default=0.03, help="allowed relative rise of the guided judge FID")
    fl.add_argument("--kin-samples", type=int, default=4, help="samples per validation kinematic prompt (0: none)")
    fl.add_argument("--reuse", default=None, help="an earlier realign choose-cfg JSON whose rows at the current scale "
                    "(made without the lock, same models, prompts, seeds, judges) stand in for the unlocked rows")
    fl.add_argument("-o", "--output", required=True, help="JSON of every row and the choice")
    fl.add_argument("--write-toml", action="store_true", help="write the choice to MODELS/guidance.toml")
    fl.add_argument("--device", default="auto")
    fl.set_defaults(func=run_choose_foot_lock)


def run_choose_foot_lock(args: argparse.Namespace) -> int:
    """Judge the four rows, apply the rule, write the JSON (and guidance.toml) and print the table."""
    from realign_core.device import pick_device
    from realign_core.evaluation.foot_lock_choice import (FootLockChoiceConfig, choose_foot_lock,
                                                          format_foot_lock_choice, judge_foot_lock, write_foot_lock)
    from realign_core.evaluation.guidance_choice import JudgeSpec, Precision

    models, out = Path(args.models), Path(args.output)
    try:
        cfg = FootLockChoiceConfig(r1_slack=args.r1_slack, fid_slack=args.fid_slack, kin_samples=args.kin_samples)
        judges = [JudgeSpec.parse(j, models) for j in args.judges]
        result = judge_foot_lock(models, Path(args.data), judges, cfg, args.generator, pick_device(args.device),
                                 Precision(args.prompts, args.seeds), Path(args.reuse) if args.reuse else None)
        choice = choose_foot_lock(result, cfg)
    except (OSError, ValueError, KeyError) as err:
        raise SystemExit(f"realign choose-foot-lock: {err}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**result, "choice": choice}, indent=1) + "\n")
    print(format_foot_lock_choice(result, choice))
    print(f"choice: foot lock {'on' if choice['choice'] else 'off'} -> {out}")
    if args.write_toml:
        print(f"wrote foot_lock = {str(choice['choice']).lower()} to [{args.generator}] of "
              f"{write_foot_lock(models, args.generator, choice['choice'])}")
    return 0
