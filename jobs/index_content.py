"""``mmsrarec index-content``: bring the item content index (text + image vectors, faiss) up to date with ``items``.

Incremental by default: only items that are new or whose text or image changed are encoded, so the nightly run can
recommend items ingested today without retraining anything (docs/candidates.md).
"""

from __future__ import annotations

import argparse
import json
import logging

from jobs._common import add_warehouse_args, warehouse_from_args
from jobs._dataclass_args import add_dataclass_arguments, dataclass_from_args

COMMAND = "index-content"
HELP = "encode new or changed items (text, image features) and refresh the content candidate index"
log = logging.getLogger("mmsrarec.index_content")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mmsrarec_lib.candidates import ContentIndexConfig

    add_warehouse_args(parser)
    add_dataclass_arguments(parser, ContentIndexConfig)
    parser.add_argument("--full", action="store_true", help="re-encode every item instead of only changed ones")
    parser.add_argument("--keep-versions", type=int, default=3, help="index versions kept (default 3)")


def main(args: argparse.Namespace) -> int:
    from mmsrarec_lib.candidates import ContentIndexConfig, refresh_content_index

    config = dataclass_from_args(ContentIndexConfig, args)
    stats = refresh_content_index(warehouse_from_args(args), args.dataset, config=config, full=args.full,
                                  keep_versions=args.keep_versions)
    print(json.dumps(stats))
    return 0
