"""Training-speed levers: cached VAE posteriors, length-bucketed batches, and `realign bench --train`."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from realign_core.training.config import load_config
from realign_core.training.latent_cache import cache_path
from realign_core.training.registry import make_task
from realign_core.training.trainer import Trainer, bucketed_batches
from tests.conftest import REPO_ROOT

TINY = REPO_ROOT / "configs" / "tiny.toml"


def test_bucketed_batches_cover_every_index_once_with_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(40, 197, size=1000)
    batches = bucketed_batches(lengths, 16, torch.Generator().manual_seed(3), drop_last=False, pool_batches=10)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    random_spread = np.mean([np.ptp(lengths[rng.permutation(1000)[:16]]) for _ in range(50)])
    assert spread < 0.3 * random_spread                      # similar lengths share a batch
    again = bucketed_batches(lengths, 16, torch.Generator().manual_seed(3), drop_last=False, pool_batches=10)
    other = bucketed_batches(lengths, 16, torch.Generator().manual_seed(4), drop_last=False, pool_batches=10)
    assert again == batches and other != batches             # seeded, and a new order for another epoch
    full = bucketed_batches(lengths, 16, torch.Generator().manual_seed(3), drop_last=True)
    assert all(len(b) == 16 for b in full) and len(full) == 1000 // 16


def test_cached_posteriors_match_the_encoder_and_training_uses_them(tiny_generator, synthetic_dataset):
    root = tiny_generator[0]
    section, cfg = load_config(TINY, "denoiser")
    cfg = replace(cfg, cache_latents=True, bucket_by_length=True)
    task = make_task("denoiser", section, synthetic_dataset, root, "denoiser", cfg)
    assert task.cache is not None and len(task.cache) > 0
    assert cache_path(synthetic_dataset, root / "vae" / "best.pt", cfg.max_frames).is_file()
    trainer = Trainer(task, synthetic_dataset, root / "speed_test", cfg, progress=False)
    batch = next(iter(trainer.train_loader()))
    cached_mu, cached_logvar = task._posterior(batch)
    task.cache = None                                          # the same batch through the encoder
    mu, logvar = task._posterior(batch)
    tokens = task.vae.latent_mask(batch["mask"])[..., None]
    assert torch.allclose(cached_mu * tokens, mu * tokens, atol=1e-5)
    assert torch.allclose(cached_logvar * tokens, logvar * tokens, atol=1e-5)
    again = make_task("denoiser", section, synthetic_dataset, root, "denoiser", cfg)   # read back from disk
    assert set(again.cache.table) == set(task.cache.table if task.cache else again.cache.table)
    loss, _ = trainer.train_step(batch)
    assert np.isfinite(loss)


def test_realign_bench_train_prints_every_variant(tiny_generator, synthetic_dataset, tmp_path, capsys):
    from realign_core.cli.bench import main
    from realign_core.training.speed import VARIANTS

    out = tmp_path / "speed.json"
    assert main(["--train", "denoiser", "--data", str(synthetic_dataset), "--config", str(TINY), "--models",
                 str(tiny_generator[0]), "--train-steps", "2", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert all(v.name in table for v in VARIANTS) and "1.00x" in table
    import json

    saved = json.loads(out.read_text())
    assert saved["machine"]["cores"] >= 1 and isinstance(saved["machine"]["native_bf16"], bool)
    assert "native bf16:" in table and {r["amp"] for r in saved["rows"]} == {"off", "bf16"}
    rows = saved["rows"]
    assert len(rows) == len(VARIANTS) and all(r["samples_per_s"] > 0 and r["steps"] == 2 for r in rows)
    from realign_core.models.latent_denoiser import load_denoiser
    model, _ = load_denoiser(tiny_generator[0] / "denoiser" / "best.pt")   # the tiny config's size
    assert {r["parameters"] for r in rows} == {sum(p.numel() for p in model.parameters())}


def test_bench_train_needs_models(capsys):
    from realign_core.cli.bench import main

    assert main(["--train", "denoiser"]) == 2
    assert "--models" in capsys.readouterr().err


def test_judge_generator_on_val_is_seeded_and_uses_the_judge(tiny_guided, synthetic_dataset):
    from realign_core.evaluation.generator_selection import judge_generator

    first = judge_generator(tiny_guided, synthetic_dataset, prompts=8, steps=4, judge_kind="reward")
    again = judge_generator(tiny_guided, synthetic_dataset, prompts=8, steps=4, judge_kind="reward")
    assert first["split"] == "val" and first["judge"] == "reward" and first["guidance"] is None
    assert 0.0 <= first["judge_r1"] <= 1.0 and first["judge_fid"] >= 0.0
    assert (first["judge_r1"], first["judge_fid"]) == (again["judge_r1"], again["judge_fid"])
    assert first["cfg_scale"] == 7.5                          # no guidance.toml cfg_scale: the generator's own
    other = judge_generator(tiny_guided, synthetic_dataset, prompts=8, steps=4, judge_kind="reward", cfg_scale=2.0)
    assert other["cfg_scale"] == 2.0 and other["judge_fid"] != first["judge_fid"]
    ckpt = torch.load(tiny_guided / "denoiser" / "best.pt", map_location="cpu", weights_only=False)
    assert first["epoch"] == ckpt["epoch"] is not None        # which checkpoint was judged, for the curves


def test_cosine_schedule_warms_up_decays_to_min_lr_and_resumes_on_the_same_curve(tiny_generator, synthetic_dataset,
                                                                                 tmp_path):
    root = tiny_generator[0]
    section, cfg = load_config(TINY, "denoiser")
    cfg = replace(cfg, epochs=4, lr=1e-3, min_lr=1e-4, lr_schedule="cosine", warmup_steps=2)
    trainer = Trainer(make_task("denoiser", section, synthetic_dataset, root, "denoiser", cfg), synthetic_dataset,
                      tmp_path / "cosine", cfg, progress=False)
    total = cfg.epochs * len(trainer.train_loader())
    rates = []
    for step in range(total + 1):
        trainer.step = step
        rates.append(trainer.learning_rate())
    assert rates[0] == pytest.approx(0.5 * (1e-4 + 0.9e-3 * 0.5 * (1 + np.cos(0))))     # warm-up: half of step 0's
    assert rates[total // 2] == pytest.approx(1e-4 + 0.9e-3 * 0.5, rel=0.05)              # halfway: the midpoint
    assert rates[-1] == pytest.approx(1e-4) and all(a >= b for a, b in zip(rates[2:], rates[3:]))
    trainer.step = 0
    assert Trainer(trainer.task, synthetic_dataset, tmp_path / "constant", replace(cfg, lr_schedule="constant"),
                   progress=False).learning_rate() == pytest.approx(0.5e-3)


def test_train_config_names_a_bad_schedule(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[denoiser.train]\nlr_schedule = "linear"\n')
    with pytest.raises(ValueError, match=r"bad.toml \[denoiser.train\]: lr_schedule = 'linear'"):
        load_config(bad, "denoiser")
    bad.write_text('[denoiser.train]\nlr = 1e-4\nmin_lr = 1e-3\n')
    with pytest.raises(ValueError, match="min_lr = 0.001 must lie in"):
        load_config(bad, "denoiser")


def test_bf16_autocast_trains_in_bf16_and_validates_in_float32(tiny_generator, synthetic_dataset, tmp_path):
    root = tiny_generator[0]
    section, cfg = load_config(TINY, "denoiser")
    losses = {}
    for amp in ("off", "bf16"):
        run = replace(cfg, amp=amp, epochs=1)
        trainer = Trainer(make_task("denoiser", section, synthetic_dataset, root, "denoiser", run), synthetic_dataset,
                          tmp_path / amp, run, progress=False)
        assert trainer.bf16 == (amp == "bf16")
        batch = next(iter(trainer.train_loader()))
        seen = []
        hook = trainer.model.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
        losses[amp], _ = trainer.train_step(batch)
        hook.remove()
        assert seen == [torch.bfloat16 if amp == "bf16" else torch.float32]     # the step ran in that precision
        assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # weights stay float32
        metrics = trainer._validate()
        assert all(np.isfinite(v) for v in metrics.values())
    # same seed, same batch, same initial weights: bf16 changes the loss only in its low bits
    assert losses["bf16"] == pytest.approx(losses["off"], rel=0.05) and losses["bf16"] != losses["off"]


def test_native_bf16_reads_the_cpu_flags(tmp_path, monkeypatch):
    from realign_core import device

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
    assert "avx512_bf16" in device.cpu_flags(info) and device.cpu_flags(tmp_path / "missing") == set()
    assert device.cpu_model(info) == "Test CPU 9000"
    monkeypatch.setattr(device, "cpu_flags", lambda: {"avx2", "fma"})
    assert not device.native_bf16("cpu")
    from realign_core.training.trainer import uses_bf16
    assert not uses_bf16("auto", torch.device("cpu")) and uses_bf16("bf16", torch.device("cpu"))
    monkeypatch.setattr(device, "cpu_flags", lambda: {"avx2", "amx_bf16"})
    assert device.native_bf16("cpu")


def test_train_config_names_a_bad_precision(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[denoiser.train]\namp = "fp8"\n')
    with pytest.raises(ValueError, match=r"bad.toml \[denoiser.train\]: amp = 'fp8'; allowed"):
        load_config(bad, "denoiser")
