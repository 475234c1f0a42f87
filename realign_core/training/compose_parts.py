"""Part-composed training clips: a captured arm motion layered onto captured clips of another action.

The CMU set holds no clip that does two things at once (no clip walks and waves), and its few single-hand waves
(3 with the right hand) are outnumbered by traffic directing with both arms; a generator trained on it gets
"walks forward and waves with the right hand" as a walk.  :func:`compose_part_clips` writes new *training* clips
that do both: a base clip (its caption matches ``base_patterns``) with ``part``'s joints replaced by those of a
source clip (its caption matches ``part_patterns``), as offsets from their anchors (the shoulders) in the body's
facing frame -- the same layering the sampler's part layer does (``control.parts.layer_part``) -- and the
caption "<base caption> and <phrase>." (e.g. "a person walks forward and waves with the right hand.").  The
source's offsets are played back and forth (ping-pong, from a random phase) to the base's length, so a short
wave covers a long walk without a jump.  The layered joints go through the dataset's own feature extraction
(``data.build.write_clip``), so rotations, velocities and foot contacts agree with the positions.

Only the train split grows; val and test, and the normalisation (Mean.npy / Std.npy, which the trained VAEs
and denoisers were fitted with), stay as they are.  Composed ids are ``<prefix>_<k>``; running again with the
same prefix replaces them.  Joints (F, 22, 3) metres, Y up, 20 fps; features (F, 263) un-normalised.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realign_core.control.parts import layer_part
from realign_core.data.build import prepare_output_dirs, write_clip
from realign_core.data.caption_search import match_captions, split_captions
from realign_core.data.layout import (FEATURES_DIR, JOINTS_DIR, METADATA_FILE, SPLITS, TEXTS_DIR, Caption,
                                      ClipRecord, read_metadata, read_split, write_split_files)
from realign_core.guidance.control_spec import PartLayer, part_joints
from realign_core.motion.features import features_to_joints
from realign_core.motion.skeleton import FPS

COMPOSED_SOURCE = "composed"     # Caption.source and ClipRecord.dataset of a composed clip


@dataclass(frozen=True)
class CompositionConfig:
    """What to compose: ``part`` of the train clips matching every ``part_patterns`` regex onto train clips
    matching every ``base_patterns`` regex, captioned "<base caption> and <phrase>.", ``count`` clips."""

    part: str
    part_patterns: tuple[str, ...]
    base_patterns: tuple[str, ...]
    phrase: str
    count: int = 200
    seed: int = 0
    prefix: str = "comp"

    def __post_init__(self) -> None:
        part_joints(self.part)                      # an unknown part names the known ones
        if not self.part_patterns or not self.base_patterns:
            raise ValueError("give at least one part pattern and one base pattern")
        if not self.phrase.strip().strip("."):
            raise ValueError(f"phrase {self.phrase!r} is empty")
        if self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", self.prefix):
            raise ValueError(f"prefix {self.prefix!r}: letters and digits only, starting with a letter")


def ping_pong(frames: int, length: int, start: int) -> np.ndarray:
    """Indices into a sequence of ``length`` frames that play it forward and back from ``start``: (frames,) int."""
    if length < 2:
        return np.zeros(frames, dtype=int)
    period = 2 * length - 2
    phase = (start + np.arange(frames)) % period
    return np.where(phase < length, phase, period - phase)


def compose_features(base: np.ndarray, source: np.ndarray, part: str, start: int) -> np.ndarray:
    """(F, 263) base and (S, 263) source features -> (F, 22, 3) joints: the base with ``part`` at the source's
    offsets from its anchors, played back and forth from source frame ``start``."""
    return _compose_offsets(base, PartLayer.from_features(part, source).offsets, part, start)


def _compose_offsets(base: np.ndarray, offsets: np.ndarray, part: str, start: int) -> np.ndarray:
    """:func:`compose_features` with the source already read as ``part``'s offsets (S, J, 3)."""
    layer = PartLayer.make(part, offsets[ping_pong(len(base), len(offsets), start)])
    return features_to_joints(layer_part(base, layer))


