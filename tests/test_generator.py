"""Motion VAE, latent denoiser, trainer and text-to-motion pipeline with tiny real models."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from realign_core.models.latent_denoiser import DenoiserConfig, LatentDenoiser
from realign_core.models.motion_vae import MotionVAE, VAEConfig
from realign_core.pipeline import SamplingConfig, TextToMotionPipeline
from realign_core.training.config import TrainConfig, load_config
from realign_core.training.registry import make_task
from realign_core.training.trainer import Trainer
from tests.conftest import REPO_ROOT

SMALL_VAE = VAEConfig(width=32, heads=2, layers=3, ff=64, latent_tokens=2, latent_dim=16, dropout=0.0)


@pytest.mark.parametrize("latent_tokens", [2, 0])
@pytest.mark.parametrize("downsample", [1, 2, 4])
def test_vae_shapes_and_padding_invariance(downsample, latent_tokens):
    torch.manual_seed(0)
    vae = MotionVAE(replace(SMALL_VAE, downsample=downsample, latent_tokens=latent_tokens)).eval()
    x = torch.randn(1, 37, 263)
    mu, logvar = vae.encode(x, torch.ones(1, 37, dtype=torch.bool))
    lz = 2 if latent_tokens else -(-37 // downsample)
    assert mu.shape == logvar.shape == (1, lz, 16) == (1, vae.cfg.latent_length(37), 16)
    padded = torch.cat([x, torch.randn(1, 11, 263)], dim=1)
    mask = torch.arange(48)[None] < 37
    mu2, _ = vae.encode(padded, mask)
    assert torch.allclose(mu, mu2[:, :lz], atol=1e-5)
    assert mu2[:, lz:].abs().sum().item() == 0.0
    out = vae.decode(mu2, mask)
    assert out.shape == (1, 48, 263) and out[0, 37:].abs().sum().item() == 0.0
    assert torch.allclose(out[:, :37], vae.decode(mu, torch.ones(1, 37, dtype=torch.bool)), atol=1e-5)
    if latent_tokens == 0:   # noisy padded latent tokens (as in sampling) are ignored too, any length
        for frames in (36, 37):
            z = torch.randn(1, vae.cfg.latent_length(48), 16)
            alone = vae.decode(z, torch.ones(1, frames, dtype=torch.bool))
            batched = vae.decode(z, torch.arange(48)[None] < frames)
            assert torch.allclose(batched[:, :frames], alone, atol=1e-5)


def test_denoiser_masks_padded_latent_tokens():
    torch.manual_seed(0)
    model = LatentDenoiser(DenoiserConfig(latent_tokens=0, latent_dim=16, width=32, heads=2, layers=3, ff=64)).eval()
    z, t, text = torch.randn(1, 5, 16), torch.tensor([300]), torch.randn(1, 384)
    short = model(z, t, text, latent_mask=torch.ones(1, 5, dtype=torch.bool))
    padded = torch.cat([z, torch.randn(1, 4, 16)], dim=1)
    long = model(padded, t, text, latent_mask=torch.arange(9)[None] < 5)
    assert torch.allclose(short, long[:, :5], atol=1e-5) and long[:, 5:].abs().sum().item() == 0.0


def test_denoiser_null_condition_ignores_text():
    torch.manual_seed(0)
    model = LatentDenoiser(DenoiserConfig(latent_tokens=2, latent_dim=16, width=32, heads=2, layers=3, ff=64)).eval()
    z, t = torch.randn(2, 2, 16), torch.tensor([10, 500])
    a, b = torch.randn(2, 384), torch.randn(2, 384)
    off = torch.zeros(2, dtype=torch.bool)
    assert torch.equal(model(z, t, a, off), model(z, t, b, off))
    assert not torch.allclose(model(z, t, a), model(z, t, b))


def test_tiny_training_learns_and_writes_artifacts(tiny_generator):
    root, summaries = tiny_generator
    for kind in ("vae", "denoiser"):
        folder = root / kind
        for name in ("best.pt", "last.pt", "log.jsonl", "curves.png"):
            assert (folder / name).is_file(), (kind, name)
    vae_hist = summaries["vae"]["history"]
    assert vae_hist[-1]["train_loss"] < 0.8 * vae_hist[0]["train_loss"]
    # in 12 tiny epochs the decoder learns to use the latent and the features improve (the pose
    # error of so small a model stays near its start; the default VAE's is in docs/models.md)
    assert vae_hist[-1]["feature_l1"] < vae_hist[0]["feature_l1"]
    assert vae_hist[-1]["latent_use"] > vae_hist[0]["latent_use"] + 0.2
    den = summaries["denoiser"]["history"]
    assert den[-1]["train_loss"] < den[0]["train_loss"]
    ckpt = torch.load(root / "denoiser" / "best.pt", weights_only=False)
    assert ckpt["task"] == "denoiser" and ckpt["config"]["latent_scale"] > 0


def test_trainer_resumes_where_it_stopped(synthetic_dataset, tmp_path):
    section, cfg = load_config(REPO_ROOT / "configs" / "tiny.toml", "vae")
    cfg = replace(cfg, epochs=2)
    task = make_task("vae", section, synthetic_dataset, tmp_path, "vae")
    first = Trainer(task, synthetic_dataset, tmp_path / "vae", cfg, progress=False).fit()
    assert first["epochs_done"] == 2 and not first["resumed"]
    second = Trainer(task, synthetic_dataset, tmp_path / "vae", replace(cfg, epochs=3), progress=False).fit()
    assert second["resumed"] and second["epochs_done"] == 3 and second["steps"] == first["steps"] * 3 // 2
    validations = [json.loads(l) for l in (tmp_path / "vae" / "log.jsonl").read_text().splitlines()
                   if '"validation"' in l]
    assert [v["epoch"] for v in validations] == [1, 2, 3]


def test_trainer_keeps_validates_and_resumes_a_moving_average(synthetic_dataset, tmp_path):
    section, cfg = load_config(REPO_ROOT / "configs" / "tiny.toml", "vae")
    cfg = replace(cfg, epochs=2, ema=0.9)
    task = make_task("vae", section, synthetic_dataset, tmp_path, "vae")
    trainer = Trainer(task, synthetic_dataset, tmp_path / "vae", cfg, progress=False)
    trainer.fit()
    metric = task.selection_metric
    last = torch.load(tmp_path / "vae" / "last.pt", weights_only=False)
    ema, raw = last["ema"], last["model"]
    assert any(not torch.equal(ema[k], raw[k]) for k in raw)          # the average lags the raw weights
    records = [json.loads(l) for l in (tmp_path / "vae" / "log.jsonl").read_text().splitlines() if '"validation"' in l]
    assert all(f"{metric}_raw" in r and metric in r for r in records)
    assert records[0][metric] != records[0][f"{metric}_raw"]
    best = torch.load(tmp_path / "vae" / "best.pt", weights_only=False)
    if records[-1]["improved"]:                                        # best.pt holds the average, not the raw
        assert all(torch.equal(best["model"][k], ema[k]) for k in ema)
    again = Trainer(task, synthetic_dataset, tmp_path / "vae", replace(cfg, epochs=3), progress=False)
    assert again.resume() and all(torch.equal(again.ema.state_dict()[k], ema[k]) for k in ema)
    from realign_core.models.checkpoint import export_checkpoint, validation_metrics
    kept = validation_metrics(records[-1])       # what a model card shows of a run's end: metrics, no bookkeeping
    assert metric in kept and not {"epoch", "step", "train_loss", "epoch_seconds", "improved"} & set(kept)
    export_checkpoint(tmp_path / "vae", tmp_path / "raw" / "vae", last_raw=True)      # to judge raw vs average
    exported = torch.load(tmp_path / "raw" / "vae" / "best.pt", weights_only=False)
    assert all(torch.equal(exported["model"][k], raw[k].half()) for k in raw if raw[k].is_floating_point())
    assert exported["epoch"] == 2 and exported["metrics"][metric] == records[-1][f"{metric}_raw"]
    with pytest.raises(FileNotFoundError, match="needs its last.pt"):
        export_checkpoint(tmp_path / "raw" / "vae", tmp_path / "again", last_raw=True)
    with pytest.raises(ValueError, match="ema = 1.0 must lie in"):
        replace(cfg, ema=1.0)


def test_trainer_continues_from_an_exported_best_checkpoint(synthetic_dataset, tmp_path):
    from realign_core.models.checkpoint import export_checkpoint

    section, cfg = load_config(REPO_ROOT / "configs" / "tiny.toml", "vae")
    task = make_task("vae", section, synthetic_dataset, tmp_path, "vae")
    Trainer(task, synthetic_dataset, tmp_path / "run" / "vae", replace(cfg, epochs=2), progress=False).fit()
    export_checkpoint(tmp_path / "run" / "vae", tmp_path / "shipped" / "vae")   # fp16, no last.pt
    more = Trainer(task, synthetic_dataset, tmp_path / "shipped" / "vae", replace(cfg, epochs=3), progress=False).fit()
    assert more["resumed"] and more["epochs_done"] == 3
    assert [h["epoch"] for h in more["history"]][-1] == 3


def test_decoder_only_vae_training_keeps_the_latent_space(synthetic_dataset, tmp_path):
    """``decoder_only``: continuing a VAE changes its decoder, never its encoder (the latents the denoiser was
    trained on), and the reconstruction still improves."""
    from realign_core.models.motion_vae import load_vae

    section, cfg = load_config(REPO_ROOT / "configs" / "tiny.toml", "vae")
    task = make_task("vae", section, synthetic_dataset, tmp_path, "vae")
    Trainer(task, synthetic_dataset, tmp_path / "vae", replace(cfg, epochs=1), progress=False).fit()
    before, _ = load_vae(tmp_path / "vae" / "best.pt")
    task = make_task("vae", {**section, "decoder_only": True}, synthetic_dataset, tmp_path, "vae")
    more = Trainer(task, synthetic_dataset, tmp_path / "vae", replace(cfg, epochs=4), progress=False).fit()
    after, ckpt = load_vae(tmp_path / "vae" / "best.pt")
    assert ckpt["config"]["decoder_only"] is True and ckpt["epoch"] > 1
    x, mask = torch.randn(2, 40, 263), torch.ones(2, 40, dtype=torch.bool)
    with torch.no_grad():
        for a, b in zip(before.encode(x, mask), after.encode(x, mask)):
            assert torch.equal(a, b), "the encoder moved"
        assert not torch.allclose(before.decode(a, mask), after.decode(a, mask)), "the decoder did not train"
    hist = more["history"]
    assert hist[-1]["feature_l1"] < hist[0]["feature_l1"]


def test_vae_round_trip_reconstructs_long_clips_in_windows(tiny_generator, synthetic_dataset):
    """Joints of a VAE's reconstruction: one frame per feature frame, long clips in windows whose first window
    is exactly the reconstruction of those frames alone; ``vae_clip_joints`` reads a dataset's clips."""
    from realign_core.evaluation.reconstruction import vae_clip_joints, vae_round_trip
    from realign_core.motion.normalization import Normalizer

    vae = MotionVAE(SMALL_VAE).eval()
    features = np.random.default_rng(0).normal(size=(130, 263)).astype(np.float32)
    round_trip = vae_round_trip(vae, Normalizer(np.zeros(263), np.ones(263)), window=48)
    joints = round_trip(features)
    assert joints.shape == (130, 22, 3) and np.isfinite(joints).all()
    assert np.allclose(joints[:48], round_trip(features[:48]), atol=1e-5)
    root, _ = tiny_generator
    clip_id = (synthetic_dataset / "train.txt").read_text().split()[0]
    recon = vae_clip_joints(root / "vae" / "best.pt", synthetic_dataset)(clip_id)
    assert recon.shape == (len(np.load(synthetic_dataset / "new_joint_vecs" / f"{clip_id}.npy")), 22, 3)


