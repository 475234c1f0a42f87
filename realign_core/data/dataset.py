"""Reads a dataset in the HumanML3D layout: ours or the official HumanML3D.

Follows the official loader's rules: clips of ``min_frames <= T < max_clip_frames``
(40 and 200) feature rows are used and cropped to ``max_frames`` (196) at random; a caption with a time span (start/end seconds, not
0#0) becomes its own entry cropped to that span.  With our metadata present,
captions can be restricted to some sources (ablations).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from realign_core.data.captions import CaptionRecord, parse_caption_line
from realign_core.data.layout import FEATURES_DIR, TEXTS_DIR, read_metadata, read_split
from realign_core.motion.normalization import Normalizer
from realign_core.motion.skeleton import FPS


@dataclass
class MotionEntry:
    """One trainable (motion, captions) pair."""

    id: str
    features: np.ndarray            # (T, 263) float32, un-normalised
    captions: list[CaptionRecord]


def _crop(features: np.ndarray, caption: CaptionRecord) -> np.ndarray:
    if caption.start == 0.0 and caption.end == 0.0:
        return features
    return features[int(caption.start * FPS):int(caption.end * FPS)]


class MotionTextDataset(Dataset):
    """(normalised features, caption) pairs of one split.

    Items: dict(id, features (T', 263) float32 normalised, length T', start, caption, tokens);
    T' <= max_frames, a random window of longer clips starting at row ``start`` (0 for clips
    that fit); a random caption each time.
    """

    def __init__(self, root: str | Path, split: str, min_frames: int = 40, max_frames: int = 196,
                 max_clip_frames: int = 200, normalizer: Normalizer | None = None, caption_sources: set[str] | None = None,
                 seed: int = 0):
        self.root = Path(root)
        self.max_frames = max_frames
        self.length_range = (min_frames, max_clip_frames)
        self.normalizer = normalizer or Normalizer.load(self.root)
        self.rng = np.random.default_rng(seed)
        sources = self._caption_sources() if caption_sources else {}
        self.entries: list[MotionEntry] = []
        self.skipped: dict[str, str] = {}
        for clip_id in read_split(self.root, split):
            self._add(clip_id, caption_sources, sources.get(clip_id))
        if not self.entries:
            raise ValueError(f"{self.root}: split '{split}' has no usable clips "
                             f"({len(self.skipped)} skipped, e.g. {next(iter(self.skipped.items()), None)})")

    def _caption_sources(self) -> dict[str, list[str]]:
        records = read_metadata(self.root)
        if not records:
            raise ValueError(f"{self.root}: caption_sources needs metadata.jsonl, which this dataset lacks")
        return {r.id: [c.source for c in r.captions] for r in records}

    def _add(self, clip_id: str, keep: set[str] | None, sources: list[str] | None) -> None:
        fpath, tpath = self.root / FEATURES_DIR / f"{clip_id}.npy", self.root / TEXTS_DIR / f"{clip_id}.txt"
        if not fpath.is_file() or not tpath.is_file():
            self.skipped[clip_id] = "missing features or texts file"
            return
        features = np.load(fpath).astype(np.float32)
        lines = [l for l in tpath.read_text(encoding="utf-8").splitlines() if l.strip()]
        captions = [parse_caption_line(l) for l in lines]
        if keep is not None and sources is not None:
            captions = [c for c, s in zip(captions, sources) if s in keep]
        lo, hi = self.length_range
        whole = []
        for cap in captions:
            part = _crop(features, cap)
            if part is features:
                whole.append(cap)
            elif lo <= len(part) < hi:
                self.entries.append(MotionEntry(f"{clip_id}@{cap.start:g}-{cap.end:g}", part, [cap]))
        if not whole:
            self.skipped.setdefault(clip_id, "no whole-clip caption")
        elif not lo <= len(features) < hi:
            self.skipped[clip_id] = f"length {len(features)} outside [{lo}, {hi})"
        else:
            self.entries.append(MotionEntry(clip_id, features, whole))

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict:
        entry = self.entries[i]
        caption = entry.captions[self.rng.integers(len(entry.captions))]
        starts = self.crop_starts(i)
        start = int(self.rng.integers(len(starts))) if len(starts) > 1 else 0
        return {**self.window(i, start), "caption": caption.caption, "tokens": caption.tokens}

    def window(self, i: int, start: int) -> dict:
        """Entry ``i`` cropped to ``max_frames`` rows from ``start``: id, features (T', 263) float32
        normalised, length T', start (no caption)."""
        entry = self.entries[i]
        features = entry.features[start:start + self.max_frames]
        return {"id": entry.id, "features": self.normalizer.normalize(features).astype(np.float32),
                "length": len(features), "start": start}

    def crop_starts(self, i: int) -> range:
        """Every window start ``__getitem__`` can pick for entry ``i``."""
        return range(max(1, len(self.entries[i].features) - self.max_frames + 1))

    def lengths(self) -> np.ndarray:
        """(N,) feature rows each entry yields (after the crop to ``max_frames``)."""
        return np.array([min(len(e.features), self.max_frames) for e in self.entries])


def collate(items: list[dict]) -> dict:
    """Pad a list of items: features (B, T_max, 263), mask (B, T_max) True on valid frames; lengths (B,),
    starts (B,) crop starts, captions and ids as lists."""
    lengths = torch.tensor([it["length"] for it in items])
    t_max = int(lengths.max())
    feats = torch.zeros(len(items), t_max, items[0]["features"].shape[-1])
    for b, it in enumerate(items):
        feats[b, :it["length"]] = torch.from_numpy(it["features"])
    mask = torch.arange(t_max)[None] < lengths[:, None]
    return {"features": feats, "mask": mask, "lengths": lengths,
            "starts": torch.tensor([it.get("start", 0) for it in items]),
            "captions": [it["caption"] for it in items], "ids": [it["id"] for it in items]}
