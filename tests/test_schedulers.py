"""diffusers' schedulers behind our sampler interface (realign_core.diffusion.schedulers), on the tiny trained models
(their closed-form checks on an oracle denoiser are in test_diffusion.py)."""
from __future__ import annotations

import pytest
import torch

from realign_core.cli.evaluate import SAMPLER_CHOICES
from realign_core.diffusion.sampling import NoiseSchedule, denoise_loop
from realign_core.diffusion.schedulers import LIBRARY_SAMPLERS, LibraryConfig, LibraryScheduler
from realign_core.guidance.reward_guidance import GuidanceSettings
from realign_core.pipeline import SAMPLERS, SPACING, SamplingConfig, TextToMotionPipeline
from server.protocol import SAMPLERS as SERVER_SAMPLERS

PROMPTS = ["a person walks forward.", "a person jumps in place."]
FRAMES, SEEDS = [40, 60], [5, 6]


@pytest.fixture(scope="module")
def plain(tiny_generator):
    return TextToMotionPipeline.from_checkpoints(tiny_generator[0], reward_kind=None)


@pytest.fixture(scope="module")
def guided(tiny_guided):
    return TextToMotionPipeline.from_checkpoints(tiny_guided)


def _latents(pipe: TextToMotionPipeline, sampler, seed: int = 0) -> torch.Tensor:
    """Final latent states (2, Lz, D) of the tiny generator with this sampler (its timesteps set)."""
    gen = pipe.generator
    text = pipe.text.encode_sentences(PROMPTS)
    with torch.no_grad():
        return denoise_loop(gen.model_fn(text, torch.tensor(FRAMES)), sampler, gen.state_shape(2),
                            [torch.Generator().manual_seed(seed + i) for i in range(2)], gen.default_cfg)


def test_diffusers_ddim_is_an_alias_of_ddim(plain):
    """"diffusers-ddim" (protocol v1 clients may send it) runs the same sampler as "ddim"."""
    a = plain(PROMPTS, FRAMES, SEEDS, SamplingConfig("ddim", 10)).features
    b = plain(PROMPTS, FRAMES, SEEDS, SamplingConfig("diffusers-ddim", 10)).features
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_runs_with_guidance_and_strength_zero_is_the_plain_sampler(guided, name):
    cfg = SamplingConfig(name, 8)
    base = guided(PROMPTS, FRAMES, SEEDS, cfg).features
    assert torch.isfinite(base).all()
    off = guided(PROMPTS, FRAMES, SEEDS, cfg, GuidanceSettings(strength=0.0))
    assert torch.equal(off.features, base) and off.guidance is None       # strength 0 = the plain sampler
    out = guided(PROMPTS, FRAMES, SEEDS, cfg, GuidanceSettings(strength=5.0))
    assert torch.isfinite(out.features).all() and not torch.allclose(out.features, base)
    reward_t = [s["reward_t"] for s in out.guidance.steps]
    assert len(reward_t) == 8                                           # the hook ran after every step
    assert reward_t == sorted(reward_t, reverse=True) and reward_t[-1] == 0 and reward_t[0] > 0
    assert max(reward_t) < guided.reward.schedule.num_train_steps


def test_unipc_corrector_drops_a_guidance_update():
    """Why guided runs turn UniPC's corrector off: it rebuilds x_t from the previous sample."""
    schedule = NoiseSchedule.make("scaled_linear")
    target = torch.linspace(-1, 1, 12).reshape(1, 3, 4)

    def model_fn(x, t):                       # an x0-predictor that ignores its input
        return target.expand_as(x)

    def recorder(shift: float, seen: list):
        def hook(i, t, x, x0):                # nudge the sample after step 2, record it after step 3
            seen.append(x)
            return x + shift if i == 2 else x
        return hook

    results = {}
    for corrector in (True, False):
        sampler = LibraryScheduler("unipc", schedule, LibraryConfig(prediction_type="sample", corrector=corrector))
        sampler.set_timesteps(6)
        plain, nudged = [], []
        denoise_loop(model_fn, sampler, (1, 3, 4), torch.Generator().manual_seed(0), guidance=recorder(0.0, plain))
        denoise_loop(model_fn, sampler, (1, 3, 4), torch.Generator().manual_seed(0), guidance=recorder(1.0, nudged))
        results[corrector] = (nudged[3] - plain[3]).abs().max().item()
    assert results[True] == 0.0 and results[False] > 0.1


def test_dpmsolver_reaches_the_50_step_result_in_fewer_steps(plain):
    """Distance to DDIM-50's latents: DPM-Solver++ at 10 and 20 steps is closer than DDIM at the same count.

    All with trailing spacing (every run starts at t = T-1).  With leading spacing the start moves with
    the step count (t = 900 for 10 steps, 980 for 50) and that difference swamps the solver's accuracy.
    """
    schedule = plain.generator.schedule
    common = {"prediction_type": plain.generator.prediction_type, "timestep_spacing": "trailing"}

    def run(name: str, steps: int) -> torch.Tensor:
        sampler = LibraryScheduler(name, schedule, LibraryConfig(**common))
        sampler.set_timesteps(steps)
        return _latents(plain, sampler)

    ref = run("ddim", 50)
    for steps in (10, 20):
        ddim_err = (run("ddim", steps) - ref).norm()
        dpm_err = (run("dpmsolver++", steps) - ref).norm()
        assert dpm_err < 0.8 * ddim_err, (steps, float(dpm_err), float(ddim_err))


def test_sampler_names_and_order_errors():
    assert set(LIBRARY_SAMPLERS) <= set(SAMPLERS) == set(SPACING)
    assert SAMPLER_CHOICES == SAMPLERS == SERVER_SAMPLERS          # the CLI's and the server's torch-free copies
    schedule = NoiseSchedule.make("linear")
    with pytest.raises(ValueError, match="unknown library sampler"):
        LibraryScheduler("euler", schedule)
    sampler = LibraryScheduler("dpmsolver++", schedule)
    with pytest.raises(RuntimeError, match="set_timesteps"):
        sampler.step(torch.zeros(1, 2), 999, torch.zeros(1, 2))
    sampler.set_timesteps(5)
    with pytest.raises(ValueError, match="expected 800"):
        sampler.step(torch.zeros(1, 2), 600, torch.zeros(1, 2))
    with pytest.raises(ValueError, match="solver_order"):
        LibraryConfig(solver_order=4)
