"""``realign eval``: the measured numbers of a trained model stack, and the kinematic alignment command.

    realign eval --models DIR --data DIR [--parts vae,real,generator,reward]   (MODELS/eval_models.json)
    realign eval --models DIR --data DIR --table [--curve] [--generators mld,mdm]   (results table)
    realign eval --models DIR --data DIR --kinematic [--kinematic-samples N]   (kinematic alignment)
    realign eval --models DIR --data DIR --judge-val [--limit N]   (generator on val, judged by reward_plain)

``realign eval --kinematic`` runs the standard recipe of the kinematic command:
the checks validated on ``--data``'s real clips, then baseline vs default
guidance for every generator present.  The command itself, with all its
options, is ``python -m realign_core.cli.evaluate [--models DIR] [--validate-on DATA_DIR] ...``
(:func:`kinematic_main`).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# What every command that reads training data needs (train, eval, tune-guidance, bank); generate and serve don't.
DATA_HELP = ("dataset folder in HumanML3D layout, built by 'realign data build' or 'python3.11 build.py data' "
             "from CMU mocap joints + KIT-ML + the HumanML3D index (not shipped in this repository; generate, "
             "serve and the Blender add-on need only the models)")

# realign_core.pipeline.SAMPLERS, copied so that parsing never imports torch (tests/test_schedulers.py checks)
SAMPLER_CHOICES = ("ddim", "ddpm", "diffusers-ddim", "dpmsolver++", "unipc", "lcm")


def add_eval_command(sub: argparse._SubParsersAction) -> None:
    """The ``realign eval`` sub-command."""
    ev = sub.add_parser("eval", help="measure a trained model stack on the test split (needs a built dataset)",
                        description="Measure a trained model stack on a built dataset's test split. " + DATA_HELP)
    ev.add_argument("--models", required=True, help="model root (vae/, denoiser/, reward/, reward_plain/, evaluator/)")
    ev.add_argument("--data", required=True, help=DATA_HELP)
    ev.add_argument("--repeats", type=int, default=5, help="repeated generations (mean ± 95%% CI)")
    ev.add_argument("--real-repeats", type=int, default=20, help="reshuffles of the 32-sample groups for real data")
    ev.add_argument("--steps", type=int, default=None,
                    help="sampler steps (default: the models' validated setting in guidance.toml; --judge-val: 50)")
    ev.add_argument("--cfg", type=float, default=None,
                    help="classifier-free guidance scale (default: guidance.toml's cfg_scale, else the generator's)")
    ev.add_argument("--table", action="store_true",
                    help="the results table: baseline vs ReAlign variants on both generators")
    ev.add_argument("--kinematic", action="store_true",
                    help="model-free alignment on fixed direction/action prompts, baseline vs default guidance, "
                         "for each generator (and the checks validated on --data's real clips)")
    ev.add_argument("--generators", default="mld,mdm",
                    help="--table: rows of these generators (a partial run updates the table's JSON)")
    ev.add_argument("--rows", nargs="+", default=None,
                    help="--table: only these rows, by name (e.g. 'mld baseline' 'mld + both (T2M+M2M)'; "
                         "a partial run updates the table's JSON)")
    ev.add_argument("--kinematic-samples", type=int, default=32, help="--kinematic: samples per prompt")
    ev.add_argument("--split", default="test", help="split scored by --table")
    ev.add_argument("--curve", action="store_true",
                    help="--table: also the default guidance at 5/10/25/all guided steps (quality-vs-latency "
                         "curve: realign bench --plot-quality MODELS/results_table.json)")
    ev.add_argument("--levers", nargs="+", default=None, metavar="TUNING_JSON",
                    help="--table: the baseline and, per validation search (tune-guidance JSON, one reward space "
                         "each), its best validated setting at 1/2/3/5/all late guided steps (the test-split "
                         "quality-vs-latency curve, every lever its own series)")
    ev.add_argument("--samplers", action="store_true",
                    help="--levers: also the sampler-steps lever (DDIM 5/20, the consistency model 'lcm' at 1/2/4 "
                         "steps), unguided and with the default guidance")
    ev.add_argument("--latency", nargs="+", default=None, help="--levers: realign bench --json files with a row per "
                    "reward space and guided-step count (and per sampler and step count with --samplers), for --plot")
    ev.add_argument("--plot", default=None, help="--levers: PNG of R@1 and FID against the latency, per evaluator")
    ev.add_argument("--judge-val", action="store_true",
                    help="judge the unguided generator on --limit validation prompts (default 256) with "
                         "reward_plain, to choose checkpoints (writes MODELS/generator_val_judge.json)")
    ev.add_argument("--judge-models", default=None, help="--judge-val: root of the judge (default --models)")
    ev.add_argument("--generator", default="mld", choices=("mld", "mdm"), help="--judge-val: which generator")
    ev.add_argument("--sampler", default="ddim", choices=SAMPLER_CHOICES, help="--judge-val: the sampler")
    ev.add_argument("--spacing", default=None, choices=("leading", "trailing"),
                    help="--judge-val: timestep spacing (default: the sampler's)")
    ev.add_argument("--parts", default="vae,real,generator,reward",
                    help="comma-separated subset of vae,real,generator,reward (a partial run updates the JSON)")
    ev.add_argument("--limit", type=int, default=None, help="a seeded random subset of N test prompts")
    ev.add_argument("--device", default="auto")
    ev.add_argument("-o", "--output", default=None, help="JSON path (default MODELS/eval_models.json)")
    ev.set_defaults(func=run_eval)


def validated_steps(models: str | Path, generator: str = "mld") -> int:
    """The sampler steps the models' guidance calibration was chosen with (guidance.toml), else 50."""
    from realign_core.guidance.reward_guidance import GuidanceCalibration
    from realign_core.models.layout import guidance_path

    return GuidanceCalibration.load(guidance_path(Path(models)), generator).steps or 50


