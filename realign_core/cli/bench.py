"""``realign bench``: latency of sampling, or (``--server``) throughput of the generation server.

    realign bench --models DIR [--generator mld|mdm] [--batch 1 16] [--guided 0 5 10 25 all]
                  [--reward-space motion latent] [--untrained-latent-reward CONFIG] ...
    realign bench --server [--connect HOST:PORT | --models DIR] [--clients N] [--requests M] [--soak SECONDS]
    realign bench --train denoiser --data DIR --config FILE --models DIR [--train-steps N]

One parser for both modes.  ``--models``, ``--device``, ``--frames`` and
``--steps`` are shared, with defaults that depend on the mode; an option of the
other mode is a usage error.  The latency benchmark is
:mod:`realign_core.evaluation.benchmark`; ``--server`` hands over to
:func:`server.bench.bench_command` (docs/server.md).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from realign_core.cli.evaluate import SAMPLER_CHOICES
from server.bench import DEFAULT_PROMPT

if TYPE_CHECKING:
    from realign_core.guidance.reward_guidance import GuidanceSettings
    from realign_core.pipeline import TextToMotionPipeline

DESCRIPTION = ("Per-motion latency of unguided and ReAlign-guided sampling; with --server, requests/s and "
               "p50/p95 latency of the generation server under N concurrent clients.")
# Shared options whose default depends on the mode: (latency, server).
MODE_DEFAULTS: dict[str, tuple[Any, Any]] = {"models": (None, "models/default"), "device": (None, "auto"),
                                             "frames": (196, 60), "steps": (50, 10)}
LATENCY_ONLY = ("generator", "batch", "guided", "placement", "amp", "threads", "repeats", "warmup", "strength",
                "eta", "fidelity", "reward_variants", "json", "table_clock", "plot_quality", "plot_tuning", "plot_out",
                "reward_space", "untrained_latent_reward")
SERVER_ONLY = ("connect", "token", "clients", "requests", "prompt", "soak")
TRAIN_ONLY = ("data", "config", "train_steps")


def _guided_arg(text: str) -> int | None:
    return None if text.lower() == "all" else int(text)


def _amp_arg(text: str) -> str | None:
    return None if text.lower() in ("fp32", "none") else text.lower()


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Every option of ``realign bench`` (both modes) on ``p``."""
    p.add_argument("--server", action="store_true", help="benchmark the generation server instead (see below)")
    shared = p.add_argument_group("both modes")
    shared.add_argument("--models", default=None,
                        help="model folder (vae/, denoiser/ or mdm/, reward/); required without --server, "
                             "default models/default for the server started by --server")
    shared.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: auto)")
    shared.add_argument("--frames", type=int, default=None, help="frames per motion (default 196; --server: 60)")
    shared.add_argument("--steps", type=int, default=None, help="sampler steps (default 50; --server: 10)")

    lat = p.add_argument_group("latency benchmark (without --server)")
    lat.add_argument("--generator", default="mld", choices=("mld", "mdm"))
    lat.add_argument("--sampler", default="ddim", choices=SAMPLER_CHOICES, help="sampler (default ddim)")
    lat.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    lat.add_argument("--guided", type=_guided_arg, nargs="+", default=None,
                     help="guided-step counts: integers and/or 'all' (0 = unguided; default 0 5 10 25 all)")
    lat.add_argument("--placement", nargs="+", default=["spread"], choices=("spread", "early", "late"))
    lat.add_argument("--amp", type=_amp_arg, nargs="+", default=[None],
                     help="reward-pass precision: fp32, bf16 (CPU/CUDA), fp16 (CUDA)")
    lat.add_argument("--threads", type=int, nargs="+", default=[None], help="torch thread counts to compare")
    lat.add_argument("--repeats", type=int, default=3)
    lat.add_argument("--warmup", type=int, default=1)
    lat.add_argument("--rounds", type=int, default=1,
                     help="repeat the whole sweep this many times (--repeats calls per configuration each); "
                          "slowdown = the median of the rounds' paired ratios, robust to the machine's drift")
    lat.add_argument("--strength", type=float, default=None, help="guidance strength (default: calibrated)")
    lat.add_argument("--eta", type=float, default=None, help="M2M weight (default: calibrated; 0 without a bank)")
    lat.add_argument("--fidelity", action="store_true", help="also report reward/gradient/motion changes under --amp")
    lat.add_argument("--reward-variants", action="store_true",
                     help="also time one reward pass of cheaper architectures (fewer layers, narrower, down-sampling)")
    lat.add_argument("--reward-space", nargs="+", default=["motion"], choices=("motion", "latent"),
                     help="one series of guided rows per reward model: motion (decoded motion) and/or latent "
                          "(latent_reward/best.pt: no decoder in the guided steps; MLD only)")
    lat.add_argument("--untrained-latent-reward", metavar="CONFIG", default=None,
                     help="without latent_reward/best.pt in --models: time an untrained latent reward of CONFIG's "
                          "[latent_reward.model] size (random weights: cost only, not quality)")
    lat.add_argument("--json", help="write {meta, rows, fidelity, reward_variants} here")
    lat.add_argument("--table-clock", default="wall", choices=("wall", "cpu"),
                     help="split the table's time in wall seconds or process CPU seconds (robust on a busy CPU)")
    lat.add_argument("--plot-quality", help="quality JSON: also draw the quality-vs-latency curve")
    lat.add_argument("--plot-tuning", nargs="+", default=None, metavar="TUNING_JSON",
                     help="tune-guidance JSONs (one per reward space): also draw their validation quality against "
                          "the latency measured here, one series per reward space and placement")
    lat.add_argument("--plot-out", default="docs/img/quality_vs_latency.png")

    trn = p.add_argument_group("training throughput (--train KIND)")
    trn.add_argument("--train", default=None, choices=("denoiser",),
                     help="time training steps of this model kind before/after the speed levers")
    trn.add_argument("--data", default="data/cmu_h3d", help="training data folder")
    trn.add_argument("--config", default="configs/default.toml", help="training config (model size)")
    trn.add_argument("--train-steps", type=int, default=10, help="timed steps per variant (after 2 warm-up)")

    srv = p.add_argument_group("server benchmark (--server)")
    srv.add_argument("--connect", default=None, metavar="HOST:PORT",
                     help="a running server (default: start one with --models on a free port)")
    srv.add_argument("--token", default=None, help="token of a server started with --token")
    srv.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    srv.add_argument("--requests", type=int, default=4, help="requests per client (default 4)")
    srv.add_argument("--prompt", default=DEFAULT_PROMPT)
    srv.add_argument("--soak", type=float, default=None, metavar="SECONDS",
                     help="instead: a mixed load with bad actors for SECONDS (--clients generating clients); "
                          "prints latency with/without them, RSS/threads/fds, results lost, cross-talk")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``realign bench`` on its own (``realign`` adds the same options to its sub-parser)."""
    p = argparse.ArgumentParser(prog="realign bench", description=DESCRIPTION)
    add_arguments(p)
    return p


def _misplaced(args: argparse.Namespace) -> list[str]:
    """Options given (not at their default) that belong to the other mode."""
    defaults = vars(build_parser().parse_args([]))
    foreign = (LATENCY_ONLY if args.server else SERVER_ONLY) + TRAIN_ONLY
    return ["--" + name.replace("_", "-") for name in foreign if getattr(args, name) != defaults[name]]


def run(args: argparse.Namespace) -> int:
    """Run the benchmark of the parsed options: latency, or the server's with ``--server``."""
    if args.train:
        return _run_training(args)
    misplaced = _misplaced(args)
    if misplaced:
        mode = "with --server" if args.server else "without --server"
        print(f"realign bench: error: {', '.join(misplaced)} cannot be used {mode}", file=sys.stderr)
        return 2
    for name, (latency, server) in MODE_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, server if args.server else latency)
    if args.server:
        from server.bench import bench_command

        return bench_command(args)
    if args.models is None:
        print("realign bench: error: --models is required (or --server)", file=sys.stderr)
        return 2
    return _run_latency(args)


