"""The cold protocol and the union of candidates: held-out items never reach training, cases are the held-out
items' first interactions, cold_share is hand-computable, and a content-only item reaches the reranked list."""

from __future__ import annotations

import numpy as np
import pytest

from mmsrarec_lib.candidates.union import CandidateRerank, CandidateSource, ContentScorer, top_unseen
from mmsrarec_lib.eval.cold import cold_split
from mmsrarec_lib.eval.metrics import slot_share


def _split(share=0.25, valid_share=0.25):
    users = ["u1", "u2", "u3"]
    seqs = [["a", "b", "c", "d"], ["b", "c", "e", "f"], ["a", "e", "g", "h"]]
    times = [[1, 2, 3, 4], [0, 5, 6, 7], [2, 3, 8, 9]]
    return cold_split(users, seqs, times, share=share, valid_share=valid_share, seed=3), users, seqs, times


def test_held_out_items_never_reach_training_and_cases_are_their_first_interactions():
    split, users, seqs, times = _split()
    held = split.held_out
    assert len(split.test_items) == 2 and len(split.valid_items) == 2 and not split.test_items & split.valid_items
    assert not held & split.trained_items()
    firsts = {}
    for u, s, t in zip(users, seqs, times):
        for pos, (i, ti) in enumerate(zip(s, t)):
            if i in held and (i not in firsts or (ti, u) < firsts[i][:2]):
                firsts[i] = (ti, u, pos)
    cases = split.cases["test"] + split.cases["valid"]
    assert len({c.case_id for c in cases}) == len(cases)
    assert {c.target for c in cases} == {i for i, (_t, _u, pos) in firsts.items() if pos > 0}  # every first one
    for c in cases:
        ti, u, pos = firsts[c.target]
        assert u == c.user_id and c.history == seqs[users.index(u)][:pos]  # the item's first interaction
        assert (c.target in split.test_items) == (c in split.cases["test"])
    cut = {}
    for c in cases:
        cut[c.user_id] = min(len(c.history), cut.get(c.user_id, len(c.history)))
    for u, seq in zip(users, seqs):  # nothing at or after a user's case is trained on; held-out items never
        want = [i for i in seq[: cut.get(u, len(seq))] if i not in held]
        assert split.train.get(u) == (want if len(want) >= 2 else None)


def test_cold_split_is_seeded_and_validates_shares():
    a, *_ = _split()
    b, *_ = _split()
    assert a == b
    with pytest.raises(ValueError, match="share"):
        cold_split(["u"], [["a", "b", "c"]], [[1, 2, 3]], share=0.6, valid_share=0.5)


def test_slot_share_by_hand():
    assert slot_share([["a", "x"], ["x", "y", "z", "a"], []], {"a"}) == pytest.approx((1 / 2 + 1 / 4 + 0) / 3)


class _Retriever:  # scores only r1..r4
    item_ids = ["r1", "r2", "r3", "r4"]

    def score_catalogue(self, histories):
        return np.tile(np.array([4.0, 3.0, 2.0, 1.0]), (len(histories), 1))


class _Content:  # "n1" (no interactions) is the nearest item of every user
    item_ids = ["r1", "r2", "r3", "r4", "n1"]

    def __len__(self):
        return 5

    def candidates(self, histories, *, m, exclude):
        return [[(i, 1.0) for i in ["n1", "r3", "r1"] if i not in ex][:m] for ex in exclude]


class _Reranker:  # prefers the new item, then reverse id order
    def score_candidates(self, histories, candidates):
        return [np.array([10.0 if c == "n1" else -float(c[1:]) for c in cands]) for cands in candidates]


def test_union_adds_content_candidates_the_retriever_cannot_score_and_ranks_them_by_the_reranker():
    assert top_unseen(np.array([1.0, np.inf * -1, 3.0, 3.0]), ["a", "b", "c", "d"], seen={"d"}, m=3) == ["c", "a"]
    source = CandidateSource(_Retriever(), top_m=2, content=_Content(), content_m=2, content_pool="all")
    assert source.item_ids == ["r1", "r2", "r3", "r4", "n1"]
    assert source.generate([["r2"]]) == [["r1", "r3", "n1"]]  # top-2 unseen (r1, r3), then n1 (r3 already there)
    scorer = CandidateRerank(source, _Reranker())
    s = scorer.score_catalogue([["r2"]])[0]
    order = [scorer.item_ids[j] for j in np.argsort(-s) if np.isfinite(s[j])]
    assert order == ["n1", "r1", "r3", "r4"]  # reranked candidates first, then the retriever's order; r2 seen
    alone = CandidateRerank(CandidateSource(_Retriever(), top_m=2), _Reranker())
    assert "n1" not in alone.item_ids  # SASRec's candidates alone can never reach a new item


def test_content_scorer_leaves_items_without_vectors_unscored():
    class Index:
        item_ids = ["a", "b"]

        def score_catalogue(self, histories, item_ids):
            return np.array([[0.5, np.nan]] * len(histories))

        def score(self, histories, candidates):
            return [np.array([0.5, np.nan])]

    s = ContentScorer(Index())
    assert s.score_catalogue([["x"]]).tolist() == [[0.5, -np.inf]]
    assert s.score_candidates([["x"]], [["a", "b"]])[0].tolist() == [0.5, -np.inf]
