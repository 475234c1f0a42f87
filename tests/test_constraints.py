"""Constraint guidance (paths, keyed poses, loops, foot contact) on the real tiny generator, and its building
blocks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from realign_core.control.motion import generate_controlled, loop_seam_gaps, to_in_place
from realign_core.control.warp import warp_to_keyframes
from realign_core.guidance.compose import compose
from realign_core.guidance.constraints import foot_contact_cost, path_cost
from realign_core.guidance.control_spec import ControlSpec, Keyframes, Path, Placement, facing_of_pose
from realign_core.motion.features import features_to_joints, joints_to_features
from realign_core.pipeline import SamplingConfig, TextToMotionPipeline

STEPS = 10
pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: one thread is faster and fair to others
CFG = SamplingConfig(steps=STEPS)
PROMPT = "a person walks forward."


@pytest.fixture(scope="module")
def pipe(tiny_generator):
    return TextToMotionPipeline.from_checkpoints(tiny_generator[0])


def straight_walk(frames: int = 40) -> np.ndarray:
    """A walk of the synthetic data's kind (tests/synthetic.py), turning 40 degrees: (F, 22, 3) metres."""
    from tests.synthetic import walking_motion

    return walking_motion(frames=frames, turn_deg=40.0)


# --------------------------------------------------------------------------- building blocks

def test_placement_round_trip_and_pose_facing():
    p = Placement((1.5, -2.0), 0.7)
    pts = np.random.default_rng(0).normal(size=(5, 22, 3))
    assert np.allclose(p.to_canonical(p.to_world(pts)), pts)
    pose = features_to_joints(joints_to_features(straight_walk()))[0]   # canonical: faces +Z
    assert abs(facing_of_pose(pose)) < 0.15
    assert abs(facing_of_pose(Placement((0, 0), 1.0).to_world(pose)) - 1.0 - facing_of_pose(pose)) < 1e-6


def test_path_resampling_and_validation_errors_name_the_field():
    path = Path.from_points([[0, 0], [0, 2], [2, 2]], [0, 1, 2])
    assert path.frames == 41 and np.allclose(path.xz[20], [0, 2]) and np.allclose(path.xz[30], [1, 2])
    assert math.isclose(path.start_yaw(), 0.0) and math.isclose(Path.per_frame([[0, 0], [1, 0]]).start_yaw(), math.pi / 2)
    with pytest.raises(ValueError, match=r"path.times must start at 0 and increase"):
        Path.from_points([[0, 0], [1, 1]], [0, 0])
    with pytest.raises(ValueError, match=r"path\[1, 0\] must be a finite number.*nan"):
        Path.per_frame([[0, 0], [float("nan"), 1]])
    with pytest.raises(ValueError, match=r"keyframes.joints must have shape \(N, 22, 3\)"):
        Keyframes.make([0], np.zeros((1, 21, 3)))
    with pytest.raises(ValueError, match="keyframes: frame 3 is keyed twice"):
        Keyframes.make([3, 3], np.zeros((2, 22, 3)))
    with pytest.raises(ValueError, match="control strength must be a finite number >= 0, got -1"):
        ControlSpec(loop=True, strength=-1)
    with pytest.raises(ValueError, match="foot_weight must be a finite number >= 0, got nan"):
        ControlSpec(foot_weight=float("nan"))
    assert ControlSpec(foot_weight=0.3).active and not ControlSpec(foot_weight=0.3, strength=0).active
    with pytest.raises(ValueError, match="keyframes frame 50 is past the motion's last frame 39"):
        ControlSpec(keyframes=Keyframes.make([50], np.zeros((1, 22, 3)))).check_frames(40)
    with pytest.raises(ValueError, match="path lasts 2 s"):
        ControlSpec(path=path).check_frames(20)


