"""Shared pieces of the job CLIs: warehouse/dataset options and logging."""

from __future__ import annotations

import argparse
import logging
import os

from mmsrarec_lib.storage import Warehouse

# whose training data a model sees (paper: the train users; full: every user's train prefix). One default for every
# command that trains or consumes a model (train-baseline, train, the train DAG), so that following each command's
# defaults works: `train-recommender` looks for a SASRec run of its protocol. It equals RecTrainConfig.protocol, which
# lives in a module that imports torch (tests/test_defaults_agree.py checks they agree).
TRAINING_PROTOCOLS = ("paper", "full")
DEFAULT_PROTOCOL = "paper"
# phi of the summarizer's R_info, the same for train-summarizer and summarize (the tuned policy is scored with it)
KEYWORD_ENCODER = "minilm"


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
