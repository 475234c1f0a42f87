"""The MDM-style motion-space denoiser and its training task, with real tiny models."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from realign_core.diffusion.sampling import NoiseSchedule, denoise_loop
from realign_core.diffusion.schedulers import LibraryConfig, LibraryScheduler
from realign_core.models.motion_denoiser import MotionDenoiser, MotionDenoiserConfig, load_motion_denoiser
from realign_core.motion.normalization import Normalizer
from realign_core.training.config import load_config
from realign_core.training.registry import KINDS, make_task
from realign_core.training.tasks.motion_denoiser import MotionDenoiserTask
from realign_core.training.trainer import Trainer
from tests.conftest import REPO_ROOT

SMALL = MotionDenoiserConfig(width=32, heads=2, layers=3, ff=64, dropout=0.0)
REALIGN = Path(sys.executable).parent / "realign"


def _inputs(batch: int, frames: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, frames, 263, generator=gen), torch.randint(0, 1000, (batch,), generator=gen),
            torch.randn(batch, 384, generator=gen))


@pytest.mark.parametrize("downsample", [1, 2, 4])
def test_shapes_and_zero_output_on_padding(downsample):
    torch.manual_seed(0)
    model = MotionDenoiser(replace(SMALL, downsample=downsample)).eval()
    x, t, text = _inputs(3, 45)
    mask = torch.arange(45)[None] < torch.tensor([45, 30, 7])[:, None]
    out = model(x, t, text, torch.tensor([True, False, True]), mask)
    assert out.shape == (3, 45, 263)
    assert out[~mask].abs().sum().item() == 0.0
    assert out[mask].abs().min().item() > 0.0 and torch.isfinite(out).all()


@pytest.mark.parametrize("downsample", [1, 2, 4])
@pytest.mark.parametrize("frames", [37, 40, 41])
def test_real_frames_do_not_depend_on_padding(downsample, frames):
    """One clip alone vs the same clip followed by 1..11 frames of (random) padding."""
    torch.manual_seed(0)
    model = MotionDenoiser(replace(SMALL, downsample=downsample)).eval()
    x, t, text = _inputs(1, frames)
    alone = model(x, t, text)
    for extra in (1, 3, 11):
        padded = torch.cat([x, torch.randn(1, extra, 263) * 5], dim=1)
        out = model(padded, t, text, mask=torch.arange(frames + extra)[None] < frames)
        assert torch.allclose(alone, out[:, :frames], atol=1e-5), (extra, (alone - out[:, :frames]).abs().max())
        assert out[:, frames:].abs().sum().item() == 0.0


def test_a_sample_does_not_depend_on_the_rest_of_the_batch():
    torch.manual_seed(0)
    model = MotionDenoiser(replace(SMALL, downsample=4)).eval()
    x, t, text = _inputs(2, 50)
    mask = torch.arange(50)[None] < torch.tensor([50, 23])[:, None]
    both = model(x, t, text, mask=mask)
    second = model(x[1:, :23], t[1:], text[1:])
    assert torch.allclose(both[1:, :23], second, atol=1e-5)


def test_null_condition_ignores_text_and_the_condition_uses_it():
    torch.manual_seed(0)
    model = MotionDenoiser(SMALL).eval()
    x, t, a = _inputs(2, 20)
    b = torch.randn(2, 384)
    off = torch.zeros(2, dtype=torch.bool)
    assert torch.equal(model(x, t, a, off), model(x, t, b, off))
    assert not torch.allclose(model(x, t, a), model(x, t, b))
    assert not torch.allclose(model(x, t, a), model(x, t + 100, a))


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="downsample"):
        MotionDenoiserConfig(downsample=3)
    with pytest.raises(ValueError, match="heads"):
        MotionDenoiserConfig(width=30, heads=4)
    with pytest.raises(ValueError, match=r"\[mdm.model\].*wdth"):
        MotionDenoiserTask({"wdth": 3}, where="x.toml [mdm.model]")
    with pytest.raises(ValueError, match="prediction_type"):
        MotionDenoiserTask({"prediction_type": "v"})


@pytest.fixture(scope="module")
def tiny_mdm(synthetic_dataset, tmp_path_factory):
    """A real tiny MDM trained with configs/tiny.toml: (data dir, model root, task, train config, summary)."""
    root = tmp_path_factory.mktemp("tiny_mdm")
    section, cfg = load_config(REPO_ROOT / "configs" / "tiny.toml", "mdm")
    task = make_task("mdm", section, synthetic_dataset, root, "tiny.toml [mdm.model]")
    summary = Trainer(task, synthetic_dataset, root / "mdm", cfg, progress=False).fit()
    return synthetic_dataset, root, task, cfg, summary


def test_tiny_training_lowers_validation_loss(tiny_mdm):
    _, root, _, cfg, summary = tiny_mdm
    hist = summary["history"]
    assert summary["finished"] and len(hist) == cfg.epochs
    assert hist[-1]["val_loss"] < 0.8 * hist[0]["val_loss"], [h["val_loss"] for h in hist]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    for name in ("best.pt", "last.pt", "log.jsonl", "curves.png"):
        assert (root / "mdm" / name).is_file(), name


def test_checkpoint_carries_everything_a_sampler_needs(tiny_mdm):
    data, root, _, _, _ = tiny_mdm
    model, ckpt = load_motion_denoiser(root / "mdm" / "best.pt")
    cfg = ckpt["config"]
    assert ckpt["task"] == "mdm" and not model.training
    assert (cfg["schedule"], cfg["num_train_steps"], cfg["prediction_type"], cfg["cond_drop"]) == \
        ("cosine", 1000, "sample", 0.1)
    assert model.cfg == MotionDenoiserConfig(width=64, heads=2, layers=3, ff=128, dropout=0.0, downsample=2)
    norm = Normalizer.load(data)
    assert np.allclose(np.asarray(ckpt["normalizer"]["mean"]), norm.mean)
    assert np.allclose(np.asarray(ckpt["normalizer"]["std"]), norm.std)


def test_loaded_checkpoint_reproduces_its_validation_loss(tiny_mdm):
    data, root, task, cfg, _ = tiny_mdm
    model, ckpt = load_motion_denoiser(root / "mdm" / "best.pt")
    trainer = Trainer(task, data, root / "again", cfg, progress=False)
    val = task.validate(model, trainer.val_loader())["val_loss"]
    assert val == pytest.approx(ckpt["metrics"]["val_loss"], rel=1e-5)
    untrained = task.validate(task.build_model().eval(), trainer.val_loader())["val_loss"]
    assert val < untrained


def test_load_rejects_another_kind(tmp_path):
    torch.save({"task": "denoiser", "config": {}, "model": {}}, tmp_path / "best.pt")
    with pytest.raises(ValueError, match="not a mdm checkpoint"):
        load_motion_denoiser(tmp_path / "best.pt")


def test_trained_model_samples_with_the_shared_sampler(tiny_mdm):
    """The model plugs into diffusion.denoise_loop as an x0 predictor with CFG, unchanged."""
    _, root, task, _, _ = tiny_mdm
    model, ckpt = load_motion_denoiser(root / "mdm" / "best.pt")
    schedule = NoiseSchedule.make(ckpt["config"]["schedule"], ckpt["config"]["num_train_steps"])
    sampler = LibraryScheduler("ddim", schedule, LibraryConfig(prediction_type=ckpt["config"]["prediction_type"]))
    sampler.set_timesteps(5)
    text = task.text.encode_sentences(["a person walks forward.", "a person jumps."])
    mask = torch.arange(60)[None] < torch.tensor([60, 44])[:, None]
    use = torch.tensor([True, True, False, False])

    def model_fn(x, t):
        out = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([text, text]), use, torch.cat([mask, mask]))
        return out[:2], out[2:]

    with torch.no_grad():
        x0 = denoise_loop(model_fn, sampler, (2, 60, 263), torch.Generator().manual_seed(0), cfg_scale=2.5)
    assert x0.shape == (2, 60, 263) and torch.isfinite(x0).all()
    assert x0[1, 44:].abs().sum().item() == 0.0   # the last step returns the x0 prediction itself


def test_cli_trains_mdm(synthetic_dataset, tmp_path):
    from realign_core.cli.main import TRAIN_KINDS

    assert set(TRAIN_KINDS) == set(KINDS) and "mdm" in KINDS
    if not REALIGN.exists():
        pytest.skip(f"{REALIGN} not installed: run `python3.11 build.py setup` first")
    res = subprocess.run([str(REALIGN), "train", "mdm", "--data", str(synthetic_dataset), "--config",
                          str(REPO_ROOT / "configs" / "tiny.toml"), "--out", str(tmp_path), "--epochs", "1"],
                         check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "mdm: finished after 1 epochs" in res.stdout
    assert load_motion_denoiser(tmp_path / "mdm" / "best.pt")[1]["epoch"] == 1
