"""Kinematic alignment of a generator: generate for every prompt, check, and report pass rates.

:func:`kinematic_alignment` generates samples for every prompt of
:mod:`realign_core.evaluation.kinematic.checks` and reports the fraction that
pass its check, with a 95 % Wilson interval; :func:`compare_reports` gives the
paired difference of two settings (same prompts and seeds);
:func:`evaluate_generator` runs the baseline and the models' default guidance.
Motions are joints (F, 22, 3) in metres, Y up, 20 fps.  The command line is
``realign eval --kinematic`` (:mod:`realign_core.cli.evaluate`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from realign_core.evaluation.kinematic.checks import (PROMPTS, Joints, KinematicPrompt, MeasuredMotion, arm_measures,
                                                     ground_measures)
from realign_core.evaluation.kinematic.labels import percent_with_ci
from realign_core.evaluation.metrics import paired_difference, wilson_interval
from realign_core.motion.skeleton import FPS

Generate = Callable[[list[str], list[int], list[int]], list[Joints]]   # (captions, frames, seeds) -> joints


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: sum(a[k] for a in rows) / len(rows) for k in rows[0]} if rows else {}


@dataclass
class PromptAlignment:
    """Per prompt: which samples (in seed order) passed its check."""

    name: str
    caption: str
    seeds: list[int]
    matched: list[bool]
    arm: list[dict[str, float]] = field(default_factory=list)      # per sample: checks.arm_measures
    ground: list[dict[str, float]] = field(default_factory=list)   # per sample: checks.ground_measures

    def arm_mean(self) -> dict[str, float]:
        """The mean of each arm measure over the samples (empty without measures)."""
        return _mean(self.arm)

    def ground_mean(self) -> dict[str, float]:
        """The mean of each ground measure over the samples (empty without measures)."""
        return _mean(self.ground)

    @property
    def fraction(self) -> float:
        return sum(self.matched) / len(self.matched) if self.matched else 0.0

    @property
    def ci(self) -> tuple[float, float]:
        return wilson_interval(sum(self.matched), len(self.matched))


@dataclass
class AlignmentReport:
    """Kinematic alignment of one generation setting over the prompt set.

    ``overall`` pools all samples (every prompt has the same number of samples,
    so it is also the mean of the per-prompt fractions); its interval is Wilson's
    on the pooled count (samples are independent draws, one seed each).
    """

    prompts: list[PromptAlignment]
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)   # what generated the samples (for the JSON)

    @property
    def matched(self) -> list[bool]:
        return [x for p in self.prompts for x in p.matched]

    @property
    def overall(self) -> float:
        flat = self.matched
        return sum(flat) / len(flat) if flat else 0.0

    @property
    def overall_ci(self) -> tuple[float, float]:
        flat = self.matched
        return wilson_interval(sum(flat), len(flat))

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds, "settings": self.settings, "overall": self.overall,
            "overall_ci95": list(self.overall_ci),
            "prompts": {p.name: {"caption": p.caption, "fraction": p.fraction, "ci95": list(p.ci),
                                 "n": len(p.matched), "seeds": p.seeds, "matched": p.matched,
                                 "arm_measures_mean": p.arm_mean(), "arm_measures": p.arm,
                                 "ground_measures_mean": p.ground_mean(), "ground_measures": p.ground}
                        for p in self.prompts},
        }


def kinematic_alignment(generate: Generate, prompts: Sequence[KinematicPrompt] = PROMPTS,
                        samples_per_prompt: int = 10, seconds: float = 4.0, seed: int = 0,
                        batch_size: int = 32) -> AlignmentReport:
    """Generate ``samples_per_prompt`` motions of ``seconds`` for each prompt and check them.

    generate(captions, frames, seeds) -> list of (F, 22, 3) joints (m, Y up, 20 fps);
    frames = round(seconds * 20).  Sample k of prompt i uses seed
    ``seed + i * samples_per_prompt + k``, so two settings run with the same
    arguments are paired sample by sample.  Returns per-prompt pass fractions.
    """
    if samples_per_prompt < 1:
        raise ValueError("samples_per_prompt must be >= 1")
    frames = max(2, round(seconds * FPS))
    n = samples_per_prompt
    jobs = [(p, seed + i * n + k) for i, p in enumerate(prompts) for k in range(n)]
    passed: list[bool] = []
    arms: list[dict[str, float]] = []
    grounds: list[dict[str, float]] = []
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        motions = generate([p.caption for p, _ in chunk], [frames] * len(chunk), [s for _, s in chunk])
        if len(motions) != len(chunk):
            raise ValueError(f"generate returned {len(motions)} motions for {len(chunk)} requests")
        measured = [MeasuredMotion(motion, FPS) for motion in motions]
        passed += [p.matches(m) for (p, _), m in zip(chunk, measured)]
        arms += [arm_measures(m) for m in measured]
        grounds += [ground_measures(m) for m in measured]
    rows = [PromptAlignment(p.name, p.caption, [s for _, s in jobs[i * n:(i + 1) * n]], passed[i * n:(i + 1) * n],
                            arms[i * n:(i + 1) * n], grounds[i * n:(i + 1) * n])
            for i, p in enumerate(prompts)]
    return AlignmentReport(rows, frames / FPS)


def compare_reports(baseline: AlignmentReport, guided: AlignmentReport) -> dict[str, Any]:
    """Per prompt and overall: guided - baseline pass fraction with a paired 95 % interval."""
    out: dict[str, Any] = {}
    for a, b in zip(baseline.prompts, guided.prompts):
        if a.seeds != b.seeds:
            raise ValueError(f"{a.name}: the two reports used different seeds; they are not paired")
        out[a.name] = dict(zip(("difference", "low", "high"), paired_difference(a.matched, b.matched)))
    out["overall"] = dict(zip(("difference", "low", "high"), paired_difference(baseline.matched, guided.matched)))
    return out


def label_width(labels: Sequence[str]) -> int:
    """The width of a text table's prompt column: its longest label, at least 14 characters."""
    return max(14, *(len(label) for label in labels))


