"""Latency benchmark of text-to-motion sampling, unguided and with ReAlign reward guidance.

``bench_latency(pipeline, ...)`` runs the pipeline at full length (196 frames)
for every configuration (batch size x guided-step count x placement x reward
precision x thread count) and reports per configuration:

* ``per_motion_s`` -- wall seconds of one pipeline call divided by the batch
  size (mean over ``repeats`` timed calls, after ``warmup`` untimed ones);
  ``per_motion_cpu_s`` the same in process CPU seconds (all threads);
* the split of that time, per motion, between
  ``denoiser_s`` (the CFG pair forwards returned by ``generator.model_fn``),
  ``decoder_s`` (``generator.to_features``: the VAE decode inside guidance,
  forward *and* backward, plus the final decode; a crop for MDM) and
  ``reward_s`` (``reward.encode_motion`` forward, the cosine rewards and the
  backward through the reward model); ``other_s`` is the rest (text encoding,
  sampler arithmetic, noise, Python); ``*_cpu_s`` the same in CPU seconds;
* ``slowdown`` -- per-motion latency over the unguided one of the same batch
  size and thread count; ``reward_space`` the guided rows' reward model ('motion', or 'latent':
  the reward on the generator's latents, no decoder in the guided steps; '-' unguided);
* peak memory (MiB): ``mem_peak_mb`` the absolute peak, ``mem_extra_mb`` the
  peak above what was allocated/resident when the configuration started (the
  working memory of sampling), ``mem_kind`` which counter was used.

How the split and the memory are measured: :mod:`realign_core.evaluation.benchmark.instrument`.
Levers measured here (no library change): guided-step count and placement,
reward passes under ``torch.autocast`` (bfloat16 on CPU, float16 or bfloat16
on CUDA; :func:`autocast_fidelity` reports the change in rewards, gradients
and motions vs float32), batch size and ``torch.set_num_threads``; and
:func:`bench_reward_variants`, the cost of cheaper reward architectures.

Tables, JSON and the quality-vs-latency plot: :mod:`realign_core.evaluation.benchmark.report`;
the command line ``realign bench``: :mod:`realign_core.cli.bench`.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from realign_core.evaluation.benchmark.instrument import (
    PHASES,
    MemoryProbe,
    PhaseClock,
    Stamp,
    instrumented,
    reward_autocast,
    torch_threads,
)
from realign_core.guidance.reward_guidance import GuidanceSettings
from realign_core.pipeline import SamplingConfig, TextToMotionPipeline

DEFAULT_GUIDED: tuple[int | None, ...] = (0, 5, 10, 25, None)
DEFAULT_PROMPTS = (
    "a person walks forward.", "a person runs in a circle.", "a person jumps up and down.",
    "a person walks backward slowly.", "a person turns around to the left.", "a person sits down on a chair.",
    "a person waves with the right hand.", "a person walks to the right and stops.",
    "a person kicks with the left leg.", "a person crouches and stands up.", "a person jogs forward and turns right.",
    "a person steps sideways to the left.", "a person climbs up stairs.", "a person throws a ball.",
    "a person dances, spinning around.", "a person walks forward then turns back.",
)


# ---------------------------------------------------------------------------------------------- benchmark


@dataclass(frozen=True)
class BenchConfig:
    """One benchmarked configuration."""

    batch: int
    guided_steps: int | None     # None = every step; 0 = unguided
    placement: str = "spread"
    amp: str | None = None
    threads: int | None = None

    @property
    def guided_label(self) -> str:
        return "all" if self.guided_steps is None else str(self.guided_steps)


def plan_configs(batch_sizes: Sequence[int], guided_steps: Sequence[int | None], steps: int,
                 placements: Sequence[str] = ("spread",), amps: Sequence[str | None] = (None,),
                 threads: Sequence[int | None] = (None,)) -> list[BenchConfig]:
    """All combinations, without the duplicates whose cost cannot differ.

    Placement only matters for 0 < k < steps guided steps, precision only for guided runs;
    guided counts >= steps are 'all'.
    """
    configs: list[BenchConfig] = []
    for thr in threads:
        for batch in batch_sizes:
            for k in guided_steps:
                k = None if k is not None and k >= steps else k
                for place in placements if k not in (0, None) else placements[:1]:
                    for amp in amps if k != 0 else (None,):
                        cfg = BenchConfig(int(batch), k, place, amp, thr)
                        if cfg not in configs:
                            configs.append(cfg)
    return configs


def bench_guidance(pipeline: TextToMotionPipeline, guided_steps: int | None, placement: str = "spread",
                   base: GuidanceSettings | None = None) -> GuidanceSettings | None:
    """The guidance of a configuration: ``base`` (default: the calibrated one) with k guided steps.

    0 guided steps -> None (the unguided pipeline).  Without an embedding bank (of the reward model of
    ``base.reward_space``), eta is set to 0.
    """
    if guided_steps == 0:
        return None
    settings = base or pipeline.default_guidance
    if settings.strength <= 0:
        settings = replace(settings, strength=1.0)
    parts = pipeline.latent_reward if settings.reward_space == "latent" else pipeline.reward
    if settings.eta > 0 and (parts is None or parts.bank is None):
        settings = replace(settings, eta=0.0)
    return replace(settings, guided_steps=guided_steps, placement=placement)


def _inputs(batch: int, frames: int, prompts: Sequence[str]) -> tuple[list[str], list[int], list[int]]:
    captions = [prompts[i % len(prompts)] for i in range(batch)]
    return captions, [frames] * batch, list(range(batch))


def _time_calls(clock: PhaseClock, run: Callable[[], Any], repeats: int, warmup: int) -> list[Stamp]:
    """(wall, CPU) seconds of ``repeats`` calls of ``run`` after ``warmup`` calls; the clock counts only these."""
    for _ in range(warmup):
        run()
    clock.reset()
    totals = []
    for _ in range(repeats):
        start = clock.now()
        run()
        end = clock.now()
        totals.append(Stamp(end.wall - start.wall, end.cpu - start.cpu))
    return totals


def _split(clock: PhaseClock, per_call: int, mean: float, cpu_mean: float) -> dict[str, float]:
    """Per-motion wall and CPU seconds of each phase, and of the rest ('other')."""
    wall = {f"{p}_s": clock.seconds[p] / per_call for p in PHASES}
    cpu = {f"{p}_cpu_s": clock.cpu_seconds[p] / per_call for p in PHASES}
    return {**wall, "other_s": max(mean - sum(wall.values()), 0.0),
            **cpu, "other_cpu_s": max(cpu_mean - sum(cpu.values()), 0.0)}


def _row(cfg: BenchConfig, totals: list[Stamp], clock: PhaseClock, memory: dict[str, Any],
         meta: dict[str, Any]) -> dict[str, Any]:
    """A result row: per-motion latency (wall and process CPU), its split, calls per motion and memory."""
    per_motion = [t.wall / cfg.batch for t in totals]
    mean, cpu_mean = statistics.fmean(per_motion), statistics.fmean(t.cpu / cfg.batch for t in totals)
    return {**meta, "batch": cfg.batch, "guided_steps": cfg.guided_label, "placement": cfg.placement,
            "amp": cfg.amp or "fp32", "threads": cfg.threads or torch.get_num_threads(),
            "repeats": len(totals), "per_motion_s": mean,
            "per_motion_sd_s": statistics.stdev(per_motion) if len(per_motion) > 1 else 0.0,
            "per_motion_cpu_s": cpu_mean, "call_s": statistics.fmean(t.wall for t in totals),
            **_split(clock, len(totals) * cfg.batch, mean, cpu_mean),
            **{f"{p}_calls": clock.calls[p] / len(totals) for p in PHASES}, **memory}


def bench_one(pipeline: TextToMotionPipeline, cfg: BenchConfig, frames: int = 196, steps: int = 50,
              repeats: int = 3, warmup: int = 1, base: GuidanceSettings | None = None,
              prompts: Sequence[str] = DEFAULT_PROMPTS, meta: dict[str, Any] | None = None,
              sampler: str = "ddim") -> dict[str, Any]:
    """Measure one configuration -> one row (see the module docstring); ``sampler`` one of pipeline.SAMPLERS."""
    sampling = SamplingConfig(sampler=sampler, steps=steps)
    guidance = bench_guidance(pipeline, cfg.guided_steps, cfg.placement, base)
    captions, lengths, seeds = _inputs(cfg.batch, frames, prompts)
    memory = MemoryProbe(torch.device(pipeline.device))

    def run() -> Any:
        return pipeline(captions, lengths, seeds, sampling, guidance)

    with torch_threads(cfg.threads), reward_autocast(pipeline, cfg.amp), instrumented(pipeline) as clock:
        memory.start()
        totals = _time_calls(clock, run, repeats, warmup)
        mem = memory.result()
    extra = {"strength": guidance.strength if guidance else 0.0, "mu": guidance.mu if guidance else 0.0,
             "eta": guidance.eta if guidance else 0.0, "reward_space": guidance.reward_space if guidance else "-"}
    return _row(cfg, totals, clock, mem, {**(meta or {}), "frames": frames, "sampler": sampler, "steps": steps,
                                          **extra})


def add_slowdown(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``slowdown`` (wall) and ``slowdown_cpu``: latency over the unguided row of the same batch and threads."""
    for suffix in ("", "_cpu"):
        base = {(r["batch"], r["threads"]): r[f"per_motion{suffix}_s"] for r in rows if r["guided_steps"] == "0"}
        for r in rows:
            ref = base.get((r["batch"], r["threads"]))
            r[f"slowdown{suffix}"] = r[f"per_motion{suffix}_s"] / ref if ref else math.nan
    return rows


