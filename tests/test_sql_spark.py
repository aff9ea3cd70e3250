"""Spark temp views over the same tables: read through the Delta log (never stale files), with time travel."""

from __future__ import annotations

import datetime as dt

import pytest

from mmsrarec_lib.sql.spark_views import register_spark_views
from mmsrarec_lib.sql.tables import TimeTravel
from tests._sql_helpers import DATASET, build_tiny_warehouse, recommendations_table


def _counts_by_date(spark) -> dict[dt.date, int]:
    rows = spark.sql("SELECT run_date, count(*) AS n FROM recommendations GROUP BY run_date").collect()
    return {r["run_date"]: r["n"] for r in rows}


@pytest.mark.slow  # a Spark session (20-30 s to start on a busy 2-core machine) and a dozen Spark reads
def test_spark_views_read_through_the_delta_log(spark, warehouse):
    build_tiny_warehouse(warehouse)
    # replace the 2026-01-02 partition with a single row: its old file stays on disk but leaves the Delta log
    recs = recommendations_table()
    today = recs.take([i for i, r in enumerate(recs.to_pylist()) if r["run_date"] == dt.date(2026, 1, 2)][:1])
    warehouse.write_table(DATASET, "recommendations", today, partition_by=["run_date"],
                          predicate="run_date = '2026-01-02'")
    table_dir = warehouse.local_path(warehouse.table_uri(DATASET, "recommendations"))
    assert len(list(table_dir.glob("run_date=2026-01-02/*.parquet"))) == 2  # a directory scan would see both

    views = {v.name: v for v in register_spark_views(spark, warehouse=warehouse, dataset=DATASET)}
    assert views["recommendations"].read_via == "files" and views["recommendations"].version == 1
    assert views["user_collab_keywords"].read_via == "empty"
    assert _counts_by_date(spark) == {dt.date(2026, 1, 1): 4, dt.date(2026, 1, 2): 1}
    frame = spark.table("recommendations")
    assert frame.columns == recommendations_table().schema.names  # schema order, partition column first
    assert dict(frame.dtypes)["run_date"] == "date"
    assert spark.sql("SELECT count(*) AS n FROM user_collab_keywords").collect()[0]["n"] == 0
    top = spark.sql(
        "SELECT i.title, r.explanation.history_keywords AS kw FROM recommendations r "
        "JOIN items i ON i.item_id = r.item_id WHERE r.run_date = DATE'2026-01-02'"
    ).collect()
    assert [(r["title"], r["kw"]) for r in top] == [("Title 1", ["action", "space"])]
    image = spark.sql("SELECT image_bytes FROM items WHERE item_id = 'i1'").collect()[0]["image_bytes"]
    assert bytes(image) == b"\xff\xd8\xff\x00"

    # time travel: version 0 has both full partitions; the Arrow path returns the same rows as the file path
    only = ["recommendations"]
    views = register_spark_views(spark, warehouse=warehouse, dataset=DATASET, travel=TimeTravel(as_of_version=0),
                                 tables=only)
    assert [v.name for v in views] == only
    assert _counts_by_date(spark) == {dt.date(2026, 1, 1): 4, dt.date(2026, 1, 2): 5}
    files_rows = sorted(map(tuple, spark.table("recommendations").select("user_id", "rank", "item_id").collect()))
    views = register_spark_views(spark, warehouse=warehouse, dataset=DATASET, travel=TimeTravel(as_of_version=0),
                                 mode="arrow", tables=only)
    assert [v.read_via for v in views] == ["arrow"]
    arrow_rows = sorted(map(tuple, spark.table("recommendations").select("user_id", "rank", "item_id").collect()))
    assert arrow_rows == files_rows and len(arrow_rows) == 9
    tables = spark.sql("SELECT version, latest_version FROM warehouse_tables WHERE table_name = 'recommendations'")
    assert tables.collect()[0].asDict() == {"version": 0, "latest_version": 1}
    with pytest.raises(ValueError, match="no such tables in dataset 'tiny': recs"):
        register_spark_views(spark, warehouse=warehouse, dataset=DATASET, tables=["recs"])
    with pytest.raises(ValueError, match="unknown mode"):
        register_spark_views(spark, warehouse=warehouse, dataset=DATASET, mode="scan")  # type: ignore[arg-type]
