"""The ``realign`` command line.

    realign data build --cmu DIR --kitml DIR --humanml3d-index DIR --out DIR
    realign data add-bvh --bvh-dir DIR --captions CSV --out DIR
    realign data report DIR
    realign render MOTION.npy -o OUT.{gif,mp4,png}
    realign check-motion MOTION.npy [--checks walk_forward,wave_right]   (model-free kinematic checks)
    realign check-representation --vectors humanml3d_reference_vectors.npz
    realign train {vae,denoiser,reward,reward_plain,evaluator,mdm} --data DIR --config FILE --out DIR
    realign eval --models DIR --data DIR [--table [--limit N] [--repeats R] | --kinematic | --judge-val]
    realign tune-guidance --models DIR --data DIR [--generator mld|mdm]
    realign choose-cfg --models DIR --data DIR --scales 3 4 5 6 7.5 --judges KIND[@ROOT] ... -o OUT
    realign choose-foot-lock --models DIR --data DIR --judges KIND[@ROOT] ... [--reuse CFG.json] -o OUT
    realign choose-guidance --models DIR --data DIR --tunings T.json ... --judges KIND[@ROOT] ... --latency B.json -o OUT
    realign model-card --models DIR -o docs/MODEL_CARD.md
    realign plot-training --log DIR/denoiser/log.jsonl --judged J.json ... -o PNG   (curves vs epochs and hours)
    realign plot-sizes --run LABEL LOG SPEED.json [J.json ...] --run ... -o PNG  (denoiser sizes vs CPU-hours)
    realign export --models DIR --out DIR
    realign generate "PROMPT" --seconds S --seed N --strength X [--mu --eta --cfg --steps --samples K] -o OUT
        [--path FILE] [--keyframes FILE] [--continue-from J.npy] [--end-pose P.npy] [--loop] [--in-place]
        [--sequence SEQ.json]   (control; docs/control.md)
    realign control-bench [--models DIR] [--parts path keyframes loop sequence]   (control measurements)
    realign bank --models DIR --data DIR
    realign serve [--models DIR] [--host H] [--port P] [--allow-remote] (token: $REALIGN_SERVER_TOKEN or --token-file)
    realign batch JOBS.csv --out DIR [--ray auto|ADDRESS] [--models DIR]   (many motions; docs/scale.md)
    realign bench --models DIR [--generator mld|mdm] [--batch 1 16] [--guided 0 5 10 25 all]   (latency)
    realign bench --server [--connect HOST:PORT | --models DIR] [--clients N] [--requests M]
    realign bench --train denoiser --models DIR --data DIR --config FILE   (training throughput)
    realign gpu {pack,size,prepare,rehearse,restore,train,apply}   (the GPU one-shot; docs/models.md)
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from realign_core.cli import batch, bench, training_plots
from realign_core.cli.control_args import add_control_arguments, add_control_bench
from realign_core.cli.evaluate import (DATA_HELP, SAMPLER_CHOICES, add_check_motion_command, add_eval_command,
                                      add_reward_probe_command)
from realign_core.cli.compose import add_compose_command
from realign_core.cli.gpu import add_gpu_command
from realign_core.cli.foot_lock_choice import add_choose_foot_lock_command
from realign_core.cli.sampler_choice import add_choose_sampler_command
from realign_core.models.layout import KINDS as TRAIN_KINDS  # torch-free: parsing never imports torch
from realign_core.models.layout import checkpoint_path, guidance_path


def _data_build(args: argparse.Namespace) -> int:
    from realign_core.data.build import BuildConfig, build_dataset
    from realign_core.data.report import format_report

    cfg = BuildConfig(mirror=not args.no_mirror, limit_trials=args.limit,
                      **({"workers": args.workers} if args.workers else {}))
    for name, path in (("--cmu", args.cmu), ("--kitml", args.kitml), ("--humanml3d-index", args.humanml3d_index)):
        if not Path(path).is_dir():
            raise SystemExit(f"realign data build: {name} {path}: not a directory")
    report = build_dataset(Path(args.cmu), Path(args.kitml), Path(args.humanml3d_index), Path(args.out), cfg)
    print(format_report(report))
    print(f"report written to {Path(args.out) / 'report.json'}")
    return 0


def _data_add_bvh(args: argparse.Namespace) -> int:
    from realign_core.data.bvh.folder import add_bvh_folder
    from realign_core.data.report import format_report

    report = add_bvh_folder(Path(args.bvh_dir), Path(args.captions), Path(args.out),
                            split=args.split, rig=args.rig, name=args.name)
    print(format_report(report))
    return 0


def _data_report(args: argparse.Namespace) -> int:
    from realign_core.data.report import format_report

    path = Path(args.dir) / "report.json"
    if not path.is_file():
        raise SystemExit(f"realign data report: {path}: missing (build the dataset first)")
    print(format_report(json.loads(path.read_text())))
    return 0


def _render(args: argparse.Namespace) -> int:
    from realign_core.export.render import RenderConfig, load_motion_file, render_motion

    positions = load_motion_file(Path(args.motion))
    cfg = RenderConfig(fps=args.fps) if args.fps else RenderConfig()
    out = render_motion(positions, Path(args.output), title=args.title or Path(args.motion).stem, config=cfg)
    print(f"wrote {out}")
    return 0


def _check_representation(args: argparse.Namespace) -> int:
    from realign_core.motion.conformance import check_vectors

    if not Path(args.vectors).is_file():
        raise FileNotFoundError(f"{args.vectors}: reference vectors file not found")
    result = check_vectors(Path(args.vectors))
    print(result.format())
    print("PASS" if result.passed else "FAIL")
    return 0 if result.passed else 1


def _train(args: argparse.Namespace) -> int:
    from realign_core.training.config import load_config
    from realign_core.training.registry import make_task
    from realign_core.training.trainer import Trainer

    data, out_root = Path(args.data), Path(args.out)
    model_section, train_cfg = load_config(args.config, args.kind)
    if args.epochs:
        train_cfg = replace(train_cfg, epochs=args.epochs)
    if args.max_minutes is not None:
        train_cfg = replace(train_cfg, max_minutes=args.max_minutes)
    if args.device:
        train_cfg = replace(train_cfg, device=args.device)
    if args.amp:
        train_cfg = replace(train_cfg, amp=args.amp)
    if args.threads:
        train_cfg = replace(train_cfg, torch_threads=args.threads)
    task = make_task(args.kind, model_section, data, out_root, f"{args.config} [{args.kind}.model]", train_cfg)
    trainer = Trainer(task, data, out_root / args.kind, train_cfg)
    precision = "bf16 autocast" if trainer.bf16 else "float32"
    print(f"training {args.kind} on {trainer.device} ({precision}): "
          f"{sum(p.numel() for p in trainer.model.parameters()):,} parameters, {len(trainer.train_set)} train / {len(trainer.val_set)} val entries")
    summary = trainer.fit()
    state = "finished" if summary["finished"] else "stopped early (resume with the same command)"
    print(f"{args.kind}: {state} after {summary['epochs_done']} epochs, {summary['steps']} steps; "
          f"best {task.selection_metric} = {summary['best']:.4g}; checkpoints in {out_root / args.kind}")
    return 0


def _tune_guidance(args: argparse.Namespace) -> int:
    from realign_core.device import pick_device
    from realign_core.evaluation.guidance_tuning import TuningConfig, format_tuning, tune, write_guidance_toml
    from realign_core.evaluation.results_table import save_table

    models = Path(args.models)
    mixes = tuple(tuple(float(v) for v in m.split(",")) for m in args.mixes)
    if any(len(m) != 2 for m in mixes):
        raise SystemExit(f"realign tune-guidance: --mixes takes MU,ETA pairs, got {args.mixes}")
    cfg = TuningConfig(scales=tuple(args.scales), mixes=mixes, guided_steps_options=tuple(args.guided_steps),
                       stage3_scale_factors=tuple(args.stage3_scale_factors), placements=tuple(args.placements),
                       keep_gain=args.keep_gain, kin_slack=args.kin_slack, kin_samples=args.kin_samples,
                       prompts=args.prompts, steps=args.steps, sampler=args.sampler, reward_space=args.reward_space)
    suffix = "" if args.reward_space == "motion" else f"_{args.reward_space}"
    out = models / f"guidance_tuning_{args.generator}{suffix}.json"
    result = tune(models, Path(args.data), args.generator, cfg, pick_device(args.device),
                  reuse=None if args.fresh else out)
    save_table(result, out)
    write_guidance_toml(guidance_path(models), args.generator, result["winner"],
                        {"sampler": args.sampler, "steps": args.steps})
    print(format_tuning(result))
    w = result["winner"]
    print(f"winner: scale {w['scale']:g}, {w['settings']}: judge R@1 {w['judge_r1']:.3f} "
          f"(baseline {result['baseline']['judge_r1']:.3f}), FID {w['judge_fid']:.3f} "
          f"(baseline {result['baseline']['judge_fid']:.3f}) -> {models / 'guidance.toml'}")
    return 0


def _choose_guidance(args: argparse.Namespace) -> int:
    from realign_core.device import pick_device
    from realign_core.evaluation.guidance_choice import ChoiceConfig, JudgeSpec, Precision, choose, rejudge, screened
    from realign_core.evaluation.guidance_tuning import write_guidance_toml

    models, out = Path(args.models), Path(args.output)
    try:
        tunings = [json.loads(Path(t).read_text()) for t in args.tunings]
        judges = [JudgeSpec.parse(j, models) for j in args.judges]
        only = (screened(json.loads(Path(args.screen).read_text())["choice"], args.min_kept, args.screen_budget)
                if args.screen else None)
        result = rejudge(models, Path(args.data), tunings, judges, pick_device(args.device), out=out,
                         precision=Precision(args.prompts, args.seeds), only=only,
                         reuse=Path(args.reuse) if args.reuse else None, own_kinematic=args.own_kinematic)
        cfg = ChoiceConfig(max_slowdown=args.max_slowdown, keep_gain=args.keep_gain, kin_slack=args.kin_slack)
        choice = choose(result, args.latency, cfg)
    except (OSError, ValueError, KeyError) as err:
        raise SystemExit(f"realign choose-guidance: {err}") from None
    out.write_text(json.dumps({**result, "choice": choice}, indent=1) + "\n")
    pick = _report_choice(choice, cfg, out, args.plot)
    if pick is None:
        return 1
    if args.write_toml:
        write_guidance_toml(guidance_path(models), result["generator"], pick,
                            {"sampler": result["sampler"], "steps": result["steps"]})
        print(f"wrote [{result['generator']}] of {guidance_path(models)}")
    return 0


def _combine_choices(args: argparse.Namespace) -> int:
    from realign_core.evaluation.guidance_choice import ChoiceConfig, combine_choices

    try:
        labelled = {}
        for item in args.runs:
            label, sep, path = item.partition("=")
            if not sep or not label or not path:
                raise ValueError(f"{item!r}: expected LABEL=CHOICE_JSON")
            labelled[label] = json.loads(Path(path).read_text())
        first = next(iter(labelled.values()))["choice"]["config"]
        overrides = {k: v for k, v in (("max_slowdown", args.max_slowdown), ("keep_gain", args.keep_gain))
                     if v is not None}
        cfg = ChoiceConfig(**{**first, **overrides})
        choice = combine_choices(labelled, cfg)
    except (OSError, ValueError, KeyError) as err:
        raise SystemExit(f"realign combine-choices: {err}") from None
    Path(args.output).write_text(json.dumps({"choice": choice}, indent=1) + "\n")
    return 0 if _report_choice(choice, cfg, Path(args.output), args.plot) is not None else 1


def _choose_cfg(args: argparse.Namespace) -> int:
    from realign_core.device import pick_device
    from realign_core.evaluation.cfg_choice import (CfgChoiceConfig, choose_cfg, format_cfg_choice, judge_cfg_scales,
                                                    plot_cfg_choice)
    from realign_core.evaluation.guidance_choice import JudgeSpec, Precision
    from realign_core.evaluation.guidance_tuning import write_guidance_key

    models, out = Path(args.models), Path(args.output)
    cfg = CfgChoiceConfig(scales=tuple(args.scales), r1_slack=args.r1_slack, kin_slack=args.kin_slack,
                          kin_samples=args.kin_samples)
    try:
        judges = [JudgeSpec.parse(j, models) for j in args.judges]
        result = judge_cfg_scales(models, Path(args.data), judges, cfg, args.generator, pick_device(args.device),
                                  Precision(args.prompts, args.seeds), out)
        choice = choose_cfg(result, cfg)
    except (OSError, ValueError, KeyError) as err:
        raise SystemExit(f"realign choose-cfg: {err}") from None
    out.write_text(json.dumps({**result, "choice": choice}, indent=1) + "\n")
    print(format_cfg_choice(result, choice))
    if args.plot:
        print(f"wrote {plot_cfg_choice(result, choice, args.plot)}")
    print(f"choice: CFG {choice['choice']:g} (current {choice['current']:g}) -> {out}")
    if args.write_toml:
        write_guidance_key(guidance_path(models), args.generator, "cfg_scale", float(choice["choice"]))
        print(f"wrote cfg_scale {choice['choice']:g} to [{args.generator}] of {guidance_path(models)}")
    return 0


def _report_choice(choice: dict, cfg, out: Path, plot: str | None) -> dict | None:
    """Print a choice's table and verdict (and draw it to ``plot``); returns the chosen row or None."""
    from realign_core.evaluation.guidance_choice import format_choice, plot_choice

    print(format_choice(choice))
    if plot:
        print(f"wrote {plot_choice(choice, plot)}")
    pick = choice["choice"]
    if pick is None:
        print(f"no candidate keeps {cfg.keep_gain:.0%} of full guidance's gains by every judge; see {out}")
        return None
    which = f" ({pick['latent_model']})" if pick.get("latent_model") else ""
    verdict = "within" if choice["budget_met"] else "NOT within (no candidate is; the cheapest that keeps the gains)"
    print(f"choice: {pick['settings']}{which} at scale {pick['scale']:g}, {pick['slowdown']:.2f}x unguided, "
          f"{verdict} the {cfg.max_slowdown:g}x budget -> {out}")
    return pick


