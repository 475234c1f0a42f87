"""The few-step generator: low-rank adapters, latent consistency distillation and the 'lcm' sampler
(realign_core/models/low_rank.py, training/consistency_objective.py, training/tasks/denoiser_lcm.py,
models/consistency_denoiser.py), on real tiny models trained in-test."""
from __future__ import annotations

import shutil

import pytest
import torch

from realign_core.diffusion.sampling import NoiseSchedule, denoise_loop
from realign_core.diffusion.schedulers import LibraryConfig, LibraryScheduler
from realign_core.models.consistency_denoiser import load_consistency_denoiser
from realign_core.models.latent_denoiser import DenoiserConfig, LatentDenoiser, load_denoiser
from realign_core.models.low_rank import LowRankAdapter, adaptable_weights, weights_fingerprint
from realign_core.pipeline import SamplingConfig, TextToMotionPipeline
from realign_core.training.consistency_objective import ConsistencyConfig, ConsistencyObjective, boundary_scalings

PROMPTS = ["a person walks forward.", "a person jumps in place."]
FRAMES, SEEDS = [40, 60], [5, 6]


def _inputs(batch: int = 2, tokens: int = 5, dim: int = 8):
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(batch, tokens, dim, generator=gen)
    return z, torch.tensor([999, 259])[:batch], torch.randn(batch, 384, generator=gen)


def _denoiser() -> LatentDenoiser:
    torch.manual_seed(0)
    return LatentDenoiser(DenoiserConfig(latent_tokens=0, latent_dim=8, width=32, heads=2, layers=3, ff=64,
                                         dropout=0.0)).eval()


def test_adapter_starts_as_the_base_and_merges_to_the_same_function():
    base = _denoiser()
    z, t, text = _inputs()
    adapter = LowRankAdapter(base, rank=4, alpha=8.0).eval()
    torch.testing.assert_close(adapter(z, t, text), base(z, t, text), rtol=0, atol=1e-6)   # up = 0: the base
    assert set(adapter.state_dict()) == {f"{side}.{n.replace('.', '__')}" for side in ("up", "down")
                                         for n in adaptable_weights(base)}    # only the factors are saved
    with torch.no_grad():
        for p in adapter.up.values():
            p.normal_(0, 0.05)
    before = weights_fingerprint(base)
    out = adapter(z, t, text)
    assert not torch.allclose(out, base(z, t, text))
    torch.testing.assert_close(adapter.merged()(z, t, text), out, rtol=1e-5, atol=1e-5)
    assert weights_fingerprint(base) == before                              # the base itself never changes
    with pytest.raises(ValueError, match="rank must be >= 1"):
        LowRankAdapter(base, rank=0, alpha=1.0)
    with pytest.raises(ValueError, match="not 2-D weights"):
        LowRankAdapter(base, 2, 2.0, names=["null_text"])


def test_boundary_condition_and_the_teachers_step_are_ddim():
    """c_skip(0) = 1, c_out(0) = 0 (f(x, 0) = x), c_skip ~ 0 far from 0; the teacher's guided step from t to
    t - k is diffusers' DDIM step on the 50-step grid for an x0 model that ignores its input."""
    c_skip, c_out = boundary_scalings(torch.tensor([0, 19, 999]), 10.0)
    assert c_skip[0] == 1 and c_out[0] == 0 and c_skip[2] < 1e-4 and c_out[2] > 0.999
    schedule = NoiseSchedule.make("scaled_linear")
    objective = ConsistencyObjective(schedule, ConsistencyConfig(cfg_scale=2.0), "sample")
    assert objective.grid.tolist()[:2] == [19, 39] and objective.grid[-1] == 999 and objective.skip == 20
    t, s = objective.draw_timesteps(64, torch.Generator().manual_seed(0))
    assert torch.equal(s, (t - 20).clamp(min=0)) and set(t.tolist()) <= set(objective.grid.tolist())
    cond, uncond = torch.full((1, 3, 4), 0.5), torch.full((1, 3, 4), -0.25)

    def teacher(z, t, text, use, tokens):         # x0 of the conditional and unconditional branches
        return torch.where(use[:, None, None], cond.expand_as(z), uncond.expand_as(z))

    z_t, tokens = torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(1)), torch.ones(1, 3, dtype=torch.bool)
    got = objective.teacher_step(teacher, z_t, torch.tensor([519]), torch.tensor([499]), torch.zeros(1, 384), tokens)
    ref = LibraryScheduler("ddim", schedule, LibraryConfig(prediction_type="sample", steps_offset=19))
    ref.set_timesteps(50)                        # timesteps 999, 979, ..., 19: the grid's
    for t_run in ref.timesteps:
        out = ref.step(uncond + 2.0 * (cond - uncond), t_run, z_t)
        if t_run == 519:
            break
    torch.testing.assert_close(got, out.prev_sample, rtol=1e-5, atol=1e-5)


