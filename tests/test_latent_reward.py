"""The latent-space step-aware reward model: trained in-test on the tiny generator's latents, it retrieves,
guides without a single VAE decode in the guided steps, and strength 0 stays bit-identical."""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from dataclasses import replace

import pytest
import torch
from torch.utils.data import DataLoader

from realign_core.data.dataset import MotionTextDataset, collate
from realign_core.guidance.reward_guidance import GuidanceSettings
from realign_core.models.latent_reward import check_matches_generator, load_latent_reward_checkpoint
from realign_core.models.layout import checkpoint_path
from realign_core.pipeline import SamplingConfig, TextToMotionPipeline
from realign_core.training.config import load_config
from realign_core.training.registry import make_task
from realign_core.training.trainer import Trainer
from tests.conftest import REPO_ROOT

PROMPTS = ["a person walks forward.", "a person jumps up and down."]
FRAMES, SEEDS = [40, 60], [1, 2]
CFG = SamplingConfig(steps=8)
LATENT = GuidanceSettings(strength=1.0, eta=0.0, reward_space="latent")


@pytest.fixture(scope="module")
def latent_root(tiny_generator, synthetic_dataset, tmp_path_factory):
    """The tiny VAE + denoiser with a latent reward trained on their latents (configs/tiny.toml)."""
    root = tmp_path_factory.mktemp("tiny_latent")
    for kind in ("vae", "denoiser"):
        shutil.copytree(tiny_generator[0] / kind, root / kind)
    section, cfg = load_config(REPO_ROOT / "configs" / "tiny.toml", "latent_reward")
    task = make_task("latent_reward", section, synthetic_dataset, root, "latent_reward", cfg)
    summary = Trainer(task, synthetic_dataset, root / "latent_reward", cfg, progress=False).fit()
    return root, task, summary


@pytest.fixture(scope="module")
def pipe(latent_root):
    return TextToMotionPipeline.from_checkpoints(latent_root[0])


