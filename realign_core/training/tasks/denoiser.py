"""Training task for the latent denoiser on a frozen, trained motion VAE.

Latents are the VAE posterior samples scaled by ``latent_scale`` (1 / their
std over training clips, estimated once and stored in the checkpoint) so the
diffusion sees unit-variance data.  Loss: MSE of the predicted noise (or x0)
with condition dropout for classifier-free guidance.  Selection: validation
loss at fixed noise and timesteps (the evaluator is never used here).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from realign_core.data.dataset import MotionTextDataset, collate
from realign_core.models.latent_denoiser import DenoiserConfig, LatentDenoiser
from realign_core.models.motion_vae import MotionVAE, load_vae
from realign_core.text.encoder import TextEncoder, load_text_encoder
from realign_core.training.config import build_dataclass
from realign_core.training.denoiser_objective import VALIDATION_SEED, DenoiserObjective, DiffusionConfig
from realign_core.training.latent_cache import load_or_build

__all__ = ["DenoiserTask", "DiffusionConfig", "estimate_latent_scale"]


@torch.no_grad()
def estimate_latent_scale(vae: MotionVAE, dataset: MotionTextDataset, clips: int = 512, batch: int = 64) -> float:
    """1 / std of VAE posterior means over up to ``clips`` training clips."""
    device = next(vae.parameters()).device
    items = [dataset[i] for i in range(min(clips, len(dataset)))]
    values = []
    for i in range(0, len(items), batch):
        b = collate(items[i:i + batch])
        mask = b["mask"].to(device)
        mu = vae.encode(b["features"].to(device), mask)[0]
        values.append(mu[vae.latent_mask(mask)])
    return float(1.0 / torch.cat(values).std().clamp(min=1e-6))


class DenoiserTask:
    """TrainingTask for ``LatentDenoiser``."""

    name = "denoiser"
    selection_metric = "val_loss"
    selection_mode = "min"

    def __init__(self, model_section: dict[str, Any], vae_path: str | Path, data_dir: str | Path,
                 text_encoder: TextEncoder | None = None, where: str = "[denoiser.model]",
                 cache_latents: bool = False, max_frames: int = 196):
        section = dict(model_section)
        diff = {k: section.pop(k) for k in list(section) if k in DiffusionConfig.__dataclass_fields__}
        self.diffusion = build_dataclass(DiffusionConfig, diff, where)
        self.vae, _ = load_vae(vae_path)
        for p in self.vae.parameters():
            p.requires_grad_(False)
        self.vae_path = str(vae_path)
        vcfg = self.vae.cfg
        section.setdefault("latent_tokens", vcfg.latent_tokens)
        section.setdefault("latent_dim", vcfg.latent_dim)
        self.cfg = build_dataclass(DenoiserConfig, section, where)
        if (self.cfg.latent_tokens, self.cfg.latent_dim) != (vcfg.latent_tokens, vcfg.latent_dim):
            raise ValueError(f"{where}: latent shape {(self.cfg.latent_tokens, self.cfg.latent_dim)} does not "
                             f"match the VAE's {(vcfg.latent_tokens, vcfg.latent_dim)} ({vae_path})")
        self.text = text_encoder or load_text_encoder()
        self.latent_scale = self.diffusion.latent_scale or estimate_latent_scale(
            self.vae, MotionTextDataset(data_dir, "train", seed=0))
        self.objective = DenoiserObjective(self.diffusion, self.latent_scale)
        self.schedule = self.objective.schedule
        self.cache = load_or_build(self.vae, vae_path, data_dir, max_frames=max_frames) if cache_latents else None

    def build_model(self) -> LatentDenoiser:
        return LatentDenoiser(self.cfg)

    def config_dict(self) -> dict[str, Any]:
        return {**self.cfg.to_dict(), **asdict(self.diffusion), "latent_scale": self.latent_scale}

    def _posterior(self, batch: dict) -> tuple[Tensor, Tensor]:
        """(mu, logvar) (B, Lz, D) of the batch: from the cache when it holds every window, else encoded."""
        tokens = self.vae.latent_mask(batch["mask"])
        if self.cache is not None and "starts" in batch:
            cached = self.cache.lookup(batch["ids"], batch["starts"], batch["lengths"], tokens.shape[1],
                                       batch["features"].device)
            if cached is not None:
                return cached
        self.vae.to(batch["features"].device).eval()
        return self.vae.encode(batch["features"], batch["mask"])

    def _latents(self, batch: dict, sample: bool) -> tuple[Tensor, Tensor]:
        """Scaled VAE latents (B, Lz, D) and their token mask (B, Lz)."""
        with torch.no_grad():
            mu, logvar = self._posterior(batch)
            tokens = self.vae.latent_mask(batch["mask"])
            return self.objective.latents(mu, logvar, tokens, sample), tokens

    def _loss(self, model: LatentDenoiser, batch: dict, z0: Tensor, tokens: Tensor, t: Tensor, noise: Tensor,
              use_cond: Tensor, weighted: bool = False) -> Tensor:
        text = self.text.encode_sentences(batch["captions"]).to(z0.device)
        return self.objective.loss(model, z0, tokens, text, t, noise, use_cond, weighted)

    def training_loss(self, model: LatentDenoiser, batch: dict, step: int) -> tuple[Tensor, dict[str, float]]:
        z0, tokens = self._latents(batch, sample=True)
        t, use_cond, noise = self.objective.training_draws(z0)
        loss = self._loss(model, batch, z0, tokens, t, noise, use_cond, weighted=True)
        return loss, {"mse": loss.item()}

    def validation_mean(self, model: torch.nn.Module, loader: DataLoader,
                        loss_at: Callable[[dict, Tensor, Tensor, torch.Generator], Tensor]) -> float:
        """Clip-weighted mean over the validation batches of ``loss_at(batch, z0, tokens, generator)``: z0 the
        posterior-mean latents (B, Lz, D) on the model's device, the random draws from one generator seeded
        with VALIDATION_SEED (the same for every validation)."""
        device = next(model.parameters()).device
        gen = torch.Generator().manual_seed(VALIDATION_SEED)
        total, n = 0.0, 0
        for batch in loader:
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            z0, tokens = self._latents(batch, sample=False)
            total += float(loss_at(batch, z0, tokens, gen)) * z0.shape[0]
            n += z0.shape[0]
        return total / max(n, 1)

    @torch.no_grad()
    def validate(self, model: LatentDenoiser, loader: DataLoader) -> dict[str, float]:
        def loss_at(batch: dict, z0: Tensor, tokens: Tensor, gen: torch.Generator) -> Tensor:
            t, noise = (v.to(z0.device) for v in self.objective.validation_draws(tuple(z0.shape), gen))
            use_cond = torch.ones(z0.shape[0], dtype=torch.bool, device=z0.device)
            return self._loss(model, batch, z0, tokens, t, noise, use_cond)
        return {"val_loss": self.validation_mean(model, loader, loss_at)}
