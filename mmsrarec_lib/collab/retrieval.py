"""Nearest training users for a batch of query users, with the leakage rules applied.

For each query: the ``k`` most similar *training* users by cosine (inner product of L2-normalised vectors), each
user counted once, at its best-matching entry (window), whose next item is the one reported; never the query user
itself, never a neighbour whose next item is the query's held-out target (paper protocol), and with
``no_future`` never a neighbour whose next item happened after the end of the query window. faiss is asked for
more than ``k`` (``k + overfetch``) and the filtered lists are refilled with a doubled request until ``k`` remain
or the index is exhausted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mmsrarec_lib.collab.index import CollabIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrievalConfig:
    k: int = field(default=3, metadata={"help": "neighbours per user"})
    overfetch: int = field(default=32, metadata={"help": (
        "extra entries fetched before filtering and de-duplicating users")})
    no_future: bool = field(default=False, metadata={"help": (
        "also drop neighbours whose next item is later than the end of the query window")})

    def __post_init__(self) -> None:
        if self.k < 1 or self.overfetch < 0:
            raise ValueError(f"need k >= 1 and overfetch >= 0, got k={self.k}, overfetch={self.overfetch}")


@dataclass(frozen=True)
class Neighbor:
    user_id: str
    score: float
    next_item_id: str
    next_timestamp_us: int | None


@dataclass(frozen=True)
class Query:
    """A query user: its id, the held-out target to exclude (None in production) and its window end (us)."""

    user_id: str
    held_out_item_id: str | None = None
    as_of_us: int | None = None


def _allowed(idx: CollabIndex, q: Query, row: int, config: RetrievalConfig) -> bool:
    if idx.user_ids[row] == q.user_id:
        return False  # never the user itself
    if q.held_out_item_id is not None and idx.next_item_ids[row] == q.held_out_item_id:
        return False  # the neighbour's next item would reveal the query's target
    if config.no_future and q.as_of_us is not None:
        ts = idx.next_ts_us[row]
        if ts is None or ts > q.as_of_us:
            return False
    return True


def find_neighbors(
    idx: CollabIndex,
    queries: Sequence[Query],
    vectors: np.ndarray,
    *,
    config: RetrievalConfig,
    batch_size: int = 4096,
) -> list[list[Neighbor]]:
    """Neighbours of each query, best first. vectors: (m, d) float32 L2-normalised, row i = queries[i].

    Every index entry is a training user's window (only training windows are indexed), so neighbours are training
    users; a user with several entries counts once, at its best-scoring eligible entry. A query ends with fewer
    than ``k`` only when the whole index holds fewer eligible users.
    """
    if len(queries) != len(vectors):
        raise ValueError(f"{len(queries)} queries but {len(vectors)} vectors")
    n = idx.capacity
    out: list[list[Neighbor]] = []
    for s in range(0, len(queries), batch_size):
        qs = queries[s : s + batch_size]
        x = np.ascontiguousarray(vectors[s : s + batch_size], dtype=np.float32)  # (b, d)
        fetch = min(n, config.k + config.overfetch + 1)
        pending = list(range(len(qs)))
        result: list[list[Neighbor] | None] = [None] * len(qs)
        while pending:
            scores, ids = idx.search(x[pending], fetch)  # (p, fetch) each
            still: list[int] = []
            for j, qi in enumerate(pending):
                picked: list[Neighbor] = []
                seen: set[str] = set()
                for score, row in zip(scores[j], ids[j]):
                    if row < 0 or idx.user_ids[row] in seen or not _allowed(idx, qs[qi], int(row), config):
                        continue
                    r = int(row)
                    seen.add(idx.user_ids[r])
                    picked.append(Neighbor(idx.user_ids[r], float(score), idx.next_item_ids[r], idx.next_ts_us[r]))
                    if len(picked) == config.k:
                        break
                if len(picked) < config.k and fetch < n:
                    still.append(qi)
                else:
                    result[qi] = picked
            pending = still
            fetch = min(n, fetch * 2)
        out.extend(r or [] for r in result)
    short = sum(len(r) < config.k for r in out)
    if short:
        log.warning("%d of %d queries have fewer than %d eligible neighbours", short, len(out), config.k)
    return out
