"""Train, save, load and fuse a ``minilm-effnet`` run (the CPU default of ``mmsrarec train``).

A run folder ``<warehouse>/<dataset>/models/<run_id>/`` holds ``backbone.safetensors`` (the trained parts only:
LoRA, projectors, block, readout; the pretrained MiniLM comes from its package), ``tokenizer/``, ``checkpoints/``
(``transformers.Trainer`` checkpoints: resume after a kill) and ``model.json`` (kind ``mmsrarec``, backbone
``minilm-effnet``, the backbone/prompt/training configs, the fusion weight chosen on validation users, lineage).

Fusion (documented in docs/recommend.md): the reported score is ``logit(p) + w * z(g)`` with ``g`` the SASRec
generator's score standardised over the user's candidates. ``w`` is chosen after training from ``FUSION_GRID`` on
*validation* users only, once per evaluation protocol the run serves (a paper run: paper, the ``valid`` users' 21
candidates, NDCG@5; a full run: full, up to ``fusion_users`` ``valid`` rows of split_loo with SASRec's top-M
reranked, NDCG@10, and sampled, the same users' held-out item among 20 random negatives, NDCG@5), and recorded in
model.json (``fusion.by_protocol``). The training protocol's weight is the run's default (the nightly top-K);
evaluation under another protocol uses that protocol's own (``fusion.fusion_weight_for``). ``w = 0`` is the MLLM
alone (model ``mmsrarec-mllm-only``).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmsrarec_lib.models.minilm_effnet import NAME, BackboneConfig, RecBackbone, build_backbone
from mmsrarec_lib.recommend.encoder_inputs import (
    EncoderPromptConfig,
    FeatureBank,
    InputBuilder,
    load_id_vectors,
    load_image_features,
)
from mmsrarec_lib.recommend.encoder_train import (
    EncoderTrainSettings,
    generator_top_m,
    train_backbone,
    training_points,
)
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)
FUSION_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


@dataclass(frozen=True)
class EncoderRunConfig:
    """Backbone shapes, prompt sizes, training settings and the image encoder of a ``minilm-effnet`` run."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    prompt: EncoderPromptConfig = field(default_factory=EncoderPromptConfig)
    train: EncoderTrainSettings = field(default_factory=EncoderTrainSettings)
    image_encoder: str = "efficientnet-lite0"
    fusion_users: int = 2000  # validation users the fusion weight is chosen on (0: all)

    def to_dict(self) -> dict:
        return {"backbone": self.backbone.to_dict(), "prompt": asdict(self.prompt), "train": asdict(self.train),
                "image_encoder": self.image_encoder, "fusion_users": self.fusion_users}

    @classmethod
    def from_dict(cls, d: dict) -> EncoderRunConfig:
        return cls(backbone=BackboneConfig.from_dict(d["backbone"]), prompt=EncoderPromptConfig(**d["prompt"]),
                   train=EncoderTrainSettings(**d["train"]), image_encoder=d.get("image_encoder", "efficientnet-lite0"),
                   fusion_users=d.get("fusion_users", 2000))


@dataclass
class EncoderAssets:
    """What scoring needs next to the backbone (returned as the "processor" of ``load_recommender``)."""

    tokenizer: Any
    features: FeatureBank
    prompt: EncoderPromptConfig
    meta: dict


def features_for(warehouse: Warehouse, dataset: str, *, backbone: BackboneConfig, image_encoder: str,
                 generator_run: str | None) -> FeatureBank:
    ids = load_id_vectors(warehouse, dataset, generator_run) if backbone.id_dim > 0 and generator_run else None
    return FeatureBank(image=load_image_features(warehouse, dataset, encoder=image_encoder),
                       image_dim=backbone.image_dim, id_vectors=ids, id_dim=backbone.id_dim)


