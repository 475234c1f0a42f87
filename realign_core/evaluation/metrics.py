"""Text-to-motion generation metrics of Guo et al. (2022), on evaluator embeddings.

Inputs are numpy arrays (or anything ``np.asarray`` accepts) of embeddings in
the evaluator's metric space (see :mod:`realign_core.models.evaluator`: unit vectors
times ``metric_scale``); everything is computed in float64 and returned as
Python floats or numpy arrays.  Distances are Euclidean.

* :func:`r_precision` -- shuffle the (text, motion) pairs, cut them into
  groups of ``batch_size`` (32; the remainder is dropped), rank each group's
  motions by distance to each text; top-1/2/3 accuracy (cumulative).
* :func:`matching_score` (MM-Dist) -- mean distance text <-> its own motion.
* :func:`fid` -- Frechet distance between Gaussians fitted to two sets;
  :func:`real_vs_real_fid` is the same between two real splits (the floor a
  generator can hope for with this evaluator and these sample sizes).
* :func:`diversity` -- mean distance of 300 random pairs.
* :func:`multimodality` -- mean distance of 10 random pairs among the samples
  generated for one prompt, averaged over prompts.
* :func:`mean_ci` -- mean and 95 % half-width over repeated evaluations.
* :func:`wilson_interval` -- 95 % interval of a pass rate (binomial proportion);
  :func:`paired_difference` -- difference of two pass rates over paired samples
  with Newcombe's interval (the kinematic alignment checks).

Randomness comes only from the ``seed`` arguments (``np.random.default_rng``).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import linalg
from scipy.spatial.distance import cdist

R_PRECISION_BATCH = 32
DIVERSITY_PAIRS = 300
MULTIMODALITY_PAIRS = 10
FID_OFFSET = 1e-6       # added to both covariance diagonals when sqrtm of the product fails
Z95 = 1.959964          # normal quantile of a two-sided 95 % interval
CI_Z = 1.96             # Z95 rounded as in Guo et al.'s code: the mean +- CI of repeated evaluations


def _embeddings(x: ArrayLike, name: str) -> np.ndarray:
    """(N, D) float64 array, or ValueError naming ``name``."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be (N, D), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains non-finite values")
    return arr


