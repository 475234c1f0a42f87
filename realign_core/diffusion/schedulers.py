"""The samplers: the ``diffusers`` library's schedulers behind our sampler interface (issue 13).

``LibraryScheduler(name, schedule, config)`` wraps one diffusers scheduler for
``denoise_loop`` and the reward-guidance hook: ``set_timesteps(n)`` returns the
descending int timesteps (also ``self.timesteps``), and ``step(model_output, t,
x_t, generator)`` returns ``StepOutput(prev_sample, pred_x0)``.

Names (``LIBRARY_SAMPLERS``):

* ``"ddim"`` -- ``DDIMScheduler`` (no clipping, our eta and set_alpha_to_one);
  with eta > 0 the step noise is drawn by our ``randn``, so a list of per-sample
  generators keeps every sample independent of its batch;
* ``"ddpm"`` -- ancestral sampling from the posterior q(x_prev | x_t, x0) with
  the "fixed_small" variance on the strided chain.  That is exactly DDIM with
  eta = 1 (sigma_t^2 = (1 - abar_prev)/(1 - abar_t) (1 - abar_t/abar_prev), the
  DDPM posterior variance, and the same mean), so it runs ``DDIMScheduler`` at
  eta 1: diffusers' ``DDPMScheduler.step`` draws its noise from one generator,
  which would tie each sample's noise to the rest of the batch;
* ``"diffusers-ddim"`` -- the same as ``"ddim"``; the name is kept because
  protocol v1 clients may send it (it named the library DDIM while our own
  hand-written DDIM was the default; that one is gone);
* ``"dpmsolver++"`` -- ``DPMSolverMultistepScheduler`` (algorithm dpmsolver++,
  order 2, lower order at the last steps, final sigma 0), given our exact
  timesteps;
* ``"unipc"`` -- ``UniPCMultistepScheduler`` (bh2, order 2, final sigma 0)
  with the library's own spacing of ``config.timestep_spacing``: its
  "leading" uses the ratio T // (n + 1), not ours T // n, so its timesteps are
  reported as the library makes them (guidance reads ``self.timesteps``).

The betas are ours (``trained_betas`` = ``schedule.betas``), so every schedule
kind (scaled_linear, linear, cosine) is the same process; the library keeps
them as float32.  ``tests/test_diffusion.py`` checks DDIM and DDPM against the
closed-form steps on an oracle denoiser.

Guidance and UniPC: UniPC's corrector rebuilds x_t from the *previous* step's
sample (``last_sample``) and ignores the sample it is handed, so a guidance
update made after a step would be thrown away at the next one.  With
``corrector=False`` (what the pipeline sets when guidance is on) the corrector
is off on every step (the predictor-only UniP-2).

diffusers is imported on first use, so importing this module costs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from realign_core.diffusion.sampling import (
    GeneratorArg,
    NoiseSchedule,
    SamplerConfig,
    StepOutput,
    Timestep,
    inference_timesteps,
    randn,
)

LIBRARY_SAMPLERS = ("ddim", "ddpm", "diffusers-ddim", "dpmsolver++", "unipc", "lcm")
_DDIM_FAMILY = ("ddim", "ddpm", "diffusers-ddim")


@dataclass(frozen=True)
class LibraryConfig(SamplerConfig):
    """Options of the wrapped schedulers besides prediction type and spacing.

    eta: DDIM's (0 = deterministic; "ddpm" always runs at 1); set_alpha_to_one: the step after
    the last timestep uses abar = 1 (True) or abar_0 (False, as MLD's config); solver_order: the
    multistep solvers' order (1-3); corrector: UniPC's corrector (False for guided runs); original_steps and
    timestep_scaling: the LCM's skipping grid and boundary scaling (what ``denoiser_lcm`` was distilled with).
    """

    eta: float = 0.0
    set_alpha_to_one: bool = True
    solver_order: int = 2
    corrector: bool = True
    original_steps: int = 50
    timestep_scaling: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.eta < 0:
            raise ValueError(f"eta must be >= 0, got {self.eta}")
        if self.solver_order not in (1, 2, 3):
            raise ValueError(f"solver_order must be 1, 2 or 3, got {self.solver_order}")


def _build(name: str, schedule: NoiseSchedule, config: LibraryConfig, steps: int) -> Any:
    """A fresh diffusers scheduler for ``name`` over our betas, its timesteps set for ``steps``."""
    import diffusers

    common = {"num_train_timesteps": schedule.num_train_steps, "trained_betas": schedule.betas.numpy(),
              "prediction_type": config.prediction_type, "steps_offset": config.steps_offset}
    ours = inference_timesteps(schedule.num_train_steps, steps, config)
    if name in _DDIM_FAMILY:
        sched = diffusers.DDIMScheduler(clip_sample=False, set_alpha_to_one=config.set_alpha_to_one,
                                        timestep_spacing=config.timestep_spacing, **common)
        sched.set_timesteps(steps)
    elif name == "dpmsolver++":
        sched = diffusers.DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=config.solver_order,
                                                      final_sigmas_type="zero", **common)
        sched.set_timesteps(timesteps=ours)
    elif name == "lcm":
        sched = diffusers.LCMScheduler(original_inference_steps=config.original_steps,
                                       timestep_scaling=config.timestep_scaling, **common)
        sched.set_timesteps(steps)
    elif name == "unipc":
        off = [] if config.corrector else list(range(steps))
        sched = diffusers.UniPCMultistepScheduler(solver_order=config.solver_order, disable_corrector=off,
                                                  timestep_spacing=config.timestep_spacing,
                                                  final_sigmas_type="zero", **common)
        sched.set_timesteps(steps)
    else:
        raise ValueError(f"unknown library sampler {name!r}; expected one of {LIBRARY_SAMPLERS}")
    if name not in ("unipc", "lcm") and [int(t) for t in sched.timesteps] != ours:
        raise RuntimeError(f"{name}: the library's timesteps {sched.timesteps.tolist()} differ from ours {ours}")
    return sched


def _per_sample(generator: GeneratorArg, batch: int) -> GeneratorArg:
    """The generator argument as diffusers' ``randn_tensor`` takes it: a list of B generators draws sample i
    from generator i (as our ``randn``), one generator or None the whole batch."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    generators = list(generator)
    if len(generators) != batch:
        raise ValueError(f"got {len(generators)} generators for a batch of {batch}")
    return generators


class LibraryScheduler:
    """A diffusers scheduler with our sampler interface (see the module docstring).

    Steps must come in the order of ``self.timesteps``; a step at the first
    timestep starts a new run (the multistep history is reset).
    """

    def __init__(self, name: str, schedule: NoiseSchedule, config: LibraryConfig = LibraryConfig()) -> None:
        if name not in LIBRARY_SAMPLERS:
            raise ValueError(f"unknown library sampler {name!r}; expected one of {LIBRARY_SAMPLERS}")
        self.name, self.schedule, self.config = name, schedule, config
        self.eta = 1.0 if name == "ddpm" else config.eta
        self.timesteps: list[int] = []
        self._sched: Any = None
        self._index = 0

    def set_timesteps(self, num_inference_steps: int) -> list[int]:
        """Choose the descending inference timesteps (also kept as ``self.timesteps``)."""
        self._sched = _build(self.name, self.schedule, self.config, num_inference_steps)
        self.timesteps = [int(t) for t in self._sched.timesteps]
        self._index = 0
        return list(self.timesteps)

    def _advance(self, t: int) -> None:
        """Check that t is the next timestep; a step at the first timestep restarts the run."""
        if not self.timesteps:
            raise RuntimeError("call set_timesteps(num_inference_steps) before step()")
        if t == self.timesteps[0] and self._index != 0:
            self.set_timesteps(len(self.timesteps))
        expected = self.timesteps[self._index] if self._index < len(self.timesteps) else None
        if t != expected:
            raise ValueError(f"{self.name}: got timestep {t}, expected {expected} (steps run in the order of "
                             f"sampler.timesteps)")
        self._index += 1

    def step(self, model_output: torch.Tensor, t: Timestep, x_t: torch.Tensor,
             generator: GeneratorArg = None) -> StepOutput:
        """x_t (B, ...) and the denoiser output at t (B, ...) -> x_prev (B, ...) and the x0 estimate."""
        t = int(t)
        self._advance(t)
        if self.config.prediction_type == "epsilon":
            pred_x0 = self.schedule.predict_x0(x_t, model_output, t)
        else:
            pred_x0 = model_output
        if self.name in _DDIM_FAMILY:
            noise = randn(x_t.shape, generator, x_t.device, x_t.dtype) if self.eta > 0 else None
            out = self._sched.step(model_output, t, x_t, eta=self.eta, variance_noise=noise)
        elif self.name == "lcm":
            out = self._sched.step(model_output, t, x_t, generator=_per_sample(generator, x_t.shape[0]))
            return StepOutput(out.prev_sample, out.denoised)
        else:
            out = self._sched.step(model_output, t, x_t)
        return StepOutput(out.prev_sample, pred_x0)
