"""Independent text-motion evaluator (Guo et al. 2022 style) used only to score motions.

Deliberately unlike the transformer reward model:

* motion side -- a *movement encoder* (two stride-2 ``Conv1d`` + LeakyReLU, so
  the frame rate drops x4) over the normalised 263-d features, then a
  bidirectional GRU over the down-sampled sequence (packed by length); its final
  forward/backward hidden states go through an MLP to a ``embed_dim`` vector;
* text side -- a bidirectional GRU over the frozen MiniLM token states
  ``(B, L, 384)`` (packed by token count), final hidden states -> MLP.

The frozen MiniLM model is *not* a submodule: it is looked up through
``load_text_encoder`` (or an instance passed in, kept out of ``nn.Module``'s
registry), so checkpoints hold only the evaluator's own weights.

Metric space.  ``embed_motions`` / ``embed_texts`` return the embeddings
**L2-normalised and multiplied by ``config.metric_scale`` (10.0 by default)**.
All Guo-style Euclidean metrics (R-precision, MM-Dist, diversity,
multimodality, FID in :mod:`realign_core.evaluation.metrics`) are computed in that space:
distances lie in ``[0, 2 * metric_scale]`` and FID scales with
``metric_scale ** 2``.  Numbers are therefore comparable between runs of *this*
evaluator, not with the values published for Guo's evaluator (which uses raw,
un-normalised embeddings).

Padding invariance: padded frames are zeroed before each convolution and the
GRU is packed, so frames past ``mask``'s length never change an embedding.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from realign_core.text.encoder import DEFAULT_MAX_TOKENS, EMBEDDING_DIM, load_text_encoder

if TYPE_CHECKING:
    from realign_core.text.encoder import TextEncoder

TASK_NAME = "evaluator"
DOWNSAMPLE = 4          # two stride-2 convolutions
_CONV_KERNEL, _CONV_STRIDE, _CONV_PADDING = 4, 2, 1


@dataclass(frozen=True)
class EvaluatorConfig:
    """Evaluator hyper-parameters: the ``[evaluator.model]`` TOML table.

    Architecture fields rebuild the network; the last four only steer training
    and validation (see :class:`realign_core.training.tasks.evaluator.EvaluatorTask`).
    """

    feature_dim: int = 263          # motion feature width
    conv_dim: int = 512             # movement-encoder conv channels
    movement_dim: int = 512         # movement-encoder output width (motion GRU input)
    motion_hidden: int = 512        # motion GRU width per direction
    text_hidden: int = 512          # text GRU width per direction
    embed_dim: int = 512            # shared embedding width D
    dropout: float = 0.2            # after each conv and inside the MLP heads
    leaky_slope: float = 0.2
    max_tokens: int = DEFAULT_MAX_TOKENS   # MiniLM truncation ([CLS]/[SEP] included)
    metric_scale: float = 10.0      # embeddings for metrics = unit vector * metric_scale
    # training / validation only
    temperature: float = 0.07       # InfoNCE temperature on cosine similarity
    duplicate_threshold: float = 0.8  # sentence cosine above which an off-diagonal pair is not a negative
    val_group_size: int = 32        # R-precision group size (clipped to the val set size)
    val_repeats: int = 3            # R-precision reshuffles averaged in validation

    def __post_init__(self) -> None:
        for name in ("feature_dim", "conv_dim", "movement_dim", "motion_hidden", "text_hidden",
                     "embed_dim", "val_group_size", "val_repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.temperature <= 0 or self.metric_scale <= 0:
            raise ValueError("temperature and metric_scale must be > 0")
        if self.max_tokens < 2:
            raise ValueError(f"max_tokens must be >= 2, got {self.max_tokens}")


def frame_mask(lengths: Tensor, frames: int) -> Tensor:
    """(B,) lengths -> (B, frames) bool, True on the first ``lengths[b]`` frames."""
    return torch.arange(frames, device=lengths.device) < lengths[:, None]


def mlp_head(in_dim: int, hidden: int, out_dim: int, dropout: float, leaky_slope: float = 0.2) -> nn.Sequential:
    """Linear -> LayerNorm -> LeakyReLU -> Dropout -> Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.LeakyReLU(leaky_slope),
                         nn.Dropout(dropout), nn.Linear(hidden, out_dim))