def test_lcm_sampler_closed_form_and_per_sample_noise():
    """One 'lcm' step is c_skip x + c_out x0(x), re-noised to the next timestep; sample i's result does not
    depend on the rest of the batch (one generator per sample)."""
    schedule = NoiseSchedule.make("scaled_linear")
    target = torch.linspace(-1, 1, 12).reshape(1, 3, 4)

    def model_fn(x, t):
        return target.expand_as(x)

    sampler = LibraryScheduler("lcm", schedule, LibraryConfig(prediction_type="sample"))
    assert sampler.set_timesteps(4) == [999, 759, 499, 259]
    x = torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(3))
    out = sampler.step(target, 999, x, [torch.Generator().manual_seed(0)])
    c_skip, c_out = boundary_scalings(torch.tensor([999]), 10.0)
    torch.testing.assert_close(out.pred_x0, c_skip * x + c_out * target)
    abar = schedule.alphas_cumprod[759].float()
    noise = torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.prev_sample, abar.sqrt() * out.pred_x0 + (1 - abar).sqrt() * noise)

    def run(batch_seeds):
        sampler.set_timesteps(4)
        gens = [torch.Generator().manual_seed(s) for s in batch_seeds]
        return denoise_loop(model_fn, sampler, (len(batch_seeds), 3, 4), gens)

    assert torch.equal(run([7, 8])[1], run([8])[0])


@pytest.fixture(scope="module")
def lcm_root(tiny_generator):
    """The tiny generator with its distilled consistency denoiser (conftest trains denoiser_lcm)."""
    return tiny_generator[0]


def test_distillation_lowers_the_validation_loss_and_ships_only_the_adapter(lcm_root, synthetic_dataset, one_thread):
    from realign_core.training.config import load_config
    from realign_core.training.registry import make_task
    from realign_core.training.trainer import Trainer
    from tests.conftest import REPO_ROOT

    section, cfg = load_config(REPO_ROOT / "configs" / "tiny.toml", "denoiser_lcm")
    task = make_task("denoiser_lcm", section, synthetic_dataset, lcm_root, "[denoiser_lcm.model]", cfg)
    trainer = Trainer(task, synthetic_dataset, lcm_root / "scratch_lcm", cfg, progress=False)
    fresh = task.validate(task.build_model(), trainer.val_loader())["val_consistency"]
    ckpt = torch.load(lcm_root / "denoiser_lcm" / "best.pt", weights_only=False)
    assert ckpt["metrics"]["val_consistency"] < fresh                  # distillation made the student consistent
    assert all(k.startswith(("up.", "down.")) for k in ckpt["model"])    # the teacher's weights are not in it
    teacher, _ = load_denoiser(lcm_root / "denoiser" / "best.pt")
    assert ckpt["config"]["teacher_fingerprint"] == weights_fingerprint(teacher)
    student, _ = load_consistency_denoiser(lcm_root / "denoiser_lcm" / "best.pt", teacher)
    assert isinstance(student, LatentDenoiser) and not torch.equal(student.out.weight, teacher.out.weight)