def test_path_cost_is_zero_on_the_motion_own_track_and_grows_with_offset():
    joints = straight_walk(41)
    feats = torch.from_numpy(joints_to_features(joints))[None].double()
    canon = features_to_joints(feats[0].float().numpy())
    target = torch.from_numpy(canon[:, 0, [0, 2]]).double()[None]
    mask = torch.ones(1, len(canon), dtype=torch.bool)
    assert float(path_cost(feats, target, mask)) < 1e-8
    assert math.isclose(float(path_cost(feats, target + torch.tensor([0.3, 0.4]).double(), mask)), 0.25, rel_tol=1e-5)


def test_foot_contact_cost_sees_planted_feet_sliding_but_not_swinging_feet():
    joints = torch.from_numpy(straight_walk(60)).float()[None]
    mask = torch.ones(1, 60, dtype=torch.bool)
    slid = joints.clone()
    slid[..., 0] += 0.03 * torch.arange(60.0)[None, :, None]   # everything drifts 3 cm per frame sideways
    base, moved = float(foot_contact_cost(joints, mask)), float(foot_contact_cost(slid, mask))
    assert moved > base + 0.5 * 0.03 ** 2, (base, moved)
    lifted = joints.clone()
    lifted[..., 1] += 0.5 * (torch.arange(60.0) >= 30)[None, :, None]   # second half: feet far above the floor
    lifted[:, 30:, :, 0] += 0.03 * torch.arange(30.0)[None, :, None]    # ... and sliding there: not a contact
    assert float(foot_contact_cost(lifted, mask)) < base + 0.1 * 0.03 ** 2


def test_foot_contact_weight_reduces_foot_sliding_of_a_path_walk(pipe):
    """The tiny generator asked to walk faster than it does (as above): the foot cost (weight 1) must cut the
    contact-weighted slide and the control-bench skating measure against the same path without it."""
    from realign_core.motion.foot_lock import foot_skate_cm

    path = Path.from_points([[0, 0], [3.5, 0]], [0, 1.95])
    runs = {w: generate_controlled(pipe, [PROMPT] * 2, [40] * 2, [0, 1], [ControlSpec(path=path, foot_weight=w)] * 2,
                                   CFG) for w in (0.0, 1.0)}

    def cost(motions):
        joints = torch.from_numpy(np.stack([m.joints for m in motions]))
        return float(foot_contact_cost(joints, torch.ones(joints.shape[:2], dtype=torch.bool)).mean())
    without, with_feet = cost(runs[0.0]), cost(runs[1.0])
    skate = {w: np.mean([foot_skate_cm(m.joints) for m in ms]) for w, ms in runs.items()}
    assert with_feet < 0.5 * without, (with_feet, without)            # measured 0.0012 vs 0.0047 m^2
    assert skate[1.0] < 0.85 * skate[0.0], skate                       # measured 6.1 vs 8.9 cm/frame


def test_warp_hits_keys_exactly_and_leaves_far_frames_alone():
    joints = straight_walk(60)
    targets = joints[[10, 40]] + np.array([0.2, 0.0, -0.1])
    warped = warp_to_keyframes(joints, (10, 40), targets, radius=8)
    assert np.allclose(warped[[10, 40]], targets, atol=1e-5)
    assert np.allclose(warped[:2], joints[:2]) and np.allclose(warped[20:32], joints[20:32])
    moved, track = to_in_place(joints)
    assert np.allclose(moved[:, 0, [0, 2]], 0) and np.allclose(track[:, :2], joints[:, 0, [0, 2]])


def test_compose_keeps_no_hook_as_none_and_runs_hooks_in_order():
    assert compose([None, None]) is None
    calls = []
    hook = compose([lambda i, t, x, x0: calls.append("a") or x + 1, None, lambda i, t, x, x0: calls.append("b") or x * 2])
    assert float(hook(0, 5, torch.tensor(1.0), torch.tensor(0.0))) == 4.0 and calls == ["a", "b"]


# --------------------------------------------------------------------------- on the tiny generator

def test_no_control_and_strength_zero_are_bit_identical_to_the_plain_pipeline(pipe):
    plain = pipe([PROMPT], [40], [3], CFG).features
    assert torch.equal(plain, pipe([PROMPT], [40], [3], CFG, control=None).features)
    off = ControlSpec(path=Path.per_frame(np.zeros((40, 2))), strength=0.0)
    out = pipe([PROMPT], [40], [3], CFG, control=off)
    assert torch.equal(plain, out.features) and out.constraints is None


