"""Tiny literal tables of the ingest schemas for the evaluation tests (no ingest job needed).

``write_toy_dataset`` writes items, user_sequences, split_loo and eval_candidates for users whose sequences walk a
cycle of ``n_items`` items (item k is followed by item k+1), so a sequence model can learn it and popularity
cannot; every user has a distinct random start and length.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from mmsrarec_lib import schemas
from mmsrarec_lib.storage import Warehouse

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def item(k: int, n_items: int) -> str:
    return f"i{k % n_items}"


def toy_sequences(*, n_users: int, n_items: int, seed: int = 0) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    out = {}
    for u in range(n_users):
        start, length = int(rng.integers(n_items)), int(rng.integers(8, 16))
        out[f"u{u:03d}"] = [item(start + j, n_items) for j in range(length)]
    return out


def user_split(user_ids: list[str]) -> dict[str, str]:
    """Deterministic 8:1:1 user split (every 10th user valid, the next test)."""
    return {u: ("valid" if i % 10 == 8 else "test" if i % 10 == 9 else "train") for i, u in enumerate(user_ids)}


def write_toy_dataset(
    warehouse: Warehouse, dataset: str, *, n_users: int = 60, n_items: int = 60, seed: int = 0
) -> dict[str, list[str]]:
    """Write the four input tables; return the sequences (user -> item ids)."""
    seqs = toy_sequences(n_users=n_users, n_items=n_items, seed=seed)
    ts = lambda j: T0 + dt.timedelta(minutes=j)  # noqa: E731
    catalogue = [f"i{k}" for k in range(n_items)]
    items = [{"item_id": i, "title": f"Item {i}", "image_status": "none", "source_row": k + 1}
             for k, i in enumerate(catalogue)]
    warehouse.write_table(dataset, "items", pa.Table.from_pylist(items, schema=schemas.ITEMS))
    warehouse.write_table(dataset, "user_sequences", pa.Table.from_pylist(
        [{"user_id": u, "item_ids": s, "timestamps": [ts(j) for j in range(len(s))], "length": len(s)}
         for u, s in seqs.items()], schema=schemas.USER_SEQUENCES))
    loo = []
    for u, s in seqs.items():
        for split, back in (("train", 3), ("valid", 2), ("test", 1)):
            t = len(s) - back
            loo.append({"user_id": u, "split": split, "history": s[:t], "target_item_id": s[t],
                        "target_timestamp": ts(t)})
    warehouse.write_table(dataset, "split_loo", pa.Table.from_pylist(loo, schema=schemas.SPLIT_LOO))
    rng = np.random.default_rng(seed + 1)
    splits = user_split(sorted(seqs))
    cands = []
    for u, s in seqs.items():
        unseen = [i for i in catalogue if i not in set(s)]
        negs = [unseen[j] for j in rng.choice(len(unseen), size=20, replace=False)]
        cands.append({"user_id": u, "split": splits[u], "history": s[-6:-1], "target_item_id": s[-1],
                      "target_timestamp": ts(len(s) - 1), "negative_item_ids": negs})
    warehouse.write_table(dataset, "eval_candidates", pa.Table.from_pylist(cands, schema=schemas.EVAL_CANDIDATES))
    return seqs
