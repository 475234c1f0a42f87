"""Noise schedules, the DDIM/DDPM samplers (the diffusers DDIMScheduler behind LibraryScheduler) checked against
the closed-form steps on an oracle denoiser, and the CFG denoising loop (realign_core.diffusion.sampling)."""
from __future__ import annotations

import math

import pytest
import torch

from realign_core.diffusion.sampling import (
    Cancelled,
    NoiseSchedule,
    SamplerConfig,
    cfg_combine,
    denoise_loop,
    randn,
)
from realign_core.diffusion.schedulers import LibraryConfig, LibraryScheduler

F64 = torch.float64
SCHED = NoiseSchedule.make("scaled_linear")


def _abar(t: torch.Tensor | int, like: torch.Tensor, schedule: NoiseSchedule = SCHED) -> torch.Tensor:
    """alphas_cumprod[t] shaped (B, 1, ...) like ``like`` -- written independently of the module's helpers."""
    t = torch.as_tensor(t).reshape(-1)
    a = schedule.alphas_cumprod[t].to(like.dtype)
    return a.reshape((-1,) + (1,) * (like.ndim - 1))


def oracle_eps(x_star: torch.Tensor):
    """The exact eps for data concentrated on x_star: (x_t - sqrt(abar) x*) / sqrt(1 - abar)."""
    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = _abar(t, x)
        return (x - a.sqrt() * x_star) / (1 - a).sqrt()
    return fn


def oracle_x0(x_star: torch.Tensor):
    """The exact x0 prediction for the same toy data set."""
    return lambda x, t: x_star.expand_as(x).clone()


def toy_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A nonlinear, per-sample (elementwise) stand-in for a trained eps-denoiser."""
    return 0.5 * torch.tanh(x) + 1e-3 * t.reshape((-1,) + (1,) * (x.ndim - 1)).to(x.dtype)


def toy_pair(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cond, uncond) outputs of a per-sample toy denoiser."""
    return toy_eps(x, t), 0.3 * torch.sin(x)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ddim(steps: int = 50, **kw) -> LibraryScheduler:
    s = LibraryScheduler("ddim", SCHED, LibraryConfig(**kw))
    s.set_timesteps(steps)
    return s


def ddpm(steps: int = 50, **kw) -> LibraryScheduler:
    s = LibraryScheduler("ddpm", SCHED, LibraryConfig(**kw))
    s.set_timesteps(steps)
    return s


# The library keeps its alphas_cumprod in float32, so float64 runs agree with the closed forms to ~1e-7.
TOL = 1e-6


# ----------------------------------------------------------------------------- schedules

def test_scaled_linear_matches_mld():
    b = SCHED.betas
    assert b.dtype == F64 and SCHED.alphas_cumprod.dtype == F64 and b.shape == (1000,)
    assert b[0].item() == pytest.approx(0.00085, rel=1e-12)
    assert b[-1].item() == pytest.approx(0.012, rel=1e-12)
    steps = b.sqrt().diff()
    assert torch.allclose(steps, steps[0].expand_as(steps), rtol=1e-9)  # linear in sqrt(beta)
    assert SCHED.alphas_cumprod[-1].item() == pytest.approx(0.004660, abs=2e-5)  # SD/MLD's known value


def test_linear_and_custom_betas():
    lin = NoiseSchedule.make("linear")
    assert lin.betas[0].item() == pytest.approx(1e-4) and lin.betas[-1].item() == pytest.approx(0.02)
    assert torch.allclose(lin.betas.diff(), torch.full((999,), 0.0199 / 999, dtype=F64))
    small = NoiseSchedule.make("scaled_linear", num_train_steps=10, beta_start=1e-4, beta_end=0.04)
    assert small.num_train_steps == 10 and small.betas[-1].item() == pytest.approx(0.04)


@pytest.mark.parametrize("kind", ["scaled_linear", "linear", "cosine"])
def test_alphas_cumprod_monotone_and_in_range(kind):
    s = NoiseSchedule.make(kind)
    ab = s.alphas_cumprod
    assert torch.all(ab.diff() < 0) and torch.all(ab > 0) and torch.all(ab < 1)
    assert torch.allclose(ab, torch.cumprod(1 - s.betas, 0))