def piece_cache_file(warehouse: Warehouse, dataset: str) -> Path | None:
    """``<warehouse>/<dataset>/cache/minilm-pieces.pt`` for a local warehouse (frozen MiniLM piece vectors, keyed
    by text model and layer count, shared by every run and process); None on object storage."""
    local = warehouse.local_path(warehouse.uri(dataset))
    return None if local is None else Path(local) / "cache" / "minilm-pieces.pt"


def warm_piece_cache(warehouse: Warehouse, dataset: str, *, run_cfg: EncoderRunConfig | None = None,
                     keyword_sources: Sequence[str] = ("summary", "raw")) -> int:
    """Compute the frozen piece vector of every item piece (history, candidate, keywords, title, neighbour) for each
    keyword source once, in large batches, and save the cache file (before parallel runs, which then only load
    it). Returns the number of cached pieces."""
    from mmsrarec_lib.models.minilm_effnet import load_piece_cache, piece_cache_size, save_piece_cache
    from mmsrarec_lib.recommend.context import load_context
    from mmsrarec_lib.recommend.prompts import dedup_keywords

    run_cfg = run_cfg or EncoderRunConfig()
    cache_file = piece_cache_file(warehouse, dataset)
    if cache_file is not None:
        load_piece_cache(cache_file)
    model, tokenizer = build_backbone(run_cfg.backbone, seed=0)
    per = max(1, run_cfg.prompt.neighbor_keywords // max(1, run_cfg.prompt.n_neighbors))
    for source in keyword_sources:
        ctx = load_context(warehouse, dataset, keyword_source=source, use_neighbors=False)
        b = InputBuilder(tokenizer, ctx, run_cfg.prompt)
        pieces = []
        for i in sorted(ctx.items):
            pieces += [(b.history_piece(i), 0), *b.item(i), *b.keywords_only(i), *b.title(i)]
            text = ", ".join(dedup_keywords(ctx.keywords.get(i, []), per))
            ids = b._ids("neigh", text, lambda t=text: t)[: run_cfg.prompt.neighbor_tokens]
            if ids:
                pieces.append((ids, 1))
        pieces += [((b.cls,), 0), ((b.sep,), 0), ((b.sep,), 1)]
        model.bottom_states(pieces)
        log.info("piece cache: %s keywords, %d pieces (%d cached in all)", source, len(set(pieces)),
                 piece_cache_size())
    if cache_file is not None:
        save_piece_cache(cache_file)
    return piece_cache_size()


def sasrec_dim(warehouse: Warehouse, dataset: str, generator_run: str) -> int:
    meta = json.loads(warehouse.read_bytes(warehouse.uri(dataset, "models", generator_run, "config.json")))
    return int(meta["dim"])


def train_encoder_run(warehouse: Warehouse, *, ctx, sequences: dict[str, list[str]], run_cfg: EncoderRunConfig,
                      tasks: Sequence[str], generator_run: str | None, dataset: str, work: Path,
                      progress: bool = True) -> tuple[RecBackbone, Any, FeatureBank, dict]:
    """Build the backbone, train it on ``sequences`` (resuming from ``work/checkpoints``), save
    ``backbone.safetensors`` + ``tokenizer/`` into ``work``. Returns (model, tokenizer, features, summary)."""
    from safetensors.torch import save_file

    from mmsrarec_lib.models.minilm_effnet import load_piece_cache, save_piece_cache

    model, tokenizer = build_backbone(run_cfg.backbone, seed=run_cfg.train.seed)
    cache_file = piece_cache_file(warehouse, dataset)
    if cache_file is not None:
        log.info("piece cache: %d frozen piece vectors loaded from %s", load_piece_cache(cache_file), cache_file)
    features = features_for(warehouse, dataset, backbone=run_cfg.backbone, image_encoder=run_cfg.image_encoder,
                            generator_run=generator_run)
    builder = InputBuilder(tokenizer, ctx, run_cfg.prompt)
    points = training_points(sequences, per_user=run_cfg.train.positions_per_user, known=set(ctx.items))
    log.info("%s: %d training positions of %d users, tasks %s, %d image features", NAME, len(points),
             len(sequences), ",".join(tasks), len(features.image))
    interacted = {u: set(s) for u, s in sequences.items()}
    hard_pool = None
    if run_cfg.train.n_hard and generator_run:
        import time

        from mmsrarec_lib.models.baselines import load_baseline

        t0 = time.perf_counter()
        gen = load_baseline(warehouse, dataset, generator_run).scorer
        hard_pool = generator_top_m(gen, points, interacted, top_m=run_cfg.train.hard_negative_pool,
                                    allowed=set(ctx.items))
        log.info("hard negatives: %d of %d per position from %s's top-%d (%.1f s)", run_cfg.train.n_hard,
                 run_cfg.train.negatives, generator_run, run_cfg.train.hard_negative_pool, time.perf_counter() - t0)
    summary = train_backbone(backbone=model, builder=builder, features=features, points=points,
                             interacted=interacted, catalogue=sorted(ctx.items),
                             tasks=tasks, settings=run_cfg.train, output_dir=str(work / "checkpoints"),
                             progress=progress, hard_pool=hard_pool)
    model.eval()
    if cache_file is not None:
        save_piece_cache(cache_file)
    work.mkdir(parents=True, exist_ok=True)
    save_file(model.trainable_state(), str(work / "backbone.safetensors"))
    tokenizer.save_pretrained(work / "tokenizer")
    return model, tokenizer, features, summary


def load_encoder_run(warehouse: Warehouse, dataset: str, run_id: str, meta: dict) -> tuple[RecBackbone, EncoderAssets]:
    """(backbone in eval mode, assets) of a saved ``minilm-effnet`` run."""
    from safetensors.torch import load_file

    from mmsrarec_lib.recommend.run_config import run_uri

    base_uri = run_uri(warehouse, dataset, run_id)
    local = warehouse.local_path(base_uri)
    folder = local if local is not None else warehouse.download_dir(base_uri, tempfile.mkdtemp(prefix="mmsrarec-"))
    run_cfg = EncoderRunConfig.from_dict(meta["encoder"])
    model, tokenizer = build_backbone(run_cfg.backbone, seed=run_cfg.train.seed)
    state = load_file(str(Path(folder) / "backbone.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    if unexpected or trained & set(missing):
        raise ValueError(f"run {run_id!r}: backbone.safetensors does not match its config "
                         f"(missing {sorted(trained & set(missing))[:5]}, unexpected {unexpected[:5]})")
    model.eval()
    from mmsrarec_lib.models.minilm_effnet import load_piece_cache

    cache_file = piece_cache_file(warehouse, dataset)
    if cache_file is not None:  # the frozen piece vectors computed by training (same text model, same layers)
        log.info("piece cache: %d frozen piece vectors loaded", load_piece_cache(cache_file))
    features = features_for(warehouse, dataset, backbone=run_cfg.backbone, image_encoder=run_cfg.image_encoder,
                            generator_run=meta.get("generator_run"))
    return model, EncoderAssets(tokenizer, features, run_cfg.prompt, meta)


def make_reranker(model: RecBackbone, assets: EncoderAssets, *, context, generator=None,
                  user_of: Callable[[Sequence[str]], str | None] | None = None, fusion_weight: float = 0.0,
                  progress: bool = True):
    from mmsrarec_lib.recommend.encoder_scorer import EncoderReranker

    return EncoderReranker(model=model, builder=InputBuilder(assets.tokenizer, context, assets.prompt),
                           features=assets.features, generator=generator, user_of=user_of,
                           fusion_weight=fusion_weight, progress=progress)


def choose_fusion_weight(warehouse: Warehouse, dataset: str, *, reranker, generator, protocol: str,
                         top_m: int = 50, max_users: int = 2000, grid: Sequence[float] = FUSION_GRID,
                         default: float = 1.0) -> dict:
    """Pick the fusion weight on validation users only, once for every evaluation protocol the training protocol
    serves (see the module docstring); returns the training protocol's record {"weight", "metric", "n_users",
    "grid": {w: value}} plus ``by_protocol``: {protocol: record} (full: "full" and "sampled"). A protocol without
    validation users (a toy dataset) gets ``default``."""
    from mmsrarec_lib.eval.protocols import TRAINING_PROTOCOL

    served = [protocol, *(p for p, t in TRAINING_PROTOCOL.items() if t == protocol and p != protocol)]
    records = {p: _choose_for(warehouse, dataset, reranker=reranker, generator=generator, protocol=p, top_m=top_m,
                              max_users=max_users, grid=grid, default=default) for p in served}
    return {**records[protocol], "by_protocol": records}


def _choose_for(warehouse: Warehouse, dataset: str, *, reranker, generator, protocol: str, top_m: int,
                max_users: int, grid: Sequence[float], default: float) -> dict:
    from mmsrarec_lib.candidates.union import DEFAULT_CONTENT_M, CandidateRerank, candidate_source
    from mmsrarec_lib.eval import metrics
    from mmsrarec_lib.eval.protocols import (
        CATALOGUE_PROTOCOLS,
        FullCases,
        PaperCases,
        load_paper_cases,
        load_ranking_cases,
        load_sampled_cases,
        rank_full,
    )
    from mmsrarec_lib.recommend.encoder_scorer import FusedView

    loaders = {"paper": load_paper_cases, "sampled": load_sampled_cases}
    try:
        cases = (load_ranking_cases(warehouse, dataset, protocol, split="valid") if protocol in CATALOGUE_PROTOCOLS
                 else loaders[protocol](warehouse, dataset, split="valid"))
    except ValueError as exc:  # e.g. a toy dataset without validation users: nothing to choose on
        log.warning("no %s validation users to choose the fusion weight on (%s): w = %s", protocol, exc, default)
        return {"weight": default, "metric": None, "n_users": 0, "split": "valid", "grid": {},
                "chosen_on": "default: no validation users"}
    keep = np.random.default_rng(0).permutation(len(cases.user_ids))[:max_users] if max_users else None
    values: dict[float, float] = {}
    if protocol in CATALOGUE_PROTOCOLS:
        if keep is not None:
            cases = FullCases([cases.user_ids[i] for i in keep], [cases.histories[i] for i in keep],
                              [cases.targets[i] for i in keep], cases.catalogue)
        # cold: the held-out items only reach the list through the content index
        source = candidate_source(warehouse, dataset, generator, top_m=top_m,
                                  content_m=DEFAULT_CONTENT_M if protocol == "cold" else 0)
        metric = "ndcg@10"
        for w in grid:
            values[w] = metrics.ndcg_at_k(rank_full(CandidateRerank(source, FusedView(reranker, w)), cases), 10)
    else:  # paper / sampled: each validation user's target among 20 negatives
        if keep is not None:
            cases = PaperCases([cases.user_ids[i] for i in keep], [cases.histories[i] for i in keep],
                               [cases.candidates[i] for i in keep], cases.positive[keep])
        metric = "ndcg@5"
        for w in grid:
            scores = FusedView(reranker, w).score_candidates(cases.histories, cases.candidates)
            values[w] = metrics.ndcg_at_k(metrics.candidate_ranks(scores, cases.positive), 5)
    best = max(values.values())
    weight = min(w for w, v in values.items() if v == best)  # the smallest weight among ties
    log.info("%s fusion weight on %d validation users (%s): %s -> w = %s", protocol, len(cases.user_ids), metric,
             {w: round(v, 4) for w, v in values.items()}, weight)
    return {"weight": weight, "metric": metric, "n_users": len(cases.user_ids), "split": "valid",
            "grid": {str(w): v for w, v in values.items()}}
