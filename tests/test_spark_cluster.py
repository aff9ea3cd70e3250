"""Spark cluster mode: the ingest job (item table, interactions, sequences, splits) runs unchanged against a
standalone master + worker started from the installed pyspark on 127.0.0.1, and writes the same tables as a
local[2] run on the same input.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from mmsrarec_lib.ingest.run import IngestConfig, run_ingest
from mmsrarec_lib.ingest.sources import read_source
from mmsrarec_lib.storage import Warehouse
from mmsrarec_lib.testing import spark_standalone
from tests._deploy_helpers import canonical, write_tiny_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLES = ("items", "items_quarantine", "interactions", "interactions_quarantine", "user_sequences", "split_loo",
          "eval_candidates")
RUN_COLUMNS = ("run_id", "created_at", "started_at", "finished_at", "code_version")  # differ per run by design


def _rows(wh: Warehouse, table: str) -> list[dict]:
    rows = canonical(wh.read_table("tiny", table), drop=RUN_COLUMNS)
    for r in rows:  # Pillow's error text names a Python object address, which differs between processes
        if r.get("image_error"):
            r["image_error"] = re.sub(r" at 0x[0-9a-f]+", " at 0x…", r["image_error"])
    return rows


def _ingest(master: str, items, interactions, warehouse: str) -> float:
    """``mmsrarec ingest`` in a subprocess against ``master``; returns its wall time in seconds."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "MMSRAREC_SPARK_DRIVER_MEMORY": "1g"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "ingest", "--dataset", "tiny", "--items", str(items),
         "--interactions", str(interactions), "--warehouse", warehouse, "--spark-master", master],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=420,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return time.perf_counter() - t0


@pytest.mark.slow
def test_ingest_on_a_standalone_cluster_writes_the_same_tables_as_local(tmp_path, spark):
    items, interactions = write_tiny_dataset(tmp_path / "data")
    local_wh = Warehouse.from_uri(str(tmp_path / "wh_local"))
    cluster_wh = Warehouse.from_uri(str(tmp_path / "wh_cluster"))
    t0 = time.perf_counter()  # the reference: the same pipeline in this process on the local[2] session
    run_ingest(warehouse=local_wh, items=read_source(items), interactions=read_source(interactions),
               config=IngestConfig(dataset="tiny"), spark=spark)
    t_local = time.perf_counter() - t0
    t0 = time.perf_counter()
    with spark_standalone(cores=2, worker_memory="1g", work_dir=tmp_path / "spark") as cluster:
        t_up = time.perf_counter() - t0
        t_cluster = _ingest(cluster.master_url, items, interactions, cluster_wh.root)
        # the work really ran in executors the standalone worker launched for this application
        executor_logs = list((cluster.work_dir / "work").glob("app-*/*/stderr"))
        assert executor_logs, "no executor ran on the cluster"
    print(f"\ncluster up {t_up:.1f}s; ingest local[2] in-process {t_local:.1f}s, "
          f"CLI on spark standalone {t_cluster:.1f}s")
    for table in TABLES:
        assert _rows(cluster_wh, table) == _rows(local_wh, table), table
    items_rows = local_wh.read_table("tiny", "items").to_pylist()
    statuses = sorted(r["image_status"] for r in items_rows)
    assert statuses.count("ok") == 33 and {"missing", "undecodable", "refused"} <= set(statuses)
    assert local_wh.read_table("tiny", "eval_candidates").num_rows == 18  # k-core 5 keeps every user
    assert _rows(cluster_wh, "ingest_runs") == _rows(local_wh, "ingest_runs")