def test_cosine_bounds_and_formula():
    s = NoiseSchedule.make("cosine")
    assert torch.all(s.betas > 0) and s.betas.max().item() == pytest.approx(0.999)
    f = lambda i: math.cos((i / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for i in (0, 100, 500, 900):
        assert s.alphas_cumprod[i].item() == pytest.approx(f(i + 1) / f(0), rel=1e-9)
    assert s.alphas_cumprod[0].item() > 0.9999 and s.alphas_cumprod[-1].item() < 1e-6


def test_bad_schedule_arguments():
    with pytest.raises(ValueError):
        NoiseSchedule.make("quadratic")
    with pytest.raises(ValueError):
        NoiseSchedule.make("cosine", beta_start=0.1)
    with pytest.raises(ValueError):
        NoiseSchedule.make("linear", beta_start=0.5, beta_end=1.5)


def test_add_noise_statistics():
    x0 = torch.full((200_000, 2), 2.0, dtype=F64)
    noise = torch.randn(x0.shape, generator=gen(0), dtype=F64)
    xt = SCHED.add_noise(x0, noise, torch.full((x0.shape[0],), 300))
    a = SCHED.alphas_cumprod[300].item()
    assert xt.mean().item() == pytest.approx(2.0 * math.sqrt(a), abs=0.01)
    assert xt.std().item() == pytest.approx(math.sqrt(1 - a), abs=0.01)


def test_add_noise_per_sample_timesteps_and_int():
    x0 = torch.randn(3, 4, 5, generator=gen(1))
    eps = torch.randn(3, 4, 5, generator=gen(2))
    t = torch.tensor([0, 500, 999])
    a = _abar(t, x0)
    assert torch.allclose(SCHED.add_noise(x0, eps, t), a.sqrt() * x0 + (1 - a).sqrt() * eps, atol=1e-6)
    a7 = SCHED.alphas_cumprod[7].item()
    assert torch.allclose(SCHED.add_noise(x0, eps, 7), math.sqrt(a7) * x0 + math.sqrt(1 - a7) * eps, atol=1e-6)


def test_predict_x0_and_eps_invert_add_noise():
    x0 = torch.randn(6, 3, 7, generator=gen(3), dtype=F64)
    eps = torch.randn(6, 3, 7, generator=gen(4), dtype=F64)
    t = torch.tensor([0, 1, 250, 500, 998, 999])
    xt = SCHED.add_noise(x0, eps, t)
    assert torch.allclose(SCHED.predict_x0(xt, eps, t), x0, atol=1e-10)
    assert torch.allclose(SCHED.predict_eps(xt, x0, t), eps, atol=1e-10)
    assert not torch.allclose(SCHED.predict_x0(xt, eps, t.flip(0)), x0, atol=1e-3)  # t is really per sample


def test_snr():
    t = torch.tensor([[0, 10, 100], [500, 900, 999]])
    snr = SCHED.snr(t)
    ab = SCHED.alphas_cumprod[t]
    assert snr.shape == t.shape and snr.dtype == F64
    assert torch.allclose(snr, ab / (1 - ab))
    assert torch.all(snr.reshape(-1).diff() < 0)


def test_sample_timesteps_uniform_and_skewed():
    t = SCHED.sample_timesteps(100_000, gen(5))
    assert t.dtype == torch.long and t.shape == (100_000,) and t.min() >= 0 and t.max() <= 999
    assert t.float().mean().item() == pytest.approx(499.5, abs=5)
    assert torch.equal(t, SCHED.sample_timesteps(100_000, gen(5)))
    skewed = SCHED.sample_timesteps(100_000, gen(5), skew=3.0)
    assert skewed.min() >= 0 and skewed.max() <= 999
    assert skewed.float().mean().item() == pytest.approx(1000 / 4 - 0.5, abs=5)  # E[u^p] T = T/(p+1)
    with pytest.raises(ValueError):
        SCHED.sample_timesteps(4, gen(5), skew=0.0)


# ----------------------------------------------------------------------------- timesteps

def test_set_timesteps_leading_and_offset():
    assert ddim(50).timesteps == list(range(980, -1, -20))
    assert ddpm(50, steps_offset=1).timesteps == list(range(981, 0, -20))
    assert ddim(3).timesteps == [666, 333, 0]
    assert ddim(1000).timesteps == list(range(999, -1, -1))


def test_set_timesteps_trailing_and_errors():
    assert ddim(50, timestep_spacing="trailing").timesteps == list(range(999, 0, -20))
    sampler = LibraryScheduler("ddim", SCHED)
    for bad in (0, 1001):
        with pytest.raises(ValueError):
            sampler.set_timesteps(bad)
    with pytest.raises(ValueError):
        LibraryScheduler("ddim", SCHED, LibraryConfig(steps_offset=20)).set_timesteps(50)
    with pytest.raises(ValueError):
        SamplerConfig(prediction_type="v")


def test_step_requires_known_timestep():
    x = torch.zeros(1, 3)
    with pytest.raises(RuntimeError):
        LibraryScheduler("ddim", SCHED).step(x, 980, x)
    with pytest.raises(ValueError):
        ddim(50).step(x, 981, x)


# ----------------------------------------------------------------------------- samplers with the oracle

X_STAR = torch.tensor([[1.5, -0.5, 0.25], [-1.0, 0.0, 2.0]], dtype=F64)  # (B=2, 3)


def test_ddim_eta0_oracle_recovers_x_star_and_keeps_eps_constant():
    x_T = torch.randn(X_STAR.shape, generator=gen(6), dtype=F64)
    sampler = ddim(50)
    trail = []
    out = denoise_loop(oracle_eps(X_STAR), sampler, X_STAR.shape, None, x_T=x_T,
                       guidance=lambda i, t, x, x0: trail.append(x) or x)
    assert torch.allclose(out, X_STAR, atol=TOL)
    # deterministic DDIM with an exact denoiser keeps eps fixed: x_prev = sqrt(ab') x* + sqrt(1 - ab') eps_0
    eps0 = oracle_eps(X_STAR)(x_T, torch.tensor([sampler.timesteps[0]]))
    for x, prev in zip(trail[:-1], sampler.timesteps[1:]):
        a = SCHED.alphas_cumprod[prev].item()
        assert torch.allclose(x, math.sqrt(a) * X_STAR + math.sqrt(1 - a) * eps0, atol=TOL)


def test_ddim_without_alpha_one_ends_at_abar0():
    x_T = torch.randn(X_STAR.shape, generator=gen(7), dtype=F64)
    sampler = ddim(50, set_alpha_to_one=False)
    out = denoise_loop(oracle_eps(X_STAR), sampler, X_STAR.shape, None, x_T=x_T)
    eps0 = oracle_eps(X_STAR)(x_T, torch.tensor([980]))
    a0 = SCHED.alphas_cumprod[0].item()
    assert torch.allclose(out, math.sqrt(a0) * X_STAR + math.sqrt(1 - a0) * eps0, atol=TOL)


def test_ddpm_oracle_recovers_x_star():
    out = denoise_loop(oracle_eps(X_STAR), ddpm(50), X_STAR.shape, gen(8), dtype=F64)
    assert torch.allclose(out, X_STAR, atol=1e-6)


def test_ddpm_is_ddim_at_eta_one_and_its_last_step_adds_no_noise():
    """DDPM's posterior q(x_prev | x_t, x0) (fixed_small variance) written out, against the "ddpm" sampler."""
    x_T = torch.randn(2, 3, generator=gen(18), dtype=F64)
    assert torch.equal(denoise_loop(toy_eps, ddpm(10), (2, 3), gen(19), x_T=x_T),
                       denoise_loop(toy_eps, ddim(10, eta=1.0), (2, 3), gen(19), x_T=x_T))
    sampler, g, x = ddpm(10), gen(19), x_T
    for t, prev in zip(sampler.timesteps, sampler.timesteps[1:] + [-1]):
        eps = toy_eps(x, torch.tensor([t]))
        out = sampler.step(eps, t, x, g)
        a_t, a_p = SCHED.alphas_cumprod[t].item(), SCHED.alphas_cumprod[prev].item() if prev >= 0 else 1.0
        beta = 1 - a_t / a_p
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        mean = math.sqrt(a_p) * beta / (1 - a_t) * x0 + math.sqrt(1 - beta) * (1 - a_p) / (1 - a_t) * x
        std = math.sqrt((1 - a_p) / (1 - a_t) * beta)
        if std == 0:
            assert torch.allclose(out.prev_sample, mean, atol=TOL), t     # the last step is the mean
        else:
            assert ((out.prev_sample - mean) / std).abs().max() < 6, t    # otherwise mean + std * N(0, 1)
        x = out.prev_sample


@pytest.mark.parametrize("make", [lambda: ddpm(20), lambda: ddim(20, eta=1.0), lambda: ddim(20, eta=0.5)])
def test_stochastic_samplers_keep_the_oracle_marginals(make):
    """Started from q(x_T | x*), every step's sample is distributed as q(x_prev | x*) = N(sqrt(ab) x*, 1 - ab)."""
    sampler = make()
    x_star = torch.tensor([1.5, -0.5], dtype=F64)
    n = 20_000
    t0 = sampler.timesteps[0]
    x_T = SCHED.add_noise(x_star.expand(n, 2), torch.randn(n, 2, generator=gen(9), dtype=F64), t0)
    trail = []
    denoise_loop(oracle_eps(x_star), sampler, (n, 2), gen(10), x_T=x_T,
                 guidance=lambda i, t, x, x0: trail.append(x) or x)
    for x, prev in zip(trail[:-1], sampler.timesteps[1:]):
        a = SCHED.alphas_cumprod[prev].item()
        assert torch.allclose(x.mean(0), math.sqrt(a) * x_star, atol=0.04), prev
        assert torch.allclose(x.std(0), torch.full((2,), math.sqrt(1 - a), dtype=F64), atol=0.03), prev


@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_prediction_types_give_the_same_trajectory(eta):
    for model_eps, model_x0 in [
        (oracle_eps(X_STAR), oracle_x0(X_STAR)),
        (toy_eps, lambda x, t: (x - (1 - _abar(t, x)).sqrt() * toy_eps(x, t)) / _abar(t, x).sqrt()),
    ]:
        runs = []
        for ptype, fn in (("epsilon", model_eps), ("sample", model_x0)):
            trail = []
            denoise_loop(fn, ddim(25, eta=eta, prediction_type=ptype), X_STAR.shape, gen(11), dtype=F64,
                         guidance=lambda i, t, x, x0: trail.append(x) or x)
            runs.append(torch.stack(trail))
        assert torch.allclose(runs[0], runs[1], atol=TOL)


def test_ddpm_prediction_types_agree():
    model_x0 = lambda x, t: (x - (1 - _abar(t, x)).sqrt() * toy_eps(x, t)) / _abar(t, x).sqrt()  # noqa: E731
    a = denoise_loop(toy_eps, ddpm(25), X_STAR.shape, gen(12), dtype=F64)
    b = denoise_loop(model_x0, ddpm(25, prediction_type="sample"), X_STAR.shape, gen(12), dtype=F64)
    assert torch.allclose(a, b, atol=TOL)


# ----------------------------------------------------------------------------- randomness

@pytest.mark.parametrize("make", [lambda: ddpm(20), lambda: ddim(20, eta=0.5), lambda: ddim(20)])
def test_same_seed_same_result_different_seed_different(make):
    shape = (3, 4, 5)
    a = denoise_loop(toy_pair, make(), shape, gen(13), cfg_scale=2.0)
    b = denoise_loop(toy_pair, make(), shape, gen(13), cfg_scale=2.0)
    c = denoise_loop(toy_pair, make(), shape, gen(14), cfg_scale=2.0)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 0.1


@pytest.mark.parametrize("make", [lambda: ddpm(20), lambda: ddim(20, eta=0.5)])
def test_per_sample_generators_make_samples_batch_independent(make):
    seeds = [20, 21, 22, 23]
    scales = torch.tensor([1.0, 2.5, 4.0, 7.5])
    batch = denoise_loop(toy_pair, make(), (4, 6, 5), [gen(s) for s in seeds], cfg_scale=scales)
    for i, s in enumerate(seeds):
        alone = denoise_loop(toy_pair, make(), (1, 6, 5), [gen(s)], cfg_scale=scales[i:i + 1])
        assert torch.allclose(batch[i], alone[0], atol=1e-6), i
    other = denoise_loop(toy_pair, make(), (2, 6, 5), [gen(20), gen(99)], cfg_scale=scales[:2])
    assert torch.allclose(other[0], batch[0], atol=1e-6) and not torch.allclose(other[1], batch[1], atol=0.1)
    one_gen = denoise_loop(toy_pair, make(), (1, 6, 5), gen(20), cfg_scale=1.0)
    assert torch.allclose(one_gen[0], batch[0], atol=1e-6)  # one generator for a batch of 1 == a list of one


def test_randn_generator_forms():
    assert torch.equal(randn((2, 3), [gen(1), gen(2)])[1], torch.randn(3, generator=gen(2)))
    assert randn((2, 3), gen(1), dtype=F64).dtype == F64
    with pytest.raises(ValueError):
        randn((3, 3), [gen(1), gen(2)])


# ----------------------------------------------------------------------------- CFG, guidance, callback

def test_cfg_combine_math():
    cond, uncond = torch.tensor([[3.0, 1.0]]).repeat(2, 1), torch.tensor([[1.0, 2.0]]).repeat(2, 1)
    assert torch.equal(cfg_combine(cond, uncond, 1.0), cond)
    assert torch.equal(cfg_combine(cond, uncond, 0.0), uncond)
    assert torch.allclose(cfg_combine(cond, uncond, 7.5), torch.tensor([[16.0, -5.5]]).repeat(2, 1))
    per_sample = cfg_combine(cond, uncond, torch.tensor([0.0, 2.0]))
    assert torch.allclose(per_sample, torch.tensor([[1.0, 2.0], [5.0, 0.0]]))


def test_denoise_loop_applies_cfg():
    x_a, x_b = X_STAR, -2 * X_STAR + 1
    both = lambda x, t: (oracle_eps(x_a)(x, t), oracle_eps(x_b)(x, t))  # noqa: E731
    for scale in (0.0, 1.0, 2.5):
        out = denoise_loop(both, ddim(20), X_STAR.shape, gen(15), cfg_scale=scale, dtype=F64)
        assert torch.allclose(out, x_b + scale * (x_a - x_b), atol=TOL), scale


def test_guidance_hook_contract():
    sampler = ddim(10)
    calls, model_inputs = [], []

    def model(x, t):
        model_inputs.append(x.clone())
        return oracle_eps(X_STAR)(x, t)

    def guidance(i, t, x_prev, pred_x0):
        calls.append((i, t, x_prev.clone()))
        assert pred_x0.shape == x_prev.shape
        return x_prev + 0.5

    out = denoise_loop(model, sampler, X_STAR.shape, gen(16), dtype=F64, guidance=guidance)
    assert [c[0] for c in calls] == list(range(10)) and [c[1] for c in calls] == sampler.timesteps
    for (_, _, x_prev), next_input in zip(calls, model_inputs[1:]):
        assert torch.allclose(next_input, x_prev + 0.5)  # the hook's return is what the next step starts from
    # the oracle reads float64 alphas, the library float32 ones: the shifted samples amplify that to ~1e-5
    assert torch.allclose(out, X_STAR + 0.5, atol=1e-4)


def test_no_guidance_is_bit_identical():
    make = lambda: ddpm(15)  # noqa: E731
    plain = denoise_loop(toy_pair, make(), (2, 4, 3), gen(17), cfg_scale=3.0)
    none = denoise_loop(toy_pair, make(), (2, 4, 3), gen(17), cfg_scale=3.0, guidance=None)
    identity = denoise_loop(toy_pair, make(), (2, 4, 3), gen(17), cfg_scale=3.0, guidance=lambda i, t, x, x0: x)
    assert torch.equal(plain, none) and torch.equal(plain, identity)


def test_callback_progress_and_cancel():
    seen = []
    denoise_loop(toy_pair, ddim(8), (1, 3), gen(18), callback=lambda i, n: seen.append((i, n)))
    assert seen == [(i, 8) for i in range(8)]
    calls = []

    def model(x, t):
        calls.append(int(t[0]))
        return toy_pair(x, t)

    with pytest.raises(Cancelled) as info:
        denoise_loop(model, ddim(8), (1, 3), gen(18), callback=lambda i, n: i != 2)
    assert info.value.step_index == 2 and len(calls) == 3


def test_denoise_loop_input_checks():
    with pytest.raises(RuntimeError):
        denoise_loop(toy_pair, LibraryScheduler("ddim", SCHED), (1, 3), gen(0))
    with pytest.raises(ValueError):
        denoise_loop(toy_pair, ddim(5), (1, 3), gen(0), x_T=torch.zeros(2, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_with_cpu_generators():
    cpu = denoise_loop(toy_pair, ddpm(20), (2, 5, 4), [gen(30), gen(31)], cfg_scale=2.0)
    cuda = denoise_loop(toy_pair, ddpm(20), (2, 5, 4), [gen(30), gen(31)], cfg_scale=2.0, device="cuda")
    assert cuda.device.type == "cuda"
    assert torch.allclose(cuda.cpu(), cpu, atol=1e-4)
    x0 = torch.randn(3, 4, device="cuda")
    t = SCHED.sample_timesteps(3, gen(32), device="cuda")
    xt = SCHED.add_noise(x0, torch.randn_like(x0), t)
    assert xt.device.type == "cuda" and SCHED.snr(t).device.type == "cuda"