def test_path_constraint_follows_the_path_far_better_than_free(pipe):
    # faster than the synthetic walks (1.2 m/s), along +X: the tiny model must speed up and turn to it
    path = Path.from_points([[0, 0], [3.5, 0]], [0, 1.95])
    spec = ControlSpec(path=path)
    seeds = [0, 1]
    free = pipe([PROMPT] * 2, [40] * 2, seeds, CFG, return_joints=True)
    ctl = pipe([PROMPT] * 2, [40] * 2, seeds, CFG, return_joints=True, control=spec)
    place = spec.placement()
    dev_free = np.mean([np.linalg.norm(place.to_world(j)[:, 0, [0, 2]] - path.xz[:40], axis=-1).mean()
                        for j in free.joints])
    dev_ctl = np.mean([np.linalg.norm(j[:, 0, [0, 2]] - path.xz[:40], axis=-1).mean() for j in ctl.joints])
    assert dev_ctl < 0.15 and dev_ctl < 0.3 * dev_free, (dev_ctl, dev_free)
    assert ctl.constraints.steps and set(ctl.constraints.steps[0]) == {"path"}


def test_path_takes_refine_for_path_iterations_other_takes_for_final_iterations(pipe):
    from realign_core.guidance.constraints import ConstraintSchedule

    path = ControlSpec(path=Path.per_frame(np.stack([np.zeros(40), np.linspace(0, 1, 40)], -1)))
    keys = ControlSpec(keyframes=Keyframes.make([0], straight_walk(1)))
    schedule = ConstraintSchedule(final_iterations=7, path_iterations=3)
    calls = {}
    for name, spec in (("path", path), ("keys", keys)):
        out = pipe([PROMPT], [40], [0], CFG, control=spec, constraint_schedule=schedule)
        calls[name] = len(out.constraints.steps)   # one per guided reverse step, then 1 + iterations
    assert calls == {"path": STEPS - 1 + 1 + 3, "keys": STEPS - 1 + 1 + 7}, calls
    assert pipe.constraint_schedule.path_iterations == pipe.calibration.control_path_iterations
    assert pipe.constraint_schedule.path_weight == pipe.calibration.control_path_weight


def test_guidance_toml_sets_the_path_weight_only(pipe, monkeypatch):
    """``control_path_weight`` in guidance.toml weights the path cost of the models' default schedule; keyed poses
    keep the base weight (the path weight was tuned on paths alone)."""
    from dataclasses import replace as dc_replace

    path = ControlSpec(path=Path.per_frame(np.stack([np.zeros(40), np.linspace(0, 1, 40)], -1)))
    keys = ControlSpec(keyframes=Keyframes.make([0], straight_walk(1)))
    monkeypatch.setattr(pipe, "calibration", dc_replace(pipe.calibration, control_path_weight=5.0))
    hook = pipe.make_constraints(torch.tensor([40, 40]), [path, keys], list(range(STEPS)))
    assert hook.schedule.path_weight == 5.0 and hook.schedule.base_weight == 2.0
    assert torch.allclose(hook.kind_weight("path"), torch.full((2,), 2.5))
    assert torch.allclose(hook.kind_weight("keyframes"), torch.ones(2))


def test_a_free_sample_in_a_constrained_batch_is_untouched(pipe):
    spec = ControlSpec(path=Path.per_frame(np.stack([np.zeros(40), np.linspace(0, 1, 40)], -1)))
    alone = pipe([PROMPT], [40], [5], CFG).features
    mixed = pipe([PROMPT, PROMPT], [40, 40], [5, 6], CFG, control=[None, spec]).features
    assert torch.allclose(mixed[0], alone[0], atol=1e-5)


