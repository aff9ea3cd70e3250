"""Run identity and accounting: run ids, code version, UTC clock, and the ``ingest_runs`` table."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from mmsrarec_lib import schemas, tables

if TYPE_CHECKING:  # storage imports this module (run ids, code version for commit lineage)
    from mmsrarec_lib.storage import Warehouse

INGEST_RUNS_TABLE = tables.INGEST_RUNS


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_run_id(prefix: str = "") -> str:
    """A sortable, unique run id: ``[prefix-]YYYYmmddTHHMMSS-xxxxxxxx``."""
    stamp = utcnow().strftime("%Y%m%dT%H%M%S")
    return f"{prefix + '-' if prefix else ''}{stamp}-{uuid.uuid4().hex[:8]}"


@functools.cache
def code_version() -> str:
    """The git commit of the code (``+dirty`` when modified), else the package version."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("mmsrarec")
        except PackageNotFoundError:
            return "unknown"


def sha256_hex(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class IngestRun:
    """One job's accounting for one table. Invariant: rows_in = rows_written + rows_quarantined + rows_duplicate."""

    run_id: str
    dataset: str
    table: str
    rows_in: int
    rows_written: int
    rows_quarantined: int
    rows_duplicate: int
    started_at: dt.datetime
    finished_at: dt.datetime
    kcore_k: int | None = None
    kcore_users: int | None = None
    kcore_items: int | None = None
    kcore_interactions: int | None = None
    kcore_share_kept: float | None = None
    warnings: str | None = None

    def __post_init__(self) -> None:
        total = self.rows_written + self.rows_quarantined + self.rows_duplicate
        if self.rows_in != total:
            raise AssertionError(
                f"{self.table}: rows_in={self.rows_in} but written+quarantined+duplicate={total}: rows were lost"
            )


def ingest_runs_table(runs: list[IngestRun]) -> pa.Table:
    """The ``ingest_runs`` rows of ``runs`` (with the code version)."""
    cv = code_version()
    return pa.Table.from_pylist([{**r.__dict__, "code_version": cv} for r in runs], schema=schemas.INGEST_RUNS)


def ingest_runs_update(warehouse: Warehouse, runs: list[IngestRun]) -> tuple[pa.Table, str]:
    """What to commit to ``ingest_runs`` for ``runs``, and how: an append, or (once, for a table written before
    the k-core columns existed) the old rows with null new columns plus the new rows as an overwrite."""
    new = ingest_runs_table(runs)
    dataset = runs[0].dataset
    if not warehouse.has_table(dataset, INGEST_RUNS_TABLE):
        return new, "append"
    stored = warehouse.dataset(dataset, INGEST_RUNS_TABLE).schema.names
    if all(name in stored for name in schemas.INGEST_RUNS.names):
        return new, "append"
    old = warehouse.read_table(dataset, INGEST_RUNS_TABLE)
    for f in schemas.INGEST_RUNS:
        if f.name not in old.column_names:
            old = old.append_column(f.name, pa.nulls(old.num_rows, f.type))
    return pa.concat_tables([old.select(schemas.INGEST_RUNS.names).cast(schemas.INGEST_RUNS), new]), "overwrite"


def record_ingest_runs(warehouse: Warehouse, runs: list[IngestRun]) -> int | None:
    """Append the runs to ``ingest_runs`` in one commit; returns the new version (None: nothing to write)."""
    if not runs:
        return None
    return warehouse.write_table(runs[0].dataset, INGEST_RUNS_TABLE, ingest_runs_table(runs), mode="append")
