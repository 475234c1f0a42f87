"""Add one's own BVH mocap folder, with a captions CSV, to a HumanML3D-layout dataset.

Captions CSV (UTF-8, header row): ``file,caption[,start,end][,split]``; one
row per caption, several rows per file allowed; ``file`` is relative to the
BVH folder; start/end in seconds of the file (empty = whole file); split one
of train/val/test (empty = the command's default).  Every file gets the same
clip cutting, kinematic captions and mirrored copy as the CMU build.
"""
from __future__ import annotations

import csv
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from realign_core.data.build import (
    BuildConfig,
    finalize_dataset,
    plan_clips,
    prepare_output_dirs,
    span_captions_for_clip,
    write_clip_and_mirror,
)
from realign_core.data.bvh.convert import bvh_to_smpl22
from realign_core.data.bvh.parse import BvhError
from realign_core.data.captions import kinematic_captions
from realign_core.data.layout import SPLITS, Caption, ClipRecord
from realign_core.motion.features import process_motion
from realign_core.motion.skeleton import FPS

USER_SOURCE = "user_csv"


@dataclass
class BvhEntry:
    captions: list[tuple[str, float, float]] = field(default_factory=list)  # text, start s, end s (0,0 = whole)
    split: str | None = None


def read_captions_csv(path: Path, default_split: str) -> dict[str, BvhEntry]:
    """Parse the captions CSV; errors name the file, line and field."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: captions CSV not found")
    entries: dict[str, BvhEntry] = defaultdict(BvhEntry)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"file", "caption"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}; header must start with file,caption")
        for line_no, row in enumerate(reader, start=2):
            name, text = (row.get("file") or "").strip(), (row.get("caption") or "").strip()
            if not name or not text:
                raise ValueError(f"{path}:{line_no}: empty 'file' or 'caption'")
            try:
                start = float(row.get("start") or 0.0)
                end = float(row.get("end") or 0.0)
            except ValueError as exc:
                raise ValueError(f"{path}:{line_no}: 'start'/'end' must be seconds ({exc})") from exc
            if end and end <= start:
                raise ValueError(f"{path}:{line_no}: end ({end}) must be after start ({start})")
            split = (row.get("split") or "").strip() or default_split
            if split not in SPLITS:
                raise ValueError(f"{path}:{line_no}: split '{split}' is not one of {SPLITS}")
            entry = entries[name]
            if entry.split not in (None, split):
                raise ValueError(f"{path}:{line_no}: '{name}' is given two splits ({entry.split}, {split})")
            entry.split = split
            entry.captions.append((text, start, end))
    return dict(entries)


def add_bvh_folder(bvh_dir: Path, captions_csv: Path, out: Path, split: str = "train", rig: str | None = None,
                   name: str = "bvh", cfg: BuildConfig = BuildConfig()) -> dict:
    """Import every captioned BVH file of ``bvh_dir`` into the dataset at ``out``; returns the report."""
    t0 = time.time()
    if not bvh_dir.is_dir():
        raise FileNotFoundError(f"{bvh_dir}: BVH folder not found")
    entries = read_captions_csv(captions_csv, split)
    prepare_output_dirs(out)
    records, skipped = [], []
    for path in sorted(bvh_dir.rglob("*.bvh")):
        rel = path.relative_to(bvh_dir).as_posix()
        if rel not in entries:
            skipped.append({"item": str(path), "reason": f"no caption for '{rel}' in {captions_csv}"})
    for rel, entry in sorted(entries.items()):
        try:
            records += _import_file(bvh_dir / rel, entry, out, name, rig, cfg)
        except (BvhError, ValueError, FileNotFoundError) as exc:
            skipped.append({"item": str(bvh_dir / rel), "reason": str(exc)})
    return finalize_dataset(out, records, skipped, extra={"added": f"{len(records)} clips from {bvh_dir}"},
                            seconds=time.time() - t0, append=True)


def _import_file(path: Path, entry: BvhEntry, out: Path, name: str, rig: str | None,
                 cfg: BuildConfig) -> list[tuple[ClipRecord, int]]:
    """One BVH file -> written clips (and mirrors) with their records."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: listed in the captions CSV but not found")
    motion = bvh_to_smpl22(path, target_fps=FPS, rig=rig)
    positions = motion.positions
    windows = plan_clips(len(positions), [], cfg)
    if not windows:
        raise ValueError(f"{path}: shorter than {cfg.min_clip_s} s ({len(positions)} frames at 20 fps)")
    stem = "".join(ch if ch.isalnum() else "_" for ch in path.with_suffix("").name)
    spans = [(t, s, e if e else len(positions) / FPS) for t, s, e in entry.captions]
    records = []
    for k, (start, end) in enumerate(windows):
        clip = positions[start:end]
        caps = span_captions_for_clip(spans, start / FPS, end / FPS, cfg.min_kit_overlap, USER_SOURCE)
        if not caps:
            continue  # this piece of the file is not what its captions describe
        ground = process_motion(clip).ground_positions
        caps += [Caption(t, "kinematic") for t in kinematic_captions(ground, fps=FPS)]
        clip_id = f"{name}_{stem}_{k:02d}"
        record = ClipRecord(clip_id, path.stem, entry.split, False, start, end, motion.source_fps,
                            "bvh_header", name, caps)
        records += write_clip_and_mirror(out, record, clip, cfg.mirror)
    return records