def test_reward_training_continues_from_an_export_without_its_decoder(synthetic_dataset, tmp_path):
    from realign_core.models.checkpoint import export_checkpoint

    section, cfg = load_config(REPO_ROOT / "configs" / "tiny.toml", "reward_plain")
    task = make_task("reward_plain", section, synthetic_dataset, tmp_path, "reward_plain")
    Trainer(task, synthetic_dataset, tmp_path / "run" / "reward_plain", replace(cfg, epochs=1), progress=False).fit()
    export_checkpoint(tmp_path / "run" / "reward_plain", tmp_path / "shipped" / "reward_plain")
    shipped = torch.load(tmp_path / "shipped" / "reward_plain" / "best.pt", weights_only=False)
    assert shipped["dropped"] == ["decoder"]
    task = make_task("reward_plain", section, synthetic_dataset, tmp_path, "reward_plain")
    more = Trainer(task, synthetic_dataset, tmp_path / "shipped" / "reward_plain", replace(cfg, epochs=2),
                   progress=False).fit()
    assert more["resumed"] and more["epochs_done"] == 2
    assert more["history"][0]["epoch"] == 1, "the shipped history continues"
    last = torch.load(tmp_path / "shipped" / "reward_plain" / "last.pt", weights_only=False)
    assert any(k.startswith("decoder.") for k in last["model"]), "training checkpoints keep the decoder"


