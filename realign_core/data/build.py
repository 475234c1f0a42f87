"""Build a HumanML3D-layout training set from CMU mocap + KIT-ML + HumanML3D's index.

Steps per CMU trial (run in parallel worker processes):

1. read the 20-joint file, map to SMPL-22 (``cmu.to_smpl22``), detect 12/6 fps,
   resample to 20 fps;
2. cut clips: HumanML3D's CMU segment boundaries where the index has them,
   the uncovered rest and un-indexed trials in equal pieces of <= 10 s;
   clips shorter than 2 s are dropped;
3. captions: KIT-ML sentences overlapping the clip, CMU's description as a
   sentence, captions measured from kinematics, CMU's action class only as a
   fall-back; each caption keeps its source in metadata.jsonl;
4. canonicalise and extract features (``motion.process_motion``) for the clip
   and its mirror (mirrored captions), write the files.

Splits are per trial (a clip and its mirror, and all clips of a trial, share
one split): HumanML3D's assignment by majority over the trial's segments,
a stable hash of the trial id otherwise.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from realign_core.data import cmu
from realign_core.data.captions import caption_line, cmu_description_to_sentence, kinematic_captions, mirror_caption
from realign_core.data.layout import (
    FEATURES_DIR,
    JOINTS_DIR,
    METADATA_FILE,
    MIRROR_PREFIX,
    REPORT_FILE,
    SPLITS,
    TEXTS_DIR,
    Caption,
    ClipRecord,
    read_metadata,
    write_split_files,
)
from realign_core.data.report import make_report
from realign_core.motion.features import features_to_joints, mirror_joints, process_motion
from realign_core.motion.normalization import Normalizer, mean_std
from realign_core.motion.resample import resample_positions
from realign_core.motion.skeleton import FPS

CLASS_SENTENCES = {
    "Walk": "a person walks.", "Run": "a person runs.", "Jump": "a person jumps.",
    "Dance": "a person dances.", "Step": "a person steps.", "Climb": "a person climbs.",
    "Wash": "a person washes something.", "Animal Behavior": "a person imitates an animal.",
}


@dataclass(frozen=True)
class BuildConfig:
    """Dataset-building options."""

    max_clip_s: float = 10.0
    min_clip_s: float = 2.0
    mirror: bool = True
    # Split shares for trials HumanML3D does not index (stable hash of the id).
    hash_split_shares: tuple[tuple[str, float], ...] = (("test", 0.15), ("val", 0.05), ("train", 0.80))
    min_kit_overlap: float = 0.5  # fraction of the clip a KIT caption must cover
    workers: int = max(1, min(os.cpu_count() or 1, 8))
    limit_trials: int | None = None  # for quick tests: only the first N trials

    @property
    def max_frames(self) -> int:
        return int(round(self.max_clip_s * FPS))

    @property
    def min_frames(self) -> int:
        return int(round(self.min_clip_s * FPS))


@dataclass
class TrialJob:
    """Everything a worker needs to turn one trial into clips."""

    trial: str
    path: str
    split: str
    fps: float
    fps_source: str
    segments: list[tuple[int, int]] = field(default_factory=list)  # 20-fps frames, end exclusive
    kit: list[tuple[str, float, float]] = field(default_factory=list)  # text, start s, end s
    description: str | None = None
    action_class: str | None = None


# --------------------------------------------------------------------------- #
# Sources
# --------------------------------------------------------------------------- #

def _trial_from_path(path: str) -> str:
    return Path(path).name.replace("_poses.npy", "").replace("_poses", "")


def read_humanml3d_index(index_dir: Path) -> tuple[dict[str, list[tuple[int, int, str]]], dict[str, str]]:
    """CMU rows of index.csv -> ({trial: [(start, end, new_name)]}, {new_name: split})."""
    segments: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    with open(index_dir / "index.csv", encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            source, start, end, new_name = line.strip().split(",")
            if "/CMU/" in source:
                segments[_trial_from_path(source)].append((int(start), int(end), new_name.replace(".npy", "")))
    split_of = {}
    for split in SPLITS:
        for name in (index_dir / f"{split}.txt").read_text().split():
            split_of[name] = split
    return dict(segments), split_of


def read_kitml(kitml_dir: Path) -> tuple[dict[str, list[tuple[str, float, float]]], dict[str, float]]:
    """KIT-ML annotations of CMU trials -> ({trial: [(text, start, end)]}, {trial: duration s})."""
    data = json.loads((kitml_dir / "annotations.json").read_text(encoding="utf-8"))
    captions: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
    durations: dict[str, float] = {}
    for entry in data.values():
        path = entry.get("path", "")
        if not path.startswith("CMU/"):
            continue  # KIT's own motions (we do not have them); mirrored copies are "M..." paths
        trial = _trial_from_path(path)
        durations[trial] = float(entry["duration"])
        for ann in entry.get("annotations", []):
            text = ann.get("text", "").strip()
            if text:
                captions[trial].append((text, float(ann.get("start", 0.0)), float(ann.get("end", 0.0))))
    return dict(captions), durations


def _hash_split(trial: str, shares: tuple[tuple[str, float], ...]) -> str:
    u = int(hashlib.sha1(trial.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    acc = 0.0
    for split, share in shares:
        acc += share
        if u < acc:
            return split
    return shares[-1][0]


def assign_split(trial: str, names: list[str], split_of: dict[str, str], cfg: BuildConfig) -> tuple[str, str]:
    """(split, how) for a trial: HumanML3D's majority over its segments, else a stable hash."""
    votes = Counter(split_of[n] for n in names if n in split_of)
    if votes:
        best = max(votes.values())
        for split in ("test", "val", "train"):  # ties go to the held-out side
            if votes[split] == best:
                return split, "humanml3d" if len(votes) == 1 else "humanml3d_majority"
    return _hash_split(trial, cfg.hash_split_shares), "hash"


