"""Reusable test and bench utilities: a real S3 endpoint (moto server mode), a standalone Spark cluster, tiny data.

Everything runs on 127.0.0.1 with random free ports and is torn down when its ``with`` block ends, so tests and
benches exercise the same code paths as production (an S3 endpoint over HTTP, ``spark://host:port``) without
Docker or the internet.

- :func:`moto_s3` (:mod:`.s3`) starts moto's ``ThreadedMotoServer`` (a real HTTP S3 endpoint that boto3,
  delta-rs, pyarrow and DuckDB all talk to; the in-process ``mock_aws`` would fool only boto3), creates a bucket and
  yields its warehouse URI, delta-rs ``storage_options``, the environment a subprocess needs and traffic counters.
- :func:`spark_standalone` (:mod:`.spark_cluster`) starts ``org.apache.spark.deploy.master.Master`` and one
  ``Worker`` from the installed pyspark (``spark-class``), waits until the worker has registered and yields
  ``spark://127.0.0.1:PORT``.
- :func:`write_tiny_dataset` (:mod:`.data`) writes a tiny items + interactions dataset with real JPEG posters.
"""

from __future__ import annotations

from mmsrarec_lib.testing.data import TINY_ITEMS, TINY_PER_USER, TINY_USERS, write_tiny_dataset
from mmsrarec_lib.testing.env import free_port, patched_env
from mmsrarec_lib.testing.s3 import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, S3Endpoint, S3Traffic, moto_s3
from mmsrarec_lib.testing.spark_cluster import SparkCluster, spark_home, spark_standalone

__all__ = [
    "DEFAULT_ACCESS_KEY", "DEFAULT_SECRET_KEY", "S3Endpoint", "S3Traffic", "SparkCluster", "TINY_ITEMS",
    "TINY_PER_USER", "TINY_USERS", "free_port", "moto_s3", "patched_env", "spark_home", "spark_standalone",
    "write_tiny_dataset",
]
