"""Explanations also count a history/neighbour keyword found as a whole word or phrase in the item's title or
description (not only among the item's own keywords)."""

from __future__ import annotations

from mmsrarec_lib.recommend.context import NeighborRef, RecContext
from mmsrarec_lib.recommend.prompts import Candidate
from mmsrarec_lib.recommend.topk import explain


def test_keywords_found_in_the_items_title_or_description_explain_it():
    ctx = RecContext(
        items={"c": Candidate("c", "Star Wars", ("sequel",))},
        descriptions={"c": "A space opera: rebels fight the empire in outer space."},
        images={},
        keywords={"h1": ["space opera", "rebels"], "h2": ["war", "ace"], "c": ["sequel"], "n1": ["empire", "romance"]},
        neighbors={"u": [NeighborRef("v1", "n1")]},
    )
    exp = explain(ctx, user_id="u", history=["h1", "h2"], item_id="c", n_history=2, n_neighbors=3)
    # "space opera" (a phrase) and "rebels" are in the description; "war" only inside "Wars" and "ace" only inside
    # "space": whole words only, so neither counts
    assert exp["history_keywords"] == ["space opera", "rebels"]
    assert exp["neighbor_keywords"] == ["empire"] and exp["neighbor_ids"] == ["v1"]


def test_shared_catalogue_categories_explain_an_item():
    ctx = RecContext(items={"c": Candidate("c", "Heat")}, descriptions={}, images={},
                     keywords={"h1": ["bank robbery"], "c": ["los angeles"], "n1": ["boxing"]},
                     categories={"h1": ["Crime", "Thriller"], "c": ["Action", "Crime"], "n1": ["Drama"]},
                     neighbors={"u": [NeighborRef("v1", "n1")]})
    exp = explain(ctx, user_id="u", history=["h1"], item_id="c", n_history=5, n_neighbors=3)
    assert exp == {"history_keywords": ["Crime"], "neighbor_keywords": [], "neighbor_ids": []}
