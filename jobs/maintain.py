"""``mmsrarec maintain``: Delta upkeep of a dataset (compact, z-order recommendations, vacuum, prune staging)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from jobs._common import add_warehouse_args, warehouse_from_args

COMMAND = "maintain"
HELP = ("compact small files (delta-rs optimize), z-order recommendations by user_id, vacuum files older than the"
        " time-travel retention (default 7 days), prune old staged shards; prints files before/after per table")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mmsrarec_lib.maintenance import RETENTION_DAYS

    add_warehouse_args(parser)
    parser.add_argument("--table", action="append", default=None, help="only this table (repeatable; default all)")
    parser.add_argument("--retention-days", type=float, default=RETENTION_DAYS,
                        help=f"vacuum keeps every version newer than this (default {RETENTION_DAYS})")
    parser.add_argument("--allow-short-retention", action="store_true",
                        help="allow --retention-days below the promised time travel (tests, scratch warehouses)")
    parser.add_argument("--target-size-mb", type=int, default=None, help="compacted file size (default delta-rs')")
    parser.add_argument("--no-vacuum", action="store_true", help="compact only; delete nothing")


@dataclass(frozen=True)
class MaintainJobConfig:
    dataset: str
    tables: tuple[str, ...]
    retention_days: float
    allow_short_retention: bool
    target_size: int | None
    vacuum: bool

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> MaintainJobConfig:
        return cls(dataset=a.dataset, tables=tuple(a.table or ()), retention_days=a.retention_days,
                   allow_short_retention=a.allow_short_retention,
                   target_size=a.target_size_mb * 2**20 if a.target_size_mb else None, vacuum=not a.no_vacuum)


def main(args: argparse.Namespace) -> int:
    from mmsrarec_lib.maintenance import MaintenanceConfig, maintain

    cfg = MaintainJobConfig.from_args(args)
    report = maintain(warehouse_from_args(args), config=MaintenanceConfig(
        dataset=cfg.dataset, tables=cfg.tables, retention_days=cfg.retention_days,
        allow_short_retention=cfg.allow_short_retention, target_size=cfg.target_size, vacuum=cfg.vacuum))
    for r in report["tables"]:
        print(f"{r['table']:<26} active files {r['before']['active_files']:>5} -> {r['after']['active_files']:<5}"
              f" files on storage {r['before']['storage_files']:>5} -> {r['after']['storage_files']:<5}"
              f" ({r.get('vacuumed_files', 0)} vacuumed, {r['seconds']:.1f} s)", flush=True)
    print(json.dumps(report, default=str))
    return 0
