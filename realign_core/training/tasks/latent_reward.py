"""Training task of the latent-space step-aware reward model (``realign train latent_reward``).

The motion-space reward task (:mod:`realign_core.training.tasks.reward`) with the motions replaced by
what the MLD-style generator samples: each batch's clips are encoded by the frozen VAE of the model
folder (OUT/vae/best.pt, or looked up in the posterior cache of
:mod:`realign_core.training.latent_cache` when ``cache_latents`` is on), a posterior sample is scaled
by the denoiser's ``latent_scale`` (OUT/denoiser/best.pt), and the rest is the reward task unchanged:

* noising with probability ``noise_prob`` by the *generator's* forward process (schedule and step
  count from the denoiser checkpoint), t skewed to small values (``t_skew``), clean batches t = 0;
* TMR's losses: InfoNCE (near-duplicate captions masked), reconstruction of the *clean latent* from
  the text and motion latents (SmoothL1), KL terms and latent L1, same weights as the reward;
* validation: T2M / M2T retrieval of clean and t = ``val_noise_t`` latents (posterior means,
  per-clip fixed noise) in groups of 32; selection ``select_t2m_r1`` (mean of the two T2M R@1).

Optional distillation (``distill_weight`` > 0, off by default): the motion-space reward model
OUT/``distill_from``/best.pt, frozen, scores the batch's captions against its *clean real* motions (t = 0;
no VAE decode needed); the student's (B, B) caption-to-latent similarities (posterior means, temperature
``temperature``) are pulled towards the teacher's by the symmetric KL of their row softmaxes (relational
distillation: the two models keep their own embedding spaces).

Fields derived from the checkpoints (``feature_dim``, ``latent_tokens``, ``frames_per_token``,
``schedule``, ``num_train_steps``, ``latent_scale``) may not be set in the TOML table.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from realign_core.models.latent_denoiser import load_denoiser
from realign_core.models.latent_reward import LATENT_REWARD_TASK, LatentRewardModel, LatentRewardModelConfig
from realign_core.models.layout import checkpoint_path
from realign_core.models.motion_vae import load_vae
from realign_core.models.reward_model import RewardModel, load_reward_model
from realign_core.training.config import build_dataclass
from realign_core.training.denoiser_objective import DenoiserObjective, DiffusionConfig
from realign_core.training.latent_cache import PosteriorCache, load_or_build
from realign_core.training.tasks.reward import RewardConfig, RewardTask

DERIVED = ("feature_dim", "latent_tokens", "frames_per_token", "schedule", "num_train_steps", "latent_scale")


@dataclass(frozen=True)
class LatentRewardConfig(LatentRewardModelConfig, RewardConfig):
    """The latent model's architecture, the reward task's noising / loss / validation settings and the
    generator's ``latent_scale`` (the derived fields are filled from the checkpoints)."""

    latent_scale: float = 1.0
    distill_weight: float = 0.0      # > 0: relational distillation from the motion-space reward
    distill_from: str = "reward"     # its kind in the model folder (OUT/KIND/best.pt)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.distill_weight < 0:
            raise ValueError(f"distill_weight must be >= 0, got {self.distill_weight}")
        if self.held_negative_weight > 0:
            raise ValueError("held_negative_weight: the held-part negative is the motion-space reward's; the latent "
                             "reward learns it by distillation from that reward (distill_weight)")

    def model_config(self) -> LatentRewardModelConfig:
        names = LatentRewardModelConfig.__dataclass_fields__
        return LatentRewardModelConfig(**{k: getattr(self, k) for k in names})


class LatentBatches:
    """A loader of ``collate`` batches seen as latent batches: features -> scaled posterior means
    (B, Lz, C), mask -> latent token mask (B, Lz); ids and captions unchanged."""

    def __init__(self, task: LatentRewardTask, loader: Iterable[dict[str, Any]]):
        self.task, self.loader = task, loader

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.loader:
            yield self.task.latent_batch(batch, sample=False)


