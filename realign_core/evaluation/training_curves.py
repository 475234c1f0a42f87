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
    """One validation record: epoch (1-based), training loss, the validation loss (or the metric ``load_epochs``
    was asked for), hours of training up to its end, the optimiser step."""

    epoch: int
    train_loss: float
    val_loss: float
    hours: float
    step: int = 0


@dataclass(frozen=True)
class JudgedCheckpoint:
    """One ``--judge-val`` result: the checkpoint's epoch, judge R@1 and judge FID (validation split)."""

    epoch: int
    judge_r1: float
    judge_fid: float
    path: str


def load_epochs(log: str | Path, metric: str = "val_loss") -> list[EpochRecord]:
    """The validation records of a trainer's log.jsonl, ordered by epoch (see the module docstring).

    ``metric``: the validation field read as ``val_loss`` (e.g. ``mpjpe_pose_mm`` for a VAE, ``select_t2m_r1``
    for a reward model)."""
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
        if metric not in rec:
            raise ValueError(f"{log}: line {n} has no field '{metric}' (its fields: {', '.join(sorted(rec))})")
        hours += float(rec.get("epoch_seconds", 0.0)) / 3600
        rows[int(rec["epoch"])] = EpochRecord(int(rec["epoch"]), float(rec["train_loss"]), float(rec[metric]),
                                              hours, int(rec.get("step", 0)))
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
                  title: str = "latent denoiser", metric: str = "val_loss") -> Path:
    """Draw the four panels (module docstring) to ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2 if judged else 1, 2, figsize=(11, 7.5 if judged else 4), squeeze=False)
    x_epoch = [r.epoch for r in epochs]
    x_hours = [r.hours for r in epochs]
    for ax, xs, label in ((axes[0, 0], x_epoch, "epoch"), (axes[0, 1], x_hours, "wall-clock hours (shared 2-core CPU)")):
        ax.plot(xs, [r.train_loss for r in epochs], label="train loss")
        if metric == "val_loss":
            ax.plot(xs, [r.val_loss for r in epochs], label="validation loss")
        else:
            ax.twinx().plot(xs, [r.val_loss for r in epochs], color="tab:orange", label=f"validation {metric}")
            ax.plot([], [], color="tab:orange", label=f"validation {metric} (right axis)")
        ax.set_xlabel(label)
        ax.set_ylabel("loss (MSE)" if metric == "val_loss" else "training loss")
        ax.legend()
        ax.grid(alpha=0.3)
    if not judged:
        return _save(fig, out, f"{title}: training curves")
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
    return _save(fig, out, f"{title}: training curves and the validation generation metric (judge: "
                           f"reward_plain, unguided, validation split)")


def _save(fig, out: str | Path, title: str) -> Path:
    """Title, tight layout, write ``out`` (PNG, parents made), close the figure."""
    import matplotlib.pyplot as plt

    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


@dataclass(frozen=True)
class SizedRun:
    """One denoiser size's run: its validation records, judged checkpoints and the measured cost of a step.

    ``cpu_s_per_step`` is the CPU seconds of one training step on the idle machine (``realign bench --train
    denoiser --json``, the row the run trained with), so ``epochs[i].step * cpu_s_per_step / 3600`` is the run's
    compute in CPU-hours at that epoch -- comparable across sizes, unlike the logged wall clock of a shared machine.
    """

    label: str
    epochs: list[EpochRecord]
    judged: list[JudgedCheckpoint]
    cpu_s_per_step: float

    def cpu_hours(self, epoch: int) -> float:
        """CPU-hours of training at the end of ``epoch`` (its logged step times the measured step cost)."""
        before = [r.step for r in self.epochs if r.epoch <= epoch]
        return (before[-1] if before else 0) * self.cpu_s_per_step / 3600


def step_cost(speed_json: str | Path, variant: str = "+ 2 threads") -> float:
    """CPU seconds per training step of ``variant``'s row in a ``realign bench --train denoiser --json`` file."""
    rows = json.loads(Path(speed_json).read_text()).get("rows", [])
    for row in rows:
        if row.get("variant") == variant:
            return float(row["step_cpu_s"])
    raise ValueError(f"{speed_json}: no row with variant {variant!r} (rows: {[r.get('variant') for r in rows]})")


def load_sized_run(label: str, log: str | Path, speed_json: str | Path, judged: list[str | Path]) -> SizedRun:
    """A :class:`SizedRun` from a trainer's log.jsonl, its size's training-speed JSON and its judge files.
    ``speed_json`` may name the row it trained as after ``::`` (``FILE::VARIANT``; default "+ 2 threads")."""
    path, _, variant = str(speed_json).partition("::")
    cost = step_cost(path, variant) if variant else step_cost(path)
    return SizedRun(label, load_epochs(log), load_judged(judged), cost)


SIZES_TITLE = ("latent denoiser sizes: validation loss and the judged validation generation metric "
               "(judge: reward_plain, unguided)")


def plot_sizes(runs: list[SizedRun], out: str | Path, title: str = SIZES_TITLE) -> Path:
    """Validation loss and the judged generation metric of each run against epochs and CPU-hours (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    judged = any(run.judged for run in runs)      # without judged checkpoints only the loss row is drawn
    fig, axes = plt.subplots(2 if judged else 1, 2, figsize=(11, 7.5 if judged else 4), squeeze=False)
    for run in runs:
        hours = [run.cpu_hours(r.epoch) for r in run.epochs]
        val = [r.val_loss for r in run.epochs]
        line, = axes[0, 0].plot([r.epoch for r in run.epochs], val, label=run.label)
        axes[0, 1].plot(hours, val, color=line.get_color(), label=run.label)
        if judged:
            j_hours = [run.cpu_hours(j.epoch) for j in run.judged]
            axes[1, 0].plot(j_hours, [j.judge_r1 for j in run.judged], "o-", color=line.get_color(), label=run.label)
            axes[1, 1].plot(j_hours, [j.judge_fid for j in run.judged], "s--", color=line.get_color(), label=run.label)
    hours = "CPU-hours (steps x CPU-s per step measured idle)"
    labels = (("epoch", "validation loss (MSE)"), (hours, "validation loss (MSE)"),
              ("CPU-hours", "judge R@1 (higher is better)"), ("CPU-hours", "judge FID (lower is better)"))
    for ax, (xlabel, ylabel) in zip(axes.flat, labels):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend()
        ax.grid(alpha=0.3)
    return _save(fig, out, title)
