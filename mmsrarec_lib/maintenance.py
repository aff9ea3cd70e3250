"""Delta upkeep of a dataset's tables: compact small files, z-order, vacuum, prune staging (``mmsrarec maintain``).

Why: appends (``interactions``, ``ingest_runs``, ``evaluation_runs``), MERGEs in 128-item chunks (``item_keywords``,
``user_collab_keywords``) and one ``recommendations`` partition a night leave many small files; every query opens
each of them.

Per table, with delta-rs' own operations (each one commit, with the lineage metadata of every write):

1. ``optimize.compact`` bin-packs small files into files of ``target_size`` (delta-rs default 100 MiB), per
   partition. ``recommendations`` is instead ``optimize.z_order(["user_id"])`` on the partitions split across
   several files (a partition written by ``publish-recommendations`` is one file already sorted by user_id, so
   rewriting it would buy nothing).
2. ``vacuum`` deletes data files that were removed from the table more than ``retention`` ago. A version stays
   readable (time travel) as long as its files exist, so every version committed within the retention window stays
   queryable; older ones may not. The default retention is 7 days (``RETENTION_DAYS``, the time travel promised in
   README "Warehouse"); delta-rs refuses a retention below the table's ``delta.deletedFileRetentionDuration`` (also
   7 days by default) unless ``allow_short_retention``.
3. Staged recommendation shards (``staging/recommendations/run_date=D``) older than the retention are deleted.

The whole run holds the dataset's write lock (:mod:`mmsrarec_lib.locks`), after repairing a run that died mid-way:
no job rewrites a table while it is compacted, and no half-done run's base version is vacuumed from under its
rollback. Each table reports files and bytes before/after (active files of the latest version, and data files on
storage, which still include the removed files that vacuum keeps for time travel).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow.fs as pafs

from mmsrarec_lib import tables
from mmsrarec_lib.storage import Warehouse, commit_properties

log = logging.getLogger(__name__)

RETENTION_DAYS = 7
ZORDER: Mapping[str, tuple[str, ...]] = {tables.RECOMMENDATIONS: ("user_id",)}


@dataclass(frozen=True)
class MaintenanceConfig:
    dataset: str
    tables: tuple[str, ...] = ()  # empty = every Delta table of the dataset
    retention_days: float = field(default=RETENTION_DAYS, metadata={"help": (
        "vacuum keeps every version newer than this many days")})
    allow_short_retention: bool = field(default=False, metadata={"help": (
        "allow --retention-days below the promised time travel (tests, scratch warehouses)")})
    target_size: int | None = None  # bytes; None = delta-rs' default
    zorder: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(ZORDER))
    vacuum: bool = field(default=True,
                         metadata={"help": "vacuum old files (--no-vacuum: compact only, delete nothing)"})

    def __post_init__(self) -> None:
        if self.retention_days < 0:
            raise ValueError(f"--retention-days must be >= 0, got {self.retention_days}")
        if self.retention_days < RETENTION_DAYS and not self.allow_short_retention:
            raise ValueError(f"--retention-days {self.retention_days} is shorter than the {RETENTION_DAYS} days of"
                             " time travel README promises; pass --allow-short-retention to mean it")

    @property
    def retention_hours(self) -> int:
        return int(round(self.retention_days * 24))


@dataclass(frozen=True)
class FileStats:
    active_files: int
    active_bytes: int
    storage_files: int  # data files on storage (active + removed but not yet vacuumed)
    versions: int  # commits in the log


def file_stats(warehouse: Warehouse, dataset: str, table: str) -> FileStats:
    dt_ = warehouse.delta_table(dataset, table)
    actions = dt_.get_add_actions(flatten=True)
    sizes = actions.column("size_bytes").to_pylist() if actions.num_rows else []
    fs, root = warehouse.filesystem()
    path = root + warehouse.table_uri(dataset, table)[len(warehouse.root):]
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    data = [i for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet")
            and "/_delta_log/" not in i.path]
    log_names = warehouse.list_dir(warehouse.uri(dataset, table, "_delta_log"))
    versions = sum(1 for n in log_names if n.endswith(".json") and n[:-5].isdigit())
    return FileStats(active_files=len(sizes), active_bytes=int(sum(sizes)), storage_files=len(data),
                     versions=versions)


def _multi_file_partitions(warehouse: Warehouse, dataset: str, table: str, column: str) -> list[str]:
    """Values of partition ``column`` whose rows are spread over more than one active file."""
    actions = warehouse.delta_table(dataset, table).get_add_actions(flatten=True)
    name = f"partition.{column}"
    if not actions.num_rows or name not in actions.column_names:
        return []
    counts: dict[str, int] = {}
    for value in actions.column(name).to_pylist():
        counts[str(value)] = counts.get(str(value), 0) + 1
    return sorted(v for v, n in counts.items() if n > 1)


def maintain_table(warehouse: Warehouse, dataset: str, table: str, *, config: MaintenanceConfig) -> dict:
    """Compact (or z-order), then vacuum one table; returns what it did and the file counts before/after."""
    t0 = time.perf_counter()
    before = file_stats(warehouse, dataset, table)
    props = {"maintenance": "optimize"}
    partitions = list(warehouse.delta_table(dataset, table).metadata().partition_columns)
    out: dict = {"table": table, "before": before.__dict__}
    if table in config.zorder:
        column = partitions[0] if partitions else None
        todo = _multi_file_partitions(warehouse, dataset, table, column) if column else ["*"]
        zorder_metrics = []
        for value in todo:
            filters = [(column, "=", value)] if column and value != "*" else None
            metrics = warehouse.delta_table(dataset, table).optimize.z_order(
                list(config.zorder[table]), partition_filters=filters, target_size=config.target_size,
                commit_properties=commit_properties(extra={**props, "zorder": ",".join(config.zorder[table])}))
            zorder_metrics.append(metrics)
        out["zorder_partitions"] = todo
        out["files_removed"] = sum(int(m.get("numFilesRemoved", 0)) for m in zorder_metrics)
        out["files_added"] = sum(int(m.get("numFilesAdded", 0)) for m in zorder_metrics)
    else:
        metrics = warehouse.delta_table(dataset, table).optimize.compact(
            target_size=config.target_size, commit_properties=commit_properties(extra=props))
        out["files_removed"], out["files_added"] = int(metrics.get("numFilesRemoved", 0)), int(
            metrics.get("numFilesAdded", 0))
    if config.vacuum:
        deleted = warehouse.delta_table(dataset, table).vacuum(
            retention_hours=config.retention_hours, dry_run=False,
            enforce_retention_duration=not config.allow_short_retention,
            commit_properties=commit_properties(extra={"maintenance": "vacuum"}))
        out["vacuumed_files"] = len(deleted)
    out["after"] = file_stats(warehouse, dataset, table).__dict__
    out["seconds"] = round(time.perf_counter() - t0, 3)
    log.info("%s: active files %d -> %d, files on storage %d -> %d (%d vacuumed) in %.1f s", table,
             before.active_files, out["after"]["active_files"], before.storage_files, out["after"]["storage_files"],
             out.get("vacuumed_files", 0), out["seconds"])
    return out


def delta_tables(warehouse: Warehouse, dataset: str) -> list[str]:
    """Folders of ``<root>/<dataset>/`` that hold a Delta log."""
    return [n for n in warehouse.list_dir(warehouse.uri(dataset)) if not n.startswith((".", "_"))
            and warehouse.exists(warehouse.uri(dataset, n, "_delta_log"))]


def maintain(warehouse: Warehouse, *, config: MaintenanceConfig, today: dt.date | None = None) -> dict:
    """Maintain every table of the dataset (or ``config.tables``), then prune old staging; returns the report."""
    from mmsrarec_lib.locks import dataset_lock
    from mmsrarec_lib.recommend.publish import prune_staging
    from mmsrarec_lib.runs import new_run_id
    from mmsrarec_lib.snapshots import repair

    tables: Sequence[str] = config.tables or delta_tables(warehouse, config.dataset)
    missing = [t for t in tables if not warehouse.has_table(config.dataset, t)]
    if missing:
        raise FileNotFoundError(f"no Delta table {', '.join(missing)} in dataset {config.dataset!r}")
    run_id = new_run_id("maintain")
    with dataset_lock(warehouse, config.dataset, owner=run_id, purpose="maintain") as lease:
        repair(warehouse, config.dataset, by=run_id)
        reports = []
        for table in tables:
            lease.check()
            reports.append(maintain_table(warehouse, config.dataset, table, config=config))
        today = today or dt.datetime.now(dt.UTC).date()
        cutoff = today - dt.timedelta(days=max(1, int(config.retention_days)))
        pruned = prune_staging(warehouse, config.dataset, older_than=cutoff)
    return {"dataset": config.dataset, "retention_hours": config.retention_hours, "tables": reports,
            "staging_pruned": pruned,
            "active_files": {"before": sum(r["before"]["active_files"] for r in reports),
                             "after": sum(r["after"]["active_files"] for r in reports)}}
