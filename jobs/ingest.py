"""``mmsrarec ingest``: items + interactions files (or a built-in source) -> Delta tables of one dataset.

Settings come from ``IngestConfig`` and ``SplitConfig`` (flags generated from them); inputs and their encoding and
timestamp bounds are spelled here."""

from __future__ import annotations

import argparse
import json

from jobs._common import add_warehouse_args, warehouse_from_args
from jobs._dataclass_args import add_dataclass_arguments, dataclass_from_args

COMMAND = "ingest"
HELP = "ingest items (with images) and interactions into Delta tables, then build sequences and splits"
SOURCES = ("movielens-100k",)


def check_args(args: argparse.Namespace) -> str:
    """Rules between flags (which inputs go together, ranges); returns the dataset name."""
    if args.source:
        if args.items or args.interactions:
            raise ValueError("give either --source or --items/--interactions, not both")
    elif not args.interactions or not (args.items or args.mode == "append"):
        raise ValueError("--items and --interactions are both required (or use --source movielens-100k); "
                         "--mode append takes --interactions alone")
    if args.data_dir and not args.source:
        raise ValueError("--data-dir only applies with --source")
    dataset = args.dataset or args.source
    if not dataset:
        raise ValueError("--dataset is required with --items/--interactions")
    if args.max_image_side < 1:
        raise ValueError(f"--max-image-side must be >= 1, got {args.max_image_side}")
    if not 0 < args.image_deadline_s <= 3600:
        raise ValueError(f"--image-deadline-s must be in (0, 3600], got {args.image_deadline_s}")
    if args.image_max_bytes < 1:
        raise ValueError(f"--image-max-bytes must be >= 1, got {args.image_max_bytes}")
    if args.lock_wait_s < 0:
        raise ValueError(f"--lock-wait-s must be >= 0, got {args.lock_wait_s}")
    return dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mmsrarec_lib.ingest.run import IngestConfig
    from mmsrarec_lib.ingest.splits import SplitConfig

    add_warehouse_args(parser, dataset_required=False)
    parser.add_argument("--items", help="items file (.csv, .tsv, .jsonl or .parquet)")
    parser.add_argument("--interactions", help="interactions file (.csv, .tsv, .jsonl or .parquet)")
    parser.add_argument("--source", choices=SOURCES, help="a built-in source instead of --items/--interactions")
    parser.add_argument("--data-dir", help="folder of the built-in source (default $MMSRAREC_DATA_DIR, else "
                                           "<repo>/../shared/data/movielens-100k, else the recbole wheel)")
    parser.add_argument("--spark-master", help="Spark master (default $SPARK_MASTER, else local[*])")
    parser.add_argument("--encoding", default="utf-8-sig",
                        help="text encoding of CSV/TSV/JSONL inputs (default UTF-8, BOM allowed; e.g. latin-1, "
                             "cp1252); rows with bytes invalid in it are quarantined as bad_encoding")
    parser.add_argument("--min-timestamp", default=None,
                        help="earliest valid interaction time, ISO-8601 (default 1970-01-01); earlier rows are "
                             "quarantined as timestamp_out_of_range")
    parser.add_argument("--max-timestamp", default=None,
                        help="latest valid interaction time, ISO-8601 (default: 10 years after the run)")
    add_dataclass_arguments(parser, IngestConfig, skip=("dataset", "timestamps", "splits"))
    add_dataclass_arguments(parser.add_argument_group("splits (SplitConfig)"), SplitConfig, skip=("ratios",))


def main(args: argparse.Namespace) -> int:
    dataset = check_args(args)
    from mmsrarec_lib.ingest.interactions import EPOCH, TimestampRange
    from mmsrarec_lib.ingest.run import IngestConfig, run_ingest
    from mmsrarec_lib.ingest.splits import SplitConfig
    from mmsrarec_lib.locks import LockTimeout
    from mmsrarec_lib.sql.tables import parse_timestamp

    if args.source:
        from mmsrarec_lib.ingest.movielens import load_movielens

        items, interactions = load_movielens(data_dir=args.data_dir)
    else:
        from mmsrarec_lib.ingest.sources import read_source

        items = read_source(args.items, encoding=args.encoding) if args.items else None
        interactions = read_source(args.interactions, encoding=args.encoding)

    def bound(flag: str, text: str | None):
        try:
            return parse_timestamp(text) if text else None
        except ValueError:
            raise ValueError(f"{flag} {text!r} is not an ISO-8601 date or datetime (e.g. 1995-01-01)") from None

    timestamps = TimestampRange(earliest=bound("--min-timestamp", args.min_timestamp) or EPOCH,
                                latest=bound("--max-timestamp", args.max_timestamp))
    config = dataclass_from_args(IngestConfig, args, dataset=dataset, timestamps=timestamps,
                                 splits=dataclass_from_args(SplitConfig, args))
    warehouse = warehouse_from_args(args)
    try:
        summary = run_ingest(
            warehouse=warehouse, items=items, interactions=interactions, spark_master=args.spark_master,
            config=config,
        )
    except LockTimeout as exc:  # another writer kept the dataset the whole time: one clear line, exit 2
        raise ValueError(str(exc)) from exc
    print(json.dumps({"run_id": summary.run_id, "dataset": summary.dataset,
                      "warehouse": warehouse.uri(summary.dataset), "counts": summary.counts,
                      "image_status": summary.image_status, "eval_split_users": summary.eval_split_users,
                      "kcore": summary.kcore, "warnings": list(summary.warnings),
                      "seconds": summary.seconds}, indent=1))
    return 0
