"""Is the collaborative signal real? Genre agreement of neighbours' next items vs random training users.

For each paper-protocol query user with held-out target ``t``: the share of its neighbours whose next item shares
at least one genre (``items.categories``) with ``t``, against the same share for ``k`` training users drawn at
random under the same rules (never the user itself, never a user whose next item *is* ``t``). The ratio of the
two should be clearly above 1 when similar users really predict similar next items.
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

    @property
    def ratio(self) -> float:
        return self.neighbor_share / self.random_share if self.random_share else float("inf")


def shares_genre(a: str, b: str, genres: Mapping[str, frozenset[str]]) -> bool:
    return bool(genres.get(a, frozenset()) & genres.get(b, frozenset()))


def genre_share(
    queries: Sequence[tuple[str, str, Sequence[str]]],
    *,
    training_next: Mapping[str, str],
    genres: Mapping[str, frozenset[str]],
    seed: int = 0,
    repeats: int = 5,
) -> GenreShare:
    """``queries``: (user_id, held-out target, neighbours' next items). ``training_next``: training user -> its
    next item (the index entries), for the random baseline: k draws per query (k = that query's neighbour
    count), repeated ``repeats`` times and pooled so the baseline is stable."""
    rng = np.random.default_rng(seed)
    train_users = sorted(training_next)
    hits = pairs = rand_hits = rand_pairs = 0
    min_n = min((len(n) for _, _, n in queries), default=0)
    for uid, target, nexts in queries:
        hits += sum(shares_genre(target, n, genres) for n in nexts)
        pairs += len(nexts)
        for _ in range(repeats):
            drawn: list[str] = []
            for j in rng.permutation(len(train_users)):
                v = train_users[j]
                if v != uid and training_next[v] != target:
                    drawn.append(training_next[v])
                    if len(drawn) == len(nexts):
                        break
            rand_hits += sum(shares_genre(target, n, genres) for n in drawn)
            rand_pairs += len(drawn)
    return GenreShare(
        n_queries=len(queries),
        n_pairs=pairs,
        neighbor_share=hits / pairs if pairs else 0.0,
        random_share=rand_hits / rand_pairs if rand_pairs else 0.0,
        min_neighbors=min_n,
    )
