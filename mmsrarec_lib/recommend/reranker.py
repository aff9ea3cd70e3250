"""The stage-3 reranker (``MllmReranker``, ``build_scorer``) and its evaluation-registry models: ``--model
mmsrarec[-no-retrieval|-no-summary|-no-multitask|-id-token]``, ``mmsrarec-mllm-only`` (the full model's run
scored with fusion weight 0) and saved runs.

``register_models()`` (idempotent; called explicitly by ``jobs/evaluate.py``, nothing happens at import) registers
one factory per variant and the loader of saved runs of kind ``mmsrarec`` in ``mmsrarec_lib.eval.registry``.

Scores: the MLLM's p = p(yes)/(p(yes)+p(no)) (minilm-effnet: cached user part, see ``encoder_scorer``; a
``--base-model`` decoder: shared-prefix KV cache), fused with the generator's score by ``fusion.fuse``.
``ScoringConfig.fusion_weight`` None = the run's own weight (minilm-effnet: chosen on validation users after
training; decoder runs: 1.0 unless trained with another).
Paper protocol: the 21 candidates are scored directly. Catalogue protocols: ``CandidateRerank`` — SASRec's top-M
unseen items (plus the content index's top-M' with ``ScoringConfig.content_m``), reranked by this scorer.

Registry gap, worked around with ``fusion.history_index``: the ``Scorer`` protocol passes histories, not user
ids, but the prompt needs the user's neighbours (a history not found there is scored without neighbours).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from mmsrarec_lib.candidates.union import CandidateRerank, candidate_source
from mmsrarec_lib.eval.protocols import hidden_items
from mmsrarec_lib.recommend.context import RecContext
from mmsrarec_lib.recommend.fusion import ScoringConfig, fuse, fusion_weight_for, history_index
from mmsrarec_lib.recommend.prompts import Candidate, PromptConfig
from mmsrarec_lib.recommend.tasks import user_prefix

log = logging.getLogger(__name__)
MLLM_ONLY = "mmsrarec-mllm-only"  # the full model's run scored by p alone (fusion weight 0)


class MllmReranker:
    """Scores candidate lists with the fine-tuned MLLM (shared prefix per user), optionally fused with a generator."""

    def __init__(self, *, model: Any, processor: Any, context: RecContext, prompt: PromptConfig,
                 generator: Any | None = None, user_of: Callable[[Sequence[str]], str | None] | None = None,
                 config: ScoringConfig = ScoringConfig(), progress: bool = True) -> None:
        from mmsrarec_lib.recommend.encoder_pipeline import EncoderAssets

        self._encoder = None
        if isinstance(processor, EncoderAssets):  # a minilm-effnet run: delegate to its cached scorer
            from mmsrarec_lib.recommend.encoder_pipeline import make_reranker

            w = config.fusion_weight if config.fusion_weight is not None else processor.meta["config"]["fusion_weight"]
            self._encoder = make_reranker(model, processor, context=context, generator=generator, user_of=user_of,
                                          fusion_weight=w, progress=progress)
            self.item_ids = self._encoder.item_ids
            return
        from mmsrarec_lib.recommend.decoder_scoring import PromptEncoder

        if config.fusion_weight is None:
            config = replace(config, fusion_weight=1.0)
        self.model, self.context, self.prompt, self.generator = model, context, prompt, generator
        self.encoder = PromptEncoder(processor)
        self.user_of = user_of or (lambda _h: None)
        self.config, self.progress = config, progress
        self.item_ids = list(generator.item_ids) if generator is not None else sorted(context.items)
        self._suffix_cache: dict[str, Any] = {}

    def _count_tokens(self, text: str) -> int:
        return len(self.encoder.tokenizer(text)["input_ids"])

    def _suffix(self, item_id: str):
        from mmsrarec_lib.recommend.prompts import build_suffix

        if item_id not in self._suffix_cache:
            cand = self.context.items.get(item_id) or Candidate(item_id, item_id)
            text = build_suffix(candidate=cand, config=self.prompt)
            image = self.context.image(item_id) if (self.prompt.use_image and cand.has_image) else None
            self._suffix_cache[item_id] = self.encoder.encode_suffix(text, image)
        return self._suffix_cache[item_id]

    def prefix_text(self, user_id: str | None, history: Sequence[str]) -> str:
        return user_prefix(history=history, neighbors=self.context.neighbor_keywords(user_id, self.prompt.n_neighbors),
                           items=self.context.items, config=self.prompt, count_tokens=self._count_tokens)

    def mllm_scores(self, user_id: str | None, history: Sequence[str], candidates: Sequence[str]) -> np.ndarray:
        """p(yes)/(p(yes)+p(no)) per candidate [C]."""
        from mmsrarec_lib.recommend.decoder_scoring import score_naive, score_shared_prefix

        prefix = self.encoder.encode_prefix(self.prefix_text(user_id, history))
        sufs = [self._suffix(c) for c in candidates]
        kw = dict(prefix_ids=prefix, suffixes=sufs, yes_id=self.encoder.yes_id, no_id=self.encoder.no_id)
        if self.config.shared_prefix:
            return score_shared_prefix(self.model, batch_size=self.config.batch_size, pad_id=self.encoder.pad_id, **kw)
        return score_naive(self.model, **kw)

    def score_users(self, user_ids: Sequence[str | None], histories: Sequence[Sequence[str]],
                    candidates: Sequence[Sequence[str]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(MLLM p [C], final score [C]) per user."""
        from tqdm.auto import tqdm

        if self._encoder is not None:
            return self._encoder.score_users(user_ids, histories, candidates)
        gen = (self.generator.score_candidates([list(h) for h in histories], [list(c) for c in candidates])
               if self.generator is not None and self.config.fusion_weight else [None] * len(histories))
        out = []
        for uid, h, c, g in tqdm(list(zip(user_ids, histories, candidates, gen, strict=True)), desc="rerank",
                                 unit="user", disable=not self.progress):
            p = self.mllm_scores(uid, h, c) if len(c) else np.zeros(0)
            out.append((p, fuse(p, g, self.config.fusion_weight)))
        return out

    def score_candidates(self, histories: list[list[str]], candidates: list[list[str]]) -> list[np.ndarray]:
        if self._encoder is not None:
            return self._encoder.score_candidates(histories, candidates)
        users = [self.user_of(h) for h in histories]
        return [final for _, final in self.score_users(users, histories, candidates)]

    def score_catalogue(self, histories: list[list[str]]) -> np.ndarray:
        raise ValueError("the MLLM reranker scores candidate lists; wrap it in CandidateRerank for the catalogue")


