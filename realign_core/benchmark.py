"""Latency benchmark of text-to-motion sampling, unguided and with ReAlign reward guidance.

``bench_latency(pipeline, ...)`` runs the pipeline at full length (196 frames)
for every configuration (batch size x guided-step count x placement x reward
precision x thread count) and reports per configuration:

* ``per_motion_s`` -- wall seconds of one pipeline call divided by the batch
  size (mean over ``repeats`` timed calls, after ``warmup`` untimed ones);
* the split of that time, per motion, between
  ``denoiser_s`` (the CFG pair forwards returned by ``generator.model_fn``),
  ``decoder_s`` (``generator.to_features``: the VAE decode inside guidance,
  forward *and* backward, plus the final decode; a crop for MDM) and
  ``reward_s`` (``reward.encode_motion`` forward, the cosine rewards and the
  backward through the reward model); ``other_s`` is the rest (text encoding,
  sampler arithmetic, noise, Python);
* ``slowdown`` -- per-motion latency over the unguided one of the same batch
  size and thread count;
* peak memory: on CUDA ``torch.cuda.max_memory_allocated`` (reset before the
  configuration); on CPU the kernel's high-water mark of the process's resident
  set (``VmHWM`` of ``/proc/self/status``, reset through ``/proc/self/clear_refs``
  before the configuration, after glibc's ``malloc_trim`` has returned free
  heap memory to the OS; where that is unavailable, ``ru_maxrss`` of
  ``resource.getrusage``, which cannot be reset and so only shows growth above
  the process's earlier peak).  ``mem_peak_mb`` is the absolute peak,
  ``mem_extra_mb`` the peak above what was allocated/resident when the
  configuration started (the working memory of sampling), ``mem_kind`` says
  which counter was used.

How the split is measured.  :func:`instrumented` temporarily replaces three
*instance* attributes with timing wrappers that call the originals unchanged:
``generator.model_fn`` (its returned function is timed), ``generator.to_features``
and ``reward_model.encode_motion``.  The backward pass of a guided step is split
with two gradient hooks that return None (so gradients are untouched): one on
the decoded features (fires when the backward through the reward model has
finished) and one on the decoder's input (fires when the backward through the
decoder has finished).  On CUDA every timestamp is taken after
``torch.cuda.synchronize()``.  Leaving the context restores the attributes, so
the pipeline's output is bit-identical before and after a benchmark (tested).

Levers measured here (no library change): guided-step count and placement,
reward passes under ``torch.autocast`` (bfloat16 on CPU, float16 or bfloat16
on CUDA; ``--amp``; :func:`autocast_fidelity` reports the change in rewards,
gradients and motions vs float32), batch size and ``torch.set_num_threads``.

``python -m realign_core.benchmark --models models/default`` prints the table;
``--json`` writes it, ``plot_quality_vs_latency`` draws R@1 and FID against
latency from that JSON and the quality JSON of the results table.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .guidance import GuidanceSettings
from .pipeline import SamplingConfig, TextToMotionPipeline

PHASES = ("denoiser", "decoder", "reward")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
AMP_SCOPES = ("reward", "reward+decoder")
DEFAULT_GUIDED: tuple[int | None, ...] = (0, 5, 10, 25, None)
DEFAULT_PROMPTS = (
    "a person walks forward.", "a person runs in a circle.", "a person jumps up and down.",
    "a person walks backward slowly.", "a person turns around to the left.", "a person sits down on a chair.",
    "a person waves with the right hand.", "a person walks to the right and stops.",
    "a person kicks with the left leg.", "a person crouches and stands up.", "a person jogs forward and turns right.",
    "a person steps sideways to the left.", "a person climbs up stairs.", "a person throws a ball.",
    "a person dances, spinning around.", "a person walks forward then turns back.",
)


# ---------------------------------------------------------------------------------------------- timing


class Stamp(NamedTuple):
    """A timestamp: wall clock and the process's CPU time (all threads), seconds."""

    wall: float
    cpu: float

