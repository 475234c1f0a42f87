"""Text -> motion with the latent diffusion generator (text encoder + denoiser + sampler + VAE decoder).

``TextToMotionPipeline.from_checkpoints(root)`` loads ``root/vae/best.pt`` and
``root/denoiser/best.pt``.  ``pipeline(captions, frames, seeds)`` returns
un-normalised 263-dim features; ``to_joints`` turns them into (F, 22, 3) metres.
Each sample draws its noise from its own seeded generator, so a sample does
not depend on what else is in the batch.  ``guidance`` is the pluggable hook
of ``diffusion.denoise_loop`` (None = plain CFG sampling).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .diffusion import DDIMConfig, DDIMSampler, DDPMSampler, NoiseSchedule, SamplerConfig, denoise_loop
from .latent_denoiser import LatentDenoiser
from .motion import features_to_joints
from .motion_vae import MotionVAE
from .normalization import Normalizer
from .text_encoder import TextEncoder, load_text_encoder


@dataclass(frozen=True)
class SamplingConfig:
    sampler: str = "ddim"        # or "ddpm"
    steps: int = 50
    cfg_scale: float = 7.5
    eta: float = 0.0             # DDIM only


MAX_FRAMES = 196  # feature rows (9.8 s at 20 fps), as HumanML3D


class TextToMotionPipeline:
    """Wires the frozen text encoder, latent denoiser, sampler and VAE decoder."""

    def __init__(self, vae: MotionVAE, denoiser: LatentDenoiser, normalizer: Normalizer, schedule: NoiseSchedule,
                 latent_scale: float, prediction_type: str = "epsilon", text_encoder: TextEncoder | None = None,
                 device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.vae, self.denoiser = vae.to(self.device).eval(), denoiser.to(self.device).eval()
        self.normalizer, self.schedule = normalizer, schedule
        self.latent_scale, self.prediction_type = latent_scale, prediction_type
        self.text = text_encoder or load_text_encoder(self.device)
        self.max_frames = MAX_FRAMES

    @classmethod
    def from_checkpoints(cls, root: str | Path, device: str | torch.device = "cpu",
                         text_encoder: TextEncoder | None = None) -> "TextToMotionPipeline":
        from .denoiser_task import load_denoiser
        from .vae_task import load_vae

        root = Path(root)
        vae, _ = load_vae(root / "vae" / "best.pt", device)
        denoiser, ckpt = load_denoiser(root / "denoiser" / "best.pt", device)
        cfg = ckpt["config"]
        norm = Normalizer(np.asarray(ckpt["normalizer"]["mean"]), np.asarray(ckpt["normalizer"]["std"]))
        schedule = NoiseSchedule.make(cfg["schedule"], cfg["num_train_steps"])
        return cls(vae, denoiser, norm, schedule, cfg["latent_scale"], cfg["prediction_type"], text_encoder, device)

    def make_sampler(self, cfg: SamplingConfig):
        if cfg.sampler == "ddim":
            sampler = DDIMSampler(self.schedule, DDIMConfig(prediction_type=self.prediction_type, eta=cfg.eta))
        elif cfg.sampler == "ddpm":
            sampler = DDPMSampler(self.schedule, SamplerConfig(prediction_type=self.prediction_type))
        else:
            raise ValueError(f"sampler must be 'ddim' or 'ddpm', got {cfg.sampler!r}")
        sampler.set_timesteps(cfg.steps)
        return sampler

    def _model_fn(self, text_emb: Tensor, latent_mask: Tensor):
        b = text_emb.shape[0]
        use = torch.cat([torch.ones(b, dtype=torch.bool), torch.zeros(b, dtype=torch.bool)]).to(self.device)
        both_text, both_mask = torch.cat([text_emb, text_emb]), torch.cat([latent_mask, latent_mask])

        def model_fn(z: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
            out = self.denoiser(torch.cat([z, z]), torch.cat([t, t]), both_text, use, both_mask)
            return out[:b], out[b:]
        return model_fn

    def latent_shape(self, batch: int) -> tuple[int, int, int]:
        """Latents always have the length of a ``max_frames`` motion, so every sample's noise is
        the same whatever else is in the batch (shorter motions mask the extra tokens)."""
        return (batch, self.vae.cfg.latent_length(self.max_frames), self.vae.cfg.latent_dim)

    def decode(self, z_scaled: Tensor, mask: Tensor) -> Tensor:
        """Scaled latents (B, Lz, D) -> normalised features (B, T, 263)."""
        return self.vae.decode(z_scaled / self.latent_scale, mask)

    @torch.no_grad()
    def __call__(self, captions: list[str], frames: list[int], seeds: list[int],
                 cfg: SamplingConfig = SamplingConfig(), guidance=None, callback=None) -> tuple[Tensor, Tensor]:
        """-> (features (B, T_max, 263) un-normalised, mask (B, T_max)); frames are feature rows at 20 fps."""
        if not (len(captions) == len(frames) == len(seeds)):
            raise ValueError("captions, frames and seeds must have the same length")
        bad = [f for f in frames if not 1 <= int(f) <= self.max_frames]
        if bad:
            raise ValueError(f"frames must be in [1, {self.max_frames}], got {bad}")
        text_emb = self.text.encode_sentences(captions).to(self.device)
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        sampler = self.make_sampler(cfg)
        lengths = torch.tensor(frames, device=self.device)
        mask = torch.arange(int(lengths.max()), device=self.device)[None] < lengths[:, None]
        shape = self.latent_shape(len(captions))
        latent_mask = self.vae.latent_mask(torch.arange(self.max_frames, device=self.device)[None] < lengths[:, None])
        z = denoise_loop(self._model_fn(text_emb, latent_mask), sampler, shape, gens,
                         cfg.cfg_scale, guidance=guidance, callback=callback, device=self.device)
        feats = self.normalizer.denormalize(self.decode(z, mask))
        return feats * mask[..., None], mask

    @staticmethod
    def to_joints(features: Tensor, mask: Tensor) -> list[np.ndarray]:
        """Per sample (F_i, 22, 3) float32 joints in metres, Y up, 20 fps."""
        return [features_to_joints(features[i, :int(mask[i].sum())].cpu().numpy()) for i in range(len(features))]
