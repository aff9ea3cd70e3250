"""``mmsrarec maintain``: Delta upkeep of a dataset (compact, z-order recommendations, vacuum, prune staging).

Flags are generated from ``MaintenanceConfig`` (``--retention-days``, ``--allow-short-retention``,
``--vacuum/--no-vacuum``); ``--table`` (repeatable) and ``--target-size-mb`` are spelled job-side."""

from __future__ import annotations

import argparse
import json

from jobs._common import add_warehouse_args, warehouse_from_args
from jobs._dataclass_args import add_dataclass_arguments, dataclass_from_args

COMMAND = "maintain"
HELP = ("compact small files (delta-rs optimize), z-order recommendations by user_id, vacuum files older than the"
        " time-travel retention (default 7 days), prune old staged shards; prints files before/after per table")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mmsrarec_lib.maintenance import MaintenanceConfig

    add_warehouse_args(parser)
    parser.add_argument("--table", action="append", default=None, help="only this table (repeatable; default all)")
    parser.add_argument("--target-size-mb", type=int, default=None, help="compacted file size (default delta-rs')")
    add_dataclass_arguments(parser, MaintenanceConfig, skip=("dataset", "tables", "target_size", "zorder"))


def main(args: argparse.Namespace) -> int:
    from mmsrarec_lib.maintenance import MaintenanceConfig, maintain

    config = dataclass_from_args(MaintenanceConfig, args, dataset=args.dataset, tables=tuple(args.table or ()),
                                 target_size=args.target_size_mb * 2**20 if args.target_size_mb else None)
    report = maintain(warehouse_from_args(args), config=config)
    for r in report["tables"]:
        print(f"{r['table']:<26} active files {r['before']['active_files']:>5} -> {r['after']['active_files']:<5}"
              f" files on storage {r['before']['storage_files']:>5} -> {r['after']['storage_files']:<5}"
              f" ({r.get('vacuumed_files', 0)} vacuumed, {r['seconds']:.1f} s)", flush=True)
    print(json.dumps(report, default=str))
    return 0
