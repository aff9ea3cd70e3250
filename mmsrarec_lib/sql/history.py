"""The ``table_history`` view of ``mmsrarec sql``: every commit still in each table's Delta log, and who made it.

One row per (table, version) with the commit's time, operation and parameters, and the lineage every write of
this project adds (:func:`mmsrarec_lib.storage.commit_metadata`, stored under ``mmsrarec`` in ``commitInfo``):
job, run id, Airflow dag / run / task / try number, code version, and the whole lineage object as JSON. Commits
written by other tools have NULL lineage. Any listed version can be read with ``--as-of-version TABLE=N`` as long
as vacuum has not removed its files (docs/sql.md, retention in README "Warehouse").

The commit files are read through the warehouse filesystem (like :func:`mmsrarec_lib.sql.tables.commit_time`),
not with ``DeltaTable.history()``, which hung against moto's S3 server.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

import pyarrow as pa

from mmsrarec_lib.storage import COMMIT_METADATA_KEY, Warehouse

VIEW = "table_history"
LINEAGE_COLUMNS = ("job", "run_id", "airflow_dag_id", "airflow_run_id", "airflow_task_id", "airflow_try_number",
                   "code_version")
SCHEMA = pa.schema(
    [
        pa.field("table_name", pa.string()),
        pa.field("version", pa.int64()),
        pa.field("timestamp", pa.timestamp("ms", tz="UTC")),
        pa.field("operation", pa.string()),
        pa.field("operation_parameters", pa.string()),
        *[pa.field(c, pa.string()) for c in LINEAGE_COLUMNS],
        pa.field("rows_added", pa.int64()),
        pa.field("files_added", pa.int64()),
        pa.field("files_removed", pa.int64()),
        pa.field("metadata", pa.string()),
    ]
)


def _commit_info(raw: bytes) -> dict:
    for line in raw.splitlines():
        if line.strip():
            info = json.loads(line).get("commitInfo")
            if info is not None:
                return info
    return {}


def commit_row(table: str, version: int, info: dict) -> dict:
    """One ``table_history`` row from a commit's ``commitInfo``."""
    lineage = info.get(COMMIT_METADATA_KEY) or {}
    metrics = info.get("operationMetrics") or {}
    ms = info.get("inCommitTimestamp") or info.get("timestamp")
    row = {
        "table_name": table,
        "version": version,
        "timestamp": dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC) if ms is not None else None,
        "operation": info.get("operation"),
        "operation_parameters": json.dumps(info.get("operationParameters") or {}, sort_keys=True),
        "rows_added": metrics.get("num_added_rows", metrics.get("num_target_rows_inserted")),
        "files_added": metrics.get("num_added_files", metrics.get("numFilesAdded")),
        "files_removed": metrics.get("num_removed_files", metrics.get("numFilesRemoved")),
        "metadata": json.dumps(lineage, sort_keys=True) if lineage else None,
    }
    row.update({c: (str(lineage[c]) if c in lineage else None) for c in LINEAGE_COLUMNS})
    return row


def history_table(warehouse: Warehouse, dataset: str, tables: Iterable[str]) -> pa.Table:
    """``table_history`` rows of ``tables`` (commits whose file is still in ``_delta_log``), newest first per table."""
    rows = []
    for table in tables:
        log_uri = warehouse.uri(dataset, table, "_delta_log")
        names = [n for n in warehouse.list_dir(log_uri) if n.endswith(".json") and n[:-5].isdigit()]
        for name in sorted(names, key=lambda n: -int(n[:-5])):
            try:
                raw = warehouse.read_bytes(f"{log_uri}/{name}")
            except (FileNotFoundError, OSError):  # cleaned up between the listing and the read
                continue
            rows.append(commit_row(table, int(name[:-5]), _commit_info(raw)))
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def commit_lineage(warehouse: Warehouse, *, dataset: str, table: str, version: int) -> dict:
    """Operation, time and lineage of one version (for Asset event extras); empty when its commit file is gone."""
    uri = warehouse.uri(dataset, table, "_delta_log", f"{version:020d}.json")
    try:
        row = commit_row(table, version, _commit_info(warehouse.read_bytes(uri)))
    except (FileNotFoundError, OSError):
        return {}
    return {"operation": row["operation"], "timestamp": row["timestamp"].isoformat() if row["timestamp"] else None,
            **json.loads(row["metadata"] or "{}")}
