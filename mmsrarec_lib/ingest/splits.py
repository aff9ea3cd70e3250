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
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmsrarec_lib import schemas
from mmsrarec_lib.ingest import common
from mmsrarec_lib.ingest.interactions import sequences_frame
from mmsrarec_lib.ingest.sources import SOURCE_ROW

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
EVAL_DDL = (
    "user_id string, history array<string>, target_item_id string, target_timestamp timestamp, "
    "negative_item_ids array<string>, _split_key string"
)


@dataclass(frozen=True)
class SplitConfig:
    k_core: int = 5
    seed: int = 0
    history_len: int = 5
    n_negatives: int = 20
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class SplitResult:
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


def kcore(df, k: int, *, n_rows: int | None = None):
    """Spark: the interactions that survive the iterative k-core filter (users and items with >= k rows).

    One Spark job per iteration (filter + lazily checkpointed count); stops when an iteration removes nothing.
    ``n_rows`` (the input's row count, when the caller knows it) saves a count.
    """
    from pyspark.sql import functions as F

    if k <= 1:
        return df
    current, n = df, (df.count() if n_rows is None else n_rows)
    for it in range(1, 10_000):
        users = current.groupBy("user_id").count().where(F.col("count") >= k).select("user_id")
        items = current.groupBy("item_id").count().where(F.col("count") >= k).select("item_id")
        nxt = current.join(users, "user_id", "left_semi").join(items, "item_id", "left_semi")
        nxt = nxt.localCheckpoint(eager=False)
        m = nxt.count()
        log.info("k-core(%d) iteration %d: %d -> %d interactions", k, it, n, m)
        current = nxt
        if m == n:
            break
        n = m
    return current


def loo_frame(seq):
    """Spark: SPLIT_LOO rows from USER_SEQUENCES-shaped rows (history + [target] = the sequence prefix)."""
    from pyspark.sql import functions as F

    parts = []
    for split, back in (("train", 3), ("valid", 2), ("test", 1)):
        pos = F.col("length") - back + 1  # 1-based position of the target
        parts.append(
            seq.where(F.col("length") >= back + 1).select(
                "user_id",
                F.lit(split).alias("split"),
                F.slice("item_ids", 1, pos - 1).alias("history"),
                F.element_at("item_ids", pos).alias("target_item_id"),
                F.element_at("timestamps", pos).alias("target_timestamp"),
            )
        )
    return parts[0].unionByName(parts[1]).unionByName(parts[2])


def _eval_batches(batches, pool: list[str], cfg: SplitConfig):
    h = cfg.history_len
    pool_set = frozenset(pool)
    for batch in batches:
        out = {n: [] for n in ("user_id", "history", "target_item_id", "target_timestamp", "negative_item_ids",
                               "_split_key")}
        for row in batch.to_pylist():
            items = row["item_ids"]
            if len(items) < h + 1:
                continue
            negatives = sample_negatives(pool, set(row["all_items"]), k=cfg.n_negatives, seed=cfg.seed,
                                         user_id=row["user_id"], pool_set=pool_set)
            if negatives is None:
                continue
            out["user_id"].append(row["user_id"])
            out["history"].append(items[-h - 1 : -1])
            out["target_item_id"].append(items[-1])
            out["target_timestamp"].append(row["timestamps"][-1])
            out["negative_item_ids"].append(negatives)
            out["_split_key"].append(split_key(row["user_id"], cfg.seed))
        yield pa.RecordBatch.from_pydict(out, schema=pa.schema(
            [*[f for f in schemas.EVAL_CANDIDATES if f.name != "split"], pa.field("_split_key", pa.string())]))


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
    """k-core, then SPLIT_LOO and EVAL_CANDIDATES from the whole interactions table."""
    from pyspark.sql import functions as F

    if cfg.history_len < 1 or cfg.n_negatives < 1:
        raise ValueError("history_len and n_negatives must be >= 1")
    df = common.to_spark(spark, interactions.select(["user_id", "item_id", "timestamp", SOURCE_ROW]))
    core = kcore(df, cfg.k_core, n_rows=interactions.num_rows).cache()
    seq = sequences_frame(core).cache()
    loo = common.to_arrow(loo_frame(seq), schemas.SPLIT_LOO, sort_by=[("user_id", "ascending"), ("split", "ascending")])

    pool = sorted(r["item_id"] for r in core.select("item_id").distinct().collect())
    all_items = df.groupBy("user_id").agg(F.collect_set("item_id").alias("all_items"))
    joined = seq.join(all_items, "user_id", "inner")
    ev = joined.mapInArrow(lambda it: _eval_batches(it, pool, cfg), EVAL_DDL).toArrow()
    labels = assign_user_splits(ev.column("_split_key").to_pylist(), cfg.ratios) if ev.num_rows else []
    ev = ev.append_column("split", pa.array(labels, pa.string())).drop(["_split_key"])
    ev = ev.select(schemas.EVAL_CANDIDATES.names).cast(schemas.EVAL_CANDIDATES).sort_by([("user_id", "ascending")])
    result = SplitResult(
        split_loo=loo, eval_candidates=ev, kcore_users=seq.count(), kcore_items=len(pool),
        kcore_interactions=core.count(),
    )
    seq.unpersist()
    core.unpersist()
    counts = pc.value_counts(ev.column("split")).to_pylist() if ev.num_rows else []
    log.info("splits: k-core(%d) keeps %d users, %d items, %d interactions; split_loo %d rows; eval_candidates %s",
             cfg.k_core, result.kcore_users, result.kcore_items, result.kcore_interactions, loo.num_rows, counts)
    return result
