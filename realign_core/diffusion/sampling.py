"""Noise schedules, the sampler interface and a classifier-free-guided denoising loop.

Split in the spirit of diffusers: denoisers are plain ``nn.Module`` s defined
elsewhere; this module holds only the maths around them.

* ``NoiseSchedule`` -- betas and alphas_cumprod (float64, CPU) with ``add_noise``
  (q_sample), ``predict_x0`` / ``predict_eps``, ``snr`` and training-timestep
  sampling.
* ``Sampler`` -- the interface: ``set_timesteps(n)`` then, for each ``t`` of
  ``sampler.timesteps`` (descending), ``step(model_output, t, x_t, generator)``
  returning ``StepOutput(prev_sample, pred_x0)``.  The denoiser's output is read
  as ``config.prediction_type``: ``"epsilon"`` (the noise) or ``"sample"`` (x0).
  The samplers themselves (DDIM, DDPM, DPM-Solver++, UniPC) are the ``diffusers``
  library's, wrapped in ``realign_core.diffusion.schedulers.LibraryScheduler``;
  ``SamplerConfig`` and ``inference_timesteps`` here hold the spacing they share.
* ``cfg_combine`` and ``denoise_loop`` -- the full reverse process with
  classifier-free guidance, an optional guidance hook and a progress/cancel
  callback.

Conventions: ``abar_t`` is ``alphas_cumprod[t]``; ``x_t = sqrt(abar_t) x0 +
sqrt(1 - abar_t) eps``.  Tensors are (B, ...) on any device and dtype; the
schedule's float64 tables stay on the CPU and coefficients are moved to the
tensor's device and dtype when used.

Randomness comes only from the ``generator`` arguments (``None`` falls back to
torch's global RNG).  A generator may be one ``torch.Generator`` for the whole
batch or a list of B generators, one per sample: then sample i's noise is drawn
from generator i alone, so it does not depend on the rest of the batch.
Noise is drawn as float32 on the generator's own device and then moved, so a
CPU generator gives the same numbers whatever device the sample lives on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence, Union

import torch

Timestep = Union[int, torch.Tensor]
GeneratorArg = Union[torch.Generator, Sequence[torch.Generator], None]

SCHEDULE_KINDS = ("scaled_linear", "linear", "cosine")
PREDICTION_TYPES = ("epsilon", "sample")
TIMESTEP_SPACINGS = ("leading", "trailing")
_DEFAULT_BETAS = {"scaled_linear": (0.00085, 0.012), "linear": (1e-4, 0.02)}
COSINE_OFFSET = 0.008  # Nichol & Dhariwal's s
COSINE_MAX_BETA = 0.999


# ----------------------------------------------------------------------------- schedule

def _cosine_betas(num_steps: int) -> torch.Tensor:
    """Nichol & Dhariwal (2021): abar(t) = cos^2(((t/T + s)/(1 + s)) pi/2), betas clipped at 0.999."""
    def abar(i: torch.Tensor) -> torch.Tensor:
        return torch.cos((i / num_steps + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2

    i = torch.arange(num_steps, dtype=torch.float64)
    return torch.clamp(1 - abar(i + 1) / abar(i), max=COSINE_MAX_BETA)


def _coef(values: torch.Tensor, t: Timestep, like: torch.Tensor) -> torch.Tensor:
    """values[t] (float64, CPU) cast to ``like``'s device/dtype and shaped to broadcast.

    t: int or 0-dim tensor -> a 0-dim coefficient; (B,) tensor -> (B, 1, ..., 1)
    matching ``like.ndim``.
    """
    if isinstance(t, torch.Tensor) and t.ndim == 1:
        picked = values[t.detach().to("cpu", torch.long)]
        picked = picked.reshape((-1,) + (1,) * (like.ndim - 1))
    else:
        picked = values[int(t)]
    return picked.to(device=like.device, dtype=like.dtype)


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """A discrete forward process of T steps.

    betas: (T,) float64 on the CPU; alphas_cumprod (T,) is derived from it.
    Build with ``NoiseSchedule.make``.
    """

    kind: str
    betas: torch.Tensor
    alphas_cumprod: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        betas = torch.as_tensor(self.betas, dtype=torch.float64).detach().cpu()
        if betas.ndim != 1 or betas.numel() == 0:
            raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("betas must lie in (0, 1)")
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "alphas_cumprod", torch.cumprod(1 - betas, dim=0))

    @classmethod
    def make(cls, kind: str, num_train_steps: int = 1000,
             beta_start: float | None = None, beta_end: float | None = None) -> "NoiseSchedule":
        """A named schedule.

        * ``"scaled_linear"`` (Stable Diffusion / MLD): betas = linspace(sqrt(b0), sqrt(b1), T)**2,
          defaults b0=0.00085, b1=0.012;
        * ``"linear"`` (DDPM): betas = linspace(b0, b1, T), defaults 1e-4, 0.02;
        * ``"cosine"`` (Nichol & Dhariwal): from the squared-cosine abar, betas
          clipped at 0.999; beta_start/beta_end must not be given.
        """
        if kind not in SCHEDULE_KINDS:
            raise ValueError(f"unknown schedule kind {kind!r}; expected one of {SCHEDULE_KINDS}")
        if num_train_steps < 1:
            raise ValueError(f"num_train_steps must be >= 1, got {num_train_steps}")
        if kind == "cosine":
            if beta_start is not None or beta_end is not None:
                raise ValueError("the cosine schedule takes no beta_start/beta_end")
            return cls(kind, _cosine_betas(num_train_steps))
        b0, b1 = _DEFAULT_BETAS[kind]
        b0 = b0 if beta_start is None else beta_start
        b1 = b1 if beta_end is None else beta_end
        if kind == "scaled_linear":
            betas = torch.linspace(b0 ** 0.5, b1 ** 0.5, num_train_steps, dtype=torch.float64) ** 2
        else:
            betas = torch.linspace(b0, b1, num_train_steps, dtype=torch.float64)
        return cls(kind, betas)

    @property
    def num_train_steps(self) -> int:
        """T: valid timesteps are 0 .. T-1."""
        return self.betas.numel()

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: Timestep) -> torch.Tensor:
        """q_sample: sqrt(abar_t) x0 + sqrt(1 - abar_t) noise.

        x0, noise: (B, ...); t: (B,) long tensor (or one int for all) -> (B, ...).
        """
        return (_coef(self.alphas_cumprod.sqrt(), t, x0) * x0
                + _coef((1 - self.alphas_cumprod).sqrt(), t, x0) * noise)

    def predict_x0(self, x_t: torch.Tensor, eps: torch.Tensor, t: Timestep) -> torch.Tensor:
        """x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t); shapes as ``add_noise``."""
        return ((x_t - _coef((1 - self.alphas_cumprod).sqrt(), t, x_t) * eps)
                / _coef(self.alphas_cumprod.sqrt(), t, x_t))

    def predict_eps(self, x_t: torch.Tensor, x0: torch.Tensor, t: Timestep) -> torch.Tensor:
        """eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t); shapes as ``add_noise``."""
        return ((x_t - _coef(self.alphas_cumprod.sqrt(), t, x_t) * x0)
                / _coef((1 - self.alphas_cumprod).sqrt(), t, x_t))

    def snr(self, t: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Signal-to-noise ratio abar_t / (1 - abar_t): t (any shape, long) -> same shape, on t's device."""
        abar = self.alphas_cumprod[t.detach().to("cpu", torch.long)]
        return (abar / (1 - abar)).to(device=t.device, dtype=dtype)

    def sample_timesteps(self, batch: int, generator: torch.Generator | None = None,
                         skew: float | None = None,
                         device: torch.device | str | None = None) -> torch.Tensor:
        """Training timesteps: (batch,) long in [0, T).

        skew=None: uniform integers.  skew=p > 0: t = floor(T * u**p), u ~ U[0, 1),
        so t/T has density (1/p) s^(1/p - 1): p > 1 favours small t (mean ~ T/(p+1)),
        p = 1 is uniform in distribution (though not the same draws as skew=None),
        p < 1 favours large t.  Drawn on the generator's device, then moved to ``device``.
        """
        T = self.num_train_steps
        gen_device = generator.device if generator is not None else None
        if skew is None:
            t = torch.randint(0, T, (batch,), generator=generator, device=gen_device)
        else:
            if not skew > 0:
                raise ValueError(f"skew must be > 0, got {skew}")
            u = torch.rand((batch,), generator=generator, device=gen_device, dtype=torch.float64)
            t = torch.clamp((u ** skew * T).floor().long(), 0, T - 1)
        return t if device is None else t.to(device)