class LatentRewardTask(RewardTask):
    """TrainingTask of :class:`LatentRewardModel` on the frozen VAE + denoiser of one model folder."""

    def __init__(self, config: LatentRewardConfig, vae_path: str | Path, data_dir: str | Path | None = None,
                 cache_latents: bool = False, max_frames: int = 196, teacher: RewardModel | None = None) -> None:
        super().__init__(config, name="reward")
        self.name = LATENT_REWARD_TASK
        self.vae, _ = load_vae(vae_path)
        self.vae.requires_grad_(False)
        diffusion = DiffusionConfig(config.schedule, config.num_train_steps)
        self.objective = DenoiserObjective(diffusion, config.latent_scale)
        self.teacher = teacher.requires_grad_(False).eval() if teacher is not None else None
        self.cache: PosteriorCache | None = None
        if cache_latents and data_dir is not None:
            self.cache = load_or_build(self.vae, vae_path, data_dir, max_frames=max_frames)

    def build_model(self) -> LatentRewardModel:
        return LatentRewardModel(self.config.model_config())

    @torch.no_grad()
    def latent_batch(self, batch: dict[str, Any], sample: bool) -> dict[str, Any]:
        """The batch with features -> scaled latents (B, Lz, C) (a posterior sample, or the mean) and
        mask -> token mask (B, Lz), both on the features' device."""
        feats, mask = batch["features"], batch["mask"]
        tokens = self.vae.latent_mask(mask)
        posterior = None
        if self.cache is not None and "starts" in batch:
            posterior = self.cache.lookup(batch["ids"], batch["starts"], batch["lengths"], tokens.shape[1],
                                          feats.device)
        if posterior is None:
            self.vae.to(feats.device).eval()
            posterior = self.vae.encode(feats, mask)
        z0 = self.objective.latents(*posterior, tokens, sample)
        return {**batch, "features": z0, "mask": tokens}

    def training_loss(self, model: LatentRewardModel, batch: dict[str, Any],
                      step: int) -> tuple[Tensor, dict[str, float]]:
        if self.teacher is None or self.config.distill_weight == 0:
            return super().training_loss(model, self.latent_batch(batch, sample=True), step)
        seen: dict[str, Tensor] = {}      # the posterior means of the reward task's own forward passes
        hooks = [part.register_forward_hook(lambda _m, _i, out, key=key: seen.__setitem__(key, out[0]))
                 for key, part in (("text", model.text_encoder), ("motion", model.motion_encoder))]
        try:
            loss, logged = super().training_loss(model, self.latent_batch(batch, sample=True), step)
        finally:
            for hook in hooks:
                hook.remove()
        distill = self.distillation(seen["text"], seen["motion"], batch)
        logged["distill"] = float(distill.detach())
        return loss + self.config.distill_weight * distill, logged

    def distillation(self, text_mu: Tensor, motion_mu: Tensor, batch: dict[str, Any]) -> Tensor:
        """Symmetric KL between the teacher's and the student's (B, B) text-motion softmaxes."""
        temperature = self.config.temperature
        with torch.no_grad():
            self.teacher.to(batch["features"].device)
            teacher = (self.teacher.encode_text(batch["captions"])
                       @ self.teacher.encode_motion(batch["features"], batch["mask"], 0).T) / temperature
        student = F.normalize(text_mu, dim=-1) @ F.normalize(motion_mu, dim=-1).T / temperature
        return 0.5 * sum(F.kl_div(F.log_softmax(s, -1), F.softmax(t, -1), reduction="batchmean")
                         for s, t in ((student, teacher), (student.T, teacher.T)))

    @torch.no_grad()
    def validate(self, model: LatentRewardModel, loader: DataLoader) -> dict[str, float]:
        return super().validate(model, LatentBatches(self, loader))


def make_latent_reward_task(model_section: dict[str, Any], out_root: Path, data_dir: str | Path | None = None,
                            where: str = "[latent_reward.model]", cache_latents: bool = False,
                            max_frames: int = 196) -> LatentRewardTask:
    """The task of kind ``latent_reward`` for the VAE and denoiser under ``out_root``."""
    section = dict(model_section)
    given = sorted(set(section) & set(DERIVED))
    if given:
        raise ValueError(f"{where}: {', '.join(given)} come from the VAE and denoiser checkpoints; remove them")
    vae_path, den_path = checkpoint_path(out_root, "vae"), checkpoint_path(out_root, "denoiser")
    for path, kind in ((vae_path, "vae"), (den_path, "denoiser")):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the latent reward reads the generator's latents; "
                                    f"run `realign train {kind}` first")
    vae_cfg = load_vae(vae_path)[0].cfg
    den_cfg = load_denoiser(den_path)[1]["config"]
    section.update(feature_dim=vae_cfg.latent_dim, latent_tokens=vae_cfg.latent_tokens,
                   frames_per_token=vae_cfg.downsample, schedule=den_cfg["schedule"],
                   num_train_steps=den_cfg["num_train_steps"], latent_scale=float(den_cfg["latent_scale"]))
    config = build_dataclass(LatentRewardConfig, section, where)
    teacher = None
    if config.distill_weight > 0:
        path = checkpoint_path(out_root, config.distill_from)
        if not path.is_file():
            raise FileNotFoundError(f"{where}: distill_weight > 0 needs the motion-space reward {path}; "
                                    f"run `realign train {config.distill_from}` first or set distill_weight = 0")
        teacher = load_reward_model(path)
    return LatentRewardTask(config, vae_path, data_dir, cache_latents, max_frames, teacher)