def format_reports(reports: dict[str, AlignmentReport]) -> str:
    """A text table: one row per prompt (and overall), per setting 'pass % [95 % CI]', and when
    there are two settings the paired difference (second - first) with its 95 % interval."""
    names = list(reports)
    diff = compare_reports(reports[names[0]], reports[names[1]]) if len(names) == 2 else None
    labels = [p.name for p in reports[names[0]].prompts] + ["overall"]
    width = label_width(labels)
    header = f"{'prompt':{width}s}" + "".join(f" | {n:>20s}" for n in names) + (f" | {'difference':>22s}" if diff else "")
    lines = [header, "-" * len(header)]
    for i, label in enumerate(labels):
        cells = [percent_with_ci(r.overall, r.overall_ci) if label == "overall" else percent_with_ci(r.prompts[i].fraction, r.prompts[i].ci)
                 for r in reports.values()]
        line = f"{label:{width}s}" + "".join(f" | {c:>20s}" for c in cells)
        if diff:
            d = diff[label]
            line += f" | {100 * d['difference']:+6.1f} [{100 * d['low']:+6.1f},{100 * d['high']:+6.1f}]"
        lines.append(line)
    first = reports[names[0]]
    lines.append(f"pass % [Wilson 95 % CI], {len(first.prompts[0].matched) if first.prompts else 0} samples per "
                 f"prompt of {first.seconds:g} s; difference: paired, percentage points [95 % CI]")
    return "\n".join(lines)


def pipeline_generator(pipe: Any, sampling: Any, guidance: Any = None,
                       layer: tuple[str, str] | None = None, layer_candidates: int | None = None) -> Generate:
    """``generate(captions, frames, seeds)`` of a :class:`~realign_core.pipeline.TextToMotionPipeline`
    with fixed sampling and guidance settings (None = the unguided baseline); ``layer`` = (part, prompt): each
    motion gets that body part from the prompt's own motion of the same seed, as ``realign generate --layer``
    makes it (``control.parts.part_layer``, its default candidates)."""
    def generate(captions: list[str], frames: list[int], seeds: list[int]) -> list[Joints]:
        out = pipe(captions, frames, seeds, sampling, guidance)
        feats, mask = out.features, out.mask
        if layer is None:
            return pipe.to_joints(feats, mask)
        from realign_core.control.parts import layer_part, part_layer
        from realign_core.motion.features import features_to_joints

        return [features_to_joints(layer_part(feats[i, :f].cpu().numpy(),
                                              part_layer(pipe, layer[1], layer[0], f, s, sampling, guidance,
                                                         candidates=layer_candidates)))
                for i, (f, s) in enumerate(zip(frames, seeds))]
    return generate


