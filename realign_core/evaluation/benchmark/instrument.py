"""Instrumentation of the latency benchmark: phase timing, precision and thread levers, peak memory.

Timing.  :func:`instrumented` temporarily replaces three *instance* attributes
with timing wrappers that call the originals unchanged: ``generator.model_fn``
(its returned function is timed: the denoiser), ``generator.to_features`` (the
decoder) and ``reward_model.encode_motion`` (the reward; the latent reward model's too, whose
backward ends at the sampler's state since no decoder runs).  The backward pass of
a guided step is split with two gradient hooks that return None (so gradients
are untouched): one on the decoded features (fires when the backward through
the reward model has finished) and one on the decoder's input (fires when the
backward through the decoder has finished).  On CUDA every timestamp is taken
after ``torch.cuda.synchronize()``.  Leaving the context restores the
attributes, so the pipeline's output is bit-identical before and after a
benchmark.  All times are seconds: wall clock (``time.perf_counter``) and the
process's CPU time over all threads (``time.process_time``).

Levers.  :func:`reward_autocast` runs the reward passes (optionally the decoder
too) under ``torch.autocast`` (bf16 / fp16); :func:`torch_threads` sets the
torch thread count.

Memory.  :class:`MemoryProbe`: on CUDA ``torch.cuda.max_memory_allocated``
(reset before the configuration); on CPU the kernel's high-water mark of the
process's resident set (``VmHWM`` of ``/proc/self/status``, reset through
``/proc/self/clear_refs`` after glibc's ``malloc_trim`` has returned free heap
memory to the OS; where that is unavailable, ``ru_maxrss`` of
``resource.getrusage``, which cannot be reset and so only shows growth above
the process's earlier peak).  Megabytes are MiB (2**20 bytes).
"""
from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor

if TYPE_CHECKING:
    from realign_core.pipeline import TextToMotionPipeline

PHASES = ("denoiser", "decoder", "reward")          # the timed parts of a pipeline call
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
AMP_SCOPES = ("reward", "reward+decoder")          # what runs in reduced precision


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
    """``generator.model_fn`` (or ``consistency_fn``) whose returned denoiser function is timed."""
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
        if hasattr(gen, "consistency_fn"):     # the 'lcm' sampler's denoiser (the consistency model)
            stack.enter_context(patched_attribute(gen, "consistency_fn", _timed_model_fn(clock, gen.consistency_fn)))
        stack.enter_context(patched_attribute(gen, "to_features", _timed_to_features(clock, gen.to_features)))
        if pipeline.reward is not None:
            model = pipeline.reward.model
            timed = clock.timed("reward", model.encode_motion, _record_forward_end(clock))
            stack.enter_context(patched_attribute(model, "encode_motion", timed))
        latent = getattr(pipeline, "latent_reward", None)
        if latent is not None:
            model = latent.model
            stack.enter_context(patched_attribute(model, "encode_motion", _timed_latent_reward(clock, model)))
        yield clock


def _timed_latent_reward(clock: PhaseClock, model: Any) -> Callable[..., Tensor]:
    """The latent reward's ``encode_motion`` timed; under autograd a hook on its input (the sampler's
    state) ends the reward phase when the backward through the reward model has finished."""
    timed = clock.timed("reward", model.encode_motion, _record_forward_end(clock))

    def encode_motion(x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        out = timed(x, *args, **kwargs)
        if out.requires_grad and x.requires_grad:
            x.register_hook(clock.features_grad_hook)
        return out
    return encode_motion


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