def test_pipeline_is_deterministic_and_batch_independent(tiny_generator):
    root, _ = tiny_generator
    pipe = TextToMotionPipeline.from_checkpoints(root)
    cfg = SamplingConfig(steps=10)
    out = pipe(["a person walks forward.", "a person runs forward."], [45, 70], [3, 4], cfg, return_joints=True)
    feats, mask = out.features, out.mask
    alone = pipe(["a person walks forward."], [45], [3], cfg).features
    assert torch.allclose(feats[0, :45], alone[0], atol=1e-5)
    again = pipe(["a person walks forward.", "a person runs forward."], [45, 70], [3, 4], cfg).features
    assert torch.equal(feats, again)
    other = pipe(["a person walks forward."], [45], [5], cfg).features
    assert not torch.allclose(other[0], alone[0])
    joints = pipe.to_joints(feats, mask)
    assert out.guidance is None and out.lengths == [45, 70]
    assert all(np.array_equal(a, b) for a, b in zip(joints, out.joints))
    assert joints[0].shape == (45, 22, 3) and joints[1].shape == (70, 22, 3)
    assert all(np.isfinite(j).all() for j in joints)


def test_config_errors_name_file_table_and_key(tmp_path, synthetic_dataset):
    bad = tmp_path / "bad.toml"
    bad.write_text("[vae.model]\nwidth = 8\n[vae.train]\nepochz = 3\n")
    with pytest.raises(ValueError, match=r"bad.toml \[vae.train\].*epochz"):
        load_config(bad, "vae")
    with pytest.raises(ValueError, match="no \\[denoiser"):
        load_config(bad, "denoiser")
    with pytest.raises(ValueError, match=r"\[vae.model\].*wdth"):
        make_task("vae", {"wdth": 3}, synthetic_dataset, tmp_path, "bad.toml [vae.model]")


def test_train_config_defaults_are_device_agnostic():
    assert TrainConfig().device == "auto"
