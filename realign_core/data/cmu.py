"""CMU mocap joint files (20 joints, 12 or 6 fps, ASF units) -> SMPL-22 at 20 fps.

The 20-joint layout (measured on trial 02_01): 0 pelvis, 1 chest (thorax,
where the arms branch), 2 neck, 3 head; left arm 4 shoulder, 5 elbow,
6 wrist, 7 hand end; right arm 8..11; left leg 12 hip, 13 knee, 14 ankle,
15 toe; right leg 16..19.

Mapping to the 22 SMPL joints (see ``to_smpl22``):

* direct: pelvis, hips, knees, ankles, toes (feet), neck, head, shoulders,
  elbows, wrists; CMU's chest becomes spine3; the hand ends are dropped;
* spine1 and spine2 are synthesised on the pelvis->chest segment at the
  fractions where HumanML3D's reference skeleton has them (0.40 and 0.83 of
  the pelvis->spine3 length);
* each collar is synthesised at chest + 0.55 (neck - chest) + 0.40
  (shoulder - chest): ~0.12 m above and ~0.08 m to the side of the chest, as
  in SMPL, following shoulder shrugs with 40 % of their motion.

Only bone *directions* survive feature extraction (lengths are replaced by the
reference skeleton's), so these choices set the spine/collar directions.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realign_core.motion.skeleton import JOINT_INDEX, NUM_JOINTS, REFERENCE_BONE_LENGTHS

CMU_UNIT_METRES = 0.0254 / 0.45
CMU_NUM_JOINTS = 20
CMU_BASE_FPS = 12.0
CMU_SLOW_FPS = 6.0  # trials captured at 60 Hz, subsampled by the same factor

# SMPL joint name -> CMU joint index for the joints that exist in both.
DIRECT_MAP: dict[str, int] = {
    "pelvis": 0, "spine3": 1, "neck": 2, "head": 3,
    "left_shoulder": 4, "left_elbow": 5, "left_wrist": 6,
    "right_shoulder": 8, "right_elbow": 9, "right_wrist": 10,
    "left_hip": 12, "left_knee": 13, "left_ankle": 14, "left_foot": 15,
    "right_hip": 16, "right_knee": 17, "right_ankle": 18, "right_foot": 19,
}
_SPINE = REFERENCE_BONE_LENGTHS[[JOINT_INDEX["spine1"], JOINT_INDEX["spine2"], JOINT_INDEX["spine3"]]]
SPINE_FRACTIONS = {"spine1": float(_SPINE[0] / _SPINE.sum()), "spine2": float(_SPINE[:2].sum() / _SPINE.sum())}
COLLAR_NECK_WEIGHT = 0.55
COLLAR_SHOULDER_WEIGHT = 0.40


def to_smpl22(cmu: np.ndarray) -> np.ndarray:
    """CMU 20-joint positions -> SMPL 22-joint positions (same units and frames).

    cmu: (T, 20, 3) -> (T, 22, 3).
    """
    if cmu.ndim != 3 or cmu.shape[1:] != (CMU_NUM_JOINTS, 3):
        raise ValueError(f"expected CMU joints of shape (T, {CMU_NUM_JOINTS}, 3), got {cmu.shape}")
    out = np.zeros((len(cmu), NUM_JOINTS, 3), dtype=np.float64)
    for name, src in DIRECT_MAP.items():
        out[:, JOINT_INDEX[name]] = cmu[:, src]
    pelvis, chest, neck = cmu[:, 0], cmu[:, 1], cmu[:, 2]
    for name, frac in SPINE_FRACTIONS.items():
        out[:, JOINT_INDEX[name]] = pelvis + frac * (chest - pelvis)
    for side, shoulder in (("left", cmu[:, 4]), ("right", cmu[:, 8])):
        out[:, JOINT_INDEX[f"{side}_collar"]] = (
            chest + COLLAR_NECK_WEIGHT * (neck - chest) + COLLAR_SHOULDER_WEIGHT * (shoulder - chest))
    return out


@dataclass(frozen=True)
class FrameRateEvidence:
    """What is known about a trial's duration from the text datasets."""

    kit_duration_s: float | None = None       # KIT-ML annotation duration (whole trial)
    index_min_duration_s: float | None = None  # HumanML3D segments' last end frame / 20


def detect_fps(num_frames: int, evidence: FrameRateEvidence, subject_votes: dict[float, int] | None = None) -> tuple[float, str]:
    """Frame rate of a CMU joint file (12 or 6 fps) and how it was decided.

    KIT-ML durations are of the whole trial: a ratio near 2 means 6 fps.
    HumanML3D segment ends only bound the duration from below: a bound
    clearly longer than the 12-fps duration means 6 fps, one within 10 % of it
    (the segments reach the trial's end) means 12 fps.  Otherwise the
    subject's confident votes decide (capture rate is per session), and
    12 fps is assumed when there is nothing to go on.
    """
    at_base = num_frames / CMU_BASE_FPS
    if evidence.kit_duration_s:
        ratio = evidence.kit_duration_s / at_base
        return (CMU_SLOW_FPS, "kit_duration") if ratio > 1.5 else (CMU_BASE_FPS, "kit_duration")
    if evidence.index_min_duration_s:
        ratio = evidence.index_min_duration_s / at_base
        if ratio > 1.2:
            return CMU_SLOW_FPS, "humanml3d_index"
        if ratio > 0.9:  # segments end where the trial ends at 12 fps
            return CMU_BASE_FPS, "humanml3d_index"
    if subject_votes:
        slow, base = subject_votes.get(CMU_SLOW_FPS, 0), subject_votes.get(CMU_BASE_FPS, 0)
        if slow > base:
            return CMU_SLOW_FPS, "subject_majority"
        if base > 0:
            return CMU_BASE_FPS, "subject_majority"
    return CMU_BASE_FPS, "assumed"


def load_trial(path: Path) -> np.ndarray:
    """Read one CMU joint file as SMPL-22 positions in metres (T, 22, 3), source fps unchanged."""
    try:
        raw = np.load(path, allow_pickle=False)
    except Exception as exc:  # corrupt or truncated .npy
        raise ValueError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from exc
    if raw.ndim != 3 or raw.shape[1:] != (CMU_NUM_JOINTS, 3):
        raise ValueError(f"{path}: expected shape (T, 20, 3), got {raw.shape}")
    if not np.all(np.isfinite(raw)):
        raise ValueError(f"{path}: contains NaN or infinite values")
    return to_smpl22(raw.astype(np.float64) * CMU_UNIT_METRES)


def read_descriptions(path: Path) -> dict[str, str]:
    """descriptions.csv -> {trial id: description}."""
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["motion"].strip(): row["description"].strip() for row in csv.DictReader(fh)}


def read_action_classes(path: Path) -> dict[str, str]:
    """action_classes.csv -> {trial id: coarse class}."""
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["motion"].strip(): row["action_type"].strip() for row in csv.DictReader(fh)}
