"""Independent evaluator (GRU text/motion embedding) and Guo et al. generation metrics."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from realign_core.evaluation.metrics import (
    diversity,
    fid,
    matching_score,
    mean_ci,
    multimodality,
    r_precision,
    real_vs_real_fid,
)
from realign_core.models.evaluator import (
    Evaluator,
    EvaluatorConfig,
    build_evaluator,
    evaluator_checkpoint,
    load_evaluator,
)
from realign_core.text.encoder import load_text_encoder
from realign_core.training.config import TrainConfig
from realign_core.training.losses import info_nce_with_logits, near_duplicate_mask
from realign_core.training.tasks.evaluator import EvaluatorTask
from realign_core.training.trainer import Trainer
from tests.synthetic import write_synthetic_dataset

TINY = dict(conv_dim=32, movement_dim=32, motion_hidden=32, text_hidden=32, embed_dim=16)
CAPTIONS = ["a person walks forward.", "someone jumps up and down twice.", "a man waves his right hand."]


@pytest.fixture(scope="module")
def tiny() -> Evaluator:
    torch.manual_seed(0)
    return Evaluator(EvaluatorConfig(**TINY)).eval()


def _motions(lengths: list[int], frames: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(len(lengths), frames, 263, generator=gen)
    mask = torch.arange(frames)[None] < torch.tensor(lengths)[:, None]
    return features, mask


# ---------------------------------------------------------------- model

def test_embedding_shapes_and_metric_scale(tiny):
    features, mask = _motions([50, 41, 7, 1], 50)
    motion = tiny.embed_motions(features, mask)
    text = tiny.embed_texts(CAPTIONS)
    assert motion.shape == (4, 16) and text.shape == (3, 16)
    assert torch.allclose(motion.norm(dim=1), torch.full((4,), 10.0), atol=1e-4)
    assert torch.allclose(text.norm(dim=1), torch.full((3,), 10.0), atol=1e-4)
    states, token_mask = tiny.token_states(CAPTIONS)
    assert tiny.encode_text(states, token_mask).shape == (3, 16)
    assert tiny.embed_motions(features[:, :3], mask[:, :3]).shape == (4, 16)   # shorter than the x4 stride


def test_motion_embedding_ignores_padding(tiny):
    lengths = [50, 41, 7]
    features, mask = _motions(lengths, 50)
    before = tiny.embed_motions(features, mask)
    extra = torch.full((3, 23, 263), 99.0)
    padded = torch.cat([features, extra], dim=1)
    padded[1, 41:] = -50.0                                   # garbage beyond each length
    padded[2, 7:] = 7.0
    after = tiny.embed_motions(padded, torch.arange(73)[None] < torch.tensor(lengths)[:, None])
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    changed = features.clone()
    changed[1, 40] += 1.0                                    # a real frame does matter
    assert (tiny.embed_motions(changed, mask)[1] - before[1]).abs().max() > 1e-4


def test_frozen_text_model_stays_out_of_the_checkpoint(tiny, tmp_path):
    tiny.embed_texts(CAPTIONS)                               # the MiniLM model is in use ...
    keys = list(tiny.state_dict())
    assert all(k.startswith(("motion_encoder.", "text_encoder.")) for k in keys)
    assert not any("word_embeddings" in k or "attention" in k for k in keys)
    own = sum(p.numel() for p in tiny.parameters())
    assert own == sum(v.numel() for v in tiny.state_dict().values())
    assert own < 100_000 and sum(p.numel() for p in load_text_encoder().parameters()) > 20_000_000
    path = tmp_path / "evaluator.pt"
    torch.save(evaluator_checkpoint(tiny), path)
    assert path.stat().st_size < 1_000_000
    loaded = load_evaluator(path, "cpu")
    assert not loaded.training and loaded.config == tiny.config
    torch.testing.assert_close(loaded.embed_texts(CAPTIONS), tiny.embed_texts(CAPTIONS))


def test_load_evaluator_rejects_other_checkpoints(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"task": "reward", "config": {}, "model": {}}, path)
    with pytest.raises(ValueError, match="not an evaluator"):
        load_evaluator(path)


def test_config_validation():
    assert build_evaluator(dict(TINY)).config == EvaluatorConfig(**TINY)
    with pytest.raises(ValueError):
        EvaluatorConfig(temperature=0.0)
    with pytest.raises(TypeError):
        EvaluatorConfig(**{"hidden": 3})


def test_info_nce_masks_duplicate_negatives():
    sentences = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]]), dim=1)
    excluded = near_duplicate_mask(sentences, 0.8)
    allowed = ~excluded
    assert allowed.tolist() == [[True, False, True], [False, True, True], [True, True, True]]
    text = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    masked, _ = info_nce_with_logits(text, text.clone(), 0.07, excluded)
    unmasked, _ = info_nce_with_logits(text, text.clone(), 0.07)
    assert masked < 1e-3 < unmasked                          # the duplicate no longer counts as a negative


# -------------------------------------------------------------- metrics

def test_r_precision_perfect_and_random():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(320, 8))
    np.testing.assert_allclose(r_precision(emb, emb), [1.0, 1.0, 1.0])
    assert matching_score(emb, emb) == 0.0
    text, motion = rng.normal(size=(32 * 300, 16)), rng.normal(size=(32 * 300, 16))
    np.testing.assert_allclose(r_precision(text, motion, seed=1), [1 / 32, 2 / 32, 3 / 32], atol=0.01)
    assert matching_score(text, motion) > 4.0


def test_r_precision_drops_the_remainder_and_is_seeded():
    rng = np.random.default_rng(1)
    text = rng.normal(size=(70, 4))
    motion = text + rng.normal(scale=1.0, size=(70, 4))
    a, b = r_precision(text, motion, seed=3), r_precision(text, motion, seed=3)
    np.testing.assert_array_equal(a, b)
    assert np.all(np.diff(a) >= 0) and a[0] > 1 / 32
    assert np.all((a * 64) == np.round(a * 64))              # 2 groups of 32: the last 6 pairs dropped
    with pytest.raises(ValueError, match="at least"):
        r_precision(text[:31], motion[:31])


def test_fid():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 8))
    assert fid(x, x) == pytest.approx(0.0, abs=1e-6)
    shift = np.arange(8) * 0.5
    assert fid(x, x + shift) == pytest.approx(shift @ shift, rel=1e-6)
    y = rng.normal(size=(4000, 8)) + shift
    assert fid(x, y) == pytest.approx(shift @ shift, rel=0.05)
    mu, cov = x.mean(axis=0), np.cov(x, rowvar=False)
    assert fid(x, 2.0 * x) == pytest.approx(mu @ mu + np.trace(cov), rel=1e-6)   # + (2-1)^2 tr S
    few = rng.normal(size=(10, 64))                          # singular covariances
    assert fid(few, few) == pytest.approx(0.0, abs=1e-4)
    assert np.isfinite(fid(few, rng.normal(size=(12, 64))))
    assert real_vs_real_fid(x, y) == fid(x, y)


def test_diversity_and_multimodality():
    rng = np.random.default_rng(0)
    assert diversity(np.ones((500, 4))) == 0.0
    points = rng.normal(size=(5000, 32))
    assert diversity(points) == pytest.approx(8.0, rel=0.05)   # E||a-b|| ~ sqrt(2 * 32)
    assert diversity(points[:50], seed=1) > 0                  # fewer samples than pairs
    per_prompt = np.zeros((6, 20, 4))
    per_prompt[:, 1::2, 0] = 3.0                                # samples alternate between two points
    value = multimodality(per_prompt, seed=2)
    assert 0.0 < value < 3.0 and multimodality(np.zeros((3, 12, 4))) == 0.0
    spread = rng.normal(size=(40, 30, 32))
    assert multimodality(spread) == pytest.approx(8.0, rel=0.1)


def test_mean_ci():
    mean, half = mean_ci([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and half == pytest.approx(1.96 * np.std([1, 2, 3, 4], ddof=1) / 2)
    assert mean_ci([0.7]) == (0.7, 0.0)


# ------------------------------------------------------------- training


def test_training_learns_to_retrieve(tmp_path, one_thread):
    data = write_synthetic_dataset(tmp_path / "data", clips_per_class=24, frames=(44, 72))
    task = EvaluatorTask(dict(conv_dim=64, movement_dim=64, motion_hidden=64, text_hidden=64,
                              embed_dim=64, dropout=0.1))
    cfg = TrainConfig(epochs=8, batch_size=32, lr=2e-3, seed=0, device="cpu", log_every=1000)
    trainer = Trainer(task, data, tmp_path / "out", cfg, progress=False)
    assert len(trainer.val_set) == 32                        # one Guo group: chance R@1 = 1/32
    history = trainer.fit()["history"]
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    best = max(history, key=lambda h: h["r1"])
    assert best["r1"] >= 0.15 and best["r3"] >= 0.45         # chance: 0.031 and 0.094
    assert history[-1]["matching_score"] < history[0]["matching_score"]
    model = load_evaluator(tmp_path / "out" / "best.pt")
    text, motion = task.embed_loader(model, trainer.val_loader())
    assert r_precision(text, motion, batch_size=32, seed=0)[0] == pytest.approx(best["r1"], abs=1e-6)
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert any(rec.get("validation") for rec in log)
