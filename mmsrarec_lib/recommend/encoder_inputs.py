"""Inputs of the ``minilm-effnet`` backbone: the user text, the candidate text, image features and id vectors.

The prompt of the paper, in the form an encoder reads (two BERT segments; no instruction text, which a sentence
encoder cannot follow), as pieces (``|``)::

    [CLS] | <title>: kw, kw, kw, kw | <title>: kw, ... | <newest title>: kw, ... | [SEP] | kw, kw, kw, kw | ... | [SEP]
            `-- segment A: the last n_history items, oldest first --'                `-- B: per neighbour, the keywords
                                                                                         of its next item
    [CLS] <candidate title>. kw, kw, kw, kw, kw, kw [SEP]        (the candidate; its image and id are tokens too)

Truncation (deterministic): history keywords deduplicated and cut to ``history_keywords`` per item; the first
``n_neighbors`` neighbours, each its next item's keywords deduplicated and cut to ``neighbor_keywords //
n_neighbors``, all neighbours together to ``neighbor_tokens`` tokens; then the oldest history items are dropped
until the user text fits ``max_user_tokens`` (the newest item is cut when it alone does not fit). The candidate
text is cut to ``max_item_tokens``. The no-summary
ablation shows raw title + description text (cut to ``raw_chars`` per history item) instead of keywords.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mmsrarec_lib.recommend.context import RecContext
from mmsrarec_lib.recommend.prompts import cut_text, dedup_keywords

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderPromptConfig:
    """Sizes of the encoder prompt (see the module docstring)."""

    n_history: int = 5
    history_keywords: int = 3
    keywords_per_item: int = 6
    n_neighbors: int = 3
    neighbor_keywords: int = 12
    neighbor_tokens: int = 24
    max_user_tokens: int = 80
    max_item_tokens: int = 20
    raw_chars: int = 60
    raw_item_chars: int = 160


class InputBuilder:
    """Texts as piece lists (``backbone.Piece``: token ids + token type) for one :class:`RecContext`; every piece
    is tokenised once and, being the same tuple every time, hits the backbone's frozen lower-layer cache."""

    def __init__(self, tokenizer, context: RecContext, config: EncoderPromptConfig) -> None:
        self.tok, self.ctx, self.cfg = tokenizer, context, config
        self.cls, self.sep, self.pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
        self._cache: dict[tuple[str, str], tuple[int, ...]] = {}

    def _ids(self, kind: str, key: str, make) -> tuple[int, ...]:
        if (kind, key) not in self._cache:
            self._cache[(kind, key)] = tuple(self.tok(make(), add_special_tokens=False)["input_ids"])
        return self._cache[(kind, key)]

    def _title(self, item_id: str) -> str:
        item = self.ctx.items.get(item_id)
        return " ".join((item.title if item else item_id).split())

    def keyword_text(self, item_id: str, limit: int) -> str:
        item = self.ctx.items.get(item_id)
        if item is None:
            return ""
        if item.raw_text is not None:
            return cut_text(item.raw_text, self.cfg.raw_chars if limit <= self.cfg.history_keywords
                            else self.cfg.raw_item_chars)
        return ", ".join(dedup_keywords(item.keywords, limit))

    def history_piece(self, item_id: str) -> tuple[int, ...]:
        return self._ids("hist", item_id, lambda: f"{self._title(item_id)}: "
                         f"{self.keyword_text(item_id, self.cfg.history_keywords)}")

    def user(self, history: Sequence[str], neighbor_keywords: Sequence[Sequence[str]]) -> list[tuple]:
        """The user text as pieces: [CLS], the last ``n_history`` items oldest first, [SEP], one piece per
        neighbour (its next item's keywords, token type 1), [SEP] (see the module docstring for the cuts)."""
        cfg = self.cfg
        per = max(1, cfg.neighbor_keywords // max(1, cfg.n_neighbors))
        neigh, used = [], 0
        for kws in list(neighbor_keywords)[: cfg.n_neighbors]:
            text = ", ".join(dedup_keywords(kws, per))
            ids = self._ids("neigh", text, lambda t=text: t)[: cfg.neighbor_tokens - used]
            if ids:
                neigh.append((ids, 1))
                used += len(ids)
        budget = cfg.max_user_tokens - 3 - used
        hist: list[tuple] = []
        size = 0
        for item_id in reversed(list(history)[-cfg.n_history :]):  # newest first, then prepend older ones
            piece = self.history_piece(item_id)
            if size + len(piece) > budget:
                if not hist:
                    hist = [(piece[:budget], 0)]
                break
            hist.insert(0, (piece, 0))
            size += len(piece)
        return [((self.cls,), 0), *hist, ((self.sep,), 0), *neigh, ((self.sep,), 1)]

    def _single(self, kind: str, item_id: str, make) -> list[tuple]:
        body = self._ids(kind, item_id, make)[: self.cfg.max_item_tokens - 2]
        return [((self.cls, *body, self.sep), 0)]

    def item(self, item_id: str) -> list[tuple]:
        """[CLS] title. keywords (or raw text) [SEP] as one piece, cut to max_item_tokens."""
        return self._single("item", item_id, lambda: f"{self._title(item_id)}. "
                            f"{self.keyword_text(item_id, self.cfg.keywords_per_item)}")

    def keywords_only(self, item_id: str) -> list[tuple]:
        """[CLS] keywords [SEP] (the next_kw / grounding targets)."""
        return self._single("kw", item_id, lambda: self.keyword_text(item_id, self.cfg.keywords_per_item) or "none")

    def title(self, item_id: str) -> list[tuple]:
        """[CLS] title [SEP] (the recovery target)."""
        return self._single("title", item_id, lambda: self._title(item_id))


def n_tokens(pieces: Sequence[tuple]) -> int:
    return sum(len(p[0]) for p in pieces)


class FeatureBank:
    """item_id -> image feature [image_dim] (+ has-image flag) and SASRec id vector [id_dim] (zeros if unknown)."""

    def __init__(self, *, image: Mapping[str, np.ndarray] | None, image_dim: int,
                 id_vectors: Mapping[str, np.ndarray] | None = None, id_dim: int = 0) -> None:
        self.image, self.image_dim = dict(image or {}), image_dim
        self.ids, self.id_dim = dict(id_vectors or {}), id_dim

    def images(self, items: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """feats [N, image_dim], has_image [N] bool."""
        feats = np.zeros((len(items), self.image_dim), dtype=np.float32)
        has = np.zeros(len(items), dtype=bool)
        for i, item in enumerate(items):
            f = self.image.get(item)
            if f is not None:
                feats[i], has[i] = f, True
        return torch.from_numpy(feats), torch.from_numpy(has)

    def id_vecs(self, items: Sequence[str]) -> torch.Tensor | None:
        if self.id_dim <= 0:
            return None
        out = np.zeros((len(items), self.id_dim), dtype=np.float32)
        for i, item in enumerate(items):
            v = self.ids.get(item)
            if v is not None:
                out[i] = v
        return torch.from_numpy(out)


def load_image_features(warehouse, dataset: str, *, encoder: str = "efficientnet-lite0") -> dict[str, np.ndarray]:
    """item_id -> pooled image feature from ``item_image_features``; {} (with a warning) when not encoded yet."""
    try:
        from mmsrarec_lib.vision import read_image_features
    except ImportError:  # pragma: no cover - the vision package is part of the repo
        log.warning("mmsrarec_lib.vision is not importable: no image tokens")
        return {}
    try:
        ids, feats = read_image_features(warehouse, dataset, encoder=encoder)
    except FileNotFoundError as exc:
        log.warning("%s: the candidates get the learned 'no image' tokens", exc)
        return {}
    log.info("image features of %d items (%s)", len(ids), encoder)
    return {i: feats[r] for r, i in enumerate(ids)}


def load_id_vectors(warehouse, dataset: str, generator_run: str) -> dict[str, np.ndarray]:
    """item_id -> the SASRec run's item embedding (the id token's input)."""
    from mmsrarec_lib.models.sasrec import load_sasrec

    model = load_sasrec(warehouse, dataset, generator_run)
    weight = model.item_emb.weight.detach().cpu().numpy()  # [N + 1, dim], row 0 = padding
    return {iid: weight[idx] for iid, idx in model.item_index.items()}
