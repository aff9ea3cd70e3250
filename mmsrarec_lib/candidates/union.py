"""Candidate generation for the catalogue top-K: the ID model's top-M ∪ the content index's top-M', then a rerank.

An ID model (SASRec) cannot score an item it never saw in training; the content index can score any item with a
text or an image. Each user's candidates are the retriever's ``top_m`` best unseen items (best first, ties by item
id) followed by the content index's ``content_m`` nearest unseen items not already among them. ``content_m = 0``
(or no content index) gives the retriever's top-M alone. The reranker then orders the candidates; the retriever's
score of an item it cannot score is *missing* (the reranker's fusion treats it as neutral), never "very low".

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


def top_unseen(scores: np.ndarray, item_ids: Sequence[str], *, seen: set[str], m: int) -> list[str]:
    """The ``m`` best finite-scored items of ``item_ids`` not in ``seen``, best first, ties by item id."""
    s = np.asarray(scores, dtype=np.float64)
    ok = np.isfinite(s) & np.fromiter((i not in seen for i in item_ids), dtype=bool, count=len(item_ids))
    idx = np.flatnonzero(ok)
    order = sorted(idx.tolist(), key=lambda i: (-s[i], item_ids[i]))
    return [item_ids[i] for i in order[:m]]


@dataclass
class CandidateSource:
    """``retriever`` (``item_ids`` + ``score_catalogue``), optionally a ``ContentIndex`` (see the module doc)."""

    retriever: Any
    top_m: int = 50
    content: Any | None = None
    content_m: int = 0

    def __post_init__(self) -> None:
        if self.top_m < 1 or self.content_m < 0:
            raise ValueError(f"need top_m >= 1 and content_m >= 0, got {self.top_m}, {self.content_m}")
        extra = sorted(set(self.content.item_ids) - set(self.retriever.item_ids)) if self.uses_content else []
        self.item_ids: list[str] = [*self.retriever.item_ids, *extra]  # retriever columns first

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
            near = self.content.candidates(histories, m=self.content_m, exclude=[set(h) for h in histories])
            for cands, extra in zip(out, near, strict=True):
                have = set(cands)
                cands += [item for item, _ in extra if item not in have]
        return out


def candidate_source(warehouse: Any, dataset: str, retriever: Any, *, top_m: int, content_m: int
                     ) -> CandidateSource:
    """``retriever``'s top-M, plus the latest content index's top-M' when ``content_m`` > 0 (the index must exist)."""
    content = None
    if content_m:
        from mmsrarec_lib.candidates.store import load_content_index

        content = load_content_index(warehouse, dataset)
    return CandidateSource(retriever, top_m=top_m, content=content, content_m=content_m)


class CandidateRerank:
    """Catalogue scorer: candidates from a ``CandidateSource``, ordered by ``reranker`` (module docstring)."""

    def __init__(self, source: CandidateSource, reranker: Any) -> None:
        self.source, self.reranker = source, reranker
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
