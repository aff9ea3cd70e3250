"""Stage 2 core: windows, the faiss index (kinds, update, save/load), retrieval rules, table rows."""

from __future__ import annotations

import numpy as np
import pytest

from mmsrarec_lib.collab.embed import l2_normalize, latest_sasrec_run
from mmsrarec_lib.collab.index import IndexConfig, build_index, update_index
from mmsrarec_lib.collab.retrieval import Query, RetrievalConfig, find_neighbors
from mmsrarec_lib.collab.store import list_index_versions, load_index, save_index
from mmsrarec_lib.collab.table import build_rows, merge_keywords
from mmsrarec_lib.collab.windows import (
    Target,
    UserSequence,
    UserWindow,
    WindowConfig,
    held_out_window,
    latest_window,
    load_sequences,
    load_targets,
    paper_windows,
    training_windows,
)
from tests._collab_helpers import ITEMS, TRAIN, ToyEmbedder, ts, write_tiny


def _seq(uid, items):
    return UserSequence(uid, tuple(items), tuple(range(100, 100 + 10 * len(items), 10)))


def test_windows_cut_before_the_held_out_target():
    seq = _seq("u", ["p", "q", "r", "s", "t"])
    w = held_out_window(seq, Target("u", "train", "s", 130), WindowConfig(n=2))
    assert w.items == ("q", "r") and w.next_item_id == "s" and w.next_timestamp_us == 130 and w.as_of_us == 120
    whole = held_out_window(seq, Target("u", "train", "s", 130), WindowConfig(n=2, whole_history=True))
    assert whole.items == ("p", "q", "r")
    latest = latest_window(seq, WindowConfig(n=3))
    assert latest.items == ("r", "s", "t") and latest.as_of_us == 140 and latest.next_item_id is None
    # a repeated item: the occurrence with the target's timestamp is the cut
    rep = _seq("u", ["s", "q", "s", "t"])
    assert held_out_window(rep, Target("u", "train", "s", 100), WindowConfig(n=5)).items == ()
    assert held_out_window(rep, Target("u", "train", "s", 120), WindowConfig(n=5)).items == ("s", "q")
    # eval_candidates.history (k-core filtered: "q" dropped) wins for n <= its length
    kcore = Target("u", "train", "t", 140, ("p", "r", "s"))
    w = held_out_window(seq, kcore, WindowConfig(n=2))
    assert w.items == ("r", "s") and w.as_of_us == 130
    assert held_out_window(seq, kcore, WindowConfig(n=4)).items == ("p", "q", "r", "s")  # longer: from the sequence
    with pytest.raises(ValueError, match="user 'u'.*'zz' is not in its interactions"):
        held_out_window(seq, Target("u", "train", "zz", None), WindowConfig())
    with pytest.raises(ValueError, match="window length"):
        WindowConfig(n=0)


def test_sequences_and_targets_from_tables(warehouse):
    times = write_tiny(warehouse)
    seqs = load_sequences(warehouse, "tiny")
    assert seqs["X1"].items == ("d", "a", "b", "z")
    assert load_sequences(warehouse, "tiny", users=["T2"]).keys() == {"T2"}
    targets = load_targets(warehouse, "tiny")
    train = training_windows(seqs, targets, WindowConfig(n=2, entries="last"))
    assert {w.user_id for w in train} == TRAIN and len(train) == len(TRAIN)  # valid/test users are never indexed
    t1 = next(w for w in train if w.user_id == "T1")
    assert t1.items == ("a", "b") and t1.next_item_id == "z" and t1.position == 3
    assert t1.next_timestamp_us == int(times["T1"][-1].timestamp() * 1e6)
    # entries="all" (the default): every position of a training user's sequence, oldest first, the last = above
    every = [w for w in training_windows(seqs, targets, WindowConfig(n=2)) if w.user_id == "T1"]
    assert [(w.items, w.next_item_id, w.position) for w in every] == [
        (("e",), "a", 1), (("e", "a"), "b", 2), (("a", "b"), "z", 3)]
    assert [w.as_of_us for w in every] == [int(t.timestamp() * 1e6) for t in times["T1"][:3]]
    assert {w.user_id for w in training_windows(seqs, targets, WindowConfig(n=2))} == TRAIN
    capped = training_windows(seqs, targets, WindowConfig(n=2, max_entries_per_user=2))
    assert [w.position for w in capped if w.user_id == "T1"] == [2, 3] and len(capped) == 2 * len(TRAIN)
    with pytest.raises(ValueError, match="entries must be"):
        WindowConfig(entries="some")
    paper = {w.user_id: w for w in paper_windows(seqs, targets, WindowConfig(n=5))}
    assert paper["X1"].items == ("d", "a", "b")  # = eval_candidates.history


