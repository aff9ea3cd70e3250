"""Consistent dataset snapshots: a run that writes several tables publishes them together.

Delta commits are atomic per table only. A run that writes several tables (``ingest`` writes eight) records itself
in the manifest table ``dataset_runs`` of its dataset, an append-only log with one row per state change:

1. ``running``, committed **before** its first table commit, with ``base_versions``: every table it may write, at
   the version it started from (-1: the table did not exist);
2. then its table commits;
3. ``complete`` (with ``published_versions``), committed **last**; or ``failed`` (its commits rolled back, the
   error in ``message``) when it raised.

A run killed between 1 and 3 (kill -9, lost machine) leaves its ``running`` row. The next writer of the dataset,
holding the dataset lock (:mod:`mmsrarec_lib.locks`, so no live writer can be running), calls :func:`repair`: each
such run is marked ``abandoned`` and its tables are restored to their base versions (the base version's rows
rewritten as a new Delta commit; a table it created is removed). So every run, killed or not, ends with a row
saying how it ended.

**Readers** resolve versions here: a table in the ``base_versions`` of a run that has not ended (in progress, or
dead and not yet repaired) reads at that base version; every other table at its latest version. A crash between
commits is therefore invisible: readers see the previous dataset until the ``complete`` row lands, then the new
one. :func:`resolve_versions` reads the manifest's version before and after resolving and retries when it moved,
so a run starting meanwhile cannot leak half its commits into a resolution. ``Warehouse.dataset`` (and so every
job's ``read_table``) resolves one table per call this way; ``mmsrarec sql`` resolves all tables at once.
Explicit versions (time travel) are never changed.

A writer reads its own fresh writes: runs started in this process are never pinned for it. Warehouses without a
``dataset_runs`` table (written before it existed) read every table at its latest version, as before.

Fault injection for tests and benches: ``MMSRAREC_FAULT_AFTER_COMMIT=N`` makes the process exit (code 86, no
cleanup, like a kill) right after the N-th commit of a run (the ``running`` row is commit 1).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import pyarrow as pa
import pyarrow.compute as pc

from mmsrarec_lib import schemas
from mmsrarec_lib.pinning import (  # the read half (below storage); resolve_versions / pinned_version re-exported
    ABSENT,
    MANIFEST,
    RUNNING,
    last_rows,
    latest_version,
    manifest_rows,
    manifest_version,
    pinned_version,
    resolve_versions,
)
from mmsrarec_lib.pinning import OWN_RUNS as _OWN_RUNS  # runs of this process: never pinned for it
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)

COMPLETE, FAILED, ABANDONED = "complete", "failed", "abandoned"
FAULT_ENV = "MMSRAREC_FAULT_AFTER_COMMIT"
FAULT_EXIT_CODE = 86
__all__ = ["ABANDONED", "ABSENT", "COMPLETE", "FAILED", "MANIFEST", "RUNNING", "DatasetRun", "pinned_version",
           "repair", "resolve_versions", "run_outcome_counts", "run_states"]


def run_states(warehouse: Warehouse, dataset: str) -> list[dict]:
    """Every run of the dataset with its current state (the last row per run), oldest first."""
    version = manifest_version(warehouse, dataset)
    return [] if version is None else last_rows(manifest_rows(warehouse, dataset, version))


def _row(run_id: str, job: str, status: str, *, started_at, base: Mapping[str, int], published: Mapping[str, int],
         message: str | None, finished: bool) -> dict:
    from mmsrarec_lib.runs import code_version, utcnow

    return {"run_id": run_id, "job": job, "status": status, "base_versions": list(base.items()),
            "published_versions": list(published.items()), "started_at": started_at,
            "finished_at": utcnow() if finished else None, "message": message, "code_version": code_version()}


def _append(warehouse: Warehouse, dataset: str, rows: list[dict]) -> int:
    return warehouse.write_table(dataset, MANIFEST, pa.Table.from_pylist(rows, schema=schemas.DATASET_RUNS),
                                 mode="append")


def _latest_or_absent(warehouse: Warehouse, dataset: str, table: str) -> int:
    version = latest_version(warehouse, dataset, table)
    return ABSENT if version is None else version


def _roll_back(warehouse: Warehouse, dataset: str, base: Mapping[str, int]) -> list[str]:
    """Restore every table of ``base`` whose latest version moved past its base; returns what was restored."""
    restored = []
    for table, version in sorted(base.items()):
        latest = warehouse.table_version(dataset, table)
        if latest is None or latest == version:
            continue
        if version == ABSENT:
            warehouse.delete_dir(warehouse.table_uri(dataset, table))
            restored.append(f"{table} (removed: created by the run)")
        else:
            # the base version's rows, rewritten as a new commit (delta-rs' own restore hung against moto's S3)
            parts = list(warehouse.delta_table(dataset, table, version=version).metadata().partition_columns)
            warehouse.write_table(dataset, table, warehouse.read_table(dataset, table, version=version),
                                  mode="overwrite", partition_by=parts or None)
            restored.append(f"{table} v{latest}->v{version}")
    if restored:
        log.warning("rolled back %s: %s", dataset, ", ".join(restored))
    return restored


def repair(warehouse: Warehouse, dataset: str, *, by: str) -> list[str]:
    """Mark every run that has not ended as ``abandoned``, restoring its tables (call only with the dataset lock
    held: then no such run can be alive). Returns the run ids repaired."""
    repaired = []
    for row in run_states(warehouse, dataset):
        if row["status"] != RUNNING or row["run_id"] in _OWN_RUNS:
            continue
        base = dict(row["base_versions"] or [])
        restored = _roll_back(warehouse, dataset, base)
        message = (f"abandoned: found unfinished by {by}; rolled back " + ", ".join(restored)) if restored else \
            f"abandoned: found unfinished by {by}; it had committed nothing"
        _append(warehouse, dataset, [_row(row["run_id"], row["job"], ABANDONED, started_at=row["started_at"],
                                          base=base, published={}, message=message, finished=True)])
        log.warning("run %s (%s) of %s had died: %s", row["run_id"], row["job"], dataset, message)
        repaired.append(row["run_id"])
    return repaired


@dataclass
class DatasetRun:
    """One multi-table run: ``running`` row on enter, ``complete``/``failed`` row on exit (see module docstring).

    Call :meth:`committed` after every table commit (it counts commits for fault injection and tracks versions).
    """

    warehouse: Warehouse
    dataset: str
    run_id: str
    job: str
    tables: Sequence[str]
    base: dict[str, int] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    commits: int = 0
    status: str | None = None

    def __enter__(self) -> DatasetRun:
        from mmsrarec_lib.runs import utcnow

        self.started_at = utcnow()
        self.base = {t: _latest_or_absent(self.warehouse, self.dataset, t) for t in self.tables}
        _OWN_RUNS.add(self.run_id)
        self._count(_append(self.warehouse, self.dataset, [self._row(RUNNING, None, finished=False)]))
        return self

    def _row(self, status: str, message: str | None, *, finished: bool) -> dict:
        published = {**self.base, **self.written} if status == COMPLETE else {}
        return _row(self.run_id, self.job, status, started_at=self.started_at, base=self.base,
                    published=published, message=message, finished=finished)

    def _count(self, _version: int) -> None:
        self.commits += 1
        fault = os.environ.get(FAULT_ENV)
        if fault and fault.isdigit() and self.commits == int(fault):
            log.error("fault injection: exiting after commit %d of run %s", self.commits, self.run_id)
            logging.shutdown()
            os._exit(FAULT_EXIT_CODE)

    def committed(self, table: str, version: int) -> None:
        """Record a table commit of this run."""
        if table not in self.base:
            raise ValueError(f"{table!r} is not among the tables run {self.run_id} declared: {list(self.base)}")
        self.written[table] = version
        self._count(version)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        from mmsrarec_lib.locks import LockLost

        try:
            if isinstance(exc, LockLost):
                return  # another writer holds the dataset now: leave our rows and commits to its repair()
            if exc is None:
                self._count(_append(self.warehouse, self.dataset, [self._row(COMPLETE, None, finished=True)]))
                self.status = COMPLETE
                return
            try:
                restored = _roll_back(self.warehouse, self.dataset, self.base)
            except Exception as rb_exc:  # noqa: BLE001 (the next writer's repair() retries the rollback)
                log.error("rollback of run %s failed: %s", self.run_id, rb_exc)
                return  # left running: the next writer marks it abandoned and rolls it back
            first = str(exc).splitlines()[0] if str(exc) else ""
            message = f"{type(exc).__name__}: {first}"[:2000]
            if restored:
                message += "; rolled back " + ", ".join(restored)
            self._count(_append(self.warehouse, self.dataset, [self._row(FAILED, message, finished=True)]))
            self.status = FAILED
        finally:
            _OWN_RUNS.discard(self.run_id)


def run_outcome_counts(warehouse: Warehouse, dataset: str) -> dict[str, int]:
    """Runs per current status (for benches and reports)."""
    states = run_states(warehouse, dataset)
    if not states:
        return {}
    col = pa.array([s["status"] for s in states])
    vc = pc.value_counts(col)
    return dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()))
