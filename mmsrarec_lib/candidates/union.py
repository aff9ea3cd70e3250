"""Candidate generation for the catalogue top-K: the ID model's top-M ∪ the content index's top-M', then a rerank.

An ID model (SASRec) cannot score an item it never saw in training; the content index can score any item with a
text or an image. Each user's candidates are the retriever's ``top_m`` best unseen items (best first, ties by item
id) followed by the content index's ``content_m`` nearest unseen items not already among them; with
``content_pool="unscored"`` the content index searches only the items the retriever cannot score (a "new
arrivals" source: SASRec already ranks every item it knows). ``content_m = 0``
(or no content index) gives the retriever's top-M alone. The reranker then orders the candidates; the retriever's
score of an item it cannot score is *missing* (the reranker's fusion treats it as neutral), never "very low".

Fresh slots: a reranker trained on interactions learns that popular items are likelier (and that is usually
right), so an item nobody has bought yet rarely outscores SASRec's best warm candidates even when it is the best
new item for the user. ``fresh_slots`` F reserves up to F of the top-K for the best-reranked candidates the
retriever cannot score (:func:`reserve_fresh_slots`); the list stays in score order.

``CandidateRerank`` is the evaluation scorer of this pipeline (``score_catalogue`` for the catalogue protocols):
the reranked candidates rank above every other item, the rest keep the retriever's order, and an item that is
neither a candidate nor scorable by the retriever ranks last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_CONTENT_M = 20  # content candidates per user, next to SASRec's top-M (the catalogue top-K's default)
CONTENT_POOLS = ("unscored", "all")
DEFAULT_CONTENT_POOL = "unscored"
DEFAULT_FRESH_SLOTS = 2


def reserve_fresh_slots(ranked: Sequence[str], *, fresh: set[str] | frozenset[str], k: int, slots: int
                        ) -> list[str]:
    """The top ``k`` of ``ranked`` (best first) with at least ``min(slots, #fresh in ranked)`` fresh items: the
    lowest non-fresh items give way to the best fresh ones; the result keeps ``ranked``'s order."""
    n_fresh = min(slots, k, sum(i in fresh for i in ranked))
    room = k - n_fresh  # slots for non-fresh items
    out, warm = [], 0
    for item in ranked:
        if len(out) == k:
            break
        if item in fresh:
            out.append(item)
        elif warm < room:
            out.append(item)
            warm += 1
    return out


def top_unseen(scores: np.ndarray, item_ids: Sequence[str], *, seen: set[str], m: int) -> list[str]:
    """The ``m`` best finite-scored items of ``item_ids`` not in ``seen``, best first, ties by item id."""
    s = np.asarray(scores, dtype=np.float64)
    ok = np.isfinite(s) & np.fromiter((i not in seen for i in item_ids), dtype=bool, count=len(item_ids))
    idx = np.flatnonzero(ok)
    if 0 < m < len(idx):  # only the m best (and everything tied with the m-th) need sorting: large catalogues
        threshold = s[idx[np.argpartition(-s[idx], m - 1)[:m]]].min()
        idx = idx[s[idx] >= threshold]
    order = sorted(idx.tolist(), key=lambda i: (-s[i], item_ids[i]))
    return [item_ids[i] for i in order[:m]]


@dataclass
class CandidateSource:
    """``retriever`` (``item_ids`` + ``score_catalogue``), optionally a ``ContentIndex`` (see the module doc)."""

    retriever: Any
    top_m: int = 50
    content: Any | None = None
    content_m: int = 0
    content_pool: str = DEFAULT_CONTENT_POOL  # unscored (only items the retriever cannot score) | all

    def __post_init__(self) -> None:
        if self.top_m < 1 or self.content_m < 0 or self.content_pool not in CONTENT_POOLS:
            raise ValueError(f"need top_m >= 1, content_m >= 0 and content_pool in {CONTENT_POOLS}, got "
                             f"{self.top_m}, {self.content_m}, {self.content_pool!r}")
        extra = sorted(set(self.content.item_ids) - set(self.retriever.item_ids)) if self.uses_content else []
        self.item_ids: list[str] = [*self.retriever.item_ids, *extra]  # retriever columns first
        self._search = (self.content.subset(extra) if self.uses_content and self.content_pool == "unscored"
                        else self.content)
        self.fresh = frozenset(extra)  # items only the content index can propose

    @property
    def uses_content(self) -> bool:
        return self.content is not None and self.content_m > 0 and len(self.content) > 0

    def generate(self, histories: Sequence[Sequence[str]], retriever_scores: np.ndarray | None = None
                 ) -> list[list[str]]:
        """Each user's candidates (retriever top-M, then content top-M' not already there)."""
        base = (np.asarray(self.retriever.score_catalogue([list(h) for h in histories]))
                if retriever_scores is None else retriever_scores)  # (n, N_retriever)
        ids = list(self.retriever.item_ids)
        out = [top_unseen(base[u], ids, seen=set(h), m=self.top_m) for u, h in enumerate(histories)]
        if self.uses_content:
            near = (self._search.candidates(histories, m=self.content_m, exclude=[set(h) for h in histories])
                    if len(self._search) else [[] for _ in histories])
            for cands, extra in zip(out, near, strict=True):
                have = set(cands)
                cands += [item for item, _ in extra if item not in have]
        return out


def candidate_source(warehouse: Any, dataset: str, retriever: Any, *, top_m: int, content_m: int,
                     content_pool: str = DEFAULT_CONTENT_POOL) -> CandidateSource:
    """``retriever``'s top-M, plus the latest content index's top-M' when ``content_m`` > 0 (the index must exist)."""
    content = None
    if content_m:
        from mmsrarec_lib.candidates.store import load_content_index

        content = load_content_index(warehouse, dataset)
    return CandidateSource(retriever, top_m=top_m, content=content, content_m=content_m, content_pool=content_pool)


class CandidateRerank:
    """Catalogue scorer: candidates from a ``CandidateSource``, ordered by ``reranker`` (module docstring); with
    ``fresh_slots`` the top ``k`` follow :func:`reserve_fresh_slots`, as the catalogue top-K does."""

    def __init__(self, source: CandidateSource, reranker: Any, *, fresh_slots: int = 0, k: int = 10) -> None:
        self.source, self.reranker, self.fresh_slots, self.k = source, reranker, fresh_slots, k
        self.retriever, self.top_m = source.retriever, source.top_m
        self.item_ids = list(source.item_ids)
        self._col = {iid: j for j, iid in enumerate(self.item_ids)}

    def score_candidates(self, histories: list[list[str]], candidates: list[list[str]]) -> list[np.ndarray]:
        return self.reranker.score_candidates(histories, candidates)

    def score_catalogue(self, histories: list[list[str]]) -> np.ndarray:
        raw = np.asarray(self.retriever.score_catalogue(histories), dtype=np.float64)  # (n, N_retriever)
        cands = self.source.generate(histories, raw)
        base = np.full((len(histories), len(self.item_ids)), -np.inf)  # (n, N): content-only items unscored
        base[:, : raw.shape[1]] = raw
        for u, h in enumerate(histories):
            base[u, [self._col[i] for i in h if i in self._col]] = -np.inf
        rerank = self.reranker.score_candidates(histories, cands)
        for u, (cand, s) in enumerate(zip(cands, rerank, strict=True)):
            if not cand:
                continue
            cols = np.array([self._col[c] for c in cand], dtype=np.int64)
            s = np.asarray(s, dtype=np.float64)
            rest = base[u].copy()
            rest[cols] = -np.inf
            floor = np.max(rest[np.isfinite(rest)], initial=0.0)
            fin = s[np.isfinite(s)]
            shift = floor - (fin.min() if fin.size else 0.0) + 1.0  # every reranked item above every other one
            base[u, cols] = s + shift
            if self.fresh_slots and self.source.fresh:
                ranked = [cand[j] for j in sorted(range(len(cand)), key=lambda j: (-s[j], cand[j]))
                          if np.isfinite(s[j])]
                top = reserve_fresh_slots(ranked, fresh=self.source.fresh, k=self.k, slots=self.fresh_slots)
                peak = np.max(base[u][np.isfinite(base[u])], initial=0.0)
                for r, item in enumerate(top):  # the reserved top-k above every other candidate, in order
                    base[u, self._col[item]] = peak + self.k - r
        return base


class ContentScorer:
    """The content index alone as a scorer (the ``content`` row of the comparisons): cosine of the user's
    history vector to each item; items without a vector are unscored (-inf)."""

    def __init__(self, index: Any) -> None:
        self.index = index
        self.item_ids = list(index.item_ids)

    def score_catalogue(self, histories: list[list[str]]) -> np.ndarray:
        s = self.index.score_catalogue(histories, self.item_ids)  # (n, N), NaN = no vector
        return np.where(np.isnan(s), -np.inf, s)

    def score_candidates(self, histories: list[list[str]], candidates: list[list[str]]) -> list[np.ndarray]:
        return [np.where(np.isnan(s), -np.inf, s) for s in self.index.score(histories, candidates)]
