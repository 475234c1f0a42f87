"""Kinematic prompts drawn from a data split's own human captions (a model-free guard for tuning).

The fixed prompts of :data:`~realign_core.evaluation.kinematic.checks.PROMPTS` are
a *report*: choosing settings on them would tune to the report.  Tuning uses
these instead: every caption of a clip in the split (e.g. ``val``) that a
:class:`~realign_core.evaluation.kinematic.labels.CaptionLabel` marks as a
positive ("a person is slowly walking backwards.", "a human performs a
jump.") becomes a prompt whose check is that label's (the OR of its checks).
Labels without positives in the split contribute nothing.  A dataset without
``metadata.jsonl`` (e.g. one written by ``realign data add-bvh`` or a test's
synthetic set) reads the captions of ``texts/ID.txt``, each clip its own trial.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from realign_core.data.captions.lines import parse_caption_line
from realign_core.evaluation.kinematic.checks import KinematicPrompt, all_checks
from realign_core.evaluation.kinematic.labels import LABELS, CaptionLabel, ClipRecord, label_clip, load_clip_records


def _any_of(names: tuple[str, ...]):
    checks = all_checks()
    chosen = [checks[n] for n in names]
    return lambda motion: any(check(motion) for check in chosen)


def split_clips(data_dir: Path, ids: set[str]) -> list[ClipRecord]:
    """The clips ``ids`` with their human captions (metadata.jsonl, else texts/ID.txt)."""
    if (data_dir / "metadata.jsonl").is_file():
        return [c for c in load_clip_records(data_dir) if c.id in ids]
    clips = []
    for clip_id in sorted(ids):
        text = data_dir / "texts" / f"{clip_id}.txt"
        if text.is_file():
            captions = [parse_caption_line(line).caption.lower() for line in text.read_text().splitlines() if line]
            clips.append(ClipRecord(clip_id, captions, single_clip_trial=True, mirror=False))
    return clips


def split_prompts(data_dir: str | Path, split: str = "val", labels: Sequence[CaptionLabel] = LABELS,
                  max_per_label: int = 8) -> list[KinematicPrompt]:
    """One prompt per distinct positive caption of each label in ``split`` (at most ``max_per_label``
    per label, in sorted caption order, so the set is deterministic).  Names are ``LABEL/i``."""
    data_dir = Path(data_dir)
    split_file = data_dir / f"{split}.txt"
    if not split_file.is_file():
        raise FileNotFoundError(f"{split_file}: no such split file (build the dataset first)")
    ids = set(split_file.read_text().split())
    clips = split_clips(data_dir, ids)
    prompts: list[KinematicPrompt] = []
    for label in labels:
        captions = sorted({text for clip in clips if label_clip(label, clip) is True
                           for text in clip.captions if re.search(label.positive, text)})
        check = _any_of(label.checks)
        prompts += [KinematicPrompt(f"{label.name}/{i}", text, check)
                    for i, text in enumerate(captions[:max_per_label])]
    return prompts
