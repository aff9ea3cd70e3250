"""The sampled protocol, per-user rank files and the paired bootstrap interval of (model - baseline)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _eval_helpers import write_toy_dataset

from mmsrarec_lib.eval import paired, protocols, registry


def test_sampled_cases_cover_every_user_with_20_unseen_negatives_deterministically(warehouse):
    seqs = write_toy_dataset(warehouse, "d", n_users=30, n_items=60)
    a = protocols.load_sampled_cases(warehouse, "d")
    b = protocols.load_sampled_cases(warehouse, "d")
    assert a.user_ids == sorted(seqs) and a.candidates == b.candidates  # every user, same lists every time
    for uid, hist, cands, pos in zip(a.user_ids, a.histories, a.candidates, a.positive, strict=True):
        seq = seqs[uid]
        assert hist == seq[:-1] and cands[pos] == seq[-1] and len(cands) == 21 and len(set(cands)) == 21
        assert not (set(cands) - {seq[-1]}) & set(seq)  # negatives never come from the user's sequence
    valid = protocols.load_sampled_cases(warehouse, "d", split="valid")
    for uid, cands, pos in zip(valid.user_ids, valid.candidates, valid.positive, strict=True):
        assert seqs[uid][-1] not in [c for j, c in enumerate(cands) if j != pos]  # nor the later test item


def test_sampled_negatives_come_from_the_k_core_pool_not_from_items_no_sequence_has(warehouse):
    """An item the k-core dropped (in ``items``, in no evaluation sequence) can never be a target: drawing it as a
    negative would hand a model that never saw it (SASRec ranks it last) free wins, so it is never drawn."""
    import pyarrow as pa

    from mmsrarec_lib import schemas

    seqs = write_toy_dataset(warehouse, "d", n_users=30, n_items=60)
    in_sequences = {i for s in seqs.values() for i in s}
    items = warehouse.read_table("d", "items").to_pylist()
    dropped = [f"dropped{k}" for k in range(400)]  # far more than the sequences' items: drawn often if allowed
    items += [{**items[0], "item_id": i, "title": i, "source_row": 1000 + k} for k, i in enumerate(dropped)]
    warehouse.write_table("d", "items", pa.Table.from_pylist(items, schema=schemas.ITEMS))
    assert set(dropped) <= set(protocols.load_catalogue(warehouse, "d"))  # the full protocol still ranks them all
    assert protocols.split_items(warehouse, "d") == sorted(in_sequences)
    for split in ("test", "valid"):
        cases = protocols.load_sampled_cases(warehouse, "d", split=split)
        drawn = {c for cands in cases.candidates for c in cands}
        assert drawn <= in_sequences and len(cases.user_ids) == 30


def test_sampled_protocol_metrics_and_rank_files(warehouse):
    write_toy_dataset(warehouse, "d", n_users=30, n_items=60)

    class Oracle:
        item_ids = [f"i{k}" for k in range(60)]

        def score_candidates(self, histories, candidates):  # the cycle: next item = last + 1
            nxt = [f"i{(int(h[-1][1:]) + 1) % 60}" for h in histories]
            return [np.array([1.0 if c == n else 0.0 for c in cs]) for n, cs in zip(nxt, candidates)]

        def score_catalogue(self, histories):
            raise AssertionError("not used")

    values = registry.evaluate_scorer(warehouse, "d", Oracle(), "sampled", model="oracle", model_version="v",
                                      seed=0, config={}, run_id="r")
    assert values == {"hr@5": 1.0, "ndcg@5": 1.0, "auc": 1.0}
    saved = paired.read_ranks(warehouse, "d", run_id="r", protocol="sampled", model="oracle", seed=0)
    assert len(saved["user_ids"]) == 30 and set(saved["ranks"]) == {1} and set(saved["n_candidates"]) == {21}


def test_per_user_metrics_by_hand():
    ranks, n = np.array([1, 3, 12]), np.array([21, 21, 21])
    assert paired.per_user("hr@5", ranks, n).tolist() == [1.0, 1.0, 0.0]
    assert paired.per_user("ndcg@5", ranks, n).tolist() == pytest.approx([1.0, 1 / math.log2(4), 0.0])
    assert paired.per_user("auc", ranks, n).tolist() == pytest.approx([1.0, 18 / 20, 9 / 20])
    assert paired.per_user("mrr", ranks, n).tolist() == pytest.approx([1.0, 1 / 3, 1 / 12])
    with pytest.raises(ValueError, match="unknown metric"):
        paired.per_user("map", ranks, n)


def test_bootstrap_of_a_constant_difference_is_that_constant_and_a_spread_covers_its_mean():
    mean, low, high = paired.bootstrap_diff(np.full((50, 3), 0.2))
    assert mean == pytest.approx(0.2) and low == pytest.approx(0.2) and high == pytest.approx(0.2)
    d = np.random.default_rng(0).normal(0.1, 1.0, size=(400, 1))
    mean, low, high = paired.bootstrap_diff(d)
    assert low < mean < high and high - low == pytest.approx(2 * 1.96 / math.sqrt(400), rel=0.2)


def test_paired_interval_pairs_users_within_seeds_and_pools_seeds(warehouse):
    users = [f"u{k}" for k in range(40)]
    n = [21] * 40
    for seed in (0, 1):
        base = [1 + (k + seed) % 8 for k in range(40)]  # sasrec ranks 1..8
        better = [max(1, r - 2) for r in base]  # the model moves every target up by (at most) 2
        paired.write_ranks(warehouse, "d", run_id="r", protocol="paper", model="sasrec", seed=seed, user_ids=users,
                           ranks=np.array(base), n_candidates=np.array(n))
        paired.write_ranks(warehouse, "d", run_id="r", protocol="paper", model="m", seed=seed,
                           user_ids=users[::-1], ranks=np.array(better[::-1]), n_candidates=np.array(n))  # order
    iv = paired.paired_interval(warehouse, "d", run_id="r", protocol="paper", model="m", metric="hr@5",
                                seeds=[0, 1, 2])
    # per seed the hits go from ranks <= 5 to ranks <= 7: users with base rank 6 or 7 gain one hit each
    want = np.mean([(1 + (k + s) % 8) in (6, 7) for s in (0, 1) for k in range(40)])
    assert iv.seeds == (0, 1) and iv.n_users == 40 and iv.n_pairs == 80
    assert iv.mean_diff == pytest.approx(want) and iv.low <= iv.mean_diff <= iv.high and iv.low > 0
    assert paired.paired_interval(warehouse, "d", run_id="r", protocol="full", model="m", metric="hr@5",
                                  seeds=[0]) is None


def test_report_png_zooms_on_the_models_near_sasrec_when_others_are_far_off():
    """With a model far below SASRec (Pop), the PNG gets a third panel for the models whose intervals stay within
    ``NEAR_POINTS`` of SASRec; without one it keeps two panels (the figure is as wide as its panels)."""
    import io

    import pandas as pd
    from PIL import Image

    from mmsrarec_lib.eval import report as rep

    keys = ("hr@5", "ndcg@5", "auc")
    summary = pd.DataFrame([{"protocol": "sampled", "model": m, "metric": k, "mean": 0.5, "std": 0.01, "n_seeds": 3,
                             "n_users": 943, "run_id": "r", "model_versions": "v"}
                            for m in ("sasrec", "mmsrarec", "pop") for k in keys])
    near = [{"protocol": "sampled", "model": "mmsrarec", "metric": k, "mean_diff": 0.005, "low": -0.001,
             "high": 0.011, "n_users": 943, "seeds": "0,1,2"} for k in keys]
    far = [{**r, "model": "pop", "mean_diff": -0.27, "low": -0.30, "high": -0.24} for r in near]
    width = {}
    for name, rows in (("near only", near), ("near and far", near + far)):
        png = rep.plot_protocol(rep.Report("d", summary, pd.DataFrame(rows)), "sampled")
        width[name] = Image.open(io.BytesIO(png)).size[0]
    assert width["near and far"] == pytest.approx(1.5 * width["near only"], rel=0.02)  # 3 panels instead of 2
