"""Training task of the step-aware reward model (TMR losses on noised motions).

Per batch:

1. Noising.  With probability ``noise_prob`` (0.5) the *whole* batch is noised
   by the DDPM forward process on the normalised features,
   ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` (``scaled_linear``, 1000
   steps), one t per sample drawn by ``NoiseSchedule.sample_timesteps(skew=t_skew)``:
   t = floor(1000 u^p), u ~ U[0, 1).  The default p = 2 puts extra mass on small
   t (mean t ~ 333; P(t < 100) ~ 0.32, P(t < 500) ~ 0.71): small t are where
   the samples already carry the semantics the reward must read, while large t
   still get a share.  Clean batches use t = 0.  Padding stays masked.
   ``step_aware=False`` (the ``reward_plain`` ablation) never noises.
2. TMR losses, with posterior means ``mu`` and reparameterised samples ``z``:

   * ``contrastive``: symmetric InfoNCE on cos(mu_text, mu_motion) / temperature
     (0.1), off-diagonal pairs whose captions' sentence-embedding cosine is
     > ``similarity_threshold`` (0.8) removed from the denominators; weight 0.1;
   * ``recon``: masked SmoothL1 of the *clean* motion decoded from z_text and
     from z_motion, summed; weight 1;
   * ``kl``: KL(text || N(0, I)) + KL(motion || N(0, I)) + KL(text || motion) +
     KL(motion || text), each averaged over batch and latent dims (as TMR); 1e-5;
   * ``latent``: L1 between z_text and z_motion (mean); 1e-5;
   * ``held`` (off unless ``held_negative_weight`` > 0): each clip whose ``held_negative_part`` moves by at
     least ``held_negative_min_motion_m`` must score above its twin with that part held still (or, with
     ``held_negative_smooth_frames`` > 0, with its swings low-passed away), for its own caption
     (``training.held_negatives``; the twin is noised with the clip's t and noise).

Validation: unit posterior means of the val split, text->motion and motion->text
R@1/2/3/5/10 in shuffled groups of 32 (``val_repeats`` shuffles averaged) on
clean motions and, for step-aware models, at t = ``val_noise_t`` (500) with
per-clip fixed noise (keys prefixed ``t500_``).  Selection metric
``select_t2m_r1``: clean T2M R@1, averaged with the t = 500 value for
step-aware models (a checkpoint must retrieve well at both ends of the range
the guidance uses).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from realign_core.diffusion.sampling import SCHEDULE_KINDS, NoiseSchedule
from realign_core.evaluation.retrieval import embed_split, retrieval_metrics
from realign_core.guidance.control_spec import part_joints
from realign_core.models.reward_model import RewardModel, RewardModelConfig
from realign_core.training.held_negatives import held_negative_loss, hold_part_features
from realign_core.training.losses import info_nce_loss, near_duplicate_mask

TASK_NAMES = ("reward", "reward_plain")
SELECTION_METRIC = "select_t2m_r1"
DEFAULT_NOISE_PROB = 0.5


@dataclass(frozen=True)
class RewardConfig(RewardModelConfig):
    """Model architecture (inherited) plus noising, loss and validation settings.

    ``noise_prob=None`` resolves to 0.5 for step-aware models and 0 otherwise.
    """

    noise_prob: float | None = None
    t_skew: float = 2.0                  # sample_timesteps skew p: t = floor(T u^p)
    schedule: str = "scaled_linear"
    num_train_steps: int = 1000
    temperature: float = 0.1
    similarity_threshold: float = 0.8    # sentence cosine above which a negative is dropped
    contrastive_weight: float = 0.1
    recon_weight: float = 1.0
    kl_weight: float = 1e-5
    latent_weight: float = 1e-5
    held_negative_weight: float = 0.0    # > 0: the held-part hard negative (needs the dataset's mean/std)
    held_negative_part: str = "arms"
    held_negative_min_motion_m: float = 0.05
    held_negative_smooth_frames: int = 0  # 0: the part held at its mean pose; > 0: its swings low-passed away
    val_noise_t: int = 500
    val_group_size: int = 32
    val_repeats: int = 5
    val_seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.noise_prob is None:
            object.__setattr__(self, "noise_prob", DEFAULT_NOISE_PROB if self.step_aware else 0.0)
        if not 0.0 <= self.noise_prob <= 1.0:
            raise ValueError(f"noise_prob must be in [0, 1], got {self.noise_prob}")
        if not self.step_aware and self.noise_prob > 0:
            raise ValueError("step_aware=False trains on clean motions only: noise_prob must be 0")
        if self.schedule not in SCHEDULE_KINDS:
            raise ValueError(f"schedule must be one of {SCHEDULE_KINDS}, got {self.schedule!r}")
        if self.t_skew <= 0 or self.temperature <= 0:
            raise ValueError("t_skew and temperature must be > 0")
        if not 0 <= self.val_noise_t < self.num_train_steps:
            raise ValueError(f"val_noise_t must be in [0, {self.num_train_steps}), got {self.val_noise_t}")
        if self.val_group_size < 2 or self.val_repeats < 1:
            raise ValueError("val_group_size must be >= 2 and val_repeats >= 1")
        if min(self.held_negative_weight, self.held_negative_min_motion_m, self.held_negative_smooth_frames) < 0:
            raise ValueError(f"held_negative_weight ({self.held_negative_weight}), held_negative_min_motion_m "
                             f"({self.held_negative_min_motion_m}) and held_negative_smooth_frames "
                             f"({self.held_negative_smooth_frames}) must be >= 0")
        part_joints(self.held_negative_part)      # an unknown part fails here

    def model_config(self) -> RewardModelConfig:
        return RewardModelConfig(**self.model_fields())


# ----------------------------------------------------------------------------- losses

def gaussian_kl(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor | None = None,
                logvar_p: Tensor | None = None) -> Tensor:
    """KL(N(mu_q, e^logvar_q) || N(mu_p, e^logvar_p)) per dim, averaged over (B, D); p defaults to N(0, 1)."""
    if mu_p is None:
        mu_p, logvar_p = torch.zeros_like(mu_q), torch.zeros_like(logvar_q)
    kl = 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1.0)
    return kl.mean()


def masked_smooth_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """SmoothL1 (beta 1) of (B, T, F) averaged over real frames (mask (B, T)) and features."""
    err = F.smooth_l1_loss(pred, target, reduction="none") * mask[..., None].to(pred.dtype)
    return err.sum() / (mask.sum() * pred.shape[-1]).clamp(min=1)


def reparameterise(mu: Tensor, logvar: Tensor) -> Tensor:
    """A sample mu + sigma * eps, (B, D)."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