def run_eval(args: argparse.Namespace) -> int:
    """``realign eval``: the model measurements, or ``--table`` / ``--kinematic``."""
    if args.steps is None:
        args.steps = 50 if args.judge_val else validated_steps(args.models, args.generator)
    if args.table:
        return _eval_table(args)
    if args.kinematic:
        return _eval_kinematic(args)
    if args.judge_val:
        return _eval_judge_val(args)
    from realign_core.evaluation.model_eval import (PARTS, evaluate_models, format_result, merge_partial_result,
                                                     save_result)
    from realign_core.pipeline import SamplingConfig

    models, data = Path(args.models), Path(args.data)
    sampling = SamplingConfig(steps=args.steps, cfg_scale=args.cfg)
    parts = tuple(args.parts.split(","))
    result = evaluate_models(models, data, args.repeats, args.real_repeats, sampling, args.device, args.limit, parts)
    out = Path(args.output) if args.output else models / "eval_models.json"
    if out.is_file() and set(parts) != set(PARTS):      # a partial run updates the earlier results
        result = merge_partial_result(json.loads(out.read_text()), result, parts)
    save_result(result, out)
    print(format_result(result))
    print(f"written to {out}")
    return 0


def _eval_judge_val(args: argparse.Namespace) -> int:
    from realign_core.device import pick_device
    from realign_core.evaluation.generator_selection import judge_generator, save

    result = judge_generator(args.models, args.data, args.generator, args.limit or 256, args.steps,
                             pick_device(args.device), args.judge_models, sampler=args.sampler, spacing=args.spacing,
                             cfg_scale=args.cfg)
    out = save(result, Path(args.output) if args.output else Path(args.models) / "generator_val_judge.json")
    print(f"{args.generator} unguided on {result['prompts']} val prompts, {args.sampler}-{args.steps} "
          f"({result['spacing']}): judge R@1 {result['judge_r1']:.3f}, "
          f"judge FID {result['judge_fid']:.3f} ({result['seconds']:.0f} s) -> {out}")
    return 0


def _eval_table(args: argparse.Namespace) -> int:
    from realign_core.device import pick_device
    from realign_core.evaluation.results_table import format_table, merge_tables, run_table, save_table

    from realign_core.evaluation.results_table import lever_methods, sampler_methods, table_methods

    models, generators = Path(args.models), tuple(args.generators.split(","))
    methods = table_methods(models, generators, curve=args.curve)
    if args.levers:
        if args.plot and not args.latency:
            raise SystemExit("realign eval --levers --plot: give the latency rows with --latency")
        methods = [m for m in methods if m.name == "mld baseline"] + lever_methods(models, args.levers)
        if args.samplers:
            methods += sampler_methods(models)
    if args.rows:
        known = {m.name: m for m in methods}
        unknown = [r for r in args.rows if r not in known]
        if unknown:
            raise SystemExit(f"realign eval --rows: no row {unknown[0]!r}; rows: {', '.join(known)}")
        methods = [known[r] for r in args.rows]
    result = run_table(models, Path(args.data), args.split, args.limit, args.repeats, args.steps,
                       pick_device(args.device), methods=methods, curve=args.curve, generators=generators)
    out = Path(args.output) if args.output else models / "results_table.json"
    if out.is_file():
        result = merge_tables(json.loads(out.read_text()), result)
    save_table(result, out)
    print(f"{result['prompts']} {result['split']} prompts, {result['repeats']} repeats, {result['steps']} steps")
    print(format_table(result))
    for kind in result.get("rows_by_evaluator", {}):
        print(f"\nscored by {kind}:\n{format_table(result, kind)}")
    print(f"written to {out}")
    if args.levers and args.plot:
        from realign_core.evaluation.benchmark.report import plot_levers_test
        print(f"wrote {plot_levers_test(result, args.latency, args.plot)}")
    return 0