def _tiny_index(warehouse, *, config=None, entries="last"):
    write_tiny(warehouse)
    seqs, targets = load_sequences(warehouse, "tiny"), load_targets(warehouse, "tiny")
    emb = ToyEmbedder(ITEMS)
    train = training_windows(seqs, targets, WindowConfig(n=2, entries=entries))
    idx = build_index(train, l2_normalize(emb([list(w.items) for w in train])), config=config or IndexConfig())
    return idx, seqs, targets, emb


def test_neighbours_exclude_self_leakage_and_non_training_users(warehouse):
    idx, seqs, targets, emb = _tiny_index(warehouse)
    windows = paper_windows(seqs, targets, WindowConfig(n=2))
    queries = [Query(w.user_id, w.next_item_id, w.as_of_us) for w in windows]
    vecs = l2_normalize(emb([list(w.items) for w in windows]))
    got = dict(zip([w.user_id for w in windows], find_neighbors(idx, queries, vecs, config=RetrievalConfig(k=3))))
    # X1 = [a, b] -> z: T1 has the identical window but its next item is z (the held-out target): excluded.
    assert [n.user_id for n in got["X1"]][0] == "T2" and {n.user_id for n in got["X1"]} == {"T2", "T3", "T4"}
    assert got["X1"][0].score == pytest.approx(1.0) and got["X1"][1].score == pytest.approx(0.5)
    # T2 = [a, b] -> y: never itself, never T3 (next item y)
    assert [n.user_id for n in got["T2"]][:2] == ["T1", "T4"]
    for uid, ns in got.items():
        assert len(ns) == 3
        assert uid not in {n.user_id for n in ns}
        assert {n.user_id for n in ns} <= TRAIN  # V1 shares X1's window exactly yet never appears
        assert all(n.next_item_id != targets[uid].item_id for n in ns)
    # without a held-out target (production) the identical T1 comes back
    x1_vec = vecs[[w.user_id for w in windows].index("X1")][None]  # (1, d)
    latest = find_neighbors(idx, [Query("X1")], x1_vec, config=RetrievalConfig(k=2))
    assert {n.user_id for n in latest[0]} == {"T1", "T2"}


def test_all_windows_count_each_user_once_at_its_best_allowed_entry(warehouse):
    idx, seqs, targets, emb = _tiny_index(warehouse, entries="all")
    assert idx.ntotal == 3 * len(TRAIN) and idx.n_users == len(TRAIN)  # 3 positions per training user
    vec = l2_normalize(emb([["a", "b"]]))  # X1's window; its held-out target is z
    cfg = RetrievalConfig(k=3, overfetch=0)  # forces refills past duplicate users
    got = find_neighbors(idx, [Query("X1", "z")], vec, config=cfg)[0]
    # T2's window [a, b] -> y (cos 1); then T5's [a] -> e and T6's [b] -> e (cos 1/sqrt 2): earlier positions count
    assert [n.user_id for n in got][0] == "T2" and {n.user_id for n in got[1:]} == {"T5", "T6"}
    assert [n.next_item_id for n in got] == ["y", "e", "e"]
    assert [n.score for n in got] == pytest.approx([1.0, 2**-0.5, 2**-0.5])
    every = find_neighbors(idx, [Query("X1", "z")], vec, config=RetrievalConfig(k=10))[0]
    assert sorted(n.user_id for n in every) == sorted(TRAIN)  # each user once
    t1 = next(n for n in every if n.user_id == "T1")
    # T1's best entry [a, b] -> z would leak the target: T1 comes back at its next-best entry [e, a] -> b
    assert t1.next_item_id == "b" and t1.score == pytest.approx(0.5)


