"""``realign gpu ...``: the GPU one-shot -- pack the data, shrink the travelling tree, train on a lent GPU,
bring the result in (docs/models.md, "GPU one-shot").

    realign gpu pack --models models/default --data data/cmu_h3d [--out out/gpu/pack.pt]
    realign gpu size [--carry out/gpu]                      bytes a device call would send
    realign gpu prepare [--models models/default --keep vae denoiser]   stash the other model folders
    realign gpu rehearse [--minutes 0.3]                    the device command, here, on a copy of the tree
    realign gpu restore                                     put the stashed folders back (checked)
    realign gpu train --pack P (--models DIR | --config FILE) --out DIR [--minutes 8 ...]   (on the device)
    realign gpu apply --result DIR --models models/default --pack P [--stage DIR] [--install best.pt]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_PACK = "out/gpu/pack.pt"
CARRY = "out/gpu"
DEVICE_MINUTES = 7.0
DEVICE_TIMEOUT_S = 540


def device_command(minutes: float = DEVICE_MINUTES, extra: str = "") -> str:
    """The shell command of the device call (run in the repository root there; $OUT comes back)."""
    return ("set -o pipefail; (nvidia-smi -L || true); PYTHONUNBUFFERED=1 python3 -m realign_core.cli gpu train "
            f"--pack {DEFAULT_PACK} --models models/default --minutes {minutes:g} --out $OUT{extra} "
            "2>&1 | tee $OUT/train.log")


def device_call() -> str:
    """The arguments of the device tool's ``run`` for the one-shot."""
    return json.dumps({"command": device_command(), "carry": [CARRY], "timeout_s": DEVICE_TIMEOUT_S})


def _pack(args: argparse.Namespace) -> int:
    from realign_core.training.gpu_pack_build import build_pack

    pack = build_pack(args.models, args.data, max_frames=args.max_frames)
    path = pack.save(args.out)
    print(f"{pack.describe()}\nwrote {path} ({path.stat().st_size / 2 ** 20:.2f} MiB)")
    return 0


def _size(args: argparse.Namespace) -> int:
    from realign_core.training.gpu_tree import repo_root, size_report, stash_plan

    repo = repo_root(args.repo)
    now = size_report(repo, args.carry)
    moved = [d.relative_to(repo) for d in stash_plan(repo / args.models, args.keep)] if args.keep else []
    after = size_report(repo, args.carry, moved)
    for part, mib in now["parts_mib"].items():
        print(f"{mib:8.2f} MiB  {part}{'   (stashed by prepare)' if part not in after['parts_mib'] else ''}")
    for name, report in (("now", now), (f"after `realign gpu prepare --keep {' '.join(args.keep)}`", after)):
        print(f"{name}: {report['mib']:.2f} MiB in {report['files']} files would travel with carry {args.carry} "
              f"(limit {report['limit_mib']:g} MiB, margin {report['margin_mib']:g} MiB): "
              f"{'fits' if report['fits'] else 'TOO BIG'}")
    print(f"device call: {device_call()}")
    return 0 if after["fits"] else 1


def _prepare(args: argparse.Namespace) -> int:
    from realign_core.training.gpu_tree import default_stash, repo_root, size_report, stash_models

    repo = repo_root(args.repo)
    stash = Path(args.stash) if args.stash else default_stash(repo)
    manifest = stash_models(repo / args.models, tuple(args.keep), stash)
    files = sum(len(v) for v in manifest["entries"].values())
    print(f"moved {sorted(manifest['entries'])} ({files} files) to {stash}; restore with `realign gpu restore`")
    report = size_report(repo, args.carry)
    print(f"{report['mib']:.2f} MiB would travel with carry {args.carry} (limit {report['limit_mib']:g} MiB, "
          f"margin {report['margin_mib']:g} MiB): {'fits' if report['fits'] else 'TOO BIG'}")
    print(f"device call: {device_call()}\nthen: realign gpu restore")
    return 0 if report["fits"] else 1


def _restore(args: argparse.Namespace) -> int:
    from realign_core.training.gpu_tree import default_stash, repo_root, restore_models

    stash = Path(args.stash) if args.stash else default_stash(repo_root(args.repo))
    report = restore_models(stash)
    print(f"restored {report.restored}")
    if not report.ok:
        print("!!! RESTORE INCOMPLETE -- these need a person (nothing was overwritten):", file=sys.stderr)
        for line in report.problems:
            print(f"!!!   {line}", file=sys.stderr)
        return 1
    print("every stashed file is back and matches its SHA-256")
    return 0


