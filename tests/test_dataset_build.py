"""Dataset builder: clip planning, captions, splits, layout, bad input; a real-data subset build."""
from __future__ import annotations

import json

import numpy as np
import pytest

from realign_core.data.build import BuildConfig, assign_split, build_dataset, plan_clips, span_captions_for_clip
from realign_core.data.captions import parse_caption_line
from realign_core.data.layout import read_metadata, read_split
from realign_core.motion.features import FEATURE_GROUPS, features_to_joints
from tests.conftest import shared_path

CFG = BuildConfig(workers=2)  # same as conftest.BUILD_CFG


def test_plan_clips_uses_segments_and_cuts_the_rest():
    clips = plan_clips(500, [(10, 150), (100, 300)], CFG)
    assert (10, 150) in clips and (100, 300) in clips
    assert all(CFG.min_frames <= e - s <= CFG.max_frames for s, e in clips)
    # the uncovered tail 300..500 is cut in pieces of <= 10 s; 0..10 is too short
    assert (300, 500) in clips and not any(s == 0 for s, _ in clips)


def test_plan_clips_splits_long_segments_and_drops_short_ones():
    clips = plan_clips(1000, [(0, -1)], CFG)
    assert clips == [(0, 200), (200, 400), (400, 600), (600, 800), (800, 1000)]
    assert plan_clips(30, [], CFG) == []
    assert plan_clips(250, [(0, 240)], CFG) == [(0, 120), (120, 240)]


def test_span_captions_keep_relative_spans():
    spans = [("whole", 0.0, 20.0), ("second half", 5.0, 10.0), ("elsewhere", 12.0, 20.0)]
    caps = span_captions_for_clip(spans, 4.0, 10.0, 0.5, "kitml")
    assert [(c.text, c.start, c.end) for c in caps] == [("whole", 0.0, 0.0), ("second half", 1.0, 6.0)]
    assert all(c.source == "kitml" for c in caps)


def test_assign_split_majority_ties_and_hash():
    split_of = {"a": "train", "b": "test", "c": "test", "d": "val"}
    assert assign_split("x", ["a", "b", "c"], split_of, CFG) == ("test", "humanml3d_majority")
    assert assign_split("x", ["a"], split_of, CFG) == ("train", "humanml3d")
    assert assign_split("x", ["a", "d"], split_of, CFG)[0] == "val"  # tie -> held-out side
    hashed = {assign_split(f"{i:02d}_01", [], split_of, CFG)[0] for i in range(200)}
    assert hashed == {"train", "val", "test"}
    assert assign_split("05_07", [], split_of, CFG) == assign_split("05_07", [], split_of, CFG)


def test_layout_and_splits(built):
    out, report = built
    for name in ("Mean.npy", "Std.npy", "train.txt", "val.txt", "test.txt", "all.txt", "train_val.txt",
                 "metadata.jsonl", "report.json", "report_lengths.png"):
        assert (out / name).is_file(), name
    records = read_metadata(out)
    assert len(records) == report["clips"] > 0
    split_of_trial = {}
    for rec in records:
        assert split_of_trial.setdefault(rec.trial, rec.split) == rec.split  # one split per trial
        assert rec.id in read_split(out, rec.split)
    assert split_of_trial["01_05"] == "test" and split_of_trial["01_01"] == "train"
    ids = {r.id for r in records}
    assert all(("M" + i) in ids for i in ids if not i.startswith("M"))


def test_clip_files_are_consistent(built):
    out, _ = built
    for rec in read_metadata(out):
        feats = np.load(out / "new_joint_vecs" / f"{rec.id}.npy")
        joints = np.load(out / "new_joints" / f"{rec.id}.npy")
        assert feats.shape == (rec.end_frame - rec.start_frame - 1, 263) and feats.dtype == np.float32
        assert np.allclose(joints, features_to_joints(feats), atol=1e-6)
        assert 40 <= rec.end_frame - rec.start_frame <= 200
        lines = (out / "texts" / f"{rec.id}.txt").read_text().splitlines()
        assert [parse_caption_line(l).caption for l in lines] == [c.text.replace("#", " ") for c in rec.captions]


def test_captions_sources_and_mirroring(built):
    out, _ = built
    recs = {r.id: r for r in read_metadata(out)}
    kit = [c for c in recs["cmu_01_01_00"].captions if c.source == "kitml"]
    assert [c.text for c in kit] == ["A person walks to the left."]
    assert [c.text for c in recs["Mcmu_01_01_00"].captions if c.source == "kitml"] == ["A person walks to the right."]
    sideways = [c.text for c in recs["cmu_02_01_00"].captions]
    assert any("left" in t for t in sideways), sideways  # measured from kinematics
    assert not any(c.source == "cmu_description" for c in recs["cmu_02_01_00"].captions)  # "Unknown"
    assert recs["cmu_01_05_00"].source_fps == 12.0


def test_bad_trials_are_reported_with_file_and_reason(built):
    _, report = built
    reasons = {s["item"]: s["reason"] for s in report["skipped"]["items"]}
    assert "cannot read" in reasons["01_02"] and "01_02.npy" in reasons["01_02"]
    assert "NaN" in reasons["01_03"]
    assert "01_04" in reasons
    assert report["skipped"]["count"] == 3


def test_mean_std_group_averaged_over_train(built):
    out, _ = built
    std = np.load(out / "Std.npy")
    for sl in FEATURE_GROUPS.values():
        assert np.allclose(std[sl], std[sl][0])
    train = np.concatenate([np.load(out / "new_joint_vecs" / f"{i}.npy") for i in read_split(out, "train")])
    assert np.allclose(np.load(out / "Mean.npy"), train.mean(0), atol=1e-5)


@pytest.mark.slow
def test_real_subset_build(tmp_path):
    data = shared_path("data")
    cfg = BuildConfig(workers=2, limit_trials=40)
    report = build_dataset(data / "cmu_mocap", data / "kitml", data / "humanml3d_index", tmp_path, cfg,
                           progress=False)
    assert report["clips"] > 100 and report["clips_mirrored"] == report["clips_original"]
    assert set(report["captions"]["by_source"]) >= {"cmu_description", "kinematic", "kitml"}
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["clips"] == report["clips"] and sum(saved["length_histogram_s"].values()) == report["clips"]
