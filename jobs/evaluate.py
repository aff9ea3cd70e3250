"""``mmsrarec evaluate``: score a model under a protocol, N seeds, and append the metrics to ``evaluation_runs``."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jobs._common import add_warehouse_args, warehouse_from_args
from jobs.train_baseline import add_sasrec_arguments, apply_threads, sasrec_overrides

COMMAND = "evaluate"
HELP = "evaluate a model (a name such as pop/sasrec/mmsrarec, or a saved run id) under the paper or full protocol"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_warehouse_args(parser)
    parser.add_argument("--model", required=True, help="registered name (pop, sasrec, mmsrarec...) or a saved run id")
    parser.add_argument("--protocol", required=True, choices=["paper", "full", "sampled"],
                        help="sampled: every user's held-out item vs 20 sampled negatives (full's training data)")
    parser.add_argument("--seeds", type=int, default=1, help="train and evaluate this many seeds (names only)")
    parser.add_argument("--seed", type=int, default=0, help="first seed; seeds are seed, seed+1, ...")
    parser.add_argument("--run-id", default=None,
                        help="evaluation run id (default new); re-running with the same id replaces its rows")
    add_sasrec_arguments(parser)


@dataclass(frozen=True)
class EvaluateConfig:
    warehouse: str | None
    dataset: str
    model: str
    protocol: str
    seeds: int
    seed: int
    run_id: str | None
    sasrec: Mapping[str, Any] = field(default_factory=dict)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {self.seeds}")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EvaluateConfig:
        return cls(warehouse=args.warehouse, dataset=args.dataset, model=args.model, protocol=args.protocol,
                   seeds=args.seeds, seed=args.seed, run_id=args.run_id, sasrec=sasrec_overrides(args),
                   progress=not args.no_progress)


def main(args: argparse.Namespace) -> int:
    from mmsrarec_lib.eval.protocols import PROTOCOL_METRICS, metric_key
    from mmsrarec_lib.eval.registry import ModelRequest, evaluate_scorer, resolve_model
    from mmsrarec_lib.recommend.reranker import register_models
    from mmsrarec_lib.runs import new_run_id

    register_models()  # the stage-3 names and saved runs, beside the built-in pop/sasrec
    cfg = EvaluateConfig.from_args(args)
    apply_threads(args.threads)
    wh = warehouse_from_args(args)
    run_id = cfg.run_id or new_run_id("eval")
    keys = [metric_key(m, k) for m, k in PROTOCOL_METRICS[cfg.protocol]]
    print(f"evaluation run {run_id}: {cfg.model} on {cfg.dataset} ({cfg.protocol})")
    print("\t".join(["seed", "model_version", *keys]))
    for i in range(cfg.seeds):
        request = ModelRequest(warehouse=wh, dataset=cfg.dataset, protocol=cfg.protocol, seed=cfg.seed + i,
                               options={"sasrec": dict(cfg.sasrec)}, progress=cfg.progress)
        resolved = resolve_model(cfg.model, request)
        if not resolved.seeded and cfg.seeds > 1:
            raise ValueError(f"{cfg.model!r} is a saved run (one fixed model); --seeds > 1 needs a model name")
        seed = resolved.seed if resolved.seed is not None else request.seed
        values = evaluate_scorer(wh, cfg.dataset, resolved.scorer, cfg.protocol, model=resolved.model,
                                 model_version=resolved.model_version, seed=seed, config=resolved.config,
                                 run_id=run_id)
        print("\t".join([str(seed), resolved.model_version, *(f"{100 * values[k]:.2f}" for k in keys)]))
    return 0