def _eval_kinematic(args: argparse.Namespace) -> int:
    """Kinematic alignment, baseline vs the validated default guidance, for every generator present;
    and the checks validated on the real clips of ``--data``."""
    from realign_core.device import pick_device
    from realign_core.models.layout import generator_present

    models = Path(args.models)
    common = ["--samples", str(args.kinematic_samples), "--steps", str(args.steps),
              "--device", pick_device(args.device)]
    kinematic_main(["--validate-on", args.data, "-o", str(models / "kinematic_validation.json")])
    for gen in ("mld", "mdm"):
        if generator_present(models, gen):
            kinematic_main(["--models", str(models), "--generator", gen, *common])
    return 0


# ---------------------------------------------------------------------------------------------- kinematic


def kinematic_parser() -> argparse.ArgumentParser:
    """Options of the kinematic alignment command."""
    from realign_core.evaluation.kinematic.checks import PROMPTS_BY_NAME

    p = argparse.ArgumentParser(prog="python -m realign_core.cli.evaluate",
                                description="Kinematic (model-free) alignment on fixed direction/action prompts, "
                                            "baseline vs ReAlign guidance; and validation of the checks on real clips.")
    p.add_argument("--models", type=Path, help="model folder (vae/ + denoiser/ or mdm/, reward/, guidance.toml)")
    p.add_argument("--generator", choices=("mld", "mdm"), default="mld")
    p.add_argument("--samples", type=int, default=10, help="samples per prompt")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--strength", type=float, default=None, help="guidance strength (default: the models' default)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the models' validated setting)")
    p.add_argument("--cfg", type=float, default=None,
                   help="classifier-free guidance scale (default: guidance.toml's cfg_scale, else the generator's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default=None)
    p.add_argument("--prompts", default=None, help=f"comma-separated subset of: {', '.join(PROMPTS_BY_NAME)}")
    p.add_argument("--caption", default=None, help="instead of the fixed prompts: this caption, checked by each of "
                   "--checks (e.g. the README demo prompt with walk_forward,wave_right)")
    p.add_argument("--checks", default=None, help="--caption: comma-separated check names; A+B passes a sample "
                   "only when A and B both pass on it (e.g. walk_forward+wave_right)")
    p.add_argument("--arm-measures", action="store_true",
                   help="also print what the wave checks read, per prompt and setting: the right wrist's mean "
                        "seconds above its shoulder and its swing reversals (always in the JSON)")
    p.add_argument("--ground-measures", action="store_true",
                   help="also print how the bodies rest on the floor, per prompt and setting: the mean pelvis "
                        "excursion and foot skating (always in the JSON)")
    p.add_argument("--foot-lock", default=None, choices=("on", "off"),
                   help="takes shifted back by their planted feet's sliding (default: guidance.toml's foot_lock)")
    p.add_argument("--reward-agreement", action="store_true",
                   help="instead of baseline vs guided: does the motion-space reward score the unguided samples "
                        "that pass each check higher than those that fail (AUC)?")
    p.add_argument("--layer", nargs=2, metavar=("PART", "PROMPT"), default=None,
                   help="--caption: layer a body part (right_arm, left_arm, arms) from PROMPT's own motion of the "
                        "same seed on every sample, as realign generate --layer does")
    p.add_argument("--layer-candidates", type=int, default=None,
                   help="--layer: motions of PROMPT the reward model chooses the layer from (default 1)")
    p.add_argument("--validate-on", type=Path, default=None, metavar="DATA_DIR",
                   help="also run the checks on the real captioned clips of a built dataset")
    p.add_argument("--no-mirrored", action="store_true", help="validation: leave out the mirrored clips")
    p.add_argument("--through-vae", type=Path, default=None, metavar="VAE_BEST_PT",
                   help="validation: also run the checks on this VAE's reconstructions of the same clips "
                        "(what survives the VAE bounds every generator that decodes with it)")
    p.add_argument("-o", "--out", type=Path, default=None,
                   help="JSON output (default: MODELS/kinematic_alignment_GENERATOR.json, or "
                        "kinematic_validation.json)")
    return p


def _alignment_json(args: argparse.Namespace) -> dict[str, Any]:
    """Run baseline vs guided for the CLI arguments, print the table, return the JSON part."""
    from realign_core.evaluation.kinematic.checks import caption_prompts, select_prompts
    from realign_core.evaluation.kinematic.report import (compare_reports, evaluate_generator, format_arm_measures,
                                                          format_ground_measures, format_reports)

    steps = args.steps if args.steps is not None else validated_steps(args.models, args.generator)
    reports = evaluate_generator(args.models, args.generator, args.samples, args.seconds, args.strength, steps,
                                 args.cfg, args.seed, args.batch_size, args.device,
                                 caption_prompts(args.caption, args.checks or "") if args.caption is not None
                                 else select_prompts(args.prompts), tuple(args.layer) if args.layer else None,
                                 args.layer_candidates, None if args.foot_lock is None else args.foot_lock == "on")
    print(format_reports(reports))
    if args.arm_measures:
        print(format_arm_measures(reports))
    if args.ground_measures:
        print(format_ground_measures(reports))
    if "guided" not in reports:
        print(f"no reward model in {args.models}: guided sampling skipped")
    out: dict[str, Any] = {name: report.to_dict() for name, report in reports.items()}
    if len(reports) == 2:
        out["difference"] = compare_reports(reports["baseline"], reports["guided"])
    return out


def _agreement_json(args: argparse.Namespace) -> dict[str, Any]:
    """Run the reward agreement for the CLI arguments, print its table, return the JSON part."""
    from realign_core.device import pick_device
    from realign_core.evaluation.kinematic.checks import caption_prompts, select_prompts
    from realign_core.evaluation.kinematic.reward_agreement import format_agreement, reward_agreement
    from realign_core.pipeline import SamplingConfig, TextToMotionPipeline

    pipe = TextToMotionPipeline.from_checkpoints(args.models, device=pick_device(args.device), generator=args.generator)
    if not pipe.has_reward:
        raise SystemExit(f"--reward-agreement: {args.models} has no reward model (reward/best.pt)")
    steps = args.steps if args.steps is not None else validated_steps(args.models, args.generator)
    prompts = (caption_prompts(args.caption, args.checks or "") if args.caption is not None
               else select_prompts(args.prompts))
    rows = reward_agreement(pipe, prompts, args.samples, args.seconds, SamplingConfig(steps=steps, cfg_scale=args.cfg),
                            args.seed, args.batch_size)
    print(format_agreement(rows))
    return {"steps": steps, "cfg_scale": args.cfg, "seconds": args.seconds, "prompts": rows}


def add_reward_probe_command(sub: argparse._SubParsersAction) -> None:
    """The ``realign reward-probe`` sub-command: does the reward see what a body part does over time?"""
    rp = sub.add_parser("reward-probe", help="the reward of captured clips against the same clips with a body part "
                        "held at its mean pose (does the reward read e.g. a wave?)")
    rp.add_argument("--models", type=Path, required=True, help="model root with reward/best.pt")
    rp.add_argument("--data", type=Path, required=True, help=DATA_HELP)
    rp.add_argument("--split", default="train", help="train, val or test")
    rp.add_argument("--match", action="append", required=True, metavar="REGEX",
                    help="caption pattern (case-insensitive; repeat: all must match), e.g. 'wav(e|es|ing)\\b'")
    rp.add_argument("--part", default="arms", help="right_arm, left_arm or arms")
    rp.add_argument("--smooth-frames", type=int, default=0,
                    help="0: hold the part at its mean pose; N > 0: low-pass its swings (moving average of N frames)")
    rp.add_argument("--device", default=None)
    rp.add_argument("-o", "--out", type=Path, default=None, help="JSON of every clip's two rewards")
    rp.set_defaults(func=_reward_probe)


def _reward_probe(args: argparse.Namespace) -> int:
    from realign_core.device import pick_device
    from realign_core.evaluation.reward_probe import format_probe, probe_held_part
    from realign_core.pipeline import TextToMotionPipeline

    pipe = TextToMotionPipeline.from_checkpoints(args.models, device=pick_device(args.device))
    if not pipe.has_reward:
        raise SystemExit(f"realign reward-probe: {args.models} has no reward model (reward/best.pt)")
    try:
        result = probe_held_part(pipe, args.data, args.split, args.match, args.part,
                                 smooth_frames=args.smooth_frames)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"realign reward-probe: {err}") from None
    print(format_probe(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"models": str(args.models), **result}, indent=1))
        print(f"wrote {args.out}")
    return 0