# --------------------------------------------------------------------------- #
# Clips and captions
# --------------------------------------------------------------------------- #

def _equal_pieces(start: int, end: int, max_frames: int) -> list[tuple[int, int]]:
    n = max(1, int(np.ceil((end - start) / max_frames)))
    bounds = np.linspace(start, end, n + 1).round().astype(int)
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def _false_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of every maximal run of False in a 1-D boolean mask."""
    edges = np.diff(np.concatenate([[1], mask.astype(np.int8), [1]]))
    return list(zip(np.flatnonzero(edges == -1).tolist(), np.flatnonzero(edges == 1).tolist()))


def plan_clips(num_frames: int, segments: list[tuple[int, int]], cfg: BuildConfig) -> list[tuple[int, int]]:
    """Clip windows (start, end) in 20-fps frames, each min_frames..max_frames long.

    Indexed segments (end -1 = to the end) are kept as they are (split into
    equal pieces if longer than the maximum); the frames no segment covers
    are cut into equal pieces too.
    """
    covered = np.zeros(num_frames, dtype=bool)
    clips: list[tuple[int, int]] = []
    for start, end in segments:
        end = num_frames if end < 0 else min(end, num_frames)
        if end - start <= 0:
            continue
        covered[start:end] = True
        clips.extend(_equal_pieces(start, end, cfg.max_frames))
    for run_start, run_end in _false_runs(covered):
        clips.extend(_equal_pieces(run_start, run_end, cfg.max_frames))
    unique = sorted(set(clips))
    return [(s, e) for s, e in unique if e - s >= cfg.min_frames]


def span_captions_for_clip(spans: list[tuple[str, float, float]], start_s: float, end_s: float,
                           min_overlap: float, source: str) -> list[Caption]:
    """Captions with time spans (text, start s, end s in the trial) covering >= ``min_overlap`` of the clip.

    The caption keeps its span relative to the clip, or 0#0 when it covers all of it.
    """
    out = []
    clip_len = end_s - start_s
    for text, a, b in spans:
        overlap = min(b, end_s) - max(a, start_s)
        if overlap < min_overlap * clip_len:
            continue
        whole = a <= start_s + 1e-3 and b >= end_s - 1e-3
        rel = (0.0, 0.0) if whole else (round(max(a, start_s) - start_s, 3), round(min(b, end_s) - start_s, 3))
        out.append(Caption(text, source, *rel))
    return out


def _dedupe(captions: list[Caption]) -> list[Caption]:
    seen, out = set(), []
    for c in captions:
        key = (c.text.lower().strip(" ."), c.start, c.end)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def clip_captions(job: TrialJob, start: int, end: int, ground_positions: np.ndarray, cfg: BuildConfig) -> list[Caption]:
    """All captions of one clip (un-mirrored), sources recorded."""
    caps = span_captions_for_clip(job.kit, start / FPS, end / FPS, cfg.min_kit_overlap, "kitml")
    sentence = cmu_description_to_sentence(job.description) if job.description else None
    if sentence:
        caps.append(Caption(sentence, "cmu_description"))
    caps += [Caption(t, "kinematic") for t in kinematic_captions(ground_positions, fps=FPS)]
    if not caps and job.action_class in CLASS_SENTENCES:
        caps.append(Caption(CLASS_SENTENCES[job.action_class], "cmu_class"))
    return _dedupe(caps)


# --------------------------------------------------------------------------- #
# Writing
# --------------------------------------------------------------------------- #

def write_clip(out: Path, clip_id: str, positions: np.ndarray, captions: list[Caption]) -> int:
    """Extract features and write the three per-clip files. Returns feature rows."""
    processed = process_motion(positions)
    np.save(out / FEATURES_DIR / f"{clip_id}.npy", processed.features)
    np.save(out / JOINTS_DIR / f"{clip_id}.npy", features_to_joints(processed.features))
    lines = [caption_line(c.text, c.start, c.end) for c in captions]
    (out / TEXTS_DIR / f"{clip_id}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(processed.features)


def write_clip_and_mirror(out: Path, record: ClipRecord, positions: np.ndarray,
                          mirror: bool) -> list[tuple[ClipRecord, int]]:
    """Write a clip and, if asked, its mirrored copy (``M`` id, mirrored joints and captions).

    positions: (T, 22, 3) m at 20 fps. Returns [(record, feature rows)] for what was written.
    """
    written = [(record, write_clip(out, record.id, positions, record.captions))]
    if mirror:
        captions = [replace(c, text=mirror_caption(c.text)) for c in record.captions]
        twin = replace(record, id=MIRROR_PREFIX + record.id, mirror=True, captions=captions)
        written.append((twin, write_clip(out, twin.id, mirror_joints(positions), captions)))
    return written


def process_trial(job: TrialJob, out: Path, cfg: BuildConfig) -> dict:
    """Worker: one trial -> written clips. Returns {'records': [...], 'skipped': [...]}."""
    result: dict = {"records": [], "skipped": []}
    try:
        positions = resample_positions(cmu.load_trial(Path(job.path)), job.fps, FPS)
    except ValueError as exc:
        result["skipped"].append({"item": job.trial, "reason": str(exc)})
        return result
    windows = plan_clips(len(positions), job.segments, cfg)
    if not windows:
        result["skipped"].append({"item": job.trial, "reason": f"shorter than {cfg.min_clip_s} s "
                                  f"({len(positions)} frames at 20 fps)"})
    for k, (start, end) in enumerate(windows):
        clip_id = f"cmu_{job.trial}_{k:02d}"
        clip = positions[start:end]
        try:
            ground = process_motion(clip).ground_positions
            captions = clip_captions(job, start, end, ground, cfg)
            if not captions:
                result["skipped"].append({"item": clip_id, "reason": "no caption from any source"})
                continue
            record = ClipRecord(clip_id, job.trial, job.split, False, start, end, job.fps, job.fps_source,
                                "cmu", captions)
            result["records"] += write_clip_and_mirror(out, record, clip, cfg.mirror)
        except ValueError as exc:
            result["skipped"].append({"item": clip_id, "reason": str(exc)})
    return result


def _run_worker(args: tuple[TrialJob, Path, BuildConfig]) -> dict:
    return process_trial(*args)


# --------------------------------------------------------------------------- #
# Orchestration
# --------------------------------------------------------------------------- #

def plan_trials(cmu_dir: Path, kitml_dir: Path, index_dir: Path, cfg: BuildConfig) -> tuple[list[TrialJob], dict]:
    """Read all sources and decide fps, split and segments of every trial."""
    files = sorted((cmu_dir / "joints").glob("*.npy"))
    if not files:
        raise FileNotFoundError(f"{cmu_dir / 'joints'}: no .npy trial files found")
    if cfg.limit_trials:
        files = files[:cfg.limit_trials]
    index_segments, split_of = read_humanml3d_index(index_dir)
    kit, kit_durations = read_kitml(kitml_dir)
    descriptions = cmu.read_descriptions(cmu_dir / "descriptions.csv")
    classes = cmu.read_action_classes(cmu_dir / "action_classes.csv")

    frames, evidence = {}, {}
    for f in files:
        trial = f.stem
        try:
            frames[trial] = np.load(f, mmap_mode="r").shape[0]
        except Exception:  # unreadable: the worker reports it with the reason
            frames[trial] = 0
        ends = [e for _, e, _ in index_segments.get(trial, []) if e > 0]
        evidence[trial] = cmu.FrameRateEvidence(kit_durations.get(trial), max(ends) / FPS if ends else None)
    votes: dict[str, Counter] = defaultdict(Counter)
    for trial, ev in evidence.items():
        fps, how = cmu.detect_fps(frames[trial], ev)
        if how != "assumed":
            votes[trial.split("_")[0]][fps] += 1

    jobs, split_how = [], Counter()
    for f in files:
        trial = f.stem
        fps, fps_source = cmu.detect_fps(frames[trial], evidence[trial], votes.get(trial.split("_")[0]))
        segs = index_segments.get(trial, [])
        split, how = assign_split(trial, [n for _, _, n in segs], split_of, cfg)
        split_how[how] += 1
        desc = descriptions.get(trial)
        jobs.append(TrialJob(trial, str(f), split, fps, fps_source, [(s, e) for s, e, _ in segs],
                             kit.get(trial, []), None if not desc or desc.lower() == "unknown" else desc,
                             classes.get(trial)))
    info = {"split_decided_by": dict(split_how),
            "fps": dict(Counter(f"{j.fps:g} fps ({j.fps_source})" for j in jobs))}
    return jobs, info


def prepare_output_dirs(out: Path) -> None:
    for sub in (FEATURES_DIR, JOINTS_DIR, TEXTS_DIR):
        (out / sub).mkdir(parents=True, exist_ok=True)


def build_dataset(cmu_dir: Path, kitml_dir: Path, index_dir: Path, out: Path,
                  cfg: BuildConfig = BuildConfig(), progress: bool = True) -> dict:
    """Build the whole dataset into ``out`` and return the report (also written as JSON)."""
    t0 = time.time()
    out = Path(out)
    prepare_output_dirs(out)
    jobs, info = plan_trials(Path(cmu_dir), Path(kitml_dir), Path(index_dir), cfg)
    records: list[tuple[ClipRecord, int]] = []
    skipped: list[dict] = []
    args = [(job, out, cfg) for job in jobs]
    bar = tqdm(total=len(jobs), desc="building clips", unit="trial", disable=not progress)
    if cfg.workers > 1:
        # spawn, not fork: a forked child of a process whose torch thread pool is running deadlocks
        with ProcessPoolExecutor(cfg.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for res in pool.map(_run_worker, args, chunksize=8):
                records += res["records"]
                skipped += res["skipped"]
                bar.update()
    else:
        for a in args:
            res = _run_worker(a)
            records += res["records"]
            skipped += res["skipped"]
            bar.update()
    bar.close()
    return finalize_dataset(out, records, skipped, extra={"sources": info}, seconds=time.time() - t0)


def finalize_dataset(out: Path, records: list[tuple[ClipRecord, int]], skipped: list[dict],
                     extra: dict | None = None, seconds: float = 0.0, append: bool = False) -> dict:
    """Write metadata, splits, Mean/Std over the train split, and the report."""
    mode = "a" if append else "w"
    with open(out / METADATA_FILE, mode, encoding="utf-8") as fh:
        for rec, _ in records:
            fh.write(rec.to_json() + "\n")
    all_records = read_metadata(out)
    ids_by_split = {s: [r.id for r in all_records if r.split == s] for s in SPLITS}
    write_split_files(out, ids_by_split)
    train = [np.load(out / FEATURES_DIR / f"{i}.npy") for i in ids_by_split["train"]]
    if not train:
        raise ValueError(f"{out}: the train split is empty; cannot compute Mean/Std")
    Normalizer(*mean_std(train)).save(out)
    report = make_report(out, all_records, skipped, extra or {}, seconds)
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2))
    return report
