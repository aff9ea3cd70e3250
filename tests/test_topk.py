"""Top-K: candidate generation and selection never return a seen item; explanations; partition replacement."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from mmsrarec_lib.candidates.union import top_unseen
from mmsrarec_lib.recommend.context import NeighborRef, RecContext
from mmsrarec_lib.recommend.topk import (
    TopKConfig,
    explain,
    recommendation_rows,
    select_top_k,
    to_table,
    write_partition,
)

ITEMS = [f"i{k}" for k in range(8)]


def test_generation_takes_the_best_unseen_items_in_order():
    scores = np.array([9.0, 8.0, 7.0, 7.0, -np.inf, 1.0, 0.5, 6.0])
    got = top_unseen(scores, ITEMS, seen={"i0", "i2"}, m=4)
    assert got == ["i1", "i3", "i7", "i5"]  # i0/i2 seen, i4 unscorable, ties by id


def test_selection_never_returns_a_seen_item_even_if_the_reranker_scores_it_highest():
    picks = select_top_k(["i1", "i2", "i3", "i4", "i3"], np.array([0.1, 0.99, 0.5, 0.7, 0.2]), seen={"i2"}, k=3)
    assert picks == [("i4", 0.7), ("i3", 0.5), ("i1", 0.1)]
    assert all(item != "i2" for item, _ in picks)


def test_topk_config_validates():
    with pytest.raises(ValueError, match="top_k"):
        TopKConfig(top_m=5, top_k=10, content_m=4)
    assert TopKConfig(top_m=5, top_k=10, content_m=5).top_k == 10  # content candidates count towards top_k


def _ctx() -> RecContext:
    return RecContext(
        items={}, descriptions={}, images={},
        keywords={"h1": ["Space", "robots", "he"], "h2": ["war", "drama", "who"], "c": ["space", "war", "comedy", "he",
                                                                                   "who"],
                  "n1": ["comedy", "love"], "n2": ["horror"], "old": ["comedy"]},
        neighbors={"u": [NeighborRef("v1", "n1"), NeighborRef("v2", "n2"), NeighborRef("v3", "c")]},
    )


def test_explanation_is_the_overlap_with_the_candidates_keywords():
    exp = explain(_ctx(), user_id="u", history=["old", "h1", "h2"], item_id="c", n_history=2, n_neighbors=3)
    assert exp == {
        "history_keywords": ["Space", "war"],  # "old" is beyond the last 2 items; "he"/"who" are stop words
        "neighbor_keywords": ["comedy", "space", "war"],
        "neighbor_ids": ["v1", "v3"],  # v1 overlaps ("comedy"); v3's next item is the candidate itself
    }


def test_rerun_of_a_run_date_replaces_only_that_partition(warehouse):
    now = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    exp = {"history_keywords": [], "neighbor_keywords": [], "neighbor_ids": []}

    def rows(day, user, items):
        return to_table(recommendation_rows(run_date=day, user_id=user, picks=[(i, 1.0 / r) for r, i in
                                                                               enumerate(items, 1)],
                                            explanations=[exp] * len(items), model_version="m", created_at=now))

    d1, d2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)
    write_partition(warehouse, "ds", rows(d1, "u1", ["a", "b"]), run_date=d1)
    write_partition(warehouse, "ds", rows(d2, "u1", ["c"]), run_date=d2)
    write_partition(warehouse, "ds", rows(d2, "u2", ["d", "e"]), run_date=d2)  # rerun of d2
    got = sorted((r["run_date"], r["user_id"], r["rank"], r["item_id"])
                 for r in warehouse.read_table("ds", "recommendations").to_pylist())
    assert got == [(d1, "u1", 1, "a"), (d1, "u1", 2, "b"), (d2, "u2", 1, "d"), (d2, "u2", 2, "e")]
    with pytest.raises(ValueError, match="not of run_date"):
        write_partition(warehouse, "ds", rows(d1, "u1", ["a"]), run_date=d2)
