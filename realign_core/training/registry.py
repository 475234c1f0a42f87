"""Model kinds that ``realign train`` knows, and how each task is constructed.

All kinds of one size share an output root: ``OUT/vae``, ``OUT/denoiser``,
``OUT/reward``, ``OUT/reward_plain``, ``OUT/evaluator``, ``OUT/evaluator_words``, ``OUT/mdm``,
``OUT/latent_reward``, ``OUT/denoiser_lcm``.  The denoiser is trained on the VAE found at ``OUT/vae/best.pt``;
``denoiser_lcm`` (the few-step consistency model) is distilled from ``OUT/denoiser`` on those latents; the latent
reward on the latents of ``OUT/vae`` scaled and noised as ``OUT/denoiser`` sees them; ``mdm`` (the
MDM-style motion-space generator) needs nothing else.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from realign_core.models.layout import KINDS, checkpoint_path
from realign_core.motion.normalization import Normalizer
from realign_core.training.config import TrainConfig
from realign_core.training.task import TrainingTask

__all__ = ["KINDS", "make_task"]   # KINDS: the model folder's kinds, one training task each


def make_task(kind: str, model_section: dict[str, Any], data_dir: Path, out_root: Path, where: str,
              train: TrainConfig | None = None) -> TrainingTask:
    """Construct the task of one kind from its [kind.model] table (``train``: its [kind.train] settings,
    of which the denoiser and latent reward read ``cache_latents``)."""
    if kind == "vae":
        from realign_core.training.tasks.vae import VAETask

        norm = Normalizer.load(data_dir)
        return VAETask(model_section, norm.mean, norm.std, where)
    if kind == "denoiser":
        from realign_core.training.tasks.denoiser import DenoiserTask

        vae = checkpoint_path(out_root, "vae")
        if not vae.is_file():
            raise FileNotFoundError(f"{vae}: the denoiser needs a trained VAE; run `realign train vae` first")
        cache = train is not None and train.cache_latents
        return DenoiserTask(model_section, vae, data_dir, where=where, cache_latents=cache,
                            max_frames=train.max_frames if train else 196)
    if kind == "denoiser_lcm":
        from realign_core.training.tasks.denoiser_lcm import make_consistency_task

        return make_consistency_task(model_section, out_root, data_dir, where,
                                     cache_latents=train is not None and train.cache_latents,
                                     max_frames=train.max_frames if train else 196)
    if kind in ("reward", "reward_plain"):
        from realign_core.training.tasks.reward import make_reward_task

        norm = Normalizer.load(data_dir) if float(model_section.get("held_negative_weight", 0) or 0) > 0 else None
        return make_reward_task(kind, model_section, where, None if norm is None else (norm.mean, norm.std))
    if kind == "latent_reward":
        from realign_core.training.tasks.latent_reward import make_latent_reward_task

        return make_latent_reward_task(model_section, out_root, data_dir, where,
                                       cache_latents=train is not None and train.cache_latents,
                                       max_frames=train.max_frames if train else 196)
    if kind == "evaluator":
        from realign_core.training.tasks.evaluator import make_evaluator_task

        return make_evaluator_task(model_section, where)
    if kind == "evaluator_words":
        from realign_core.training.tasks.word_evaluator import make_word_evaluator_task

        return make_word_evaluator_task(model_section, data_dir, where)
    if kind == "mdm":
        from realign_core.training.tasks.motion_denoiser import MotionDenoiserTask

        return MotionDenoiserTask(model_section, where=where)
    raise ValueError(f"unknown model kind {kind!r}; choose one of {KINDS}")
