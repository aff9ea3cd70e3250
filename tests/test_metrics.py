"""Metrics against values computed by hand, including the pessimistic tie policy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmsrarec_lib.eval import metrics


def test_candidate_ranks_by_hand_with_ties():
    scores = [
        np.array([0.9, 0.1, 0.5]),  # positive 0 is best -> rank 1
        np.array([0.2, 0.7, 0.7, 0.1]),  # positive 1 ties with 2 -> pessimistic rank 2 (not 1)
        np.array([1.0, 1.0, 1.0]),  # constant scorer -> rank 3 (last), never a hit at k < 3
        np.array([-np.inf, 0.0]),  # positive at -inf below a finite negative -> rank 2
    ]
    ranks = metrics.candidate_ranks(scores, [0, 1, 2, 0])
    assert ranks.tolist() == [1, 2, 3, 2]


def test_hr_ndcg_mrr_by_hand():
    ranks = np.array([1, 3, 3, 2])
    assert metrics.hr_at_k(ranks, 1) == pytest.approx(1 / 4)
    assert metrics.hr_at_k(ranks, 2) == pytest.approx(2 / 4)
    # NDCG@2: (1/log2(2) + 0 + 0 + 1/log2(3)) / 4
    assert metrics.ndcg_at_k(ranks, 2) == pytest.approx((1.0 + 1 / math.log2(3)) / 4)
    # NDCG@3 adds the two rank-3 users: 1/log2(4) = 0.5 each
    assert metrics.ndcg_at_k(ranks, 3) == pytest.approx((1.0 + 0.5 + 0.5 + 1 / math.log2(3)) / 4)
    assert metrics.mrr(ranks) == pytest.approx((1 + 1 / 3 + 1 / 3 + 1 / 2) / 4)


def test_auc_per_user_averaged_with_ties_counted_against_the_model():
    # user A: 3 candidates, positive best -> AUC 1; user B: 4 candidates, one negative above, one tied -> 1/3
    # user C: constant scores -> 0 (a tie never helps)
    ranks = metrics.candidate_ranks(
        [np.array([3.0, 1.0, 2.0]), np.array([0.5, 0.7, 0.5, 0.1]), np.array([2.0, 2.0])], [0, 0, 1]
    )
    assert ranks.tolist() == [1, 3, 2]
    assert metrics.auc(ranks, np.array([3, 4, 2])) == pytest.approx((1.0 + 1 / 3 + 0.0) / 3)


def test_auc_is_per_user_not_pooled():
    # pooled AUC would weight the 10-negative user 10x; per-user averaging weights each user once
    ranks = np.array([1, 11])  # user 1 perfect (1 negative), user 2 worst of 11
    assert metrics.auc(ranks, np.array([2, 11])) == pytest.approx(0.5)


def test_catalogue_ranks_excludes_history_and_handles_unknown_target():
    scores = np.array([
        [0.9, 0.8, 0.1, 0.5],  # target col 2, history cols 0,1 excluded -> only col 3 above -> rank 2
        [0.9, 0.8, 0.1, 0.5],  # same scores, nothing excluded -> rank 4
        [0.3, 0.3, 0.3, 0.3],  # all tied, col 0 excluded -> pessimistic rank 3 of 3
        [0.9, 0.8, 0.1, 0.5],  # unknown target (-1), col 3 excluded -> below the 3 remaining -> rank 4
        [0.9, 0.8, 0.1, 0.5],  # target in its own exclusion list is still ranked -> rank 1 (cols 0,1,3 excluded)
    ])
    ranks = metrics.catalogue_ranks(
        scores, targets=[2, 2, 1, -1, 2], exclude=[[0, 1], [], [0], [3], [0, 1, 2, 3]]
    )
    assert ranks.tolist() == [2, 4, 3, 4, 1]


def test_nan_scores_are_rejected_naming_the_row():
    with pytest.raises(ValueError, match="user row 1"):
        metrics.candidate_ranks([np.array([1.0, 0.0]), np.array([np.nan, 0.0])], [0, 0])
    with pytest.raises(ValueError, match="user row 0"):
        metrics.catalogue_ranks(np.array([[np.nan, 1.0]]), targets=[1])


def test_positive_index_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="user row 0"):
        metrics.candidate_ranks([np.array([1.0, 0.0])], [2])


def test_candidate_order_does_not_change_ranks():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 3, size=21).astype(float)  # many ties
    perm = rng.permutation(21)
    assert metrics.candidate_ranks([s], [0])[0] == metrics.candidate_ranks([s[perm]], [int(np.argmin(perm))])[0]
