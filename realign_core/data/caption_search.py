"""What a built dataset's captions say: how many clips of a split have a caption matching given patterns.

``realign data captions DIR --split train --match 'wav(e|es|ing)' --match walk`` counts the split's clips
(mirrored copies included, as training sees them; originals alone beside it) that have one caption matching
*every* pattern (case-insensitive regular expressions), the clips matching each pattern on its own, and lists
the most frequent matching captions.  It answers "did the generator ever see this?" for a prompt it gets wrong.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from realign_core.data.layout import MIRROR_PREFIX, SPLITS, TEXTS_DIR


@dataclass
class CaptionMatches:
    """Counts over one split; ``captions`` counts matching caption lines (each clip's, mirrors included)."""

    split: str
    clips: int
    patterns: list[str]
    per_pattern: dict[str, int]
    matching_clips: list[str]
    captions: Counter = field(default_factory=Counter)

    @property
    def originals(self) -> int:
        """Matching clips that are not mirrored copies."""
        return sum(not c.startswith(MIRROR_PREFIX) for c in self.matching_clips)


def split_captions(data_dir: str | Path, split: str) -> dict[str, list[str]]:
    """{clip id: its caption texts} for a split of a HumanML3D-layout dataset."""
    data_dir = Path(data_dir)
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {SPLITS}")
    ids_file = data_dir / f"{split}.txt"
    if not ids_file.is_file():
        raise FileNotFoundError(f"{ids_file}: no such split file (is {data_dir} a built dataset?)")
    out = {}
    for clip in ids_file.read_text().split():
        text = data_dir / TEXTS_DIR / f"{clip}.txt"
        lines = text.read_text(encoding="utf-8").splitlines() if text.is_file() else []
        out[clip] = [line.split("#", 1)[0].strip() for line in lines if line.strip()]
    return out


def match_captions(captions: dict[str, list[str]], patterns: list[str], split: str = "") -> CaptionMatches:
    """Clips with a caption matching all ``patterns`` (case-insensitive regexes), and per-pattern clip counts."""
    if not patterns:
        raise ValueError("give at least one pattern")
    try:
        compiled = [re.compile(p, re.IGNORECASE) for p in patterns]
    except re.error as err:
        raise ValueError(f"pattern {err.pattern!r}: {err}") from None
    per_pattern = {p: sum(any(c.search(t) for t in texts) for texts in captions.values())
                   for p, c in zip(patterns, compiled)}
    result = CaptionMatches(split, len(captions), list(patterns), per_pattern, [])
    for clip, texts in captions.items():
        hits = [t for t in texts if all(c.search(t) for c in compiled)]
        if hits:
            result.matching_clips.append(clip)
            result.captions.update(hits)
    return result


def format_matches(m: CaptionMatches, show: int = 10) -> str:
    """Human-readable summary of :class:`CaptionMatches`."""
    lines = [f"{m.split}: {len(m.matching_clips)} of {m.clips} clips have a caption matching all of "
             f"{m.patterns} ({m.originals} of them originals, the rest mirrored copies)"]
    lines += [f"  {p!r} alone: {n} clips" for p, n in m.per_pattern.items()]
    lines += [f"  {n:4d}x {text}" for text, n in m.captions.most_common(show)]
    return "\n".join(lines)
