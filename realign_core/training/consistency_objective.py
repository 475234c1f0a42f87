"""Latent consistency distillation (LCM, Luo et al. 2023; MotionLCM, Dai et al. 2024) of the x0 latent denoiser.

A consistency function f(z_t, t) maps any point of a probability-flow trajectory to its clean end.  It is
parameterised as ``f = c_skip(t) z_t + c_out(t) F(z_t, t)``, F the student denoiser's x0 estimate (its output,
or for an epsilon denoiser the x0 that output implies) and
(c_skip, c_out) diffusers' ``LCMScheduler`` boundary scalings (c_skip(0) = 1, c_out(0) = 0; sigma_data 0.5,
timestep_scaling 10), the same the sampler applies, so training and sampling share one formula.

One training step, for clean latents z0 (B, Lz, D), their token mask (B, Lz) and text embeddings (B, 384):

* a timestep t_n of the "skipping" grid {k - 1, 2k - 1, ..., T - 1} (k = T / original_steps; 20 for 1000 / 50)
  and s = max(t_n - k, 0);
* z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps;
* the teacher's classifier-free-guided x0 at z_t, x0_w = x0_u + w (x0_c - x0_u) (w = ``cfg_scale``, baked into
  the student, which then needs one conditional forward per step), and one DDIM step of it to s:
  z_s = sqrt(abar_s) x0_w + sqrt(1 - abar_s) eps_w (abar_s = abar_0 at s = 0, as LCM's solver);
* target f_target(z_s, s) by the target network (an exponential moving average of the student, decay
  ``target_ema``; no gradient), prediction f_student(z_t, t);
* loss: pseudo-Huber sqrt(d^2 + c^2) - c of their difference (c = ``huber_c``), averaged over the latent
  dimension and then over real tokens.

Validation: the same loss at fixed timesteps and noise (VALIDATION_SEED), with the target taken from the
student itself, so it measures self-consistency along the teacher's trajectory; it is the training curve.
Generation quality is judged on validation by ``realign select-generator``-style judges, never by evaluators.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from realign_core.diffusion.sampling import NoiseSchedule, cfg_combine


@dataclass(frozen=True)
class ConsistencyConfig:
    """Distillation settings (``[denoiser_lcm.model]``): the teacher is ROOT/denoiser of the output root."""

    cfg_scale: float = 3.0          # w: the teacher's CFG scale the student learns (the validated one)
    original_steps: int = 50        # the skipping grid: T / original_steps timesteps per solver step
    target_ema: float = 0.95        # decay of the target network's moving average
    huber_c: float = 0.001
    timestep_scaling: float = 10.0  # LCMScheduler's boundary-condition scaling
    rank: int = 32                  # low-rank adapter on the teacher's weights (models/low_rank.py)
    alpha: float = 32.0
    student_dropout: float = 0.0    # the student's dropout (the teacher's 0.1 swamps the consistency gap:
                                    # two dropout passes differ by 0.11 in this loss, f(z_t) and f(z_s) by 0.017)

    def __post_init__(self) -> None:
        if self.original_steps < 1:
            raise ValueError(f"original_steps = {self.original_steps} must be >= 1")
        if not 0 <= self.target_ema < 1:
            raise ValueError(f"target_ema = {self.target_ema} must be in [0, 1)")
        if self.huber_c <= 0:
            raise ValueError(f"huber_c = {self.huber_c} must be > 0")
        if not 0 <= self.student_dropout < 1:
            raise ValueError(f"student_dropout = {self.student_dropout} must be in [0, 1)")


def boundary_scalings(t: Tensor, timestep_scaling: float) -> tuple[Tensor, Tensor]:
    """(c_skip, c_out) (B,) float32 of timesteps t (B,), by diffusers' LCMScheduler (the sampler's formula)."""
    from diffusers import LCMScheduler

    sched = LCMScheduler(timestep_scaling=timestep_scaling)
    c_skip, c_out = sched.get_scalings_for_boundary_condition_discrete(t.double())
    return c_skip.float(), c_out.float()


def _scaling_table(num_train_steps: int, timestep_scaling: float) -> tuple[Tensor, Tensor]:
    """(c_skip, c_out) (T,) for every timestep, computed once."""
    return boundary_scalings(torch.arange(num_train_steps), timestep_scaling)


def _bcast(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape((-1,) + (1,) * (like.ndim - 1)).to(like.device, like.dtype)


class ConsistencyObjective:
    """The skipping grid, the teacher's guided DDIM step and the consistency loss (module docstring)."""

    def __init__(self, schedule: NoiseSchedule, config: ConsistencyConfig, prediction_type: str = "sample") -> None:
        self.schedule, self.config, self.prediction_type = schedule, config, prediction_type
        T = schedule.num_train_steps
        if T % config.original_steps:
            raise ValueError(f"original_steps = {config.original_steps} must divide the {T} training timesteps")
        self.skip = T // config.original_steps
        self.grid = torch.arange(1, config.original_steps + 1) * self.skip - 1      # (N,) ascending
        self.abar = schedule.alphas_cumprod.float()
        self.c_skip, self.c_out = _scaling_table(T, config.timestep_scaling)

    def draw_timesteps(self, batch: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(t_n, s) (B,) long: grid timesteps and the solver's target timesteps max(t_n - k, 0)."""
        idx = torch.randint(0, len(self.grid), (batch,), generator=generator)
        t = self.grid[idx]
        return t, (t - self.skip).clamp(min=0)

    def x0(self, output: Tensor, z: Tensor, t: Tensor) -> Tensor:
        """A denoiser's output at (z, t) read as its x0 estimate (``prediction_type`` "sample" or "epsilon")."""
        output = output.float()
        if self.prediction_type == "sample":
            return output
        a_t = _bcast(self.abar[t.cpu()], z)
        return (z - (1 - a_t).sqrt() * output) / a_t.sqrt()

    def consistency(self, fn: nn.Module, z: Tensor, t: Tensor, text: Tensor, tokens: Tensor) -> Tensor:
        """f(z, t) = c_skip(t) z + c_out(t) F(z, t), F the conditional denoiser's x0; zero on padded tokens."""
        c_skip, c_out = self.c_skip[t.cpu()], self.c_out[t.cpu()]
        use = torch.ones(z.shape[0], dtype=torch.bool, device=z.device)
        x0 = self.x0(fn(z, t.to(z.device), text, use, tokens), z, t)
        return (_bcast(c_skip, z) * z + _bcast(c_out, z) * x0) * tokens[..., None]

    @torch.no_grad()
    def teacher_step(self, teacher: nn.Module, z_t: Tensor, t: Tensor, s: Tensor, text: Tensor,
                     tokens: Tensor) -> Tensor:
        """One DDIM step of the teacher's CFG x0 (scale w) from z_t at t to s -> z_s (B, Lz, D)."""
        b = z_t.shape[0]
        use = torch.cat([torch.ones(b, dtype=torch.bool), torch.zeros(b, dtype=torch.bool)]).to(z_t.device)
        both = teacher(torch.cat([z_t, z_t]), torch.cat([t, t]).to(z_t.device), torch.cat([text, text]), use,
                       torch.cat([tokens, tokens])).float()
        x0 = self.x0(cfg_combine(both[:b], both[b:], self.config.cfg_scale), z_t, t)
        a_t, a_s = _bcast(self.abar[t.cpu()], z_t), _bcast(self.abar[s.cpu()], z_t)
        eps = (z_t - a_t.sqrt() * x0) / (1 - a_t).sqrt()
        return (a_s.sqrt() * x0 + (1 - a_s).sqrt() * eps) * tokens[..., None]

    def loss(self, student: nn.Module, target: nn.Module, teacher: nn.Module, z0: Tensor, tokens: Tensor,
             text: Tensor, t: Tensor, s: Tensor, noise: Tensor) -> Tensor:
        """Scalar masked pseudo-Huber consistency loss (module docstring); gradients reach only ``student``."""
        a_t = _bcast(self.abar[t.cpu()], z0)
        z_t = (a_t.sqrt() * z0 + (1 - a_t).sqrt() * noise) * tokens[..., None]
        z_s = self.teacher_step(teacher, z_t, t, s, text, tokens)
        with torch.no_grad():
            goal = self.consistency(target, z_s, s, text, tokens)
        pred = self.consistency(student, z_t, t, text, tokens)
        c = self.config.huber_c
        err = (((pred - goal) ** 2 + c * c).sqrt() - c).mean(-1)
        return (err * tokens).sum() / tokens.sum().clamp(min=1)
