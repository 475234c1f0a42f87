"""ReAlign's reward guidance: a pluggable hook that ``diffusion.denoise_loop`` calls after each step.

At a guided step with new sample x (the sampler's x_prev, at noise level s)::

    feats = generator.to_features(x)                    # VAE decoder, or a crop in motion space
    z     = reward.encode_motion(feats, mask, t_r(s))   # step-aware motion embedding
    R     = mu * cos(z, z_text) + eta * cos(z, z_ref)   # (B,) per-sample reward
    x    <- x + strength * scale * dR/dx                # per sample (dR_i/dx_j = 0 for i != j)

* Classifier-free guidance happens first (inside the sampler step), then the
  reward step, as in the paper; DDPM and DDIM alike.
* The gradient flows through the generator's decoder and the reward model only,
  never through the denoiser (the hook only sees the step's output).
* Gradients are per sample: R is summed over the batch, and no part of the
  decoder or reward model mixes samples, so each sample's gradient is that of
  its own reward (no averaging, so strength does not shrink with batch size).
* ``z_text`` and ``z_ref`` (the top-1 training motion of the embedding bank,
  :mod:`realign_core.guidance.reward_bank`) are computed once per prompt, before the loop.
* t_r(s): the reward model's timestep whose noise level (alpha-bar) is closest
  to that of the generator's schedule at s, so a generator with another schedule
  (cosine for the MDM-style one) still asks the reward model about the right
  noise level; after the last step (clean sample) t_r = 0.
* ``scale`` calibrates one generator/reward pair (tuned on the validation split
  and stored in the models' ``guidance.toml``); users only see ``strength``
  (0 = unguided, and then the hook is not even built, so sampling is
  bit-identical to the baseline; 1 = the validated setting).
* ``guided_steps`` k < all guides only k of the reverse steps (spread evenly,
  or the first/last k) -- the main lever on guidance cost.
* ``reward_space``: "motion" (default, any generator) scores the decoded motion as above; "latent"
  uses a reward model that reads the latent generator's state itself
  (:class:`~realign_core.models.latent_reward.LatentRewardModel`, ``space = "latent"``):
  ``z = reward.encode_motion(x, token_mask, t)``, no decoder call in the guided steps, and its
  schedule is the generator's (t_r(s) = s).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from realign_core.diffusion.sampling import NoiseSchedule

PLACEMENTS = ("spread", "early", "late")
REWARD_SPACES = ("motion", "latent")
# guidance.toml keys besides the settings; UNTUNED_KEYS: those the guidance tuning does not choose (kept on rewrite)
UNTUNED_KEYS = ("control_steps", "control_path_iterations", "control_path_weight", "cfg_scale", "foot_lock")
SAMPLING_KEYS = ("scale", "sampler", "steps", *UNTUNED_KEYS)


@dataclass(frozen=True)
class GuidanceSettings:
    """What a user chooses per request.

    strength: multiplier of the calibrated step (0 = off); mu / eta: weights of
    the text-to-motion and motion-to-motion rewards; guided_steps: how many
    reverse steps are guided (None = all); placement: which ones; reward_space: which reward model
    scores the steps ("motion": the decoded motion; "latent": the generator's latent, MLD only).
    """

    strength: float = 0.0
    mu: float = 1.0
    eta: float = 1.0
    guided_steps: int | None = None
    placement: str = "spread"
    reward_space: str = "motion"

    def __post_init__(self) -> None:
        for name in ("strength", "mu", "eta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
                    or abs(value) == float("inf"):
                raise ValueError(f"guidance.{name} must be a finite number, got {value!r}")
            if value < 0:
                raise ValueError(f"guidance.{name} must be >= 0, got {value}")
        if self.guided_steps is not None and (isinstance(self.guided_steps, bool) or int(self.guided_steps) < 0):
            raise ValueError(f"guidance.guided_steps must be None or >= 0, got {self.guided_steps!r}")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"guidance.placement must be one of {PLACEMENTS}, got {self.placement!r}")
        if self.reward_space not in REWARD_SPACES:
            raise ValueError(f"guidance.reward_space must be one of {REWARD_SPACES}, got {self.reward_space!r}")

    @property
    def active(self) -> bool:
        return self.strength > 0 and (self.mu > 0 or self.eta > 0) and self.guided_steps != 0


@dataclass(frozen=True)
class GuidanceCalibration:
    """Per generator: the step ``scale`` that strength 1 means, and the validated defaults.

    Without a calibration (no guidance.toml table) requests default to strength 0 (unguided):
    guidance is on by default only once a setting has been validated.  ``sampler``/``steps``: the
    sampling the setting was validated with (keys of the same table; None = not recorded);
    ``control_steps``: the steps of controlled takes (paths, keyed poses, loops, sequences), whose
    constraints need more reverse steps to be met than text alone (None = ``steps``);
    ``control_path_iterations``: the constraint refinement's iterations for takes with a path, chosen on the
    control bench's tuning seeds for this generator (None = the ConstraintSchedule default); ``control_path_weight``:
    the path cost's weight chosen there (None = the constraints' base weight); ``cfg_scale``: the
    classifier-free guidance scale chosen on validation by ``realign choose-cfg`` (None = the
    generator's own default); ``foot_lock``: whether takes are foot-locked by default (``motion.foot_lock``,
    chosen by ``realign choose-foot-lock``; None = off)."""

    scale: float = 1.0
    defaults: GuidanceSettings = GuidanceSettings()
    sampler: str | None = None
    steps: int | None = None
    control_steps: int | None = None
    cfg_scale: float | None = None
    control_path_iterations: int | None = None
    control_path_weight: float | None = None
    foot_lock: bool | None = None

    @classmethod
    def load(cls, path: str | Path, generator: str) -> "GuidanceCalibration":
        """Read table ``[generator]`` of a guidance.toml (missing file or table -> defaults)."""
        import tomllib

        path = Path(path)
        if not path.is_file():
            return cls()
        with path.open("rb") as f:
            table = tomllib.load(f).get(generator)
        if table is None:
            return cls()
        known = set(GuidanceSettings.__dataclass_fields__)
        unknown = set(table) - known - set(SAMPLING_KEYS)
        if unknown:
            raise ValueError(f"{path}: [{generator}] has unknown keys {sorted(unknown)}; "
                             f"allowed: {', '.join(SAMPLING_KEYS)}, {', '.join(sorted(known))}")
        defaults = GuidanceSettings(**{k: v for k, v in table.items() if k in known and k != "strength"},
                                    strength=float(table.get("strength", 1.0)))
        for key in ("steps", "control_steps", "control_path_iterations"):
            value = table.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{path}: [{generator}] {key} must be a positive integer, got {value!r}")
        where = f"{path}: [{generator}]"
        cfg_scale = _optional_number(table, "cfg_scale", where, allow_zero=True)
        weight = _optional_number(table, "control_path_weight", where, allow_zero=False)
        foot_lock = table.get("foot_lock")
        if foot_lock is not None and not isinstance(foot_lock, bool):
            raise ValueError(f"{where} foot_lock must be true or false, got {foot_lock!r}")
        return cls(float(table.get("scale", 1.0)), defaults, table.get("sampler"), table.get("steps"),
                   table.get("control_steps"), cfg_scale, table.get("control_path_iterations"), weight, foot_lock)


def _optional_number(table: dict, key: str, where: str, allow_zero: bool) -> float | None:
    """``table[key]`` as a float (None when absent); ValueError naming ``where`` and the key unless it is a
    number > 0 (>= 0 with ``allow_zero``)."""
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{where} {key} must be a number {'>=' if allow_zero else '>'} 0, got {value!r}")
    return float(value)


def guided_step_indices(total: int, guided: int | None, placement: str = "spread") -> set[int]:
    """Indices (0 = first reverse step) of the ``guided`` steps out of ``total``; None = all."""
    if guided is None or guided >= total:
        return set(range(total))
    if guided <= 0:
        return set()
    if placement == "early":
        return set(range(guided))
    if placement == "late":
        return set(range(total - guided, total))
    return {round(i * (total - 1) / max(guided - 1, 1)) for i in range(guided)} if guided > 1 else {total - 1}


def matching_timesteps(source: NoiseSchedule, target: NoiseSchedule, timesteps: list[int]) -> list[int]:
    """For each source timestep (-1 = clean), the target timestep with the nearest alpha-bar."""
    target_abar = target.alphas_cumprod.double()
    out = []
    for t in timesteps:
        abar = 1.0 if t < 0 else float(source.alphas_cumprod[t])
        out.append(0 if t < 0 else int((target_abar - abar).abs().argmin()))
    return out


@dataclass
class GuidanceTrace:
    """What a guided run did: per guided step, the mean rewards before the update; seconds spent."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


