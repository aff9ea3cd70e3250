"""k-core, split_loo and eval_candidates: hand-checked k-core cascade, split invariants, seeding."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from mmsrarec_lib import schemas
from mmsrarec_lib.ingest.splits import SplitConfig, assign_user_splits, build_splits, kcore, sample_negatives

UTC = dt.UTC


def _inter(rows: list[tuple[str, str, int]]) -> pa.Table:
    """INTERACTIONS from (user, item, unix seconds); source_row = position + 1."""
    return pa.Table.from_pylist(
        [{"user_id": u, "item_id": i, "timestamp": dt.datetime.fromtimestamp(t, UTC), "rating": None,
          "event": None, "source_row": n} for n, (u, i, t) in enumerate(rows, start=1)], schema=schemas.INTERACTIONS)


def _synthetic(n_users: int = 50, n_items: int = 40, per_user: int = 8, seed: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, size=per_user - (u % 3), replace=False)  # lengths 6..8
        rows += [(f"u{u:02d}", f"i{i:02d}", 1000 + 10 * k) for k, i in enumerate(items)]
    rows.append(("short", "i00", 5))  # a user with 1 interaction: k-core drops it
    return _inter(rows)


def test_kcore_cascades_until_stable(spark):
    # k=2: i3 has one row -> dropped; then u3 has one row -> dropped; i1 keeps 2 rows.
    rows = [("u1", "i1", 1), ("u1", "i2", 2), ("u2", "i1", 3), ("u2", "i2", 4), ("u3", "i1", 5), ("u3", "i3", 6)]
    df = spark.createDataFrame(_inter(rows).select(["user_id", "item_id", "timestamp", "source_row"]))
    kept = sorted((r["user_id"], r["item_id"]) for r in kcore(df, 2).collect())
    assert kept == [("u1", "i1"), ("u1", "i2"), ("u2", "i1"), ("u2", "i2")]
    assert kcore(df, 1).count() == 6  # k <= 1 disables the filter


@pytest.fixture(scope="module")
def splits(spark):
    data = _synthetic()
    return data, build_splits(spark, interactions=data, cfg=SplitConfig(k_core=2, seed=0))


def _sequences(data: pa.Table) -> dict[str, list[str]]:
    seqs: dict[str, list[tuple]] = {}
    for r in data.to_pylist():
        seqs.setdefault(r["user_id"], []).append((r["timestamp"], r["source_row"], r["item_id"]))
    return {u: [x[2] for x in sorted(v)] for u, v in seqs.items()}


def test_split_loo_rows_are_prefixes_and_test_targets_never_in_training(splits):
    data, res = splits
    seqs = _sequences(data)
    loo = res.split_loo.to_pylist()
    assert res.split_loo.schema == schemas.SPLIT_LOO
    assert "short" not in {r["user_id"] for r in loo}  # removed by k-core
    assert len(loo) == 3 * 50
    by = {(r["user_id"], r["split"]): r for r in loo}
    for u, seq in seqs.items():
        if u == "short":
            continue
        for split, back in (("train", 3), ("valid", 2), ("test", 1)):
            r = by[(u, split)]
            assert r["history"] + [r["target_item_id"]] == seq[: len(seq) - back + 1]
        # the test target (last event) is in no training/validation row of that user
        assert len(by[(u, "train")]["history"]) + 1 == len(seq) - 2
        assert by[(u, "valid")]["history"] + [by[(u, "valid")]["target_item_id"]] == seq[:-1]


def test_short_users_left_out_of_splits_and_sequences_tie_break_on_input_row(spark):
    rows = [("a", "x", 1), ("a", "y", 2), ("b", "q", 1), ("b", "y", 2), ("b", "x", 2)]  # b: y and x tie at t=2
    data = _inter(rows)
    data = data.take(list(range(len(rows)))[::-1])  # physical order reversed: source_row must decide
    res = build_splits(spark, interactions=data, cfg=SplitConfig(k_core=0, n_negatives=1))
    seqs = {r["user_id"]: r["item_ids"] for r in res.user_sequences.to_pylist()}
    assert seqs == {"a": ["x", "y"], "b": ["q", "y", "x"]}
    assert sorted((r["user_id"], r["split"], r["target_item_id"]) for r in res.split_loo.to_pylist()) == [
        ("a", "test", "y"), ("b", "test", "x"), ("b", "valid", "y")]
    assert res.eval_candidates.num_rows == 0  # nobody has 5 items of history


def test_user_sequences_are_not_kcore_filtered(splits):
    data, res = splits
    assert res.user_sequences.schema == schemas.USER_SEQUENCES
    got = {r["user_id"]: (r["item_ids"], r["length"]) for r in res.user_sequences.to_pylist()}
    assert got == {u: (seq, len(seq)) for u, seq in _sequences(data).items()}  # "short" included
    assert res.kcore_users == 50 and res.kcore_interactions == data.num_rows - 1


def test_eval_candidates_protocol_invariants(splits):
    data, res = splits
    seqs = _sequences(data)
    ev = res.eval_candidates.to_pylist()
    assert res.eval_candidates.schema == schemas.EVAL_CANDIDATES
    assert len(ev) == 50
    pool = {r["item_id"] for r in data.to_pylist() if r["user_id"] != "short"}
    for r in ev:
        seq = seqs[r["user_id"]]
        assert r["target_item_id"] == seq[-1] and r["history"] == seq[-6:-1]
        negs = r["negative_item_ids"]
        assert len(negs) == 20 == len(set(negs))
        assert not set(negs) & set(seq)  # never interacted with
        assert set(negs) <= pool
    counts = {s: sum(r["split"] == s for r in ev) for s in ("train", "valid", "test")}
    assert counts == {"train": 40, "valid": 5, "test": 5}


def test_same_seed_same_split_other_seed_differs(spark, splits):
    data, res = splits
    again = build_splits(spark, interactions=data, cfg=SplitConfig(k_core=2, seed=0))
    assert again.eval_candidates.equals(res.eval_candidates) and again.split_loo.equals(res.split_loo)
    other = build_splits(spark, interactions=data, cfg=SplitConfig(k_core=2, seed=1)).eval_candidates
    assert other.column("split").to_pylist() != res.eval_candidates.column("split").to_pylist()
    assert other.column("negative_item_ids").to_pylist() != res.eval_candidates.column("negative_item_ids").to_pylist()


def test_negatives_exclude_items_removed_by_kcore(spark):
    # user u interacted with "rare" (dropped by k-core); rare must never be drawn for u, and is not in the pool
    rows = [(f"u{k}", f"i{j}", 10 * j) for k in range(4) for j in range(8)] + [("u0", "rare", 99)]
    res = build_splits(spark, interactions=_inter(rows), cfg=SplitConfig(k_core=2, n_negatives=1))
    assert res.eval_candidates.num_rows == 0  # every pool item was seen by every user: no eligible negatives
    assert res.kcore_items == 8


def test_sample_negatives_is_seeded_and_excludes():
    pool = [f"i{k:03d}" for k in range(200)]
    exclude = set(pool[:50])
    a = sample_negatives(pool, exclude, k=20, seed=3, user_id="u")
    assert a == sample_negatives(pool, exclude, k=20, seed=3, user_id="u")
    assert a != sample_negatives(pool, exclude, k=20, seed=4, user_id="u")
    assert len(set(a)) == 20 and not set(a) & exclude
    # few eligible: exhaustive path; too few: None
    assert sorted(sample_negatives(pool[:22], set(pool[:2]), k=20, seed=0, user_id="u")) == pool[2:22]
    assert sample_negatives(pool[:22], set(pool[:3]), k=20, seed=0, user_id="u") is None


def test_assign_user_splits_ratio_by_key_rank():
    keys = [f"{k:02d}" for k in range(20)][::-1]
    labels = assign_user_splits(keys, (0.8, 0.1, 0.1))
    assert labels.count("train") == 16 and labels.count("valid") == 2 and labels.count("test") == 2
    assert labels[-1] == "train" and labels[0] == "test"  # keys[-1]="00" ranks first, keys[0]="19" last