# ----------------------------------------------------------------------------- randomness

def randn(shape: Sequence[int], generator: GeneratorArg, device: torch.device | str | None = None,
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise of ``shape`` (B, ...) on ``device`` / ``dtype``.

    generator: one Generator (draws the whole batch at once), a list of B
    generators (sample i from generator i, drawn as shape[1:]), or None (global
    RNG).  Numbers are drawn as float32 on each generator's device.
    """
    shape = tuple(shape)
    if generator is None:
        return torch.randn(shape, device=device).to(dtype=dtype)
    if isinstance(generator, torch.Generator):
        return torch.randn(shape, generator=generator, device=generator.device).to(device=device, dtype=dtype)
    generators = list(generator)
    if len(generators) != shape[0] or not generators:
        raise ValueError(f"got {len(generators)} generators for a batch of {shape[0]}")
    return torch.stack([torch.randn(shape[1:], generator=g, device=g.device).to(device=device, dtype=dtype)
                        for g in generators])


# ----------------------------------------------------------------------------- samplers

@dataclass(frozen=True)
class StepOutput:
    """One reverse step: prev_sample x_{t_prev} (B, ...) and the x0 estimate used (B, ...)."""

    prev_sample: torch.Tensor
    pred_x0: torch.Tensor


@dataclass(frozen=True)
class SamplerConfig:
    """What the denoiser predicts and how inference timesteps are spaced.

    timestep_spacing: ``"leading"`` (diffusers' default: n of T -> [(n-1)r, ..., r, 0] + steps_offset,
    r = T // n) or ``"trailing"`` (round(T - k T/n) - 1 for k = 0..n-1, ending near 0; starts at T-1).
    """

    prediction_type: str = "epsilon"
    timestep_spacing: str = "leading"
    steps_offset: int = 0

    def __post_init__(self) -> None:
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}")
        if self.timestep_spacing not in TIMESTEP_SPACINGS:
            raise ValueError(f"timestep_spacing must be one of {TIMESTEP_SPACINGS}, got {self.timestep_spacing!r}")
        if self.steps_offset < 0:
            raise ValueError(f"steps_offset must be >= 0, got {self.steps_offset}")


def inference_timesteps(num_train_steps: int, num_inference_steps: int, config: SamplerConfig) -> list[int]:
    """The descending list of ``num_inference_steps`` timesteps in [0, T)."""
    T, n = num_train_steps, num_inference_steps
    if not 1 <= n <= T:
        raise ValueError(f"num_inference_steps must be in [1, {T}], got {n}")
    if config.timestep_spacing == "leading":
        ratio = T // n
        steps = [k * ratio + config.steps_offset for k in reversed(range(n))]
    else:
        steps = [round(T - k * T / n) - 1 + config.steps_offset for k in range(n)]
    if steps[0] >= T:
        raise ValueError(f"steps_offset={config.steps_offset} pushes timestep {steps[0]} past T-1={T - 1}")
    return steps


class Sampler(Protocol):
    """What ``denoise_loop`` needs: descending ``timesteps`` and ``step``."""

    timesteps: list[int]

    def step(self, model_output: torch.Tensor, t: Timestep, x_t: torch.Tensor,
             generator: GeneratorArg = None) -> StepOutput: ...


# ----------------------------------------------------------------------------- guided loop

class Cancelled(Exception):
    """Raised by ``denoise_loop`` when its callback returns False; ``step_index`` is the last step done."""

    def __init__(self, step_index: int, total_steps: int) -> None:
        super().__init__(f"denoising cancelled after step {step_index + 1} of {total_steps}")
        self.step_index = step_index
        self.total_steps = total_steps


ModelFn = Callable[[torch.Tensor, torch.Tensor], Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]]
Guidance = Callable[[int, int, torch.Tensor, torch.Tensor], torch.Tensor]
ProgressCallback = Callable[[int, int], Union[bool, None]]


def cfg_combine(cond_out: torch.Tensor, uncond_out: torch.Tensor,
                scale: float | torch.Tensor) -> torch.Tensor:
    """Classifier-free guidance: uncond + scale (cond - uncond).

    cond_out, uncond_out: (B, ...); scale: a number, or a (B,) tensor of per-sample
    scales (e.g. a batch of server jobs with different settings) -> (B, ...).
    """
    if isinstance(scale, torch.Tensor) and scale.ndim == 1:
        scale = scale.to(device=cond_out.device, dtype=cond_out.dtype)
        scale = scale.reshape((-1,) + (1,) * (cond_out.ndim - 1))
    return uncond_out + scale * (cond_out - uncond_out)


def _model_output(model_fn: ModelFn, x: torch.Tensor, t_batch: torch.Tensor,
                  cfg_scale: float | torch.Tensor) -> torch.Tensor:
    """Call the denoiser; combine a (cond, uncond) pair with CFG, pass a lone tensor through."""
    out = model_fn(x, t_batch)
    if isinstance(out, torch.Tensor):
        return out
    cond, uncond = out
    return cfg_combine(cond, uncond, cfg_scale)


def denoise_loop(model_fn: ModelFn, sampler: Sampler, shape: Sequence[int], generator: GeneratorArg,
                 cfg_scale: float | torch.Tensor = 1.0, guidance: Guidance | None = None,
                 callback: ProgressCallback | None = None, x_T: torch.Tensor | None = None, *,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Run the reverse process over ``sampler.timesteps`` (call ``set_timesteps`` first) -> x0 (B, ...).

    model_fn(x_t, t) with x_t (B, ...) and t a (B,) long tensor on x_t's device
    returns ``(cond_out, uncond_out)``, each (B, ...) -- the caller wires in the
    text conditions, typically as one forward of size 2B -- combined by
    ``cfg_combine(cond, uncond, cfg_scale)``.  A model_fn that returns a single
    tensor is used as is (no CFG; cfg_scale ignored).

    guidance(step_index, t, x_prev, pred_x0) -> x_prev_new, if given, is called
    once per step, right after ``sampler.step``, with the step's new sample
    x_prev (B, ...) and its x0 estimate (B, ...); what it returns (same shape,
    device, dtype) replaces x_prev and is what the next step starts from.  It is
    never called when ``guidance`` is None, so the unguided path is unchanged
    bit for bit.  The loop does not change grad mode: wrap it in
    ``torch.no_grad()`` for inference and use ``torch.enable_grad()`` inside a
    guidance that needs gradients.

    callback(step_index, total_steps) is called after each step (and its
    guidance); returning False (not None) raises ``Cancelled``.

    x_T: initial noise of ``shape``; otherwise drawn by ``randn(shape, generator, ...)``
    before any step noise.  Its device/dtype win over ``device`` / ``dtype``; with
    neither x_T nor device, the sample lives on the (first) generator's device.
    """
    timesteps = list(sampler.timesteps)
    if not timesteps:
        raise RuntimeError("call sampler.set_timesteps(num_inference_steps) before denoise_loop")
    x = _initial_noise(shape, generator, x_T, device, dtype)
    total = len(timesteps)
    for i, t in enumerate(timesteps):
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        out = sampler.step(_model_output(model_fn, x, t_batch, cfg_scale), t, x, generator)
        x = out.prev_sample
        if guidance is not None:
            x = guidance(i, t, x, out.pred_x0)
        if callback is not None and callback(i, total) is False:
            raise Cancelled(i, total)
    return x


def _initial_noise(shape: Sequence[int], generator: GeneratorArg, x_T: torch.Tensor | None,
                   device: torch.device | str | None, dtype: torch.dtype) -> torch.Tensor:
    """x_T as given (checked against shape) or freshly drawn from the generator(s)."""
    if x_T is not None:
        if tuple(x_T.shape) != tuple(shape):
            raise ValueError(f"x_T has shape {tuple(x_T.shape)}, expected {tuple(shape)}")
        return x_T
    if device is None and generator is not None:
        first = generator if isinstance(generator, torch.Generator) else next(iter(generator), None)
        device = first.device if first is not None else None
    return randn(shape, generator, device, dtype)