def final_hidden(gru: nn.GRU, x: Tensor, lengths: Tensor) -> Tensor:
    """Packed bidirectional GRU: x (B, T, C), lengths (B,) >= 1 -> (B, 2H) [forward; backward]."""
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    _, h_n = gru(packed)                      # (2, B, H), in the input order
    return torch.cat([h_n[0], h_n[1]], dim=-1)


class MovementEncoder(nn.Module):
    """Two masked stride-2 convolutions: (B, T, F) -> (B, ceil(T/4), movement_dim), lengths // 4."""

    def __init__(self, cfg: EvaluatorConfig) -> None:
        super().__init__()
        self.convs = nn.ModuleList([
            nn.Conv1d(cfg.feature_dim, cfg.conv_dim, _CONV_KERNEL, _CONV_STRIDE, _CONV_PADDING),
            nn.Conv1d(cfg.conv_dim, cfg.conv_dim, _CONV_KERNEL, _CONV_STRIDE, _CONV_PADDING)])
        self.act = nn.LeakyReLU(cfg.leaky_slope)
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.conv_dim, cfg.movement_dim)

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """features (B, T, F), lengths (B,) -> (codes (B, T', C), lengths (B,) in [1, T'])."""
        frames = features.shape[1]
        pad = (-frames) % DOWNSAMPLE if frames >= DOWNSAMPLE else DOWNSAMPLE - frames
        x = F.pad(features, (0, 0, 0, pad)).transpose(1, 2)       # (B, F, T) with T % 4 == 0
        for conv in self.convs:
            x = x * frame_mask(lengths, x.shape[-1])[:, None].to(x.dtype)   # padded frames = conv's zero pad
            x = self.drop(self.act(conv(x)))
            lengths = (lengths // _CONV_STRIDE).clamp(min=1)
        return self.out(x.transpose(1, 2)), lengths


class MotionEncoder(nn.Module):
    """Movement encoder -> packed bi-GRU -> MLP: (B, T, 263) + mask -> (B, D) raw embedding."""

    def __init__(self, cfg: EvaluatorConfig) -> None:
        super().__init__()
        self.movement = MovementEncoder(cfg)
        self.gru = nn.GRU(cfg.movement_dim, cfg.motion_hidden, batch_first=True, bidirectional=True)
        self.head = mlp_head(2 * cfg.motion_hidden, cfg.motion_hidden, cfg.embed_dim, cfg.dropout, cfg.leaky_slope)

    def forward(self, features: Tensor, mask: Tensor) -> Tensor:
        """features (B, T, F) normalised, mask (B, T) True on real frames -> (B, D)."""
        lengths = mask.sum(dim=1).clamp(min=1)
        codes, lengths = self.movement(features, lengths)
        return self.head(final_hidden(self.gru, codes, lengths))


class TextGRUEncoder(nn.Module):
    """Frozen token states -> Linear -> packed bi-GRU -> MLP: (B, L, 384) + mask -> (B, D)."""

    def __init__(self, cfg: EvaluatorConfig, token_dim: int = EMBEDDING_DIM) -> None:
        super().__init__()
        self.proj = nn.Linear(token_dim, cfg.text_hidden)
        self.gru = nn.GRU(cfg.text_hidden, cfg.text_hidden, batch_first=True, bidirectional=True)
        self.head = mlp_head(2 * cfg.text_hidden, cfg.text_hidden, cfg.embed_dim, cfg.dropout, cfg.leaky_slope)

    def forward(self, states: Tensor, token_mask: Tensor) -> Tensor:
        """states (B, L, 384), token_mask (B, L) True on real tokens -> (B, D)."""
        lengths = token_mask.sum(dim=1).clamp(min=1)
        return self.head(final_hidden(self.gru, self.proj(states), lengths))


class MetricSpaceScorer(nn.Module):
    """What every evaluator shares: metric-space embeddings from its own ``token_states``,
    ``encode_text`` and ``encode_motion`` (and ``config.metric_scale``).

    ``encode_*`` give raw embeddings (with gradients, for training); ``embed_*`` give metric-space
    embeddings (unit norm * ``metric_scale``) under ``torch.no_grad()`` -- call ``.eval()`` first.
    """

    config: Any

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def token_states(self, captions: list[str]) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def encode_motion(self, features: Tensor, mask: Tensor) -> Tensor:
        raise NotImplementedError

    def encode_text(self, tokens: Tensor, token_mask: Tensor) -> Tensor:
        raise NotImplementedError

    def to_metric_space(self, raw: Tensor) -> Tensor:
        """(B, D) raw -> (B, D) L2-normalised * metric_scale (the space all metrics use)."""
        return F.normalize(raw, dim=-1) * self.config.metric_scale

    @torch.no_grad()
    def embed_motions(self, features: Tensor, mask: Tensor) -> Tensor:
        """(B, T, 263) normalised features, (B, T) mask -> (B, D) metric-space embeddings."""
        return self.to_metric_space(self.encode_motion(features.to(self.device), mask.to(self.device)))

    @torch.no_grad()
    def embed_texts(self, captions: list[str]) -> Tensor:
        """B captions -> (B, D) metric-space embeddings."""
        return self.to_metric_space(self.encode_text(*self.token_states(captions)))


class Evaluator(MetricSpaceScorer):
    """Text (GRU over frozen MiniLM token states) and motion (conv + GRU) encoders into one
    ``embed_dim`` space; ``load_evaluator`` returns it in eval mode."""

    def __init__(self, config: EvaluatorConfig, text_model: "TextEncoder | None" = None) -> None:
        super().__init__()
        self.config = config
        self.motion_encoder = MotionEncoder(config)
        self.text_encoder = TextGRUEncoder(config)
        object.__setattr__(self, "_text_model", text_model)   # not registered: stays out of state_dict

    def text_model(self) -> "TextEncoder":
        """The frozen MiniLM encoder (the given one, else the process-wide one on this device)."""
        return self._text_model if self._text_model is not None else load_text_encoder(self.device)

    def token_states(self, captions: list[str]) -> tuple[Tensor, Tensor]:
        """B captions -> (states (B, L, 384), mask (B, L)) on this model's device."""
        states, mask = self.text_model().encode_tokens(captions, self.config.max_tokens)
        return states.to(self.device), mask.to(self.device)

    def encode_motion(self, features: Tensor, mask: Tensor) -> Tensor:
        """(B, T, 263) normalised features, (B, T) mask -> (B, D) raw embedding."""
        return self.motion_encoder(features, mask)

    def encode_text(self, states: Tensor, token_mask: Tensor) -> Tensor:
        """(B, L, 384) token states, (B, L) mask -> (B, D) raw embedding."""
        return self.text_encoder(states, token_mask)


def build_evaluator(config: EvaluatorConfig | dict[str, Any]) -> Evaluator:
    """A fresh evaluator from a config or its dict (a TOML table)."""
    return Evaluator(config if isinstance(config, EvaluatorConfig) else EvaluatorConfig(**config))


def evaluator_checkpoint(model: Evaluator) -> dict[str, Any]:
    """The minimal checkpoint dict ``load_evaluator`` reads."""
    return {"task": TASK_NAME, "config": asdict(model.config), "model": model.state_dict()}


def load_evaluator(checkpoint_path: str | Path, device: str | torch.device = "cpu") -> Evaluator:
    """Rebuild an evaluator from ``{"task": "evaluator", "config", "model"}`` in eval mode.

    The file is unpickled with ``weights_only=False`` (trainer checkpoints hold
    numpy arrays): load only checkpoints you made.
    """
    path = Path(checkpoint_path)
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("task") != TASK_NAME:
        found = state.get("task") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path}: not an evaluator checkpoint (task={found!r})")
    model = build_evaluator(state["config"])
    model.load_state_dict(state["model"])
    return model.to(device).eval()