def test_refill_when_filters_remove_more_than_the_overfetch(warehouse):
    idx, seqs, targets, emb = _tiny_index(warehouse)
    q = Query("T1", held_out_item_id="w")  # drops T4 and T5
    vec = l2_normalize(emb([["a", "b"]]))
    got = find_neighbors(idx, [q], vec, config=RetrievalConfig(k=4, overfetch=0))[0]
    assert {n.user_id for n in got} == {"T2", "T3", "T6"}  # only 3 eligible of 6: the index is exhausted
    nofuture = find_neighbors(
        idx, [Query("Q", None, as_of_us=int(ts(5).timestamp() * 1e6))], vec, config=RetrievalConfig(no_future=True)
    )[0]
    assert nofuture == []  # every training user's next item is later than minute 5


@pytest.mark.parametrize("approx", ["ivf", "hnsw"])
def test_index_kind_by_threshold_and_recall(approx):
    rng = np.random.default_rng(0)
    x = l2_normalize(rng.normal(size=(2000, 16)))  # (n, d)
    windows = [UserWindow(f"u{i}", ("a",), i, f"i{i % 7}", i) for i in range(2000)]
    exact = build_index(windows, x, config=IndexConfig(exact_threshold=10_000))
    approx_idx = build_index(windows, x, config=IndexConfig(exact_threshold=1000, approx=approx, nprobe=8))
    assert exact.kind == "flat" and approx_idx.kind == approx
    q = x[:200]
    _, e_ids = exact.search(q, 3)
    _, a_ids = approx_idx.search(q, 3)
    recall = np.mean([len(set(a) & set(e)) / 3 for a, e in zip(a_ids, e_ids)])
    assert recall > 0.8
    assert (e_ids[:, 0] == np.arange(200)).all()  # each vector is its own nearest


@pytest.mark.parametrize("approx", ["flat", "ivf", "hnsw"])
def test_update_replaces_only_given_users_and_round_trips(warehouse, approx):
    rng = np.random.default_rng(1)
    n = 400
    x = l2_normalize(rng.normal(size=(n, 8)))
    # u0..u199 have one entry each; u200..u399 are 100 users with two entries (positions 1 and 2)
    windows = [UserWindow(f"u{i}", ("a",), i, f"i{i}", i, 1) for i in range(200)]
    windows += [UserWindow(f"u{200 + i // 2}", ("a",), i, f"i{200 + i}", i, 1 + i % 2) for i in range(200)]
    cfg = IndexConfig(exact_threshold=10**9 if approx == "flat" else 100, approx="ivf" if approx == "flat" else approx,
                      hnsw_rebuild_dead_fraction=0.01)
    idx = build_index(windows, x, config=cfg)
    assert idx.n_users == 300 and idx.rows_of("u201") == [202, 203]
    v0 = save_index(warehouse, "ds", idx)
    loaded = load_index(warehouse, "ds", v0)
    new_x = l2_normalize(rng.normal(size=(4, 8)))
    changed = [
        UserWindow("u5", ("b",), 9, "new5", 9, 1),
        UserWindow("u201", ("b",), 9, "new201a", 9, 1),  # had 2 entries: both go, 2 new come
        UserWindow("u201", ("b",), 9, "new201b", 9, 2),
        UserWindow("fresh", ("c",), 9, "nf", 9, 1),
    ]
    upd = update_index(loaded, changed, new_x)
    assert upd.ntotal == n + 1 and upd.n_users == 301 and upd.meta["parent_version"] == v0 and upd.version != v0
    assert upd.meta["tombstones"] == (3 if approx == "hnsw" and not upd.meta["hnsw_rebuilt"] else 0)
    assert [upd.next_item_ids[p] for p in upd.rows_of("u201")] == ["new201a", "new201b"]
    assert [upd.faiss_ids[p] for p in upd.rows_of("fresh")] == [n + 3]  # fresh ids after the last one
    assert upd.faiss_ids[upd.rows_of("u6")[0]] == 6 and upd.next_item_ids[upd.rows_of("u6")[0]] == "i6"
    _, rows = upd.search(new_x, 1)
    assert [upd.user_ids[r] for r in rows[:, 0]] == ["u5", "u201", "u201", "fresh"]
    _, rows_old = upd.search(x[[0, 6, 100, 5]], 1)
    # unchanged users still find themselves; u5's old vector no longer leads to u5 (removed or a tombstone)
    assert [upd.user_ids[r] for r in rows_old[:3, 0]] == ["u0", "u6", "u100"]
    assert rows_old[3, 0] == -1 or upd.user_ids[rows_old[3, 0]] != "u5" or upd.next_item_ids[rows_old[3, 0]] == "new5"
    v1 = save_index(warehouse, "ds", upd)
    back = load_index(warehouse, "ds")  # LATEST
    assert back.version == v1 and back.user_ids == upd.user_ids and back.next_item_ids == upd.next_item_ids
    assert back.positions == upd.positions and np.array_equal(back.faiss_ids, upd.faiss_ids)
    assert np.array_equal(back.search(x[:20], 3)[1], upd.search(x[:20], 3)[1])
    assert load_index(warehouse, "ds", v0).ntotal == n  # the old version is still loadable
    assert list_index_versions(warehouse, "ds") == [v0, v1]  # oldest first
    with pytest.raises(FileNotFoundError, match="version 'nope' not found"):
        load_index(warehouse, "ds", "nope")


