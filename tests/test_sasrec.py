"""SASRec: it learns a synthetic pattern, is seeded, round-trips through the warehouse, embeds histories."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mmsrarec_lib.models.sasrec import SASRecConfig, load_sasrec, make_windows, save_sasrec, train_sasrec

N = 40
ITEMS = [f"i{k}" for k in range(N)]


def _cycle(start: int, length: int) -> list[str]:
    return [f"i{(start + j) % N}" for j in range(length)]


def _pattern_data() -> tuple[list[list[str]], list[tuple[list[str], str]]]:
    """Item k is always followed by item k+1 (mod N)."""
    train = [_cycle(s, 12) for s in range(N)]
    valid = [(_cycle(s, 4), f"i{(s + 4) % N}") for s in range(0, N, 3)]
    return train, valid


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: on a busy shared CPU two spinning threads made these tests ~8x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = SASRecConfig(dim=32, n_layers=1, n_heads=2, max_len=8, dropout=0.0, lr=5e-3, epochs=6, batch_size=16)


def test_untrained_model_does_not_know_the_pattern_but_trained_one_does():
    train, valid = _pattern_data()
    untrained, _ = train_sasrec(sequences=train, valid=valid, config=replace(TINY, epochs=1, lr=1e-9), progress=False)
    model, summary = train_sasrec(sequences=train, valid=valid, config=TINY, progress=False)
    histories = [_cycle(s, 3 + s % 5) for s in range(N)]
    expected = [model.item_index[f"i{(s + 3 + s % 5) % N}"] - 1 for s in range(N)]
    top1 = model.score_catalogue(histories).argmax(axis=1)
    top1_untrained = untrained.score_catalogue(histories).argmax(axis=1)
    assert (top1 == np.array(expected)).mean() >= 0.95
    assert (top1_untrained == np.array(expected)).mean() < 0.2
    assert summary["valid_ndcg@10"] > 0.9
    assert summary["loss"][-1] < summary["loss"][0]


def test_same_seed_same_model_and_different_seed_differs():
    train, valid = _pattern_data()
    cfg = SASRecConfig(dim=16, n_layers=1, n_heads=1, max_len=8, dropout=0.2, epochs=2, batch_size=8, seed=3)
    a, sa = train_sasrec(sequences=train, valid=valid, config=cfg, progress=False)
    b, sb = train_sasrec(sequences=train, valid=valid, config=cfg, progress=False)
    c, _ = train_sasrec(sequences=train, valid=valid, config=replace(cfg, seed=4),
                        progress=False)
    h = [_cycle(s, 5) for s in range(5)]
    assert np.array_equal(a.score_catalogue(h), b.score_catalogue(h))
    assert sa["loss"] == sb["loss"] and sa["valid_curve"] == sb["valid_curve"]
    assert not np.allclose(a.score_catalogue(h), c.score_catalogue(h))


def test_early_stopping_restores_best_epoch():
    train, valid = _pattern_data()
    cfg = SASRecConfig(dim=16, n_layers=1, n_heads=1, max_len=8, dropout=0.0, epochs=30, patience=2, lr=3e-2,
                       batch_size=16)
    model, summary = train_sasrec(sequences=train, valid=valid, config=cfg, progress=False)
    curve = summary["valid_curve"]
    assert summary["epochs_run"] < 30  # the pattern saturates, so patience stops it
    assert summary["valid_ndcg@10"] == max(curve) == curve[summary["best_epoch"] - 1]
    from mmsrarec_lib.models.sasrec import validation_ndcg

    assert validation_ndcg(model, valid) == pytest.approx(summary["valid_ndcg@10"])


def test_save_load_round_trip_and_embed(warehouse):
    train, valid = _pattern_data()
    model, summary = train_sasrec(sequences=train, valid=valid, config=TINY, progress=False)
    save_sasrec(warehouse, "toy", "run-1", model, info={"metrics": {"valid_ndcg@10": summary["valid_ndcg@10"]}})
    loaded = load_sasrec(warehouse, "toy", "run-1")
    h = [_cycle(s, 6) for s in range(7)] + [[]] + [["unknown-item", "i1"]]
    vec = loaded.embed(h)  # (n, D)
    assert vec.shape == (9, 32)
    assert torch.equal(vec, model.embed(h))
    # an unknown item is dropped, so ["unknown-item", "i1"] embeds like ["i1"]
    assert torch.allclose(vec[8], loaded.embed([["i1"]])[0], atol=1e-5)
    # a LongTensor input gives the same vectors as the strings
    assert torch.equal(loaded.embed(loaded.encode(h)), vec)
    assert loaded.model_json["metrics"]["valid_ndcg@10"] == summary["valid_ndcg@10"]
    assert loaded.item_ids == model.item_ids
    with pytest.raises(FileNotFoundError, match="no saved model"):
        load_sasrec(warehouse, "toy", "nope")


def test_make_windows_covers_each_transition_once():
    seqs = [list(range(1, 12)), [5], [7, 8]]
    w = make_windows(seqs, max_len=4)  # (W, 5)
    pairs = [(int(r[j]), int(r[j + 1])) for r in w for j in range(4) if r[j] and r[j + 1]]
    expected = [(a, a + 1) for a in range(1, 11)] + [(7, 8)]
    assert sorted(pairs) == sorted(expected)
    assert w.shape[1] == 5


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="divisible"):
        SASRecConfig(dim=10, n_heads=3)
    with pytest.raises(ValueError, match="loss"):
        SASRecConfig(loss="bpr")


def test_sampled_softmax_also_learns():
    train, valid = _pattern_data()
    cfg = SASRecConfig(dim=32, n_layers=1, n_heads=2, max_len=8, dropout=0.0, lr=5e-3, epochs=8, batch_size=16,
                       loss="sampled", n_negatives=10)
    _, summary = train_sasrec(sequences=train, valid=valid, config=cfg, progress=False)
    assert summary["valid_ndcg@10"] > 0.8
