"""Base generators: what a diffusion model must expose for the pipeline and for guidance.

A base generator owns its diffusion *state* (a VAE latent, or the motion
itself), its denoiser call and the map from state to motion.  The pipeline and
ReAlign's guidance only use this small interface, which is what makes the
guidance plug-and-play:

* ``state_shape(batch)`` -- the shape of x_t; always that of a ``max_frames``
  motion, so a sample's noise does not depend on the rest of the batch;
* ``model_fn(text_emb, lengths)`` -> ``f(x_t, t) -> (cond_out, uncond_out)``
  for ``diffusion.denoise_loop`` (classifier-free guidance pairs);
* ``to_features(x, lengths)`` -> normalised HumanML3D features (B, T, 263),
  T = max(lengths), zero on padding, differentiable w.r.t. x (the VAE decoder
  for a latent model, a crop for a motion-space model);
* ``schedule``, ``prediction_type``, ``normalizer``, ``max_frames``,
  ``default_cfg`` and a ``name``.

Two kinds ship: ``LatentGenerator`` (MLD-style: motion VAE + latent
epsilon-denoiser) and ``MotionSpaceGenerator`` (MDM-style x0-denoiser on the
normalised features).  ``load_generator(root, kind)`` rebuilds either from
checkpoints.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from torch import Tensor

from realign_core.diffusion.sampling import NoiseSchedule
from realign_core.models.layout import checkpoint_path
from realign_core.motion.normalization import Normalizer

MAX_FRAMES = 196  # feature rows (9.8 s at 20 fps), as HumanML3D
GENERATOR_KINDS = ("mld", "mdm")
ModelFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


class BaseGenerator(Protocol):
    name: str
    schedule: NoiseSchedule
    prediction_type: str
    normalizer: Normalizer
    max_frames: int
    default_cfg: float
    device: torch.device

    def state_shape(self, batch: int) -> tuple[int, ...]: ...

    def model_fn(self, text_emb: Tensor, lengths: Tensor) -> ModelFn: ...

    def to_features(self, x: Tensor, lengths: Tensor) -> Tensor: ...


def frame_mask(lengths: Tensor, frames: int) -> Tensor:
    """(B,) lengths -> (B, frames) bool, True on real frames."""
    return torch.arange(frames, device=lengths.device)[None] < lengths[:, None]


def _cfg_pair(denoise: Callable[[Tensor, Tensor, Tensor], Tensor], text_emb: Tensor) -> ModelFn:
    """Wrap ``denoise(x, t, use_condition)`` as one 2B forward returning (cond, uncond)."""
    b = text_emb.shape[0]
    use = torch.cat([torch.ones(b, dtype=torch.bool), torch.zeros(b, dtype=torch.bool)]).to(text_emb.device)

    def model_fn(x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        out = denoise(torch.cat([x, x]), torch.cat([t, t]), use)
        return out[:b], out[b:]
    return model_fn


def _schedule_from(cfg: dict) -> NoiseSchedule:
    return NoiseSchedule.make(cfg["schedule"], cfg["num_train_steps"])


def _normalizer_from(ckpt: dict) -> Normalizer:
    return Normalizer(np.asarray(ckpt["normalizer"]["mean"]), np.asarray(ckpt["normalizer"]["std"]))


class LatentGenerator:
    """MLD-style: state = scaled VAE latents (B, 49, latent_dim); features = VAE decoder output."""

    name = "mld"
    default_cfg = 7.5

    def __init__(self, vae, denoiser, normalizer: Normalizer, schedule: NoiseSchedule, latent_scale: float,
                 prediction_type: str = "epsilon", device: str | torch.device = "cpu",
                 consistency_path: str | Path | None = None):
        self.device = torch.device(device)
        self.consistency_path = Path(consistency_path) if consistency_path is not None else None
        self._consistency: tuple | None = None
        self.vae, self.denoiser = vae.to(self.device).eval(), denoiser.to(self.device).eval()
        for p in list(self.vae.parameters()) + list(self.denoiser.parameters()):
            p.requires_grad_(False)
        self.normalizer, self.schedule = normalizer, schedule
        self.latent_scale, self.prediction_type = latent_scale, prediction_type
        self.max_frames = MAX_FRAMES

    @classmethod
    def from_checkpoints(cls, root: str | Path, device: str | torch.device = "cpu") -> "LatentGenerator":
        from realign_core.models.latent_denoiser import load_denoiser
        from realign_core.models.motion_vae import load_vae

        root = Path(root)
        vae, _ = load_vae(checkpoint_path(root, "vae"), device)
        denoiser, ckpt = load_denoiser(checkpoint_path(root, "denoiser"), device)
        cfg = ckpt["config"]
        return cls(vae, denoiser, _normalizer_from(ckpt), _schedule_from(cfg), cfg["latent_scale"],
                   cfg["prediction_type"], device, consistency_path=checkpoint_path(root, "denoiser_lcm"))

    @property
    def consistency_cfg(self) -> float | None:
        """The CFG scale distilled into the consistency denoiser, read from its checkpoint's config (the model is
        only built on first use of the 'lcm' sampler), or None without one."""
        if self._consistency is not None:
            return float(self._consistency[1]["cfg_scale"])
        if self.consistency_path is None or not self.consistency_path.is_file():
            return None
        return float(torch.load(self.consistency_path, map_location="cpu", weights_only=False)["config"]["cfg_scale"])

    def consistency(self) -> tuple:
        """(merged consistency denoiser, its settings: cfg_scale, original_steps, timestep_scaling), loaded from
        ``consistency_path`` on first use (``realign_core/models/consistency_denoiser.py``)."""
        if self._consistency is None:
            from realign_core.models.consistency_denoiser import load_consistency_denoiser

            if self.consistency_path is None:
                raise FileNotFoundError("this generator was built without a consistency denoiser "
                                        "(ROOT/denoiser_lcm/best.pt); the 'lcm' sampler needs one")
            model, ckpt = load_consistency_denoiser(self.consistency_path, self.denoiser,
                                                    self.consistency_path.parent.parent / "denoiser", self.device)
            cfg = ckpt["config"]
            settings = {k: cfg[k] for k in ("cfg_scale", "original_steps", "timestep_scaling")}
            self._consistency = (model.requires_grad_(False), settings)
        return self._consistency

    def consistency_fn(self, text_emb: Tensor, lengths: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
        """``f(z_t, t) -> x0`` of the consistency denoiser (CFG distilled in: one conditional forward) for
        ``diffusion.denoise_loop`` with the 'lcm' sampler."""
        model = self.consistency()[0]
        latent_mask = self.vae.latent_mask(frame_mask(lengths, self.max_frames))
        use = torch.ones(text_emb.shape[0], dtype=torch.bool, device=text_emb.device)
        return lambda z, t: model(z, t, text_emb, use, latent_mask)

    def state_shape(self, batch: int) -> tuple[int, int, int]:
        return (batch, self.vae.cfg.latent_length(self.max_frames), self.vae.cfg.latent_dim)

    def model_fn(self, text_emb: Tensor, lengths: Tensor) -> ModelFn:
        latent_mask = self.vae.latent_mask(frame_mask(lengths, self.max_frames))
        both_text, both_mask = torch.cat([text_emb, text_emb]), torch.cat([latent_mask, latent_mask])
        return _cfg_pair(lambda z, t, use: self.denoiser(z, t, both_text, use, both_mask), text_emb)

    def to_features(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Scaled latents (B, Lz, D) -> normalised features (B, max(lengths), 263)."""
        return self.vae.decode(x / self.latent_scale, frame_mask(lengths, int(lengths.max())))


