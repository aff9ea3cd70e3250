"""Scoring with the ``minilm-effnet`` backbone: the user part once per user, each item's tokens once per run.

``EncoderReranker.mllm_scores`` encodes the users of a chunk once (text encoder + block under the prefix mask,
keys/values kept per layer), looks each candidate's input tokens up in an item cache (text encoder + image and id
projectors, computed the first time an item is needed), then runs one block pass per (user, candidate) over the
candidate's few tokens. ``shared=False`` is the reference: one full pass per candidate, nothing reused (for the
bench and the tests). Scores: p = p(yes) / (p(yes) + p(no)), optionally fused with the generator (``fuse``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from mmsrarec_lib.models.minilm_effnet import RecBackbone, yes_probability
from mmsrarec_lib.recommend.encoder_inputs import FeatureBank, InputBuilder
from mmsrarec_lib.recommend.fusion import fuse


class EncoderReranker:
    """Candidate lists -> p (and the fused score); the same interface as the decoder path's ``MllmReranker``."""

    def __init__(self, *, model: RecBackbone, builder: InputBuilder, features: FeatureBank, generator=None,
                 user_of: Callable[[Sequence[str]], str | None] | None = None, fusion_weight: float = 0.0,
                 user_batch: int = 32, item_batch: int = 64, pair_batch: int = 2048, progress: bool = True) -> None:
        self.model, self.builder, self.features, self.generator = model.eval(), builder, features, generator
        self.user_of = user_of or (lambda _h: None)
        self.fusion_weight, self.progress = fusion_weight, progress
        self.user_batch, self.item_batch, self.pair_batch = user_batch, item_batch, pair_batch
        self.item_ids = list(generator.item_ids) if generator is not None else sorted(builder.ctx.items)
        self._items: dict[str, torch.Tensor] = {}  # item_id -> [Tc, d]
        self._memo: dict[tuple, np.ndarray] = {}

    # ------------------------------------------------------------------ caches
    @torch.no_grad()
    def item_tokens(self, items: Sequence[str]) -> torch.Tensor:
        """[N, Tc, d] input tokens of ``items`` (computed once per item, then cached)."""
        todo = list(dict.fromkeys(i for i in items if i not in self._items))
        for start in range(0, len(todo), self.item_batch):
            chunk = todo[start : start + self.item_batch]
            feats, has = self.features.images(chunk)
            toks = self.model.encode_items([self.builder.item(i) for i in chunk], feats, has,
                                           self.features.id_vecs(chunk))
            self._items.update(zip(chunk, toks, strict=True))
        return torch.stack([self._items[i] for i in items]) if items else torch.zeros(0)

    def user_text(self, user_id: str | None, history: Sequence[str]) -> list[tuple]:
        return self.builder.user(history, self.builder.ctx.neighbor_keywords(user_id, self.builder.cfg.n_neighbors))

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def mllm_scores_batch(self, user_ids: Sequence[str | None], histories: Sequence[Sequence[str]],
                          candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """p per candidate [C_u] for a chunk of users (user part once per user, items from the cache)."""
        cache = self.model.encode_users([self.user_text(u, h) for u, h in zip(user_ids, histories, strict=True)])
        flat = [(u, c) for u, cands in enumerate(candidates) for c in cands]
        probs = np.zeros(len(flat), dtype=np.float64)
        for start in range(0, len(flat), self.pair_batch):
            part = flat[start : start + self.pair_batch]
            tokens = self.item_tokens([c for _, c in part])
            index = torch.tensor([u for u, _ in part], dtype=torch.long)
            probs[start : start + len(part)] = yes_probability(self.model.score_cached(cache, index, tokens)).numpy()
        out, pos = [], 0
        for cands in candidates:
            out.append(probs[pos : pos + len(cands)])
            pos += len(cands)
        return out

    @torch.no_grad()
    def reference_scores(self, user_id: str | None, history: Sequence[str], candidates: Sequence[str]) -> np.ndarray:
        """One full pass per candidate, nothing cached (the reference for tests and the bench)."""
        user = self.user_text(user_id, history)
        out = []
        for c in candidates:
            feats, has = self.features.images([c])
            logits = self.model.score_reference(user, self.builder.item(c), feats, has, self.features.id_vecs([c]))
            out.append(float(yes_probability(logits)))
        return np.asarray(out)

    def mllm_scores(self, user_id: str | None, history: Sequence[str], candidates: Sequence[str]) -> np.ndarray:
        return self.mllm_scores_batch([user_id], [history], [candidates])[0]

    def p_scores(self, user_ids: Sequence[str | None], histories: Sequence[Sequence[str]],
                 candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """p for every user (memoised per (user, history, candidates): fusion-weight sweeps reuse it)."""
        from tqdm.auto import tqdm

        keys = [(u, tuple(h), tuple(c)) for u, h, c in zip(user_ids, histories, candidates, strict=True)]
        todo = [i for i, k in enumerate(keys) if k not in self._memo and len(k[2])]
        for start in tqdm(range(0, len(todo), self.user_batch), desc="rerank", unit=f"{self.user_batch} users",
                          disable=not self.progress):
            idx = todo[start : start + self.user_batch]
            res = self.mllm_scores_batch([user_ids[i] for i in idx], [histories[i] for i in idx],
                                         [candidates[i] for i in idx])
            for i, p in zip(idx, res, strict=True):
                self._memo[keys[i]] = p
        return [self._memo.get(k, np.zeros(0)) for k in keys]

    def score_users(self, user_ids: Sequence[str | None], histories: Sequence[Sequence[str]],
                    candidates: Sequence[Sequence[str]], *, fusion_weight: float | None = None
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(p [C], final score [C]) per user; final = ``fuse(p, generator, w)``."""
        w = self.fusion_weight if fusion_weight is None else fusion_weight
        ps = self.p_scores(user_ids, histories, candidates)
        gen = (self.generator.score_candidates([list(h) for h in histories], [list(c) for c in candidates])
               if self.generator is not None and w else [None] * len(histories))
        return [(p, fuse(p, g, w)) for p, g in zip(ps, gen, strict=True)]

    def score_candidates(self, histories: list[list[str]], candidates: list[list[str]]) -> list[np.ndarray]:
        users = [self.user_of(h) for h in histories]
        return [final for _, final in self.score_users(users, histories, candidates)]

    def score_catalogue(self, histories: list[list[str]]) -> np.ndarray:
        raise ValueError("the reranker scores candidate lists; wrap it in CandidateRerank for the catalogue")


class FusedView:
    """The same reranker (and its memoised p) seen with another fusion weight (e.g. 0 = the MLLM alone)."""

    def __init__(self, reranker: EncoderReranker, fusion_weight: float) -> None:
        self.reranker, self.fusion_weight, self.item_ids = reranker, fusion_weight, reranker.item_ids

    def score_candidates(self, histories: list[list[str]], candidates: list[list[str]]) -> list[np.ndarray]:
        users = [self.reranker.user_of(h) for h in histories]
        return [f for _, f in self.reranker.score_users(users, histories, candidates, fusion_weight=self.fusion_weight)]

    def score_catalogue(self, histories: list[list[str]]) -> np.ndarray:
        raise ValueError("the reranker scores candidate lists; wrap it in CandidateRerank for the catalogue")