# ----------------------------------------------------------------------------- task

class RewardTask:
    """TrainingTask for :class:`RewardModel` (kinds ``reward`` and ``reward_plain``)."""

    selection_metric = SELECTION_METRIC
    selection_mode = "max"

    def __init__(self, config: RewardConfig = RewardConfig(), name: str = "reward",
                 norm: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """``norm``: the dataset's feature (mean, std), (263,) each; needed by the held-part negative."""
        if name not in TASK_NAMES:
            raise ValueError(f"task name must be one of {TASK_NAMES}, got {name!r}")
        if config.held_negative_weight > 0 and norm is None:
            raise ValueError("held_negative_weight > 0 needs the dataset's mean and std (make_reward_task's norm)")
        self.config = config
        self.name = name
        self.schedule = NoiseSchedule.make(config.schedule, config.num_train_steps)
        self.norm = None if norm is None else tuple(torch.as_tensor(np.asarray(a), dtype=torch.float32) for a in norm)

    def build_model(self) -> RewardModel:
        return RewardModel(self.config.model_config())

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    def noised(self, x0: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Maybe noise the whole batch: (B, T, F), (B, T) -> (x_t zero on padding, t (B,) long)."""
        batch = x0.shape[0]
        if self.config.noise_prob == 0 or float(torch.rand(())) >= self.config.noise_prob:
            return x0, torch.zeros(batch, dtype=torch.long, device=x0.device)
        t = self.schedule.sample_timesteps(batch, skew=self.config.t_skew, device=x0.device)
        x_t = self.schedule.add_noise(x0, torch.randn_like(x0), t)
        return x_t * mask[..., None].to(x_t.dtype), t

    def training_loss(self, model: RewardModel, batch: dict[str, Any],
                      step: int) -> tuple[Tensor, dict[str, float]]:
        cfg = self.config
        x0, mask, captions = batch["features"], batch["mask"], batch["captions"]
        x_t, t = self.noised(x0, mask)
        m_mu, m_logvar = model.motion_posterior(x_t, mask, t)
        t_mu, t_logvar = model.text_posterior(captions)
        t_z, m_z = reparameterise(t_mu, t_logvar), reparameterise(m_mu, m_logvar)
        recon_text, recon_motion = model.decode(torch.cat([t_z, m_z]), mask.repeat(2, 1)).chunk(2)
        sentences = model.text_model().encode_sentences(captions).to(x0.device)
        parts = {
            "contrastive": info_nce_loss(t_mu, m_mu, cfg.temperature,
                                         near_duplicate_mask(sentences, cfg.similarity_threshold)),
            "recon": masked_smooth_l1(recon_text, x0, mask) + masked_smooth_l1(recon_motion, x0, mask),
            "kl": (gaussian_kl(t_mu, t_logvar) + gaussian_kl(m_mu, m_logvar)
                   + gaussian_kl(t_mu, t_logvar, m_mu, m_logvar) + gaussian_kl(m_mu, m_logvar, t_mu, t_logvar)),
            "latent": F.l1_loss(t_z, m_z),
        }
        loss = (cfg.contrastive_weight * parts["contrastive"] + cfg.recon_weight * parts["recon"]
                + cfg.kl_weight * parts["kl"] + cfg.latent_weight * parts["latent"])
        logged = {k: float(v.detach()) for k, v in parts.items()}
        if cfg.held_negative_weight > 0:
            held, share = self.held_negative(model, x0, x_t, mask, t, t_mu, m_mu)
            loss = loss + cfg.held_negative_weight * held
            logged.update(held=float(held.detach()), held_share=share)
        logged["t_mean"] = float(t.float().mean())
        return loss, logged

    def held_negative(self, model: RewardModel, x0: Tensor, x_t: Tensor, mask: Tensor, t: Tensor,
                      t_mu: Tensor, m_mu: Tensor) -> tuple[Tensor, float]:
        """The held-part loss over the batch's clips whose part moves (0 when none does) and their share.
        x0, x_t: normalised (B, T, 263); the twin gets x_t's noise: x_t + sqrt(abar_t) (held - x0)."""
        cfg = self.config
        mean, std = (a.to(x0.device) for a in self.norm)
        held, movement = hold_part_features(x0 * std + mean, mask, cfg.held_negative_part,
                                            cfg.held_negative_smooth_frames)
        moving = movement >= cfg.held_negative_min_motion_m
        if not bool(moving.any()):
            return x0.new_zeros(()), 0.0
        held = (held - mean) / std * mask[..., None].to(x0.dtype)
        shift = held - x0
        if bool((t > 0).any()):
            shift = self.schedule.add_noise(shift, torch.zeros_like(shift), t)
        h_mu, _ = model.motion_posterior((x_t + shift)[moving], mask[moving], t[moving])
        loss = held_negative_loss(t_mu[moving], m_mu[moving], h_mu, cfg.temperature)
        return loss, float(moving.float().mean())

    @torch.no_grad()
    def validate(self, model: RewardModel, loader: DataLoader) -> dict[str, float]:
        cfg = self.config
        levels = (0, cfg.val_noise_t) if cfg.step_aware else (0,)
        emb = embed_split(model.encode_motion, loader, t=levels, text_fn=model.encode_text,
                          seed=cfg.val_seed, schedule=self.schedule)
        metrics: dict[str, float] = {}
        for level in levels:
            found = retrieval_metrics(emb.text, emb.motion[level], batch_size=cfg.val_group_size,
                                      seed=cfg.val_seed, repeats=cfg.val_repeats)
            prefix = f"t{level}_" if level else ""
            metrics.update({prefix + k: v for k, v in found.items() if not k.endswith("_ci")})
        scores = [metrics["t2m_r1"]] + ([metrics[f"t{cfg.val_noise_t}_t2m_r1"]] if cfg.step_aware else [])
        metrics[SELECTION_METRIC] = sum(scores) / len(scores)
        return metrics


def make_reward_task(kind: str, model_section: dict[str, Any], where: str = "[reward.model]",
                     norm: tuple[np.ndarray, np.ndarray] | None = None) -> RewardTask:
    """The task of kind ``reward`` (step-aware) or ``reward_plain`` (clean-only ablation).

    ``reward_plain`` defaults ``step_aware`` to False; the table may not turn it on.
    """
    from realign_core.training.config import build_dataclass

    section = dict(model_section)
    if kind == "reward_plain" and section.setdefault("step_aware", False):
        raise ValueError(f"{where}: reward_plain is the clean-only ablation; step_aware must be false")
    return RewardTask(build_dataclass(RewardConfig, section, where), name=kind, norm=norm)