def composed_caption(base_caption: str, phrase: str) -> str:
    """"a person walks forward." + "waves with the right hand" -> "a person walks forward and waves with the right
    hand."."""
    return f"{base_caption.strip().rstrip('.').rstrip()} and {phrase.strip().rstrip('.')}."


def _pick(captions: dict[str, list[str]], patterns: tuple[str, ...], what: str, data_dir: Path) -> list[str]:
    clips = sorted(match_captions(captions, list(patterns), "train").matching_clips)
    if not clips:
        raise ValueError(f"{data_dir}: no train clip has a caption matching all {what} patterns {list(patterns)}")
    return clips


def compose_part_clips(data_dir: str | Path, cfg: CompositionConfig) -> dict:
    """Write ``cfg.count`` composed clips into the train split of the dataset at ``data_dir`` (earlier clips of
    the same prefix are replaced) -> a summary {"written", "sources", "bases", "examples"}."""
    data_dir = Path(data_dir)
    ours = f"{cfg.prefix}_"
    captions = {c: t for c, t in split_captions(data_dir, "train").items() if not c.startswith(ours)}
    sources = _pick(captions, cfg.part_patterns, "part", data_dir)
    bases = sorted(set(_pick(captions, cfg.base_patterns, "base", data_dir)) - set(sources))
    if not bases:
        raise ValueError(f"{data_dir}: every base clip is also a part source; make the patterns tell them apart")
    base_regex = [re.compile(p, re.IGNORECASE) for p in cfg.base_patterns]
    rng = np.random.default_rng(cfg.seed)
    prepare_output_dirs(data_dir)
    offsets = {s: PartLayer.from_features(cfg.part, np.load(data_dir / FEATURES_DIR / f"{s}.npy")).offsets
               for s in sources}
    written, examples = [], []
    for k in range(cfg.count):
        base, source = bases[rng.integers(len(bases))], sources[rng.integers(len(sources))]
        base_feats = np.load(data_dir / FEATURES_DIR / f"{base}.npy")
        start = int(rng.integers(len(offsets[source])))
        joints = _compose_offsets(base_feats, offsets[source], cfg.part, start)
        texts = sorted({composed_caption(t, cfg.phrase) for t in captions[base] if all(r.search(t) for r in base_regex)})
        clip_id = f"{cfg.prefix}_{k:04d}"
        caps = [Caption(t, COMPOSED_SOURCE) for t in texts]
        frames = write_clip(data_dir, clip_id, joints, caps)
        written.append(ClipRecord(clip_id, f"{base}+{cfg.part}:{source}", "train", False, 0, frames, float(FPS),
                                  COMPOSED_SOURCE, COMPOSED_SOURCE, caps))
        examples.append(texts[0])
    _write_records(data_dir, written, cfg.prefix)
    return {"written": len(written), "sources": sources, "bases": len(bases), "examples": sorted(set(examples))}


def _write_records(data_dir: Path, written: list[ClipRecord], prefix: str) -> None:
    """Replace the ``prefix`` clips of metadata.jsonl (when the dataset has one) and of the split files by
    ``written`` (all train), and delete files of ``prefix`` clips no longer listed (a rerun with a smaller count)."""
    ours, keep = f"{prefix}_", {r.id for r in written}
    for folder, suffix in ((FEATURES_DIR, ".npy"), (JOINTS_DIR, ".npy"), (TEXTS_DIR, ".txt")):
        for path in (data_dir / folder).glob(f"{ours}*{suffix}"):
            if path.stem not in keep:
                path.unlink()
    records = [r for r in read_metadata(data_dir) if not r.id.startswith(ours)] + written
    tmp = data_dir / f"{METADATA_FILE}.tmp"
    tmp.write_text("".join(r.to_json() + "\n" for r in records), encoding="utf-8")
    tmp.replace(data_dir / METADATA_FILE)
    ids = {s: [i for i in read_split(data_dir, s) if not i.startswith(ours)] for s in SPLITS}
    ids["train"] += sorted(keep)
    write_split_files(data_dir, ids)


__all__ = ["COMPOSED_SOURCE", "CompositionConfig", "compose_features", "compose_part_clips", "composed_caption",
           "ping_pong"]