def _model_card(args: argparse.Namespace) -> int:
    from realign_core.evaluation.model_card import build_model_card

    models = Path(args.models)
    eval_json = Path(args.eval_json) if args.eval_json else models / "eval_models.json"
    Path(args.output).write_text(build_model_card(models, eval_json))
    print(f"wrote {args.output}")
    return 0


def _data_captions(args: argparse.Namespace) -> int:
    from realign_core.data.caption_search import format_matches, match_captions, split_captions

    try:
        matches = match_captions(split_captions(args.dir, args.split), args.match, args.split)
    except (OSError, ValueError) as err:
        raise SystemExit(f"realign data captions: {err}") from None
    print(format_matches(matches, args.show))
    return 0


def _export(args: argparse.Namespace) -> int:
    from realign_core.models.checkpoint import export_models

    try:
        sizes = export_models(Path(args.models), Path(args.out), args.last_raw)
    except FileNotFoundError as err:
        raise SystemExit(f"realign export: {err}") from None
    for kind, size in sizes.items():
        print(f"{kind:14s} {size / 2 ** 20:7.2f} MB")
    print(f"total          {sum(sizes.values()) / 2 ** 20:7.2f} MB -> {args.out}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from realign_core.cli.generate import GenerateRequest, run_generate
    from realign_core.pipeline import SamplingConfig

    from realign_core.cli.control_args import control_fields

    sampling = SamplingConfig(args.sampler or SamplingConfig.sampler, SamplingConfig.steps if args.steps is None
                              else args.steps, args.cfg, args.ddim_eta, foot_lock={"on": True, "off": False}.get(args.foot_lock))
    try:
        req = GenerateRequest(args.prompt, args.seconds, args.seed, args.samples, args.strength, args.mu, args.eta,
                              sampling, args.guided_steps, **control_fields(args, round(args.seconds * 20)),
                              sampling_given={k for k in ("sampler", "steps") if getattr(args, k) is not None})
        paths = run_generate(args.models, req, args.output, args.generator, args.device, args.smpl, args.gif)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"realign generate: {err}")
    for path in paths:
        print(f"wrote {path}")
    return 0


