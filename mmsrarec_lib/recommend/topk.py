"""Catalogue top-K: candidates (the generator's top-M unseen ∪ the content index's top-M', see
``mmsrarec_lib.candidates.union``) -> MLLM rerank -> top-K + explanations.

Never recommends an item the user already had: seen items are removed at generation *and* again at selection.
Explanation of a recommended item (stored in ``recommendations.explanation``); an item's keywords here are its
summary keywords plus its catalogue categories (e.g. genres). The history keywords and the neighbour keywords that
also describe the item (case-insensitive: one of the item's own keywords, or the keyword or one of its content words
found as a whole word in the item's keywords, title or description), and the ids of the neighbours whose keywords
overlap it or whose next item *is* it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute

from mmsrarec_lib import schemas, tables
from mmsrarec_lib.candidates.union import (
    DEFAULT_CONTENT_M,
    DEFAULT_CONTENT_POOL,
    DEFAULT_FRESH_SLOTS,
    reserve_fresh_slots,
)
from mmsrarec_lib.recommend.context import RecContext


@dataclass(frozen=True)
class TopKConfig:
    top_m: int = field(default=50, metadata={"help": "candidates from SASRec (the ID model) before the rerank"})
    top_k: int = field(default=10, metadata={"help": "items written per user"})
    content_m: int = field(default=DEFAULT_CONTENT_M, metadata={
        "help": "more candidates from the content index (items similar to the user's history, new items included;"
                " 0: SASRec's alone; skipped with a warning when no index was built: mmsrarec index-content)"})
    content_pool: Literal["unscored", "all"] = field(default=DEFAULT_CONTENT_POOL, metadata={
        "help": "unscored: content candidates only among items SASRec cannot score (new, never bought); all: any item"})
    fresh_slots: int = field(default=DEFAULT_FRESH_SLOTS, metadata={
        "help": "top-K slots (at most top_k) reserved for the best reranked items SASRec cannot score, when there are"
                " such candidates"})

    def __post_init__(self) -> None:
        if (self.top_k < 1 or self.top_m < 1 or self.content_m < 0 or self.top_m + self.content_m < self.top_k
                or self.fresh_slots < 0):
            raise ValueError(f"need top_k, top_m >= 1, content_m >= 0, top_k <= top_m + content_m and "
                             f"fresh_slots >= 0, got fresh_slots={self.fresh_slots}, top_k={self.top_k}, "
                             f"top_m={self.top_m}, content_m={self.content_m}")


def select_top_k(candidates: Sequence[str], scores: np.ndarray, *, seen: set[str], k: int,
                 fresh: frozenset[str] | set[str] = frozenset(), fresh_slots: int = 0) -> list[tuple[str, float]]:
    """Top ``k`` (item, score) by score (ties by item id), excluding seen items and duplicates; at least
    ``fresh_slots`` of them from ``fresh`` when there are (``mmsrarec_lib.candidates.union.reserve_fresh_slots``)."""
    best: dict[str, float] = {}
    for c, s in zip(candidates, np.asarray(scores, dtype=np.float64), strict=True):
        if c not in seen and np.isfinite(s) and (c not in best or s > best[c]):
            best[c] = float(s)
    ranked = sorted(best, key=lambda c: (-best[c], c))
    return [(c, best[c]) for c in reserve_fresh_slots(ranked, fresh=fresh, k=k, slots=fresh_slots)]


# words too common to explain anything (raw-text keywords contain them)
_STOP = frozenset("a an and are as at be but by for from had has have he her him his how i in is it its me my new "
                  "not of on or our she so than that the their them then they this to was we what when where which "
                  "who whom why will with you your after about into over".split())


def _overlap(words: Sequence[str], target: set[str], text: str = "") -> list[str]:
    """Keywords of ``words`` that also describe the item (case-insensitive, first occurrence): the keyword is one of
    the item's keywords (``target``), or the keyword or one of its content words (4+ letters, not a stop word)
    appears as a whole word in ``text`` (the item's keywords, title and description). Stop words and one- or
    two-letter keywords never count."""
    import re

    def in_text(phrase: str) -> bool:
        return bool(text) and re.search(rf"\b{re.escape(phrase)}\b", text) is not None

    out, seen = [], set()
    for w in words:
        key = w.lower()
        hit = key in target or in_text(key) or any(
            len(part) >= 4 and part not in _STOP and in_text(part) for part in key.split() if part != key)
        if hit and key not in seen and len(key) > 2 and key not in _STOP:
            seen.add(key)
            out.append(w)
    return out


def explain(ctx: RecContext, *, user_id: str | None, history: Sequence[str], item_id: str, n_history: int,
            n_neighbors: int) -> dict:
    """The EXPLANATION struct for recommending ``item_id`` to the user (see the module docstring)."""
    def kws(i: str) -> list[str]:  # an item's keywords for explanations: summary keywords + its categories
        return [*ctx.keywords.get(i, []), *ctx.categories.get(i, [])]

    target = {w.lower() for w in kws(item_id)}
    item = ctx.items.get(item_id)
    text = f"{item.title if item else ''} {ctx.descriptions.get(item_id, '')} {' ; '.join(target)}".lower()
    hist_words = [w for h in list(history)[-n_history:] for w in kws(h)]
    neigh = ctx.neighbors.get(user_id, [])[:n_neighbors] if (ctx.use_neighbors and user_id) else []
    neigh_words, neigh_ids = [], []
    for n in neigh:
        words = kws(n.next_item_id)
        hit = _overlap(words, target, text)
        neigh_words += hit
        if hit or n.next_item_id == item_id:
            neigh_ids.append(n.user_id)
    return {
        "history_keywords": _overlap(hist_words, target, text),
        "neighbor_keywords": _overlap(neigh_words, target, text),
        "neighbor_ids": list(dict.fromkeys(neigh_ids)),
    }


def recommendation_rows(
    *,
    run_date: dt.date,
    user_id: str,
    picks: Sequence[tuple[str, float]],
    explanations: Sequence[dict],
    model_version: str,
    created_at: dt.datetime,
) -> list[dict]:
    return [
        {"run_date": run_date, "user_id": user_id, "rank": r, "item_id": item, "score": score,
         "model_version": model_version, "explanation": exp, "created_at": created_at}
        for r, ((item, score), exp) in enumerate(zip(picks, explanations, strict=True), start=1)
    ]


def to_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schemas.RECOMMENDATIONS)


def partition_predicate(run_date: dt.date) -> str:
    """The Delta predicate that selects (and on overwrite, replaces) one run_date partition."""
    return f"run_date = '{run_date.isoformat()}'"


def write_partition(warehouse, dataset: str, table: pa.Table, *, run_date: dt.date,
                    name: str = tables.RECOMMENDATIONS) -> int:
    """Replace the ``run_date`` partition of ``name`` with ``table`` in one commit (other dates untouched)."""
    bad = table.filter(pa.compute.not_equal(table.column("run_date"), pa.scalar(run_date, pa.date32())))
    if bad.num_rows:
        raise ValueError(f"{bad.num_rows} rows are not of run_date {run_date}")
    if not warehouse.has_table(dataset, name):
        return warehouse.write_table(dataset, name, table, mode="overwrite", partition_by=["run_date"])
    return warehouse.write_table(dataset, name, table, mode="overwrite", partition_by=["run_date"],
                                 predicate=partition_predicate(run_date))
