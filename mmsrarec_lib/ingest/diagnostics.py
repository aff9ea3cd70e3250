"""Loud k-core diagnostics: what the filter kept, and a clear stop (with a suggested ``--k-core``) when it leaves
nothing to evaluate.

The k-core filter (``--k-core``, default 5) suits dense data such as MovieLens; on a sparse catalogue (a couple of
purchases per product) it can silently keep almost nothing. After the splits are built, :func:`kcore_report`
summarises what was kept (users, items, interactions, evaluation users per split) and :func:`check_kcore`:

- **fails** (:class:`SparseDataError`, a ValueError, so the CLI prints one line and exits 2) when the filter is on
  and the evaluation set (``eval_candidates``) is empty, unless ``allow_sparse``;
- **warns** when the filter keeps less than ``min_share`` (half) of the interactions, or when ``allow_sparse``
  overrides the failure.

Both messages carry the largest ``k`` that keeps at least ``min_share`` of the interactions and a non-empty
evaluation set, computed on the driver with the same iterative filter in numpy (milliseconds for 100k rows), and
what each smaller ``k`` would keep. How to choose ``k``: docs/ingest.md, *Choosing --k-core for sparse data*.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

MIN_SHARE = 0.5


class SparseDataError(ValueError):
    """The k-core filter left nothing to evaluate (pass --allow-sparse to keep the result anyway)."""


@dataclass(frozen=True)
class KCoreReport:
    k: int
    users_in: int
    items_in: int
    interactions_in: int
    users_kept: int
    items_kept: int
    interactions_kept: int
    eval_users: dict[str, int]  # per split

    @property
    def share_kept(self) -> float:
        return self.interactions_kept / self.interactions_in if self.interactions_in else 1.0

    def to_dict(self) -> dict:
        return {**asdict(self), "share_kept": round(self.share_kept, 4)}

    def describe(self) -> str:
        return (f"k-core({self.k}) kept {self.users_kept:,}/{self.users_in:,} users, {self.items_kept:,}/"
                f"{self.items_in:,} items, {self.interactions_kept:,}/{self.interactions_in:,} interactions "
                f"({self.share_kept:.0%}); evaluation users per split {self.eval_users or 'none'}")


def kcore_mask(users: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """Rows (integer-coded ``users``, ``items``) surviving the iterative k-core filter; all rows when ``k <= 1``."""
    keep = np.ones(len(users), dtype=bool)
    if k <= 1 or len(users) == 0:
        return keep
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
    while True:
        user_n = np.bincount(users[keep], minlength=n_users)
        item_n = np.bincount(items[keep], minlength=n_items)
        nxt = keep & (user_n[users] >= k) & (item_n[items] >= k)
        if nxt.sum() == keep.sum():
            return nxt
        keep = nxt


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.dictionary_encode(column).combine_chunks().indices, dtype=np.int64)


def sweep(interactions: pa.Table, ks: list[int], *, min_history: int) -> dict[int, tuple[int, int, int, int]]:
    """k -> (users, items, interactions kept, users with > ``min_history`` kept interactions) for each k."""
    users, items = _codes(interactions.column("user_id")), _codes(interactions.column("item_id"))
    out = {}
    for k in ks:
        mask = kcore_mask(users, items, k)
        per_user = np.bincount(users[mask], minlength=int(users.max()) + 1 if len(users) else 0)
        out[k] = (int((per_user > 0).sum()), len(np.unique(items[mask])), int(mask.sum()),
                  int((per_user > min_history).sum()))
    return out


def kcore_report(interactions: pa.Table, *, k: int, users_kept: int, items_kept: int, interactions_kept: int,
                 eval_users: dict[str, int]) -> KCoreReport:
    return KCoreReport(
        k=k, users_in=len(pc.unique(interactions.column("user_id"))),
        items_in=len(pc.unique(interactions.column("item_id"))), interactions_in=interactions.num_rows,
        users_kept=users_kept if k > 1 else len(pc.unique(interactions.column("user_id"))),
        items_kept=items_kept if k > 1 else len(pc.unique(interactions.column("item_id"))),
        interactions_kept=interactions_kept if k > 1 else interactions.num_rows, eval_users=dict(eval_users))


def suggestion(interactions: pa.Table, *, k: int, history_len: int, min_share: float = MIN_SHARE) -> str:
    """Which ``--k-core`` keeps enough: the largest k below ``k`` keeping ``min_share`` of the interactions and
    some evaluation users, and what each k from 2 to ``k`` keeps."""
    ks = list(range(2, max(k, 2) + 1))
    kept = sweep(interactions, ks, min_history=history_len)
    n = max(interactions.num_rows, 1)
    good = [c for c in ks if c < k and kept[c][2] / n >= min_share and kept[c][3] > 0]
    shown = sorted({c for c in (k, *(good[-1:]), 20, 10, 5, 3, 2) if c in kept}, reverse=True)
    table = "; ".join(f"k={c}: {kept[c][0]:,} users, {kept[c][1]:,} items, {kept[c][2]:,} interactions "
                      f"({kept[c][2] / n:.0%})" for c in shown)
    advice = (f"try --k-core {max(good)}" if good else
              "even --k-core 2 keeps too little: try --k-core 0 (no filter)")
    return f"{advice} ({table})"


def check_kcore(report: KCoreReport, interactions: pa.Table, *, history_len: int, allow_sparse: bool,
                min_share: float = MIN_SHARE) -> list[str]:
    """Fail or warn as the module docstring says; returns the warnings given (also logged)."""
    log.info("%s", report.describe())
    if report.k <= 1:
        return []
    empty = sum(report.eval_users.values()) == 0
    if not empty and report.share_kept >= min_share:
        return []
    hint = suggestion(interactions, k=report.k, history_len=history_len, min_share=min_share)
    if empty and not allow_sparse:
        raise SparseDataError(f"{report.describe()}: nothing to evaluate or train on. The data is too sparse for "
                              f"--k-core {report.k}: {hint}; or pass --allow-sparse to keep this result")
    what = "the evaluation set is empty" if empty else f"it dropped {1 - report.share_kept:.0%} of the interactions"
    message = f"{report.describe()}: {what}; {hint}"
    log.warning("%s", message)
    return [message]