@contextmanager
def counted_decodes(pipe: TextToMotionPipeline):
    """Count calls of the generator's VAE decoder (the real one runs; the count is all that is added)."""
    vae = pipe.generator.vae
    calls = {"n": 0}
    original = vae.decode

    def decode(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    vae.decode = decode
    try:
        yield calls
    finally:
        del vae.decode


def test_latent_reward_trains_and_retrieves_above_chance(latent_root, synthetic_dataset):
    root, task, summary = latent_root
    model, ckpt = load_latent_reward_checkpoint(checkpoint_path(root, "latent_reward"))
    den = torch.load(checkpoint_path(root, "denoiser"), weights_only=False)["config"]
    assert ckpt["config"]["latent_scale"] == den["latent_scale"] and ckpt["config"]["schedule"] == den["schedule"]
    assert model.config.feature_dim == 16 and model.config.frames_per_token == 4    # the tiny VAE's layout
    val = MotionTextDataset(synthetic_dataset, "val")
    metrics = task.validate(model, DataLoader(val, batch_size=8, collate_fn=collate))
    chance = 1 / len(val)                                      # 8 classes, one val clip each
    assert metrics["t2m_r1"] > chance + 0.2, metrics
    assert metrics["t500_t2m_r1"] > chance, metrics
    assert summary["best"] == pytest.approx(max(metrics["select_t2m_r1"], summary["best"]))


def test_strength_zero_is_bit_identical_to_the_baseline(pipe, latent_root):
    plain = TextToMotionPipeline.from_checkpoints(latent_root[0], reward_kind=None)
    assert pipe.latent_reward is not None and plain.latent_reward is None and not pipe.has_reward
    base = plain(PROMPTS, FRAMES, SEEDS, CFG).features
    for settings in (None, replace(LATENT, strength=0.0), replace(LATENT, mu=0.0)):
        assert torch.equal(pipe(PROMPTS, FRAMES, SEEDS, CFG, settings).features, base)
    guided = pipe(PROMPTS, FRAMES, SEEDS, CFG, replace(LATENT, strength=50.0))
    assert not torch.allclose(guided.features, base) and len(guided.guidance.steps) == CFG.steps


def test_latent_guidance_raises_its_reward_and_never_decodes(pipe):
    with counted_decodes(pipe) as calls:
        pipe(PROMPTS, FRAMES, SEEDS, CFG, None)
        unguided = calls["n"]
        weak = pipe(PROMPTS, FRAMES, SEEDS, CFG, replace(LATENT, strength=1e-9)).guidance.steps
        strong = pipe(PROMPTS, FRAMES, SEEDS, CFG, replace(LATENT, strength=50.0)).guidance.steps
    assert unguided == 1                          # the final decode of the sample
    assert calls["n"] == 3 * unguided             # guided runs: still only the final decode each
    assert strong[-1]["reward_t"] == 0 and strong[0]["reward_t"] > strong[-1]["reward_t"]
    assert strong[-1]["t2m"] > weak[-1]["t2m"] + 0.05, (weak[-1], strong[-1])


def test_latent_gradient_raises_the_reward_at_every_noise_level(pipe):
    lengths = torch.tensor(FRAMES)
    sampler = pipe.make_sampler(CFG)
    hook = pipe.make_guidance(PROMPTS, lengths, LATENT, sampler.timesteps)
    assert hook.latent and hook.reward_t[:-1] == sampler.timesteps[1:]     # the generator's own schedule
    x = torch.randn(pipe.generator.state_shape(2), generator=torch.Generator().manual_seed(0))
    for index in (0, 3, 7):
        t_r = hook.reward_t[index]
        grad = hook.gradient(x, t_r)
        norms = grad.flatten(1).norm(dim=1)
        assert torch.isfinite(grad).all() and (norms > 0).all()
        real = hook.mask[..., None]                          # padded latent tokens get no gradient
        assert float(grad.masked_fill(real, 0).abs().max()) == 0.0
        with torch.no_grad():
            before = hook.rewards(x, t_r)[0]
            after = hook.rewards(x + 1e-2 * grad / norms.max(), t_r)[0]
        assert (after > before).all()


def test_latent_series_of_the_benchmark_has_no_decoder_in_guided_steps(pipe):
    from realign_core.evaluation.benchmark.runs import bench_latency

    rows = bench_latency(pipe, batch_sizes=(1,), frames=40, steps=4, guided_steps=(0, None), repeats=1,
                         warmup=0, base=LATENT, reward_spaces=("latent",))
    unguided, guided = rows
    assert unguided["reward_space"] == "-" and guided["reward_space"] == "latent"
    assert guided["decoder_calls"] == unguided["decoder_calls"] == 1
    assert guided["reward_calls"] == 4 and guided["reward_s"] > 0
    with pytest.raises(ValueError, match="reward_space 'motion' need reward/best.pt"):
        bench_latency(pipe, batch_sizes=(1,), frames=40, steps=4, guided_steps=(2,), repeats=1, warmup=0)


def test_errors_name_the_field(pipe, latent_root, synthetic_dataset, tiny_generator):
    with pytest.raises(ValueError, match="guidance.reward_space"):
        GuidanceSettings(reward_space="pixels")
    with pytest.raises(ValueError, match="guidance.eta: .*latent_reward/bank.pt"):
        pipe(PROMPTS[:1], [40], [1], CFG, replace(LATENT, eta=1.0))
    no_latent = TextToMotionPipeline.from_checkpoints(tiny_generator[0])
    with pytest.raises(ValueError, match="guidance.reward_space: .*realign train latent_reward"):
        no_latent(PROMPTS[:1], [40], [1], CFG, LATENT)
    with pytest.raises(ValueError, match=r"\[x\]: latent_scale, schedule come from"):
        make_task("latent_reward", {"latent_scale": 2.0, "schedule": "linear"}, synthetic_dataset,
                  latent_root[0], "[x]")
    ckpt = torch.load(checkpoint_path(latent_root[0], "latent_reward"), weights_only=False)
    with pytest.raises(ValueError, match="another VAE or denoiser"):
        check_matches_generator(ckpt["config"], 2 * ckpt["config"]["latent_scale"], (49, 16), "lr.pt")


def test_distillation_pulls_the_similarities_towards_the_teacher(latent_root, synthetic_dataset, tiny_generator):
    """The optional distillation term: finite, differentiable, and minimising it alone reduces it."""
    from realign_core.models.reward_model import RewardModel, RewardModelConfig
    from realign_core.training.tasks.latent_reward import LatentRewardTask

    root, task, _ = latent_root
    torch.manual_seed(0)
    teacher = RewardModel(RewardModelConfig(latent_dim=32, heads=2, ff=64, motion_layers=1, text_layers=1))
    distilling = LatentRewardTask(replace(task.config, distill_weight=1.0), checkpoint_path(root, "vae"),
                                  teacher=teacher)
    batch = collate([MotionTextDataset(synthetic_dataset, "train")[i] for i in range(0, 32, 4)])
    model = distilling.build_model()
    loss, parts = distilling.training_loss(model, batch, 0)             # the task's loss carries the term
    _, plain_parts = task.training_loss(model, batch, 0)
    assert torch.isfinite(loss) and parts["distill"] > 0 and "distill" not in plain_parts
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    values = []
    for _step in range(25):                                              # minimise the term alone
        distill = distilling.distillation(*_posteriors(model, distilling, batch), batch)
        values.append(float(distill.detach()))
        opt.zero_grad()
        distill.backward()
        opt.step()
    assert values[-1] < 0.5 * values[0], values
    with pytest.raises(FileNotFoundError, match="distill_weight > 0 needs the motion-space reward"):
        make_task("latent_reward", {"distill_weight": 1.0}, synthetic_dataset, tiny_generator[0], "[x]")


def _posteriors(model, task, batch):
    """The student's (text mu, latent mu) of a batch's clean latents, in training mode."""
    latent = task.latent_batch(batch, sample=False)
    return model.text_posterior(batch["captions"])[0], model.motion_posterior(latent["features"], latent["mask"], 0)[0]


def test_cached_posteriors_give_the_latents_of_the_encoder(latent_root, synthetic_dataset):
    from realign_core.training.tasks.latent_reward import LatentRewardTask

    root, task, _ = latent_root
    cached = LatentRewardTask(task.config, checkpoint_path(root, "vae"), synthetic_dataset, cache_latents=True)
    assert cached.cache is not None and len(cached.cache) > 0
    batch = collate([MotionTextDataset(synthetic_dataset, "train")[i] for i in (0, 5, 9)])
    a, b = cached.latent_batch(batch, sample=False), task.latent_batch(batch, sample=False)
    assert torch.equal(a["mask"], b["mask"]) and torch.allclose(a["features"], b["features"], atol=1e-5)


def test_latent_bank_enables_the_motion_to_motion_reward(latent_root, synthetic_dataset, tmp_path):
    """`realign bank --kinds latent_reward` embeds the training clips through the VAE; the bank retrieves a
    clip of the prompt's class and M2M-only latent guidance raises the M2M reward, still without decodes."""
    from realign_core.cli.main import main
    from realign_core.guidance.reward_bank import RewardBank
    from realign_core.models.layout import bank_path

    root = tmp_path / "models"
    shutil.copytree(latent_root[0], root)
    assert main(["bank", "--models", str(root), "--data", str(synthetic_dataset), "--kinds", "latent_reward"]) == 0
    bank = RewardBank.load(bank_path(root, "latent_reward"), checkpoint_path(root, "latent_reward"))
    train = MotionTextDataset(synthetic_dataset, "train")
    assert len(bank.ids) == len(train) and bank.embeddings.shape[1] == latent_root[1].config.latent_dim
    pipe = TextToMotionPipeline.from_checkpoints(root)
    m2m_only = replace(LATENT, mu=0.0, eta=1.0)
    with counted_decodes(pipe) as calls:
        weak = pipe(PROMPTS, FRAMES, SEEDS, CFG, replace(m2m_only, strength=1e-9)).guidance.steps
        strong = pipe(PROMPTS, FRAMES, SEEDS, CFG, replace(m2m_only, strength=50.0)).guidance.steps
    assert calls["n"] == 2                                     # the two final decodes only
    assert strong[-1]["m2m"] > weak[-1]["m2m"] + 0.05, (weak[-1], strong[-1])


def test_tuning_in_latent_space_writes_a_latent_calibration(latent_root, tiny_guided, synthetic_dataset, tmp_path):
    """`tune-guidance --reward-space latent`: every candidate is guided by the latent reward model and the
    winner's guidance.toml makes latent guidance the default of a freshly loaded pipeline."""
    from realign_core.evaluation.guidance_tuning import TuningConfig, tune, write_guidance_toml
    from realign_core.guidance.reward_guidance import GuidanceCalibration

    root = tmp_path / "models"
    shutil.copytree(latent_root[0], root)
    shutil.copytree(tiny_guided / "reward", root / "reward")
    shutil.copytree(tiny_guided / "reward", root / "reward_plain")     # the judge: any motion-space reward
    from realign_core.cli.main import main
    assert main(["bank", "--models", str(root), "--data", str(synthetic_dataset), "--kinds", "latent_reward"]) == 0
    cfg = TuningConfig(scales=(1.0, 30.0), mixes=(), guided_steps_options=(2,), prompts=8, steps=4, batch=8,
                       kin_samples=0, reward_space="latent")
    result = tune(root, synthetic_dataset, "mld", cfg)
    candidates = [r for stage in result["stages"] for r in stage]
    assert candidates and all(r["settings"]["reward_space"] == "latent" for r in candidates)
    assert result["baseline"]["settings"] is None
    write_guidance_toml(root / "guidance.toml", "mld", result["winner"], {"sampler": "ddim", "steps": 4})
    assert GuidanceCalibration.load(root / "guidance.toml", "mld").defaults.reward_space == "latent"
    pipe = TextToMotionPipeline.from_checkpoints(root)
    with counted_decodes(pipe) as calls:
        out = pipe(PROMPTS, FRAMES, SEEDS, pipe.default_sampling, replace(pipe.calibration.defaults, eta=0.0))
    assert calls["n"] == 1 and out.guidance.steps       # guided by default, no decoder in the loop
