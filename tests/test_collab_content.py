"""Item content joined to the SASRec vector, the default build (all windows + content), and the quality yardsticks."""

from __future__ import annotations

import numpy as np
import pytest

from mmsrarec_lib.collab.build import CollabConfig, build_collab
from mmsrarec_lib.collab.content import (
    CONTENT_FILE,
    EmbedderConfig,
    HybridEmbedder,
    ItemContent,
    fit_item_content,
    hybrid_embedder,
    item_text,
)
from mmsrarec_lib.collab.embed import l2_normalize
from mmsrarec_lib.collab.quality import genre_share
from mmsrarec_lib.collab.refresh import refresh_collab
from mmsrarec_lib.collab.store import load_index
from mmsrarec_lib.collab.windows import WindowConfig
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

RAW = {"a": [3.0, 0.0, 0.0], "b": [0.0, 2.0, 0.0], "c": [0.0, 0.0, 1.0], "d": [1.0, 1.0, 0.0]}


class CountingEncoder:
    def __init__(self, table):
        self.table, self.calls = table, []

    def __call__(self, texts):
        self.calls.append(list(texts))
        return np.array([self.table[t] for t in texts], dtype=np.float32)


def test_fit_projects_on_principal_axes_with_fixed_signs():
    enc = CountingEncoder(RAW)
    content = fit_item_content({i: i for i in RAW} | {"e": ""}, enc, dims=2, encoder="toy")
    assert content.item_ids == ("a", "b", "c", "d") and content.dims == 2  # "e" has no text
    assert np.allclose(np.linalg.norm(content.vectors, axis=1), 1.0)
    assert np.allclose(content.mean, np.mean(list(RAW.values()), axis=0))
    # the first axis is the direction of largest variance: "a" (3, 0, 0) lies far along it, "b" the other way
    assert content.vectors[0, 0] > 0.9 and content.vectors[1, 0] < 0
    for col in content.axes.T:  # each axis' largest component is positive: refits give identical vectors
        assert col[np.abs(col).argmax()] > 0
    again = fit_item_content({i: i for i in RAW}, CountingEncoder(RAW), dims=2, encoder="toy")
    assert np.array_equal(again.vectors, content.vectors)
    with pytest.raises(ValueError, match="at least 2 items"):
        fit_item_content({"a": "a", "b": ""}, enc, dims=2, encoder="toy")


def test_window_vectors_weight_recent_items_more():
    c = ItemContent(("a", "b"), np.eye(2, dtype=np.float32), np.zeros(2, np.float32), np.eye(2, dtype=np.float32),
                    "toy")
    got = c.window_vectors([["a", "b"], ["b", "a", "zz"], ["zz"], []], decay=0.5)  # (4, 2)
    # [a, b]: 0.5 a + 1 b -> (1, 2)/sqrt 5; [b, a, zz]: zz is unknown but still the latest (age 0): 0.25 b + 0.5 a
    assert np.allclose(got[0], np.array([1, 2]) / np.sqrt(5)) and np.allclose(got[1], np.array([2, 1]) / np.sqrt(5))
    assert not got[2].any() and not got[3].any()


def test_content_round_trips_and_extends_with_new_items_only():
    enc = CountingEncoder(RAW | {"new": [0.0, 0.0, 5.0]})
    content = fit_item_content({i: i for i in RAW}, enc, dims=2, encoder="toy")
    back = ItemContent.from_bytes(content.to_bytes())
    assert back.item_ids == content.item_ids and back.encoder == "toy"
    assert np.array_equal(back.vectors, content.vectors) and np.array_equal(back.axes, content.axes)
    enc.calls.clear()
    assert back.with_items({i: i for i in RAW}, enc) is back and enc.calls == []  # nothing new: nothing encoded
    grown = back.with_items({i: i for i in RAW} | {"new": "new"}, enc)
    assert enc.calls == [["new"]] and grown.item_ids[-1] == "new"
    assert np.allclose(grown.vectors[-1], back.project(np.array([[0.0, 0.0, 5.0]], np.float32))[0])
    assert np.array_equal(grown.vectors[:4], back.vectors)  # known items keep their vectors


def test_hybrid_cosine_mixes_ids_and_content_by_weight():
    content = ItemContent(("a", "b"), np.eye(2, dtype=np.float32), np.zeros(2, np.float32),
                          np.eye(2, dtype=np.float32), "toy")
    ids = ToyEmbedder(["a", "b"], {"a": np.array([1.0, 0.0, 0.0]), "b": np.array([0.6, 0.8, 0.0])})
    emb = HybridEmbedder(ids, content, weight=2.0, decay=1.0)
    x = l2_normalize(emb([["a"], ["b"]]))  # (2, 5)
    assert x.shape == (2, 5)
    # cos_ids = 0.6, cos_content = 0: (0.6 + 4 * 0) / (1 + 4)
    assert float(x[0] @ x[1]) == pytest.approx(0.6 / 5)
    with pytest.raises(ValueError, match="embedder kind"):
        EmbedderConfig(kind="bert")
    assert item_text(" Heat ", "A heist.") == "Heat. A heist." and item_text(None, "") == ""


