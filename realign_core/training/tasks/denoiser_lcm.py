"""Training task ``denoiser_lcm``: a few-step latent consistency model distilled from ROOT/denoiser (issue 13).

The student is the teacher (the x0 latent denoiser, frozen) plus a low-rank adapter on its weights
(``realign_core/models/low_rank.py``), so its checkpoint holds only the adapter's factors and the teacher's
fingerprint; ``realign_core/models/consistency_denoiser.py`` loads it back onto the same teacher.  The loss is
``ConsistencyObjective``'s (realign_core/training/consistency_objective.py); the target network is a moving
average of the student kept by this task.  The data path (VAE posteriors or the latent cache, text embeddings,
latent scale) is the denoiser's own (``DenoiserTask``), with the teacher's diffusion settings.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from realign_core.models.latent_denoiser import DenoiserConfig, LatentDenoiser, load_denoiser
from realign_core.models.layout import checkpoint_path
from realign_core.models.low_rank import LowRankAdapter, weights_fingerprint
from realign_core.training.config import build_dataclass
from realign_core.training.consistency_objective import ConsistencyConfig, ConsistencyObjective
from realign_core.training.denoiser_objective import DiffusionConfig
from realign_core.training.ema import averaged_copy, update_average
from realign_core.training.tasks.denoiser import DenoiserTask


class ConsistencyDistillationTask(DenoiserTask):
    """TrainingTask for the adapter of a consistency-distilled denoiser; selection: validation loss."""

    name = "denoiser_lcm"
    selection_metric = "val_consistency"
    selection_mode = "min"

    def __init__(self, config: ConsistencyConfig, teacher_path: str | Path, vae_path: str | Path,
                 data_dir: str | Path, where: str = "[denoiser_lcm.model]", cache_latents: bool = False,
                 max_frames: int = 196) -> None:
        self.teacher, ckpt = load_denoiser(teacher_path)
        teacher_cfg = ckpt["config"]
        fields = {*DenoiserConfig.__dataclass_fields__, *DiffusionConfig.__dataclass_fields__}
        super().__init__({k: v for k, v in teacher_cfg.items() if k in fields}, vae_path, data_dir,
                         where=where, cache_latents=cache_latents, max_frames=max_frames)
        self.teacher.requires_grad_(False)
        self.teacher_path, self.teacher_fingerprint = str(teacher_path), weights_fingerprint(self.teacher)
        self.lcm = config
        self.consistency = ConsistencyObjective(self.schedule, config, self.diffusion.prediction_type)
        self.target: LowRankAdapter | None = None

    def build_model(self) -> LowRankAdapter:
        """The student: a fresh adapter (computing the teacher) on a copy of the teacher whose dropout is
        ``student_dropout`` (0: the consistency targets are compared without dropout noise)."""
        base = LatentDenoiser(replace(self.teacher.cfg, dropout=self.lcm.student_dropout))
        base.load_state_dict(self.teacher.state_dict())
        return LowRankAdapter(base, self.lcm.rank, self.lcm.alpha)

    def config_dict(self) -> dict[str, Any]:
        return {**super().config_dict(), **asdict(self.lcm), "teacher_fingerprint": self.teacher_fingerprint}

    def _target_of(self, student: LowRankAdapter) -> LowRankAdapter:
        """The target network: the moving average of the student, updated once per training step."""
        if self.target is None:
            self.target = averaged_copy(student)
        else:
            update_average(self.target, student, self.lcm.target_ema)
        return self.target

    def _loss_at(self, student: LowRankAdapter, target: torch.nn.Module, batch: dict, z0: Tensor, tokens: Tensor,
                 t: Tensor, s: Tensor, noise: Tensor) -> Tensor:
        device = z0.device
        self.teacher.to(device).eval()
        text = self.text.encode_sentences(batch["captions"]).to(device)
        return self.consistency.loss(student, target, self.teacher, z0, tokens, text, t.to(device), s.to(device),
                                     noise)

    def training_loss(self, model: LowRankAdapter, batch: dict, step: int) -> tuple[Tensor, dict[str, float]]:
        z0, tokens = self._latents(batch, sample=True)
        t, s = self.consistency.draw_timesteps(z0.shape[0])
        loss = self._loss_at(model, self._target_of(model), batch, z0, tokens, t, s, torch.randn_like(z0))
        return loss, {"consistency": loss.item()}

    @torch.no_grad()
    def validate(self, model: LowRankAdapter, loader: DataLoader) -> dict[str, float]:
        """The consistency loss at fixed timesteps and noise, the student as its own target."""
        def loss_at(batch: dict, z0: Tensor, tokens: Tensor, gen: torch.Generator) -> Tensor:
            t, s = self.consistency.draw_timesteps(z0.shape[0], gen)
            noise = torch.randn(tuple(z0.shape), generator=gen).to(z0.device)
            return self._loss_at(model, model, batch, z0, tokens, t, s, noise)
        return {"val_consistency": self.validation_mean(model, loader, loss_at)}


def make_consistency_task(model_section: dict[str, Any], out_root: Path, data_dir: Path, where: str,
                          cache_latents: bool = False, max_frames: int = 196) -> ConsistencyDistillationTask:
    """The task of kind ``denoiser_lcm`` distilling OUT/denoiser (on OUT/vae's latents)."""
    config = build_dataclass(ConsistencyConfig, dict(model_section), where)
    paths = {kind: checkpoint_path(out_root, kind) for kind in ("vae", "denoiser")}
    for kind, path in paths.items():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: consistency distillation needs the trained {kind}; "
                                    f"run `realign train {kind}` first")
    return ConsistencyDistillationTask(config, paths["denoiser"], paths["vae"], data_dir, where, cache_latents,
                                       max_frames)