def test_keyframes_are_met_better_than_free_and_exactly_after_the_warp(pipe):
    source = generate_controlled(pipe, ["a person turns to the left."], [40], [9], [None], CFG)[0].joints
    start, end = source[5], source[30] + np.array([0.8, 0.0, 0.5])
    spec = ControlSpec(keyframes=Keyframes.make([0, 39], np.stack([start, end])))
    free = pipe([PROMPT], [40], [1], CFG, return_joints=True).joints[0]
    free = spec.placement().to_world(free)
    guided = generate_controlled(pipe, [PROMPT], [40], [1], [spec], CFG, exact_keys=False)[0].joints
    exact = generate_controlled(pipe, [PROMPT], [40], [1], [spec], CFG)[0].joints

    def err(j):
        return np.linalg.norm(j[[0, 39]] - np.stack([start, end]), axis=-1).mean()
    assert err(guided) < 0.5 * err(free), (err(guided), err(free))
    assert err(exact) < 1e-4


def test_loop_closes_the_seam_better_than_free_and_reports_the_cycle(pipe):
    free = pipe([PROMPT] * 2, [41] * 2, [0, 1], CFG).features
    looped = pipe([PROMPT] * 2, [41] * 2, [0, 1], CFG, control=ControlSpec(loop=True)).features
    norm = pipe.normalizer.normalize

    def gap(f):
        return float((norm(f[:, 40]) - norm(f[:, 0])).pow(2).mean())
    assert gap(looped) < 0.3 * gap(free), (gap(looped), gap(free))
    motion = generate_controlled(pipe, [PROMPT], [40], [0], [ControlSpec(loop=True)], CFG, in_place=True)[0]
    assert motion.joints.shape == (40, 22, 3) and motion.root_track.shape == (40, 3) and motion.cycle is not None
    assert np.allclose(motion.joints[:, 0, [0, 2]], 0, atol=1e-6)
    placed = motion.joints.copy()
    placed[..., 0] += motion.root_track[:, None, 0]
    placed[..., 2] += motion.root_track[:, None, 1]
    gaps = loop_seam_gaps(placed, motion.cycle)
    assert gaps["position_cm"] < 3 * gaps["inside_median_cm"] + 1.0, gaps
    with pytest.raises(ValueError, match="loop: a looped clip needs one extra frame"):
        generate_controlled(pipe, [PROMPT], [pipe.max_frames], [0], [ControlSpec(loop=True)], CFG)


def test_motion_space_root_inpainting_puts_the_root_on_the_path():
    """MDM-style generator (a real, untrained motion denoiser): with the final inpainting the integrated root
    lies on the path whatever the network does; without any constraint it does not."""
    from realign_core.diffusion.generators import MotionSpaceGenerator
    from realign_core.diffusion.sampling import NoiseSchedule
    from realign_core.guidance.constraints import ConstraintSchedule
    from realign_core.models.motion_denoiser import MotionDenoiser, MotionDenoiserConfig
    from realign_core.motion.normalization import Normalizer, mean_std

    torch.manual_seed(0)
    walks = [joints_to_features(straight_walk(60)), joints_to_features(straight_walk(50)[:, :, [2, 1, 0]])]
    net = MotionDenoiser(MotionDenoiserConfig(width=32, heads=2, layers=1, ff=64, dropout=0.0, downsample=2))
    gen = MotionSpaceGenerator(net, Normalizer(*mean_std(walks)), NoiseSchedule.make("cosine", 1000), "sample")
    pipe = TextToMotionPipeline(gen)
    path = Path.from_points([[0, 0], [0, 1.0], [1.0, 1.5]], [0, 1.0, 1.95])
    spec = ControlSpec(path=path)
    free = spec.placement().to_world(pipe([PROMPT], [40], [0], CFG, return_joints=True).joints[0])
    exact = pipe([PROMPT], [40], [0], CFG, return_joints=True, control=spec,
                 constraint_schedule=ConstraintSchedule(inpaint_final=True)).joints[0]
    assert np.abs(exact[:, 0, [0, 2]] - path.xz[:40]).max() < 1e-3
    assert np.abs(free[:, 0, [0, 2]] - path.xz[:40]).max() > 0.1
