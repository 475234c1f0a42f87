"""Layered body parts (realign_core/control/parts.py, the ``part`` cost, ``realign generate --layer``): one
motion's arm on another motion's body, on the real tiny generator."""
from __future__ import annotations

import numpy as np
import pytest

from realign_core.cli.main import main
from realign_core.control.motion import generate_controlled
from realign_core.control.parts import layer_part, part_layer
from realign_core.guidance.control_spec import ControlSpec, PartLayer, part_joints, root_relative_joints
from realign_core.motion.features import features_to_joints, joints_to_features
from realign_core.pipeline import SamplingConfig, TextToMotionPipeline

pytestmark = pytest.mark.usefixtures("one_thread")
CFG = SamplingConfig(steps=8)
BASE, PART = "a person walks forward.", "a person jumps up and down."


@pytest.fixture(scope="module")
def pipe(tiny_generator):
    return TextToMotionPipeline.from_checkpoints(tiny_generator[0])


def walk_features(frames: int = 41, turn_deg: float = 60.0) -> np.ndarray:
    from tests.synthetic import walking_motion

    return joints_to_features(walking_motion(frames=frames, turn_deg=turn_deg))


def layer_error(features: np.ndarray, layer: PartLayer) -> float:
    """Mean distance (m) of the layered joints from anchor + offset, in the facing frame."""
    ric = root_relative_joints(np.asarray(features, dtype=np.float64))
    joints, anchors = part_joints(layer.part)
    return float(np.linalg.norm(ric[:, list(joints)] - ric[:, list(anchors)] - layer.offsets[:len(ric)], axis=-1).mean())


def test_bad_layers_are_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"part must be one of \['arms', 'left_arm', 'right_arm'\], got 'tail'"):
        part_joints("tail")
    with pytest.raises(ValueError, match=r"part.offsets of 'right_arm' must have shape \(N, 2, 3\).*\(4, 3, 3\)"):
        PartLayer.make("right_arm", np.zeros((4, 3, 3)))
    bad = np.zeros((4, 2, 3))
    bad[2, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"part.offsets\[2, 3\] must be a finite number"):
        PartLayer.make("right_arm", bad)
    short = ControlSpec(part=PartLayer.make("arms", np.zeros((10, 4, 3))))
    with pytest.raises(ValueError, match="part layer has 10 frames but the motion has 40"):
        short.check_frames(40)


def test_the_exact_layer_moves_only_the_part_and_keeps_it_on_the_shoulder():
    base, other = walk_features(turn_deg=60.0), walk_features(turn_deg=-30.0)
    mirrored = features_to_joints(other)[:, :, :] * np.array([-1.0, 1.0, 1.0])   # a different arm swing
    layer = PartLayer.from_features("right_arm", joints_to_features(np.concatenate([mirrored, mirrored[-1:]])))
    out = layer_part(base, layer)
    assert layer_error(base, layer) > 0.05 and layer_error(out, layer) < 1e-5
    before, after = features_to_joints(base), features_to_joints(out)
    moved = np.abs(after - before).max(axis=(0, 2)) > 1e-6
    assert moved.nonzero()[0].tolist() == [19, 21]            # right elbow and wrist only
    for a, b in ((17, 19), (19, 21)):                          # bone lengths are the layer's (reference skeleton)
        assert np.allclose(np.linalg.norm(after[:, b] - after[:, a], axis=-1),
                           np.linalg.norm(before[:, b] - before[:, a], axis=-1), atol=1e-4)


def test_the_default_layer_leaves_the_body_as_sampled_and_sets_the_arm_exactly(pipe):
    layer = part_layer(pipe, PART, "arms", 40, 3, CFG)
    spec = ControlSpec(part=layer)
    assert not spec.active                  # no constraint hook: the take is sampled as without the layer
    free = generate_controlled(pipe, [BASE], [40], [0], [None], CFG)[0]
    layered = generate_controlled(pipe, [BASE], [40], [0], [spec], CFG)[0]
    assert layer_error(free.features, layer) > 0.005 and layer_error(layered.features, layer) < 1e-5
    rest = [j for j in range(22) if j not in part_joints("arms")[0]]
    assert np.array_equal(layered.joints[:, rest], free.joints[:, rest])


