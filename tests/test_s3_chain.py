"""The whole chain on S3: ingest -> train-baseline -> evaluate -> train-summarizer -> summarize -> build-collab ->
train -> recommend -> report -> sql, every job pointed at ``--warehouse s3://bucket/prefix`` on moto's S3 server
(127.0.0.1, random port), credentials only in the environment. Then: nothing was written locally, and the secret key is
in no output, log, table or object.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid

import pytest

from mmsrarec_lib.storage import Warehouse
from mmsrarec_lib.testing import moto_s3, patched_env, write_tiny_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "chainS3cret" + uuid.uuid4().hex
ACCESS = "AKIACHAIN" + uuid.uuid4().hex[:10].upper()
RUN_DATE = "2026-01-02"
TOP_K = 3


@pytest.mark.slow
def test_ingest_summarize_recommend_sql_on_s3(tmp_path, monkeypatch, capfd, caplog):
    from jobs.cli import main

    caplog.set_level(logging.DEBUG)
    items, interactions = write_tiny_dataset(tmp_path / "data")
    monkeypatch.chdir(tmp_path)  # a job that wrongly wrote to ./warehouse would leave it here
    with moto_s3(access_key=ACCESS, secret_key=SECRET) as s3, patched_env(s3.env):
        # from here on, only what the jobs print and log is checked (the harness's own bucket creation logs the
        # access key id in botocore's DEBUG request dump; the jobs silence botocore)
        caplog.clear()
        capfd.readouterr()
        base = ["--dataset", "tiny", "--warehouse", s3.warehouse_uri]
        steps = [
            ["ingest", *base, "--items", str(items), "--interactions", str(interactions),
             "--spark-master", "local[2]"],
            ["train-baseline", *base, "--model", "sasrec", "--protocol", "full", "--epochs", "1",
             "--run-id", "sasrec-s3", "--no-progress"],
            ["evaluate", *base, "--model", "sasrec-s3", "--protocol", "full", "--run-id", "eval-s3", "--no-progress"],
            ["train-summarizer", *base, "--backend", "extractive", "--encoder", "hashing", "--steps", "2"],
            ["summarize", *base, "--summarizer-version", "v1", "--backend", "extractive", "--encoder", "hashing",
             "--no-progress"],
            ["build-collab", *base, "--summarizer-version", "v1", "--sasrec-run", "sasrec-s3"],
            ["train-recommender", *base, "--keywords", "v1", "--generator-run", "sasrec-s3", "--protocol", "full",
             "--steps", "1", "--batch-size", "2", "--run-id", "mm-s3", "--no-progress"],
            ["recommend", *base, "--model-run", "mm-s3", "--top-k", str(TOP_K), "--top-m", "5",
             "--run-date", RUN_DATE, "--users", "all", "--no-progress"],
            ["report", *base],
        ]
        for argv in steps:
            assert main(argv) == 0, argv[0]

        wh = Warehouse.from_uri(s3.warehouse_uri)  # storage options from the (patched) environment
        n_users = wh.read_table("tiny", "user_sequences").num_rows
        assert wh.read_table("tiny", "items").num_rows == 36
        assert wh.read_table("tiny", "item_keywords").num_rows > 0
        assert wh.read_table("tiny", "user_collab_keywords").num_rows > 0
        recs = wh.read_table("tiny", "recommendations").to_pylist()
        assert len(recs) == n_users * TOP_K and {r["run_date"].isoformat() for r in recs} == {RUN_DATE}
        keys = s3.object_keys()
        prefix = s3.prefix + "/tiny/"
        assert any(k.startswith(prefix + "models/sasrec-s3/") for k in keys)  # plain objects on S3 too
        assert any(k.startswith(prefix + "models/mm-s3/") for k in keys)
        assert wh.read_table("tiny", "evaluation_runs").num_rows > 0
        assert {k.rsplit(".", 1)[-1] for k in keys if k.startswith(prefix + "reports/")} >= {"md", "png"}

        # the analyst command, as a real process with the credentials in its environment only
        env = {**os.environ, **s3.env}
        proc = subprocess.run(
            [sys.executable, "-m", "jobs.cli", "sql", *base, "--format", "json",
             "SELECT user_id, count(*) AS n FROM recommendations GROUP BY user_id ORDER BY user_id"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        payload = proc.stdout.strip()
        rows = json.loads(payload) if payload.startswith("[") else [json.loads(x) for x in payload.splitlines()]
        assert len(rows) == n_users and {r["n"] for r in rows} == {TOP_K}

        # the secret key is nowhere: not in any object (tables, Delta logs, models, indexes) ...
        client = s3.boto3_client()
        for key in keys:
            body = client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()
            assert SECRET.encode() not in body and ACCESS.encode() not in body, key
    # ... nor in what the jobs printed or logged (this process, the Spark JVM, the sql subprocess)
    out, err = capfd.readouterr()
    text = out + err + caplog.text + proc.stdout + proc.stderr
    assert SECRET not in text
    assert ACCESS not in text
    assert not (tmp_path / "warehouse").exists()