@dataclass
class PhaseClock:
    """Accumulates seconds and call counts per phase; synchronises CUDA before every timestamp."""

    device: torch.device
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    cpu_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    reward_forward_end: Stamp | None = None    # when the latest reward forward returned
    reward_backward_end: Stamp | None = None   # when the backward reached the decoded features

    def now(self) -> Stamp:
        """(wall, process CPU) seconds after all queued device work has finished."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return Stamp(time.perf_counter(), time.process_time())

    def add(self, phase: str, start: Stamp, end: Stamp, calls: int = 0) -> None:
        self.seconds[phase] += end.wall - start.wall
        self.cpu_seconds[phase] += end.cpu - start.cpu
        self.calls[phase] += calls

    def reset(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.cpu_seconds = dict.fromkeys(PHASES, 0.0)
        self.calls = dict.fromkeys(PHASES, 0)

    def timed(self, phase: str, fn: Callable[..., Any], on_end: Callable[[Stamp], None] | None = None
              ) -> Callable[..., Any]:
        """``fn`` with its wall time (and one call) added to ``phase``; ``on_end(t)`` gets the end time."""
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = self.now()
            out = fn(*args, **kwargs)
            end = self.now()
            self.add(phase, start, end, 1)
            if on_end is not None:
                on_end(end)
            return out
        return wrapper

    # gradient hooks of a guided step: both return None, so the gradients are unchanged
    def features_grad_hook(self, grad: Tensor) -> None:
        """Backward reached the decoded features: the reward model's backward is done."""
        end = self.now()
        if self.reward_forward_end is not None:
            self.add("reward", self.reward_forward_end, end)
        self.reward_forward_end, self.reward_backward_end = None, end

    def state_grad_hook(self, grad: Tensor) -> None:
        """Backward reached the decoder's input: the decoder's backward is done."""
        end = self.now()
        if self.reward_backward_end is not None:
            self.add("decoder", self.reward_backward_end, end)
        self.reward_backward_end = None