# --------------------------------------------------------------------------- registry hooks
def build_scorer(warehouse, dataset: str, run_id: str, *, scoring: ScoringConfig | None = None,
                 progress: bool = True, model_and_meta: tuple | None = None, protocol: str | None = None):
    """The evaluation scorer of a saved run, its model.json and scoring config. Fusion weight: ``scoring``'s, else
    the one the run chose for evaluation ``protocol`` (None: the run's own, see ``fusion.fusion_weight_for``)."""
    from mmsrarec_lib.models.baselines import load_baseline
    from mmsrarec_lib.recommend.context import load_context
    from mmsrarec_lib.recommend.run_config import config_from_dict
    from mmsrarec_lib.recommend.training import load_recommender

    model, processor, meta = model_and_meta or load_recommender(warehouse, dataset, run_id)
    cfg = config_from_dict(meta["config"])
    scoring = scoring or ScoringConfig()
    if scoring.fusion_weight is None:
        scoring = replace(scoring, fusion_weight=fusion_weight_for(meta, protocol))
    ctx = load_context(warehouse, dataset, keyword_source=cfg.keyword_source, neighbor_protocol="paper",
                       use_neighbors=cfg.use_neighbors, hidden_items=hidden_items(warehouse, dataset, cfg.protocol))
    generator = load_baseline(warehouse, dataset, meta["generator_run"]).scorer
    index = history_index(warehouse, dataset, cfg.protocol)
    reranker = MllmReranker(model=model, processor=processor, context=ctx, prompt=cfg.prompt, generator=generator,
                            user_of=lambda h: index.get(tuple(h)), config=scoring, progress=progress)
    # score_candidates (paper protocol) is the reranker's own; score_catalogue (full, cold) retrieves then reranks
    source = candidate_source(warehouse, dataset, generator, top_m=scoring.top_m, content_m=scoring.content_m)
    return CandidateRerank(source, reranker), meta, scoring


