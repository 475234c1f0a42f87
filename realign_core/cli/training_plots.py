"""``realign plot-training`` and ``realign plot-sizes``: a generator's training curves as pictures."""
from __future__ import annotations

import argparse


def _plot_training(args: argparse.Namespace) -> int:
    from realign_core.evaluation.training_curves import load_epochs, load_judged, plot_training

    try:
        epochs, judged = load_epochs(args.log, args.metric), load_judged(args.judged)
    except (OSError, ValueError, KeyError) as err:
        raise SystemExit(f"realign plot-training: {err}") from None
    print(f"wrote {plot_training(epochs, judged, args.output, args.title, args.metric)} ({len(epochs)} epochs, "
          f"{len(judged)} judged checkpoints)")
    return 0


def _plot_sizes(args: argparse.Namespace) -> int:
    from realign_core.evaluation.training_curves import SIZES_TITLE, load_sized_run, plot_sizes

    runs = []
    for spec in args.run:
        if len(spec) < 3:
            raise SystemExit(f"realign plot-sizes: --run {' '.join(spec)}: needs LABEL LOG SPEED_JSON [JUDGED ...]")
        try:
            runs.append(load_sized_run(spec[0], spec[1], spec[2], spec[3:]))
        except (OSError, ValueError, KeyError) as err:
            raise SystemExit(f"realign plot-sizes: --run {spec[0]}: {err}") from None
    for run in runs:
        print(f"{run.label}: {len(run.epochs)} epochs, {run.cpu_hours(run.epochs[-1].epoch):.2f} CPU-h "
              f"({run.cpu_s_per_step:.2f} CPU-s/step), best val loss {min(r.val_loss for r in run.epochs):.4f}, "
              f"{len(run.judged)} judged")
    print(f"wrote {plot_sizes(runs, args.output, args.title or SIZES_TITLE)}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``realign plot-training`` and ``realign plot-sizes``."""
    pt = sub.add_parser("plot-training", help="loss and the judged validation metric against epochs and hours")
    pt.add_argument("--log", required=True, help="a trainer's log.jsonl (e.g. models/default/denoiser/log.jsonl)")
    pt.add_argument("--judged", nargs="*", default=[], help="realign eval --judge-val JSON files (each with 'epoch')")
    pt.add_argument("--title", default="latent denoiser")
    pt.add_argument("--metric", default="val_loss",
                    help="the validation field drawn beside the training loss (e.g. mpjpe_pose_mm, select_t2m_r1)")
    pt.add_argument("-o", "--output", required=True, help="PNG path")
    pt.set_defaults(func=_plot_training)

    ps = sub.add_parser("plot-sizes", help="denoiser sizes: validation loss and judged metric against CPU-hours")
    ps.add_argument("--run", nargs="+", action="append", required=True, metavar="ARG",
                    help="LABEL LOG SPEED_JSON [JUDGED ...]: a run's label, its trainer log.jsonl, its size's "
                         "realign bench --train denoiser --json file (FILE::VARIANT picks the row it trained "
                         "as; default '+ 2 threads'), and its realign eval --judge-val files")
    ps.add_argument("--title", default=None, help="figure title (default: the denoiser-sizes one)")
    ps.add_argument("-o", "--output", required=True, help="PNG path")
    ps.set_defaults(func=_plot_sizes)
