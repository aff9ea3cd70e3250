"""``mmsrarec publish-recommendations``: check the N staged shards of a run date and publish them in one commit."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from dataclasses import dataclass

from jobs._common import add_warehouse_args, warehouse_from_args

COMMAND = "publish-recommendations"
HELP = ("check that all N shards staged by `recommend --shard I/N` are there, run the quality gate (sql/quality/)"
        " and replace the run_date partition of recommendations in one commit")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_warehouse_args(parser)
    parser.add_argument("--run-date", required=True, help="YYYY-MM-DD partition to replace")
    parser.add_argument("--shards", type=int, required=True, help="N of the `recommend --shard I/N` runs")


@dataclass(frozen=True)
class PublishJobConfig:
    dataset: str
    run_date: dt.date
    shards: int

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> PublishJobConfig:
        try:
            day = dt.date.fromisoformat(a.run_date)
        except ValueError as exc:
            raise ValueError(f"--run-date must be YYYY-MM-DD, got {a.run_date!r}") from exc
        if a.shards < 1:
            raise ValueError(f"--shards must be >= 1, got {a.shards}")
        return cls(dataset=a.dataset, run_date=day, shards=a.shards)


def main(args: argparse.Namespace) -> int:
    from mmsrarec_lib.recommend.publish import publish_recommendations
    from mmsrarec_lib.storage import set_commit_context

    cfg = PublishJobConfig.from_args(args)
    set_commit_context(run_date=cfg.run_date.isoformat(), shards=cfg.shards)
    out = publish_recommendations(warehouse_from_args(args), cfg.dataset, run_date=cfg.run_date, shards=cfg.shards)
    print(json.dumps(out, default=str))
    return 0