def add_check_motion_command(sub: argparse._SubParsersAction) -> None:
    """The ``realign check-motion`` sub-command: the model-free kinematic checks on one motion file."""
    cm = sub.add_parser("check-motion", help="what a motion file does, by the model-free kinematic checks")
    cm.add_argument("motion", type=Path, help="joints .npy (F, 22, 3) metres, Y up, 20 fps (realign generate's -o)")
    cm.add_argument("--checks", default="", help="comma-separated check names (default: all)")
    cm.add_argument("--json", type=Path, help="also write the measures and verdicts here")
    cm.set_defaults(func=_check_motion)


def _check_motion(args: argparse.Namespace) -> int:
    import numpy as np

    from realign_core.evaluation.kinematic.checks import MeasuredMotion, all_checks, arm_measures

    checks = all_checks()
    names = [n.strip() for n in args.checks.split(",") if n.strip()] or list(checks)
    unknown = [n for n in names if n not in checks]
    if unknown:
        raise SystemExit(f"realign check-motion: unknown check(s) {unknown}; choose from {sorted(checks)}")
    path = args.motion if args.motion.suffix == ".npy" else args.motion.with_name(args.motion.name + ".npy")
    if not path.is_file():
        raise SystemExit(f"realign check-motion: {path}: no such joints file")
    motion = MeasuredMotion(np.load(path))
    s = motion.summary
    verdicts = {n: bool(checks[n](motion)) for n in names}
    print(f"{path}: {len(motion.pos)} frames ({s.duration_s:.1f} s); pelvis {s.forward_m:+.2f} m forward, "
          f"{s.left_m:+.2f} m left, path {s.path_length_m:.2f} m; turned {s.heading_change_deg:+.0f} deg")
    arm = arm_measures(motion)
    print("  wrists above the shoulder: " + ", ".join(
        f"{side} {arm[f'{side}_wrist_raised_s']:.1f} s ({arm[f'{side}_wrist_swings']:.0f} swings)" for side in ("right", "left")))
    for name, ok in verdicts.items():
        print(f"  {name:14s} {'yes' if ok else 'no'}")
    if args.json:
        args.json.write_text(json.dumps({"motion": str(path), "forward_m": s.forward_m, "left_m": s.left_m,
                                         "path_length_m": s.path_length_m,
                                         "heading_change_deg": s.heading_change_deg, "arm": arm,
                                         "checks": verdicts}, indent=1))
    return 0


