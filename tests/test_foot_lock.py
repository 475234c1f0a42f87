"""The foot lock: a body that glides over planted feet is shifted back; flight and vertical motion are kept; the
feature-space lock is the joint-space lock; the pipeline locks unconstrained takes when asked or by default; and
``realign choose-foot-lock`` chooses it on validation by its rule."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from realign_core.evaluation.foot_lock_choice import FootLockChoiceConfig, choose_foot_lock
from realign_core.motion.features import features_to_joints, foot_contacts, joints_to_features
from realign_core.motion.foot_lock import foot_skate_cm, lock_features, lock_joints, sliding
from realign_core.motion.skeleton import JOINT_INDEX
from tests.synthetic import walking_motion

PELVIS = JOINT_INDEX["pelvis"]


def _gliding_stand(frames: int = 80, step_m: float = 0.005) -> np.ndarray:
    """A standing body drifting ``step_m`` a frame along +X with its feet on the floor: (frames, 22, 3) m."""
    joints = walking_motion(frames=frames, speed=0.0, step_hz=0.0)
    joints[..., 0] += step_m * np.arange(frames)[:, None]
    return joints


def test_a_gliding_stand_is_put_back_on_its_feet():
    joints = _gliding_stand()
    assert np.ptp(joints[:, PELVIS, 0]) == pytest.approx(0.395, abs=1e-6) and foot_skate_cm(joints) > 0.45
    locked = lock_joints(joints)
    assert np.abs(locked[..., 0] - locked[:1, :, 0]).max() < 1e-6            # no drift left
    np.testing.assert_allclose(locked[..., 1:], joints[..., 1:], atol=1e-6)   # heights and Z untouched
    assert foot_skate_cm(locked) < 1e-4 and sliding(locked).max() < 1e-6


def test_flight_keeps_its_travel():
    """Frames with no planted foot (a jump's flight) keep their horizontal motion; a still body is unchanged."""
    joints = walking_motion(frames=60, speed=0.0, step_hz=0.0)
    flight = np.arange(20, 30)
    joints[flight, :, 1] += 0.3
    joints[flight[0]:, :, 0] += 0.05 * np.minimum(np.arange(60 - flight[0]), len(flight))[:, None]
    locked = lock_joints(joints)
    np.testing.assert_allclose(locked, joints, atol=1e-6)
    assert locked[-1, PELVIS, 0] - locked[0, PELVIS, 0] == pytest.approx(0.5)


def test_the_feature_lock_is_the_joint_lock():
    joints = _gliding_stand(frames=61)
    feats = torch.from_numpy(joints_to_features(joints))
    locked = lock_features(feats)
    assert locked.dtype == feats.dtype and locked.shape == feats.shape
    expected = lock_joints(features_to_joints(feats.numpy()))
    np.testing.assert_allclose(features_to_joints(locked.numpy()), expected, atol=1e-5)
    np.testing.assert_allclose(locked[:-1, 259:].numpy(), foot_contacts(expected))   # flags from the locked feet
    np.testing.assert_array_equal(locked[:, 4:193].numpy(), feats[:, 4:193].numpy())  # poses untouched
    assert lock_features(feats[:2]) is not None and torch.equal(lock_features(feats[:2]), feats[:2])


def test_the_pipeline_locks_unconstrained_takes(tiny_stack, tmp_path):
    from realign_core.guidance.control_spec import ControlSpec
    from realign_core.guidance.control_spec import Path as RootPath
    from realign_core.evaluation.guidance_tuning import write_guidance_key
    from realign_core.models.layout import guidance_path
    from realign_core.pipeline import SamplingConfig, TextToMotionPipeline

    _, trained = tiny_stack
    root = tmp_path / "models"
    shutil.copytree(trained, root)
    pipe = TextToMotionPipeline.from_checkpoints(root, "cpu", generator="mld", reward_kind=None)
    assert pipe.default_foot_lock is False and pipe.default_sampling.foot_lock is False
    take = [["a person stands still.", "a person walks forward."], [40, 48], [1, 2]]
    path = ControlSpec(path=RootPath.from_points([[0.0, 0.0], [0.0, 1.0]], [0.0, 1.95]))
    off = pipe(*take, SamplingConfig(steps=3, foot_lock=False), control=[None, path])
    on = pipe(*take, SamplingConfig(steps=3, foot_lock=True), control=[None, path])
    torch.testing.assert_close(on.features[0, :40], lock_features(off.features[0, :40]))
    assert not torch.equal(on.features[0], off.features[0])
    assert torch.equal(on.features[1], off.features[1])                     # the path take is left as constrained
    # guidance.toml's foot_lock is the default of requests that do not say
    write_guidance_key(guidance_path(root), "mld", "foot_lock", True)
    pipe = TextToMotionPipeline.from_checkpoints(root, "cpu", generator="mld", reward_kind=None)
    assert pipe.default_foot_lock and pipe.default_sampling.foot_lock
    default = pipe(*take, SamplingConfig(steps=3), control=[None, path])
    torch.testing.assert_close(default.features, on.features)


def test_calibration_foot_lock_is_checked(tmp_path):
    from realign_core.guidance.reward_guidance import GuidanceCalibration

    path = tmp_path / "guidance.toml"
    path.write_text("[mld]\nscale = 40.0\nfoot_lock = true\n")
    assert GuidanceCalibration.load(path, "mld").foot_lock is True
    for bad in ('"yes"', "1"):
        path.write_text(f"[mld]\nscale = 40.0\nfoot_lock = {bad}\n")
        with pytest.raises(ValueError, match=r"guidance.toml: \[mld\] foot_lock must be true or false"):
            GuidanceCalibration.load(path, "mld")


def _row(lock, guided, r1, fid, kin=0.5):
    return {"foot_lock": lock, "guided": guided, "kin_pass": kin,
            "judges": {j: {"judge_r1": r1 + d, "judge_fid": fid * (1 + d)} for j, d in (("a", 0.0), ("b", 0.02))}}


def test_the_rule_locks_only_when_nothing_is_lost():
    def choice(on_row):
        rows = [_row(False, False, 0.4, 0.3), _row(True, False, 0.4, 0.3), _row(False, True, 0.6, 0.2), on_row]
        return choose_foot_lock({"config": FootLockChoiceConfig().__dict__, "rows": rows})

    assert choice(_row(True, True, 0.595, 0.205, kin=0.55))["choice"]             # within both slacks
    assert not choice(_row(True, True, 0.58, 0.19, kin=0.6))["r1_ok"]             # text alignment lost
    assert not choice(_row(True, True, 0.6, 0.21, kin=0.6))["fid_ok"]             # FID x1.05
    verdict = choice(_row(True, True, 0.6, 0.2, kin=0.45))
    assert not verdict["kin_ok"] and not verdict["choice"]


def test_choose_foot_lock_judges_four_rows_and_writes_the_default(tiny_stack, tmp_path, capsys):
    from realign_core.cli.main import main
    from realign_core.evaluation.guidance_tuning import write_guidance_toml
    from realign_core.guidance.reward_guidance import GuidanceCalibration
    from realign_core.models.layout import guidance_path

    data, trained = tiny_stack
    root = tmp_path / "models"
    shutil.copytree(trained, root)
    write_guidance_toml(guidance_path(root), "mld", {"scale": 30.0, "settings": {
        "mu": 1.0, "eta": 0.0, "guided_steps": 1, "placement": "late"}}, {"sampler": "ddim", "steps": 3})
    out = tmp_path / "lock.json"
    args = ["choose-foot-lock", "--models", str(root), "--data", str(data), "--judges", "reward_plain",
            f"evaluator_words@{root}", "--kin-samples", "1", "--r1-slack", "1", "--fid-slack", "100",
            "-o", str(out), "--write-toml"]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert [(r["foot_lock"], r["guided"]) for r in result["rows"]] == [(False, False), (False, True), (True, False),
                                                                        (True, True)]
    fids = {(r["foot_lock"], r["guided"]): r["judges"]["reward_plain"]["judge_fid"] for r in result["rows"]}
    assert fids[(True, True)] != fids[(False, True)]                     # the lock changes the takes
    chosen = result["choice"]["choice"]
    assert chosen == result["choice"]["kin_ok"]                          # slacks 1 and 100: only kinematics decide
    assert GuidanceCalibration.load(guidance_path(root), "mld").foot_lock is chosen
    assert f"choice: foot lock {'on' if chosen else 'off'}" in capsys.readouterr().out
