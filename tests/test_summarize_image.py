"""Image keywords from the pretrained image model: cross-fitted maps, vocabulary, candidates, rewards, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from jobs.cli import main as cli
from mmsrarec_lib.runs import sha256_hex
from mmsrarec_lib.summarize.image_keywords import IMAGE_FEATURES, PhraseVocabulary, short_class_names
from mmsrarec_lib.summarize.image_quality import own_vs_random, spearman
from mmsrarec_lib.summarize.image_space import CrossModalMap, fold_of
from mmsrarec_lib.summarize.table import TABLE
from mmsrarec_lib.summarize.types import ItemInput, items_from_table
from tests._summarize_helpers import items_table, jpeg
from tests._vision_helpers import tiny_vit

DS = "tiny"


def _arrays(n=30, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"i{k}" for k in range(n)]
    img = rng.normal(size=(n, 6))
    txt = img[:, :4] @ rng.normal(size=(4, 5)) + 0.1 * rng.normal(size=(n, 5))  # text predictable from image
    return ids, img, txt


def test_projection_is_fitted_out_of_fold_exactly():
    """An item's projection is the ridge fitted on the other folds only: its own text never enters it."""
    ids, img, txt = _arrays()
    space = CrossModalMap.fit(ids, img, txt, folds=3, lam_image=0.1, lam_text=0.05)
    fz = (img - img.mean(0)) / (img.std(0) + 1e-6)
    k = 0
    train = np.array([fold_of(i, 3) != fold_of(ids[k], 3) for i in ids])
    assert not train[k] and train.sum() >= 10
    xm, xs = fz[train].mean(0), fz[train].std(0) + 1e-6
    a = (fz[train] - xm) / xs
    w = np.linalg.solve(a.T @ a + 0.1 * train.sum() * np.eye(6), a.T @ (txt[train] - txt[train].mean(0)))
    pred = ((fz[k] - xm) / xs) @ w + txt[train].mean(0)
    expected = (pred - txt.mean(0)) / np.linalg.norm(pred - txt.mean(0))
    np.testing.assert_allclose(space.project(ids[k]), expected, atol=1e-5)
    # R_info is the centred cosine with that projection; no keywords: R_info 0, R_recon -1
    v = txt[3]
    centred = (v - txt.mean(0)) / np.linalg.norm(v - txt.mean(0))
    assert space.r_info(v.astype(np.float32), ids[k]) == pytest.approx(float(centred @ expected), abs=1e-5)
    assert space.r_info(np.zeros(5, np.float32), ids[k]) == 0.0 and space.r_recon(np.zeros(5), ids[k]) == -1.0
    # an item's own text reconstructs its image better than a far-off text does, and R_recon stays in [-1, 0]
    recon = [space.r_recon(txt[space.index[i]], i) for i in ids]
    assert all(-1.0 <= r <= 0.0 for r in recon) and np.mean(recon) > -0.5
    with pytest.raises(ValueError, match="at least 10 items"):
        CrossModalMap.fit(ids[:6], img[:6], txt[:6], folds=5)


def test_vocabulary_keeps_shared_phrases_and_categories_not_names():
    plots = ["A detective hunts a killer in Chicago.", "Chicago police hunt a killer at night.",
             "The detective and Chicago police hunt a killer.", "A killer escapes.", "Love in spring."]
    items = [ItemInput(str(k), f"T{k}", d, ("Thriller",) if k < 4 else ("Romance",)) for k, d in enumerate(plots)]
    vocab = PhraseVocabulary.build(items, min_df=2, max_df=0.9)
    assert "killer" in vocab.phrases and "hunt" in vocab.phrases and vocab.df["killer"] == 4
    assert "chicago" not in vocab.phrases  # capitalised mid-sentence in every occurrence: a name
    assert {"thriller", "romance"} <= set(vocab.phrases) and "love" not in vocab.phrases  # df 1
    names = short_class_names()
    assert names["military uniform"] == "military uniform" and names["kite (bird of prey)"] == "kite"


def test_win_rate_and_spearman_by_hand():
    own = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    kws = np.array([[2.0, 0.1], [0.0, 0.0], [0.5, 0.6]])  # item 1 has no keyword: a loss
    w = own_vs_random(kws, own, seed=0, bootstrap=50)
    # seed 0 draws j != i; item 0 (closest to its own text) and item 2 win against either other item
    assert w.n == 3 and w.wins == 2.0 and w.rate == pytest.approx(2 / 3)
    assert own_vs_random(kws, own, seed=0, empty_is_loss=False).n == 2
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(np.corrcoef([0, 1.5, 1.5, 3], [0, 1, 2, 3])[0, 1])


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    return str(tiny_vit(tmp_path_factory.mktemp("m") / "vit-clf", classify=True))


