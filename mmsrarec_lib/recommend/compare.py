"""The one-run comparison behind ``mmsrarec compare`` (and ``make eval``): Pop, SASRec, the content index alone,
MMSRARec (with SASRec's candidates, and with SASRec's ∪ the content index's: ``mmsrarec-union``), the MLLM alone,
the id-token variant and the three ablations, N seeds, protocols paper / full / sampled (and ``cold`` on request),
all into ``evaluation_runs`` (+ per-user ranks) under one run id, then mean ± std and paired intervals against
SASRec.

Per (seed, training protocol): Pop and SASRec are fitted on the protocol's training data; that SASRec is also the
candidate generator / fusion signal of every MMSRARec variant of the same seed and protocol, and each variant is
fine-tuned on the same protocol's training data (``sampled`` reuses the ``full`` models; ``cold`` trains its own,
without any interaction of the held-out items). ``content`` needs no training (the latest content index: text and
image only, no interactions); ``mmsrarec-union`` is the ``mmsrarec`` run with the content index's top-M' added to
the candidates, scored on the catalogue protocols only (on 21 given candidates it is ``mmsrarec`` itself). Rows already
stored for (run_id, model, protocol, seed) are skipped, so a crashed comparison rerun with the same ``--run-id``
continues where it stopped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import pyarrow.dataset as pads

from mmsrarec_lib import tables
from mmsrarec_lib.recommend.encoder_pipeline import EncoderRunConfig
from mmsrarec_lib.recommend.finetune import TrainSettings
from mmsrarec_lib.recommend.fusion import ScoringConfig
from mmsrarec_lib.recommend.run_config import RecTrainConfig
from mmsrarec_lib.recommend.topk import TopKConfig
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)
BASELINES = ("pop", "sasrec")
CONTENT = "content"  # the content index alone (no training)
MLLM_ONLY = "mmsrarec-mllm-only"  # the mmsrarec run of the same seed scored with fusion weight 0
UNION = "mmsrarec-union"  # the mmsrarec run with SASRec's top-M ∪ the content index's top-M' as candidates
ALL_MODELS = ("pop", "sasrec", CONTENT, "mmsrarec", UNION, MLLM_ONLY, "mmsrarec-id-token", "mmsrarec-no-retrieval",
              "mmsrarec-no-summary", "mmsrarec-no-multitask")
DERIVED = (MLLM_ONLY, UNION)  # rows scored from the mmsrarec run, no training of their own
ALL_PROTOCOLS = ("paper", "full", "sampled", "cold")
DEFAULT_PROTOCOLS = ("paper", "full", "sampled")
TRAINING_ORDER = ("paper", "full", "cold")
HEADLINE = {"paper": ("hr@5", "ndcg@5", "auc"), "full": ("hr@10", "ndcg@10", "mrr"),
            "sampled": ("hr@5", "ndcg@5", "auc"), "cold": ("hr@10", "ndcg@10", "mrr")}


@dataclass(frozen=True)
class CompareConfig:
    dataset: str
    run_id: str
    seeds: tuple[int, ...] = (0, 1, 2)
    protocols: tuple[str, ...] = DEFAULT_PROTOCOLS
    models: tuple[str, ...] = ALL_MODELS
    train: TrainSettings = field(default_factory=TrainSettings)  # the decoder path (--base-model)
    encoder: EncoderRunConfig = field(default_factory=EncoderRunConfig)  # the minilm-effnet default
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    sasrec: dict = field(default_factory=dict)
    base_model: str | None = None
    union: TopKConfig = field(default_factory=TopKConfig)  # the mmsrarec-union row: the catalogue top-K's settings
    progress: bool = True

    def __post_init__(self) -> None:
        bad = [m for m in self.models if m not in ALL_MODELS]
        if bad:
            raise ValueError(f"unknown model(s) {bad}: choose from {', '.join(ALL_MODELS)}")
        bad_p = [p for p in self.protocols if p not in ALL_PROTOCOLS]
        if bad_p or not self.protocols:
            raise ValueError(f"protocols must be a subset of {', '.join(ALL_PROTOCOLS)}, got {self.protocols}")


def _done(warehouse: Warehouse, dataset: str, run_id: str, model: str, protocol: str, seed: int) -> bool:
    if not warehouse.has_table(dataset, tables.EVALUATION_RUNS):
        return False
    f = ((pads.field("run_id") == run_id) & (pads.field("model") == model) & (pads.field("protocol") == protocol)
         & (pads.field("seed") == seed))
    return warehouse.dataset(dataset, tables.EVALUATION_RUNS).count_rows(filter=f) > 0


def _units(models: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
    """(what to train, the model names it yields): the mmsrarec run also yields the MLLM-alone and union rows."""
    out = []
    derived = tuple(m for m in DERIVED if m in models)
    for m in models:
        if m in DERIVED:
            continue
        out.append((m, (m, *derived) if m == "mmsrarec" else (m,)))
    if derived and "mmsrarec" not in models:
        out.append(("mmsrarec", derived))
    return out


def _protocols_of(name: str, protos: list[str]) -> list[str]:
    """The union row differs from mmsrarec only where candidates are generated: the catalogue protocols."""
    from mmsrarec_lib.eval.protocols import CATALOGUE_PROTOCOLS

    return [p for p in protos if p in CATALOGUE_PROTOCOLS] if name == UNION else protos


def run_compare(warehouse: Warehouse, *, config: CompareConfig) -> list[dict]:
    """Train and evaluate everything; returns one record per (seed, protocol, model) evaluated now.

    Per seed and training protocol (``paper``; ``full``, whose models are also scored under ``sampled``): SASRec
    (generator and fusion signal of every variant), Pop, then each variant trained and evaluated."""
    from mmsrarec_lib.eval.protocols import TRAINING_PROTOCOL
    from mmsrarec_lib.models.baselines import fit_baseline

    ds, out = config.dataset, []
    if config.base_model is None and any(m not in BASELINES for m in config.models):
        from mmsrarec_lib.recommend.encoder_pipeline import warm_piece_cache

        warm_piece_cache(warehouse, ds, run_cfg=config.encoder,
                         keyword_sources=("summary", "raw") if "mmsrarec-no-summary" in config.models else ("summary",))
    core = {"pop", "sasrec", CONTENT, "mmsrarec", *DERIVED}
    units = _units(config.models)
    phases = [[u for u in units if u[0] in core], [u for u in units if u[0] not in core]]
    generators: dict[tuple[int, str], object] = {}
    for seed in config.seeds:
        for units in phases:  # the headline rows of both protocols first, then the variants and ablations
            for train_proto in TRAINING_ORDER:
                protos = [p for p in config.protocols if TRAINING_PROTOCOL[p] == train_proto]
                todo = [(unit, names) for unit, names in units
                        if not all(_done(warehouse, ds, config.run_id, n, p, seed)
                                   for n in names for p in _protocols_of(n, protos))]
                if not protos or not todo:
                    continue
                if (seed, train_proto) not in generators:
                    generators[(seed, train_proto)] = fit_baseline(
                        warehouse, ds, kind="sasrec", protocol=train_proto, seed=seed,
                        sasrec_overrides=config.sasrec, progress=config.progress)
                out += _run_units(warehouse, config, todo, seed=seed, train_proto=train_proto, protos=protos,
                                  generator=generators[(seed, train_proto)])
    return out


def _run_units(warehouse: Warehouse, config: CompareConfig, todo, *, seed: int, train_proto: str, protos: list[str],
               generator) -> list[dict]:
    """Train (or fit) and evaluate each unit for one seed and training protocol."""
    from mmsrarec_lib.eval.registry import evaluate_scorer
    from mmsrarec_lib.models.baselines import fit_baseline
    from mmsrarec_lib.recommend.reranker import build_scorer, resolved_model
    from mmsrarec_lib.recommend.training import train_recommender

    ds, out = config.dataset, []
    for unit, names in todo:
        t0 = time.perf_counter()
        if unit == CONTENT:
            from mmsrarec_lib.candidates.store import latest_content_version, load_content_index
            from mmsrarec_lib.candidates.union import ContentScorer

            version = latest_content_version(warehouse, ds)
            if version is None:
                raise ValueError(f"model {CONTENT!r} needs a content index: run `mmsrarec index-content --dataset "
                                 f"{ds}` first")
            content = ContentScorer(load_content_index(warehouse, ds, version))  # once for every protocol
            for p in protos:
                values = evaluate_scorer(warehouse, ds, content, p,
                                         model=CONTENT, model_version=version, seed=seed,
                                         config={"compare": config.run_id}, run_id=config.run_id)
                out.append({"seed": seed, "protocol": p, "model": CONTENT, **values,
                            "seconds": time.perf_counter() - t0})
            continue
        if unit in BASELINES:
            trained = generator if unit == "sasrec" else fit_baseline(
                warehouse, ds, kind=unit, protocol=train_proto, seed=seed, progress=config.progress)
            for p in protos:
                values = evaluate_scorer(warehouse, ds, trained.scorer, p, model=unit, model_version=trained.run_id,
                                         seed=seed, config={"compare": config.run_id}, run_id=config.run_id)
                out.append({"seed": seed, "protocol": p, "model": unit, **values, "seconds": time.perf_counter() - t0})
            continue
        cfg = RecTrainConfig.for_variant(unit, dataset=ds, protocol=train_proto, base_model=config.base_model,
                                         generator_run=generator.run_id, train=replace(config.train, seed=seed))
        if config.scoring.fusion_weight is not None:
            cfg = replace(cfg, fusion_weight=config.scoring.fusion_weight, choose_fusion=False)
        meta = train_recommender(warehouse, config=cfg, encoder=config.encoder, progress=config.progress)
        scorer, meta, scoring = build_scorer(warehouse, ds, meta["run_id"], scoring=config.scoring,
                                             progress=config.progress)
        resolved = resolved_model(scorer, meta, scoring, seeded=True)
        for name in names:
            for p in _protocols_of(name, protos):
                s, extra = _view(warehouse, config, name, p, scorer=scorer, meta=meta, scoring=scoring)
                values = evaluate_scorer(warehouse, ds, s, p, model=name, model_version=meta["run_id"], seed=seed,
                                         config={**resolved.config, "compare": config.run_id, **extra},
                                         run_id=config.run_id)
                out.append({"seed": seed, "protocol": p, "model": name, **values,
                            "seconds": time.perf_counter() - t0})
                log.info("compare %s seed %d %s: %s", p, seed, name, values)
        log.info("compare seed %d %s %s: %.1f s (training %.1f s)", seed, train_proto, unit,
                 time.perf_counter() - t0, meta.get("training", {}).get("train_seconds") or 0.0)
    return out


def _view(warehouse: Warehouse, config: CompareConfig, name: str, protocol: str, *, scorer, meta: dict,
          scoring: ScoringConfig) -> tuple[object, dict]:
    """The scorer row ``name`` is evaluated with under ``protocol`` (the trained run's scorer seen with the fusion
    weight that row and protocol use: 0 for the MLLM alone, else the weight the run chose for that protocol; the
    union: more candidates) and the config fields that say so."""
    from mmsrarec_lib.candidates.union import CandidateRerank, candidate_source
    from mmsrarec_lib.recommend.fusion import fusion_weight_for
    from mmsrarec_lib.recommend.reranker import build_scorer, with_fusion_weight

    if name == UNION:  # the same reranker (its memoised p reused), more candidates
        source = candidate_source(warehouse, config.dataset, scorer.retriever, top_m=scorer.top_m,
                                  content_m=config.union.content_m, content_pool=config.union.content_pool)
        return (CandidateRerank(source, scorer.reranker, fresh_slots=config.union.fresh_slots, k=10),
                {"content_m": config.union.content_m, "content_pool": config.union.content_pool,
                 "fresh_slots": config.union.fresh_slots})
    w = 0.0 if name == MLLM_ONLY else (config.scoring.fusion_weight if config.scoring.fusion_weight is not None
                                       else fusion_weight_for(meta, protocol))
    if w == scoring.fusion_weight:
        return scorer, {"fusion_weight": w}
    view = with_fusion_weight(scorer, w) or build_scorer(warehouse, config.dataset, meta["run_id"],
                                                         scoring=replace(scoring, fusion_weight=w),
                                                         progress=config.progress)[0]
    return view, {"fusion_weight": w}


def intervals_table(warehouse: Warehouse, dataset: str, run_id: str, *, models: tuple[str, ...] = ALL_MODELS,
                    protocols: tuple[str, ...] = ALL_PROTOCOLS, seeds: tuple[int, ...] = (0, 1, 2),
                    baseline: str = "sasrec") -> str:
    """Markdown: paired (model - baseline) x100 with the 95% bootstrap interval over users (seeds pooled)."""
    from mmsrarec_lib.eval.paired import paired_interval

    lines = []
    for protocol in protocols:
        rows = []
        for model in models:
            if model == baseline:
                continue
            cells = []
            for metric in HEADLINE[protocol]:
                iv = paired_interval(warehouse, dataset, run_id=run_id, protocol=protocol, model=model,
                                     baseline=baseline, metric=metric, seeds=seeds)
                cells.append("-" if iv is None else
                             f"{100 * iv.mean_diff:+.2f} [{100 * iv.low:+.2f}, {100 * iv.high:+.2f}]")
            if any(c != "-" for c in cells):
                rows.append(f"| {model} | " + " | ".join(cells) + " |")
        if rows:
            lines += [f"\n{protocol}: model - {baseline}, x100, paired bootstrap 95% interval over users "
                      f"(seeds pooled)", "| model | " + " | ".join(HEADLINE[protocol]) + " |",
                      "|---" * (len(HEADLINE[protocol]) + 1) + "|", *rows]
    return "\n".join(lines)


def summary_table(warehouse: Warehouse, dataset: str, run_id: str) -> str:
    """Markdown: one row per (protocol, model), metrics x100 as mean ± std over the run's seeds."""
    from mmsrarec_lib.eval.protocols import PROTOCOL_METRICS, metric_key
    from mmsrarec_lib.eval.report import summarize

    rows = warehouse.read_table(dataset, tables.EVALUATION_RUNS, filter=pads.field("run_id") == run_id).to_pandas()
    if rows.empty:
        raise ValueError(f"no evaluation_runs rows for run {run_id!r}")
    summ = summarize(rows)
    lines = []
    for protocol, metrics in PROTOCOL_METRICS.items():  # paper, full, sampled
        part = summ[summ.protocol == protocol]
        if part.empty:
            continue
        keys = [metric_key(m, k) for m, k in metrics]
        lines += [f"\n{protocol} protocol ({int(part.n_users.max())} users, seeds: {int(part.n_seeds.max())})",
                  "| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        order = [m for m in ALL_MODELS if m in set(part.model)]
        for model in order:
            cells = []
            for k in keys:
                r = part[(part.model == model) & (part.metric == k)]
                cells.append(f"{100 * r['mean'].iloc[0]:.2f} ± {100 * r['std'].iloc[0]:.2f}" if len(r) else "-")
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