def test_part_weight_pulls_the_arm_onto_the_layer_during_sampling(pipe):
    layer = part_layer(pipe, PART, "arms", 40, 3, CFG)
    spec = ControlSpec(part=layer, part_weight=1.0)
    free = generate_controlled(pipe, [BASE], [40], [0], [None], CFG)[0]
    pulled = generate_controlled(pipe, [BASE], [40], [0], [spec], CFG, exact_keys=False)[0]
    exact = generate_controlled(pipe, [BASE], [40], [0], [spec], CFG)[0]
    e_free, e_pulled = layer_error(free.features, layer), layer_error(pulled.features, layer)
    assert e_pulled < 0.5 * e_free, (e_pulled, e_free)
    assert layer_error(exact.features, layer) < 1e-5
    # the body below the arms is the pulled one's: only the layered joints were set afterwards
    rest = [j for j in range(22) if j not in part_joints("arms")[0]]
    assert np.allclose(exact.joints[:, rest], pulled.joints[:, rest], atol=1e-5)
    with pytest.raises(ValueError, match="part_weight must be a finite number >= 0, got -1"):
        ControlSpec(part=layer, part_weight=-1)


def test_generate_layer_option_writes_the_take_and_the_layer(tiny_generator, tmp_path):
    models = str(tiny_generator[0])
    assert main(["generate", BASE, "--models", models, "--seconds", "2", "--steps", "5", "--samples", "2",
                 "--layer", "right_arm", PART, "-o", str(tmp_path / "take")]) == 0
    for k in (0, 1):
        take, layer = np.load(tmp_path / f"take_s{k}.npy"), np.load(tmp_path / f"take_s{k}_layer.npy")
        # the take's right elbow and wrist hang from its shoulder as in the layer's motion: the heights and
        # distances from the shoulder do not depend on where either body faces
        for j in (19, 21):
            for m in (take, layer):
                assert m.shape == (40, 22, 3)
            assert np.allclose(take[:, j, 1] - take[:, 17, 1], layer[:, j, 1] - layer[:, 17, 1], atol=1e-4)
            assert np.allclose(np.linalg.norm(take[:, j] - take[:, 17], axis=-1),
                               np.linalg.norm(layer[:, j] - layer[:, 17], axis=-1), atol=1e-4)
    with pytest.raises(SystemExit, match=r"realign generate: part must be one of .* got 'tail'"):
        main(["generate", BASE, "--models", models, "--layer", "tail", PART, "-o", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="ranking layer candidates needs a reward model"):
        main(["generate", BASE, "--models", models, "--layer", "arms", PART, "--layer-candidates", "2", "-o", "x"])
    with pytest.raises(SystemExit, match="--layer and --sequence cannot be combined"):
        main(["generate", "-", "--models", models, "--layer", "arms", PART, "--sequence", "s.json", "-o", "x"])


def test_layer_candidates_keep_the_one_the_reward_model_rates_highest(tiny_guided, pipe):
    from realign_core.control.parts import CANDIDATE_SEED_STRIDE, rank_by_reward

    guided = TextToMotionPipeline.from_checkpoints(tiny_guided)
    seeds = [3 + k * CANDIDATE_SEED_STRIDE for k in range(3)]
    all_three = guided([PART] * 3, [40] * 3, seeds, CFG).features[:, :40]
    rewards = rank_by_reward(guided, PART, all_three)
    _, chosen = part_layer(guided, PART, "arms", 40, 3, CFG, candidates=3, with_features=True)
    assert np.allclose(chosen, all_three[int(rewards.argmax())].numpy(), atol=1e-5)
    _, first = part_layer(guided, PART, "arms", 40, 3, CFG, candidates=1, with_features=True)
    assert np.allclose(first, all_three[0].numpy(), atol=1e-5)          # one candidate = the take's own seed
    with pytest.raises(ValueError, match="layer candidates must be a whole number >= 1, got 0"):
        part_layer(guided, PART, "arms", 40, 3, CFG, candidates=0)
    with pytest.raises(ValueError, match="ranking layer candidates needs a reward model"):
        part_layer(pipe, PART, "arms", 40, 3, CFG, candidates=2)