def evaluate_generator(models: Path, generator: str = "mld", samples: int = 10, seconds: float = 4.0,
                       strength: float | None = None, steps: int = 50, cfg_scale: float | None = None,
                       seed: int = 0, batch_size: int = 32, device: str | None = None,
                       prompts: Sequence[KinematicPrompt] = PROMPTS,
                       layer: tuple[str, str] | None = None,
                       layer_candidates: int | None = None,
                       foot_lock: bool | None = None) -> dict[str, AlignmentReport]:
    """Baseline and guided (the models' default guidance with ``strength`` replaced, if given)
    kinematic alignment of one generator; guided is skipped when the folder has no reward model.  ``layer``:
    see :func:`pipeline_generator`; ``foot_lock``: None = the models' default (guidance.toml)."""
    from realign_core.device import pick_device
    from realign_core.pipeline import SamplingConfig, TextToMotionPipeline

    device = pick_device(device)
    pipe = TextToMotionPipeline.from_checkpoints(models, device=device, generator=generator)
    frames = min(round(seconds * FPS), pipe.max_frames)
    seconds = frames / FPS
    sampling = SamplingConfig(steps=steps, cfg_scale=cfg_scale,
                              foot_lock=pipe.default_foot_lock if foot_lock is None else foot_lock)
    settings = {"baseline": None}
    if pipe.has_reward:
        default = pipe.default_guidance
        settings["guided"] = default if strength is None else replace(default, strength=float(strength))
    reports = {}
    for name, guidance in settings.items():
        report = kinematic_alignment(pipeline_generator(pipe, sampling, guidance, layer, layer_candidates), prompts,
                                     samples, seconds, seed, batch_size)
        report.settings = {"generator": generator, "sampling": asdict(sampling),
                           "guidance": asdict(guidance) if guidance else None,
                           "layer": None if layer is None else {"part": layer[0], "prompt": layer[1],
                                                                "candidates": layer_candidates}}
        reports[name] = report
    return reports


def format_arm_measures(reports: dict[str, AlignmentReport], side: str = "right") -> str:
    """A text table of what the wave checks read, per prompt and setting: the mean seconds the ``side`` wrist is
    above its shoulder and its mean swing reversals there (a wave needs checks.WAVE_MIN_REVERSALS)."""
    names = list(reports)
    labels = [p.name for p in reports[names[0]].prompts]
    width = label_width(labels)
    lines = [f"{'prompt':{width}s}" + "".join(f" | {n + ' raised s / swings':>30s}" for n in names)]
    lines.append("-" * len(lines[0]))
    for i, label in enumerate(labels):
        cells = []
        for report in reports.values():
            mean = report.prompts[i].arm_mean()
            cells.append(f"{mean.get(f'{side}_wrist_raised_s', float('nan')):.2f} / "
                         f"{mean.get(f'{side}_wrist_swings', float('nan')):.2f}")
        lines.append(f"{label:{width}s}" + "".join(f" | {c:>30s}" for c in cells))
    lines.append(f"{side} wrist, mean over the samples: seconds above its shoulder / swing reversals while raised")
    return "\n".join(lines)


def format_ground_measures(reports: dict[str, AlignmentReport]) -> str:
    """A text table of how the bodies rest on the floor, per prompt and setting: the mean pelvis excursion (m) and
    the mean foot skating (cm per contact frame); the last row pools every sample."""
    names = list(reports)
    labels = [p.name for p in reports[names[0]].prompts]
    width = label_width(labels + ["all"])
    lines = [f"{'prompt':{width}s}" + "".join(f" | {n + ' pelvis m / skate cm':>30s}" for n in names)]
    lines.append("-" * len(lines[0]))
    for i, label in enumerate(labels + ["all"]):
        cells = []
        for report in reports.values():
            rows = report.prompts[i].ground if i < len(labels) else [g for p in report.prompts for g in p.ground]
            mean = _mean(rows)
            cells.append(f"{mean.get('pelvis_excursion_m', float('nan')):.3f} / "
                         f"{mean.get('foot_skate_cm', float('nan')):.2f}")
        lines.append(f"{label:{width}s}" + "".join(f" | {c:>30s}" for c in cells))
    lines.append("mean over the samples: the pelvis's largest distance from its mean position / foot skating")
    return "\n".join(lines)
