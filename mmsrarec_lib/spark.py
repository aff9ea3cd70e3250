"""The Spark session used by the Spark jobs: ``local[*]`` by default, any master via
``--spark-master``/``SPARK_MASTER``.

Spark computes, delta-rs commits: Spark has no Delta jars here, so tables are read through the Delta log into
Arrow and written back with :class:`mmsrarec_lib.storage.Warehouse`.
"""

from __future__ import annotations

import os
import sys

ENV_MASTER = "SPARK_MASTER"
DEFAULT_MASTER = "local[*]"


def resolve_master(master: str | None = None) -> str:
    return master or os.environ.get(ENV_MASTER) or DEFAULT_MASTER


def get_spark(master: str | None = None, *, app_name: str = "mmsrarec", shuffle_partitions: int = 4):
    """Get (or create) a SparkSession. Workers use this interpreter (else they lack pyarrow)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(resolve_master(master))
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        # executors on other hosts (a cluster, containers) connect back to this address: $SPARK_DRIVER_HOST there
        .config("spark.driver.host", os.environ.get("SPARK_DRIVER_HOST", "127.0.0.1"))
        .config("spark.driver.memory", os.environ.get("MMSRAREC_SPARK_DRIVER_MEMORY", "2g"))
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
