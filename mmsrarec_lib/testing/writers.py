"""Small concurrent writers for tests and ``bench/concurrency.py``: what the dataset lock must keep consistent.

- :func:`recommend_style_writer`: stages one run_date's rows as shards below ``_staging/`` (per run_date, as a
  shard stager does), reads them back, replaces that run_date partition in one commit, then read-modify-writes a
  JSON watermark file; two of them racing for one date without the lock can publish a mix of both writers'
  shards (rows doubled) and lose a watermark entry.
- :func:`append_interactions`: an ``ingest --mode append`` in miniature: reads the interactions table, numbers
  the new rows after its largest ``source_row``, appends them, and rebuilds a derived table (events per user) from
  its snapshot plus its rows.

Both take ``locked``; with it they hold :func:`mmsrarec_lib.locks.dataset_lock` exactly as the real jobs do.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmsrarec_lib import schemas, tables
from mmsrarec_lib.locks import dataset_lock
from mmsrarec_lib.storage import Warehouse

RECS = tables.RECOMMENDATIONS


def _lock(warehouse: Warehouse, dataset: str, owner: str, locked: bool, purpose: str):
    if not locked:
        return contextlib.nullcontext(None)
    return dataset_lock(warehouse, dataset, owner=owner, purpose=purpose, ttl_s=30, poll_s=0.05)


def recommend_rows(run_date: dt.date, users: list[str], *, writer: str, k: int) -> pa.Table:
    """``k`` ranked rows per user; ``model_version`` names the writer so a mix is visible."""
    rows = [{"run_date": run_date, "user_id": u, "rank": r + 1, "item_id": f"i{(hash((u, r)) % 97):02d}",
             "score": 1.0 / (r + 1), "model_version": writer, "explanation": None,
             "created_at": dt.datetime.now(dt.UTC)} for u in users for r in range(k)]
    return pa.Table.from_pylist(rows, schema=schemas.RECOMMENDATIONS)


def recommend_style_writer(warehouse: Warehouse, dataset: str, *, writer: str, run_date: dt.date, users: list[str],
                           k: int = 3, shards: int = 4, locked: bool = True, pause_s: float = 0.02) -> int:
    """Stage shards, publish the run_date partition in one commit, update the watermark; returns rows published."""
    with _lock(warehouse, dataset, writer, locked, f"recommend {run_date}") as lease:
        staging = warehouse.uri(dataset, "_staging", RECS, run_date.isoformat())
        table = recommend_rows(run_date, users, writer=writer, k=k)
        per = -(-table.num_rows // shards)
        for i in range(shards):
            buf = io.BytesIO()
            pq.write_table(table.slice(i * per, per), buf)
            warehouse.write_bytes(f"{staging}/{writer}-{i}.parquet", buf.getvalue())
            time.sleep(pause_s)
        staged = [pq.read_table(io.BytesIO(warehouse.read_bytes(f"{staging}/{name}")))
                  for name in warehouse.list_dir(staging) if name.endswith(".parquet")]
        rows = pa.concat_tables(staged).cast(schemas.RECOMMENDATIONS)
        if lease is not None:
            lease.check()
        if warehouse.has_table(dataset, RECS):
            warehouse.write_table(dataset, RECS, rows, mode="overwrite", partition_by=["run_date"],
                                  predicate=f"run_date = '{run_date.isoformat()}'")
        else:
            warehouse.write_table(dataset, RECS, rows, mode="append", partition_by=["run_date"])
        warehouse.delete_dir(staging)
        marks_uri = warehouse.uri(dataset, "state", "recommend_writers.json")
        marks = json.loads(warehouse.read_bytes(marks_uri)) if warehouse.exists(marks_uri) else {}
        time.sleep(pause_s)
        marks[writer] = rows.num_rows
        warehouse.write_bytes(marks_uri, json.dumps(marks).encode())
        return rows.num_rows


def append_interactions(warehouse: Warehouse, dataset: str, rows: list[tuple[str, str, int]], *, writer: str,
                        locked: bool = True, pause_s: float = 0.05) -> None:
    """Append ``rows`` (user, item, unix seconds) as an append-mode ingest does, and rebuild ``user_event_counts``
    from the snapshot it read plus its own rows."""
    with _lock(warehouse, dataset, writer, locked, "append") as lease:
        old = warehouse.read_table(dataset, tables.INTERACTIONS) if warehouse.has_table(dataset, tables.INTERACTIONS) \
            else schemas.INTERACTIONS.empty_table()
        offset = int(pc.max(old.column("source_row")).as_py() or 0) if old.num_rows else 0
        new = pa.Table.from_pylist(
            [{"user_id": u, "item_id": i, "timestamp": dt.datetime.fromtimestamp(t, dt.UTC), "rating": None,
              "event": writer, "source_row": offset + n + 1} for n, (u, i, t) in enumerate(rows)],
            schema=schemas.INTERACTIONS)
        time.sleep(pause_s)  # the Spark work of a real ingest: the window in which another writer can interleave
        if lease is not None:
            lease.check()
        warehouse.write_table(dataset, tables.INTERACTIONS, new, mode="append")
        full = pa.concat_tables([old.cast(schemas.INTERACTIONS), new])
        counts = full.group_by("user_id").aggregate([("item_id", "count")]).rename_columns(["user_id", "events"])
        warehouse.write_table(dataset, tables.USER_EVENT_COUNTS, counts.sort_by("user_id"), mode="overwrite")
