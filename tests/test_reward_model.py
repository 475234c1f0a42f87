"""Step-aware reward model, its training task and the retrieval metrics."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from realign_core.data.dataset import collate
from realign_core.diffusion.sampling import NoiseSchedule
from realign_core.evaluation.retrieval import embed_split, noised_features, retrieval_metrics
from realign_core.models.reward_model import RewardModel, RewardModelConfig, load_reward_model, patch_mask
from realign_core.text.encoder import load_text_encoder
from realign_core.training.losses import info_nce_loss, near_duplicate_mask
from realign_core.training.tasks.reward import RewardConfig, RewardTask, make_reward_task
from tests.synthetic import write_synthetic_dataset

TINY = dict(latent_dim=32, heads=2, ff=64, motion_layers=3, text_layers=1, decoder_layers=1, dropout=0.1)
FEAT = 263


@pytest.fixture(scope="module")
def text_model():
    return load_text_encoder()


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models run fastest single-threaded (conftest.py)


def tiny_model(step_aware: bool = True, downsample: int = 4, seed: int = 0, **kw) -> RewardModel:
    torch.manual_seed(seed)
    return RewardModel(RewardModelConfig(**{**TINY, "step_aware": step_aware, "downsample": downsample, **kw}))


def motion_batch(lengths: list[int], frames: int | None = None, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Random normalised features (B, T, 263) and a mask from lengths; padding holds garbage."""
    gen = torch.Generator().manual_seed(seed)
    frames = frames or max(lengths)
    x = torch.randn(len(lengths), frames, FEAT, generator=gen)
    mask = torch.arange(frames)[None] < torch.tensor(lengths)[:, None]
    return x, mask


# ----------------------------------------------------------------------------- model

