"""The four instruction-task builders and their uniform mixing."""

from __future__ import annotations

import collections

import pytest

from mmsrarec_lib.recommend.prompts import ANSWER_CUE, Candidate, PromptConfig
from mmsrarec_lib.recommend.tasks import (
    TASKS,
    Example,
    build_grounding,
    build_next_keywords,
    build_recovery,
    build_yesno,
    mix_uniform,
    parse_tasks,
)

ITEMS = {
    f"i{k}": Candidate(f"i{k}", f"Movie {k}", (f"kw{k}a", f"kw{k}b"), has_image=k % 2 == 0) for k in range(10)
}
SEQS = {"u1": ["i0", "i1", "i2", "i3"], "u2": ["i5", "i6"]}
NEIGH = {"u1": [["nkw1", "nkw2"]]}
CFG = PromptConfig(n_history=2)


def test_yesno_pairs_each_positive_with_one_never_interacted_negative():
    ex = build_yesno(sequences=SEQS, interacted={u: set(s) for u, s in SEQS.items()}, neighbors=NEIGH,
                     items=ITEMS, config=CFG, per_user=2, seed=0)
    # u1: targets at t=2,3; u2: t=1 -> 3 positives + 3 negatives
    assert [e.target for e in ex] == [" yes", " no"] * 3
    pos = ex[2]  # u1, t=3: history i1, i2 (last 2), target i3
    assert "1. Movie 1, kw1a, kw1b\n2. Movie 2, kw2a, kw2b\n" in pos.prefix and "nkw1, nkw2" in pos.prefix
    assert pos.suffix.startswith("Candidate: Movie 3.") and pos.suffix.endswith(ANSWER_CUE)
    assert pos.image_item_id is None  # i3 has no image
    for user, neg in (("u1", ex[1]), ("u1", ex[3]), ("u2", ex[5])):
        neg_title = neg.suffix.split("Candidate: ")[1].split(".")[0]
        neg_id = "i" + neg_title.split()[-1]
        assert neg_id not in SEQS[user]
    assert all(ex[i].prefix == ex[i + 1].prefix for i in (0, 2, 4))  # a pair shares the user prefix
    again = build_yesno(sequences=SEQS, interacted={u: set(s) for u, s in SEQS.items()}, neighbors=NEIGH,
                        items=ITEMS, config=CFG, per_user=2, seed=0)
    assert again == ex  # deterministic for a seed


def test_next_keywords_targets_the_next_items_keywords():
    ex = build_next_keywords(sequences=SEQS, neighbors=NEIGH, items=ITEMS, config=CFG, per_user=1)
    assert [(e.task, e.target) for e in ex] == [("next_kw", " kw3a, kw3b"), ("next_kw", " kw6a, kw6b")]
    assert "predict the keywords" in ex[0].prefix and "Movie 2" in ex[0].prefix and "Movie 3" not in ex[0].prefix


def test_grounding_maps_text_and_image_to_keywords():
    ex = build_grounding(items={"i2": ITEMS["i2"], "i3": ITEMS["i3"]}, descriptions={"i2": "A plot."}, config=CFG)
    assert ex[0] == Example("grounding", "Describe the item with keywords.\n",
                            "Item: Movie 2. A plot.\n<image>\nKeywords:", " kw2a, kw2b", "i2")
    assert ex[1].image_item_id is None and "<image>" not in ex[1].suffix


def test_recovery_maps_keywords_to_the_title():
    ex = build_recovery(items={"i4": ITEMS["i4"]}, config=CFG)
    assert ex == [Example("recovery", "Name the item that these keywords describe.\n",
                          "Keywords: kw4a, kw4b\nTitle:", " Movie 4")]


def test_raw_text_ablation_uses_text_instead_of_keywords():
    raw = {"i1": Candidate("i1", "Heat", raw_text="Bank robbers in LA")}
    assert build_recovery(items=raw, config=CFG)[0].suffix == "Keywords: Bank robbers in LA\nTitle:"


def test_mix_uniform_gives_equal_shares_and_is_deterministic():
    pools = {t: [Example(t, str(i), "", "") for i in range(n)] for t, n in zip(TASKS, (50, 3, 20, 8))}
    mixed = mix_uniform(pools, n_total=42, seed=1)
    counts = collections.Counter(e.task for e in mixed)
    assert sorted(counts.values()) == [10, 10, 11, 11] and set(counts) == set(TASKS)
    assert mixed == mix_uniform(pools, n_total=42, seed=1)
    assert [e.task for e in mixed[:8]] != sorted(e.task for e in mixed[:8])  # shuffled, not blocked
    with pytest.raises(ValueError, match="no examples"):
        mix_uniform({"yesno": []}, n_total=4, seed=0)


def test_parse_tasks():
    assert parse_tasks("all") == TASKS
    assert parse_tasks("yesno") == ("yesno",)
    with pytest.raises(ValueError, match="unknown task"):
        parse_tasks("yesno,bogus")
