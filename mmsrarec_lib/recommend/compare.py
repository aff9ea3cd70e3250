"""The one-run comparison behind ``mmsrarec compare`` (and ``make eval``): Pop, SASRec, MMSRARec and its three
ablations, N seeds, both protocols, all into ``evaluation_runs`` under one run id, then a mean ± std table.

Per (seed, protocol): Pop and SASRec are fitted on the protocol's training data; that SASRec is also the candidate
generator / fusion signal of every MMSRARec variant of the same seed and protocol, and each variant is fine-tuned
on the same protocol's training data. Rows already stored for (run_id, model, protocol, seed) are skipped, so a
crashed comparison rerun with the same ``--run-id`` continues where it stopped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import pyarrow.dataset as pads

from mmsrarec_lib.recommend.finetune import TrainSettings
from mmsrarec_lib.recommend.pipeline import VARIANTS, RecTrainConfig
from mmsrarec_lib.recommend.scorer import ScoringConfig
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)
BASELINES = ("pop", "sasrec")
ALL_MODELS = (*BASELINES, *VARIANTS)


@dataclass(frozen=True)
class CompareConfig:
    dataset: str
    run_id: str
    seeds: tuple[int, ...] = (0, 1, 2)
    protocols: tuple[str, ...] = ("paper", "full")
    models: tuple[str, ...] = ALL_MODELS
    train: TrainSettings = field(default_factory=TrainSettings)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    sasrec: dict = field(default_factory=dict)
    base_model: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        bad = [m for m in self.models if m not in ALL_MODELS]
        if bad:
            raise ValueError(f"unknown model(s) {bad}: choose from {', '.join(ALL_MODELS)}")
        bad_p = [p for p in self.protocols if p not in ("paper", "full")]
        if bad_p or not self.protocols:
            raise ValueError(f"protocols must be paper and/or full, got {self.protocols}")


def _done(warehouse: Warehouse, dataset: str, run_id: str, model: str, protocol: str, seed: int) -> bool:
    if not warehouse.has_table(dataset, "evaluation_runs"):
        return False
    f = ((pads.field("run_id") == run_id) & (pads.field("model") == model) & (pads.field("protocol") == protocol)
         & (pads.field("seed") == seed))
    return warehouse.dataset(dataset, "evaluation_runs").count_rows(filter=f) > 0


def run_compare(warehouse: Warehouse, *, config: CompareConfig) -> list[dict]:
    """Train and evaluate everything; returns one record per (seed, protocol, model) evaluated now."""
    from mmsrarec_lib.eval.registry import evaluate_scorer
    from mmsrarec_lib.models.baselines import fit_baseline
    from mmsrarec_lib.recommend.pipeline import train_recommender
    from mmsrarec_lib.recommend.scorer import _resolved, build_scorer

    ds, out = config.dataset, []
    for seed in config.seeds:
        for protocol in config.protocols:
            todo = [m for m in config.models if not _done(warehouse, ds, config.run_id, m, protocol, seed)]
            if not todo:
                continue
            generator = None
            for model in todo:
                t0 = time.perf_counter()
                if model in BASELINES or generator is None:
                    kind = model if model in BASELINES else "sasrec"
                    trained = fit_baseline(warehouse, ds, kind=kind, protocol=protocol, seed=seed,
                                           sasrec_overrides=config.sasrec, progress=config.progress)
                    if kind == "sasrec":
                        generator = trained
                    if model in BASELINES:
                        values = evaluate_scorer(warehouse, ds, trained.scorer, protocol, model=model,
                                                 model_version=trained.run_id, seed=seed,
                                                 config={"compare": config.run_id}, run_id=config.run_id)
                        out.append({"seed": seed, "protocol": protocol, "model": model, **values,
                                    "seconds": time.perf_counter() - t0})
                        continue
                train = replace(config.train, seed=seed)
                cfg = RecTrainConfig.for_variant(model, dataset=ds, protocol=protocol, base_model=config.base_model,
                                                 generator_run=generator.run_id, train=train,
                                                 fusion_weight=config.scoring.fusion_weight)
                meta = train_recommender(warehouse, config=cfg, progress=config.progress)
                scorer, meta, scoring = build_scorer(warehouse, ds, meta["run_id"], scoring=config.scoring,
                                                     progress=config.progress)
                resolved = _resolved(scorer, meta, scoring, seeded=True)
                values = evaluate_scorer(warehouse, ds, scorer, protocol, model=model, model_version=meta["run_id"],
                                         seed=seed, config={**resolved.config, "compare": config.run_id},
                                         run_id=config.run_id)
                out.append({"seed": seed, "protocol": protocol, "model": model, **values,
                            "seconds": time.perf_counter() - t0})
                log.info("compare %s seed %d %s: %s", protocol, seed, model, values)
    return out


def summary_table(warehouse: Warehouse, dataset: str, run_id: str) -> str:
    """Markdown: one row per (protocol, model), metrics x100 as mean ± std over the run's seeds."""
    from mmsrarec_lib.eval.protocols import PROTOCOL_METRICS, metric_key
    from mmsrarec_lib.eval.report import summarize

    rows = warehouse.read_table(dataset, "evaluation_runs", filter=pads.field("run_id") == run_id).to_pandas()
    if rows.empty:
        raise ValueError(f"no evaluation_runs rows for run {run_id!r}")
    summ = summarize(rows)
    lines = []
    for protocol, metrics in PROTOCOL_METRICS.items():
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
