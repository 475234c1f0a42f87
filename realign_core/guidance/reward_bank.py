"""Embedding bank of the training motions, for ReAlign's motion-to-motion reward.

``build_bank`` embeds every training clip once with the reward model (clean,
t = 0, unit posterior means; the latent reward model reads the clip's VAE
posterior means scaled as the generator's state) and ``RewardBank.save`` writes them next to the
reward checkpoint (``bank.pt``: int8 unit embeddings with one scale per row, cosine error below 1e-4,
about 2 MB for 6,494 clips; banks written before this format hold fp16 embeddings and still load).
At generation time ``RewardBank.retrieve(text_emb)`` returns, per prompt, the embedding of the
training motion the reward model ranks highest for the text (top-1 cosine):
the reference of R_m2m = cos(z(x_t, t), z_ref).

We use the reference's clean embedding z(x_ref, 0) at every step: the
step-aware encoder is trained so that a noisy motion's embedding lands where
its clean motion's caption is, so the clean reference embedding is the target
at every noise level, and it is computed once per prompt.

A bank records the SHA-256 of the checkpoint it was built from; loading it for
another checkpoint is an error (rebuild with ``realign bank``).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from realign_core.data.dataset import MotionTextDataset, collate


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class RewardBank:
    """embeddings (N, D) unit float32; ids and captions of the N training clips."""

    embeddings: Tensor
    ids: list[str]
    captions: list[str]
    checkpoint_sha256: str = ""

    def retrieve(self, text_emb: Tensor) -> tuple[Tensor, Tensor]:
        """text_emb (B, D) -> (reference embeddings (B, D), bank indices (B,)) by top-1 cosine."""
        bank = self.embeddings.to(device=text_emb.device, dtype=text_emb.dtype)
        index = (F.normalize(text_emb, dim=-1) @ bank.T).argmax(dim=-1)
        return bank[index], index

    def save(self, path: str | Path) -> None:
        """Write the bank: int8 embeddings (N, D) with per-row scales (N, 1), ids, captions, checkpoint hash."""
        codes, scales = quantize_rows(self.embeddings)
        torch.save({"embeddings_int8": codes, "row_scales": scales, "ids": self.ids, "captions": self.captions,
                    "checkpoint_sha256": self.checkpoint_sha256}, path)

    @classmethod
    def load(cls, path: str | Path, checkpoint: str | Path | None = None) -> "RewardBank":
        """Load a bank (int8 or the earlier fp16 format); with ``checkpoint`` given, check it was built
        from that file."""
        payload = torch.load(path, map_location="cpu", weights_only=False)
        if "embeddings_int8" in payload:
            embeddings = payload["embeddings_int8"].float() * payload["row_scales"].float()
        else:
            embeddings = payload["embeddings"].float()
        bank = cls(embeddings, list(payload["ids"]), list(payload["captions"]), payload.get("checkpoint_sha256", ""))
        if checkpoint is not None and bank.checkpoint_sha256 != file_sha256(checkpoint):
            raise ValueError(f"{path} was built from another checkpoint than {checkpoint}; "
                             f"rebuild it with `realign bank --models {Path(checkpoint).parents[1]}`")
        return bank


def quantize_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """(N, D) float -> (int8 codes (N, D), float32 scales (N, 1)) with x ~ codes * scales (symmetric, per row)."""
    x = x.float()
    scales = (x.abs().amax(dim=1, keepdim=True) / 127.0).clamp_min(1e-12)
    return (x / scales).round().clamp(-127, 127).to(torch.int8), scales


MotionEmbedder = Callable[[Tensor, Tensor], Tensor]   # (features (B, T, 263), mask (B, T)) -> (B, D)


def motion_embedder(reward) -> MotionEmbedder:
    """The motion-space reward model's clean embedding of a normalised feature batch."""
    return lambda feats, mask: reward.encode_motion(feats, mask, 0)


def latent_embedder(latent_reward, vae, latent_scale: float) -> MotionEmbedder:
    """The latent reward model's clean embedding of a feature batch: the VAE posterior means, scaled by
    the generator's ``latent_scale`` (its diffusion state at t = 0), scored by the latent model."""
    def embed(feats: Tensor, mask: Tensor) -> Tensor:
        mu, _ = vae.encode(feats, mask)
        return latent_reward.encode_latent(mu * latent_scale, mask.sum(dim=1), 0)
    return embed


@torch.no_grad()
def build_bank(embed: MotionEmbedder, checkpoint: str | Path, data_dir: str | Path, split: str = "train",
               batch_size: int = 64, progress: bool = True, device: str | torch.device = "cpu") -> RewardBank:
    """Embed every clip of ``split`` (clean, t = 0) with ``embed`` (:func:`motion_embedder` or
    :func:`latent_embedder`) -> RewardBank tied to ``checkpoint`` (the reward model's file)."""
    dataset = MotionTextDataset(data_dir, split, seed=0)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    embeddings, ids, captions = [], [], []
    for batch in tqdm(loader, desc=f"embedding {split} motions", disable=not progress):
        embeddings.append(embed(batch["features"].to(device), batch["mask"].to(device)).float().cpu())
        ids += list(batch["ids"])
        captions += list(batch["captions"])
    return RewardBank(torch.cat(embeddings), ids, captions, file_sha256(checkpoint))
