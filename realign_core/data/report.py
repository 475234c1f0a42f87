"""Dataset report: clip counts, hours, captions per source, lengths, skips."""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from realign_core.data.layout import SPLITS, ClipRecord
from realign_core.motion.skeleton import FPS

LENGTH_BINS_S = (2, 3, 4, 5, 6, 7, 8, 9, 10, 10.05)
HISTOGRAM_FILE = "report_lengths.png"


def _seconds(rec: ClipRecord) -> float:
    return (rec.end_frame - rec.start_frame) / FPS


def caption_stats(records: list[ClipRecord]) -> dict:
    """Per source: clips with >= 1 caption from it, captions, captions per clip."""
    per_source: dict[str, dict] = defaultdict(lambda: {"clips": 0, "captions": 0})
    for rec in records:
        counts = Counter(c.source for c in rec.captions)
        for source, n in counts.items():
            per_source[source]["clips"] += 1
            per_source[source]["captions"] += n
    n_clips = max(len(records), 1)
    for stats in per_source.values():
        stats["captions_per_clip"] = round(stats["captions"] / n_clips, 3)
    per_clip = [len(r.captions) for r in records] or [0]
    return {"by_source": dict(sorted(per_source.items())),
            "per_clip": {"mean": round(float(np.mean(per_clip)), 3), "min": int(min(per_clip)),
                         "max": int(max(per_clip))}}


def make_report(out: Path, records: list[ClipRecord], skipped: list[dict], extra: dict, seconds: float) -> dict:
    """Assemble the report dict and draw the length histogram next to it."""
    lengths = np.array([_seconds(r) for r in records])
    hist, edges = np.histogram(lengths, bins=LENGTH_BINS_S)
    splits = {}
    for split in SPLITS:
        recs = [r for r in records if r.split == split]
        splits[split] = {"clips": len(recs), "trials": len({(r.dataset, r.trial) for r in recs}),
                         "hours": round(sum(map(_seconds, recs)) / 3600, 3)}
    total = max(len(records), 1)
    report = {
        "clips": len(records),
        "clips_original": sum(not r.mirror for r in records),
        "clips_mirrored": sum(r.mirror for r in records),
        "trials": len({(r.dataset, r.trial) for r in records}),
        "hours": round(float(lengths.sum()) / 3600, 3),
        "splits": splits,
        "test_fraction": round(splits["test"]["clips"] / total, 4),
        "captions": caption_stats(records),
        "length_histogram_s": {f"{a:g}-{b:g}": int(n) for a, b, n in zip(edges[:-1], edges[1:], hist)},
        "skipped": {"count": len(skipped),
                    "by_reason": dict(Counter(_reason_kind(s["reason"]) for s in skipped).most_common()),
                    "items": skipped},
        "build_seconds": round(seconds, 1),
        **extra,
    }
    _plot_lengths(out / HISTOGRAM_FILE, lengths)
    return report


def _reason_kind(reason: str) -> str:
    """Group skip reasons: drop the leading file path and numbers."""
    text = reason.split(": ", 1)[-1] if reason.startswith("/") else reason
    return "".join("#" if ch.isdigit() else ch for ch in text)[:80]


def _plot_lengths(path: Path, lengths: np.ndarray) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.hist(lengths, bins=np.arange(2, 10.5, 0.5), color="#4c72b0")
    ax.set_xlabel("clip length (s)")
    ax.set_ylabel("clips")
    ax.set_title(f"{len(lengths)} clips, {lengths.sum() / 3600:.2f} h")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def format_report(report: dict) -> str:
    """Human-readable summary of a report dict."""
    lines = [f"clips: {report['clips']} ({report['clips_original']} + {report['clips_mirrored']} mirrored) "
             f"from {report['trials']} trials, {report['hours']} h"]
    for split, s in report["splits"].items():
        lines.append(f"  {split:5s}: {s['clips']:6d} clips  {s['trials']:5d} trials  {s['hours']:.2f} h")
    lines.append(f"test fraction: {report['test_fraction']:.1%}")
    cap = report["captions"]
    lines.append(f"captions per clip: mean {cap['per_clip']['mean']} (min {cap['per_clip']['min']}, "
                 f"max {cap['per_clip']['max']})")
    for source, s in cap["by_source"].items():
        lines.append(f"  {source:16s} clips {s['clips']:6d}  captions {s['captions']:6d}  "
                     f"per clip {s['captions_per_clip']}")
    lines.append("lengths (s): " + "  ".join(f"{k}:{v}" for k, v in report["length_histogram_s"].items()))
    lines.append(f"skipped: {report['skipped']['count']}")
    for reason, n in report["skipped"]["by_reason"].items():
        lines.append(f"  {n:5d}  {reason}")
    for key in ("sources",):
        if key in report:
            lines.append(f"{key}: {report[key]}")
    lines.append(f"build time: {report['build_seconds']} s")
    return "\n".join(lines)