def bench_latency(pipeline: TextToMotionPipeline, batch_sizes: Sequence[int] = (1, 16), frames: int = 196,
                  steps: int = 50, guided_steps: Sequence[int | None] = DEFAULT_GUIDED, repeats: int = 3,
                  warmup: int = 1, placements: Sequence[str] = ("spread",), amps: Sequence[str | None] = (None,),
                  threads: Sequence[int | None] = (None,), base: GuidanceSettings | None = None,
                  prompts: Sequence[str] = DEFAULT_PROMPTS,
                  progress: Callable[[dict[str, Any]], None] | None = None,
                  sampler: str = "ddim", reward_spaces: Sequence[str] = ("motion",), rounds: int = 1
                  ) -> list[dict[str, Any]]:
    """Per-motion latency and its denoiser/decoder/reward split for every configuration -> rows.

    guided_steps: counts of guided reverse steps (0 = unguided, None = all);
    placements: 'spread' / 'late' / 'early'; amps: None (fp32) / 'bf16' / 'fp16'
    for the reward passes; threads: torch thread counts (None = current); reward_spaces: one series
    of guided rows per reward model ('motion', 'latent'; the unguided rows are measured once).
    rounds: the whole sweep this many times, ``repeats`` calls per configuration each time, so that a
    drift of the machine's speed reaches every configuration (:func:`merge_rounds`).
    ``progress(row)`` is called after each configuration.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    sweeps = [_sweep(pipeline, batch_sizes, frames, steps, guided_steps, repeats, warmup if r == 0 else 1, placements,
                     amps, threads, base, prompts, progress, sampler, reward_spaces) for r in range(rounds)]
    return merge_rounds(sweeps) if rounds > 1 else sweeps[0]


def merge_rounds(sweeps: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per configuration from several sweeps (same configurations, same order): times and splits
    averaged, repeats summed, and ``slowdown`` / ``slowdown_cpu`` the *median of the sweeps' own ratios*
    (each sweep's configuration over that sweep's unguided row: paired, so slow spells cancel); the
    per-sweep ratios are kept in ``slowdown_rounds``."""
    merged = []
    for runs in zip(*sweeps):
        row = dict(runs[0])
        for key, value in runs[0].items():
            if isinstance(value, float) and not key.startswith("slowdown"):
                row[key] = statistics.fmean(r[key] for r in runs)
        row["repeats"] = sum(r["repeats"] for r in runs)
        row["rounds"] = len(runs)
        for suffix in ("", "_cpu"):
            row[f"slowdown{suffix}"] = statistics.median(r[f"slowdown{suffix}"] for r in runs)
        row["slowdown_rounds"] = [r["slowdown"] for r in runs]
        merged.append(row)
    return merged


