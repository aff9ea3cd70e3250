"""Shared pieces of the job CLIs: warehouse/dataset options and logging."""

from __future__ import annotations

import argparse
import logging
import os

from mmsrarec_lib.storage import Warehouse


def setup_logging(level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("MMSRAREC_LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("py4j", "urllib3", "botocore", "filelock", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def add_warehouse_args(parser: argparse.ArgumentParser, *, dataset_required: bool = True) -> None:
    parser.add_argument("--dataset", required=dataset_required, help="dataset name (a folder of the warehouse)")
    parser.add_argument(
        "--warehouse",
        default=None,
        help="warehouse root: a local path or s3://bucket/prefix (default $MMSRAREC_WAREHOUSE, else ./warehouse)",
    )


def warehouse_from_args(args: argparse.Namespace) -> Warehouse:
    return Warehouse.from_uri(args.warehouse)