def with_fusion_weight(scorer, weight: float):
    """The same evaluation scorer with another fusion weight, reusing the reranker's memoised p (minilm-effnet
    runs; None for a decoder run, which must be built again with that weight)."""
    from mmsrarec_lib.recommend.encoder_scorer import FusedView

    enc = getattr(scorer.reranker, "_encoder", None)
    return None if enc is None else CandidateRerank(scorer.source, FusedView(enc, weight))


def mllm_only(scorer):
    """The same evaluation scorer with fusion weight 0 (the MLLM alone)."""
    out = with_fusion_weight(scorer, 0.0)
    if out is None:
        raise ValueError("mllm_only needs a minilm-effnet run")
    return out


def resolved_model(scorer, meta: dict, scoring: ScoringConfig, *, seeded: bool):
    from mmsrarec_lib.eval.registry import ResolvedModel

    config = {"variant": meta["variant"], "trained_protocol": meta["protocol"], "scoring": asdict(scoring),
              "train": meta["config"]["train"], "prompt": meta["config"]["prompt"],
              "generator_run": meta["generator_run"], "lineage": meta["lineage"],
              "backbone": meta.get("backbone", "decoder"), "fusion": meta.get("fusion"),
              "encoder": meta.get("encoder"), "train_seconds": meta.get("training", {}).get("train_seconds")}
    return ResolvedModel(scorer, meta["variant"], meta["run_id"], config, seeded=seeded, seed=meta.get("seed"))


def _factory(variant: str, *, fusion_weight: float | None = None):
    """``fusion_weight`` set: score the trained variant with that weight (``mmsrarec-mllm-only``: 0)."""

    def factory(request):
        from mmsrarec_lib.models.baselines import fit_baseline
        from mmsrarec_lib.recommend.run_config import RecTrainConfig
        from mmsrarec_lib.recommend.training import train_recommender

        opts = dict(request.options or {})
        generator = opts.get("generator_run")
        if generator is None:
            generator = fit_baseline(request.warehouse, request.dataset, kind="sasrec", protocol=request.protocol,
                                     seed=request.seed, sasrec_overrides=opts.get("sasrec"),
                                     progress=request.progress).run_id
        cfg = RecTrainConfig.for_variant(variant, dataset=request.dataset, protocol=request.protocol,
                                         generator_run=generator, **opts.get("train_overrides", {}))
        meta = train_recommender(request.warehouse, config=cfg, progress=request.progress)
        scoring = opts.get("scoring") or ScoringConfig()
        if fusion_weight is not None:
            scoring = replace(scoring, fusion_weight=fusion_weight)
        scorer, meta, scoring = build_scorer(request.warehouse, request.dataset, meta["run_id"],
                                             progress=request.progress, scoring=scoring, protocol=request.protocol)
        resolved = resolved_model(scorer, meta, scoring, seeded=True)
        return replace(resolved, model=MLLM_ONLY) if fusion_weight == 0 else resolved

    return factory


def _kind_loader(warehouse, dataset: str, run_id: str, meta: dict, *, protocol: str | None = None):
    """A saved run scored with the fusion weight it chose for ``protocol`` (the evaluation protocol)."""
    scorer, meta, scoring = build_scorer(warehouse, dataset, run_id, protocol=protocol)
    return resolved_model(scorer, meta, scoring, seeded=False)


def register_models() -> None:
    """Register the stage-3 names (every variant and ``mmsrarec-mllm-only``) and the loader of saved runs of kind
    ``mmsrarec`` in the evaluation registry. Idempotent: a second call changes nothing."""
    from mmsrarec_lib.eval.registry import available_models, register_kind_loader, register_model
    from mmsrarec_lib.recommend.run_config import KIND, VARIANTS

    for name in VARIANTS:
        if name not in available_models():
            register_model(name, _factory(name))
    if MLLM_ONLY not in available_models():
        register_model(MLLM_ONLY, _factory("mmsrarec", fusion_weight=0.0))
    register_kind_loader(KIND, _kind_loader, replace=True)