def _pairs(text_emb: ArrayLike, motion_emb: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Row-aligned (N, D) text and motion embeddings."""
    text, motion = _embeddings(text_emb, "text_emb"), _embeddings(motion_emb, "motion_emb")
    if text.shape != motion.shape:
        raise ValueError(f"text_emb {text.shape} and motion_emb {motion.shape} must have the same shape")
    return text, motion


def r_precision(text_emb: ArrayLike, motion_emb: ArrayLike, batch_size: int = R_PRECISION_BATCH,
                top_k: int = 3, seed: int = 0) -> np.ndarray:
    """Guo et al.'s R-precision: (top_k,) cumulative top-1..top_k retrieval accuracy.

    text_emb, motion_emb: (N, D), row i of each is a true pair.  The pairs are
    shuffled with ``seed`` and cut into N // batch_size groups (the remainder
    is dropped); in each group every text ranks the group's motions (its own
    plus batch_size - 1 others) by Euclidean distance.  Ties are broken by
    position in the group (a stable sort, like Guo's ``argsort``).  Chance
    level is k / batch_size.
    """
    text, motion = _pairs(text_emb, motion_emb)
    if not 1 <= top_k <= batch_size:
        raise ValueError(f"need 1 <= top_k <= batch_size, got top_k={top_k}, batch_size={batch_size}")
    groups = len(text) // batch_size
    if groups == 0:
        raise ValueError(f"R-precision needs at least batch_size={batch_size} pairs, got {len(text)}")
    order = np.random.default_rng(seed).permutation(len(text))[:groups * batch_size]
    hits = np.zeros(top_k)
    for idx in order.reshape(groups, batch_size):
        ranking = np.argsort(cdist(text[idx], motion[idx]), axis=1, kind="stable")   # (b, b)
        rank = np.argmax(ranking == np.arange(batch_size)[:, None], axis=1)           # true motion's place
        hits += (rank[:, None] < np.arange(1, top_k + 1)).sum(axis=0)
    return hits / (groups * batch_size)


def matching_score(text_emb: ArrayLike, motion_emb: ArrayLike) -> float:
    """MM-Dist: mean Euclidean distance between each text and its own motion (all N pairs)."""
    text, motion = _pairs(text_emb, motion_emb)
    return float(np.linalg.norm(text - motion, axis=1).mean())


def _gaussian(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) -> mean (D,) and unbiased covariance (D, D); N >= 2."""
    if len(emb) < 2:
        raise ValueError(f"FID needs at least 2 embeddings per set, got {len(emb)}")
    return emb.mean(axis=0), np.cov(emb, rowvar=False).reshape(emb.shape[1], emb.shape[1])


def _sqrtm_product(cov_a: np.ndarray, cov_b: np.ndarray) -> np.ndarray:
    """Real part of sqrtm(cov_a @ cov_b).

    If the result is not finite (singular covariances, e.g. fewer samples than
    dimensions), ``FID_OFFSET * I`` is added to both covariances and it is
    recomputed.  In exact arithmetic the eigenvalues of a product of PSD
    matrices are real and >= 0, so imaginary parts are round-off and dropped.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # scipy warns on singular input; handled below
        root = linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(root).all():
            offset = np.eye(len(cov_a)) * FID_OFFSET
            root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    return np.real(root)


def fid(emb_a: ArrayLike, emb_b: ArrayLike) -> float:
    """Frechet distance ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^{1/2}) of two (N_i, D) sets.

    Gaussians use unbiased covariances (each set needs N >= 2); see
    ``_sqrtm_product`` for near-singular covariances.  Tiny negative values
    from round-off are clamped to 0.  Units: squared metric-space distance.
    """
    a, b = _embeddings(emb_a, "emb_a"), _embeddings(emb_b, "emb_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"embedding widths differ: {a.shape[1]} vs {b.shape[1]}")
    (mu_a, cov_a), (mu_b, cov_b) = _gaussian(a), _gaussian(b)
    diff = mu_a - mu_b
    value = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(_sqrtm_product(cov_a, cov_b))
    return max(float(value), 0.0)


def real_vs_real_fid(train_emb: ArrayLike, test_emb: ArrayLike) -> float:
    """FID between two *real* sets (e.g. train vs test motions): the floor for generated motions.

    Generated-vs-real FID below this value is within the sampling noise of
    the evaluator; compare with equal sample sizes, as FID is biased by N.
    """
    return fid(train_emb, test_emb)


def diversity(emb: ArrayLike, num_pairs: int = DIVERSITY_PAIRS, seed: int = 0) -> float:
    """Mean distance between ``num_pairs`` random pairs of (N, D) embeddings.

    As Guo et al.: two independent draws of indices without replacement,
    paired position by position (a pair may repeat a sample, adding 0).  With
    N < num_pairs, N pairs are drawn (each draw is then a permutation of all
    samples).  Needs N >= 2.
    """
    x = _embeddings(emb, "emb")
    if len(x) < 2:
        raise ValueError(f"diversity needs at least 2 embeddings, got {len(x)}")
    count = min(num_pairs, len(x))
    rng = np.random.default_rng(seed)
    first, second = rng.choice(len(x), count, replace=False), rng.choice(len(x), count, replace=False)
    return float(np.linalg.norm(x[first] - x[second], axis=1).mean())


def multimodality(emb_per_prompt: ArrayLike, num_pairs: int = MULTIMODALITY_PAIRS, seed: int = 0) -> float:
    """Mean distance of ``num_pairs`` random pairs within each prompt's samples, over prompts.

    emb_per_prompt: (P, S, D), S samples generated for each of P prompts.  As
    Guo et al., one draw of two index lists (without replacement, min(num_pairs,
    S) long) is shared by all prompts.  Needs S >= 2.
    """
    x = np.asarray(emb_per_prompt, dtype=np.float64)
    if x.ndim != 3 or x.shape[1] < 2:
        raise ValueError(f"emb_per_prompt must be (P, S >= 2, D), got shape {x.shape}")
    count = min(num_pairs, x.shape[1])
    rng = np.random.default_rng(seed)
    first, second = rng.choice(x.shape[1], count, replace=False), rng.choice(x.shape[1], count, replace=False)
    return float(np.linalg.norm(x[:, first] - x[:, second], axis=-1).mean())


def mean_ci(values: ArrayLike) -> tuple[float, float]:
    """(mean, 95 % half-width = 1.96 * std(ddof=1) / sqrt(n)) over n repeated evaluations.

    With n = 1 the half-width is 0 (no spread can be estimated).
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("mean_ci needs at least one value")
    half = CI_Z * x.std(ddof=1) / np.sqrt(x.size) if x.size > 1 else 0.0
    return float(x.mean()), float(half)


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (low, high) of a binomial proportion; (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference(a: Sequence[bool], b: Sequence[bool], z: float = Z95) -> tuple[float, float, float]:
    """Difference of pass rates b - a over paired samples (same prompt and seed) with Newcombe's
    (1998, method 10) 95 % interval for paired proportions, built from the two Wilson intervals
    and the correlation phi of the pairs: (difference, low, high), each in [-1, 1].  A positive
    phi gets Newcombe's continuity correction (eh - fg - n/2), which keeps the interval from
    collapsing to zero width when every pair agrees."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    n = len(a)
    if n == 0:
        return 0.0, -1.0, 1.0
    both, only_a, only_b = int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum())
    neither = n - both - only_a - only_b
    p1, p2 = a.mean(), b.mean()
    (l1, u1), (l2, u2) = wilson_interval(int(a.sum()), n, z), wilson_interval(int(b.sum()), n, z)
    denom = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    cross = both * neither - only_a * only_b
    cross = max(cross - n / 2, 0.0) if cross > 0 else cross
    phi = cross / math.sqrt(denom) if denom > 0 else 0.0
    below = math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    above = math.sqrt(max(0.0, (u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2))
    diff = float(p2 - p1)
    return diff, max(-1.0, diff - below), min(1.0, diff + above)
