"""Ranking metrics for one positive item per user: HR@K, NDCG@K, MRR and per-user AUC.

Tie policy (pessimistic): the positive ranks BELOW every candidate with an equal score, i.e.
``rank = 1 + #{candidates c != positive, not excluded : score(c) >= score(positive)}``. A model therefore never
gains from ties: a constant scorer gets the worst rank (HR@K = 0 unless K covers every candidate), and the order
in which candidates are listed cannot matter. AUC uses the same rule (a negative tied with the positive counts as
ranked above it), so per user ``AUC = (n_candidates - rank) / (n_candidates - 1)``, averaged over users.
NaN scores are rejected with the offending user's row number (they have no defined rank).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _check_finite_or_inf(scores: np.ndarray, *, row_offset: int = 0) -> None:
    bad = np.isnan(scores)
    if bad.any():
        row = int(np.argwhere(bad)[0][0]) + row_offset
        raise ValueError(f"user row {row}: score is NaN (a scorer must return finite numbers or -inf)")


def candidate_ranks(scores: Sequence[np.ndarray] | np.ndarray, positive: Sequence[int] | np.ndarray) -> np.ndarray:
    """Pessimistic 1-based rank of the positive among each user's candidates.

    ``scores``: one 1-d array per user (lengths may differ) or an (n_users, n_candidates) array;
    ``positive``: the positive's position in each user's candidate list. Returns (n_users,) int64 ranks.
    """
    ranks = np.empty(len(positive), dtype=np.int64)
    for u, (s, p) in enumerate(zip(scores, positive, strict=True)):
        s = np.asarray(s, dtype=np.float64)  # (C,)
        if s.ndim != 1 or not 0 <= p < s.shape[0]:
            raise ValueError(f"user row {u}: positive index {p} outside its {s.shape} candidate scores")
        _check_finite_or_inf(s[None, :], row_offset=u)
        ranks[u] = int((s >= s[p]).sum())  # counts the positive itself once: 1 + others >= positive
    return ranks


def catalogue_ranks(
    scores: np.ndarray,
    *,
    targets: Sequence[int] | np.ndarray,
    exclude: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """Pessimistic ranks of each user's target column among all non-excluded columns of ``scores``.

    ``scores``: (n_users, n_items); ``targets``: target column per user, or -1 when the target is not a column
    (an item the model cannot score: it gets the worst rank); ``exclude``: columns removed from each user's
    ranking (e.g. the user's earlier items). A target listed in ``exclude`` is still ranked. Returns (n_users,).
    """
    scores = np.asarray(scores)
    n, c = scores.shape
    if len(targets) != n:
        raise ValueError(f"{len(targets)} targets for {n} score rows")
    _check_finite_or_inf(scores)
    targets = np.asarray(targets, dtype=np.int64)
    known = targets >= 0
    t_scores = np.where(known, scores[np.arange(n), np.where(known, targets, 0)], np.inf)  # (n,)
    ge = scores >= t_scores[:, None]  # (n, C) candidates that beat or tie the target
    n_candidates = np.full(n, c, dtype=np.int64)  # candidates including the target
    if exclude is not None:
        for u, cols in enumerate(exclude):
            cols = np.unique(np.asarray(cols, dtype=np.int64))
            cols = cols[(cols >= 0) & (cols != targets[u])]
            ge[u, cols] = False
            n_candidates[u] -= cols.shape[0]
    ranks = ge.sum(axis=1)  # includes the target itself when known
    # an unknown target is an extra candidate below everything: rank = every remaining column + 1
    return np.where(known, ranks, n_candidates + 1).astype(np.int64)


def hr_at_k(ranks: np.ndarray, k: int) -> float:
    """Hit rate: share of users whose positive is in the top ``k``."""
    ranks = np.asarray(ranks)
    return float((ranks <= k).mean()) if ranks.size else float("nan")


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    """NDCG@k with one relevant item: mean of ``1 / log2(rank + 1)`` for ranks <= k, else 0 (ideal DCG is 1)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if not ranks.size:
        return float("nan")
    return float(np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0).mean())


def mrr(ranks: np.ndarray) -> float:
    """Mean reciprocal rank (no cut-off)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return float((1.0 / ranks).mean()) if ranks.size else float("nan")


def auc(ranks: np.ndarray, n_candidates: np.ndarray | int) -> float:
    """Per-user AUC averaged over users: share of a user's negatives scored strictly below the positive."""
    ranks = np.asarray(ranks, dtype=np.float64)
    n = np.broadcast_to(np.asarray(n_candidates, dtype=np.float64), ranks.shape)
    if np.any(n < 2):
        raise ValueError("AUC needs at least one negative per user")
    return float(((n - ranks) / (n - 1.0)).mean()) if ranks.size else float("nan")


def slot_share(top_items: Sequence[Sequence[str]], items: set[str] | frozenset[str]) -> float:
    """Mean over users of (slots of the user's list holding one of ``items``) / (slots of the list); an empty list
    counts 0 (e.g. ``cold_share@10``: the share of top-10 slots that go to items without training interactions)."""
    if not len(top_items):
        return 0.0
    return float(np.mean([sum(i in items for i in row) / len(row) if len(row) else 0.0 for row in top_items]))
