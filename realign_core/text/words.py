"""Word-level text input without a pretrained encoder: a tokenizer, a vocabulary and id batches.

Used by the second evaluator (:mod:`realign_core.models.word_evaluator`), whose text side learns its
word embeddings from scratch on our captions so that it shares nothing with MiniLM.

Tokens are lower-case runs of letters (``"T-pose"`` -> ``["t", "pose"]``); digits and punctuation are
dropped.  Ids: 0 = padding, 1 = unknown word, 2.. = the vocabulary in order.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

import torch
from torch import Tensor

PAD_ID, UNK_ID = 0, 1
FIRST_WORD_ID = 2
_WORD = re.compile(r"[a-z]+")


def tokenize_words(caption: str) -> list[str]:
    """'A person walks, then turns left.' -> ['a', 'person', 'walks', 'then', 'turns', 'left']."""
    return _WORD.findall(caption.lower())


def build_vocabulary(captions: Iterable[str], min_count: int = 2) -> tuple[str, ...]:
    """Words seen at least ``min_count`` times, most frequent first (ties alphabetical)."""
    counts = Counter(word for caption in captions for word in tokenize_words(caption))
    kept = [w for w, n in counts.items() if n >= min_count]
    return tuple(sorted(kept, key=lambda w: (-counts[w], w)))


def encode_words(captions: list[str], vocabulary: tuple[str, ...], max_words: int) -> tuple[Tensor, Tensor]:
    """B captions -> (ids (B, L) int64, mask (B, L) bool), L = longest caption (<= max_words, >= 1).

    A caption without any word becomes one unknown token, so every row has at least one real token.
    """
    index = {word: FIRST_WORD_ID + i for i, word in enumerate(vocabulary)}
    rows = [[index.get(w, UNK_ID) for w in tokenize_words(c)][:max_words] or [UNK_ID] for c in captions]
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), PAD_ID, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
    return ids, ids != PAD_ID


def word_overlap_mask(ids: Tensor, threshold: float) -> Tensor:
    """(B, L) word ids -> (B, B) bool, True = off-diagonal pair whose word sets have Jaccard > threshold.

    The MiniLM-free counterpart of :func:`realign_core.training.losses.near_duplicate_mask`: captions
    that use (almost) the same words are not negatives of each other.
    """
    sets = [set(row[row != PAD_ID].tolist()) for row in ids]
    size = len(sets)
    mask = torch.zeros(size, size, dtype=torch.bool)
    for i in range(size):
        for j in range(i + 1, size):
            union = len(sets[i] | sets[j])
            if union and len(sets[i] & sets[j]) / union > threshold:
                mask[i, j] = mask[j, i] = True
    return mask.to(ids.device)
