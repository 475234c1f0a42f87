"""Adding a BVH folder with a captions CSV to a dataset (real Bandai Namco files)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from realign_core.data.build import BuildConfig
from realign_core.data.bvh.folder import add_bvh_folder, read_captions_csv
from realign_core.data.layout import read_metadata, read_split
from tests.conftest import shared_path

FILES = ("dataset-1_walk_normal_001.bvh", "dataset-1_walk-left_normal_001.bvh", "dataset-1_bow_active_001.bvh")


@pytest.fixture(scope="module")
def bvh_folder(tmp_path_factory):
    src = shared_path("data", "bandai_namco_1", "data")
    folder = tmp_path_factory.mktemp("bvh")
    for name in FILES:
        shutil.copy(src / name, folder / name)
    (folder / "uncaptioned.bvh").write_text((src / FILES[0]).read_text())
    return folder


def test_add_bvh_folder(bvh_folder, tmp_path):
    csv = tmp_path / "captions.csv"
    csv.write_text("file,caption,start,end,split\n"
                   f"{FILES[0]},a person walks forward normally,,,train\n"
                   f"{FILES[1]},a person walks to the left,,,test\n"
                   f"{FILES[2]},a person bows,,,train\n"
                   "missing.bvh,a person waves,,,train\n")
    out = tmp_path / "ds"
    report = add_bvh_folder(bvh_folder, csv, out, name="bandai", cfg=BuildConfig(workers=1))
    records = read_metadata(out)
    assert report["clips"] == len(records) > 0
    by_id = {r.id: r for r in records}
    left = [r for r in records if "walk_left" in r.id and not r.mirror]
    assert left and all(r.split == "test" for r in left)
    mirror = by_id["M" + left[0].id]
    assert any(c.text == "a person walks to the right" for c in mirror.captions)
    assert mirror.split == "test" and mirror.id in read_split(out, "test")
    feats = np.load(out / "new_joint_vecs" / f"{left[0].id}.npy")
    assert feats.shape[1] == 263 and np.all(np.isfinite(feats))
    reasons = " | ".join(s["reason"] for s in report["skipped"]["items"])
    assert "missing.bvh" in reasons and "not found" in reasons
    assert "no caption for 'uncaptioned.bvh'" in reasons


@pytest.mark.parametrize("body,match", [
    ("name,text\nx.bvh,hi\n", "missing column"),
    ("file,caption,split\nx.bvh,hi,holdout\n", "split 'holdout'"),
    ("file,caption,start,end\nx.bvh,hi,abc,\n", "start"),
    ("file,caption,start,end\nx.bvh,hi,3,1\n", "must be after start"),
    ("file,caption\nx.bvh,\n", "empty"),
])
def test_captions_csv_errors_name_file_and_line(tmp_path, body, match):
    path = tmp_path / "c.csv"
    path.write_text(body)
    with pytest.raises(ValueError, match=match) as err:
        read_captions_csv(path, "train")
    assert str(path) in str(err.value)
