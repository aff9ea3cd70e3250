"""Is the collaborative signal real? Genre agreement of neighbours' next items vs random training users.

For each paper-protocol query user with held-out target ``t``: the share of its neighbours whose next item shares
at least one genre (``items.categories``) with ``t``, against the same share for ``k`` training users drawn at
random under the same rules (never the user itself, never a next item that *is* ``t``; a user with several index
entries contributes the next item of one of them, drawn at random). The ratio should be clearly above 1 when
similar users really predict similar next items; ``ratio_ci`` is its 95% bootstrap interval over query users.

A second yardstick, ``shuffled_share``, keeps every retrieved list but scores it against *another* query's target
(a random derangement). It answers "is it the match to this user, or just the kind of items retrieval returns?":
a retriever that favoured items with many genres would beat random users without knowing anything about the user,
and would not beat its own shuffled lists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GenreShare:
    n_queries: int
    n_pairs: int
    neighbor_share: float
    random_share: float
    min_neighbors: int
    shuffled_share: float = float("nan")
    ratio_ci: tuple[float, float] = (float("nan"), float("nan"))

    @property
    def ratio(self) -> float:
        return self.neighbor_share / self.random_share if self.random_share else float("inf")

    @property
    def ratio_to_shuffled(self) -> float:
        return self.neighbor_share / self.shuffled_share if self.shuffled_share else float("inf")


def shares_genre(a: str, b: str, genres: Mapping[str, frozenset[str]]) -> bool:
    return bool(genres.get(a, frozenset()) & genres.get(b, frozenset()))


def _draw(rng, users: list[str], nexts: Mapping[str, Sequence[str]], uid: str, target: str, k: int) -> list[str]:
    """Up to ``k`` next items of distinct random training users (not ``uid``, never ``target`` itself)."""
    drawn: list[str] = []
    for j in rng.permutation(len(users)):
        v = users[j]
        options = [n for n in nexts[v] if n != target] if v != uid else []
        if options:
            drawn.append(options[int(rng.integers(len(options)))])
            if len(drawn) == k:
                break
    return drawn


def _derangement(rng, n: int) -> np.ndarray:
    if n < 2:
        return np.arange(n)
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm


def genre_share(
    queries: Sequence[tuple[str, str, Sequence[str]]],
    *,
    training_next: Mapping[str, str | Sequence[str]],
    genres: Mapping[str, frozenset[str]],
    seed: int = 0,
    repeats: int = 5,
    bootstrap: int = 0,
) -> GenreShare:
    """``queries``: (user_id, held-out target, neighbours' next items). ``training_next``: training user -> its
    next item, or the next items of all its index entries, for the random baseline: k draws per query (k = that
    query's neighbour count), repeated ``repeats`` times and pooled so the baseline is stable. ``bootstrap`` > 0
    resamples the query users that many times for ``ratio_ci``."""
    rng = np.random.default_rng(seed)
    nexts = {u: [n] if isinstance(n, str) else list(n) for u, n in training_next.items()}
    users = sorted(nexts)
    m = len(queries)
    hits, pairs, rand_hits, rand_pairs = (np.zeros(m) for _ in range(4))  # per query
    for q, (uid, target, neigh) in enumerate(queries):
        hits[q] = sum(shares_genre(target, n, genres) for n in neigh)
        pairs[q] = len(neigh)
        for _ in range(repeats):
            drawn = _draw(rng, users, nexts, uid, target, len(neigh))
            rand_hits[q] += sum(shares_genre(target, n, genres) for n in drawn)
            rand_pairs[q] += len(drawn)
    perm = _derangement(rng, m)
    shuffled = [sum(shares_genre(queries[q][1], n, genres) for n in queries[perm[q]][2]) for q in range(m)]
    shuffled_pairs = sum(len(queries[perm[q]][2]) for q in range(m))
    ci = (float("nan"), float("nan"))
    if bootstrap > 0 and m:
        rows = rng.integers(0, m, size=(bootstrap, m))  # (B, m)
        ratios = (hits[rows].sum(1) / np.maximum(pairs[rows].sum(1), 1)) / np.maximum(
            rand_hits[rows].sum(1) / np.maximum(rand_pairs[rows].sum(1), 1), 1e-12
        )
        lo, hi = np.percentile(ratios, [2.5, 97.5])
        ci = (float(lo), float(hi))
    return GenreShare(
        n_queries=m,
        n_pairs=int(pairs.sum()),
        neighbor_share=float(hits.sum() / pairs.sum()) if pairs.sum() else 0.0,
        random_share=float(rand_hits.sum() / rand_pairs.sum()) if rand_pairs.sum() else 0.0,
        min_neighbors=int(pairs.min()) if m else 0,
        shuffled_share=float(sum(shuffled) / shuffled_pairs) if shuffled_pairs else float("nan"),
        ratio_ci=ci,
    )
