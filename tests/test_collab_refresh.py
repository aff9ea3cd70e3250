"""Stage 2 build and nightly refresh: idempotence, only changed users touched, watermark advanced last."""

from __future__ import annotations

import numpy as np
import pytest

from mmsrarec_lib.collab.build import CollabConfig, build_collab, watermark_uri
from mmsrarec_lib.collab.content import EmbedderConfig
from mmsrarec_lib.collab.index import IndexConfig
from mmsrarec_lib.collab.refresh import read_watermark, refresh_collab
from mmsrarec_lib.collab.store import latest_index_version, list_index_versions, load_index
from mmsrarec_lib.collab.table import TABLE
from mmsrarec_lib.collab.windows import WindowConfig, to_us
from mmsrarec_lib.storage import Warehouse
from tests._collab_helpers import (
    ITEMS,
    KEYWORDS,
    TRAIN,
    USERS,
    ToyEmbedder,
    eval_candidates_table,
    interactions_table,
    ts,
    write_tiny,
)

# one entry per training user and the toy embedder alone, so neighbours stay hand-computable
CFG = CollabConfig(dataset="tiny", window=WindowConfig(n=2, entries="last"), embedder=EmbedderConfig(kind="sasrec"),
                   index=IndexConfig())


def _build(warehouse, emb=None):
    emb = emb or ToyEmbedder(ITEMS)
    res = build_collab(
        warehouse, config=CFG, embedder=emb, embedder_info={"type": "toy"}, keywords=KEYWORDS, keyword_source="raw"
    )
    return res, emb


def _rows(warehouse):
    return {(r["user_id"], r["protocol"]): r for r in warehouse.read_table("tiny", TABLE).to_pylist()}


def test_build_writes_every_user_and_rerun_replaces(warehouse):
    times = write_tiny(warehouse)
    res, _ = _build(warehouse)
    rows = _rows(warehouse)
    assert len(rows) == 2 * len(USERS) and res.n_rows == 16 and res.n_short == 0 and res.n_indexed == len(TRAIN)
    x1 = rows[("X1", "paper")]
    assert [n["user_id"] for n in x1["neighbors"]][0] == "T2" and x1["as_of"] == times["X1"][-2]
    assert x1["neighbors"][0]["keywords"] == ["kw-y", "shared"] and x1["index_version"] == res.index_version
    assert rows[("X1", "latest")]["as_of"] == times["X1"][-1]
    for (uid, _), r in rows.items():
        assert len(r["neighbors"]) == 3 and uid not in {n["user_id"] for n in r["neighbors"]}
        assert {n["user_id"] for n in r["neighbors"]} <= TRAIN
    wm = read_watermark(warehouse, "tiny")
    assert wm.max_interaction_us == to_us(max(t for ts_ in times.values() for t in ts_)) and wm.table_version == 0
    res2, _ = _build(warehouse)
    again = _rows(warehouse)
    assert len(again) == len(rows)  # overwrite: no duplicates
    assert {k: r["neighbors"] for k, r in again.items()} == {k: r["neighbors"] for k, r in rows.items()}
    assert warehouse.table_version("tiny", TABLE) == 1 and latest_index_version(warehouse, "tiny") == res2.index_version


def _append_new_interactions(warehouse, times):
    """T3 watches n1 and X1 watches n2 (both after everything else); ingest re-derives eval_candidates: T3's
    target becomes n1, X1's n2."""
    late = ts(10_000)
    warehouse.write_table(
        "tiny", "interactions", interactions_table([("T3", "n1", late), ("X1", "n2", late)], first_source_row=1000),
        mode="append",
    )
    users = dict(USERS)
    users["T3"] = ("train", USERS["T3"][1] + ["n1"])
    users["X1"] = ("test", USERS["X1"][1] + ["n2"])
    times = {**times, "T3": times["T3"] + [late], "X1": times["X1"] + [late]}
    warehouse.write_table("tiny", "eval_candidates", eval_candidates_table(users, times))