def test_default_build_indexes_all_windows_with_content_and_refresh_reuses_it(warehouse, monkeypatch):
    times = write_tiny(warehouse)
    cfg = CollabConfig(dataset="tiny", window=WindowConfig(n=2), embedder=EmbedderConfig(content_encoder="hashing",
                                                                                          content_dims=4))
    res = build_collab(warehouse, config=cfg, embedder=ToyEmbedder(ITEMS), embedder_info={"type": "toy"},
                       keywords=KEYWORDS, keyword_source="raw")
    idx0 = load_index(warehouse, "tiny")
    assert res.n_indexed == len(TRAIN) and res.n_entries == idx0.ntotal == 3 * len(TRAIN)
    assert idx0.meta["dim"] == len(ITEMS) + 4 and idx0.meta["embedding"]["kind"] == "hybrid"
    stored = ItemContent.from_bytes(idx0.files[CONTENT_FILE])
    assert set(stored.item_ids) == set(ITEMS)

    # new interactions for T3; the refresh must embed with the stored projection, not a refit
    import mmsrarec_lib.collab.content as content_mod

    monkeypatch.setattr(content_mod, "fit_item_content", lambda *a, **k: pytest.fail("refresh refitted content"))
    late = ts(10_000)
    warehouse.write_table("tiny", "interactions", interactions_table([("T3", "n1", late)], first_source_row=900),
                          mode="append")
    users = dict(USERS)
    users["T3"] = ("train", USERS["T3"][1] + ["n1"])
    times = {**times, "T3": times["T3"] + [late]}
    warehouse.write_table("tiny", "eval_candidates", eval_candidates_table(users, times))
    out = refresh_collab(warehouse, dataset="tiny", embedder=ToyEmbedder(ITEMS), keywords=KEYWORDS)
    idx1 = load_index(warehouse, "tiny")
    assert out.n_indexed == 1 and out.n_entries == 4  # T3 now has 4 positions, all re-embedded
    assert [idx1.next_item_ids[p] for p in idx1.rows_of("T3")] == ["a", "c", "y", "n1"]
    for uid in TRAIN - {"T3"}:
        assert np.array_equal(idx1.vectors_of(uid), idx0.vectors_of(uid))
    assert idx1.files[CONTENT_FILE] == idx0.files[CONTENT_FILE]  # no new items: the same content file
    again = hybrid_embedder(ToyEmbedder(ITEMS), cfg.embedder, {}, content=stored)
    assert np.allclose(l2_normalize(again([["c", "y"]])), idx1.vectors_of("T3")[3])  # the stored projection


def test_genre_share_shuffled_lists_entry_draws_and_interval():
    genres = {k: frozenset(v) for k, v in {"t1": "A", "t2": "B", "x": "A", "y": "B", "z": "AB", "w": "C"}.items()}
    queries = [("q1", "t1", ["x", "w"]), ("q2", "t2", ["y", "z", "y"])]
    got = genre_share(queries, training_next={"v1": "x", "v2": "w", "q1": "t1"}, genres=genres, seed=5)
    # shuffled: q1's target t1 against q2's list [y, z, y] (z shares A): 1; t2 against [x, w]: 0 -> 1 of 5
    assert got.shuffled_share == pytest.approx(1 / 5) and got.ratio_to_shuffled == pytest.approx(4.0)
    # a user with several entries contributes one of them, never the target itself; never the query user
    one = genre_share([("q1", "t1", ["w"])], training_next={"v1": ["t1", "x"], "q1": ["x"]}, genres=genres)
    assert one.random_share == pytest.approx(1.0) and one.neighbor_share == 0.0
    same = genre_share([(f"q{i}", "t1", ["x", "w"]) for i in range(4)], training_next={"v": ["w"]}, genres=genres,
                       bootstrap=200)
    assert same.ratio == float("inf")  # random draws (w) never share a genre with t1
    mixed = genre_share([(f"q{i}", "t1", ["x"]) for i in range(4)], training_next={"v": ["x", "w"]}, genres=genres,
                        bootstrap=200, seed=1)
    assert mixed.ratio_ci[0] <= mixed.ratio <= mixed.ratio_ci[1]


def test_image_features_join_the_content_vector_and_survive_a_round_trip():
    texts = {i: i for i in RAW}
    images = {"a": np.array([2.0, 0.0]), "b": np.array([-2.0, 0.0]), "c": np.array([0.0, 1.0])}  # "d": none
    plain = fit_item_content(texts, CountingEncoder(RAW), dims=2, encoder="toy")
    both = fit_item_content(texts, CountingEncoder(RAW), dims=2, encoder="toy", images=images, image_dims=1,
                            image_weight=1.0)
    assert both.dims == 3 and np.allclose(np.linalg.norm(both.vectors, axis=1), 1.0)
    # image PCA: mean (0, 1/3), first axis +-x; a -> +1, b -> -1 after unit scaling, c -> 0 (no x component)
    axis_sign = np.sign(both.image.axes[0, 0])
    expected_a = np.hstack([plain.vectors[0], axis_sign * 1.0]) / np.sqrt(2)
    np.testing.assert_allclose(both.vectors[0], expected_a, atol=1e-6)
    np.testing.assert_allclose(both.vectors[1, 2], -axis_sign / np.sqrt(2), atol=1e-6)
    np.testing.assert_allclose(both.vectors[3], np.hstack([plain.vectors[3], 0.0]), atol=1e-6)  # no image
    back = ItemContent.from_bytes(both.to_bytes())
    assert back.image is not None and np.array_equal(back.vectors, both.vectors)
    # a new item is projected with the stored text and image projections
    more = back.with_items({**texts, "e": "a"}, CountingEncoder({"a": RAW["a"]}), images={"e": np.array([2.0, 0])})
    np.testing.assert_allclose(more.vectors[-1], both.vectors[0], atol=1e-6)
    assert ItemContent.from_bytes(plain.to_bytes()).image is None  # text-only content files stay text only
    with pytest.raises(ValueError, match="content_image_weight"):
        EmbedderConfig(content_image_weight=-1.0)
