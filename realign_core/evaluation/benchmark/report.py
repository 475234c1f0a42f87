"""Output of the latency benchmark: the text tables, the JSON file and the quality-vs-latency plot.

Rows are the dicts of :func:`realign_core.evaluation.benchmark.runs.bench_latency`
(seconds per motion, MiB) and of ``bench_reward_variants`` (milliseconds per
reward pass).  :func:`plot_quality_vs_latency` joins them with the quality rows
of the results table (``realign eval --table --curve``) by guided-step count.
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from realign_core.evaluation.benchmark.instrument import PHASES

KEY_COLUMNS = (("generator", "gen", "{}"), ("device", "dev", "{}"), ("batch", "B", "{}"),
               ("guided_steps", "guided", "{}"), ("reward_space", "space", "{}"), ("placement", "place", "{}"),
               ("amp", "reward", "{}"),
               ("threads", "thr", "{}"))
TIME_COLUMNS = (("per_motion_s", "s/motion", "{:.3f}"), ("slowdown", "x unguided", "{:.2f}"),
                ("per_motion_cpu_s", "cpu s/motion", "{:.3f}"), ("slowdown_cpu", "x unguided cpu", "{:.2f}"))
MEMORY_COLUMNS = (("mem_extra_mb", "peak+MB", "{:.0f}"), ("mem_peak_mb", "peak MB", "{:.0f}"))


def table_columns(clock: str = "wall") -> tuple[tuple[str, str, str], ...]:
    """The columns of :func:`format_table`; the split is in wall or process-CPU seconds."""
    suffix = {"wall": "_s", "cpu": "_cpu_s"}[clock]
    split = tuple((f"{p}{suffix}", f"{p} ({clock})", "{:.3f}") for p in (*PHASES, "other"))
    return KEY_COLUMNS + TIME_COLUMNS + split + MEMORY_COLUMNS


def format_table(rows: Iterable[dict[str, Any]], clock: str = "wall") -> str:
    """A plain-text table of benchmark rows (seconds per motion; the split in ``clock`` seconds)."""
    columns = table_columns(clock)
    cells = [[head for _, head, _ in columns]]
    for r in rows:
        cells.append([fmt.format(r[key]) if r.get(key) is not None else "-" for key, _, fmt in columns])
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def format_reward_variants(rows: Iterable[dict[str, Any]]) -> str:
    """Plain-text table of :func:`bench_reward_variants` rows."""
    lines = [f"{'reward variant':<28} {'layers':>6} {'down':>4} {'width':>5} {'B':>3} {'ms/pass':>8} {'cpu ms':>8}"]
    for r in rows:
        lines.append(f"{r['variant']:<28} {r['motion_layers']:>6} {r['downsample']:>4} {r['latent_dim']:>5} "
                     f"{r['batch']:>3} {r['pass_ms']:>8.1f} {r['pass_cpu_ms']:>8.1f}")
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on (CPU load included: a busy machine inflates them)."""
    info = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    if hasattr(os, "getloadavg"):
        info["loadavg"] = [round(v, 2) for v in os.getloadavg()]
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def write_json(path: str | Path, rows: list[dict[str, Any]], meta: dict[str, Any],
               fidelity: list[dict[str, Any]] | None = None,
               reward_variants: list[dict[str, Any]] | None = None) -> None:
    """Write ``{meta, rows, fidelity, reward_variants}`` as JSON (the plot reads ``rows``)."""
    payload = {"meta": meta, "rows": rows, "fidelity": fidelity or [], "reward_variants": reward_variants or []}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=1))


# ---------------------------------------------------------------------------------------------- plot


def load_bench_rows(source: str | Path | dict | list) -> list[dict[str, Any]]:
    """Rows from a path, a {'rows': [...]} payload, a results table with a 'curve' (``realign eval
    --table --curve``) or a list."""
    if isinstance(source, (str, Path)):
        source = json.loads(Path(source).read_text())
    if isinstance(source, dict):
        return list(source["curve"] if "curve" in source else source["rows"])
    return list(source)


def guided_key(value: Any, steps: int | None = None) -> str:
    """Normalise a guided-step count: None / 'all' / >= steps -> 'all', else the integer as text."""
    if value is None or str(value).lower() == "all":
        return "all"
    if steps is not None and int(value) >= steps:
        return "all"
    return str(int(value))