def test_lcm_sampler_in_the_pipeline_and_its_errors(lcm_root, tmp_path):
    pipe = TextToMotionPipeline.from_checkpoints(lcm_root, reward_kind=None)
    outs = {n: pipe(PROMPTS, FRAMES, SEEDS, SamplingConfig("lcm", n)).features for n in (1, 2, 4)}
    assert all(torch.isfinite(f).all() for f in outs.values())
    assert not torch.equal(outs[1], outs[4])
    again = pipe(PROMPTS, FRAMES, SEEDS, SamplingConfig("lcm", 4)).features
    assert torch.equal(again, outs[4])                                   # seeded: the same motions again
    with pytest.raises(ValueError, match="CFG 7.5 distilled in; got 5"):
        pipe(PROMPTS, FRAMES, SEEDS, SamplingConfig("lcm", 4, cfg_scale=5.0))
    # an adapter distilled from another denoiser is refused by name, not silently applied
    other = tmp_path / "other"
    for kind in ("vae", "denoiser_lcm"):
        shutil.copytree(lcm_root / kind, other / kind)
    teacher, ckpt = load_denoiser(lcm_root / "denoiser" / "best.pt")
    ckpt["model"] = {k: v + 0.01 if k == "out.bias" else v for k, v in ckpt["model"].items()}
    (other / "denoiser").mkdir()
    torch.save(ckpt, other / "denoiser" / "best.pt")
    changed = TextToMotionPipeline.from_checkpoints(other, reward_kind=None)
    with pytest.raises(ValueError, match="distilled from a denoiser with fingerprint .* distil it again"):
        changed(PROMPTS, FRAMES, SEEDS, SamplingConfig("lcm", 4))
    assert torch.isfinite(changed(PROMPTS, FRAMES, SEEDS, SamplingConfig("ddim", 4)).features).all()
    shutil.rmtree(other / "denoiser_lcm")
    with pytest.raises(FileNotFoundError, match="realign train denoiser_lcm"):
        TextToMotionPipeline.from_checkpoints(other, reward_kind=None)(PROMPTS, FRAMES, SEEDS,
                                                                       SamplingConfig("lcm", 4))


def test_judging_the_consistency_model_records_its_own_epoch(tiny_stack):
    """`realign eval --judge-val --sampler lcm` scores the distilled model and names its epoch, not the teacher's."""
    from realign_core.evaluation.generator_selection import judge_generator

    data, root = tiny_stack
    lcm = judge_generator(root, data, prompts=16, steps=2, judge_kind="reward_plain", sampler="lcm")
    ddim = judge_generator(root, data, prompts=16, steps=2, judge_kind="reward_plain", sampler="ddim")
    lcm_epoch = torch.load(root / "denoiser_lcm" / "best.pt", weights_only=False)["epoch"]
    teacher_epoch = torch.load(root / "denoiser" / "best.pt", weights_only=False)["epoch"]
    assert (lcm["epoch"], ddim["epoch"]) == (lcm_epoch, teacher_epoch) and lcm_epoch != teacher_epoch
    assert lcm["judge_fid"] != ddim["judge_fid"] and 0.0 <= lcm["judge_r1"] <= 1.0


def test_controlled_takes_run_with_the_consistency_sampler(lcm_root):
    """A path and a looped take with the 'lcm' sampler (the add-on's fast draft of a controlled take): the
    constraint hook runs after its steps and a loop still closes exactly after the warp."""
    import numpy as np

    from realign_core.control.motion import generate_controlled
    from realign_core.guidance.control_spec import ControlSpec, Path

    pipe = TextToMotionPipeline.from_checkpoints(lcm_root, reward_kind=None)
    specs = [ControlSpec(path=Path.from_points([[0.0, 0.0], [0.0, 1.0]], [0.0, 1.95])), ControlSpec(loop=True)]
    done = generate_controlled(pipe, PROMPTS, [40, 40], SEEDS, specs, SamplingConfig("lcm", 2))
    assert all(np.isfinite(m.joints).all() and m.joints.shape == (40, 22, 3) for m in done)
    assert done[1].cycle is not None
