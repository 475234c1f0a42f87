"""A generator's training curves: losses and the validation generation metric against epochs and hours.

``realign plot-training --log DENOISER/log.jsonl --judged J1.json J2.json ... -o PNG`` reads the
trainer's validation records (one JSON line per epoch with ``epoch``, ``train_loss``, ``val_loss``,
``epoch_seconds`` and, from this version on, ``epoch_cpu_seconds``) and the ``realign eval --judge-val``
results of checkpoints (each with the ``epoch`` it judged) and draws four panels: loss against
epochs and against cumulative hours, judge R@1 / FID against epochs and against hours.

Hours are wall-clock hours of the epochs as logged; on a shared machine they include the time other
jobs took, so the x axis says which clock it is.  A re-run epoch (a resumed run repeating an epoch)
counts its time but keeps only its last validation record.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EpochRecord:
    """One validation record: epoch (1-based), losses, and hours of training up to its end."""

    epoch: int
    train_loss: float
    val_loss: float
    hours: float


@dataclass(frozen=True)
class JudgedCheckpoint:
    """One ``--judge-val`` result: the checkpoint's epoch, judge R@1 and judge FID (validation split)."""

    epoch: int
    judge_r1: float
    judge_fid: float
    path: str


def load_epochs(log: str | Path) -> list[EpochRecord]:
    """The validation records of a trainer's log.jsonl, ordered by epoch (see the module docstring)."""
    rows, hours = {}, 0.0
    for n, line in enumerate(Path(log).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{log}: line {n} is not JSON ({err.msg})") from None
        if not rec.get("validation"):
            continue
        hours += float(rec.get("epoch_seconds", 0.0)) / 3600
        rows[int(rec["epoch"])] = EpochRecord(int(rec["epoch"]), float(rec["train_loss"]), float(rec["val_loss"]),
                                              hours)
    if not rows:
        raise ValueError(f"{log}: no validation records (lines with \"validation\": true)")
    return [rows[e] for e in sorted(rows)]


def load_judged(paths: list[str | Path]) -> list[JudgedCheckpoint]:
    """``--judge-val`` JSON files -> judged checkpoints ordered by epoch; each file must name its epoch."""
    out = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        if data.get("epoch") is None:
            raise ValueError(f"{path}: field 'epoch' is missing (judge results written by realign eval --judge-val "
                             f"record the checkpoint's epoch)")
        out.append(JudgedCheckpoint(int(data["epoch"]), float(data["judge_r1"]), float(data["judge_fid"]), str(path)))
    return sorted(out, key=lambda j: j.epoch)


def hours_at(epochs: list[EpochRecord], epoch: int) -> float:
    """Cumulative hours at the end of ``epoch`` (the nearest logged epoch at or before it)."""
    before = [r.hours for r in epochs if r.epoch <= epoch]
    return before[-1] if before else 0.0


def plot_training(epochs: list[EpochRecord], judged: list[JudgedCheckpoint], out: str | Path,
                  title: str = "latent denoiser") -> Path:
    """Draw the four panels (module docstring) to ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    x_epoch = [r.epoch for r in epochs]
    x_hours = [r.hours for r in epochs]
    for ax, xs, label in ((axes[0, 0], x_epoch, "epoch"), (axes[0, 1], x_hours, "wall-clock hours (shared 2-core CPU)")):
        ax.plot(xs, [r.train_loss for r in epochs], label="train loss")
        ax.plot(xs, [r.val_loss for r in epochs], label="validation loss")
        ax.set_xlabel(label)
        ax.set_ylabel("loss (MSE)")
        ax.legend()
        ax.grid(alpha=0.3)
    j_epoch = [j.epoch for j in judged]
    j_hours = [hours_at(epochs, j.epoch) for j in judged]
    for ax, xs, label in ((axes[1, 0], j_epoch, "epoch"), (axes[1, 1], j_hours, "wall-clock hours (shared 2-core CPU)")):
        ax.plot(xs, [j.judge_r1 for j in judged], "o-", color="tab:green", label="judge R@1 (higher is better)")
        ax.set_xlabel(label)
        ax.set_ylabel("judge R@1")
        twin = ax.twinx()
        twin.plot(xs, [j.judge_fid for j in judged], "s--", color="tab:red", label="judge FID (lower is better)")
        twin.set_ylabel("judge FID")
        lines = ax.get_lines() + twin.get_lines()
        ax.legend(lines, [ln.get_label() for ln in lines], loc="lower right")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}: training curves and the validation generation metric (judge: reward_plain, "
                 f"unguided, validation split)", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
