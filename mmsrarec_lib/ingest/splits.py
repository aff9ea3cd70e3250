"""Evaluation splits: k-core filter, ``split_loo`` and ``eval_candidates`` (the paper's protocol).

- k-core (``k >= 2``; ``k <= 1`` disables it): repeatedly drop users and items with fewer than ``k`` interactions
  until none is left; sequences are then rebuilt from the surviving interactions.
- ``split_loo``: per user with sequence ``s`` of length ``n``: test target ``s[n-1]``, valid ``s[n-2]``, train
  ``s[n-3]``; history = everything before the target. A split needs a non-empty history, so a user appears in
  test when ``n >= 2``, valid when ``n >= 3``, train when ``n >= 4``.
- ``eval_candidates``: target = the user's last item, history = the ``history_len`` (5) items before it (a user
  needs ``n >= history_len + 1``, else is left out); 20 negatives drawn uniformly without replacement from the
  k-core item pool minus every item the user ever interacted with (before k-core too), from an RNG seeded by
  (seed, user_id), so a user's negatives do not depend on partitioning or on other users. A user with fewer
  than ``n_negatives`` eligible items is left out. Users are split 8:1:1 by ranking them on
  sha256(seed:user_id): valid = round(10%), test = round(10%), train = the rest.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmsrarec_lib import schemas
from mmsrarec_lib.ingest import common
from mmsrarec_lib.ingest.sources import SOURCE_ROW

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class SplitConfig:
    k_core: int = field(default=5, metadata={"help": "k-core filter before the splits (<=1: off)"})
    seed: int = field(default=0, metadata={"help": "seed of the user split and negative sampling"})
    history_len: int = field(default=5, metadata={"help": "history items of an eval_candidates row"})
    n_negatives: int = field(default=20, metadata={"help": "sampled negatives per evaluation user (paper protocol)"})
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class SplitResult:
    user_sequences: pa.Table  # schemas.USER_SEQUENCES (all interactions, not k-core filtered)
    split_loo: pa.Table  # schemas.SPLIT_LOO
    eval_candidates: pa.Table  # schemas.EVAL_CANDIDATES
    kcore_users: int
    kcore_items: int
    kcore_interactions: int


def _seed_int(*parts: object) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:16], 16)


def split_key(user_id: str, seed: int) -> str:
    """The hex key users are ranked on for the 8:1:1 user split."""
    return hashlib.sha256(f"split:{seed}:{user_id}".encode()).hexdigest()


def sample_negatives(
    pool: list[str], exclude: set[str], *, k: int, seed: int, user_id: str, pool_set: frozenset | None = None
) -> list[str] | None:
    """``k`` distinct items of ``pool`` (sorted, unique) not in ``exclude``, seeded by (seed, user_id).

    None when fewer than ``k`` items are eligible. ``pool_set`` (= frozenset(pool)) saves rebuilding it per user.
    """
    rng = np.random.default_rng(_seed_int("neg", seed, user_id))
    eligible = len(pool) - len(exclude & (pool_set if pool_set is not None else frozenset(pool)))
    if eligible < k:
        return None
    if eligible < 2 * k or eligible < len(pool) // 2:
        allowed = [i for i in pool if i not in exclude]
        return [allowed[j] for j in rng.choice(len(allowed), size=k, replace=False)]
    chosen: dict[str, None] = {}
    while len(chosen) < k:  # rejection sampling: cheap when most of the pool is eligible
        item = pool[int(rng.integers(len(pool)))]
        if item not in exclude:
            chosen.setdefault(item, None)
    return list(chosen)


def kcore_flags(df, k: int, *, n_rows: int | None = None):
    """Spark: ``df`` plus a boolean ``_keep``: the row survives the iterative k-core filter.

    Each iteration counts kept rows per user and per item (window counts, two shuffles) and keeps rows whose user
    and item both have >= k; one Spark job per iteration (a lazily checkpointed count) until nothing changes.
    ``n_rows`` (the input's row count, when the caller knows it) saves a count.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    current = df.withColumn("_keep", F.lit(True))
    if k <= 1:
        return current
    n = df.count() if n_rows is None else n_rows
    kept = F.when(F.col("_keep"), 1)
    for it in range(1, 10_000):
        user_n = F.count(kept).over(Window.partitionBy("user_id"))
        item_n = F.count(kept).over(Window.partitionBy("item_id"))
        nxt = current.withColumn("_u", user_n).withColumn("_i", item_n)
        nxt = nxt.withColumn("_keep", F.col("_keep") & (F.col("_u") >= k) & (F.col("_i") >= k)).drop("_u", "_i")
        nxt = nxt.localCheckpoint(eager=False)
        m = nxt.where(F.col("_keep")).count()
        log.info("k-core(%d) iteration %d: %d -> %d interactions", k, it, n, m)
        current = nxt
        if m == n:
            break
        n = m
    return current


def kcore(df, k: int, *, n_rows: int | None = None):
    """Spark: the interactions that survive the iterative k-core filter (users and items with >= k rows)."""
    from pyspark.sql import functions as F

    return kcore_flags(df, k, n_rows=n_rows).where(F.col("_keep")).drop("_keep")


SPLIT_ROWS = pa.schema([
    pa.field("_kind", pa.string()),  # seq (one per user, with its k-core length) | loo | eval
    pa.field("user_id", pa.string()),
    pa.field("split", pa.string()),
    pa.field("history", schemas.STR_LIST),
    pa.field("target_item_id", pa.string()),
    pa.field("target_timestamp", schemas.TS),
    pa.field("negative_item_ids", schemas.STR_LIST),
    pa.field("_split_key", pa.string()),
    pa.field("_length", pa.int64()),
    pa.field("item_ids", schemas.STR_LIST),
    pa.field("timestamps", pa.list_(schemas.TS)),
])
SPLIT_ROWS_DDL = (
    "_kind string, user_id string, split string, history array<string>, target_item_id string, "
    "target_timestamp timestamp, negative_item_ids array<string>, _split_key string, _length bigint, "
    "item_ids array<string>, timestamps array<timestamp>"
)


def user_split_rows(user_id: str, items: list[str], timestamps: list, all_items: set[str], pool: list[str],
                    pool_set: frozenset, cfg: SplitConfig) -> list[dict]:
    """The split rows of one user's k-core sequence: its ``loo`` rows and its ``eval`` row."""
    n = len(items)
    rows = []
    for split, back in (("train", 3), ("valid", 2), ("test", 1)):
        if n >= back + 1:  # the history before the target must not be empty
            pos = n - back
            rows.append({"_kind": "loo", "user_id": user_id, "split": split, "history": items[:pos],
                         "target_item_id": items[pos], "target_timestamp": timestamps[pos]})
    h = cfg.history_len
    if n >= h + 1:
        negatives = sample_negatives(pool, all_items, k=cfg.n_negatives, seed=cfg.seed, user_id=user_id,
                                     pool_set=pool_set)
        if negatives is not None:
            rows.append({"_kind": "eval", "user_id": user_id, "history": items[-h - 1 : -1],
                         "target_item_id": items[-1], "target_timestamp": timestamps[-1],
                         "negative_item_ids": negatives, "_split_key": split_key(user_id, cfg.seed)})
    return rows


def _split_batches(batches, pool: list[str], cfg: SplitConfig):
    """mapInArrow body: per user (all events sorted, each flagged k-core or not) -> SPLIT_ROWS.

    Columnar: the ``seq`` rows reuse the Arrow lists as they are; only the split rows are built in Python.
    """
    pool_set = frozenset(pool)
    for batch in batches:
        users = batch.column("user_id").to_pylist()
        events = batch.column("events")  # list<struct<timestamp, source_row, item_id, _keep>>, one per user
        offsets = np.asarray(events.offsets) - events.offsets[0].as_py()  # (users + 1,)
        flat = events.flatten()
        item_arr, ts_arr = flat.field("item_id"), flat.field("timestamp")
        items, stamps = item_arr.to_pylist(), ts_arr.to_pylist()
        keep = np.asarray(flat.field("_keep").to_numpy(zero_copy_only=False), dtype=bool)  # (events,)
        kept_before = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])  # (events + 1,)
        core_len = kept_before[offsets[1:]] - kept_before[offsets[:-1]]  # (users,) k-core length per user
        n = len(users)
        yield pa.RecordBatch.from_arrays(
            [pa.array(["seq"] * n), pa.array(users, pa.string()), pa.nulls(n, pa.string()),
             pa.nulls(n, schemas.STR_LIST), pa.nulls(n, pa.string()), pa.nulls(n, schemas.TS),
             pa.nulls(n, schemas.STR_LIST), pa.nulls(n, pa.string()), pa.array(core_len, pa.int64()),
             pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), item_arr),
             pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), ts_arr)],
            schema=SPLIT_ROWS,
        )
        out: list[dict] = []
        for u, user in enumerate(users):
            if not core_len[u]:
                continue  # every row of this user was removed by k-core
            span = range(offsets[u], offsets[u + 1])
            core = [j for j in span if keep[j]]
            out += user_split_rows(user, [items[j] for j in core], [stamps[j] for j in core],
                                   {items[j] for j in span}, pool, pool_set, cfg)
        yield pa.RecordBatch.from_pylist(out, schema=SPLIT_ROWS)


