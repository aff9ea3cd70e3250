"""``mmsrarec ingest``: items + interactions files (or a built-in source) -> Delta tables of one dataset."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from jobs._common import add_warehouse_args, warehouse_from_args

COMMAND = "ingest"
HELP = "ingest items (with images) and interactions into Delta tables, then build sequences and splits"
SOURCES = ("movielens-100k",)


@dataclass(frozen=True)
class IngestArgs:
    dataset: str
    items: str | None
    interactions: str | None
    source: str | None
    data_dir: str | None
    spark_master: str | None
    max_image_side: int
    k_core: int
    seed: int
    mode: str
    encoding: str
    allow_empty: bool
    allow_sparse: bool
    image_deadline_s: float
    image_max_bytes: int
    min_timestamp: str | None
    max_timestamp: str | None
    lock_wait_s: float

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> IngestArgs:
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
        return cls(dataset=dataset, items=args.items, interactions=args.interactions, source=args.source,
                   data_dir=args.data_dir, spark_master=args.spark_master, max_image_side=args.max_image_side,
                   k_core=args.k_core, seed=args.seed, mode=args.mode, encoding=args.encoding,
                   allow_empty=args.allow_empty, allow_sparse=args.allow_sparse,
                   image_deadline_s=args.image_deadline_s,
                   image_max_bytes=args.image_max_bytes, min_timestamp=args.min_timestamp,
                   max_timestamp=args.max_timestamp, lock_wait_s=args.lock_wait_s)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_warehouse_args(parser, dataset_required=False)
    parser.add_argument("--items", help="items file (.csv, .tsv, .jsonl or .parquet)")
    parser.add_argument("--interactions", help="interactions file (.csv, .tsv, .jsonl or .parquet)")
    parser.add_argument("--source", choices=SOURCES, help="a built-in source instead of --items/--interactions")
    parser.add_argument("--data-dir", help="folder of the built-in source (default $MMSRAREC_DATA_DIR, else "
                                           "<repo>/../shared/data/movielens-100k, else the recbole wheel)")
    parser.add_argument("--spark-master", help="Spark master (default $SPARK_MASTER, else local[*])")
    parser.add_argument("--max-image-side", type=int, default=512, help="bound on an image's longest side (px)")
    parser.add_argument("--k-core", type=int, default=5, help="k-core filter before the splits (<=1: off)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the user split and negative sampling")
    parser.add_argument("--mode", choices=("overwrite", "append"), default="overwrite",
                        help="overwrite the dataset's tables, or append new interactions (upsert items)")
    parser.add_argument("--encoding", default="utf-8-sig",
                        help="text encoding of CSV/TSV/JSONL inputs (default UTF-8, BOM allowed; e.g. latin-1, "
                             "cp1252); rows with bytes invalid in it are quarantined as bad_encoding")
    parser.add_argument("--allow-empty", action="store_true",
                        help="accept an items file (or, with --mode overwrite, an interactions file) with no rows")
    parser.add_argument("--allow-sparse", action="store_true",
                        help="keep the result when the k-core filter leaves no evaluation users (else the run "
                             "stops and suggests a --k-core; see docs/ingest.md)")
    parser.add_argument("--image-deadline-s", type=float, default=30.0,
                        help="total time for one image fetch, retries included; then it is missing (default 30)")
    parser.add_argument("--image-max-bytes", type=int, default=50 * 1024 * 1024,
                        help="largest image accepted in bytes; larger ones are refused (default 50 MiB)")
    parser.add_argument("--min-timestamp", default=None,
                        help="earliest valid interaction time, ISO-8601 (default 1970-01-01); earlier rows are "
                             "quarantined as timestamp_out_of_range")
    parser.add_argument("--max-timestamp", default=None,
                        help="latest valid interaction time, ISO-8601 (default: 10 years after the run)")
    parser.add_argument("--lock-wait-s", type=float, default=3600.0,
                        help="how long to wait for another writer of the dataset to finish (default 3600)")


def main(args: argparse.Namespace) -> int:
    cfg = IngestArgs.from_args(args)
    from mmsrarec_lib.ingest.interactions import EPOCH, TimestampRange
    from mmsrarec_lib.ingest.pipeline import IngestConfig, run_ingest
    from mmsrarec_lib.ingest.splits import SplitConfig
    from mmsrarec_lib.locks import LockTimeout
    from mmsrarec_lib.sql.tables import parse_timestamp

    if cfg.source:
        from mmsrarec_lib.ingest.movielens import load_movielens

        items, interactions = load_movielens(data_dir=cfg.data_dir)
    else:
        from mmsrarec_lib.ingest.sources import read_source

        items = read_source(cfg.items, encoding=cfg.encoding) if cfg.items else None
        interactions = read_source(cfg.interactions, encoding=cfg.encoding)

    def bound(flag: str, text: str | None):
        try:
            return parse_timestamp(text) if text else None
        except ValueError:
            raise ValueError(f"{flag} {text!r} is not an ISO-8601 date or datetime (e.g. 1995-01-01)") from None

    timestamps = TimestampRange(earliest=bound("--min-timestamp", cfg.min_timestamp) or EPOCH,
                                latest=bound("--max-timestamp", cfg.max_timestamp))
    warehouse = warehouse_from_args(args)
    try:
        summary = run_ingest(
            warehouse=warehouse, items=items, interactions=interactions, spark_master=cfg.spark_master,
            config=IngestConfig(dataset=cfg.dataset, mode=cfg.mode, max_image_side=cfg.max_image_side,
                                image_deadline_s=cfg.image_deadline_s, image_max_bytes=cfg.image_max_bytes,
                                timestamps=timestamps, allow_empty=cfg.allow_empty, allow_sparse=cfg.allow_sparse,
                                lock_wait_s=cfg.lock_wait_s, splits=SplitConfig(k_core=cfg.k_core, seed=cfg.seed)),
        )
    except LockTimeout as exc:  # another writer kept the dataset the whole time: one clear line, exit 2
        raise ValueError(str(exc)) from exc
    print(json.dumps({"run_id": summary.run_id, "dataset": summary.dataset,
                      "warehouse": warehouse.uri(summary.dataset), "counts": summary.counts,
                      "image_status": summary.image_status, "eval_split_users": summary.eval_split_users,
                      "kcore": summary.kcore, "warnings": list(summary.warnings),
                      "seconds": summary.seconds}, indent=1))
    return 0