def kinematic_main(argv: Sequence[str] | None = None) -> int:
    """The kinematic alignment command: prints the tables and writes JSON.  Returns the exit code."""
    from realign_core.evaluation.kinematic.labels import format_recall_through, format_validation, validate_checks

    parser = kinematic_parser()
    args = parser.parse_args(argv)
    if args.models is None and args.validate_on is None:
        parser.error("give --models, --validate-on, or both")
    if args.caption is not None and (args.prompts is not None or not args.checks):
        parser.error("--caption: give --checks (not --prompts), e.g. --checks walk_forward,wave_right")
    if args.layer is not None and args.caption is None:
        parser.error("--layer: only with --caption")
    if args.reward_agreement and (args.models is None or args.layer is not None):
        parser.error("--reward-agreement: needs --models and scores unguided samples without a layer")
    if args.through_vae is not None and (args.validate_on is None or not args.through_vae.is_file()):
        parser.error(f"--through-vae {args.through_vae}: needs --validate-on and an existing VAE best.pt")
    out: dict[str, Any] = {}
    if args.validate_on is not None:
        out["validation"] = validate_checks(args.validate_on, include_mirrored=not args.no_mirrored, progress=True)
        print(format_validation(out["validation"]))
        if args.through_vae is not None:
            from realign_core.evaluation.reconstruction import vae_clip_joints

            joints = vae_clip_joints(args.through_vae, args.validate_on, args.device or "cpu")
            out["validation_through_vae"] = {"vae": str(args.through_vae), **validate_checks(
                args.validate_on, include_mirrored=not args.no_mirrored, progress=True, joints_of=joints)}
            print(format_recall_through(out["validation"], out["validation_through_vae"]))
    if args.models is not None and args.reward_agreement:
        out["reward_agreement"] = _agreement_json(args)
    elif args.models is not None:
        out["alignment"] = _alignment_json(args)
    default = (args.models / f"kinematic_alignment_{args.generator}.json" if args.models
               else Path("kinematic_validation.json"))
    path = args.out or default
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(kinematic_main())
