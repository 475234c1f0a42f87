"""Text-motion retrieval metrics (protocol of Guo et al. 2022 / TMR) and split embedding.

``retrieval_metrics``: the N (text, motion) pairs of a split are shuffled and
cut into groups of ``batch_size`` (32; an incomplete last group is dropped, as
a ``drop_last`` loader does; a split smaller than one group is one group).
Within a group every text ranks the group's motions (text->motion, "t2m") and
every motion ranks the texts ("m2t"); R@k is the fraction whose true partner
is among the top k.  Ties count against the true partner (a collapsed model
with identical embeddings scores 0, not 1).  Groups are averaged; with
``repeats`` > 1 each repeat reshuffles (seed + r), and the result is the mean
over repeats with a 95% interval half-width 1.96 * std / sqrt(repeats)
(population std, as Guo et al.'s evaluation script).

``embed_split``: one pass over a loader of ``dataset.collate`` batches embeds
the captions and the motions at one or more diffusion timesteps.  For t > 0
each clip's normalised features are noised with ``NoiseSchedule.add_noise``
using noise drawn from a generator seeded by (seed, clip id), so the noise of a
clip does not depend on batching, loader order or t, and two models see the
same noisy motions.  t = 0 means clean (no noise at all).  The embedding
functions are plain callables, so any model (reward model, evaluator) fits.
"""
from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from realign_core.diffusion.sampling import NoiseSchedule
from realign_core.evaluation.metrics import mean_ci

NOISE_LEVELS = (0, 100, 300, 500, 700, 900)
DEFAULT_KS = (1, 2, 3, 5, 10)
DISTANCES = ("cosine", "euclidean")

MotionFn = Callable[[Tensor, Tensor, Tensor], Tensor]   # (features (B,T,F), mask (B,T), t (B,)) -> (B, D)
TextFn = Callable[[list[str]], Tensor]                   # captions -> (B, D)


# ----------------------------------------------------------------------------- metrics

def similarity(text_emb: Tensor, motion_emb: Tensor, distance: str = "cosine") -> Tensor:
    """(G, D), (G, D) -> (G, G) scores, higher = closer: cosine, or minus the Euclidean distance."""
    if distance == "cosine":
        return F.normalize(text_emb, dim=-1) @ F.normalize(motion_emb, dim=-1).T
    if distance == "euclidean":
        return -torch.cdist(text_emb, motion_emb)
    raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")


def true_partner_ranks(scores: Tensor) -> Tensor:
    """(G, G) scores with the true partner on the diagonal -> (G,) 0-based ranks of each row's partner.

    Rank = number of other candidates scoring >= the partner (pessimistic ties).
    """
    diag = scores.diagonal()[:, None]
    eye = torch.eye(scores.shape[0], dtype=torch.bool, device=scores.device)
    return ((scores >= diag) & ~eye).sum(dim=1)


def _groups(count: int, size: int, generator: torch.Generator) -> list[Tensor]:
    """A random permutation of range(count) cut into groups of ``size`` (remainder dropped)."""
    order = torch.randperm(count, generator=generator)
    if count <= size:
        return [order]
    return list(order[: count - count % size].split(size))


def _recalls_once(text_emb: Tensor, motion_emb: Tensor, batch_size: int, ks: Sequence[int],
                  generator: torch.Generator, distance: str) -> dict[str, float]:
    """One shuffle: {"t2m_r{k}", "m2t_r{k}"} averaged over groups."""
    sums = {f"{d}_r{k}": 0.0 for d in ("t2m", "m2t") for k in ks}
    groups = _groups(text_emb.shape[0], batch_size, generator)
    for idx in groups:
        scores = similarity(text_emb[idx], motion_emb[idx], distance)
        for direction, ranks in (("t2m", true_partner_ranks(scores)), ("m2t", true_partner_ranks(scores.T))):
            for k in ks:
                sums[f"{direction}_r{k}"] += float((ranks < k).float().mean())
    return {key: value / len(groups) for key, value in sums.items()}


def retrieval_metrics(text_emb: Tensor, motion_emb: Tensor, batch_size: int = 32,
                      ks: Sequence[int] = DEFAULT_KS, seed: int = 0, repeats: int = 1,
                      distance: str = "cosine") -> dict[str, float]:
    """T2M / M2T recall at k in shuffled groups (see module doc).

    text_emb, motion_emb: (N, D), row i of each is one pair.  Returns
    {"t2m_r1": mean, "t2m_r1_ci": 95% half-width, ..., "m2t_r10", "m2t_r10_ci"}
    (fractions in [0, 1]; ci is 0 when repeats == 1).
    """
    if text_emb.ndim != 2 or text_emb.shape != motion_emb.shape:
        raise ValueError(f"expected two (N, D) tensors of one shape, got {tuple(text_emb.shape)} "
                         f"and {tuple(motion_emb.shape)}")
    if text_emb.shape[0] < 2 or batch_size < 2 or repeats < 1:
        raise ValueError("need N >= 2 pairs, batch_size >= 2 and repeats >= 1")
    text_emb, motion_emb = text_emb.detach().float().cpu(), motion_emb.detach().float().cpu()
    runs = [_recalls_once(text_emb, motion_emb, batch_size, ks, torch.Generator().manual_seed(seed + r), distance)
            for r in range(repeats)]
    out: dict[str, float] = {}
    for key in runs[0]:
        out[key], out[f"{key}_ci"] = mean_ci([run[key] for run in runs])
    return out


