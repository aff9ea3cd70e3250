"""Which Delta tables of a dataset exist, and which version of each a query reads (time travel).

Both SQL front ends (DuckDB in :mod:`mmsrarec_lib.sql.engine`, Spark in :mod:`mmsrarec_lib.sql.spark_views`)
resolve tables here, so ``--as-of-version`` / ``--as-of`` mean the same thing in both.

Time-travel semantics (Delta versions are per table, so one number cannot name the same moment in every table):

- ``as_of_version=N``: every table at ``min(N, its latest version)``, i.e. its latest version <= N.
- ``table_versions={"recommendations": 3}``: that table at exactly that version (an error when it does not exist);
  it overrides ``as_of_version`` for that table.
- ``as_of=TIMESTAMP``: every table as it was at that instant (``DeltaTable.load_as_version(datetime)``); a table
  whose first available commit is later than that did not exist yet and is reported as absent.

Latest reads (no time travel) take each table at the version :func:`mmsrarec_lib.snapshots.resolve_versions`
gives: its latest, except for tables a multi-table run that has not ended is writing (an ingest in progress or
killed between its commits), which stay at the version that run started from; ``warehouse_tables`` then shows
``version < latest_version``. So a query never sees half a run.

Known tables (those in :data:`mmsrarec_lib.sql.catalog.TABLES`) that are absent still get an empty view of their
schema, so ready queries bind on a warehouse where, say, no recommendations were written yet.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.dataset as pads

from mmsrarec_lib.snapshots import resolve_versions
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)
_UNRESOLVED = object()


@dataclass(frozen=True)
class TimeTravel:
    """Which version of each table to read; the default is every table at its latest version."""

    as_of_version: int | None = None
    table_versions: Mapping[str, int] = field(default_factory=dict)
    as_of: dt.datetime | None = None

    def __post_init__(self) -> None:
        if self.as_of is not None and (self.as_of_version is not None or self.table_versions):
            raise ValueError("use either --as-of TIMESTAMP or --as-of-version, not both")
        if self.as_of is not None and self.as_of.tzinfo is None:
            raise ValueError(f"--as-of {self.as_of.isoformat()} has no time zone (add Z or +00:00)")
        versions = dict(self.table_versions)
        if self.as_of_version is not None:
            versions["*"] = self.as_of_version
        for table, version in versions.items():
            if version < 0:
                raise ValueError(f"--as-of-version for {table!r} must be >= 0, got {version}")

    @property
    def is_latest(self) -> bool:
        return self.as_of is None and self.as_of_version is None and not self.table_versions


@dataclass(frozen=True)
class TableSnapshot:
    """One table as a query sees it. ``version`` is None when the table does not exist (at that time)."""

    name: str
    version: int | None
    latest_version: int | None
    committed_at: dt.datetime | None
    partition_columns: tuple[str, ...]
    num_files: int


def parse_timestamp(text: str) -> dt.datetime:
    """Parse ``--as-of``: ISO-8601 (``2026-11-25T21:00:00Z``, ``2026-11-25 21:00``, ``2026-11-25``); naive = UTC."""
    raw = text.strip()
    try:
        value = dt.datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
    except ValueError as exc:
        raise ValueError(f"--as-of {text!r} is not an ISO-8601 date or datetime (e.g. 2026-11-25T21:00:00Z)") from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def discover_tables(warehouse: Warehouse, dataset: str) -> list[str]:
    """Names of the Delta tables of ``dataset``: folders of ``<root>/<dataset>/`` that hold a ``_delta_log``."""
    names = [
        name
        for name in warehouse.list_dir(warehouse.uri(dataset))
        if not name.startswith((".", "_")) and warehouse.exists(warehouse.uri(dataset, name, "_delta_log"))
    ]
    if not names:
        datasets = [d for d in warehouse.list_dir(warehouse.root) if not d.startswith(".")]
        raise FileNotFoundError(
            f"no Delta tables for dataset {dataset!r} in warehouse {warehouse.root}"
            f" (datasets there: {', '.join(datasets) or 'none'})"
        )
    return names


def _log_versions(warehouse: Warehouse, dataset: str, table: str) -> list[int]:
    """Versions whose commit file is still in ``_delta_log`` (older ones may have been cleaned up)."""
    names = warehouse.list_dir(warehouse.uri(dataset, table, "_delta_log"))
    return sorted(int(n[: -len(".json")]) for n in names if n.endswith(".json") and n[: -len(".json")].isdigit())


def commit_time(warehouse: Warehouse, dataset: str, table: str, version: int) -> dt.datetime | None:
    """When ``version`` was committed (its commitInfo), or None when its commit file is gone.

    Read from the commit file through the warehouse filesystem rather than ``DeltaTable.history()``, which lists
    the whole log (and hung against moto's S3 server).
    """
    uri = warehouse.uri(dataset, table, "_delta_log", f"{version:020d}.json")
    try:
        raw = warehouse.read_bytes(uri)
    except (FileNotFoundError, OSError):
        return None
    for line in raw.splitlines():
        info = json.loads(line).get("commitInfo") if line.strip() else None
        if info:
            ms = info.get("inCommitTimestamp") or info.get("timestamp")
            return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC) if ms is not None else None
    return None


def resolve_snapshot(
    warehouse: Warehouse, *, dataset: str, table: str, travel: TimeTravel, published: object = _UNRESOLVED
) -> TableSnapshot:
    """The version of ``table`` that ``travel`` selects, with its commit time and layout.

    ``published`` (latest reads) is the version :func:`mmsrarec_lib.snapshots.resolve_versions` chose (None: the
    table has no version for readers yet, a run that has not ended is creating it); resolved here when not given.
    """
    dt_latest = warehouse.delta_table(dataset, table)
    latest = dt_latest.version()
    if travel.is_latest and published is _UNRESOLVED:
        published = resolve_versions(warehouse, dataset, [table])[table]
    if travel.is_latest and published is None:
        return TableSnapshot(table, None, latest, None, (), 0)
    if travel.is_latest:
        version = min(int(published), latest)  # type: ignore[call-overload]
    elif travel.as_of is not None:
        versions = _log_versions(warehouse, dataset, table)
        first_time = commit_time(warehouse, dataset, table, versions[0]) if versions else None
        if first_time is not None and travel.as_of < first_time:
            log.warning("%s: no version at or before %s (earliest commit %s): empty", table, travel.as_of, first_time)
            return TableSnapshot(table, None, latest, None, (), 0)
        loaded = warehouse.delta_table(dataset, table)
        loaded.load_as_version(travel.as_of)
        version = loaded.version()
    elif table in travel.table_versions:
        version = travel.table_versions[table]
        if version > latest:
            raise ValueError(f"--as-of-version {table}={version}: {table} has versions 0..{latest}")
    elif travel.as_of_version is not None:
        version = min(travel.as_of_version, latest)
    else:
        version = latest
    chosen = dt_latest if version == latest else warehouse.delta_table(dataset, table, version=version)
    return TableSnapshot(
        name=table,
        version=version,
        latest_version=latest,
        committed_at=commit_time(warehouse, dataset, table, version),
        partition_columns=tuple(chosen.metadata().partition_columns),
        num_files=len(chosen.file_uris()),
    )


def resolve_tables(
    warehouse: Warehouse, *, dataset: str, travel: TimeTravel, known: Mapping[str, pa.Schema] | None = None
) -> list[TableSnapshot]:
    """A snapshot of every table of ``dataset`` plus an absent (version None) entry for each missing known table."""
    names = discover_tables(warehouse, dataset)
    unknown = sorted(set(travel.table_versions) - set(names))
    if unknown:
        raise ValueError(f"--as-of-version names tables that do not exist: {', '.join(unknown)}")
    # latest reads go through the dataset's run manifest: a multi-table run that has not ended is invisible
    published = resolve_versions(warehouse, dataset, names) if travel.is_latest else {}
    snapshots = [resolve_snapshot(warehouse, dataset=dataset, table=name, travel=travel,
                                  published=published.get(name, _UNRESOLVED)) for name in names]
    for name in sorted(set(known or {}) - set(names)):
        snapshots.append(TableSnapshot(name, None, None, None, (), 0))
    return sorted(snapshots, key=lambda s: s.name)


def snapshot_dataset(
    warehouse: Warehouse, *, dataset: str, snapshot: TableSnapshot, schema: pa.Schema | None = None
) -> pads.Dataset:
    """A pyarrow dataset over the snapshot's files (through the Delta log); an empty one of ``schema`` if absent."""
    if snapshot.version is None:
        if schema is None and snapshot.latest_version is not None:  # not yet created at --as-of: today's columns
            schema = warehouse.dataset(dataset, snapshot.name).schema
        if schema is None:
            raise ValueError(f"table {snapshot.name!r} does not exist and has no known schema")
        return pads.dataset(schema.empty_table())
    return warehouse.dataset(dataset, snapshot.name, version=snapshot.version)


def snapshots_table(snapshots: list[TableSnapshot]) -> pa.Table:
    """The ``warehouse_tables`` view: which version of each table the session reads."""
    return pa.table(
        {
            "table_name": [s.name for s in snapshots],
            "version": pa.array([s.version for s in snapshots], pa.int64()),
            "latest_version": pa.array([s.latest_version for s in snapshots], pa.int64()),
            "committed_at": pa.array([s.committed_at for s in snapshots], pa.timestamp("us", tz="UTC")),
            "partition_columns": pa.array([list(s.partition_columns) for s in snapshots], pa.list_(pa.string())),
            "num_files": pa.array([s.num_files for s in snapshots], pa.int64()),
            "exists": [s.version is not None for s in snapshots],
        }
    )