class MotionSpaceGenerator:
    """MDM-style: state = normalised features (B, 196, 263); features = the state cropped and masked."""

    name = "mdm"
    default_cfg = 2.5

    def __init__(self, denoiser, normalizer: Normalizer, schedule: NoiseSchedule,
                 prediction_type: str = "sample", device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.denoiser = denoiser.to(self.device).eval()
        for p in self.denoiser.parameters():
            p.requires_grad_(False)
        self.normalizer, self.schedule, self.prediction_type = normalizer, schedule, prediction_type
        self.max_frames = MAX_FRAMES

    @classmethod
    def from_checkpoints(cls, root: str | Path, device: str | torch.device = "cpu") -> "MotionSpaceGenerator":
        from realign_core.models.motion_denoiser import load_motion_denoiser

        denoiser, ckpt = load_motion_denoiser(checkpoint_path(Path(root), "mdm"), device)
        cfg = ckpt["config"]
        return cls(denoiser, _normalizer_from(ckpt), _schedule_from(cfg), cfg["prediction_type"], device)

    def state_shape(self, batch: int) -> tuple[int, int, int]:
        return (batch, self.max_frames, self.denoiser.cfg.feature_dim)

    def model_fn(self, text_emb: Tensor, lengths: Tensor) -> ModelFn:
        mask = frame_mask(lengths, self.max_frames)
        both_text, both_mask = torch.cat([text_emb, text_emb]), torch.cat([mask, mask])
        return _cfg_pair(lambda x, t, use: self.denoiser(x, t, both_text, use, both_mask), text_emb)

    def to_features(self, x: Tensor, lengths: Tensor) -> Tensor:
        """State (B, 196, 263) -> (B, max(lengths), 263), zero on padding."""
        frames = int(lengths.max())
        return x[:, :frames] * frame_mask(lengths, frames)[..., None].to(x.dtype)


def load_generator(root: str | Path, kind: str = "mld", device: str | torch.device = "cpu") -> BaseGenerator:
    """Rebuild a base generator of ``kind`` ('mld' or 'mdm') from the checkpoints under ``root``."""
    if kind == "mld":
        return LatentGenerator.from_checkpoints(root, device)
    if kind == "mdm":
        return MotionSpaceGenerator.from_checkpoints(root, device)
    raise ValueError(f"generator must be one of {GENERATOR_KINDS}, got {kind!r}")
