"""The whole stack on a VAE with one latent per 2 frames (issue 11's ds2 latent space, configs/vae_ds2.toml) instead
of the shipped 4: real tiny models trained in-test (configs/tiny.toml with the VAE's downsample set to 2), then
every path a user reaches: odd clip lengths, latent-reward guidance without a decode, the 'lcm' sampler, paths,
exact keyed poses, loops and long sequences."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from realign_core.control.motion import generate_controlled
from realign_core.control.sequence import Segment, generate_sequence
from realign_core.guidance.control_spec import ControlSpec, Keyframes, Path
from realign_core.guidance.reward_guidance import GuidanceSettings
from realign_core.pipeline import SamplingConfig, TextToMotionPipeline
from realign_core.training.config import load_config
from realign_core.training.registry import make_task
from realign_core.training.trainer import Trainer
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPT = "a person walks forward."
CFG = SamplingConfig(steps=8)


@pytest.fixture(scope="module")
def ds2_root(synthetic_dataset, tmp_path_factory):
    """VAE (downsample 2), denoiser, consistency adapter and latent reward, each trained with configs/tiny.toml."""
    root = tmp_path_factory.mktemp("tiny_ds2")
    for kind in ("vae", "denoiser", "denoiser_lcm", "latent_reward"):
        section, cfg = load_config(REPO_ROOT / "configs" / "tiny.toml", kind)
        if kind == "vae":
            section = {**section, "downsample": 2}
        task = make_task(kind, section, synthetic_dataset, root, kind, cfg)
        Trainer(task, synthetic_dataset, root / kind, cfg, progress=False).fit()
    return root


@pytest.fixture(scope="module")
def pipe(ds2_root):
    return TextToMotionPipeline.from_checkpoints(ds2_root)


def test_the_latent_has_a_token_per_two_frames_and_odd_lengths_come_back_exact(pipe):
    assert pipe.generator.vae.cfg.downsample == 2
    out = pipe([PROMPT] * 3, [41, 45, 60], [0, 1, 2], CFG, return_joints=True)
    assert [j.shape[0] for j in out.joints] == [41, 45, 60]
    assert out.mask.sum(1).tolist() == [41, 45, 60]
    assert all(np.isfinite(j).all() for j in out.joints)
    assert torch.all(out.features[0, 41:] == 0)


def test_latent_reward_guidance_steers_and_the_consistency_sampler_runs(pipe):
    latent = GuidanceSettings(strength=1.0, eta=0.0, reward_space="latent")
    guided = pipe([PROMPT], [45], [3], CFG, guidance=latent)
    trace = guided.guidance
    assert trace is not None and trace.steps and np.isfinite(guided.features.numpy()).all()
    plain = pipe([PROMPT], [45], [3], CFG)
    assert not torch.allclose(plain.features, guided.features, atol=1e-4)
    fast = pipe([PROMPT], [45], [3], SamplingConfig(sampler="lcm", steps=2, cfg_scale=pipe.consistency_cfg))
    assert fast.mask.sum().item() == 45 and torch.isfinite(fast.features).all()


def test_paths_exact_keys_and_loops_work_on_the_finer_latent(pipe):
    path = Path.from_points([[0, 0], [0, 2.0]], [0, 2.2])
    spec = ControlSpec(path=path)
    walked = pipe([PROMPT], [45], [0], CFG, return_joints=True, control=spec).joints[0]
    free = spec.placement().to_world(pipe([PROMPT], [45], [0], CFG, return_joints=True).joints[0])

    def off_path(j):
        return np.linalg.norm(j[:, 0, [0, 2]] - path.xz[:45], axis=-1).mean()
    assert off_path(walked) < off_path(free), (off_path(walked), off_path(free))

    source = pipe([PROMPT], [45], [4], CFG, return_joints=True).joints[0]
    keys = ControlSpec(keyframes=Keyframes.make([0, 44], source[[0, 44]] + np.array([0.3, 0.0, 0.2])))
    exact = generate_controlled(pipe, [PROMPT], [45], [1], [keys], CFG)[0].joints
    assert np.linalg.norm(exact[[0, 44]] - keys.keyframes.joints, axis=-1).max() < 1e-4

    looped = generate_controlled(pipe, [PROMPT], [40], [0], [ControlSpec(loop=True)], CFG, in_place=True)[0]
    assert looped.joints.shape == (40, 22, 3) and looped.cycle is not None


def test_a_long_sequence_is_continuous(pipe):
    segs = [Segment("a person walks forward.", 1.5), Segment("a person jumps up and down.", 1.25)]
    seq = generate_sequence(pipe, segs, seed=2, cfg=CFG, overlap=6)
    assert seq.joints.shape == (55, 22, 3) and np.isfinite(seq.joints).all()
    speed = np.linalg.norm(np.diff(seq.joints, axis=0), axis=-1).mean(-1)
    start = seq.segments[1][0]
    assert speed[start - 1] < 3 * np.median(speed) + 0.02, (speed[start - 1], np.median(speed))