def _sweep(pipeline: TextToMotionPipeline, batch_sizes: Sequence[int], frames: int, steps: int,
           guided_steps: Sequence[int | None], repeats: int, warmup: int, placements: Sequence[str],
           amps: Sequence[str | None], threads: Sequence[int | None], base: GuidanceSettings | None,
           prompts: Sequence[str], progress: Callable[[dict[str, Any]], None] | None, sampler: str,
           reward_spaces: Sequence[str]) -> list[dict[str, Any]]:
    """One pass over every configuration (see :func:`bench_latency`)."""
    guided = any(k != 0 for k in guided_steps)
    for space in reward_spaces:
        if guided and (pipeline.latent_reward if space == "latent" else pipeline.reward) is None:
            kind = "latent_reward" if space == "latent" else "reward"
            raise ValueError(f"guided configurations with reward_space {space!r} need {kind}/best.pt in the "
                             f"model folder")
    meta = {"generator": pipeline.generator.name, "device": str(pipeline.device)}
    rows = []
    for n, space in enumerate(reward_spaces):
        space_base = replace(base or pipeline.default_guidance, reward_space=space)
        for cfg in plan_configs(batch_sizes, guided_steps, steps, placements, amps, threads):
            if cfg.guided_steps == 0 and n:
                continue
            rows.append(bench_one(pipeline, cfg, frames, steps, repeats, warmup, space_base, prompts, meta, sampler))
            if progress is not None:
                progress(rows[-1])
    return add_slowdown(rows)


