"""Register every Delta table of a dataset as a Spark temporary view (for analysts on a Spark cluster).

Spark has no Delta jars here, so tables are read through the Delta log by delta-rs: Spark is given exactly the
data files of the chosen version, ``spark.read.option("basePath", table_uri).parquet(*file_uris)`` — never a bare
directory scan, which would also return files that later commits removed. Partition columns come from the file
paths below ``basePath``; every column is then cast to the Delta schema's type and put in schema order.

Where Spark cannot read the files itself (an ``s3://`` warehouse without the hadoop-aws jars, or Delta features
such as deletion vectors or column mapping that a plain Parquet read would get wrong), the table goes through
Arrow instead: ``Warehouse.dataset(...)`` read on the driver and handed to ``spark.createDataFrame`` — correct,
but bounded by driver memory. ``mode="files"`` or ``"arrow"`` forces one path; ``"auto"`` picks per table.

Time travel resolves exactly as in ``mmsrarec sql`` (:mod:`mmsrarec_lib.sql.tables`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pyarrow as pa

from mmsrarec_lib.sql.catalog import KNOWN_SCHEMAS
from mmsrarec_lib.sql.engine import TABLES_VIEW
from mmsrarec_lib.sql.tables import TableSnapshot, TimeTravel, resolve_tables, snapshot_dataset, snapshots_table
from mmsrarec_lib.storage import Warehouse

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

ReadMode = Literal["auto", "files", "arrow"]
# Reader features whose semantics a plain Parquet read of the listed files would miss.
_FEATURES_NEEDING_ARROW = {"deletionVectors", "columnMapping", "v2Checkpoint", "typeWidening"}


@dataclass(frozen=True)
class SparkView:
    """One registered view: which table version it shows and how Spark reads it."""

    name: str
    version: int | None
    read_via: str  # files | arrow | empty


def _spark_schema(schema: pa.Schema):
    """The Spark schema of an Arrow schema (through an empty Arrow table, as Spark itself converts it)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def _needs_arrow(warehouse: Warehouse, dataset: str, snap: TableSnapshot) -> str | None:
    """Why this table must be read through Arrow, or None when Spark can read its Parquet files directly."""
    if warehouse.is_s3:
        return "s3:// data files need hadoop-aws jars in Spark"
    protocol = warehouse.delta_table(dataset, snap.name, version=snap.version).protocol()
    features = set(protocol.reader_features or []) & _FEATURES_NEEDING_ARROW
    return f"Delta reader features {sorted(features)}" if features else None


def _read_files(spark: SparkSession, warehouse: Warehouse, dataset: str, snap: TableSnapshot) -> DataFrame:
    from pyspark.sql import functions as F

    dt = warehouse.delta_table(dataset, snap.name, version=snap.version)
    schema = pa.schema(dt.schema().to_arrow())  # arro3 -> pyarrow through the Arrow C interface
    files = dt.file_uris()
    if not files:
        return spark.createDataFrame([], _spark_schema(schema))
    spark_schema = _spark_schema(schema)
    # The Delta schema is given, so Spark infers nothing (no footer-reading job) and parses partition values from
    # the paths below basePath with their Delta types.
    frame = (
        spark.read.schema(spark_schema)
        .option("basePath", warehouse.table_uri(dataset, snap.name))
        .parquet(*files)
    )
    spark_types = {f.name: f.dataType for f in spark_schema.fields}
    return frame.select(*[F.col(f"`{name}`").cast(spark_types[name]).alias(name) for name in schema.names])


def _read_arrow(spark: SparkSession, warehouse: Warehouse, dataset: str, snap: TableSnapshot) -> DataFrame:
    table = snapshot_dataset(
        warehouse, dataset=dataset, snapshot=snap, schema=KNOWN_SCHEMAS.get(snap.name)
    ).to_table()
    if table.num_rows == 0:
        return spark.createDataFrame([], _spark_schema(table.schema))
    return spark.createDataFrame(table)


def register_spark_views(
    spark: SparkSession,
    *,
    warehouse: Warehouse,
    dataset: str,
    travel: TimeTravel = TimeTravel(),
    mode: ReadMode = "auto",
    tables: Sequence[str] | None = None,
) -> list[SparkView]:
    """Create or replace one Spark temp view per table of ``dataset`` (plus ``warehouse_tables``); return them.

    Known tables that do not exist (at that time) get an empty view of their schema, as in ``mmsrarec sql``.
    ``tables`` limits the views to those names (default: every table).
    """
    if mode not in ("auto", "files", "arrow"):
        raise ValueError(f"unknown mode {mode!r}: use auto, files or arrow")
    views: list[SparkView] = []
    snapshots = resolve_tables(warehouse, dataset=dataset, travel=travel, known=KNOWN_SCHEMAS)
    unknown = sorted(set(tables or ()) - {s.name for s in snapshots})
    if unknown:
        raise ValueError(f"no such tables in dataset {dataset!r}: {', '.join(unknown)}")
    for snap in snapshots:
        if tables is not None and snap.name not in tables:
            continue
        if snap.version is None:
            frame, via = _read_arrow(spark, warehouse, dataset, snap), "empty"
        else:
            reason = _needs_arrow(warehouse, dataset, snap) if mode == "auto" else None
            if mode == "arrow" or reason:
                if reason:
                    log.info("%s: reading through Arrow (%s)", snap.name, reason)
                frame, via = _read_arrow(spark, warehouse, dataset, snap), "arrow"
            else:
                frame, via = _read_files(spark, warehouse, dataset, snap), "files"
        frame.createOrReplaceTempView(snap.name)
        views.append(SparkView(snap.name, snap.version, via))
        log.info("spark view %s -> version %s (%s)", snap.name, snap.version, via)
    spark.createDataFrame(snapshots_table(snapshots)).createOrReplaceTempView(TABLES_VIEW)
    return views
