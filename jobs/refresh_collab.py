"""``mmsrarec refresh-collab``: nightly stage-2 update for users with interactions newer than the watermark.

Takes no stage-2 settings: the refresh reuses the ``CollabConfig`` stored with the index by ``build-collab``."""

from __future__ import annotations

import argparse
import json
import logging

from jobs._common import add_warehouse_args, warehouse_from_args
from jobs.build_collab import add_keep_index_versions

COMMAND = "refresh-collab"
HELP = "re-embed users with new interactions, update their index entries and MERGE their collab keyword rows"
log = logging.getLogger("mmsrarec.refresh_collab")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_warehouse_args(parser)
    parser.add_argument("--sasrec-run", help="SASRec run id; must be the one the current index was built with "
                                             "(default: that one, from the index metadata)")
    parser.add_argument("--run-date", help="the scheduler's run date (YYYY-MM-DD), logged only: the watermark, "
                                           "not the date, decides which users are refreshed")
    add_keep_index_versions(parser)


def main(args: argparse.Namespace) -> int:
    cfg = args  # no library config of its own: the index metadata holds the CollabConfig the build used
    from mmsrarec_lib.collab.embed import sasrec_embedder
    from mmsrarec_lib.collab.refresh import changed_users, read_watermark, refresh_collab
    from mmsrarec_lib.collab.store import read_index_meta
    from mmsrarec_lib.collab.table import load_keywords

    warehouse = warehouse_from_args(args)
    wm = read_watermark(warehouse, cfg.dataset)
    users, _ = changed_users(warehouse, cfg.dataset, wm.max_interaction_us)
    if not users:  # checked first so a no-op night loads no model
        log.info("run date %s: no interactions newer than the watermark; nothing to do", cfg.run_date)
        print(json.dumps({"changed_users": 0, "index_version": wm.index_version, "table_version": wm.table_version}))
        return 0
    meta = read_index_meta(warehouse, cfg.dataset)  # the index itself is loaded once, by refresh_collab
    built_with = meta.get("embedder", {}).get("run_id")
    if cfg.sasrec_run and built_with and cfg.sasrec_run != built_with:
        raise ValueError(f"the index was built with SASRec run {built_with!r}, not {cfg.sasrec_run!r}: vectors of "
                         f"two models cannot share an index; run build-collab for a new model")
    embedder, run_id = sasrec_embedder(warehouse, cfg.dataset, cfg.sasrec_run or built_with)
    keywords, _ = load_keywords(warehouse, cfg.dataset, meta["keyword_source"])
    result = refresh_collab(warehouse, dataset=cfg.dataset, embedder=embedder, keywords=keywords,
                            keep_index_versions=cfg.keep_index_versions)
    log.info("run date %s: refreshed %d users", cfg.run_date, len(result.changed_users))
    print(json.dumps({"changed_users": len(result.changed_users), "index_version": result.index_version,
                      "table_version": result.table_version, "training_users_updated": result.n_indexed,
                      "index_entries_written": result.n_entries,
                      "rows_merged": result.n_rows, "sasrec_run": run_id}))
    return 0