def main(argv: Sequence[str] | None = None) -> int:
    """``realign bench`` with its own parser: ``main(["--models", DIR, ...])``."""
    return run(build_parser().parse_args(argv))


# ---------------------------------------------------------------------------------------------- latency


def _base_settings(pipeline: TextToMotionPipeline, args: argparse.Namespace) -> GuidanceSettings:
    base = pipeline.default_guidance
    if args.strength is not None:
        base = replace(base, strength=args.strength)
    if args.eta is not None:
        base = replace(base, eta=args.eta)
    return base


def _print_row(row: dict[str, Any]) -> None:
    print(f"  B={row['batch']} guided={row['guided_steps']} {row.get('reward_space', '-')} {row['placement']} {row['amp']} "
          f"thr={row['threads']}: {row['per_motion_s']:.3f} s/motion wall, {row['per_motion_cpu_s']:.3f} CPU",
          file=sys.stderr, flush=True)


def _extras(pipeline: TextToMotionPipeline, args: argparse.Namespace, base: GuidanceSettings
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The optional measurements: reduced-precision fidelity and cheaper reward architectures."""
    from realign_core.evaluation.benchmark.instrument import torch_threads
    from realign_core.evaluation.benchmark.runs import autocast_fidelity, bench_reward_variants

    fidelity = [autocast_fidelity(pipeline, amp, frames=args.frames, steps=args.steps, base=base)
                for amp in args.amp if amp is not None] if args.fidelity else []
    variants: list[dict[str, Any]] = []
    if args.reward_variants and pipeline.reward is not None:
        with torch_threads(args.threads[0]):
            for batch in args.batch:
                variants += bench_reward_variants(pipeline.reward.model.config, batch=batch, frames=args.frames,
                                                  repeats=args.repeats, device=pipeline.device)
    return fidelity, variants


def _print_extras(fidelity: list[dict[str, Any]], variants: list[dict[str, Any]]) -> None:
    from realign_core.evaluation.benchmark.report import format_reward_variants

    for f in fidelity:
        print(f"# {f['amp']} {f['scope']}: reward max |diff| {f['reward_max_abs_diff']:.2e} "
              f"(fp32 mean {f['reward_fp32_mean']:.3f}), 1 - gradient cosine (max) {1 - f['grad_cosine_min']:.1e}, "
              f"guided motion max |diff| {f['motion_max_abs_diff_norm']:.3f} std")
    if variants:
        print(format_reward_variants(variants))


def _run_latency(args: argparse.Namespace) -> int:
    """Run the latency benchmark, print the table, optionally write JSON and the quality-vs-latency plot."""
    from realign_core.device import pick_device
    from realign_core.evaluation.benchmark.report import (format_table, machine_info, plot_guidance_levers,
                                                          plot_quality_vs_latency, write_json)
    from realign_core.evaluation.benchmark.runs import DEFAULT_GUIDED, bench_guidance, bench_latency
    from realign_core.pipeline import TextToMotionPipeline

    device = args.device or pick_device("auto")
    guided_steps = list(DEFAULT_GUIDED) if args.guided is None else args.guided
    pipeline = TextToMotionPipeline.from_checkpoints(args.models, device, generator=args.generator)
    latent_source = _latent_reward_source(pipeline, args)
    base = _base_settings(pipeline, args)
    guided = bench_guidance(pipeline, None, "spread", base) if pipeline.has_reward else None
    meta = {**machine_info(), "models": str(args.models), "generator": args.generator, "sampler": args.sampler,
            "device": device,
            "guidance": asdict(guided) if guided else None, "bank": bool(pipeline.reward and pipeline.reward.bank),
            "latent_reward": latent_source}
    rows = bench_latency(pipeline, args.batch, args.frames, args.steps, guided_steps, args.repeats, args.warmup,
                         args.placement, args.amp, args.threads, base, progress=_print_row, sampler=args.sampler,
                         reward_spaces=args.reward_space, rounds=args.rounds)
    fidelity, variants = _extras(pipeline, args, base)
    print(f"# {args.generator} on {device}, {args.frames} frames, {args.steps} {args.sampler} steps, "
          f"guidance {meta['guidance']}; seconds per motion")
    print(format_table(rows, args.table_clock))
    _print_extras(fidelity, variants)
    if args.json:
        write_json(args.json, rows, meta, fidelity, variants)
    if args.plot_quality:
        print(f"wrote {plot_quality_vs_latency(rows, args.plot_quality, args.plot_out)}")
    if args.plot_tuning:
        print(f"wrote {plot_guidance_levers(rows, args.plot_tuning, args.plot_out)}")
    return 0


def _latent_reward_source(pipeline: TextToMotionPipeline, args: argparse.Namespace) -> str | None:
    """Where the latent reward of the 'latent' series comes from; with ``--untrained-latent-reward`` and
    none in the folder, an untrained one of that config's size is attached to ``pipeline`` (cost only)."""
    if pipeline.latent_reward is not None:
        return "latent_reward/best.pt"
    if args.untrained_latent_reward is None:
        return None
    from realign_core.models.latent_reward import LatentRewardModel, LatentRewardModelConfig
    from realign_core.pipeline import RewardParts
    from realign_core.training.config import build_dataclass, load_config

    if args.generator != "mld":
        raise SystemExit("realign bench: error: --untrained-latent-reward needs --generator mld")
    section, _ = load_config(args.untrained_latent_reward, "latent_reward")
    vae = pipeline.generator.vae.cfg
    section.update(feature_dim=vae.latent_dim, latent_tokens=vae.latent_tokens, frames_per_token=vae.downsample)
    names = LatentRewardModelConfig.__dataclass_fields__
    cfg = build_dataclass(LatentRewardModelConfig, {k: v for k, v in section.items() if k in names},
                          f"{args.untrained_latent_reward} [latent_reward.model]")
    model = LatentRewardModel(cfg, pipeline.text).to(pipeline.device).eval().requires_grad_(False)
    pipeline.latent_reward = RewardParts(model, pipeline.generator.schedule, None)
    return f"untrained, {args.untrained_latent_reward} [latent_reward.model] (cost only)"


def _run_training(args: argparse.Namespace) -> int:
    """Training throughput of ``args.train`` under each speed variant; a markdown table (and JSON)."""
    import json

    from realign_core.training.speed import VARIANTS, format_rows, machine_facts, measure, with_speedups

    if args.models is None:
        print("realign bench: error: --train needs --models (the model root whose vae/ the denoiser uses)",
              file=sys.stderr)
        return 2
    rows = []
    for variant in VARIANTS:
        rows.append(measure(args.train, args.config, args.data, args.models, variant, steps=args.train_steps))
        print(f"  {variant.name}: {rows[-1]['step_s']:.2f} s/step", file=sys.stderr, flush=True)
    rows = with_speedups(rows)
    machine = machine_facts()
    print(f"# {args.train} training throughput, {args.config}, {args.train_steps} steps per variant; "
          f"{machine['cpu']}, {machine['cores']} cores, native bf16: {'yes' if machine['native_bf16'] else 'no'}")
    print(format_rows(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"kind": args.train, "config": args.config, "machine": machine,
                                               "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