# ---------------------------------------------------------------------------------------------- reward variants

DEFAULT_REWARD_VARIANTS: tuple[dict[str, int], ...] = (
    {}, {"motion_layers": 3}, {"motion_layers": 1}, {"downsample": 2}, {"latent_dim": 128, "ff": 256},
)


def _reward_pass_seconds(model: torch.nn.Module, features: Tensor, mask: Tensor, clock: PhaseClock,
                         repeats: int) -> Stamp:
    """Mean (wall, CPU) seconds of one reward forward + backward to the features."""
    total = Stamp(0.0, 0.0)
    for i in range(repeats + 1):                      # the first call is a warm-up
        x = features.detach().requires_grad_(True)
        start = clock.now()
        with torch.enable_grad():
            torch.autograd.grad(model.encode_motion(x, mask, 10).sum(), x)
        end = clock.now()
        if i:
            total = Stamp(total.wall + end.wall - start.wall, total.cpu + end.cpu - start.cpu)
    return Stamp(total.wall / repeats, total.cpu / repeats)


def bench_reward_variants(base: Any, variants: Sequence[dict[str, int]] = DEFAULT_REWARD_VARIANTS,
                          batch: int = 1, frames: int = 196, repeats: int = 5,
                          device: str | torch.device = "cpu") -> list[dict[str, Any]]:
    """Cost of one reward pass (forward + backward) for cheaper architectures than ``base``.

    Each variant overrides fields of ``base`` (a RewardModelConfig); weights are random,
    so this measures cost only -- a cheaper model would have to be retrained to know its quality.
    """
    from realign_core.models.reward_model import RewardModel

    device = torch.device(device)
    clock = PhaseClock(device)
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(batch, frames, base.feature_dim, generator=gen).to(device)
    mask = torch.ones(batch, frames, dtype=torch.bool, device=device)
    rows = []
    for overrides in variants:
        cfg = replace(base, **overrides)
        model = RewardModel(cfg, text_model=object()).to(device).eval().requires_grad_(False)
        cost = _reward_pass_seconds(model, features, mask, clock, repeats)
        rows.append({"variant": ", ".join(f"{k}={v}" for k, v in overrides.items()) or "as trained",
                     "motion_layers": cfg.motion_layers, "downsample": cfg.downsample,
                     "latent_dim": cfg.latent_dim, "batch": batch, "threads": torch.get_num_threads(),
                     "pass_ms": 1000 * cost.wall, "pass_cpu_ms": 1000 * cost.cpu})
    return rows