def curve_points(latency: list[dict[str, Any]], quality: list[dict[str, Any]], batch: int = 1,
                 placement: str = "spread", amp: str = "fp32", reward_space: str = "motion") -> list[dict[str, Any]]:
    """Join quality rows with the latency rows of one batch size / placement / precision / reward space
    (unguided rows belong to every space), sorted by latency."""
    lat = {guided_key(r["guided_steps"], r.get("steps")): r for r in latency
           if r["batch"] == batch and r.get("amp", "fp32") == amp
           and r.get("reward_space", "motion") in (reward_space, "-")
           and (r.get("placement", "spread") == placement or guided_key(r["guided_steps"]) in ("0", "all"))}
    points = []
    for q in quality:
        key = guided_key(q["guided_steps"], lat.get("all", {}).get("steps"))
        if key in lat:
            points.append({**q, "guided": key, "latency_s": lat[key]["per_motion_s"],
                           "slowdown": lat[key].get("slowdown", math.nan)})
    return sorted(points, key=lambda p: p["latency_s"])


def plot_quality_vs_latency(latency: str | Path | dict | list, quality: str | Path | dict | list,
                            out: str | Path = "docs/img/quality_vs_latency.png", batch: int = 1,
                            placement: str = "spread", title: str | None = None) -> Path:
    """R@1 and FID (with their 95% CIs) against per-motion latency, one point per guided-step count.

    latency: the JSON of ``--json`` (or its rows); quality: rows {guided_steps, r1, r1_ci, fid, fid_ci}.
    A dotted line marks the target, 2x the unguided latency.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = curve_points(load_bench_rows(latency), load_bench_rows(quality), batch, placement)
    if not points:
        raise ValueError("no guided-step count is in both the latency and the quality rows")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    xs = [p["latency_s"] for p in points]
    for ax, key, label in ((axes[0], "r1", "R@1 (higher is better)"), (axes[1], "fid", "FID (lower is better)")):
        ax.errorbar(xs, [p[key] for p in points], yerr=[p.get(f"{key}_ci", 0.0) or 0.0 for p in points],
                    marker="o", capsize=3)
        for p in points:
            ax.annotate(p["guided"], (p["latency_s"], p[key]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        unguided = [p["latency_s"] for p in points if p["guided"] == "0"]
        if unguided:
            ax.axvline(2 * unguided[0], linestyle=":", color="grey", label="2x unguided")
            ax.legend(fontsize=8)
        ax.set_xlabel(f"seconds per motion (batch {batch})")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(title or "ReAlign: quality vs latency by number of guided steps")
    return save_figure(fig, out)


def save_figure(fig: Any, out: str | Path, dpi: int = 120) -> Path:
    """Write a matplotlib figure to ``out`` (parents created), close it, return the path."""
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def best_tuning_rows(tuning: str | Path | dict, placement: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """(reward space, {guided-step key: candidate row}) of a validation guidance search (``realign
    tune-guidance`` JSON): per guided-step count at ``placement`` (the all-steps rows belong to every
    placement), the candidate with the highest judge R@1 of any scale or mix; key "0" is the baseline."""
    result = json.loads(Path(tuning).read_text()) if isinstance(tuning, (str, Path)) else tuning
    steps = int(result["config"]["steps"])
    best: dict[str, dict[str, Any]] = {"0": result["baseline"]}
    space = "motion"
    for row in (r for stage in result["stages"] for r in stage):
        settings = row["settings"]
        space = settings.get("reward_space", "motion")
        key = guided_key(settings["guided_steps"], steps)
        if key != "all" and settings["placement"] != placement:
            continue
        if key not in best or row["judge_r1"] > best[key]["judge_r1"]:
            best[key] = row
    return space, best


def tuning_quality_rows(tuning: str | Path | dict, placement: str) -> tuple[str, list[dict[str, Any]]]:
    """(reward space, rows {guided_steps, r1, fid}) of :func:`best_tuning_rows`: the judge's R@1 and FID."""
    space, best = best_tuning_rows(tuning, placement)
    return space, [{"guided_steps": 0 if key == "0" else key, "r1": row["judge_r1"], "fid": row["judge_fid"]}
                   for key, row in best.items()]