def test_shapes_and_unit_norm(text_model):
    model = tiny_model()
    x, mask = motion_batch([40, 23, 57])
    emb = model.encode_motion(x, mask, 300)
    assert emb.shape == (3, 32)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    mu, logvar = model.motion_posterior(x, mask, torch.tensor([0, 10, 999]))
    assert mu.shape == logvar.shape == (3, 32)
    recon = model.decode(mu, mask)
    assert recon.shape == (3, 57, FEAT)
    assert recon[~mask].abs().max() == 0
    text = model.encode_text(["a person walks forward.", "someone jumps."])
    assert text.shape == (2, 32) and not text.requires_grad
    assert torch.allclose(text.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert model.reward_t2m(x, mask, 0, text[:1].expand(3, -1)).shape == (3,)


def test_patch_mask_marks_partly_real_patches():
    mask = torch.arange(10)[None] < torch.tensor([[5], [8]])
    assert patch_mask(mask, 4).tolist() == [[True, True, False], [True, True, False]]
    assert patch_mask(mask, 1).equal(mask)


@pytest.mark.parametrize("downsample", [1, 2, 4])
def test_padding_does_not_change_embeddings(downsample):
    model = tiny_model(downsample=downsample)
    x, mask = motion_batch([37, 50])
    ref = model.encode_motion(x, mask, torch.tensor([0, 400]))
    longer = torch.cat([x, 5 * torch.randn(2, 13, FEAT)], dim=1)           # extra padded frames
    longer[0, 37:50] = 7.0                                                  # garbage in existing padding
    long_mask = torch.cat([mask, torch.zeros(2, 13, dtype=torch.bool)], dim=1)
    out = model.encode_motion(longer, long_mask, torch.tensor([0, 400]))
    assert torch.allclose(ref, out, atol=1e-5), (ref - out).abs().max()
    with torch.no_grad():                                                   # inference fast path too
        assert torch.allclose(ref, model.encode_motion(longer, long_mask, torch.tensor([0, 400])), atol=1e-5)
    changed = x.clone()
    changed[0, 5] += 1.0                                                    # a real frame does matter
    assert not torch.allclose(ref[0], model.encode_motion(changed, mask, torch.tensor([0, 400]))[0], atol=1e-4)


def test_timestep_changes_step_aware_embedding_only():
    x, mask = motion_batch([48, 60])
    aware = tiny_model(step_aware=True)
    assert not torch.allclose(aware.encode_motion(x, mask, 0), aware.encode_motion(x, mask, 500), atol=1e-4)
    assert torch.equal(aware.encode_motion(x, mask, 500), aware.encode_motion(x, mask, torch.tensor([500, 500])))
    plain = tiny_model(step_aware=False)
    assert torch.equal(plain.encode_motion(x, mask, 0), plain.encode_motion(x, mask, torch.tensor([900, 17])))
    assert not any("timestep" in name for name in plain.state_dict())
    assert sum(p.numel() for p in plain.parameters()) < sum(p.numel() for p in aware.parameters())


def test_reward_gradients_are_finite_and_per_sample(text_model):
    model = tiny_model()
    model.train()                                   # the reward path must not depend on the mode
    text = model.encode_text(["a person runs forward.", "someone waves.", "a person sits down."])
    x, mask = motion_batch([40, 52, 31], seed=3)
    t = torch.tensor([700, 300, 50])

    def grads(features: torch.Tensor) -> torch.Tensor:
        features = features.clone().requires_grad_(True)
        reward = model.reward_t2m(features, mask, t, text) + 0.5 * model.reward_m2m(features, mask, t, text.flip(0))
        (grad,) = torch.autograd.grad(reward.sum(), features)
        return grad

    g = grads(x)
    assert torch.isfinite(g).all()
    assert (g[mask].abs().sum(dim=-1) > 0).float().mean() > 0.9   # real frames get gradient
    assert g[~mask].abs().max() == 0                               # padding gets none
    other = x.clone()
    other[1] = torch.randn_like(other[1])                          # change sample 1 only
    g2 = grads(other)
    assert torch.allclose(g[0], g2[0], atol=1e-6) and torch.allclose(g[2], g2[2], atol=1e-6)
    assert not torch.allclose(g[1], g2[1], atol=1e-4)


def test_rewards_use_posterior_means_deterministically(text_model):
    model = tiny_model(dropout=0.5)
    model.train()
    x, mask = motion_batch([44, 60])
    text = model.encode_text(["a person walks.", "a person runs."])
    assert torch.equal(text, model.encode_text(["a person walks.", "a person runs."]))
    first = model.reward_t2m(x, mask, 200, text)
    assert torch.equal(first, model.reward_t2m(x, mask, 200, text))
    assert model.training                                           # mode restored
    mu, _ = model.motion_posterior(x, mask, 200)                    # the training path does use dropout
    mu2, _ = model.motion_posterior(x, mask, 200)
    assert not torch.equal(mu, mu2)
    model.eval()
    expected = (F.normalize(model.motion_posterior(x, mask, 200)[0], dim=-1) * text).sum(-1)
    assert torch.allclose(first, expected, atol=1e-6)


def test_text_encoder_is_not_in_state_dict(text_model):
    model = RewardModel(RewardModelConfig(**TINY), text_model=text_model)
    assert model.text_model() is text_model
    own = sum(p.numel() for p in model.parameters())
    assert sum(v.numel() for v in model.state_dict().values()) == own
    assert not any(k.startswith("_text_model") or "embeddings.word_embeddings" in k for k in model.state_dict())


def test_default_config_stays_small():
    model = RewardModel(RewardModelConfig())
    params = sum(p.numel() for p in model.parameters())
    assert params * 2 < 11.5e6, f"{params:,} parameters: over ~10 MB in fp16"


# ----------------------------------------------------------------------------- losses and task

def test_info_nce_drops_masked_negatives_from_the_denominator():
    text = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    motion = torch.tensor([[0.6, 0.8], [1.0, 0.0], [-0.6, 0.8]])
    tau = 0.1
    excluded = torch.zeros(3, 3, dtype=torch.bool)
    excluded[0, 1] = excluded[1, 0] = True
    excluded[2, 2] = True                                           # the diagonal always stays
    sim = (text @ motion.T) / tau

    def ce(row: torch.Tensor, keep: list[int], target: int) -> float:
        return -(row[target] - torch.logsumexp(row[keep], dim=0)).item()

    t2m = [ce(sim[0], [0, 2], 0), ce(sim[1], [1, 2], 1), ce(sim[2], [0, 1, 2], 2)]
    m2t = [ce(sim[:, 0], [0, 2], 0), ce(sim[:, 1], [1, 2], 1), ce(sim[:, 2], [0, 1, 2], 2)]
    expected = 0.5 * (sum(t2m) / 3 + sum(m2t) / 3)
    got = info_nce_loss(text, motion, tau, excluded).item()
    assert math.isclose(got, expected, rel_tol=1e-5)
    assert not math.isclose(info_nce_loss(text, motion, tau).item(), expected, rel_tol=1e-3)


def test_near_duplicate_mask_from_sentence_embeddings(text_model):
    captions = ["a person walks forward.", "a person walks forward.", "someone is doing a cartwheel."]
    mask = near_duplicate_mask(text_model.encode_sentences(captions), 0.8)
    assert mask.tolist() == [[False, True, False], [True, False, False], [False, False, False]]


def test_config_resolution_and_plain_kind():
    assert RewardConfig().noise_prob == 0.5
    assert RewardConfig(step_aware=False).noise_prob == 0.0
    with pytest.raises(ValueError, match="noise_prob"):
        RewardConfig(step_aware=False, noise_prob=0.5)
    plain = make_reward_task("reward_plain", dict(TINY))
    assert plain.name == "reward_plain" and not plain.config.step_aware
    with pytest.raises(ValueError, match="step_aware"):
        make_reward_task("reward_plain", {"step_aware": True})
    with pytest.raises(ValueError, match="unknown key"):
        make_reward_task("reward", {"widht": 3})


def test_noising_whole_batch_keeps_padding_zero():
    task = RewardTask(RewardConfig(**TINY, noise_prob=1.0, t_skew=2.0))
    x, mask = motion_batch([30, 50], seed=5)
    x = x * mask[..., None]
    torch.manual_seed(0)
    ts = []
    for _ in range(200):
        x_t, t = task.noised(x, mask)
        ts.append(t)
    ts = torch.cat(ts).float()
    assert x_t[~mask].abs().max() == 0 and not torch.equal(x_t, x)
    assert 0 <= ts.min() and ts.max() < 1000
    assert 250 < ts.mean() < 420                                    # skew 2: mean ~ T/3, below uniform's 500
    clean = RewardTask(RewardConfig(**TINY, step_aware=False))
    x0, t0 = clean.noised(x, mask)
    assert x0 is x and t0.eq(0).all()


# ----------------------------------------------------------------------------- retrieval

def test_retrieval_metrics_perfect_random_and_collapsed():
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(96, 64, generator=gen)
    perfect = retrieval_metrics(emb, emb + 0.01 * torch.randn(96, 64, generator=gen))
    assert perfect["t2m_r1"] == 1.0 and perfect["m2t_r1"] == 1.0
    assert retrieval_metrics(emb, emb, distance="euclidean")["t2m_r1"] == 1.0
    rand = retrieval_metrics(torch.randn(3200, 16, generator=gen), torch.randn(3200, 16, generator=gen), repeats=4)
    for direction in ("t2m", "m2t"):
        assert abs(rand[f"{direction}_r1"] - 1 / 32) < 0.012
        assert abs(rand[f"{direction}_r10"] - 10 / 32) < 0.03
    assert rand["t2m_r1_ci"] > 0
    collapsed = retrieval_metrics(torch.ones(64, 8), torch.ones(64, 8))
    assert collapsed["t2m_r1"] == 0.0 and collapsed["t2m_r1_ci"] == 0.0


def _fake_loader(lengths: list[int], batch_size: int) -> list[dict]:
    gen = torch.Generator().manual_seed(7)
    items = [{"id": f"clip{i}", "features": torch.randn(n, FEAT, generator=gen).numpy(), "length": n,
              "caption": f"caption {i}"} for i, n in enumerate(lengths)]
    return [collate(items[i:i + batch_size]) for i in range(0, len(items), batch_size)]


def test_embed_split_noise_is_fixed_per_clip():
    lengths = [40, 61, 45, 52, 70]
    model = tiny_model()
    levels = (0, 500)
    a = embed_split(model.encode_motion, _fake_loader(lengths, 2), t=levels)
    b = embed_split(model.encode_motion, _fake_loader(lengths, 5), t=levels)
    assert a.ids == b.ids and a.text is None
    for level in levels:
        assert torch.allclose(a.motion[level], b.motion[level], atol=1e-5)
    assert not torch.allclose(a.motion[0], a.motion[500], atol=1e-3)
    batch = _fake_loader(lengths, 5)[0]
    schedule = NoiseSchedule.make("scaled_linear")
    assert noised_features(batch["features"], batch["mask"], batch["ids"], 0, 0, schedule) is batch["features"]
    other_seed = noised_features(batch["features"], batch["mask"], batch["ids"], 500, 1, schedule)
    assert not torch.allclose(other_seed, noised_features(batch["features"], batch["mask"], batch["ids"], 500, 0,
                                                          schedule))


# ----------------------------------------------------------------------------- training

def test_short_training_learns_to_retrieve(tmp_path, text_model):
    from realign_core.training.config import TrainConfig
    from realign_core.training.trainer import Trainer

    data = write_synthetic_dataset(tmp_path / "data", clips_per_class=12)
    config = RewardConfig(latent_dim=64, heads=2, ff=128, motion_layers=3, text_layers=1, decoder_layers=1,
                          dropout=0.0, downsample=4)
    task = RewardTask(config)
    trainer = Trainer(task, data, tmp_path / "out", TrainConfig(epochs=10, batch_size=16, lr=1e-3, device="cpu",
                                                               log_every=1, seed=0), progress=False)
    history = trainer.fit()["history"]
    assert history[-1]["train_loss"] < 0.75 * history[0]["train_loss"], history
    logged = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in logged if "contrastive" in r]
    first, last = (sum(r["contrastive"] for r in part) / len(part) for part in (steps[:4], steps[-8:]))
    assert last < 0.5 * first, (first, last)
    assert any(r["t_mean"] > 0 for r in steps) and any(r["t_mean"] == 0 for r in steps)   # noised and clean batches
    chance = 1 / len(trainer.val_set)
    best = max(history, key=lambda h: h["select_t2m_r1"])
    assert best["t2m_r1"] > 3 * chance and best["t2m_r3"] > 0.5, best
    assert best["t500_t2m_r1"] > 2 * chance, best

    model = load_reward_model(tmp_path / "out" / "best.pt")
    assert isinstance(model, RewardModel) and not model.training
    metrics = task.validate(model, trainer.val_loader())
    assert metrics["select_t2m_r1"] == pytest.approx(best["select_t2m_r1"], abs=1e-6)


def test_load_rejects_other_checkpoints(tmp_path):
    path = tmp_path / "vae.pt"
    torch.save({"task": "vae", "config": {}, "model": {}}, path)
    with pytest.raises(ValueError, match="not a reward or reward_plain checkpoint"):
        load_reward_model(path)
    with pytest.raises(FileNotFoundError):
        load_reward_model(tmp_path / "missing.pt")
