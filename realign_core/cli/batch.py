"""``realign batch``: a jobs CSV -> motion files + manifest, here or on a Ray cluster (docs/scale.md).

    realign batch JOBS.csv --out DIR [--ray auto|local|ADDRESS] [--models DIR] [--formats npy bvh npz]
    realign batch --bench 64 --out DIR [--models DIR] [--workers 2]   (motions/s: local vs Ray)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

DESCRIPTION = __doc__


def add_command(sub: argparse._SubParsersAction) -> None:
    """Register ``realign batch``."""
    p = sub.add_parser("batch", help="jobs CSV -> motion files + manifest, here or on a Ray cluster (docs/scale.md)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("jobs", nargs="?", help="jobs CSV (columns: see docs/scale.md); not with --bench")
    p.add_argument("--out", required=True, help="output folder: NAME.npy (+ .bvh, _smpl.npz) and manifest.jsonl")
    p.add_argument("--models", default="models/default", help="model root (default: the shipped models)")
    p.add_argument("--generator", default="mld", choices=["mld", "mdm"])
    p.add_argument("--ray", default=None, metavar="auto|local|ADDRESS",
                   help="run on Ray: 'auto' = the running cluster (ray start / RAY_ADDRESS), 'local' = start one "
                        "here, or HOST:PORT / ray://HOST:10001 (needs pip install '.[ray]')")
    p.add_argument("--workers", type=int, default=None,
                   help="Ray workers (default: one per GPU with --gpus-per-worker, else one per CPU slot)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPU slots (and torch threads) per worker")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="1 = one worker per GPU")
    p.add_argument("--retries", type=int, default=3, help="re-runs of a batch whose worker died (default 3)")
    p.add_argument("--max-batch", type=int, default=32, help="motions per sampling run (the server's default 32)")
    p.add_argument("--formats", nargs="+", default=["npy"], choices=["npy", "bvh", "npz"],
                   help="files per motion (npy always; npz = SMPL)")
    p.add_argument("--device", default="auto", help="local runs: cpu, cuda, ... (default auto)")
    p.add_argument("--threads", type=int, default=None, help="local runs: torch threads (default: as realign serve, all cores but one on the CPU)")
    p.add_argument("--worker-status", default=None, help="folder where Ray workers log batch start/done lines")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--bench", type=int, default=None, metavar="ROWS",
                   help="benchmark: ROWS generated rows, run locally and on a local Ray with --workers (default 2)")
    p.add_argument("--bench-steps", type=int, default=50, help="sampler steps of the bench rows")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    from realign_core.batch import BatchConfig, JobsError, run_batch
    from realign_core.batch.runner import summary_dict

    cfg = BatchConfig(models=Path(args.models), formats=tuple(args.formats), max_batch=args.max_batch,
                      device=args.device, threads=args.threads, generator=args.generator, ray=args.ray, workers=args.workers,
                      cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
                      retries=args.retries, progress=not args.no_progress,
                      worker_status=Path(args.worker_status) if args.worker_status else None)
    if args.bench is not None:
        if args.jobs:
            raise SystemExit("realign batch: give a jobs CSV or --bench ROWS, not both")
        from realign_core.batch.bench import format_bench, run_bench

        result = run_bench(args.bench, Path(args.out), cfg, args.workers or 2, args.bench_steps)
        print(json.dumps(result, indent=1) if args.json else format_bench(result))
        return 0
    if not args.jobs:
        raise SystemExit("realign batch: give a jobs CSV (or --bench ROWS)")
    try:
        summary = run_batch(args.jobs, args.out, cfg)
    except JobsError as exc:
        raise SystemExit(f"realign batch: {exc}")
    except RuntimeError as exc:   # Ray missing, a model mismatch on a worker, a run that failed for good
        raise SystemExit(f"realign batch: {exc}")
    print(json.dumps(summary_dict(summary)) if args.json else summary.line())
    print(f"manifest: {Path(args.out) / 'manifest.jsonl'}")
    return 0
