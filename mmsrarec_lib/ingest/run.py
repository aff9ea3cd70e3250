"""The ingest run: items -> interactions -> user_sequences -> k-core splits, each table one Delta commit.

Tables written under ``<warehouse>/<dataset>/``: items, items_quarantine, interactions, interactions_quarantine,
user_sequences, split_loo, eval_candidates, and one ingest_runs row per table.

Concurrency and consistency: the run holds the dataset's write lock (:mod:`mmsrarec_lib.locks`) from its first read
of the warehouse to its last commit, so concurrent appends (and ``refresh-collab``, ``recommend``) queue instead of
rebuilding the derived tables from stale snapshots; and it is a :class:`mmsrarec_lib.snapshots.DatasetRun`: a
``running`` row in ``dataset_runs`` before its first commit, ``complete`` after its last, so readers never see half
a run, a run that raises is rolled back (``failed``), and a killed one is rolled back by the next writer
(``abandoned``). Every table is built before the first commit, and the k-core result is checked before it
(:mod:`.diagnostics`: a filter that leaves nothing to evaluate stops the run with a suggested ``--k-core``).

Modes:
- ``overwrite`` (default): every table is replaced by this run's content, sorted deterministically, so a rerun on
  the same inputs leaves the same rows (a new Delta version; older versions stay readable by time travel).
- ``append`` (nightly new interactions): items are upserted by item_id; interactions not already present are
  appended (rows already there count as duplicates); quarantine rows are appended; sequences and splits are
  rebuilt from the whole interactions table.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from mmsrarec_lib import schemas, tables
from mmsrarec_lib.ingest.diagnostics import check_kcore, kcore_report
from mmsrarec_lib.ingest.interactions import TimestampRange, build_interactions
from mmsrarec_lib.ingest.items import build_item_table
from mmsrarec_lib.ingest.sources import SourceTable, describe_quarantine
from mmsrarec_lib.ingest.splits import SplitConfig, build_splits
from mmsrarec_lib.locks import DEFAULT_TTL_S, DEFAULT_WAIT_S, dataset_lock
from mmsrarec_lib.runs import INGEST_RUNS_TABLE, IngestRun, ingest_runs_update, new_run_id, utcnow
from mmsrarec_lib.snapshots import DatasetRun, repair
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)

ITEMS, ITEMS_Q = tables.ITEMS, tables.ITEMS_QUARANTINE
INTERACTIONS, INTERACTIONS_Q = tables.INTERACTIONS, tables.INTERACTIONS_QUARANTINE
USER_SEQUENCES, SPLIT_LOO, EVAL_CANDIDATES = tables.USER_SEQUENCES, tables.SPLIT_LOO, tables.EVAL_CANDIDATES
TABLES = (ITEMS, ITEMS_Q, INTERACTIONS, INTERACTIONS_Q, USER_SEQUENCES, SPLIT_LOO, EVAL_CANDIDATES)


@dataclass(frozen=True)
class IngestConfig:
    dataset: str
    mode: Literal["overwrite", "append"] = field(default="overwrite", metadata={"help": (
        "overwrite the dataset's tables, or append new interactions (upsert items)")})
    max_image_side: int = field(default=512, metadata={"help": "bound on an image's longest side (px)"})
    image_timeout_s: float = field(default=10.0, metadata={"help": "image fetch timeout per connect / socket read"})
    image_retries: int = field(default=2, metadata={"help": "retries of a failed image fetch"})
    image_deadline_s: float = field(default=30.0, metadata={"help": (
        "total time for one image fetch, retries and backoff included; then it is missing")})
    image_max_bytes: int = field(default=50 * 1024 * 1024, metadata={"help": (
        "largest image accepted in bytes; larger ones are refused")})
    timestamps: TimestampRange = field(default_factory=TimestampRange)
    allow_empty: bool = field(default=False, metadata={"help": (
        "accept an items file (or, with --mode overwrite, an interactions file) with no rows")})
    allow_sparse: bool = field(default=False, metadata={"help": (
        "keep the result when the k-core filter leaves no evaluation users (else the run stops and suggests a "
        "--k-core; see docs/ingest.md)")})
    lock_wait_s: float = field(default=DEFAULT_WAIT_S, metadata={"help": (
        "how long to wait for another writer of the dataset to finish")})
    lock_ttl_s: float = field(default=DEFAULT_TTL_S, metadata={"help": (
        "a writer's lease on the dataset lock; renewed while it runs")})
    splits: SplitConfig = field(default_factory=SplitConfig)

    def __post_init__(self) -> None:
        if self.mode not in ("overwrite", "append"):
            raise ValueError(f"mode must be overwrite or append, got {self.mode!r}")
        if not self.dataset or "/" in self.dataset or self.dataset.startswith("."):
            raise ValueError(f"invalid dataset name {self.dataset!r}")


@dataclass(frozen=True)
class IngestSummary:
    run_id: str
    dataset: str
    counts: dict[str, int]  # rows per table after the run (quarantine: rows written by this run)
    runs: tuple[IngestRun, ...]
    image_status: dict[str, int]
    eval_split_users: dict[str, int]
    seconds: dict[str, float]
    kcore: dict = field(default_factory=dict)  # what the k-core filter kept (diagnostics.KCoreReport)
    warnings: tuple[str, ...] = ()


def _value_counts(col: pa.ChunkedArray) -> dict[str, int]:
    if len(col) == 0:
        return {}
    vc = pc.value_counts(col)
    return dict(sorted(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())))


MERGE_KEYS = {ITEMS: ("item_id",)}


def _upsert_items(warehouse: Warehouse, dataset: str, new: pa.Table) -> pa.Table:
    """Append mode: existing items not in ``new`` plus ``new`` (new rows win), in memory, for the derived tables and
    the counts; the commit itself is a MERGE of ``new`` on ``item_id``."""
    if not warehouse.has_table(dataset, ITEMS):
        return new
    old = warehouse.read_table(dataset, ITEMS).cast(schemas.ITEMS)
    keep = pc.invert(pc.is_in(old.column("item_id"), value_set=new.column("item_id")))
    return pa.concat_tables([old.filter(keep), new]).sort_by([("item_id", "ascending")])


def _refuse_empty(source: SourceTable | None, what: str, config: IngestConfig) -> None:
    if source is not None and source.rows_in == 0 and not config.allow_empty:
        raise ValueError(f"{source.path or what}: the {what} file has no data rows; refusing to "
                         f"{'replace the dataset with' if config.mode == 'overwrite' else 'ingest'} an empty "
                         f"{what} table (pass --allow-empty if that is intended)")


def run_ingest(
    *, warehouse: Warehouse, items: SourceTable | None, interactions: SourceTable, config: IngestConfig,
    spark=None, spark_master: str | None = None,
) -> IngestSummary:
    """Run the whole ingest for one dataset; returns counts and the ingest_runs rows it recorded.

    ``items=None`` is allowed in append mode only (a feed of new interactions): the stored items table is kept.
    """
    _refuse_empty(items, "items", config)
    if config.mode == "overwrite":
        _refuse_empty(interactions, "interactions", config)
    if spark is None:
        from mmsrarec_lib.spark import get_spark

        spark = get_spark(spark_master, app_name=f"mmsrarec-ingest-{config.dataset}")
    if spark.conf.get("spark.sql.session.timeZone") != "UTC":
        # naive ISO datetimes are read in the session time zone; the contract says UTC
        log.warning("setting spark.sql.session.timeZone to UTC for the ingest")
        spark.conf.set("spark.sql.session.timeZone", "UTC")
    run_id = new_run_id("ingest")
    with dataset_lock(warehouse, config.dataset, owner=run_id, purpose=f"ingest --mode {config.mode}",
                      ttl_s=config.lock_ttl_s, wait_s=config.lock_wait_s) as lease:
        repair(warehouse, config.dataset, by=run_id)  # runs that died mid-way: rolled back, marked abandoned
        if items is None and not (config.mode == "append" and warehouse.has_table(config.dataset, ITEMS)):
            raise ValueError("an items file is required, except when appending interactions to an ingested dataset")
        with DatasetRun(warehouse, config.dataset, run_id=run_id, job="ingest",
                        tables=(*TABLES, INGEST_RUNS_TABLE)) as run:

            def commit(table: str, data: pa.Table, mode: str = "overwrite") -> None:
                lease.check()  # never commit after losing the lock
                if mode == "merge":  # upsert on the table's key (delta-rs MERGE: only touched files rewritten)
                    version = warehouse.merge_table(config.dataset, table, data, keys=MERGE_KEYS[table])
                else:
                    version = warehouse.write_table(config.dataset, table, data, mode=mode)  # type: ignore[arg-type]
                run.committed(table, version)

            return _run(warehouse, items, interactions, config, spark, run_id, commit)


def _run(warehouse: Warehouse, items: SourceTable | None, interactions: SourceTable, config: IngestConfig, spark,
         run_id: str, commit) -> IngestSummary:
    """Build every table first, check the k-core result, then commit them one after another (a short window)."""
    ds, append = config.dataset, config.mode == "append"
    seconds, runs = {}, []
    created = utcnow()

    t0, started = time.perf_counter(), utcnow()
    item_res = None
    if items is None:  # interactions-only feed: the catalogue stays as stored
        all_items = warehouse.read_table(ds, ITEMS, columns=["item_id", "image_status"])
        items_quarantined = items_duplicate = 0
    else:
        item_res = build_item_table(
            spark, source=items, run_id=run_id, created_at=created, max_image_side=config.max_image_side,
            image_timeout_s=config.image_timeout_s, image_retries=config.image_retries,
            image_deadline_s=config.image_deadline_s, image_max_bytes=config.image_max_bytes,
        )
        describe_quarantine(items, item_res.quarantine, what="items")
        all_items = _upsert_items(warehouse, ds, item_res.items) if append else item_res.items
        runs.append(IngestRun(run_id, ds, ITEMS, item_res.rows_in, item_res.items.num_rows,
                              item_res.quarantine.num_rows, item_res.rows_duplicate, started, utcnow()))
        items_quarantined, items_duplicate = item_res.quarantine.num_rows, item_res.rows_duplicate
    seconds["items"] = time.perf_counter() - t0

    t0, started = time.perf_counter(), utcnow()
    existing = warehouse.read_table(ds, INTERACTIONS).cast(schemas.INTERACTIONS) if (
        append and warehouse.has_table(ds, INTERACTIONS)) else None
    inter_res = build_interactions(
        spark, source=interactions, item_ids=all_items.column("item_id").combine_chunks(), run_id=run_id,
        created_at=created, existing=existing, timestamps=config.timestamps,
    )
    describe_quarantine(interactions, inter_res.quarantine, what="interactions")
    full = inter_res.new_rows if existing is None else pa.concat_tables([existing, inter_res.new_rows])
    runs.append(IngestRun(run_id, ds, INTERACTIONS, inter_res.rows_in, inter_res.new_rows.num_rows,
                          inter_res.quarantine.num_rows, inter_res.rows_duplicate, started, utcnow()))
    seconds["interactions"] = time.perf_counter() - t0

    t0, started = time.perf_counter(), utcnow()
    split_res = build_splits(spark, interactions=full, cfg=config.splits)
    sequences = split_res.user_sequences
    eval_users = _value_counts(split_res.eval_candidates.column("split"))
    kcore = kcore_report(full, k=config.splits.k_core, users_kept=split_res.kcore_users,
                         items_kept=split_res.kcore_items, interactions_kept=split_res.kcore_interactions,
                         eval_users=eval_users)
    warnings = check_kcore(kcore, full, history_len=config.splits.history_len, allow_sparse=config.allow_sparse)
    finished = utcnow()
    for name, table in ((USER_SEQUENCES, sequences), (SPLIT_LOO, split_res.split_loo),
                        (EVAL_CANDIDATES, split_res.eval_candidates)):
        runs.append(IngestRun(run_id, ds, name, table.num_rows, table.num_rows, 0, 0, started, finished))
    runs = [dataclasses.replace(r, kcore_k=kcore.k, kcore_users=kcore.users_kept, kcore_items=kcore.items_kept,
                                kcore_interactions=kcore.interactions_kept,
                                kcore_share_kept=round(kcore.share_kept, 4),
                                warnings="\n".join(warnings) or None) for r in runs]
    seconds["sequences_and_splits"] = time.perf_counter() - t0

    # every table is built: the commits follow one another, the dataset_runs manifest makes them one publication
    if item_res is not None:
        if append and warehouse.has_table(ds, ITEMS):
            commit(ITEMS, item_res.items, "merge")  # new rows win, stored items not in the file stay
        else:
            commit(ITEMS, all_items)
        commit(ITEMS_Q, item_res.quarantine, "append" if append else "overwrite")
    if existing is None:
        commit(INTERACTIONS, inter_res.new_rows)
    elif inter_res.new_rows.num_rows:
        commit(INTERACTIONS, inter_res.new_rows, "append")
    commit(INTERACTIONS_Q, inter_res.quarantine, "append" if append else "overwrite")
    commit(USER_SEQUENCES, sequences)
    commit(SPLIT_LOO, split_res.split_loo)
    commit(EVAL_CANDIDATES, split_res.eval_candidates)
    commit(INGEST_RUNS_TABLE, *ingest_runs_update(warehouse, runs))
    counts = {
        ITEMS: all_items.num_rows, ITEMS_Q: items_quarantined, INTERACTIONS: full.num_rows,
        INTERACTIONS_Q: inter_res.quarantine.num_rows, "interactions_duplicate": inter_res.rows_duplicate,
        "items_duplicate": items_duplicate, USER_SEQUENCES: sequences.num_rows,
        "users": sequences.num_rows, SPLIT_LOO: split_res.split_loo.num_rows,
        EVAL_CANDIDATES: split_res.eval_candidates.num_rows, "kcore_users": split_res.kcore_users,
        "kcore_items": split_res.kcore_items, "kcore_interactions": split_res.kcore_interactions,
    }
    summary = IngestSummary(
        run_id=run_id, dataset=ds, counts=counts, runs=tuple(runs),
        image_status=_value_counts(all_items.column("image_status")),
        eval_split_users=eval_users, seconds={k: round(v, 2) for k, v in seconds.items()},
        kcore=kcore.to_dict(), warnings=tuple(warnings),
    )
    log.info("ingest %s (%s): %s; images %s; eval users %s; seconds %s", run_id, ds, counts,
             summary.image_status, summary.eval_split_users, summary.seconds)
    return summary