def _summarize(warehouse, vit, *extra):
    return cli(["--log-level", "WARNING", "summarize", "--dataset", DS, "--warehouse", warehouse.root,
                "--encoder", "hashing", "--no-progress", "--image-encoder", vit, *extra])


def test_summarize_writes_text_and_image_rows_by_default_and_backfills_images(warehouse, vit, capsys):
    table = items_table(24)  # 16 items with an image (every third has none)
    warehouse.write_table(DS, "items", table)
    assert _summarize(warehouse, vit, "--summarizer-version", "v1") == 0
    rows = warehouse.read_table(DS, TABLE).to_pylist()
    with_image = {it.item_id for it in items_from_table(table) if it.has_input("image")}
    assert {r["item_id"] for r in rows if r["modality"] == "text"} == {str(i) for i in range(1, 25)}
    image_rows = [r for r in rows if r["modality"] == "image"]
    assert {r["item_id"] for r in image_rows} == with_image and len(with_image) == 16
    for r in image_rows:
        assert 1 <= len(r["keywords"]) <= 10 and -1 <= r["r_info"] <= 1 and -1 <= r["r_recon"] <= 0
        assert r["reward"] == pytest.approx(r["r_info"] + r["r_recon"] + 0.5 * r["r_len"])
    assert warehouse.has_table(DS, "item_image_features")  # backfilled on the way
    # one image changes: the backfill redoes exactly that (item, image) pair
    rows_list = table.to_pylist()
    rows_list[0]["image_bytes"] = jpeg((250, 250, 0))
    rows_list[0]["image_sha256"] = sha256_hex(rows_list[0]["image_bytes"])
    warehouse.write_table(DS, "items", pa.Table.from_pylist(rows_list, schema=table.schema))
    capsys.readouterr()
    assert _summarize(warehouse, vit, "--summarizer-version", "v1", "--backfill") == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["items"] == 1 and stats["rows_written"] == 1 and stats["skipped"] == 24 + 16 - 1


@pytest.mark.slow
def test_train_summarizer_tunes_both_policies_and_summarize_uses_them(warehouse, vit, capsys):
    warehouse.write_table(DS, "items", items_table(24))
    capsys.readouterr()
    assert cli(["--log-level", "WARNING", "train-summarizer", "--dataset", DS, "--warehouse", warehouse.root,
                "--encoder", "hashing", "--image-encoder", vit, "--steps", "3", "--batch", "4",
                "--group-size", "4"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(out["image"]) == {"before", "after"} and "r_recon" in out["image"]["after"]
    run = out["run_id"]
    policy = json.loads((warehouse.local_path(warehouse.uri(DS, "models", run, "image", "policy.json"))).read_text())
    assert policy["features"] == list(IMAGE_FEATURES)
    assert _summarize(warehouse, vit, "--summarizer-version", "v2", "--policy-run", run) == 0
    rows = warehouse.read_table(DS, TABLE).to_pylist()
    assert {r["modality"] for r in rows if r["summarizer_version"] == "v2"} == {"text", "image"}


def test_reward_tracks_text_is_one_for_a_term_equal_to_the_margin():
    from mmsrarec_lib.summarize.image_quality import reward_tracks_text

    own = np.eye(5)[:4]  # item i's text is e_i; dimension 4 is "noise" no text has
    table = {f"w{i}{a}": a * np.eye(5)[i] + (5 - a) * np.eye(5)[4] for i in range(4) for a in range(1, 5)}

    def embed(kws):
        return np.mean([table[k] for k in kws], axis=0)

    def terms(sets, ids):  # cosine with the owner's own text: for the item itself it equals the margin
        k = int(ids[0][1:])
        return [{"own_cos": float(embed(s) @ own[k] / np.linalg.norm(embed(s)))} for s in sets]

    out = reward_tracks_text([[f"w{i}{a}" for a in range(1, 5)] for i in range(4)], [f"i{i}" for i in range(4)],
                             own, terms=terms, embed=embed, samples=6, size=2)
    assert out["own_cos"]["items"] == 4 and out["own_cos"]["spearman"] == pytest.approx(1.0)
    assert out["own_cos"]["share_positive"] == 1.0
    assert np.isnan(out["own_cos"]["spearman_control"])  # another item's text: the term is constant (0)
    assert np.isnan(out["own_cos"]["paired_diff"])  # no item has both a real and a control correlation
