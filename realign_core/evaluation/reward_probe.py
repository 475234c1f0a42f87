"""Does the reward model see what an arm does over time?  Real clips against the same clips with the arm held.

For the clips of a split whose caption matches given patterns (e.g. waving), :func:`probe_held_part` scores
each clip twice with the motion-space step-aware reward's text-to-motion cosine for its matching caption: as
captured, and with ``part`` (``right_arm``, ``left_arm``, ``arms``) held at its mean pose relative to the
shoulder (``hold_part``: the part's offsets from its anchors, in the facing frame, replaced by their average over
the clip).  Both go through the same joints -> features round trip, so only the arm's movement differs.  A reward
that reads a wave scores the captured clip higher for "waves"; one that scores them alike cannot steer a
generator towards waving.  Features (F, 263) un-normalised, 20 fps.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import wilcoxon

from realign_core.control.parts import hold_part_features, rank_by_reward
from realign_core.data.caption_search import match_captions, split_captions
from realign_core.data.layout import FEATURES_DIR
from realign_core.motion.features import features_to_joints, joints_to_features


def hold_part(features: np.ndarray, part: str, smooth_frames: int = 0) -> np.ndarray:
    """(F, 263) -> a copy with ``part`` held at the clip's mean pose relative to its anchors (``smooth_frames`` 0)
    or its swings low-passed away (a moving average over ``smooth_frames`` frames), as the reward's hard negative
    does (``control.parts.hold_part_features``); the other joints are unchanged."""
    clip = torch.from_numpy(np.asarray(features, dtype=np.float32))[None]
    held, _ = hold_part_features(clip, torch.ones(clip.shape[:2], dtype=torch.bool), part, smooth_frames)
    return held[0].numpy()


def round_trip(features: np.ndarray) -> np.ndarray:
    """(F, 263) -> (F - 1, 263): the features of the joints these features describe (velocities, rotations and
    foot contacts recomputed from the positions)."""
    return joints_to_features(features_to_joints(features))


def probe_held_part(pipe: Any, data_dir: str | Path, split: str, patterns: list[str], part: str,
                    max_frames: int = 196, smooth_frames: int = 0) -> dict[str, Any]:
    """Per matching clip (mirrors included): the reward of the captured and the arm-held (``smooth_frames`` > 0:
    arm-smoothed, :func:`hold_part`) motion for the first matching caption; summary: mean of each, the share of
    clips scored higher as captured, Wilcoxon's p."""
    captions = split_captions(data_dir, split)
    matches = match_captions(captions, patterns, split)
    if not matches.matching_clips:
        raise ValueError(f"reward probe: no {split} clip of {data_dir} has a caption matching {patterns}")
    compiled = [re.compile(p, re.IGNORECASE) for p in patterns]
    rows = []
    for clip in matches.matching_clips:
        feats = np.load(Path(data_dir) / FEATURES_DIR / f"{clip}.npy")[:max_frames]
        caption = next(t for t in captions[clip] if all(c.search(t) for c in compiled))
        stilled = hold_part(feats, part, smooth_frames)
        pair = torch.from_numpy(np.stack([round_trip(feats), round_trip(stilled)])).float()
        captured, held = rank_by_reward(pipe, caption, pair).tolist()
        rows.append({"clip": clip, "caption": caption, "captured": captured, "held": held})
    captured = np.array([r["captured"] for r in rows])
    held = np.array([r["held"] for r in rows])
    p = float(wilcoxon(captured, held).pvalue) if len(rows) > 1 and np.any(captured != held) else None
    return {"split": split, "patterns": patterns, "part": part, "smooth_frames": smooth_frames, "clips": len(rows),
            "reward_captured": float(captured.mean()), "reward_held": float(held.mean()),
            "captured_higher": float((captured > held).mean()), "wilcoxon_p": p, "rows": rows}


def _stilled(result: dict[str, Any]) -> str:
    frames = result.get("smooth_frames", 0)
    return f"smoothed over {frames} frames" if frames else "held"


def format_probe(result: dict[str, Any]) -> str:
    """One paragraph: the two means, the share of clips scored higher as captured, and p."""
    p = "-" if result["wilcoxon_p"] is None else f"{result['wilcoxon_p']:.3g}"
    return (f"{result['clips']} {result['split']} clips matching {result['patterns']}: reward as captured "
            f"{result['reward_captured']:.3f}, with {result['part']} {_stilled(result)} "
            f"{result['reward_held']:.3f}; captured scored higher on {100 * result['captured_higher']:.0f} % of clips "
            f"(Wilcoxon p {p})")


__all__ = ["format_probe", "hold_part", "probe_held_part", "round_trip"]
