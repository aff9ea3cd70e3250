"""Candidate key phrases for the extractive summarizer, each with the features the selection policy reads.

Candidates: YAKE's top 1-2 word phrases of the item's title + description, plus the item's categories. Each is
scored the KeyBERT way (cosine between the phrase and the document under the same MiniLM encoder), which is the
strongest single feature. Features are fixed-width so one small policy serves every item.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmsrarec_lib.summarize.encoders import words
from mmsrarec_lib.summarize.types import ItemInput

log = logging.getLogger(__name__)

FEATURES = (
    "keybert_sim",  # cos(phi(candidate), phi(title + description + categories))
    "yake_rank",  # 1 for YAKE's best phrase .. ~0 for its last, 0 when YAKE did not propose it
    "is_category",
    "in_title",  # every word of the candidate occurs in the title
    "n_words",  # words / 3
    "first_pos",  # relative position of the first occurrence in the text (1 when absent)
    "log_count",  # log(1 + occurrences in the text)
    "redundancy",  # max cosine to a candidate with a higher keybert_sim
)
N_FEATURES = len(FEATURES)


@dataclass(frozen=True)
class Candidates:
    """One item's candidate phrases [C] and their features [C, N_FEATURES]."""

    item_id: str
    phrases: list[str]
    features: np.ndarray


def _yake(text: str, *, top: int) -> list[str]:
    import yake

    if not text.strip():
        return []
    extractor = yake.KeywordExtractor(lan="en", n=2, top=top, dedupLim=0.8)
    return [k for k, _ in extractor.extract_keywords(text)]


def _clean(phrase: str) -> str:
    return re.sub(r"\s+", " ", phrase.strip().strip(".,;:!?\"'()[]")).lower()


def extract_candidates(items: Sequence[ItemInput], *, encoder, yake_top: int = 12,
                       max_candidates: int = 16) -> list[Candidates]:
    """Candidates and features for every item (phrases ordered by keybert_sim, best first)."""
    raw: list[list[tuple[str, float, bool]]] = []
    for item in items:
        body = "\n".join(p for p in (item.title, item.description) if p)
        yk = [_clean(p) for p in _yake(body, top=yake_top)]
        cands: dict[str, tuple[float, bool]] = {}
        for rank, p in enumerate(yk):
            if p and p not in cands:
                cands[p] = (1.0 - rank / max(len(yk), 1), False)
        for c in item.categories:
            p = _clean(c)
            if p:
                cands[p] = (cands.get(p, (0.0, False))[0], True)
        raw.append([(p, yr, cat) for p, (yr, cat) in cands.items()])

    docs = [item.text for item in items]
    doc_vecs = encoder.encode(docs)  # [N, D]
    encoder.encode(list(dict.fromkeys(p for cands in raw for p, _, _ in cands)))  # one batched call, cached
    out: list[Candidates] = []
    for item, doc_vec, cands in zip(items, doc_vecs, raw):
        if not cands:
            out.append(Candidates(item.item_id, [], np.zeros((0, N_FEATURES), dtype=np.float32)))
            continue
        phrases = [p for p, _, _ in cands]
        vecs = encoder.encode(phrases)  # [C, D]
        sims = vecs @ doc_vec  # [C]
        order = np.argsort(-sims, kind="stable")[:max_candidates]
        text_words = words(item.text)
        title_words = set(words(item.title))
        feats = np.zeros((len(order), N_FEATURES), dtype=np.float32)
        kept = []
        for row, j in enumerate(order):
            p, yrank, is_cat = cands[j]
            pw = words(p)
            first = _first_position(pw, text_words)
            count = _count(pw, text_words)
            redundancy = float(max((vecs[j] @ vecs[k] for k in order[:row]), default=0.0))
            feats[row] = [
                sims[j], yrank, float(is_cat), float(bool(pw) and set(pw) <= title_words),
                len(pw) / 3.0, first, np.log1p(count), redundancy,
            ]
            kept.append(p)
        out.append(Candidates(item.item_id, kept, feats))
    return out


def _first_position(phrase_words: list[str], text_words: list[str]) -> float:
    n = len(phrase_words)
    if not n or not text_words:
        return 1.0
    for i in range(len(text_words) - n + 1):
        if text_words[i : i + n] == phrase_words:
            return i / len(text_words)
    return 1.0


def _count(phrase_words: list[str], text_words: list[str]) -> int:
    n = len(phrase_words)
    if not n:
        return 0
    return sum(text_words[i : i + n] == phrase_words for i in range(len(text_words) - n + 1))