def plot_guidance_levers(latency: str | Path | dict | list, tunings: list[str | Path | dict],
                         out: str | Path = "docs/img/guidance_levers_val.png", batch: int = 1,
                         placements: tuple[str, ...] = ("late", "spread"), target: float = 1.3) -> Path:
    """Validation quality (judge R@1, judge FID) against measured latency, one series per reward model and
    placement of the guided steps, one point per guided-step count.  latency: ``realign bench --json`` rows
    (guided rows of one placement: a guided step costs the same wherever it sits); tunings: the
    ``tune-guidance`` JSONs.  A dotted line marks ``target`` x the unguided latency."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = load_bench_rows(latency)
    timed = [r for r in rows if guided_key(r["guided_steps"]) not in ("0", "all")]
    bench_placement = timed[0].get("placement", "spread") if timed else "spread"
    series = []
    for tuning in tunings:
        for placement in placements:
            space, quality = tuning_quality_rows(tuning, placement)
            points = curve_points(rows, quality, batch, bench_placement, reward_space=space)
            if len(points) >= 2:
                series.append((f"{space} reward, {placement}", "-" if placement == "late" else "--", points))
    if not series:
        raise ValueError("no tuning series has two guided-step counts with a latency row")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for label, style, points in series:
        for ax, key in ((axes[0], "r1"), (axes[1], "fid")):
            ax.plot([p["latency_s"] for p in points], [p[key] for p in points], marker="o", linestyle=style,
                    label=label)
            for p in points:
                ax.annotate(p["guided"], (p["latency_s"], p[key]), textcoords="offset points", xytext=(3, 3),
                            fontsize=7)
    unguided = [r["per_motion_s"] for r in rows if guided_key(r["guided_steps"]) == "0" and r["batch"] == batch]
    for ax, label in ((axes[0], "judge R@1 (validation; higher is better)"),
                      (axes[1], "judge FID (validation; lower is better)")):
        if unguided:
            ax.axvline(target * unguided[0], linestyle=":", color="grey", label=f"{target:g}x unguided")
        ax.set_xlabel(f"seconds per motion (batch {batch}, measured)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle("Guidance levers: quality on validation vs latency (numbers: guided steps)")
    return save_figure(fig, out)


LatencyKey = tuple[str, int, str, str]   # (sampler, steps, reward space or "-" when unguided, guided-step key)


def latency_index(latency: Any, batch: int = 1) -> dict[LatencyKey, float]:
    """Per-motion seconds of ``realign bench --json`` rows (one source or a list of sources) at ``batch``,
    keyed by (sampler, steps, reward space, guided-step key); unguided rows have space "-" and key "0"."""
    sources = latency if isinstance(latency, (list, tuple)) and latency and not isinstance(latency[0], dict) \
        else [latency]
    out: dict[LatencyKey, float] = {}
    for source in sources:
        for r in load_bench_rows(source):
            if r["batch"] != batch:
                continue
            key = guided_key(r["guided_steps"], r.get("steps"))
            space = "-" if key == "0" else r.get("reward_space", "motion")
            out[(r.get("sampler", "ddim"), int(r["steps"]), space, key)] = r["per_motion_s"]
    return out


def _row_latency(lat: dict[LatencyKey, float], method: dict[str, Any], table_steps: int) -> tuple[str, float] | None:
    """(label, seconds) of a results-table row from the latency index, or None when it was not timed."""
    sampler, steps, g = method.get("sampler", "ddim"), int(method.get("steps") or table_steps), method["guidance"]
    key = "0" if g is None else guided_key(g["guided_steps"], steps)
    seconds = lat.get((sampler, steps, "-" if g is None else g["reward_space"], key))
    return None if seconds is None else (key, seconds)


def _test_series(table: dict[str, Any], lat: dict[LatencyKey, float]) -> dict[str, list[tuple[str, str, float]]]:
    """{series label: [(row name, point label, seconds)]}: the guidance levers (reward space x placement, one
    point per guided-step count, from the baseline) and the sampler-steps lever (unguided, and with the
    default guidance; one point per sampler and step count)."""
    series: dict[str, list[tuple[str, str, float]]] = {}
    steps = table["steps"]
    baseline = _row_latency(lat, table["methods"].get("mld baseline", {"guidance": None}), steps)
    for name, method in table["methods"].items():
        timed = _row_latency(lat, method, steps)
        if timed is None or method["guidance"] is None and not name.startswith("mld sampler:"):
            continue
        g = method["guidance"]
        if name.startswith("mld lever:"):
            label, point = f"{g['reward_space']} reward, {g['placement']}", timed[0]
        elif name.startswith("mld sampler:"):
            label = "sampler steps, " + ("unguided" if g is None else "default guidance")
            point = name.split(": ", 1)[1].split(" steps")[0]
        else:
            continue
        series.setdefault(label, []).append((name, point, timed[1]))
    for label, points in series.items():
        if baseline is not None and not label.endswith("default guidance"):
            start = "ddim " + str(steps) if label.startswith("sampler") else "0"
            points.append(("mld baseline", start, baseline[1]))
        points.sort(key=lambda p: p[2])
    return series


def plot_levers_test(table: dict[str, Any], latency: Any, out: str | Path, batch: int = 1,
                     target: float = 1.3) -> Path:
    """Test-split quality against measured latency, one series per lever of a results table made with
    ``realign eval --table --levers`` (rows "mld lever: ...", "mld sampler: ..." and "mld baseline"): R@1 and
    FID with their 95 % CIs, one row of panels per evaluator; the guidance levers have one point per
    guided-step count (the baseline is every series' 0), the sampler lever one per sampler and step count;
    rows "mld default: ..." (the shipped default) are black stars.  latency: one or several ``realign bench
    --json`` files (or row lists) covering those rows."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    lat = latency_index(latency, batch)
    unguided = lat.get(("ddim", int(table["steps"]), "-", "0"))
    if unguided is None:
        raise ValueError(f"latency rows have no unguided DDIM-{table['steps']} row at batch {batch}")
    defaults = [(name, timed[1]) for name, m in table["methods"].items() if name.startswith("mld default:")
                for timed in [_row_latency(lat, m, table["steps"])] if timed is not None]
    series = _test_series(table, lat)
    if not series or "mld baseline" not in table["rows"]:
        raise ValueError("the table has no lever rows with a latency row, or no 'mld baseline'")
    evaluators = {"evaluator": table["rows"], **table.get("rows_by_evaluator", {})}
    fig, axes = plt.subplots(len(evaluators), 2, figsize=(10, 3.6 * len(evaluators)), squeeze=False)
    for (kind, metrics), panel in zip(evaluators.items(), axes):
        for label, points in sorted(series.items()):
            points = [p for p in points if p[0] in metrics]
            for ax, metric in zip(panel, ("r1", "fid")):
                ys = [metrics[name][metric] for name, _, _ in points]
                style = ":" if label.startswith("sampler") else "-" if label.startswith("latent") else "--"
                ax.errorbar([x for _, _, x in points], [y[0] for y in ys], yerr=[y[1] for y in ys],
                            marker="s" if label.startswith("sampler") else "o", capsize=3, label=label,
                            linestyle=style)
                for (_, key, x), y in zip(points, ys):
                    ax.annotate(key, (x, y[0]), textcoords="offset points", xytext=(3, 3), fontsize=7)
        for name, x in defaults:
            for ax, metric in zip(panel, ("r1", "fid")):
                y = metrics[name][metric]
                ax.errorbar([x], [y[0]], yerr=[y[1]], marker="*", markersize=13, color="black", capsize=3,
                            linestyle="none", label=f"shipped default ({name.split(': ', 1)[1]})", zorder=5)
        for ax, metric in zip(panel, ("R@1 (higher is better)", "FID (lower is better)")):
            ax.axvline(target * unguided, linestyle=":", color="grey", label=f"{target:g}x unguided")
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator([0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]))
            ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel(f"seconds per motion (batch {batch}, measured; log scale)")
            ax.set_ylabel(f"{metric}, {kind}")
            ax.grid(alpha=0.3)
    axes[0][1].legend(fontsize=7)
    fig.suptitle(f"Levers on the test split ({table['prompts']} prompts x {table['repeats']}; numbers: guided "
                 f"steps of DDIM {table['steps']}, or the sampler and its steps)", fontsize=10)
    return save_figure(fig, out)
