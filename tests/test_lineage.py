"""Commit lineage: every write and merge carries job, run id, Airflow ids and code version; `mmsrarec sql` shows
them in `table_history`, and each listed version can be time-travelled to; Asset extras carry the commit."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from mmsrarec_lib.runs import code_version
from mmsrarec_lib.sql.engine import SqlEngine
from mmsrarec_lib.sql.history import commit_lineage

REPO = Path(__file__).resolve().parent.parent
AIRFLOW = {"AIRFLOW_CTX_DAG_ID": "mmsrarec_nightly", "AIRFLOW_CTX_DAG_RUN_ID": "manual__2026-11-30",
           "AIRFLOW_CTX_TASK_ID": "publish_recommendations", "AIRFLOW_CTX_TRY_NUMBER": "2"}


def test_writes_and_merges_carry_lineage_and_table_history_lists_every_version(warehouse, monkeypatch):
    for k, v in AIRFLOW.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MMSRAREC_JOB", "unit")
    warehouse.write_table("d", "t", pa.table({"k": ["a", "b"], "v": [1, 2]}))
    warehouse.write_table("d", "t", pa.table({"k": ["c"], "v": [3]}), mode="append", metadata={"note": "x"})
    for k in AIRFLOW:
        monkeypatch.delenv(k)
    warehouse.merge_table("d", "t", pa.table({"k": ["a"], "v": [10]}), keys=["k"])
    with SqlEngine(warehouse=warehouse, dataset="d") as engine:
        rows = engine.query("SELECT * FROM table_history ORDER BY version").to_pylist()
        old = engine.query("SELECT count(*) AS n FROM t").to_pylist()
    assert [(r["table_name"], r["version"], r["operation"]) for r in rows] == [
        ("t", 0, "WRITE"), ("t", 1, "WRITE"),
        ("t", 2, "MERGE")]
    assert all(r["job"] == "unit" and r["code_version"] == code_version() for r in rows)
    assert len({r["run_id"] for r in rows}) == 1, "one run id per process"
    assert (rows[0]["airflow_dag_id"], rows[0]["airflow_run_id"], rows[0]["airflow_try_number"]) == (
        "mmsrarec_nightly", "manual__2026-11-30", "2")
    assert rows[2]["airflow_dag_id"] is None, "outside a task there are no Airflow ids"
    assert json.loads(rows[1]["metadata"])["note"] == "x" and rows[1]["rows_added"] == 1
    assert rows[0]["timestamp"] <= rows[2]["timestamp"] and old == [{"n": 3}]
    assert commit_lineage(warehouse, dataset="d", table="t", version=1)["note"] == "x"


@pytest.mark.slow
def test_cli_commits_are_attributed_to_the_job_and_time_travel_reads_them(warehouse):
    """`mmsrarec publish-recommendations` run as an Airflow task would; `mmsrarec sql` shows who wrote what."""
    from mmsrarec_lib.recommend.batch import Shard, recommend, stage_recommendations
    from mmsrarec_lib.recommend.topk import TopKConfig
    from tests import _recommend_warehouse as toy
    from tests.test_shards import DAY, cfg, scorer

    seqs = toy.build(warehouse)
    top2 = dataclasses.replace(cfg(), topk=TopKConfig(top_m=6, top_k=2))
    recommend(warehouse, config=top2, score_users=scorer(seqs, k=2))  # version 0: top-2
    stage_recommendations(warehouse, config=cfg(Shard(0, 1)), score_users=scorer(seqs))  # top-3, staged
    env = {**os.environ, **AIRFLOW, "PYTHONPATH": str(REPO)}
    pub = subprocess.run([sys.executable, "-m", "jobs.cli", "publish-recommendations", "--dataset", "toy",
                          "--warehouse", warehouse.root, "--run-date", DAY.isoformat(), "--shards", "1"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert pub.returncode == 0, pub.stderr[-2000:]

    def sql(query: str, *extra: str) -> list[dict]:
        out = subprocess.run([sys.executable, "-m", "jobs.cli", "sql", "--dataset", "toy", "--warehouse",
                              warehouse.root, "--format", "json", *extra, query], cwd=REPO, capture_output=True,
                             text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert out.returncode == 0, out.stderr[-2000:]
        return [json.loads(x) for x in out.stdout.splitlines() if x.strip()]

    hist = sql("SELECT version, operation, job, airflow_dag_id, airflow_task_id, airflow_try_number, metadata"
               " FROM table_history WHERE table_name = 'recommendations' ORDER BY version")
    assert [h["version"] for h in hist] == [0, 1]
    assert hist[1]["job"] == "publish-recommendations" and hist[1]["airflow_task_id"] == "publish_recommendations"
    assert hist[1]["airflow_try_number"] == "2" and json.loads(hist[1]["metadata"])["run_date"] == "2026-02-01"
    assert hist[0]["airflow_dag_id"] is None
    n_rows = "SELECT count(*) AS n FROM recommendations"
    assert sql(n_rows) == [{"n": 3 * len(seqs)}]
    assert sql(n_rows, "--as-of-version", "recommendations=0") == [{"n": 2 * len(seqs)}]


def test_the_cli_names_the_job_for_one_call_only(monkeypatch):
    """An in-process caller running several commands must not stamp a later command with an earlier one's name."""
    import jobs.sql
    from jobs import cli

    seen = []
    monkeypatch.setattr(jobs.sql, "main", lambda args: seen.append(os.environ.get("MMSRAREC_JOB")) or 0)
    monkeypatch.delenv("MMSRAREC_JOB", raising=False)
    assert cli.main(["sql", "--dataset", "d", "SELECT 1"]) == 0
    assert seen == ["sql"] and "MMSRAREC_JOB" not in os.environ
    monkeypatch.setenv("MMSRAREC_JOB", "outer")
    assert cli.main(["sql", "--dataset", "d", "SELECT 1"]) == 0
    assert seen == ["sql", "sql"] and os.environ["MMSRAREC_JOB"] == "outer"
