"""A second, more independent text-motion evaluator: no MiniLM, a different motion network.

The first evaluator (:mod:`realign_core.models.evaluator`) and the reward model both read MiniLM token
states and train on the same captions, so a gain that only they see may be what they share.  This one
shares neither side:

* text side -- word embeddings learned from scratch on the training captions (a vocabulary built from
  the train split, stored in the config; :mod:`realign_core.text.words`) -> packed bi-GRU -> MLP;
* motion side -- a temporal convolution network: a strided ``Conv1d`` (263 -> C, stride
  ``downsample``), residual blocks of masked dilated ``Conv1d`` (kernel 3, dilations 1, 2, 4, ...) with
  GELU, then masked mean and max pooling over time -> MLP.  No recurrence, no attention (the reward
  model is a transformer, the first evaluator a conv + GRU).

Its negatives during training are masked by word overlap (Jaccard of word sets), not by MiniLM sentence
similarity.  Public interface as :class:`~realign_core.models.evaluator.Evaluator` (``embed_texts``,
``embed_motions``, metric space = unit vector * ``metric_scale``), so every scoring function takes
either.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from realign_core.models.evaluator import MetricSpaceScorer, final_hidden, frame_mask, mlp_head
from realign_core.text.words import FIRST_WORD_ID, PAD_ID, encode_words

TASK_NAME = "evaluator_words"


@dataclass(frozen=True)
class WordEvaluatorConfig:
    """Hyper-parameters (the ``[evaluator_words.model]`` TOML table) plus the learned vocabulary."""

    vocabulary: tuple[str, ...] = ()  # filled from the train split's captions when training starts
    min_word_count: int = 2         # words rarer than this in the train captions become "unknown"
    max_words: int = 40
    feature_dim: int = 263
    word_dim: int = 192             # learned word-embedding width
    text_hidden: int = 256          # text GRU width per direction
    channels: int = 256             # motion TCN width
    downsample: int = 2             # stride of the input convolution (frames per TCN step)
    dilations: tuple[int, ...] = (1, 2, 4, 1, 2, 4)
    embed_dim: int = 256
    dropout: float = 0.2
    metric_scale: float = 10.0      # embeddings for metrics = unit vector * metric_scale
    # training / validation only
    temperature: float = 0.07
    duplicate_threshold: float = 0.8  # word-set Jaccard above which an off-diagonal pair is not a negative
    val_group_size: int = 32
    val_repeats: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "vocabulary", tuple(self.vocabulary))
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        for name in ("max_words", "feature_dim", "word_dim", "text_hidden", "channels", "embed_dim",
                     "val_group_size", "val_repeats", "min_word_count", "downsample"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.dilations or min(self.dilations) < 1:
            raise ValueError(f"dilations must be a non-empty list of integers >= 1, got {list(self.dilations)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.temperature <= 0 or self.metric_scale <= 0:
            raise ValueError("temperature and metric_scale must be > 0")


class ConvBlock(nn.Module):
    """Residual masked dilated convolution: (B, C, T) -> (B, C, T); padded frames stay zero."""

    def __init__(self, channels: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, channels)
        self.conv = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        """x (B, C, T), keep (B, 1, T) float 1 on real frames."""
        return (x + self.drop(self.conv(F.gelu(self.norm(x)) * keep))) * keep


class TemporalConvMotionEncoder(nn.Module):
    """(B, T, 263) normalised features + (B, T) mask -> (B, D): dilated TCN, masked mean+max pooling."""

    def __init__(self, cfg: WordEvaluatorConfig) -> None:
        super().__init__()
        self.stride = cfg.downsample
        self.inp = nn.Conv1d(cfg.feature_dim, cfg.channels, 2 * cfg.downsample - 1, cfg.downsample,
                             padding=cfg.downsample - 1)
        self.blocks = nn.ModuleList(ConvBlock(cfg.channels, d, cfg.dropout) for d in cfg.dilations)
        self.head = mlp_head(2 * cfg.channels, cfg.channels, cfg.embed_dim, cfg.dropout)

    def forward(self, features: Tensor, mask: Tensor) -> Tensor:
        lengths = mask.sum(dim=1).clamp(min=1)
        x = features.transpose(1, 2) * frame_mask(lengths, features.shape[1])[:, None].to(features.dtype)
        x = self.inp(x)                                                    # (B, C, ceil(T / stride))
        lengths = ((lengths + self.stride - 1) // self.stride).clamp(max=x.shape[-1])
        keep = frame_mask(lengths, x.shape[-1])[:, None].to(x.dtype)       # (B, 1, T')
        x = x * keep
        for block in self.blocks:
            x = block(x, keep)
        mean = x.sum(dim=-1) / lengths[:, None].to(x.dtype)
        peak = x.masked_fill(keep == 0, float("-inf")).amax(dim=-1)
        return self.head(torch.cat([mean, peak], dim=-1))


class WordTextEncoder(nn.Module):
    """(B, L) word ids + (B, L) mask -> (B, D): learned embeddings -> packed bi-GRU -> MLP."""

    def __init__(self, cfg: WordEvaluatorConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(FIRST_WORD_ID + len(cfg.vocabulary), cfg.word_dim, padding_idx=PAD_ID)
        self.drop = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.word_dim, cfg.text_hidden, batch_first=True, bidirectional=True)
        self.head = mlp_head(2 * cfg.text_hidden, cfg.text_hidden, cfg.embed_dim, cfg.dropout)

    def forward(self, ids: Tensor, token_mask: Tensor) -> Tensor:
        lengths = token_mask.sum(dim=1).clamp(min=1)
        return self.head(final_hidden(self.gru, self.drop(self.embed(ids)), lengths))


class WordEvaluator(MetricSpaceScorer):
    """Text (learned words) and motion (TCN) encoders into one ``embed_dim`` space; same interface as
    :class:`~realign_core.models.evaluator.Evaluator`."""

    def __init__(self, config: WordEvaluatorConfig) -> None:
        super().__init__()
        if not config.vocabulary:
            raise ValueError("WordEvaluatorConfig.vocabulary is empty: build it from the training captions "
                             "(realign_core.text.words.build_vocabulary)")
        self.config = config
        self.motion_encoder = TemporalConvMotionEncoder(config)
        self.text_encoder = WordTextEncoder(config)

    def token_states(self, captions: list[str]) -> tuple[Tensor, Tensor]:
        """B captions -> (word ids (B, L), mask (B, L)) on this model's device."""
        ids, mask = encode_words(captions, self.config.vocabulary, self.config.max_words)
        return ids.to(self.device), mask.to(self.device)

    def encode_motion(self, features: Tensor, mask: Tensor) -> Tensor:
        """(B, T, 263) normalised features, (B, T) mask -> (B, D) raw embedding."""
        return self.motion_encoder(features, mask)

    def encode_text(self, ids: Tensor, token_mask: Tensor) -> Tensor:
        """(B, L) word ids, (B, L) mask -> (B, D) raw embedding."""
        return self.text_encoder(ids, token_mask)


def build_word_evaluator(config: WordEvaluatorConfig | dict[str, Any]) -> WordEvaluator:
    return WordEvaluator(config if isinstance(config, WordEvaluatorConfig) else WordEvaluatorConfig(**config))


def load_word_evaluator(checkpoint_path: str | Path, device: str | torch.device = "cpu") -> WordEvaluator:
    """Rebuild the word evaluator from ``{"task": "evaluator_words", "config", "model"}`` in eval mode
    (``weights_only=False``: load only checkpoints you made)."""
    path = Path(checkpoint_path)
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("task") != TASK_NAME:
        found = state.get("task") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path}: not a word-evaluator checkpoint (task={found!r})")
    model = build_word_evaluator(state["config"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()})
    return model.to(device).eval()


def word_evaluator_checkpoint(model: WordEvaluator) -> dict[str, Any]:
    """The minimal checkpoint dict ``load_word_evaluator`` reads."""
    return {"task": TASK_NAME, "config": asdict(model.config), "model": model.state_dict()}