@contextmanager
def patched_attribute(obj: object, name: str, value: Any) -> Iterator[None]:
    """Set ``obj.name = value`` (an instance attribute) and restore the previous state on exit."""
    had_own = name in vars(obj)
    previous = vars(obj).get(name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if had_own:
            setattr(obj, name, previous)
        else:
            delattr(obj, name)


def _timed_model_fn(clock: PhaseClock, original: Callable[..., Any]) -> Callable[..., Any]:
    """``generator.model_fn`` whose returned denoiser function is timed."""
    def model_fn(*args: Any, **kwargs: Any) -> Callable[..., Any]:
        return clock.timed("denoiser", original(*args, **kwargs))
    return model_fn


def _timed_to_features(clock: PhaseClock, original: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``generator.to_features`` timed; under autograd it also hooks the backward split."""
    timed = clock.timed("decoder", original)

    def to_features(x: Tensor, lengths: Tensor) -> Tensor:
        out = timed(x, lengths)
        if out.requires_grad and x.requires_grad:
            out.register_hook(clock.features_grad_hook)
            x.register_hook(clock.state_grad_hook)
        return out
    return to_features


def _record_forward_end(clock: PhaseClock) -> Callable[[Stamp], None]:
    def on_end(end: Stamp) -> None:
        clock.reward_forward_end = end
    return on_end


@contextmanager
def instrumented(pipeline: TextToMotionPipeline, clock: PhaseClock | None = None) -> Iterator[PhaseClock]:
    """Time the denoiser, decoder and reward passes of ``pipeline`` while inside; restores on exit."""
    clock = clock or PhaseClock(torch.device(pipeline.device))
    gen = pipeline.generator
    with ExitStack() as stack:
        stack.enter_context(patched_attribute(gen, "model_fn", _timed_model_fn(clock, gen.model_fn)))
        stack.enter_context(patched_attribute(gen, "to_features", _timed_to_features(clock, gen.to_features)))
        if pipeline.reward is not None:
            model = pipeline.reward.model
            timed = clock.timed("reward", model.encode_motion, _record_forward_end(clock))
            stack.enter_context(patched_attribute(model, "encode_motion", timed))
        yield clock


# ---------------------------------------------------------------------------------------------- levers


def _autocast_call(fn: Callable[..., Tensor], device: torch.device, dtype: torch.dtype) -> Callable[..., Tensor]:
    """``fn`` run under ``torch.autocast(dtype)``, its output cast back to float32."""
    def wrapper(*args: Any, **kwargs: Any) -> Tensor:
        with torch.autocast(device.type, dtype=dtype):
            out = fn(*args, **kwargs)
        return out.float()
    return wrapper


@contextmanager
def reward_autocast(pipeline: TextToMotionPipeline, amp: str | None, scope: str = "reward") -> Iterator[None]:
    """Run the reward passes (and, with scope 'reward+decoder', the decoder) in reduced precision.

    amp: None (float32, nothing patched), 'bf16' or 'fp16'.  The final decode of
    the pipeline is also a ``to_features`` call, so 'reward+decoder' changes it too.
    """
    if amp is None:
        yield
        return
    if amp not in AMP_DTYPES or scope not in AMP_SCOPES:
        raise ValueError(f"amp must be one of {sorted(AMP_DTYPES)} and scope one of {AMP_SCOPES}")
    device, dtype = torch.device(pipeline.device), AMP_DTYPES[amp]
    with ExitStack() as stack:
        if pipeline.reward is not None:
            model = pipeline.reward.model
            stack.enter_context(patched_attribute(model, "encode_motion",
                                                  _autocast_call(model.encode_motion, device, dtype)))
        if scope == "reward+decoder":
            gen = pipeline.generator
            stack.enter_context(patched_attribute(gen, "to_features", _autocast_call(gen.to_features, device, dtype)))
        yield


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` while inside (None: leave as is)."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ---------------------------------------------------------------------------------------------- memory


def _proc_status_kb(key: str) -> int | None:
    """A ``kB`` field of /proc/self/status (Linux), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_rss_peak() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux >= 4.0); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _release_free_memory() -> None:
    """Return the C allocator's free memory to the OS (glibc ``malloc_trim``), so RSS starts low; best effort."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _ru_maxrss_mb() -> float:
    scale = 1.0 if sys.platform == "darwin" else 1024.0   # bytes on macOS, kB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2 ** 20


class MemoryProbe:
    """Peak memory of one configuration: CUDA allocator peak, or the process's peak RSS on CPU."""

    def __init__(self, device: torch.device):
        self.device, self.kind, self.base_mb = device, "", 0.0

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind, self.base_mb = "cuda_max_memory_allocated", torch.cuda.memory_allocated(self.device) / 2 ** 20
            return
        _release_free_memory()
        if _reset_rss_peak() and _proc_status_kb("VmRSS") is not None:
            self.kind, self.base_mb = "rss_VmHWM", _proc_status_kb("VmRSS") / 1024
        else:
            self.kind, self.base_mb = "ru_maxrss", _ru_maxrss_mb()

    def peak_mb(self) -> float:
        if self.kind.startswith("cuda"):
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        if self.kind == "rss_VmHWM":
            return _proc_status_kb("VmHWM") / 1024
        return _ru_maxrss_mb()

    def result(self) -> dict[str, Any]:
        peak = self.peak_mb()
        return {"mem_peak_mb": round(peak, 1), "mem_extra_mb": round(max(peak - self.base_mb, 0.0), 1),
                "mem_kind": self.kind}


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

    0 guided steps -> None (the unguided pipeline).  Without an embedding bank, eta is set to 0.
    """
    if guided_steps == 0:
        return None
    settings = base or pipeline.default_guidance
    if settings.strength <= 0:
        settings = replace(settings, strength=1.0)
    if settings.eta > 0 and (pipeline.reward is None or pipeline.reward.bank is None):
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
              prompts: Sequence[str] = DEFAULT_PROMPTS, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Measure one configuration -> one row (see the module docstring)."""
    sampling = SamplingConfig(steps=steps)
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
             "eta": guidance.eta if guidance else 0.0}
    return _row(cfg, totals, clock, mem, {**(meta or {}), "frames": frames, "steps": steps, **extra})


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
                  progress: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Per-motion latency and its denoiser/decoder/reward split for every configuration -> rows.

    guided_steps: counts of guided reverse steps (0 = unguided, None = all);
    placements: 'spread' / 'late' / 'early'; amps: None (fp32) / 'bf16' / 'fp16'
    for the reward passes; threads: torch thread counts (None = current).
    ``progress(row)`` is called after each configuration.
    """
    if pipeline.reward is None and any(k != 0 for k in guided_steps):
        raise ValueError("guided configurations need a reward model (reward/best.pt) in the model folder")
    meta = {"generator": pipeline.generator.name, "device": str(pipeline.device)}
    rows = []
    for cfg in plan_configs(batch_sizes, guided_steps, steps, placements, amps, threads):
        rows.append(bench_one(pipeline, cfg, frames, steps, repeats, warmup, base, prompts, meta))
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
    from .reward_model import RewardModel

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


def format_reward_variants(rows: Iterable[dict[str, Any]]) -> str:
    """Plain-text table of :func:`bench_reward_variants` rows."""
    lines = [f"{'reward variant':<28} {'layers':>6} {'down':>4} {'width':>5} {'B':>3} {'ms/pass':>8} {'cpu ms':>8}"]
    for r in rows:
        lines.append(f"{r['variant']:<28} {r['motion_layers']:>6} {r['downsample']:>4} {r['latent_dim']:>5} "
                     f"{r['batch']:>3} {r['pass_ms']:>8.1f} {r['pass_cpu_ms']:>8.1f}")
    return "\n".join(lines)


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
        motion_low, _ = pipeline(captions, frames_list, seeds, SamplingConfig(steps=steps), settings)
    motion_ref, _ = pipeline(captions, frames_list, seeds, SamplingConfig(steps=steps), settings)
    std = torch.as_tensor(pipeline.normalizer.std, dtype=motion_ref.dtype, device=motion_ref.device)
    motion_diff = ((motion_low - motion_ref) / std).abs().amax()
    return {"amp": amp, "scope": scope, "batch": batch, "steps": steps,
            "reward_max_abs_diff": max(float((a[0] - b[0]).abs().max()) for a, b in zip(low, ref)),
            "reward_fp32_mean": statistics.fmean(float(r[0].mean()) for r in ref),
            "grad_cosine_min": min(_cosine(a[1], b[1]) for a, b in zip(low, ref)),
            "motion_max_abs_diff_norm": float(motion_diff)}


# ---------------------------------------------------------------------------------------------- output


KEY_COLUMNS = (("generator", "gen", "{}"), ("device", "dev", "{}"), ("batch", "B", "{}"),
               ("guided_steps", "guided", "{}"), ("placement", "place", "{}"), ("amp", "reward", "{}"),
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


def _load_rows(source: str | Path | dict | list) -> list[dict[str, Any]]:
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
                 placement: str = "spread", amp: str = "fp32") -> list[dict[str, Any]]:
    """Join quality rows with the latency rows of one batch size / placement / precision, sorted by latency."""
    lat = {guided_key(r["guided_steps"], r.get("steps")): r for r in latency
           if r["batch"] == batch and r.get("amp", "fp32") == amp
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

    points = curve_points(_load_rows(latency), _load_rows(quality), batch, placement)
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
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


# ---------------------------------------------------------------------------------------------- CLI


def _guided_arg(text: str) -> int | None:
    return None if text.lower() == "all" else int(text)


def _amp_arg(text: str) -> str | None:
    return None if text.lower() in ("fp32", "none") else text.lower()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="realign bench",
                                description="Per-motion latency of unguided and ReAlign-guided sampling.")
    p.add_argument("--models", required=True, help="model folder (vae/, denoiser/ or mdm/, reward/)")
    p.add_argument("--generator", default="mld", choices=("mld", "mdm"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    p.add_argument("--frames", type=int, default=196)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guided", type=_guided_arg, nargs="+", default=list(DEFAULT_GUIDED),
                   help="guided-step counts: integers and/or 'all' (0 = unguided)")
    p.add_argument("--placement", nargs="+", default=["spread"], choices=("spread", "early", "late"))
    p.add_argument("--amp", type=_amp_arg, nargs="+", default=[None],
                   help="reward-pass precision: fp32, bf16 (CPU/CUDA), fp16 (CUDA)")
    p.add_argument("--threads", type=int, nargs="+", default=[None], help="torch thread counts to compare")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--strength", type=float, default=None, help="guidance strength (default: calibrated)")
    p.add_argument("--eta", type=float, default=None, help="M2M weight (default: calibrated; 0 without a bank)")
    p.add_argument("--fidelity", action="store_true", help="also report reward/gradient/motion changes under --amp")
    p.add_argument("--reward-variants", action="store_true",
                   help="also time one reward pass of cheaper architectures (fewer layers, narrower, down-sampling)")
    p.add_argument("--json", help="write {meta, rows, fidelity, reward_variants} here")
    p.add_argument("--table-clock", default="wall", choices=("wall", "cpu"),
                   help="split the table's time in wall seconds or process CPU seconds (robust on a busy CPU)")
    p.add_argument("--plot-quality", help="quality JSON: also draw the quality-vs-latency curve")
    p.add_argument("--plot-out", default="docs/img/quality_vs_latency.png")
    return p


def _base_settings(pipeline: TextToMotionPipeline, args: argparse.Namespace) -> GuidanceSettings:
    base = pipeline.default_guidance
    if args.strength is not None:
        base = replace(base, strength=args.strength)
    if args.eta is not None:
        base = replace(base, eta=args.eta)
    return base


def _print_row(row: dict[str, Any]) -> None:
    print(f"  B={row['batch']} guided={row['guided_steps']} {row['placement']} {row['amp']} "
          f"thr={row['threads']}: {row['per_motion_s']:.3f} s/motion wall, {row['per_motion_cpu_s']:.3f} CPU",
          file=sys.stderr, flush=True)


def _extras(pipeline: TextToMotionPipeline, args: argparse.Namespace, base: GuidanceSettings
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The optional measurements: reduced-precision fidelity and cheaper reward architectures."""
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
    for f in fidelity:
        print(f"# {f['amp']} {f['scope']}: reward max |diff| {f['reward_max_abs_diff']:.2e} "
              f"(fp32 mean {f['reward_fp32_mean']:.3f}), 1 - gradient cosine (max) {1 - f['grad_cosine_min']:.1e}, "
              f"guided motion max |diff| {f['motion_max_abs_diff_norm']:.3f} std")
    if variants:
        print(format_reward_variants(variants))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, optionally write JSON and the quality-vs-latency plot."""
    args = build_parser().parse_args(argv)
    pipeline = TextToMotionPipeline.from_checkpoints(args.models, args.device, generator=args.generator)
    base = _base_settings(pipeline, args)
    guided = bench_guidance(pipeline, None, "spread", base) if pipeline.has_reward else None
    meta = {**machine_info(), "models": str(args.models), "generator": args.generator, "device": args.device,
            "guidance": asdict(guided) if guided else None, "bank": bool(pipeline.reward and pipeline.reward.bank)}
    rows = bench_latency(pipeline, args.batch, args.frames, args.steps, args.guided, args.repeats, args.warmup,
                         args.placement, args.amp, args.threads, base, progress=_print_row)
    fidelity, variants = _extras(pipeline, args, base)
    print(f"# {args.generator} on {args.device}, {args.frames} frames, {args.steps} DDIM steps, "
          f"guidance {meta['guidance']}; seconds per motion")
    print(format_table(rows, args.table_clock))
    _print_extras(fidelity, variants)
    if args.json:
        write_json(args.json, rows, meta, fidelity, variants)
    if args.plot_quality:
        print(f"wrote {plot_quality_vs_latency(rows, args.plot_quality, args.plot_out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