def _rehearse(args: argparse.Namespace) -> int:
    from realign_core.training.gpu_tree import rehearse, repo_root, stash_plan

    repo = repo_root(args.repo)
    extra = f" --device cpu --batch {args.batch} --val-every {args.val_every} --threads {args.threads}"
    command = args.command or device_command(args.minutes, extra)
    moved = [d.relative_to(repo) for d in stash_plan(repo / args.models, args.keep)] if args.keep else []
    print(f"rehearsing without {[str(m) for m in moved]} (as after `realign gpu prepare`): {command}", flush=True)
    result = rehearse(repo, args.carry, command, args.timeout, Path(args.out_dir) if args.out_dir else None, moved)
    print(result["output_tail"])
    print(f"rehearsal: rc {result['rc']} in {result['seconds']} s; tree {result['tree_mib']} MiB; "
          f"OUT {json.dumps(result['out_files'])}")
    for line in result["out_problems"]:
        print(f"!!! would not come back: {line}", file=sys.stderr)
    return 0 if result["rc"] == 0 and not result["out_problems"] else 1


def _train(args: argparse.Namespace) -> int:
    import torch

    from realign_core.training.gpu_pack import GpuPack
    from realign_core.training.gpu_train import GpuTrainConfig, PackTrainer, model_from_checkpoint, model_from_section

    if (args.models is None) == (args.config is None):
        raise ValueError("realign gpu train: give --models DIR (continue its denoiser) or --config FILE (a new one)")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = GpuTrainConfig(args.minutes, args.steps, args.batch, args.lr, args.min_lr, args.warmup, args.weight_decay,
                         args.grad_clip, args.ema, args.val_every, args.snapshots, args.seed, args.device, args.amp)
    cfg.check()
    pack = GpuPack.load(args.pack)
    print(f"pack {args.pack}: {pack.describe()}", flush=True)
    start = None
    if args.models:
        model, config, start = model_from_checkpoint(Path(args.models) / "denoiser" / "best.pt", pack)
        _check_vae(Path(args.models), pack)
    else:
        from realign_core.training.config import load_config

        section, _ = load_config(args.config, "denoiser")
        model, config = model_from_section(section, pack, f"{args.config} [denoiser.model]", args.seed)
    print(f"model: {sum(p.numel() for p in model.parameters()):,} parameters, {json.dumps(config)}", flush=True)
    trainer = PackTrainer(pack, model, config, cfg, args.out, start, log=lambda s: print(s, flush=True))
    s = trainer.fit()
    print(f"done: {s['steps']} steps x {s['batch_size']} ({s['epochs']} epochs) in {s['seconds']} s on {s['device']} "
          f"({s['samples_per_s']} samples/s); val loss {s['initial_val_loss']:.5f} -> best {s['best_val_loss']:.5f} "
          f"({s['best_weights']} weights); checkpoints in {args.out}")
    return 0


def _check_vae(models: Path, pack) -> None:
    """Where MODELS/vae/best.pt travelled too, it must be the VAE the pack was built from."""
    from realign_core.guidance.reward_bank import file_sha256

    vae = models / "vae" / "best.pt"
    if vae.is_file() and file_sha256(vae) != pack.meta.get("vae_sha256"):
        raise ValueError(f"{vae} is not the VAE the pack was built from: rebuild the pack (`realign gpu pack`)")


def _apply(args: argparse.Namespace) -> int:
    from realign_core.training.gpu_pack import GpuPack
    from realign_core.training.gpu_result import compare, format_rows, install, result_checkpoints, stage

    models, result = Path(args.models), Path(args.result)
    rows = compare(result, models, GpuPack.load(args.pack), args.device)
    print(format_rows(rows))
    if args.stage:
        for path in result_checkpoints(result):
            out = stage(path, models, Path(args.stage) / path.stem)
            print(f"staged {out}: realign eval --models {out} --data DATA --judge-val --judge-models {models}")
    if args.install:
        chosen = result / args.install if result.is_dir() else result
        row = next((r for r in rows if Path(r["path"]) == chosen), None)
        if row is None:
            raise FileNotFoundError(f"{chosen}: not among the run's checkpoints {[r['name'] for r in rows[1:]]}")
        if row["val_loss"] >= rows[0]["val_loss"] and not args.force:
            print(f"not installed: {chosen.name} validates at {row['val_loss']:.5f}, the current denoiser at "
                  f"{rows[0]['val_loss']:.5f} (--force installs anyway, e.g. when --judge-val prefers it)")
            return 1
        print(f"installed {chosen} -> {install(chosen, models)} (the previous one is in git)")
    return 0


