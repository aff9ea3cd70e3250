"""Staging, checking and publishing the nightly recommendations: shards in, one Delta commit out.

Sharded scoring (``mmsrarec recommend --shard I/N``) writes each shard's rows to a staging area under the
warehouse, never to ``recommendations`` itself::

    <warehouse>/<dataset>/staging/recommendations/run_date=<D>/<key>/shard-<I>.parquet   the shard's rows
                                                                 .../shard-<I>.json      its receipt

``<key>`` is ``shards=<N>`` for orchestrated runs (so a rerun with another N never mixes with this one) or a private
``run-<id>`` for a one-process ``mmsrarec recommend``. Both files are written atomically (temp file + rename), the
receipt last: a receipt means the shard is complete, and a retried shard overwrites its own two files, so it can
never add rows twice. The receipt holds the shard's users (the gate needs users with no row too), the fingerprint
of the whole selection, the parquet's sha256 and row count.

:func:`publish_recommendations` then requires every shard's receipt, checks that all shards scored the same
selection with the same model and K, that their users are disjoint and add up to the selection, runs the quality
gate (:mod:`mmsrarec_lib.recommend.gate`) and replaces the ``run_date`` partition in **one** commit. Anything
missing or failing raises before the commit, so yesterday's (or this date's previous) partition stays visible.

The publish holds the dataset's write lock (:mod:`mmsrarec_lib.locks`, shared with ``ingest`` and
``refresh-collab``) from reading the shards to advancing the watermark, and first repairs an ingest that died
mid-way, so the gate checks against a consistent ``items`` / ``user_sequences``. Two publishes of one date
therefore run one after the other; should a writer without the lock race it anyway, delta-rs detects the
conflicting partition overwrite (``CommitFailedError``) and the loser commits again on top: one copy is left.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake.exceptions import CommitFailedError

from mmsrarec_lib import schemas, tables
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)

TABLE = tables.RECOMMENDATIONS
STAGING = ("staging", TABLE)
PUBLISH_ATTEMPTS = 5


class PublishError(ValueError):
    """Staged shards are missing or inconsistent: nothing was published."""


@dataclass(frozen=True)
class ShardReceipt:
    """What a finished shard wrote (``shard-<I>.json``)."""

    shard: int
    shards: int
    run_date: str
    selection_sha256: str
    selected_users: int
    users: tuple[str, ...]
    rows: int
    parquet_sha256: str
    model_run: str
    top_k: int
    newest_interaction_us: int
    created_at: str

    def to_json(self) -> bytes:
        return json.dumps({**self.__dict__, "users": list(self.users)}, indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ShardReceipt:
        data = json.loads(raw)
        return cls(**{**data, "users": tuple(data["users"])})


# --------------------------------------------------------------------------- watermarks (users=changed)
def watermarks_uri(warehouse: Warehouse, dataset: str) -> str:
    return warehouse.uri(dataset, "state", "recommend_watermarks.json")


def read_watermarks(warehouse: Warehouse, dataset: str) -> dict[str, int]:
    uri = watermarks_uri(warehouse, dataset)
    return json.loads(warehouse.read_bytes(uri)) if warehouse.exists(uri) else {}


def write_watermark(warehouse: Warehouse, dataset: str, *, run_date: dt.date, newest: int) -> None:
    marks = read_watermarks(warehouse, dataset)
    marks[run_date.isoformat()] = newest
    warehouse.write_bytes(watermarks_uri(warehouse, dataset), json.dumps(marks, indent=1, sort_keys=True).encode())


# --------------------------------------------------------------------------- staging
def selection_fingerprint(users: Sequence[str]) -> str:
    """sha256 of the selected user ids (in selection order): shards of one selection share it."""
    return hashlib.sha256("\n".join(users).encode()).hexdigest()


def staging_uri(warehouse: Warehouse, dataset: str, *, run_date: dt.date, key: str) -> str:
    return warehouse.uri(dataset, *STAGING, f"run_date={run_date.isoformat()}", key)


def shards_key(shards: int) -> str:
    return f"shards={shards}"


def write_shard(
    warehouse: Warehouse,
    dataset: str,
    *,
    rows: pa.Table,
    receipt: ShardReceipt,
    key: str,
) -> str:
    """Stage one shard's rows, then its receipt (both atomically); returns the staging folder."""
    folder = staging_uri(warehouse, dataset, run_date=dt.date.fromisoformat(receipt.run_date), key=key)
    buf = io.BytesIO()
    pq.write_table(rows, buf)
    data = buf.getvalue()
    receipt = ShardReceipt(**{**receipt.__dict__, "rows": rows.num_rows,
                              "parquet_sha256": hashlib.sha256(data).hexdigest()})
    warehouse.write_bytes(f"{folder}/shard-{receipt.shard}.parquet", data)
    warehouse.write_bytes(f"{folder}/shard-{receipt.shard}.json", receipt.to_json())
    log.info("staged shard %d/%d of %s: %d users, %d rows -> %s", receipt.shard, receipt.shards,
             receipt.run_date, len(receipt.users), rows.num_rows, folder)
    return folder