# ----------------------------------------------------------------------------- embedding a split

@dataclass
class SplitEmbeddings:
    """Embeddings of one pass over a loader, rows in loader order, float32 on the CPU.

    motion: {t: (N, D)} for each requested timestep (0 = clean); text: (N, D) or None.
    """

    ids: list[str]
    captions: list[str]
    motion: dict[int, Tensor] = field(default_factory=dict)
    text: Tensor | None = None


def clip_noise(ids: Sequence[str], lengths: Sequence[int], shape: Sequence[int], seed: int) -> Tensor:
    """Standard normal noise (B, T, F) on the CPU; clip i's first lengths[i] frames come from its
    own generator seeded by crc32("seed/id") (torch's CPU generator keeps 32 seed bits); zero on padding."""
    noise = torch.zeros(tuple(shape))
    for i, (clip_id, length) in enumerate(zip(ids, lengths)):
        gen = torch.Generator().manual_seed(zlib.crc32(f"{seed}/{clip_id}".encode()))
        noise[i, :length] = torch.randn((length,) + tuple(shape[2:]), generator=gen)
    return noise


def noised_features(features: Tensor, mask: Tensor, ids: Sequence[str], t: int, seed: int,
                    schedule: NoiseSchedule) -> Tensor:
    """x_t of normalised features (B, T, F) at one timestep t (0 = unchanged), zero on padding."""
    if t == 0:
        return features
    lengths = mask.sum(dim=1).tolist()
    noise = clip_noise(ids, lengths, features.shape, seed).to(device=features.device, dtype=features.dtype)
    return schedule.add_noise(features, noise, t) * mask[..., None].to(features.dtype)


def _levels(t: int | Sequence[int] | None) -> tuple[int, ...]:
    levels = (0,) if t is None else ((t,) if isinstance(t, int) else tuple(int(x) for x in t))
    if not levels:
        raise ValueError("no timesteps given")
    return levels


@torch.no_grad()
def embed_split(motion_fn: MotionFn, loader: Iterable[dict[str, Any]], t: int | Sequence[int] | None = None,
                text_fn: TextFn | None = None, seed: int = 0,
                schedule: NoiseSchedule | None = None,
                device: torch.device | str | None = None) -> SplitEmbeddings:
    """Embed every batch of ``loader`` at timestep(s) t (None or 0 = clean).

    motion_fn(features (B, T, F), mask (B, T), t (B,) long) -> (B, D) is called
    once per batch and level (e.g. ``reward_model.encode_motion``; an evaluator
    wrapper may ignore t); text_fn(captions) -> (B, D) once per batch, if given.
    Batches are moved to ``device`` (default: where the loader puts them).
    Default schedule: ``NoiseSchedule.make("scaled_linear", 1000)``.
    """
    levels = _levels(t)
    schedule = schedule or NoiseSchedule.make("scaled_linear", 1000)
    out = SplitEmbeddings(ids=[], captions=[])
    motions: dict[int, list[Tensor]] = {level: [] for level in levels}
    texts: list[Tensor] = []
    for batch in loader:
        features, mask = batch["features"], batch["mask"]
        if device is not None:
            features, mask = features.to(device), mask.to(device)
        out.ids += list(batch["ids"])
        out.captions += list(batch["captions"])
        for level in levels:
            x_t = noised_features(features, mask, batch["ids"], level, seed, schedule)
            t_batch = torch.full((features.shape[0],), level, dtype=torch.long, device=features.device)
            motions[level].append(motion_fn(x_t, mask, t_batch).detach().float().cpu())
        if text_fn is not None:
            texts.append(text_fn(list(batch["captions"])).detach().float().cpu())
    out.motion = {level: torch.cat(chunks) for level, chunks in motions.items()}
    out.text = torch.cat(texts) if texts else None
    return out


def retrieval_by_noise_level(motion_fn: MotionFn, text_fn: TextFn, loader: Iterable[dict[str, Any]],
                             levels: Sequence[int] = NOISE_LEVELS, seed: int = 0,
                             device: torch.device | str | None = None, **metric_args: Any
                             ) -> dict[int, dict[str, float]]:
    """{t: retrieval_metrics(text, motion at t, **metric_args)} from one ``embed_split`` pass."""
    emb = embed_split(motion_fn, loader, t=levels, text_fn=text_fn, seed=seed, device=device)
    return {level: retrieval_metrics(emb.text, emb.motion[level], seed=seed, **metric_args) for level in levels}