def _bank(args: argparse.Namespace) -> int:
    from realign_core.guidance.reward_bank import build_bank
    from realign_core.models.layout import bank_path

    for kind in args.kinds:
        ckpt = checkpoint_path(Path(args.models), kind)
        if not ckpt.is_file():
            raise SystemExit(f"realign bank: {ckpt}: missing reward checkpoint")
        bank = build_bank(_bank_embedder(Path(args.models), kind), ckpt, args.data, args.split)
        bank.save(bank_path(args.models, kind))
        print(f"{kind}: {len(bank.ids)} {args.split} motions -> {bank_path(args.models, kind)}")
    return 0


def _bank_embedder(models: Path, kind: str):
    """How ``realign bank`` embeds a clip for reward model ``kind`` (the latent one reads VAE latents)."""
    from realign_core.guidance import reward_bank
    from realign_core.models.reward_model import load_reward_model

    if kind != "latent_reward":
        return reward_bank.motion_embedder(load_reward_model(checkpoint_path(models, kind)))
    from realign_core.diffusion.generators import load_generator
    from realign_core.pipeline import load_latent_reward_parts

    generator = load_generator(models, "mld")
    parts = load_latent_reward_parts(models, generator, "cpu")
    return reward_bank.latent_embedder(parts.model, generator.vae, generator.latent_scale)