def read_shards(
    warehouse: Warehouse, dataset: str, *, run_date: dt.date, shards: int, key: str | None = None
) -> tuple[pa.Table, list[ShardReceipt]]:
    """All ``shards`` staged shards of ``run_date``, checked for completeness and consistency."""
    folder = staging_uri(warehouse, dataset, run_date=run_date, key=key or shards_key(shards))
    missing = [i for i in range(shards) if not warehouse.exists(f"{folder}/shard-{i}.json")]
    if missing:
        raise PublishError(f"{len(missing)} of {shards} shards of {run_date} are not staged (missing shard"
                           f" {', '.join(map(str, missing))} in {folder}): nothing published")
    receipts, tables = [], []
    for i in range(shards):
        receipt = ShardReceipt.from_json(warehouse.read_bytes(f"{folder}/shard-{i}.json"))
        data = warehouse.read_bytes(f"{folder}/shard-{i}.parquet")
        if hashlib.sha256(data).hexdigest() != receipt.parquet_sha256:
            raise PublishError(f"shard {i} of {run_date}: shard-{i}.parquet does not match its receipt"
                               " (a retry was interrupted between the two files): rerun that shard")
        receipts.append(receipt)
        tables.append(pq.read_table(io.BytesIO(data)).cast(schemas.RECOMMENDATIONS))
    _check_consistent(receipts, shards=shards, run_date=run_date)
    return pa.concat_tables(tables), receipts


def _check_consistent(receipts: list[ShardReceipt], *, shards: int, run_date: dt.date) -> None:
    first = receipts[0]
    for r in receipts:
        same = (r.shards, r.run_date, r.selection_sha256, r.model_run, r.top_k, r.newest_interaction_us)
        if same != (shards, run_date.isoformat(), first.selection_sha256, first.model_run, first.top_k,
                    first.newest_interaction_us):
            raise PublishError(f"shard {r.shard} of {run_date} was scored for another selection, model or K than"
                               f" shard {first.shard} (model {r.model_run} vs {first.model_run}, top_k {r.top_k} vs"
                               f" {first.top_k}, selection {r.selection_sha256[:12]} vs"
                               f" {first.selection_sha256[:12]}): rerun all shards of the date")
    users = [u for r in receipts for u in r.users]
    if len(users) != len(set(users)) or len(users) != first.selected_users:
        raise PublishError(f"the {shards} shards of {run_date} hold {len(users)} users ({len(set(users))} distinct)"
                           f" but the selection has {first.selected_users}: rerun all shards of the date")


# --------------------------------------------------------------------------- publish
def replace_partition(
    warehouse: Warehouse, dataset: str, table: pa.Table, *, run_date: dt.date, metadata: dict | None = None
) -> int:
    """Replace the ``run_date`` partition with ``table`` in one commit, retrying a commit that lost a race."""
    bad = table.filter(pc.not_equal(table.column("run_date"), pa.scalar(run_date, pa.date32())))
    if bad.num_rows:
        raise PublishError(f"{bad.num_rows} staged rows are not of run_date {run_date}")
    for attempt in range(1, PUBLISH_ATTEMPTS + 1):
        try:
            if not warehouse.has_table(dataset, TABLE):
                return warehouse.write_table(dataset, TABLE, table, mode="overwrite", partition_by=["run_date"],
                                             metadata=metadata)
            return warehouse.write_table(dataset, TABLE, table, mode="overwrite", partition_by=["run_date"],
                                         predicate=f"run_date = '{run_date.isoformat()}'", metadata=metadata)
        except CommitFailedError as exc:
            if attempt == PUBLISH_ATTEMPTS:
                raise
            log.warning("publish of %s lost a commit race (%s); retry %d", run_date, exc, attempt)
            time.sleep(random.uniform(0.05, 0.3) * attempt)
    raise AssertionError("unreachable")


def publish_recommendations(
    warehouse: Warehouse,
    dataset: str,
    *,
    run_date: dt.date,
    shards: int,
    key: str | None = None,
) -> dict:
    """Check all staged shards, run the quality gate, replace the partition in one commit, advance the watermark."""
    from mmsrarec_lib.locks import dataset_lock
    from mmsrarec_lib.recommend.gate import run_quality_gate
    from mmsrarec_lib.runs import new_run_id
    from mmsrarec_lib.snapshots import repair

    if shards < 1:
        raise ValueError(f"--shards must be >= 1, got {shards}")
    run_id = new_run_id("publish-recommendations")
    with dataset_lock(warehouse, dataset, owner=run_id, purpose=f"publish recommendations {run_date}") as lease:
        repair(warehouse, dataset, by=run_id)  # an ingest that died mid-way is rolled back before the gate reads
        table, receipts = read_shards(warehouse, dataset, run_date=run_date, shards=shards, key=key)
        first = receipts[0]
        users = [u for r in receipts for u in r.users]
        gate = run_quality_gate(warehouse, dataset, staged=table, users=users, top_k=first.top_k,
                                run_date=run_date)
        order = pc.sort_indices(table, sort_keys=[("user_id", "ascending"), ("rank", "ascending")])
        lease.check()  # never commit after losing the lock
        version = replace_partition(warehouse, dataset, table.take(order), run_date=run_date,
                                    metadata={"run_date": run_date.isoformat(), "shards": shards,
                                              "model_run": first.model_run, "rows": table.num_rows})
        write_watermark(warehouse, dataset, run_date=run_date, newest=first.newest_interaction_us)
    log.info("published %d rows for %d users of %s from %d shard(s) as version %d", table.num_rows, len(users),
             run_date, shards, version)
    return {"run_date": run_date.isoformat(), "shards": shards, "users": len(users), "rows": table.num_rows,
            "table_version": version, "model_run": first.model_run, "checks": gate}


def prune_staging(warehouse: Warehouse, dataset: str, *, older_than: dt.date) -> list[str]:
    """Delete staged shards of run_dates before ``older_than`` (published or abandoned); returns their folders."""
    root = warehouse.uri(dataset, *STAGING)
    gone = []
    for name in warehouse.list_dir(root):
        if name.startswith("run_date=") and name[len("run_date="):] < older_than.isoformat():
            warehouse.delete_dir(f"{root}/{name}")
            gone.append(name)
    return gone
