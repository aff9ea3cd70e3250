"""Tiny literal stage-2 inputs (interactions, eval_candidates) and a deterministic toy embedder."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from mmsrarec_lib import schemas
from mmsrarec_lib.storage import Warehouse

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def ts(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


class ToyEmbedder:
    """User vector = mean of fixed item vectors (one-hot per item unless given), so similarities are hand-computable.

    Records every history it embedded (``calls``) so tests can see which users were (re-)embedded.
    """

    def __init__(self, items: list[str], vectors: dict[str, np.ndarray] | None = None) -> None:
        self.vectors = vectors or {it: np.eye(len(items), dtype=np.float32)[i] for i, it in enumerate(items)}
        self.dim = len(next(iter(self.vectors.values())))
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, histories: list[list[str]]) -> np.ndarray:
        out = np.zeros((len(histories), self.dim), dtype=np.float32)  # (n, d)
        for i, h in enumerate(histories):
            self.calls.append(tuple(h))
            if h:
                out[i] = np.mean([self.vectors[it] for it in h], axis=0)
        return out


# user -> (split, items oldest first); the last item is the eval target. Windows below are for n=2.
#   X1 (test) window [a, b], target z.  T1 has the same window and next item z: the leakage trap.
#   V1 (valid) has the same window as X1 too: it must never be a neighbour (not a training user).
USERS: dict[str, tuple[str, list[str]]] = {
    "T1": ("train", ["e", "a", "b", "z"]),
    "T2": ("train", ["f", "a", "b", "y"]),
    "T3": ("train", ["g", "a", "c", "y"]),
    "T4": ("train", ["h", "a", "d", "w"]),
    "T5": ("train", ["a", "e", "f", "w"]),
    "T6": ("train", ["b", "e", "g", "x"]),
    "V1": ("valid", ["c", "a", "b", "x"]),
    "X1": ("test", ["d", "a", "b", "z"]),
}
ITEMS = sorted({it for _, seq in USERS.values() for it in seq} | {"n1", "n2", "n3"})
TRAIN = {u for u, (s, _) in USERS.items() if s == "train"}


def interactions_table(rows: list[tuple[str, str, dt.datetime]], *, first_source_row: int = 1) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "user_id": u,
                "item_id": i,
                "timestamp": t,
                "rating": 4.0,
                "event": "rating",
                "source_row": first_source_row + n,
            }
            for n, (u, i, t) in enumerate(rows)
        ],
        schema=schemas.INTERACTIONS,
    )


def eval_candidates_table(users: dict[str, tuple[str, list[str]]], times: dict[str, list[dt.datetime]]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "user_id": u,
                "split": split,
                "history": seq[:-1][-5:],
                "target_item_id": seq[-1],
                "target_timestamp": times[u][-1],
                "negative_item_ids": [],
            }
            for u, (split, seq) in users.items()
        ],
        schema=schemas.EVAL_CANDIDATES,
    )


def write_tiny(warehouse: Warehouse, ds: str = "tiny", users: dict | None = None) -> dict[str, list[dt.datetime]]:
    """Write interactions, eval_candidates and items for ``users``; user u's j-th item is at minute 10*j + offset."""
    users = users or USERS
    times = {u: [ts(10 * j + n) for j in range(len(seq))] for n, (u, (_, seq)) in enumerate(sorted(users.items()))}
    rows = [(u, it, times[u][j]) for u, (_, seq) in sorted(users.items()) for j, it in enumerate(seq)]
    warehouse.write_table(ds, "interactions", interactions_table(rows))
    warehouse.write_table(ds, "eval_candidates", eval_candidates_table(users, times))
    items = pa.Table.from_pylist(
        [{"item_id": it, "title": f"Movie {it.upper()}", "description": "a story", "categories": [f"g-{it}"],
          "image_status": "none", "source_row": n + 1} for n, it in enumerate(ITEMS)],
        schema=schemas.ITEMS,
    )
    warehouse.write_table(ds, "items", items)
    return times


KEYWORDS = {it: [f"kw-{it}", "shared"] for it in ITEMS}
