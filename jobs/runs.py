"""``mmsrarec runs``: the training runs of a dataset from the ``model_runs`` table, newest first.

Analysts get the same rows (and every column) with ``mmsrarec sql`` (``SELECT * FROM model_runs``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field

from jobs._common import add_warehouse_args, warehouse_from_args
from jobs._dataclass_args import add_dataclass_arguments, dataclass_from_args

COMMAND = "runs"
HELP = "list the training runs of a dataset (model_runs: kind, variant, status, duration, key metrics)"
KEY_METRICS = 3  # metrics shown per run in the table (all of them with --json), these first when present
HEADLINE = ("valid_ndcg@10", "after.reward", "fusion.weight", "training.train_loss", "training.train_seconds",
            "rows", "users_indexed")


@dataclass(frozen=True)
class RunsArgs:
    """The command's settings; its flags are generated from these fields."""

    dataset: str
    kind: str | None = field(default=None, metadata={"help": (
        "only runs of this kind: sasrec | pop | summarizer | collab_index | mmsrarec")})
    status: str | None = field(default=None, metadata={"help": "only runs in this state: running | complete | failed"})
    limit: int = field(default=50, metadata={"help": "newest N runs (0: all)"})
    json: bool = field(default=False, metadata={"help": "one JSON object per run instead of a table"})
    backfill: bool = field(default=False, metadata={"help": (
        "first add runs found in <dataset>/models/ folders that the table lacks")})

    def __post_init__(self) -> None:
        if self.limit < 0:
            raise ValueError(f"--limit must be >= 0, got {self.limit}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_warehouse_args(parser)
    add_dataclass_arguments(parser, RunsArgs, skip=("dataset",))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def _time(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"  # UTC


def _metrics(metrics: dict[str, float]) -> str:
    order = [k for k in HEADLINE if k in metrics] + sorted(k for k in metrics if k not in HEADLINE)
    shown = [(k, metrics[k]) for k in order[:KEY_METRICS]]
    more = f" (+{len(metrics) - KEY_METRICS})" if len(metrics) > KEY_METRICS else ""
    return " ".join(f"{k}={v:.4g}" for k, v in shown) + more or "-"


def render_table(runs: list) -> str:
    """The runs as an aligned text table (one line per run; times in UTC; backfilled runs have no start)."""
    header = ("run_id", "kind", "variant", "protocol", "status", "started", "ended", "duration", "metrics")
    rows = [header] + [
        (r.run_id, r.kind, r.variant or "-", r.protocol or "-", r.status, _time(r.started_at), _time(r.ended_at),
         _duration(r.duration_s), _metrics(dict(r.metrics)))
        for r in runs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(row, widths)), row[-1]]).rstrip() for row in rows)


def main(args: argparse.Namespace) -> int:
    from mmsrarec_lib.model_runs import backfill_model_runs, list_model_runs

    cfg = dataclass_from_args(RunsArgs, args)
    warehouse = warehouse_from_args(args)
    if cfg.backfill:
        found = backfill_model_runs(warehouse, cfg.dataset)
        print(f"backfill: {len(found)} run folder(s) under {warehouse.uri(cfg.dataset, 'models')}")
    runs = list_model_runs(warehouse, dataset=cfg.dataset, kind=cfg.kind, status=cfg.status, limit=cfg.limit or None)
    if cfg.json:
        for r in runs:
            print(json.dumps({**{k: v for k, v in r.to_row().items() if k != "config_json"},
                              "lineage": dict(r.lineage), "metrics": dict(r.metrics),
                              "config": dict(r.config), "duration_s": r.duration_s}, default=str, sort_keys=True))
        return 0
    if not runs:
        print(f"no model runs in {cfg.dataset!r}" + (f" of kind {cfg.kind!r}" if cfg.kind else ""))
        return 0
    print(render_table(runs))
    return 0