def test_hnsw_tombstones_are_skipped_then_rebuilt_past_the_threshold():
    rng = np.random.default_rng(2)
    x = l2_normalize(rng.normal(size=(300, 8)))
    windows = [UserWindow(f"u{i}", ("a",), i, f"i{i}", i, 1) for i in range(300)]
    idx = build_index(windows, x, config=IndexConfig(exact_threshold=10, approx="hnsw"))  # rebuild past 25%
    for step in range(3):  # 3 x 30 users replaced: 30, 60 tombstones, then 90 > 0.25 * 300 -> rebuild
        users = [f"u{30 * step + j}" for j in range(30)]
        new = l2_normalize(rng.normal(size=(30, 8)))
        idx = update_index(idx, [UserWindow(u, ("b",), 0, f"n-{u}", 0, 2) for u in users], new)
        assert idx.ntotal == 300 and idx.capacity == 300 + idx.meta["tombstones"]
        assert idx.meta["hnsw_rebuilt"] == (step == 2)
        assert idx.meta["tombstones"] == (30 * (step + 1) if step < 2 else 0)
        _, rows = idx.search(x[:60], 5)
        assert all(r == -1 or idx.user_ids[r] not in users or idx.positions[r] == 2 for r in rows.ravel())
        _, own = idx.search(new, 1)
        assert [idx.user_ids[r] for r in own[:, 0]] == users
    assert idx.faiss_ids.min() == 90 and idx.faiss_ids.max() == 389  # ids stay stable through the rebuild


def test_prune_keeps_the_newest_versions_and_latest(warehouse):
    from mmsrarec_lib.collab.store import index_uri, prune_index_versions

    x = l2_normalize(np.random.default_rng(0).normal(size=(5, 4)))
    windows = [UserWindow(f"u{i}", ("a",), i, "i", i, 1) for i in range(5)]
    versions = [save_index(warehouse, "ds", build_index(windows, x, config=IndexConfig(),
                                                       version=f"collab-2026010{d}")) for d in range(1, 6)]
    warehouse.write_bytes(index_uri(warehouse, "ds", "collab-20260101T1", "index.faiss"), b"crashed write")
    warehouse.write_bytes(index_uri(warehouse, "ds", "collab-20260109", "index.faiss"), b"a build in progress")
    gone = prune_index_versions(warehouse, "ds", keep=2, protect=("collab-20260102",))
    assert gone == ["collab-20260101", "collab-20260101T1", "collab-20260103"]
    assert list_index_versions(warehouse, "ds") == ["collab-20260102", *versions[3:]]
    assert warehouse.exists(index_uri(warehouse, "ds", "collab-20260109", "index.faiss"))  # newer: untouched
    assert load_index(warehouse, "ds").version == versions[-1]
    with pytest.raises(ValueError, match="keep must be"):
        prune_index_versions(warehouse, "ds", keep=0)


def test_rows_carry_keywords_of_next_items(warehouse):
    idx, seqs, targets, emb = _tiny_index(warehouse)
    w = UserWindow("X1", ("a", "b"), 5, "z", 6)
    ns = find_neighbors(idx, [Query("X1", "z")], l2_normalize(emb([["a", "b"]])), config=RetrievalConfig())
    kw = {"y": ["space", "robots"], "w": ["heist"]}
    common = {"keywords": kw, "keyword_source": "raw", "index_version": idx.version, "created_at": ts(0)}
    rows = build_rows([w], ns, protocol="paper", **common)
    row = rows.to_pylist()[0]
    assert row["protocol"] == "paper" and row["index_version"] == idx.version and row["keyword_source"] == "raw"
    first = {"user_id": "T2", "score": pytest.approx(1.0), "next_item_id": "y", "keywords": ["space", "robots"]}
    assert row["neighbors"][0] == first
    assert merge_keywords({"text": ["a", "b"], "image": ["b", "c"]}) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="protocol"):
        build_rows([w], ns, protocol="x", **common)