def _add_generation_commands(sub: argparse._SubParsersAction) -> None:
    """``realign generate`` and ``realign bank`` (the embedding bank of the M2M reward)."""
    g = sub.add_parser("generate", help="text -> motion files (joints .npy, features, BVH, optional SMPL/GIF)")
    g.add_argument("prompt")
    g.add_argument("--models", default="models/default", help="model root (default: the shipped models)")
    g.add_argument("--generator", default="mld", choices=["mld", "mdm"], help="base generator")
    g.add_argument("--seconds", type=float, default=6.0, help="duration, 1 to 9.8 s")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--samples", type=int, default=1, help="K motions with seeds seed..seed+K-1")
    g.add_argument("--strength", type=float, default=None,
                   help="ReAlign guidance strength: 0 = off, 1 = the validated setting (default)")
    g.add_argument("--mu", type=float, default=None, help="weight of the text-to-motion reward")
    g.add_argument("--eta", type=float, default=None, help="weight of the motion-to-motion reward")
    g.add_argument("--guided-steps", default=None,
                   help="how many sampler steps are guided: a count or 'all' (default: the validated setting; "
                        "more = better FID, slower)")
    g.add_argument("--cfg", type=float, default=None,
                   help="classifier-free guidance scale (default: guidance.toml's cfg_scale, else the generator's)")
    g.add_argument("--steps", type=int, default=None,
                   help="sampler steps (default: the models' validated setting, guidance.toml)")
    g.add_argument("--sampler", default=None, choices=SAMPLER_CHOICES,
                   help="ddim, ddpm (DDIM eta 1), diffusers-ddim, dpmsolver++, unipc, lcm (the few-step consistency "
                        "model, 1-4 steps, CFG distilled in; all diffusers' schedulers; default: the models' "
                        "validated setting)")
    g.add_argument("--ddim-eta", type=float, default=0.0, help="DDIM stochasticity (not the M2M weight)")
    g.add_argument("--foot-lock", default=None, choices=("on", "off"), help="undo sliding over planted feet "
                   "(default: guidance.toml's foot_lock; takes with a path, keyed poses or a loop: never)")
    g.add_argument("--device", default="auto")
    g.add_argument("--smpl", action="store_true", help="also write an AMASS-style SMPL .npz")
    g.add_argument("--gif", action="store_true", help="also render a stick-figure GIF")
    g.add_argument("-o", "--output", required=True, help="output prefix, e.g. out/walk")
    add_control_arguments(g)
    g.set_defaults(func=_generate)
    add_control_bench(sub)

    bk = sub.add_parser("bank", help="embed the training motions for the motion-to-motion reward")
    bk.add_argument("--models", required=True)
    bk.add_argument("--data", required=True, help=DATA_HELP)
    bk.add_argument("--split", default="train")
    bk.add_argument("--kinds", nargs="+", default=["reward", "reward_plain"],
                    help="reward model kinds to embed with (latent_reward: the latent-space reward, via the VAE)")
    bk.set_defaults(func=_bank)


