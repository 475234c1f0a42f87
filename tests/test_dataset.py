"""HumanML3D-layout loader: official-style folders (no metadata) and ours (caption sources)."""
from __future__ import annotations

import numpy as np
import pytest

from realign_core.data.captions import caption_line
from realign_core.data.dataset import MotionTextDataset, collate
from realign_core.data.layout import write_split_files
from realign_core.motion.features import joints_to_features
from realign_core.motion.normalization import Normalizer, mean_std
from tests.synthetic import walking_motion


@pytest.fixture()
def official_style(tmp_path):
    """A folder laid out like the official HumanML3D release: numeric ids, no metadata.jsonl."""
    for sub in ("new_joint_vecs", "texts"):
        (tmp_path / sub).mkdir()
    clips = {"000001": 121, "000002": 61, "000003": 30, "M000001": 121}
    feats = {}
    for cid, frames in clips.items():
        feats[cid] = joints_to_features(walking_motion(frames=frames))
        np.save(tmp_path / "new_joint_vecs" / f"{cid}.npy", feats[cid])
    lines = {"000001": [caption_line("a person walks forward."), caption_line("walks then stops.", 1.0, 4.0)],
             "000002": [caption_line("someone walks.")], "000003": [caption_line("too short.")],
             "M000001": [caption_line("a person walks forward.")]}
    for cid, ls in lines.items():
        (tmp_path / "texts" / f"{cid}.txt").write_text("\n".join(ls) + "\n")
    write_split_files(tmp_path, {"train": list(clips), "val": [], "test": []})
    Normalizer(*mean_std(feats.values())).save(tmp_path)
    return tmp_path


def test_official_layout_entries_and_crops(official_style):
    ds = MotionTextDataset(official_style, "train", max_frames=100)
    ids = sorted(e.id for e in ds.entries)
    assert ids == ["000001", "000001@1-4", "000002", "M000001"]
    crop = next(e for e in ds.entries if e.id == "000001@1-4")
    assert len(crop.features) == 60 and crop.captions[0].caption == "walks then stops."
    assert "000003" in ds.skipped and "length 29" in ds.skipped["000003"]


def test_items_are_normalised_and_cropped(official_style):
    ds = MotionTextDataset(official_style, "train", max_frames=196)
    item = ds[[e.id for e in ds.entries].index("000001")]
    assert item["length"] == 120 and item["features"].shape == (120, 263)
    raw = ds.entries[[e.id for e in ds.entries].index("000001")].features
    assert np.allclose(ds.normalizer.denormalize(item["features"]), raw, atol=1e-4)
    short = MotionTextDataset(official_style, "train", max_frames=50)
    assert [short[i]["length"] for i in range(len(short))] == [50, 50, 50, 50]
    narrow = MotionTextDataset(official_style, "train", max_clip_frames=100)
    assert "length 120 outside [40, 100)" in narrow.skipped["000001"]


def test_collate_pads_and_masks(official_style):
    ds = MotionTextDataset(official_style, "train")
    batch = collate([ds[i] for i in range(len(ds))])
    lengths = batch["lengths"].tolist()
    assert batch["features"].shape == (len(ds), max(lengths), 263)
    assert batch["mask"].sum(1).tolist() == lengths
    assert float(batch["features"][~batch["mask"]].abs().sum()) == 0.0


def test_caption_sources_filter(built):
    out, _ = built
    everything = MotionTextDataset(out, "train", max_frames=196)
    kit_only = MotionTextDataset(out, "train", max_frames=196, caption_sources={"kitml"})
    for e in kit_only.entries:
        assert all("left" in c.caption or "right" in c.caption for c in e.captions)
    assert sum(len(e.captions) for e in kit_only.entries) < sum(len(e.captions) for e in everything.entries)


def test_caption_sources_needs_metadata(official_style):
    with pytest.raises(ValueError, match="metadata.jsonl"):
        MotionTextDataset(official_style, "train", caption_sources={"kitml"})


def test_empty_split_is_an_error(official_style):
    with pytest.raises(ValueError, match="'val' has no usable clips"):
        MotionTextDataset(official_style, "val")
