"""``mmsrarec recommend``: catalogue top-K per user (SASRec top-M ∪ content top-M' -> MLLM rerank) into
``recommendations``.

Without ``--shard`` it stages, checks (quality gate) and publishes the run_date partition in one go. With
``--shard I/N`` it only stages shard I of the selection; ``mmsrarec publish-recommendations --shards N`` publishes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json

from jobs._common import add_warehouse_args, warehouse_from_args
from jobs._dataclass_args import add_dataclass_arguments, dataclass_from_args

COMMAND = "recommend"
HELP = ("write each user's top-K (SASRec top-M ∪ content top-M', reranked by the fine-tuned MLLM, with explanations)"
        " for a run date; --shard I/N stages one slice for publish-recommendations")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mmsrarec_lib.recommend.batch import RecommendConfig
    from mmsrarec_lib.recommend.topk import TopKConfig

    add_warehouse_args(parser)
    parser.add_argument("--model-run", default=None, help="mmsrarec model run id (default: the latest complete run)")
    add_dataclass_arguments(parser, TopKConfig)
    add_dataclass_arguments(parser, RecommendConfig, skip=("dataset", "model_run", "run_date", "topk", "shard"))
    parser.add_argument("--run-date", default=None, help="YYYY-MM-DD partition to (re)write (default: today, UTC)")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="stage only shard I (0-based) of N (stable hash of user_id), for publish-recommendations")
    parser.add_argument("--no-progress", action="store_true")


def run_date_of(text: str | None) -> dt.date:
    try:
        return dt.date.fromisoformat(text) if text else dt.datetime.now(dt.UTC).date()
    except ValueError as exc:
        raise ValueError(f"--run-date must be YYYY-MM-DD, got {text!r}") from exc


def main(args: argparse.Namespace) -> int:
    from mmsrarec_lib.runtime_env import configure_threads

    configure_threads(default=1, cpu_only=True)  # the offline defaults are set once by jobs/cli.py
    from mmsrarec_lib.recommend.batch import RecommendConfig, Shard, recommend, stage_recommendations
    from mmsrarec_lib.recommend.run_config import latest_run
    from mmsrarec_lib.recommend.topk import TopKConfig

    wh = warehouse_from_args(args)
    run = args.model_run or latest_run(wh, args.dataset)
    cfg = dataclass_from_args(RecommendConfig, args, dataset=args.dataset, model_run=run,
                              run_date=run_date_of(args.run_date), topk=dataclass_from_args(TopKConfig, args),
                              shard=Shard.parse(args.shard) if args.shard else Shard())
    if args.shard:
        out = stage_recommendations(wh, config=cfg, progress=not args.no_progress)
    else:
        out = recommend(wh, config=cfg, progress=not args.no_progress)
    print(json.dumps({"model_run": run, "run_date": cfg.run_date.isoformat(), **out}, default=str))
    return 0
