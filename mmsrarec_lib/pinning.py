"""Which version of a table a reader sees: the read half of :mod:`mmsrarec_lib.snapshots`.

:meth:`mmsrarec_lib.storage.Warehouse.dataset` resolves every latest read here, so this module sits below
``storage`` and imports nothing of the project at run time but :mod:`mmsrarec_lib.tables` (it only calls the
methods of the warehouse it is given). The rules (runs that have not ended pin the tables they write at their
base versions; a process never pins its own runs) are explained in :mod:`mmsrarec_lib.snapshots`, which writes the
``dataset_runs`` manifest.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pyarrow as pa

from mmsrarec_lib import tables

if TYPE_CHECKING:
    from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)

MANIFEST = tables.DATASET_RUNS
RUNNING = "running"
ABSENT = -1  # base version of a table that did not exist when the run started
RESOLVE_ATTEMPTS = 10

OWN_RUNS: set[str] = set()  # runs started by this process: their tables are never pinned for it
_cache: dict[tuple[str, str, int], dict[str, dict[str, int]]] = {}
_cache_lock = threading.Lock()


def manifest_version(warehouse: Warehouse, dataset: str) -> int | None:
    try:
        return warehouse.delta_table(dataset, MANIFEST).version()
    except FileNotFoundError:
        return None


def manifest_rows(warehouse: Warehouse, dataset: str, version: int) -> pa.Table:
    return warehouse.read_table(dataset, MANIFEST, version=version)


def last_rows(rows: pa.Table) -> list[dict]:
    """The current state of every run (its end row, else its ``running`` row), oldest run first."""
    last: dict[str, dict] = {}
    for row in rows.to_pylist():  # file order is not commit order: an end state wins over ``running``
        if row["run_id"] not in last or last[row["run_id"]]["status"] == RUNNING:
            last[row["run_id"]] = row
    return sorted(last.values(), key=lambda r: r["started_at"])


def _pins(warehouse: Warehouse, dataset: str, version: int) -> dict[str, dict[str, int]]:
    """run_id -> {table: base version} of every run not ended at manifest ``version`` (any process's runs)."""
    key = (warehouse.root, dataset, version)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    pins = {row["run_id"]: dict(row["base_versions"] or [])
            for row in last_rows(manifest_rows(warehouse, dataset, version)) if row["status"] == RUNNING}
    with _cache_lock:
        _cache[key] = pins
    return pins


def _pinned_now(warehouse: Warehouse, dataset: str, version: int | None) -> dict[str, int]:
    if version is None:
        return {}
    out: dict[str, int] = {}
    for run, bases in _pins(warehouse, dataset, version).items():
        if run in OWN_RUNS:
            continue
        for table, base in bases.items():
            out[table] = min(out.get(table, base), base)
    return out


def resolve_versions(warehouse: Warehouse, dataset: str, tables: Iterable[str]) -> dict[str, int | None]:
    """A consistent version of each of ``tables``: the base version when a run that has not ended writes it,
    else its latest version (None: the table does not exist for readers). See the module docstring."""
    tables = list(tables)
    for _ in range(RESOLVE_ATTEMPTS):
        before = manifest_version(warehouse, dataset)
        pinned = _pinned_now(warehouse, dataset, before)
        out: dict[str, int | None] = {}
        for table in tables:
            if table in pinned and table != MANIFEST:
                out[table] = None if pinned[table] == ABSENT else pinned[table]
            else:
                out[table] = latest_version(warehouse, dataset, table)
        if manifest_version(warehouse, dataset) == before:
            return out
        log.info("dataset_runs of %s moved while resolving versions; resolving again", dataset)
    raise RuntimeError(f"could not resolve a consistent snapshot of {dataset!r}: dataset_runs kept changing")


def pinned_version(warehouse: Warehouse, dataset: str, table: str) -> int | None:
    """The version a job reads ``table`` at when it asks for the latest (``Warehouse.dataset``); None when the
    table has no version for readers yet (then the caller's latest lookup reports it missing or new)."""
    if table == MANIFEST:
        return None
    return resolve_versions(warehouse, dataset, [table])[table]




def latest_version(warehouse: Warehouse, dataset: str, table: str) -> int | None:
    try:
        return warehouse.delta_table(dataset, table).version()  # one log listing (table_version makes two)
    except FileNotFoundError:
        return None