def test_refresh_touches_only_changed_users_and_is_idempotent(warehouse):
    times = write_tiny(warehouse)
    res0, _ = _build(warehouse)
    before = _rows(warehouse)
    wm_bytes = warehouse.read_bytes(watermark_uri(warehouse, "tiny"))
    idx0 = load_index(warehouse, "tiny")

    emb = ToyEmbedder(ITEMS)
    noop = refresh_collab(warehouse, dataset="tiny", embedder=emb, keywords=KEYWORDS)
    assert noop.changed_users == () and emb.calls == []
    assert warehouse.table_version("tiny", TABLE) == 0
    assert list_index_versions(warehouse, "tiny") == [res0.index_version]
    assert warehouse.read_bytes(watermark_uri(warehouse, "tiny")) == wm_bytes

    _append_new_interactions(warehouse, times)
    res = refresh_collab(warehouse, dataset="tiny", embedder=emb, keywords=KEYWORDS)
    assert res.changed_users == ("T3", "X1") and res.n_indexed == 1 and res.n_rows == 4
    # only T3 (training entry) and T3/X1 (paper + latest queries) were embedded
    assert sorted(emb.calls) == sorted([("c", "y"), ("c", "y"), ("y", "n1"), ("b", "z"), ("z", "n2")])
    assert warehouse.table_version("tiny", TABLE) == 1  # one MERGE commit
    after = _rows(warehouse)
    assert after.keys() == before.keys()
    for key, row in after.items():
        if key[0] in ("T3", "X1"):
            assert row["index_version"] == res.index_version and row["created_at"] > before[key]["created_at"]
        else:
            assert row == before[key]  # untouched
    assert after[("X1", "latest")]["as_of"] == ts(10_000)
    idx1 = load_index(warehouse, "tiny")
    assert idx1.meta["parent_version"] == res0.index_version and sorted(idx1.user_ids) == sorted(idx0.user_ids)
    [t3] = idx1.rows_of("T3")
    assert idx1.next_item_ids[t3] == "n1" and idx0.next_item_ids[idx0.rows_of("T3")[0]] == "y"
    for uid in TRAIN - {"T3"}:
        assert np.array_equal(idx1.vectors_of(uid), idx0.vectors_of(uid))
        assert idx1.faiss_ids[idx1.rows_of(uid)].tolist() == idx0.faiss_ids[idx0.rows_of(uid)].tolist()
    assert not np.allclose(idx1.vectors_of("T3"), idx0.vectors_of("T3"))
    assert read_watermark(warehouse, "tiny").max_interaction_us == to_us(ts(10_000))

    emb.calls.clear()
    again = refresh_collab(warehouse, dataset="tiny", embedder=emb, keywords=KEYWORDS)
    assert again.changed_users == () and emb.calls == [] and warehouse.table_version("tiny", TABLE) == 1
    assert latest_index_version(warehouse, "tiny") == res.index_version


def test_crash_before_table_commit_leaves_watermark_so_users_are_redone(warehouse, monkeypatch):
    times = write_tiny(warehouse)
    _build(warehouse)
    wm0 = read_watermark(warehouse, "tiny")
    _append_new_interactions(warehouse, times)

    def boom(self, *a, **k):
        raise RuntimeError("crash during MERGE")

    monkeypatch.setattr(Warehouse, "merge_table", boom)
    with pytest.raises(RuntimeError, match="crash"):
        refresh_collab(warehouse, dataset="tiny", embedder=ToyEmbedder(ITEMS), keywords=KEYWORDS)
    monkeypatch.undo()
    assert read_watermark(warehouse, "tiny") == wm0 and warehouse.table_version("tiny", TABLE) == 0
    crashed_version = latest_index_version(warehouse, "tiny")  # the index version was saved before the crash

    res = refresh_collab(warehouse, dataset="tiny", embedder=ToyEmbedder(ITEMS), keywords=KEYWORDS)
    assert res.changed_users == ("T3", "X1")  # nothing skipped
    idx = load_index(warehouse, "tiny")
    assert idx.meta["parent_version"] == crashed_version and idx.ntotal == len(TRAIN)  # replaced, not duplicated
    rows = _rows(warehouse)
    assert len(rows) == 16 and rows[("X1", "paper")]["index_version"] == res.index_version


def test_refresh_without_build_is_a_clear_error(warehouse):
    write_tiny(warehouse)
    with pytest.raises(FileNotFoundError, match="run build-collab first"):
        refresh_collab(warehouse, dataset="tiny", embedder=ToyEmbedder(ITEMS), keywords=KEYWORDS)
