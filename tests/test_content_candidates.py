"""The content index: hand-computable scores, missing content stays missing, incremental refresh, new items."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mmsrarec_lib import schemas
from mmsrarec_lib.candidates import (
    ContentIndexConfig,
    ItemContentInput,
    build_or_refresh,
    load_content_index,
    refresh_content_index,
)
from mmsrarec_lib.storage import Warehouse

# one-hot "encoder": each word in VOCAB is an axis, so every cosine is hand-computable
VOCAB = ["horror", "ghost", "romance", "love", "space", "robot"]


def onehot_encode(texts: list[str]) -> np.ndarray:
    out = np.zeros((len(texts), len(VOCAB)), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().replace(".", " ").split():
            if w in VOCAB:
                out[i, VOCAB.index(w)] += 1.0
    return out


class CountingEncoder:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.seen += texts
        return onehot_encode(texts)


TEXT_ONLY = ContentIndexConfig(text_encoder="onehot", image_weight=0.0, decay=0.5)
ITEMS = [ItemContentInput("h1", "horror ghost"), ItemContentInput("h2", "horror"),
         ItemContentInput("r1", "romance love"), ItemContentInput("s1", "space robot"), ItemContentInput("blank", "")]


def test_scores_are_decay_weighted_cosines_and_missing_content_is_nan():
    index, stats = build_or_refresh(ITEMS, config=TEXT_ONLY, encode_text=onehot_encode, image_features={})
    assert stats == {"items": 5, "encoded": 5, "reused": 0, "removed": 0, "with_image": 0}
    # history [r1, h2]: h2 is the latest (weight 1), r1 weight 0.5 -> user = l2(0.5*r1 + h2)
    r1 = np.array([0, 0, 1, 1, 0, 0]) / np.sqrt(2)
    h2 = np.array([1, 0, 0, 0, 0, 0])
    user = 0.5 * r1 + h2
    user /= np.linalg.norm(user)
    h1 = np.array([1, 1, 0, 0, 0, 0]) / np.sqrt(2)
    got = index.score([["r1", "h2"]], [["h1", "s1", "blank", "unknown"]])[0]
    assert got[0] == pytest.approx(float(h1 @ user), abs=1e-6)
    assert got[1] == pytest.approx(0.0, abs=1e-6)
    assert np.isnan(got[2]) and np.isnan(got[3])  # no content / not in the catalogue: missing, not "very low"
    assert np.isnan(index.score([["blank"]], [["h1"]])[0][0])  # a history without content scores nothing
    cat = index.score_catalogue([["r1", "h2"]], ["h1", "s1", "blank"])
    np.testing.assert_allclose(cat[0, :2], got[:2], atol=1e-6)
    assert np.isnan(cat[0, 2])


def test_candidates_rank_by_content_and_exclude_seen_items():
    index, _ = build_or_refresh(ITEMS, config=TEXT_ONLY, encode_text=onehot_encode, image_features={})
    [cands] = index.candidates([["h2"]], m=2, exclude=[{"h2"}])
    assert [c for c, _ in cands] == ["h1", "r1"]  # r1 and s1 tie at cosine 0: item id breaks the tie
    assert cands[0][1] == pytest.approx(1 / np.sqrt(2), abs=1e-6)
    assert index.candidates([["blank"]], m=3) == [[]]


def test_image_block_joins_text_and_centres_features():
    feats = {"h1": np.array([1.0, 0.0, 0.0]), "h2": np.array([0.0, 1.0, 0.0]), "r1": np.array([0.0, 0.0, 1.0])}
    cfg = ContentIndexConfig(text_encoder="onehot", image_weight=1.0)
    index, stats = build_or_refresh(ITEMS, config=cfg, encode_text=onehot_encode, image_features=feats)
    assert stats["with_image"] == 3 and index.dim == len(VOCAB) + 3
    np.testing.assert_allclose(index.image_mean, [1 / 3, 1 / 3, 1 / 3])
    v = index.vectors[index.item_ids.index("s1")]  # text only: image block zero, still a unit vector
    assert np.allclose(v[len(VOCAB):], 0) and np.linalg.norm(v) == pytest.approx(1.0)
    v = index.vectors[index.item_ids.index("h1")]  # text and image blocks weigh the same, unit overall
    assert np.linalg.norm(v[:len(VOCAB)]) == pytest.approx(np.linalg.norm(v[len(VOCAB):]), abs=1e-6)


def test_refresh_encodes_only_new_or_changed_items_and_drops_removed_ones():
    first = CountingEncoder()
    index, _ = build_or_refresh(ITEMS, config=TEXT_ONLY, encode_text=first, image_features={})
    again = CountingEncoder()
    items2 = [ItemContentInput("h1", "horror ghost"), ItemContentInput("h2", "ghost"),  # h2 changed
              ItemContentInput("r1", "romance love"), ItemContentInput("n1", "robot space robot")]  # s1, blank gone
    index2, stats = build_or_refresh(items2, config=TEXT_ONLY, encode_text=again, image_features={}, previous=index)
    assert again.seen == ["ghost", "robot space robot"]
    assert stats == {"items": 4, "encoded": 2, "reused": 2, "removed": 2, "with_image": 0}
    np.testing.assert_array_equal(index2.vectors[0], index.vectors[0])  # h1 reused bit for bit
    other = ContentIndexConfig(text_encoder="onehot", image_weight=0.0, decay=0.9)
    _, stats = build_or_refresh(items2, config=other, encode_text=CountingEncoder(), image_features={},
                                previous=index2)
    assert stats["encoded"] == 4  # another config re-encodes everything


def _items_table(rows: list[tuple[str, str, str]]) -> pa.Table:
    data = [{"item_id": i, "title": t, "description": d, "categories": [], "image_status": "none"}
            for i, t, d in rows]
    return pa.Table.from_pylist(data, schema=schemas.ITEMS)


def test_item_ingested_after_training_is_recommended_to_a_user_about_that_kind_of_item(tmp_path):
    """A new horror item with no interactions appears in the content top-M of a horror fan on its first day,
    after an incremental refresh that encodes only that item."""
    wh = Warehouse.from_uri(str(tmp_path))
    rows = [("h1", "Night of the ghost", "a horror film, ghost in the house"),
            ("h2", "The cellar", "horror, a monster in the cellar"),
            ("r1", "Paris in spring", "a romance, love in Paris"),
            ("r2", "Summer letters", "romance and love letters"),
            ("s1", "Orbit", "space travel and a robot crew"),
            ("s2", "Mars base", "a robot on a space station")]
    wh.write_table("ds", "items", _items_table(rows), mode="overwrite")
    cfg = ContentIndexConfig(text_encoder="hashing", image_weight=0.0)
    first = refresh_content_index(wh, "ds", config=cfg)
    assert first["encoded"] == 6 and first["changed"]
    fan = [["h1", "h2"]]
    before = load_content_index(wh, "ds").candidates(fan, m=2, exclude=[{"h1", "h2"}])[0]
    assert "new_horror" not in [c for c, _ in before]

    wh.write_table("ds", "items", _items_table([("new_horror", "The ghost cellar",
                                                 "horror: a ghost and a monster in the cellar")]), mode="append")
    second = refresh_content_index(wh, "ds", config=cfg)
    assert (second["encoded"], second["reused"], second["changed"]) == (1, 6, True)
    index = load_content_index(wh, "ds")
    [after] = index.candidates(fan, m=2, exclude=[{"h1", "h2"}])
    assert after[0][0] == "new_horror"
    assert index.score(fan, [["new_horror", "r1"]])[0][0] > index.score(fan, [["new_horror", "r1"]])[0][1]
    third = refresh_content_index(wh, "ds", config=cfg)  # nothing changed: no new version
    assert (third["encoded"], third["changed"], third["version"]) == (0, False, second["version"])


def test_old_versions_are_pruned_and_latest_always_loads(tmp_path):
    from mmsrarec_lib.candidates import latest_content_version

    wh = Warehouse.from_uri(str(tmp_path))
    cfg = ContentIndexConfig(text_encoder="hashing", image_weight=0.0)
    versions = []
    for n in range(1, 6):  # each round adds an item: a new version each time
        rows = [(f"i{j}", f"title {j}", f"horror ghost {j}") for j in range(n + 1)]
        wh.write_table("ds", "items", _items_table(rows), mode="overwrite")
        versions.append(refresh_content_index(wh, "ds", config=cfg, keep_versions=2)["version"])
    kept = sorted(p.name for p in (tmp_path / "ds" / "indexes" / "content").iterdir() if p.is_dir())
    assert kept == sorted(versions[-2:])
    assert latest_content_version(wh, "ds") == versions[-1] and len(load_content_index(wh, "ds")) == 6


def test_an_image_feature_computed_after_indexing_re_encodes_that_item():
    cfg = ContentIndexConfig(text_encoder="onehot", image_weight=1.0)
    items = [ItemContentInput("h1", "horror", "sha-h1"), ItemContentInput("r1", "romance", "sha-r1"),
             ItemContentInput("s1", "space", "sha-s1")]
    feats = {"h1": np.array([1.0, 0.0]), "r1": np.array([0.0, 1.0])}
    index, _ = build_or_refresh(items, config=cfg, encode_text=onehot_encode, image_features=feats)
    seen = CountingEncoder()
    index2, stats = build_or_refresh(items, config=cfg, encode_text=seen,
                                     image_features={**feats, "s1": np.array([1.0, 1.0])}, previous=index)
    assert seen.seen == ["space"] and stats["encoded"] == 1
    assert np.any(index2.vectors[2][len(VOCAB):]) and not np.any(index.vectors[2][len(VOCAB):])


def test_an_index_built_before_any_image_feature_gains_the_image_block():
    cfg = ContentIndexConfig(text_encoder="onehot", image_weight=1.0)
    items = [ItemContentInput("h1", "horror", "sha-h1"), ItemContentInput("r1", "romance", "sha-r1")]
    index, _ = build_or_refresh(items, config=cfg, encode_text=onehot_encode, image_features={})
    assert index.image_mean is None and index.dim == len(VOCAB)
    feats = {"h1": np.array([1.0, 0.0]), "r1": np.array([0.0, 1.0])}
    index2, stats = build_or_refresh(items, config=cfg, encode_text=onehot_encode, image_features=feats,
                                     previous=index)
    assert stats["encoded"] == 2 and index2.dim == len(VOCAB) + 2