def test_latest_sasrec_run_picks_newest_sasrec(warehouse):
    for run, kind in [("r-20260101", "sasrec"), ("r-20260301", "popularity"), ("r-20260201", "sasrec")]:
        warehouse.write_bytes(warehouse.uri("ds", "models", run, "model.json"), f'{{"kind": "{kind}"}}'.encode())
    assert latest_sasrec_run(warehouse, "ds") == "r-20260201"
    with pytest.raises(FileNotFoundError, match="no complete sasrec run"):
        latest_sasrec_run(warehouse, "other")


def test_genre_share_ratio_hand_computed():
    from mmsrarec_lib.collab.quality import genre_share

    genres = {k: frozenset(v) for k, v in {"t1": "A", "t2": "B", "x": "A", "y": "B", "z": "AB", "w": "C"}.items()}
    queries = [("q1", "t1", ["x", "w"]), ("q2", "t2", ["y", "z", "y"])]
    # random draws: q1 may not draw itself (next t1), so it gets v1 (x: shares A) and v2 (w): 1 of 2;
    # q2 needs 3 of {v1: x, v2: w, q1: t1}: none shares B: 0 of 3.
    got = genre_share(queries, training_next={"v1": "x", "v2": "w", "q1": "t1"}, genres=genres, seed=5)
    assert got.neighbor_share == pytest.approx(4 / 5) and got.random_share == pytest.approx(1 / 5)
    assert got.ratio == pytest.approx(4.0) and got.n_pairs == 5 and got.min_neighbors == 2


@pytest.mark.parametrize("approx", ["flat", "ivf"])
def test_refreshes_are_stored_as_cumulative_deltas_until_compaction(warehouse, approx):
    from mmsrarec_lib.collab.store import index_uri, prune_index_versions

    rng = np.random.default_rng(4)
    n, d = 300, 8
    x = l2_normalize(rng.normal(size=(n, d)))
    windows = [UserWindow(f"u{i}", ("a",), i, f"i{i}", i, 1) for i in range(n)]
    cfg = IndexConfig(exact_threshold=10**9 if approx == "flat" else 100, nprobe=64, delta_max_fraction=0.1)
    v0 = save_index(warehouse, "ds", build_index(windows, x, config=cfg))
    idx, versions = load_index(warehouse, "ds"), [v0]
    for step, users in enumerate([range(0, 5), range(3, 8), range(100, 120)]):  # u3, u4 change twice
        new = l2_normalize(rng.normal(size=(len(users), d)))
        idx = update_index(idx, [UserWindow(f"u{i}", ("b",), 0, f"s{step}-{i}", 0, 2) for i in users], new)
        versions.append(save_index(warehouse, "ds", idx))
        back = load_index(warehouse, "ds", versions[-1])
        assert np.array_equal(np.sort(back.faiss_ids), np.sort(idx.faiss_ids)) and back.ntotal == n
        s_a, r_a = idx.search(x[:40], 5)
        s_b, r_b = back.search(x[:40], 5)
        assert np.allclose(np.sort(s_a, 1), np.sort(s_b, 1))  # same neighbours (order of ties aside)
        assert [back.user_ids[r] for r in back.search(new, 1)[1][:, 0]] == [f"u{i}" for i in users]
        idx = back
    full = lambda v: warehouse.exists(index_uri(warehouse, "ds", v, "index.faiss"))  # noqa: E731
    # 5 then 5 more changed (2 of them again: 8 removed + 10 added = 18 <= 0.1 * 305): deltas on v0; then 20 more
    # users pass 10% of the entries and the version is stored in full again
    assert [full(v) for v in versions] == [True, False, False, True]
    meta1 = load_index(warehouse, "ds", versions[2]).meta
    assert meta1["stored_as"] == "delta" and meta1["base_version"] == v0
    assert len(load_index(warehouse, "ds", versions[2]).delta.removed_ids) == 8  # u0..u7, once each
    # pruning keeps the base of a kept delta version
    assert prune_index_versions(warehouse, "ds", keep=1, protect=(versions[2],)) == [versions[1]]
    assert load_index(warehouse, "ds", versions[2]).ntotal == n  # its base v0 is still there