def add_gpu_command(sub: argparse._SubParsersAction) -> None:
    """``realign gpu {pack,size,prepare,rehearse,restore,train,apply}``."""
    gpu = sub.add_parser("gpu", help="the GPU one-shot: pack, shrink the tree, train on a lent GPU, bring it in",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = gpu.add_subparsers(dest="gpu_command", required=True)

    p = verbs.add_parser("pack", help="VAE posteriors + sentence embeddings of the training windows -> one file")
    p.add_argument("--models", default="models/default", help="model root with vae/ and denoiser/")
    p.add_argument("--data", required=True, help="dataset folder the denoiser trains on")
    p.add_argument("--out", default=DEFAULT_PACK)
    p.add_argument("--max-frames", type=int, default=None, help="window size (default: the checkpoint's)")
    p.set_defaults(func=_pack)

    for name, func, text in (("size", _size, "bytes a device call would send"),
                             ("prepare", _prepare, "move the model folders the run does not need out of the tree")):
        v = verbs.add_parser(name, help=text)
        v.add_argument("--repo", default=".")
        v.add_argument("--carry", nargs="*", default=[CARRY], help="ignored paths the call carries")
        v.set_defaults(func=func)
        v.add_argument("--models", default="models/default", help="model root, relative to the repository")
        v.add_argument("--keep", nargs="*", default=["vae", "denoiser"], help="model folders that stay")
        if name == "prepare":
            v.add_argument("--stash", default=None, help="default: ../.REPO_gpu_stash beside the repository")

    r = verbs.add_parser("restore", help="move the stashed model folders back, checking every file")
    r.add_argument("--repo", default=".")
    r.add_argument("--stash", default=None)
    r.set_defaults(func=_restore)

    h = verbs.add_parser("rehearse", help="run the device command here on a copy of the travelling files (CPU)")
    h.add_argument("--repo", default=".")
    h.add_argument("--carry", nargs="*", default=[CARRY])
    h.add_argument("--minutes", type=float, default=0.3)
    h.add_argument("--batch", type=int, default=64)
    h.add_argument("--val-every", type=int, default=5)
    h.add_argument("--threads", type=int, default=2)
    h.add_argument("--timeout", type=float, default=900)
    h.add_argument("--command", default=None, help="another command (default: the device command on the CPU)")
    h.add_argument("--models", default="models/default")
    h.add_argument("--keep", nargs="*", default=["vae", "denoiser"], help="model folders in the copy (as prepare)")
    h.add_argument("--out-dir", default=None, help="keep OUT here (default: a temporary folder)")
    h.set_defaults(func=_rehearse)

    t = verbs.add_parser("train", help="train the denoiser on a pack (what runs on the GPU; no dataset, no text model)")
    t.add_argument("--pack", required=True)
    t.add_argument("--models", default=None, help="continue MODELS/denoiser/best.pt")
    t.add_argument("--config", default=None, help="or a new model from this TOML's [denoiser.model]")
    t.add_argument("--out", required=True, help="folder for best.pt, final.pt, snap_K.pt, logs")
    t.add_argument("--minutes", type=float, default=DEVICE_MINUTES, help="training budget")
    t.add_argument("--steps", type=int, default=0, help="> 0: stop after this many steps")
    t.add_argument("--batch", type=int, default=512)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--min-lr", type=float, default=1e-5)
    t.add_argument("--warmup", type=int, default=500, help="warm-up steps")
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--grad-clip", type=float, default=1.0)
    t.add_argument("--ema", type=float, default=0.999, help="EMA decay per step (0 = off)")
    t.add_argument("--val-every", type=int, default=1000, help="steps between validations")
    t.add_argument("--snapshots", type=int, default=1, help="EMA snapshots during the run")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"])
    t.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    t.set_defaults(func=_train)

    a = verbs.add_parser("apply", help="compare a run's checkpoints with the installed denoiser; stage or install")
    a.add_argument("--result", required=True, help="the run's OUT folder (or one checkpoint)")
    a.add_argument("--models", default="models/default")
    a.add_argument("--pack", default=DEFAULT_PACK)
    a.add_argument("--device", default="cpu")
    a.add_argument("--stage", default=None, help="write a candidate model root per checkpoint under this folder")
    a.add_argument("--install", default=None, help="copy this checkpoint (e.g. best.pt) to MODELS/denoiser/best.pt")
    a.add_argument("--force", action="store_true", help="install even if its pack val loss is not lower")
    a.set_defaults(func=_apply)
