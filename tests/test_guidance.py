"""ReAlign reward guidance on a real tiny generator + reward model (trained in the session fixture)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from realign_core.diffusion.sampling import NoiseSchedule
from realign_core.guidance.reward_bank import RewardBank
from realign_core.guidance.reward_guidance import (
    GuidanceCalibration,
    GuidanceSettings,
    guided_step_indices,
    matching_timesteps,
)
from realign_core.models.layout import bank_path
from realign_core.pipeline import SamplingConfig, TextToMotionPipeline

PROMPTS = ["a person walks forward.", "a person walks and turns left."]
CFG = SamplingConfig(steps=8)


@pytest.fixture(scope="module")
def pipe(tiny_guided):
    return TextToMotionPipeline.from_checkpoints(tiny_guided)


def test_strength_zero_is_bit_identical_to_the_baseline(pipe, tiny_guided):
    plain = TextToMotionPipeline.from_checkpoints(tiny_guided, reward_kind=None)
    assert pipe.has_reward and not plain.has_reward
    base = plain(PROMPTS, [40, 60], [1, 2], CFG).features
    for settings in (None, GuidanceSettings(strength=0.0, mu=1.0, eta=1.0), GuidanceSettings(strength=5.0, mu=0, eta=0)):
        out = pipe(PROMPTS, [40, 60], [1, 2], CFG, settings).features
        assert torch.equal(out, base)
    guided = pipe(PROMPTS, [40, 60], [1, 2], CFG, GuidanceSettings(strength=5.0))
    assert not torch.allclose(guided.features, base)
    assert guided.guidance is not None and len(guided.guidance.steps) > 0   # the run's trace comes back with it
    assert plain(PROMPTS, [40, 60], [1, 2], CFG).guidance is None


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_guidance_is_per_sample(pipe, sampler):
    cfg = SamplingConfig(sampler=sampler, steps=8)
    settings = GuidanceSettings(strength=20.0)
    both = pipe(PROMPTS, [40, 60], [1, 2], cfg, settings).features
    first = pipe(PROMPTS[:1], [40], [1], cfg, settings).features
    second = pipe(PROMPTS[1:], [60], [2], cfg, settings).features
    assert torch.allclose(both[0, :40], first[0], atol=1e-4)
    assert torch.allclose(both[1, :60], second[0], atol=1e-4)
    # a duplicated sample gets the same update as alone: no averaging over the batch
    four = pipe(PROMPTS[:1] * 4, [40] * 4, [1] * 4, cfg, settings).features
    assert torch.allclose(four[3], first[0], atol=1e-4)


def test_reward_gradient_on_noisy_states_raises_the_reward(pipe):
    lengths = torch.tensor([40, 60])
    settings = GuidanceSettings(strength=1.0)
    sampler = pipe.make_sampler(CFG)
    hook = pipe.make_guidance(PROMPTS, lengths, settings, sampler.timesteps)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(pipe.generator.state_shape(2), generator=gen)
    for index in (0, 3, 7):                              # very noisy ... clean
        t_r = hook.reward_t[index]
        grad = hook.gradient(x, t_r)
        assert grad.shape == x.shape and torch.isfinite(grad).all()
        assert (grad.flatten(1).norm(dim=1) > 0).all()
        with torch.no_grad():
            before = hook.rewards(x, t_r)[0]
            after = hook.rewards(x + 1e-2 * grad / grad.flatten(1).norm(dim=1).max(), t_r)[0]
        assert (after > before).all()
    assert hook.reward_t[0] > hook.reward_t[3] > hook.reward_t[7] == 0


def test_guided_sampling_raises_the_final_reward(pipe):
    weak = pipe(PROMPTS, [40, 60], [3, 4], CFG, GuidanceSettings(strength=1e-9)).guidance.steps[-1]["t2m"]
    strong = pipe(PROMPTS, [40, 60], [3, 4], CFG, GuidanceSettings(strength=100.0)).guidance.steps[-1]["t2m"]
    assert strong > weak + 0.05


def test_bank_retrieves_the_clip_its_text_describes(tiny_guided, pipe):
    bank = RewardBank.load(bank_path(tiny_guided), tiny_guided / "reward" / "best.pt")
    reward = pipe.reward.model
    emb, index = bank.retrieve(reward.encode_text(["a person runs forward.", "a person walks backward."]))
    assert torch.allclose(emb, bank.embeddings[index])
    assert "run" in bank.captions[int(index[0])] and "back" in bank.captions[int(index[1])]
    with pytest.raises(ValueError, match="another checkpoint"):
        RewardBank.load(bank_path(tiny_guided), tiny_guided / "vae" / "best.pt")


def test_bank_stores_int8_rows_and_still_reads_fp16_banks(tmp_path):
    torch.manual_seed(0)
    emb = F.normalize(torch.randn(500, 64), dim=-1)
    bank = RewardBank(emb, [f"id{i}" for i in range(500)], [f"caption {i}" for i in range(500)], "abc")
    bank.save(tmp_path / "bank.pt")
    back = RewardBank.load(tmp_path / "bank.pt")
    assert torch.load(tmp_path / "bank.pt", weights_only=False)["embeddings_int8"].dtype == torch.int8
    assert (1 - F.cosine_similarity(back.embeddings, emb)).max() < 1e-4
    queries = F.normalize(torch.randn(200, 64), dim=-1)
    agree = (back.retrieve(queries)[1] == bank.retrieve(queries)[1]).float().mean()
    assert agree >= 0.98, "top-1 retrieval changes only at near-ties"
    assert back.ids == bank.ids and back.captions == bank.captions and back.checkpoint_sha256 == "abc"
    torch.save({"embeddings": emb.half(), "ids": bank.ids, "captions": bank.captions}, tmp_path / "old.pt")
    assert torch.allclose(RewardBank.load(tmp_path / "old.pt").embeddings, emb, atol=1e-3)


def test_step_selection_and_noise_level_matching():
    assert guided_step_indices(50, None) == set(range(50))
    assert guided_step_indices(50, 0) == set()
    assert guided_step_indices(50, 5, "early") == {0, 1, 2, 3, 4}
    assert guided_step_indices(50, 5, "late") == {45, 46, 47, 48, 49}
    spread = guided_step_indices(50, 5)
    assert len(spread) == 5 and 0 in spread and 49 in spread
    cosine, linear = NoiseSchedule.make("cosine", 1000), NoiseSchedule.make("scaled_linear", 1000)
    assert matching_timesteps(linear, linear, [999, 500, 0, -1]) == [999, 500, 0, 0]
    matched = matching_timesteps(cosine, linear, [800, 400])
    for src, dst in zip([800, 400], matched):
        assert abs(float(cosine.alphas_cumprod[src]) - float(linear.alphas_cumprod[dst])) < 0.01


def test_settings_and_calibration_errors_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="guidance.strength"):
        GuidanceSettings(strength=float("nan"))
    with pytest.raises(ValueError, match="guidance.eta"):
        GuidanceSettings(eta=-1)
    with pytest.raises(ValueError, match="guidance.placement"):
        GuidanceSettings(placement="middle")
    path = tmp_path / "guidance.toml"
    path.write_text("[mld]\nscale = 40.0\nmu = 1.0\neta = 0.5\nguided_steps = 10\n")
    cal = GuidanceCalibration.load(path, "mld")
    assert cal.scale == 40.0 and cal.defaults == GuidanceSettings(strength=1.0, eta=0.5, guided_steps=10)
    assert GuidanceCalibration.load(path, "mdm") == GuidanceCalibration()
    path.write_text("[mld]\nscale = 40.0\nstrenght = 2\n")
    with pytest.raises(ValueError, match="strenght"):
        GuidanceCalibration.load(path, "mld")
    path.write_text('[mld]\nscale = 40.0\nsampler = "ddim"\nsteps = 10\ncontrol_steps = 50\n')
    cal = GuidanceCalibration.load(path, "mld")
    assert (cal.sampler, cal.steps, cal.control_steps) == ("ddim", 10, 50)
    path.write_text("[mld]\nscale = 40.0\nsteps = 0\n")
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        GuidanceCalibration.load(path, "mld")
    path.write_text("[mld]\nscale = 40.0\ncontrol_steps = 2.5\n")
    with pytest.raises(ValueError, match="control_steps must be a positive integer, got 2.5"):
        GuidanceCalibration.load(path, "mld")
    path.write_text("[mld]\nscale = 40.0\ncontrol_path_iterations = 144\n")
    assert GuidanceCalibration.load(path, "mld").control_path_iterations == 144
    path.write_text("[mld]\nscale = 40.0\ncontrol_path_iterations = 0\n")
    with pytest.raises(ValueError, match="control_path_iterations must be a positive integer, got 0"):
        GuidanceCalibration.load(path, "mld")
    path.write_text("[mld]\nscale = 40.0\ncontrol_path_weight = 3\n")
    assert GuidanceCalibration.load(path, "mld").control_path_weight == 3.0
    for bad in ("0", "-1.5", "true", '"3"'):
        path.write_text(f"[mld]\nscale = 40.0\ncontrol_path_weight = {bad}\n")
        with pytest.raises(ValueError, match="control_path_weight must be a number > 0, got"):
            GuidanceCalibration.load(path, "mld")


def test_realign_generate_writes_every_format(tiny_guided, tmp_path):
    """`realign generate` end to end: joints, features, BVH, SMPL and GIF per sample; errors name the field."""
    import numpy as np

    from realign_core.cli.main import main
    from realign_core.motion.features import features_to_joints

    out = tmp_path / "walk"
    args = ["generate", "a person walks forward.", "--models", str(tiny_guided), "--seconds", "2.5",
            "--seed", "7", "--samples", "2", "--strength", "5", "--steps", "4", "--smpl", "--gif", "-o", str(out)]
    assert main(args) == 0
    for k in (0, 1):
        joints = np.load(tmp_path / f"walk_s{k}.npy")
        feats = np.load(tmp_path / f"walk_s{k}_features.npy")
        assert joints.shape == (50, 22, 3) and feats.shape == (50, 263)
        assert np.allclose(features_to_joints(feats), joints, atol=1e-5)
        bvh = (tmp_path / f"walk_s{k}.bvh").read_text()
        assert bvh.startswith("HIERARCHY") and "Frames: 50" in bvh
        assert np.load(tmp_path / f"walk_s{k}_smpl.npz")["poses"].shape == (50, 72)
        assert (tmp_path / f"walk_s{k}.gif").stat().st_size > 0
    assert not np.allclose(np.load(tmp_path / "walk_s0.npy"), np.load(tmp_path / "walk_s1.npy"))
    with pytest.raises(SystemExit, match="seconds"):
        main(["generate", "walk", "--models", str(tiny_guided), "--seconds", "30", "-o", str(out)])


def test_guided_steps_override_of_realign_generate(pipe):
    from realign_core.cli.generate import GenerateRequest, parse_guided_steps, resolve_guidance

    assert parse_guided_steps("all") is None and parse_guided_steps("12") == 12 and parse_guided_steps(0) == 0
    for bad in ("-3", "half", "2.5"):
        with pytest.raises(ValueError, match="--guided-steps .*" + bad.replace(".", r"\.")):
            parse_guided_steps(bad)
    default = resolve_guidance(pipe, GenerateRequest("walk", strength=1.0))
    assert resolve_guidance(pipe, GenerateRequest("walk", strength=1.0, guided_steps="3")).guided_steps == 3
    assert resolve_guidance(pipe, GenerateRequest("walk", strength=1.0, guided_steps="all")).guided_steps is None
    assert resolve_guidance(pipe, GenerateRequest("walk", strength=1.0)).guided_steps == default.guided_steps