def assign_user_splits(keys: list[str], ratios: tuple[float, float, float]) -> list[str]:
    """Split label per position of ``keys``: rank by key, first ~80% train, next ~10% valid, last ~10% test."""
    n = len(keys)
    n_valid, n_test = round(n * ratios[1]), round(n * ratios[2])
    n_train = n - n_valid - n_test
    order = sorted(range(n), key=lambda i: keys[i])
    labels = [""] * n
    for rank, i in enumerate(order):
        labels[i] = "train" if rank < n_train else ("valid" if rank < n_train + n_valid else "test")
    return labels


def build_splits(spark, *, interactions: pa.Table, cfg: SplitConfig) -> SplitResult:
    """USER_SEQUENCES, then k-core, SPLIT_LOO and EVAL_CANDIDATES, from the whole interactions table.

    Spark jobs: one per k-core iteration, one for the item pool, one for the sequences and all split rows.
    """
    from pyspark.sql import functions as F

    if cfg.history_len < 1 or cfg.n_negatives < 1:
        raise ValueError("history_len and n_negatives must be >= 1")
    df = common.to_spark(spark, interactions.select(["user_id", "item_id", "timestamp", SOURCE_ROW]))
    flagged = kcore_flags(df, cfg.k_core, n_rows=interactions.num_rows)
    pool = sorted(r["item_id"] for r in flagged.where(F.col("_keep")).select("item_id").distinct().collect())
    # sorted by (timestamp, source_row): the deterministic tie-break on input row order
    event = F.struct("timestamp", SOURCE_ROW, "item_id", "_keep")
    per_user = flagged.groupBy("user_id").agg(F.array_sort(F.collect_list(event)).alias("events"))
    out = per_user.mapInArrow(lambda it: _split_batches(it, pool, cfg), SPLIT_ROWS_DDL).toArrow()
    kind = out.column("_kind")
    seq = out.filter(pc.equal(kind, "seq"))
    users = seq.filter(pc.greater(seq.column("_length"), 0))
    sequences = seq.append_column("length", pc.list_value_length(seq.column("item_ids")).cast(pa.int32()))
    sequences = sequences.select(schemas.USER_SEQUENCES.names).cast(schemas.USER_SEQUENCES)
    sequences = sequences.sort_by([("user_id", "ascending")]) if sequences.num_rows else sequences
    loo = out.filter(pc.equal(kind, "loo")).select(schemas.SPLIT_LOO.names).cast(schemas.SPLIT_LOO)
    loo = loo.sort_by([("user_id", "ascending"), ("split", "ascending")]) if loo.num_rows else loo
    ev = out.filter(pc.equal(kind, "eval"))
    labels = assign_user_splits(ev.column("_split_key").to_pylist(), cfg.ratios) if ev.num_rows else []
    ev = ev.set_column(ev.column_names.index("split"), "split", pa.array(labels, pa.string()))
    ev = ev.select(schemas.EVAL_CANDIDATES.names).cast(schemas.EVAL_CANDIDATES)
    ev = ev.sort_by([("user_id", "ascending")]) if ev.num_rows else ev
    result = SplitResult(
        user_sequences=sequences, split_loo=loo, eval_candidates=ev, kcore_users=users.num_rows,
        kcore_items=len(pool),
        kcore_interactions=int(pc.sum(users.column("_length")).as_py() or 0),
    )
    counts = pc.value_counts(ev.column("split")).to_pylist() if ev.num_rows else []
    log.info("splits: k-core(%d) keeps %d users, %d items, %d interactions; split_loo %d rows; eval_candidates %s",
             cfg.k_core, result.kcore_users, result.kcore_items, result.kcore_interactions, loo.num_rows, counts)
    return result