# ---------------------------------------------------------------------------------------------- fidelity


def _cosine(a: Tensor, b: Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1).min())


def _hook_measures(pipeline: TextToMotionPipeline, captions: list[str], lengths: Tensor, x: Tensor,
                   settings: GuidanceSettings, steps: int) -> list[tuple[Tensor, Tensor]]:
    """(reward (B,), gradient like x) at the first, middle and last guided step's noise level."""
    timesteps = pipeline.make_sampler(SamplingConfig(steps=steps)).timesteps
    hook = pipeline.make_guidance(captions, lengths, settings, timesteps)
    out = []
    for index in (0, steps // 2, steps - 1):
        t_r = hook.reward_t[index]
        with torch.no_grad():
            reward = hook.rewards(x, t_r)[0]
        out.append((reward, hook.gradient(x, t_r)))
    return out


def autocast_fidelity(pipeline: TextToMotionPipeline, amp: str, batch: int = 4, frames: int = 196,
                      steps: int = 50, scope: str = "reward", base: GuidanceSettings | None = None,
                      prompts: Sequence[str] = DEFAULT_PROMPTS) -> dict[str, Any]:
    """How much reduced precision changes guidance: rewards, gradients and the final motions vs float32.

    On random states x_T at three noise levels: max |R_amp - R_fp32| and the smallest
    per-sample cosine between the two gradients; then the guided (all steps) motions'
    max absolute difference in normalised feature units (same seeds).
    """
    settings = bench_guidance(pipeline, None, "spread", base)
    captions, frames_list, seeds = _inputs(batch, frames, prompts)
    lengths = torch.tensor(frames_list, device=pipeline.device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(pipeline.generator.state_shape(batch), generator=gen).to(pipeline.device)
    ref = _hook_measures(pipeline, captions, lengths, x, settings, steps)
    with reward_autocast(pipeline, amp, scope):
        low = _hook_measures(pipeline, captions, lengths, x, settings, steps)
        motion_low = pipeline(captions, frames_list, seeds, SamplingConfig(steps=steps), settings).features
    motion_ref = pipeline(captions, frames_list, seeds, SamplingConfig(steps=steps), settings).features
    std = torch.as_tensor(pipeline.normalizer.std, dtype=motion_ref.dtype, device=motion_ref.device)
    motion_diff = ((motion_low - motion_ref) / std).abs().amax()
    return {"amp": amp, "scope": scope, "batch": batch, "steps": steps,
            "reward_max_abs_diff": max(float((a[0] - b[0]).abs().max()) for a, b in zip(low, ref)),
            "reward_fp32_mean": statistics.fmean(float(r[0].mean()) for r in ref),
            "grad_cosine_min": min(_cosine(a[1], b[1]) for a, b in zip(low, ref)),
            "motion_max_abs_diff_norm": float(motion_diff)}
