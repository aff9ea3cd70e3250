"""Spark job ``build_interactions`` (validate, normalise, dedup, quarantine) and ``user_sequences``.

Validation, first failing check wins: ``missing_user_id``, ``missing_item_id`` (ids are stripped of white space of
any kind at both ends, tab and NBSP included; empty after that is missing), ``unknown_item_id`` (not in the items
table), ``unparseable_timestamp``, ``timestamp_out_of_range`` (outside :class:`TimestampRange`: by default
1970-01-01 to ten years after the run), ``invalid_rating`` (given but not a finite number).

Timestamps: unix seconds (integer or decimal, up to 11 digits) or anything Spark's ISO-8601 cast accepts: a date
(``2024-03-01``), a datetime with ``T`` or a space, optional fraction, optional ``Z``/``+hh:mm`` offset. A datetime
without an offset is taken as UTC. Everything is stored as UTC microseconds.

Exact duplicates are rows equal on (user_id, item_id, timestamp, rating, event) after normalisation; the first by
``source_row`` is kept. In append mode a row already present in the existing table is a duplicate too, and new
rows get ``source_row`` offset by the existing maximum so (timestamp, source_row) stays a total arrival order.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from mmsrarec_lib import schemas
from mmsrarec_lib.ingest import common
from mmsrarec_lib.ingest.sources import SOURCE_ROW, SourceTable, require_columns

log = logging.getLogger(__name__)

KEY = ("user_id", "item_id", "timestamp", "rating", "event")
UNIX_SECONDS = r"^-?[0-9]{1,11}(\.[0-9]+)?$"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class TimestampRange:
    """Valid interaction times: ``[earliest, latest]``; ``latest=None`` means ``future_years`` after the run."""

    earliest: dt.datetime = EPOCH
    latest: dt.datetime | None = None
    future_years: int = 10

    def __post_init__(self) -> None:
        for value in (self.earliest, self.latest):
            if value is not None and value.tzinfo is None:
                raise ValueError(f"timestamp bound {value.isoformat()} has no time zone")
        if self.latest is not None and self.latest < self.earliest:
            raise ValueError(f"timestamp range is empty: {self.earliest.isoformat()} > {self.latest.isoformat()}")

    def bounds(self, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        if self.latest is not None:
            return self.earliest, self.latest
        try:
            return self.earliest, now.replace(year=now.year + self.future_years)
        except ValueError:  # 29 February
            return self.earliest, now.replace(year=now.year + self.future_years, day=28)


def _micros(value: dt.datetime) -> int:
    return (value - EPOCH) // dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class InteractionsResult:
    new_rows: pa.Table  # schemas.INTERACTIONS: the rows this run adds
    quarantine: pa.Table  # schemas.QUARANTINE
    rows_in: int
    rows_duplicate: int


def timestamp_column(name: str):
    """A Spark column: the UTC timestamp of string column ``name`` (unix seconds or ISO-8601), null if unparseable."""
    from pyspark.sql import functions as F

    text = F.trim(F.col(name))
    unix = F.timestamp_seconds(F.expr(f"try_cast(trim(`{name}`) AS DOUBLE)"))
    iso = F.expr(f"try_to_timestamp(trim(`{name}`))")
    return F.when(text.rlike(UNIX_SECONDS), unix).otherwise(iso)


def build_interactions(
    spark,
    *,
    source: SourceTable,
    item_ids: pa.Array,
    run_id: str,
    created_at: dt.datetime,
    existing: pa.Table | None = None,
    timestamps: TimestampRange = TimestampRange(),
) -> InteractionsResult:
    """Validate and dedup the interaction rows of ``source`` against the known ``item_ids``.

    ``existing`` (append mode) is the current interactions table: rows already in it count as duplicates.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    require_columns(source, ("user_id", "item_id", "timestamp"), what="interactions")
    columns = source.table.column_names
    df = common.to_spark(spark, source.table)
    # derived columns get a "__" prefix so the input columns stay as given (for raw_row) and cannot clash
    opt = {name: (F.col(name) if name in columns else F.lit(None).cast("string")) for name in ("rating", "event")}
    df = df.select(
        "*",
        common.strip_id("user_id").alias("__user"),
        common.strip_id("item_id").alias("__item"),
        timestamp_column("timestamp").alias("__ts"),
        F.trim(opt["rating"]).alias("__rating_text"),
        F.when(F.length(F.trim(opt["event"])) > 0, F.trim(opt["event"])).alias("__event"),
    ).withColumn("__rating", F.expr("try_cast(__rating_text AS DOUBLE)"))

    known_ids = pa.table({"__known": pa.array(item_ids, pa.string())}).group_by("__known").aggregate([])
    df = df.join(F.broadcast(spark.createDataFrame(known_ids)), F.col("__item") == F.col("__known"), "left")
    blank = lambda c: F.col(c).isNull() | (F.length(c) == 0)  # noqa: E731
    bad_rating = F.col("__rating_text").isNotNull() & (F.length("__rating_text") > 0) & (
        F.col("__rating").isNull() | F.isnan("__rating") | (F.abs("__rating") == float("inf"))
    )
    lo, hi = timestamps.bounds(created_at)
    # compared as microseconds: a year-0 or year-10000 value never becomes a Python datetime anywhere
    ts_us = F.unix_micros("__ts")
    out_of_range = (ts_us < F.lit(_micros(lo))) | (ts_us > F.lit(_micros(hi)))
    df = df.withColumn(
        "__reason",
        F.when(blank("__user"), F.lit(common.MISSING_USER_ID))
        .when(blank("__item"), F.lit(common.MISSING_ITEM_ID))
        .when(F.col("__known").isNull(), F.lit(common.UNKNOWN_ITEM_ID))
        .when(F.col("__ts").isNull(), F.lit(common.UNPARSEABLE_TIMESTAMP))
        .when(out_of_range, F.lit(common.TIMESTAMP_OUT_OF_RANGE))
        .when(bad_rating, F.lit(common.INVALID_RATING)),
    )
    df = df.withColumn("__ts", F.when(F.col("__reason").isNull(), F.col("__ts")))  # only valid times leave Spark
    # the raw row (as JSON) only for rows going to quarantine: building it for every row costs the most CPU here
    df = df.withColumn("__raw", F.when(F.col("__reason").isNotNull(), common.raw_row_column(columns)))
    df = df.select(
        F.col("__user").alias("user_id"), F.col("__item").alias("item_id"), F.col("__ts").alias("timestamp"),
        F.col("__rating").alias("rating"), F.col("__event").alias("event"), SOURCE_ROW,
        F.col("__reason").alias("reason"), F.col("__raw").alias("raw_row"),
    )

    # rank rows equal on KEY among the valid ones (invalid rows get their own partitions via the reason)
    w = Window.partitionBy("reason", *KEY).orderBy(SOURCE_ROW)
    df = df.withColumn("_rank", F.when(F.col("reason").isNull(), F.row_number().over(w)))
    offset = 0
    if existing is not None and existing.num_rows:
        offset = int(pc.max(existing.column(SOURCE_ROW)).as_py() or 0)
        old = spark.createDataFrame(existing.select(list(KEY))).dropDuplicates(list(KEY))
        old = old.select(*[F.col(k).alias(f"__old_{k}") for k in KEY], F.lit(True).alias("_old"))
        cond = [F.col(k).eqNullSafe(F.col(f"__old_{k}")) for k in KEY]
        df = df.join(old, cond, "left")
    else:
        df = df.withColumn("_old", F.lit(None).cast("boolean"))
    df = df.withColumn("_dup", F.col("reason").isNull() & ((F.col("_rank") > 1) | F.col("_old").isNotNull()))
    # one Spark job: all rows with their verdict; the driver splits them into new rows / quarantine / duplicates
    out = df.select("user_id", "item_id", "timestamp", "rating", "event", SOURCE_ROW, "reason", "raw_row",
                    "_dup").toArrow()
    reason, dup = out.column("reason"), out.column("_dup")
    new_table = out.filter(pc.and_(pc.is_null(reason), pc.invert(dup)))
    new_table = new_table.set_column(
        new_table.column_names.index(SOURCE_ROW), SOURCE_ROW, pc.add(new_table.column(SOURCE_ROW), offset)
    )
    new_table = new_table.select(schemas.INTERACTIONS.names).cast(schemas.INTERACTIONS)
    new_table = new_table.sort_by([(SOURCE_ROW, "ascending")]) if new_table.num_rows else new_table
    bad = out.filter(pc.is_valid(reason))
    quarantine = common.concat(
        [common.malformed_table(source.malformed, run_id=run_id, created_at=created_at),
         common.quarantine_table(bad, run_id=run_id, created_at=created_at)],
        schemas.QUARANTINE,
    )
    quarantine = quarantine.sort_by([(SOURCE_ROW, "ascending")]) if quarantine.num_rows else quarantine
    duplicates = int(pc.sum(dup.cast(pa.int64())).as_py() or 0)
    log.info("build_interactions: %d rows in, %d new, %d quarantined, %d duplicates",
             source.rows_in, new_table.num_rows, quarantine.num_rows, duplicates)
    return InteractionsResult(new_rows=new_table, quarantine=quarantine, rows_in=source.rows_in,
                              rows_duplicate=duplicates)


def sequences_frame(df):
    """Spark: one row per user, items ordered by (timestamp, source_row): USER_SEQUENCES columns."""
    from pyspark.sql import functions as F

    events = F.array_sort(F.collect_list(F.struct("timestamp", SOURCE_ROW, "item_id")))
    return (
        df.groupBy("user_id")
        .agg(events.alias("_ev"))
        .select(
            "user_id",
            F.transform("_ev", lambda e: e["item_id"]).alias("item_ids"),
            F.transform("_ev", lambda e: e["timestamp"]).alias("timestamps"),
            F.size("_ev").cast("int").alias("length"),
        )
    )


def build_user_sequences(spark, *, interactions: pa.Table) -> pa.Table:
    """USER_SEQUENCES from the whole interactions table, sorted by user_id."""
    df = common.to_spark(spark, interactions.select(["user_id", "item_id", "timestamp", SOURCE_ROW]))
    return common.to_arrow(sequences_frame(df), schemas.USER_SEQUENCES, sort_by=[("user_id", "ascending")])
