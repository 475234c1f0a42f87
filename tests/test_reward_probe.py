"""realign reward-probe: captured clips against the same clips with a body part held (the shipped reward, a
synthetic dataset in the HumanML3D layout)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from realign_core.cli.main import main
from realign_core.evaluation.reward_probe import hold_part, round_trip
from realign_core.guidance.control_spec import PartLayer, part_joints
from realign_core.motion.features import FEATURE_GROUPS, joints_to_features
from tests.synthetic import walking_motion

MODELS = Path(__file__).resolve().parents[1] / "models" / "default"


def test_hold_part_fixes_the_arm_and_nothing_else():
    features = joints_to_features(walking_motion(frames=60, speed=1.2))
    held = hold_part(features, "right_arm")
    before, after = PartLayer.from_features("right_arm", features), PartLayer.from_features("right_arm", held)
    assert np.allclose(after.offsets, before.offsets.mean(axis=0), atol=1e-5)       # the same pose every frame
    assert after.offsets.std(axis=0).max() < 1e-5 < before.offsets.std(axis=0).max()
    ric = FEATURE_GROUPS["ric_positions"]
    moved = {3 * (j - 1) + k for j in part_joints("right_arm")[0] for k in range(3)}
    others = [c for c in range(ric.stop - ric.start) if c not in moved]
    assert np.array_equal(held[:, ric][:, others], features[:, ric][:, others])
    assert round_trip(held).shape == (len(features) - 1, features.shape[1])


def test_reward_probe_command(synthetic_dataset, tmp_path, capsys):
    out = tmp_path / "probe.json"
    assert main(["reward-probe", "--models", str(MODELS), "--data", str(synthetic_dataset), "--split", "train",
                 "--match", r"walks forward", "--part", "arms", "-o", str(out)]) == 0
    result = json.loads(out.read_text())
    texts = sorted((synthetic_dataset / "texts").glob("*.txt"))
    train = set((synthetic_dataset / "train.txt").read_text().split())
    expected = sum(t.stem in train and "walks forward" in t.read_text() for t in texts)
    assert result["clips"] == expected > 0 and len(result["rows"]) == expected
    for row in result["rows"]:
        assert row["caption"] == "a person walks forward." and -1 <= row["held"] <= 1 and -1 <= row["captured"] <= 1
    assert 0 <= result["captured_higher"] <= 1 and "arms held" in capsys.readouterr().out
    smoothed_out = tmp_path / "smoothed.json"
    assert main(["reward-probe", "--models", str(MODELS), "--data", str(synthetic_dataset), "--split", "train",
                 "--match", r"walks forward", "--part", "arms", "--smooth-frames", "15", "-o", str(smoothed_out)]) == 0
    smoothed = json.loads(smoothed_out.read_text())
    assert smoothed["smooth_frames"] == 15 and "arms smoothed over 15 frames" in capsys.readouterr().out
    assert [r["captured"] for r in smoothed["rows"]] == [r["captured"] for r in result["rows"]]
    assert [r["held"] for r in smoothed["rows"]] != [r["held"] for r in result["rows"]]   # another twin
    with pytest.raises(SystemExit, match="no train clip .* matching"):
        main(["reward-probe", "--models", str(MODELS), "--data", str(synthetic_dataset), "--match", "juggles"])