def _serve(args: argparse.Namespace) -> int:
    from server.cli import serve

    return serve(args)


def _add_server_commands(sub: argparse._SubParsersAction) -> None:
    """``realign serve`` (the generation server; see docs/server.md) and ``realign bench``."""
    from server import cli

    sv = sub.add_parser("serve", help="run the local generation server (newline-delimited JSON over TCP)")
    cli.add_arguments(sv)
    sv.set_defaults(func=_serve)

    be = sub.add_parser("bench", help="latency of sampling; --server: requests/s and p50/p95 latency for N clients",
                        description=bench.DESCRIPTION)
    bench.add_arguments(be)
    be.set_defaults(func=bench.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="realign", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="build and inspect training data").add_subparsers(dest="data_command", required=True)
    b = data.add_parser("build", help="CMU + KIT-ML + HumanML3D index -> HumanML3D-layout dataset")
    b.add_argument("--cmu", required=True, help="cmu_mocap folder (joints/, descriptions.csv, action_classes.csv)")
    b.add_argument("--kitml", required=True, help="kitml folder (annotations.json)")
    b.add_argument("--humanml3d-index", required=True, help="humanml3d_index folder (index.csv, split files)")
    b.add_argument("--out", required=True, help="output dataset folder")
    b.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    b.add_argument("--limit", type=int, default=None, help="only the first N trials (quick runs)")
    b.add_argument("--no-mirror", action="store_true", help="do not add mirrored copies")
    b.set_defaults(func=_data_build)

    a = data.add_parser("add-bvh", help="add a folder of BVH files with a captions CSV to a dataset")
    a.add_argument("--bvh-dir", required=True)
    a.add_argument("--captions", required=True, help="CSV with columns file,caption[,start,end][,split]")
    a.add_argument("--out", required=True, help="existing (or new) dataset folder")
    a.add_argument("--split", default="train", choices=["train", "val", "test"], help="split for rows without one")
    a.add_argument("--rig", default=None, help="joint-name map (default: auto-detect)")
    a.add_argument("--name", default="bvh", help="dataset tag used in clip ids")
    a.set_defaults(func=_data_add_bvh)

    r = data.add_parser("report", help="print a built dataset's report")
    r.add_argument("dir")
    r.set_defaults(func=_data_report)
    dc = data.add_parser("captions", help="how many clips of a split have a caption matching patterns")
    dc.add_argument("dir", help="a built dataset (HumanML3D layout)")
    dc.add_argument("--split", default="train")
    dc.add_argument("--match", action="append", required=True, metavar="REGEX",
                    help="case-insensitive regular expression; repeat: a clip counts when one caption matches all")
    dc.add_argument("--show", type=int, default=10, help="most frequent matching captions to list")
    dc.set_defaults(func=_data_captions)
    add_compose_command(data)

    rd = sub.add_parser("render", help="stick-figure animation of a motion (.npy joints or features)")
    rd.add_argument("motion")
    rd.add_argument("-o", "--output", required=True, help=".gif, .mp4 or .png")
    rd.add_argument("--title", default=None)
    rd.add_argument("--fps", type=int, default=None)
    rd.set_defaults(func=_render)

    tr = sub.add_parser("train", help="train one model kind on a built dataset (resumes from OUT/KIND/last.pt)",
                        description="Train one model kind (resumable). Needs --data: " + DATA_HELP)
    tr.add_argument("kind", choices=TRAIN_KINDS)
    tr.add_argument("--data", required=True, help=DATA_HELP)
    tr.add_argument("--config", required=True, help="TOML config, e.g. configs/tiny.toml")
    tr.add_argument("--out", required=True, help="model root folder; writes OUT/KIND/")
    tr.add_argument("--epochs", type=int, default=None, help="override [KIND.train] epochs")
    tr.add_argument("--max-minutes", type=float, default=None, help="stop after this budget (resumable)")
    tr.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: config, auto)")
    tr.add_argument("--amp", default=None, choices=["off", "bf16", "auto"],
                    help="override [KIND.train] amp: bf16 autocast for the training steps (auto = where native)")
    tr.add_argument("--threads", type=int, default=None, help="override [KIND.train] torch_threads")
    tr.set_defaults(func=_train)

    add_eval_command(sub)
    add_check_motion_command(sub)
    add_reward_probe_command(sub)

    tg = sub.add_parser("tune-guidance", help="choose the guidance settings on the validation split")
    tg.add_argument("--models", required=True)
    tg.add_argument("--data", required=True, help=DATA_HELP)
    tg.add_argument("--generator", default="mld", choices=["mld", "mdm"])
    tg.add_argument("--prompts", type=int, default=256, help="validation prompts (a seeded random subset)")
    tg.add_argument("--steps", type=int, default=50, help="sampler steps the calibration is for")
    tg.add_argument("--sampler", default="ddim", help="sampler the calibration is for (realign generate --sampler)")
    tg.add_argument("--scales", type=float, nargs="+", default=[3.0, 10.0, 30.0, 100.0],
                    help="stage 1: step scales tried with mu = eta = 1")
    tg.add_argument("--mixes", nargs="*", default=["1,0", "0,1"],
                    help="stage 2: MU,ETA pairs tried at the chosen scale (besides 1,1)")
    tg.add_argument("--guided-steps", type=int, nargs="*", default=[5, 10, 25],
                    help="stage 3: guided-step counts tried besides all steps")
    tg.add_argument("--stage3-scale-factors", type=float, nargs="+", default=[1.0, 3.0],
                    help="stage 3: each guided-step count is tried at the chosen scale times these")
    tg.add_argument("--placements", nargs="+", default=["spread"], choices=["spread", "early", "late"],
                    help="stage 3: where the guided steps sit")
    tg.add_argument("--kin-samples", type=int, default=4,
                    help="samples per validation kinematic prompt (the model-free guard; 0 = off)")
    tg.add_argument("--kin-slack", type=float, default=0.03,
                    help="a candidate may lower the validation kinematic pass rate by at most this fraction")
    tg.add_argument("--reward-space", default="motion", choices=["motion", "latent"],
                    help="the reward model that guides: motion (decoded motion) or latent (MLD's latent, "
                         "latent_reward/best.pt; results in guidance_tuning_GEN_latent.json)")
    tg.add_argument("--fresh", action="store_true",
                    help="re-score every candidate (default: reuse matching ones from the earlier JSON)")
    tg.add_argument("--keep-gain", type=float, default=0.9,
                    help="stage 3 picks the fewest guided steps keeping this fraction of the best R@1 gain")
    tg.add_argument("--device", default="auto")
    tg.set_defaults(func=_tune_guidance)

    cg = sub.add_parser("choose-guidance", help="re-judge tuned candidates of several reward spaces and pick "
                        "the cheapest default keeping full guidance's gains (validation split)")
    cg.add_argument("--models", required=True, help="model root that can run every candidate (reward, bank, "
                    "latent_reward when a latent tuning is pooled)")
    cg.add_argument("--data", required=True, help=DATA_HELP)
    cg.add_argument("--tunings", nargs="+", required=True, help="tune-guidance JSONs whose candidates are pooled")
    cg.add_argument("--judges", nargs="+", default=["reward_plain"],
                    help="KIND (under --models) or KIND@ROOT, e.g. reward_plain evaluator_words@JUDGE_ROOT")
    cg.add_argument("--latency", required=True, help="realign bench --json with rows per reward space and "
                    "guided-step count (batch 1)")
    cg.add_argument("--max-slowdown", type=float, default=1.3, help="latency budget, x the unguided latency")
    cg.add_argument("--keep-gain", type=float, default=0.9,
                    help="fraction of full guidance's R@1 and FID gains to keep, by every judge")
    cg.add_argument("--kin-slack", type=float, default=0.03)
    cg.add_argument("--prompts", type=int, default=None,
                    help="validation prompts per candidate (default: the tunings' subset; 0: the whole split)")
    cg.add_argument("--seeds", type=int, default=1, help="seed sets per candidate, scores averaged")
    cg.add_argument("--screen", default=None, help="an earlier choose-guidance JSON: judge only its reference, "
                    "its choice and the rows within the budget keeping --min-kept of the gains by every judge")
    cg.add_argument("--min-kept", type=float, default=0.7)
    cg.add_argument("--screen-budget", type=float, default=None,
                    help="--screen: the slowdown up to which rows are kept (default: that run's budget)")
    cg.add_argument("-o", "--output", required=True, help="JSON of every re-judged row and the choice "
                    "(an interrupted run continues from it)")
    cg.add_argument("--plot", default=None, help="PNG: the share of the gain kept against the slowdown, per judge")
    cg.add_argument("--write-toml", action="store_true", help="write the choice to MODELS/guidance.toml")
    cg.add_argument("--reuse", default=None, help="an earlier choose-guidance JSON (same prompts, seeds, judges; "
                    "another latent reward model): its unguided and motion-space rows are taken, not re-generated")
    cg.add_argument("--own-kinematic", action="store_true", help="measure every row's validation kinematic pass "
                    "rate with --models (the generator changed since the tunings) instead of taking the tunings'")
    cg.add_argument("--device", default="auto")
    cg.set_defaults(func=_choose_guidance)

    cf = sub.add_parser("choose-cfg", help="choose the classifier-free guidance scale on the validation split "
                        "(unguided and default-guided takes at each scale, judged)")
    cf.add_argument("--models", required=True, help="model root (generator, reward models, guidance.toml)")
    cf.add_argument("--data", required=True, help=DATA_HELP)
    cf.add_argument("--generator", default="mld", choices=("mld", "mdm"))
    cf.add_argument("--scales", type=float, nargs="+", default=[3.0, 4.0, 5.0, 6.0, 7.5],
                    help="CFG scales to judge (must include the current one)")
    cf.add_argument("--judges", nargs="+", default=["reward_plain"], help="KIND or KIND@ROOT (as choose-guidance)")
    cf.add_argument("--prompts", type=int, default=0, help="validation prompts (0: the whole split)")
    cf.add_argument("--seeds", type=int, default=1, help="seed sets, scores averaged")
    cf.add_argument("--r1-slack", type=float, default=0.01, help="allowed drop of the guided judge R@1, per judge")
    cf.add_argument("--kin-slack", type=float, default=0.03)
    cf.add_argument("--kin-samples", type=int, default=4, help="samples per validation kinematic prompt (0: none)")
    cf.add_argument("-o", "--output", required=True, help="JSON of every row and the choice (resumable)")
    cf.add_argument("--plot", default=None, help="PNG: judge R@1 and FID against the CFG scale")
    cf.add_argument("--write-toml", action="store_true", help="write the choice to MODELS/guidance.toml")
    cf.add_argument("--device", default="auto")
    cf.set_defaults(func=_choose_cfg)

    add_choose_sampler_command(sub)
    add_choose_foot_lock_command(sub)

    cc = sub.add_parser("combine-choices", help="apply choose-guidance's rule across runs that differ only in "
                        "the latent reward model")
    cc.add_argument("runs", nargs="+", help="LABEL=CHOICE_JSON (each a realign choose-guidance -o file)")
    cc.add_argument("--max-slowdown", type=float, default=None, help="default: the first run's budget")
    cc.add_argument("--keep-gain", type=float, default=None, help="default: the first run's")
    cc.add_argument("-o", "--output", required=True, help="JSON of the combined rows and the choice")
    cc.add_argument("--plot", default=None, help="PNG: the share of the gain kept against the slowdown, per judge")
    cc.set_defaults(func=_combine_choices)

    mc = sub.add_parser("model-card", help="write the model card from checkpoints and eval results")
    mc.add_argument("--models", required=True)
    mc.add_argument("--eval-json", default=None, help="default MODELS/eval_models.json")
    mc.add_argument("-o", "--output", required=True)
    mc.set_defaults(func=_model_card)

    training_plots.add_commands(sub)

    ex = sub.add_parser("export", help="write fp16 shippable checkpoints of a trained stack")
    ex.add_argument("--models", required=True)
    ex.add_argument("--out", required=True)
    ex.add_argument("--last-raw", action="store_true",
                    help="the raw weights at the end of each run (last.pt), not best.pt's: to judge a run's moving "
                         "average (ema > 0) against its raw weights")
    ex.set_defaults(func=_export)

    cr = sub.add_parser("check-representation", help="compare our HumanML3D features with reference vectors")
    cr.add_argument("--vectors", required=True, help="humanml3d_reference_vectors.npz")
    cr.set_defaults(func=_check_representation)
    _add_generation_commands(sub)
    _add_server_commands(sub)
    batch.add_command(sub)
    add_gpu_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"realign: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
