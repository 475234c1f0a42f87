"""realign data compose: a captured arm motion layered onto other clips of a dataset's train split (a real
synthetic dataset in the HumanML3D layout, the real feature extraction and kinematic checks)."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from realign_core.cli.main import main
from realign_core.data.build import write_clip
from realign_core.data.caption_search import split_captions
from realign_core.data.layout import JOINTS_DIR, Caption, read_metadata, read_split
from realign_core.evaluation.kinematic.checks import PROMPTS_BY_NAME, MeasuredMotion
from realign_core.guidance.control_spec import PartLayer
from realign_core.motion.features import joints_to_features
from realign_core.motion.skeleton import FPS
from realign_core.training.compose_parts import (CompositionConfig, compose_features, compose_part_clips,
                                                 composed_caption, ping_pong)
from tests.synthetic import walking_motion, waving_motion

WAVE = "a person waves with the right hand."


@pytest.fixture
def dataset_with_a_wave(synthetic_dataset, tmp_path):
    """A copy of the synthetic dataset with one captured-like right-hand wave in its train split."""
    out = tmp_path / "data"
    shutil.copytree(synthetic_dataset, out)
    write_clip(out, "wave_00", waving_motion(frames=60), [Caption(WAVE, "user_csv")])
    (out / "train.txt").write_text((out / "train.txt").read_text() + "wave_00\n")
    return out


def test_ping_pong_plays_forward_and_back():
    assert ping_pong(9, 4, 0).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2]
    assert ping_pong(4, 4, 5).tolist() == [1, 0, 1, 2] and ping_pong(3, 1, 2).tolist() == [0, 0, 0]


def test_composed_clip_walks_with_the_wave_arm():
    walk = joints_to_features(walking_motion(frames=80, speed=1.2))
    wave = joints_to_features(waving_motion(frames=80))
    joints = compose_features(walk, wave, "right_arm", start=0)
    layered = PartLayer.from_features("right_arm", joints_to_features(joints)).offsets
    assert np.abs(layered - PartLayer.from_features("right_arm", wave).offsets[:len(layered)]).max() < 0.02
    motion = MeasuredMotion(joints, FPS)
    assert PROMPTS_BY_NAME["walk_forward"].matches(motion) and PROMPTS_BY_NAME["wave_right"].matches(motion)
    assert not PROMPTS_BY_NAME["wave_right"].matches(MeasuredMotion(walking_motion(frames=80, speed=1.2), FPS))
    legs = [1, 2, 4, 5, 7, 8, 10, 11]                       # the base's legs are untouched (relative to its pelvis)
    base = walking_motion(frames=80, speed=1.2)[:len(joints)]
    assert np.abs((joints[:, legs] - joints[:, :1]) - (base[:, legs] - base[:, :1])).max() < 0.01


def test_compose_command_grows_the_train_split_only(dataset_with_a_wave, tmp_path):
    data = dataset_with_a_wave
    val, test = read_split(data, "val"), read_split(data, "test")
    mean = np.load(data / "Mean.npy")
    args = ["data", "compose", str(data), "--part", "right_arm", "--part-match", r"waves with the right hand",
            "--base-match", r"walks forward", "--phrase", "waves with the right hand", "--count", "5",
            "--json", str(tmp_path / "c.json")]
    assert main(args) == 0
    composed = [i for i in read_split(data, "train") if i.startswith("comp_")]
    assert len(composed) == 5 and read_split(data, "val") == val and read_split(data, "test") == test
    assert np.array_equal(np.load(data / "Mean.npy"), mean)              # the normalisation is the trained one
    captions = split_captions(data, "train")
    assert all(captions[c] == ["a person walks forward and waves with the right hand."] for c in composed)
    for clip in composed:
        motion = MeasuredMotion(np.load(data / JOINTS_DIR / f"{clip}.npy"), FPS)
        assert PROMPTS_BY_NAME["wave_right"].matches(motion)
    assert {r.id for r in read_metadata(data)} == set(composed)
    assert main(args[:-4] + ["--count", "3"]) == 0                       # again: replaces, no duplicates
    assert sorted(i for i in read_split(data, "train") if i.startswith("comp_")) == composed[:3]
    assert not (data / JOINTS_DIR / "comp_0004.npy").exists()


def test_compose_into_a_hard_linked_copy_leaves_the_original(dataset_with_a_wave, tmp_path):
    copy = tmp_path / "linked"
    shutil.copytree(dataset_with_a_wave, copy, copy_function=os.link)      # as cp -al
    before = {f.name: f.read_bytes() for f in dataset_with_a_wave.glob("*.txt")}
    assert main(["data", "compose", str(copy), "--part", "right_arm", "--part-match", "waves with the right hand",
                 "--base-match", "walks forward", "--phrase", "waves with the right hand", "--count", "2"]) == 0
    assert {f.name: f.read_bytes() for f in dataset_with_a_wave.glob("*.txt")} == before
    assert not (dataset_with_a_wave / "metadata.jsonl").exists() and len(read_metadata(copy)) == 2


def test_compose_errors_name_the_problem(dataset_with_a_wave):
    with pytest.raises(ValueError, match="part must be one of"):
        CompositionConfig("tail", ("wave",), ("walk",), "waves")
    with pytest.raises(ValueError, match="phrase"):
        CompositionConfig("right_arm", ("wave",), ("walk",), " . ")
    with pytest.raises(ValueError, match="no train clip .* part patterns"):
        compose_part_clips(dataset_with_a_wave, CompositionConfig("right_arm", ("juggles",), ("walk",), "juggles"))
    with pytest.raises(SystemExit, match="every base clip is also a part source"):
        main(["data", "compose", str(dataset_with_a_wave), "--part", "right_arm", "--part-match", "wave",
              "--base-match", "wave", "--phrase", "waves"])
    assert composed_caption("Someone walks forward. ", "waves.") == "Someone walks forward and waves."