class RewardGuidance:
    """The ``guidance(step_index, t, x_prev, pred_x0) -> x_prev`` hook of ``denoise_loop``.

    generator: a :class:`~realign_core.diffusion.generators.BaseGenerator`; reward: a
    :class:`~realign_core.models.reward_model.RewardModel` (or a latent one, whose ``space`` is
    "latent": it then reads the state x directly); lengths (B,) frames;
    text_emb, ref_emb (B, D) unit embeddings (ref_emb may be None when eta = 0);
    timesteps: the sampler's descending timesteps.
    """

    def __init__(self, generator, reward, lengths: Tensor, text_emb: Tensor, ref_emb: Tensor | None,
                 settings: GuidanceSettings, scale: float, timesteps: list[int],
                 reward_schedule: NoiseSchedule):
        if settings.eta > 0 and ref_emb is None:
            raise ValueError("guidance.eta > 0 needs reference embeddings (an embedding bank)")
        self.generator, self.reward, self.settings = generator, reward, settings
        self.lengths, self.text_emb, self.ref_emb = lengths, text_emb, ref_emb
        self.step_size = settings.strength * scale
        self.active = guided_step_indices(len(timesteps), settings.guided_steps, settings.placement)
        nxt = list(timesteps[1:]) + [-1]          # noise level of x_prev after step i
        reward_t = matching_timesteps(generator.schedule, reward_schedule, nxt)
        self.reward_t = reward_t if reward.step_aware else [0] * len(reward_t)
        self.latent = getattr(reward, "space", "motion") == "latent"
        if self.latent:       # mask of the state's latent tokens; x is scored as it is, never decoded
            self.mask = reward.token_mask(lengths, generator.state_shape(1)[1])
        else:
            self.mask = torch.arange(int(lengths.max()), device=lengths.device)[None] < lengths[:, None]
        self.trace = GuidanceTrace()

    def rewards(self, x: Tensor, reward_t: int) -> tuple[Tensor, Tensor, Tensor | None]:
        """(R, R_t2m, R_m2m), each (B,), of states x (B, ...) -- differentiable w.r.t. x."""
        feats = x if self.latent else self.generator.to_features(x, self.lengths)
        z = self.reward.encode_motion(feats, self.mask, reward_t)
        t2m = (z * self.text_emb).sum(-1)
        m2m = (z * self.ref_emb).sum(-1) if self.ref_emb is not None else None
        total = self.settings.mu * t2m + (self.settings.eta * m2m if m2m is not None else 0.0)
        return total, t2m, m2m

    def gradient(self, x: Tensor, reward_t: int) -> Tensor:
        """dR_i/dx_i for every sample i: (B, ...) like x."""
        start = time.perf_counter()
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            total, t2m, m2m = self.rewards(x, reward_t)
            (grad,) = torch.autograd.grad(total.sum(), x)
        self.trace.steps.append({"reward_t": reward_t, "t2m": float(t2m.detach().mean()),
                                 "m2m": float(m2m.detach().mean()) if m2m is not None else None})
        self.trace.seconds += time.perf_counter() - start
        return torch.nan_to_num(grad)

    def __call__(self, step_index: int, t: int, x_prev: Tensor, pred_x0: Tensor) -> Tensor:
        if step_index not in self.active or self.step_size == 0:
            return x_prev
        return x_prev + self.step_size * self.gradient(x_prev, self.reward_t[step_index])

