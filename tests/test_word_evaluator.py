"""The second, MiniLM-free evaluator: word vocabulary, TCN motion side, training that retrieves."""
from __future__ import annotations

import pytest
import torch

from realign_core.evaluation.metrics import r_precision
from realign_core.models.word_evaluator import (
    WordEvaluator,
    WordEvaluatorConfig,
    load_word_evaluator,
    word_evaluator_checkpoint,
)
from realign_core.text.words import UNK_ID, build_vocabulary, encode_words, tokenize_words, word_overlap_mask
from realign_core.training.config import TrainConfig
from realign_core.training.registry import make_task
from realign_core.training.trainer import Trainer
from tests.synthetic import write_synthetic_dataset

VOCAB = build_vocabulary(["a person walks forward.", "a person jumps.", "someone walks in a circle"], 1)
TINY = dict(vocabulary=VOCAB, word_dim=16, text_hidden=16, channels=16, dilations=(1, 2), embed_dim=8)


def test_tokenizer_and_vocabulary():
    assert tokenize_words("A T-pose, then WALKS 3 steps!") == ["a", "t", "pose", "then", "walks", "steps"]
    vocab = build_vocabulary(["a b b", "b c", "a"], min_count=2)
    assert vocab == ("b", "a")                                   # by frequency; 'c' (once) dropped
    ids, mask = encode_words(["b a c", "", "a"], vocab, max_words=2)
    assert ids.tolist() == [[2, 3], [UNK_ID, 0], [3, 0]]         # truncated, unknown, padded
    assert mask.tolist() == [[True, True], [True, False], [True, False]]


def test_word_overlap_mask():
    ids, _ = encode_words(["a person walks", "a person walks.", "a person jumps"], VOCAB, 10)
    mask = word_overlap_mask(ids, threshold=0.8)
    assert mask.tolist() == [[False, True, False], [True, False, False], [False, False, False]]


def test_embeddings_ignore_padding_and_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = WordEvaluator(WordEvaluatorConfig(**TINY)).eval()
    features = torch.randn(2, 40, 263)
    mask = torch.arange(40)[None] < torch.tensor([40, 25])[:, None]
    padded = features.clone()
    padded[1, 25:] = 99.0                                        # garbage past the length changes nothing
    a, b = model.embed_motions(features, mask), model.embed_motions(padded, mask)
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(a.norm(dim=1), torch.full((2,), 10.0), atol=1e-4)
    torch.save(word_evaluator_checkpoint(model), tmp_path / "best.pt")
    again = load_word_evaluator(tmp_path / "best.pt")
    assert torch.allclose(again.embed_texts(["a person walks"]), model.embed_texts(["a person walks"]))


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="vocabulary is empty"):
        WordEvaluator(WordEvaluatorConfig())
    with pytest.raises(ValueError, match="dilations"):
        WordEvaluatorConfig(vocabulary=VOCAB, dilations=())
    torch.save({"task": "evaluator", "config": {}, "model": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a word-evaluator checkpoint"):
        load_word_evaluator(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="vocabulary"):
        make_task("evaluator_words", {"vocabulary": ["a"]}, tmp_path, tmp_path, "[evaluator_words.model]")


def test_training_learns_to_retrieve(tmp_path, one_thread):
    data = write_synthetic_dataset(tmp_path / "data", clips_per_class=24, frames=(44, 72))
    task = make_task("evaluator_words", dict(word_dim=32, text_hidden=32, channels=32, dilations=[1, 2],
                                             embed_dim=32, dropout=0.0, min_word_count=1),
                     data, tmp_path, "[evaluator_words.model]")
    assert "walks" in " ".join(task.config.vocabulary) or len(task.config.vocabulary) > 5
    cfg = TrainConfig(epochs=8, batch_size=32, lr=2e-3, seed=0, device="cpu", log_every=1000)
    trainer = Trainer(task, data, tmp_path / "out", cfg, progress=False)
    history = trainer.fit()["history"]
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    best = max(history, key=lambda h: h["r1"])
    assert best["r1"] >= 0.15 and best["r3"] >= 0.45           # chance: 0.031 and 0.094
    model = load_word_evaluator(tmp_path / "out" / "best.pt")
    assert model.config.vocabulary == task.config.vocabulary     # the vocabulary travels in the checkpoint
    text, motion = task.embed_loader(model, trainer.val_loader())
    assert r_precision(text, motion, batch_size=32, seed=0)[0] == pytest.approx(best["r1"], abs=1e-6)
