"""The warehouse on S3 for real: moto's S3 server on 127.0.0.1 (random port), reached over HTTP by delta-rs,
pyarrow and boto3 exactly as a production endpoint would be.

Covers table write/read, partition overwrite, time travel, merge, plain objects, concurrent writers (threads and
processes) and that credentials never reach logs, tables, objects or error messages.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
import textwrap
import uuid
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest

from mmsrarec_lib import schemas
from mmsrarec_lib.storage import Warehouse
from mmsrarec_lib.testing import moto_s3, patched_env

SECRET = "S3CRET-" + uuid.uuid4().hex  # a distinctive secret key: it must never show up anywhere
ACCESS = "AKIATESTONLY" + uuid.uuid4().hex[:8].upper()


@pytest.fixture(scope="module")
def s3():
    with moto_s3(access_key=ACCESS, secret_key=SECRET) as endpoint:
        yield endpoint


@pytest.fixture
def s3_wh(s3) -> Warehouse:
    """A fresh warehouse prefix in the shared bucket, with storage options from the endpoint."""
    return Warehouse.from_uri(f"s3://{s3.bucket}/{uuid.uuid4().hex[:8]}", storage_options=s3.storage_options)


def _prefix(wh: Warehouse) -> str:
    return wh.root.split("/", 3)[3] + "/"


def test_tables_live_in_the_bucket_with_partition_overwrite_and_time_travel(s3, s3_wh):
    t = pa.table(
        {"run_date": pa.array([dt.date(2026, 1, 1), dt.date(2026, 1, 2)], pa.date32()), "user_id": ["a", "b"]}
    )
    assert s3_wh.write_table("ds", "recs", t, partition_by=["run_date"]) == 0
    t2 = pa.table({"run_date": pa.array([dt.date(2026, 1, 2)], pa.date32()), "user_id": ["c"]})
    v = s3_wh.write_table("ds", "recs", t2, partition_by=["run_date"], predicate="run_date = '2026-01-02'")
    assert v == 1
    assert sorted(s3_wh.read_table("ds", "recs").column("user_id").to_pylist()) == ["a", "c"]
    assert sorted(s3_wh.read_table("ds", "recs", version=0).column("user_id").to_pylist()) == ["a", "b"]
    keys = s3.object_keys(_prefix(s3_wh))
    # the data really is in the bucket: two commits, partition folders, and the replaced file still there
    assert _prefix(s3_wh) + "ds/recs/_delta_log/00000000000000000001.json" in keys
    assert sum("/run_date=2026-01-02/" in k for k in keys) == 2
    assert s3_wh.table_version("ds", "recs") == 1 and s3_wh.has_table("ds", "recs")


def test_merge_upserts_and_rerun_is_idempotent(s3_wh):
    s3_wh.merge_table("ds", "kw", pa.table({"k": ["x", "y"], "v": [1, 2]}), keys=["k"])
    batch = pa.table({"k": ["y", "z"], "v": [5, 6]})
    s3_wh.merge_table("ds", "kw", batch, keys=["k"])
    s3_wh.merge_table("ds", "kw", batch, keys=["k"])
    assert s3_wh.read_table("ds", "kw").sort_by("k").to_pylist() == [
        {"k": "x", "v": 1}, {"k": "y", "v": 5}, {"k": "z", "v": 6}
    ]
    assert s3_wh.table_version("ds", "kw") == 2


def test_objects_round_trip_and_empty_schema_table(s3, s3_wh, tmp_path):
    uri = s3_wh.uri("ds", "models", "r1", "model.json")
    s3_wh.write_bytes(uri, b'{"kind": "sasrec"}')
    assert s3_wh.read_bytes(uri) == b'{"kind": "sasrec"}' and s3_wh.exists(uri)
    assert not s3_wh.exists(s3_wh.uri("ds", "models", "r1", "nope.bin"))
    assert s3_wh.list_dir(s3_wh.uri("ds", "models")) == ["r1"]
    assert s3_wh.list_dir(s3_wh.uri("ds", "nothing-here")) == []
    (tmp_path / "ckpt" / "sub").mkdir(parents=True)
    (tmp_path / "ckpt" / "sub" / "w.bin").write_bytes(bytes(range(256)) * 40)
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    s3_wh.upload_dir(tmp_path / "ckpt", s3_wh.uri("ds", "models", "r2"))
    # no ".tmp" object survives the write-then-move of write_bytes
    objects = [k for k in s3.object_keys(_prefix(s3_wh) + "ds/models/r2/") if not k.endswith("/")]  # not dir markers
    assert objects == [
        _prefix(s3_wh) + "ds/models/r2/config.json", _prefix(s3_wh) + "ds/models/r2/sub/w.bin"
    ]
    out = s3_wh.download_dir(s3_wh.uri("ds", "models", "r2"), tmp_path / "back")
    assert (out / "sub" / "w.bin").read_bytes() == bytes(range(256)) * 40
    assert s3_wh.write_table("ds", "items", schemas.empty(schemas.ITEMS)) == 0
    assert s3_wh.read_table("ds", "items").schema.names == schemas.ITEMS.names


def test_warehouse_from_env_uses_the_standard_aws_chain(s3, monkeypatch):
    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MMSRAREC_WAREHOUSE", f"s3://{s3.bucket}/from-env")
    wh = Warehouse.from_uri(None)
    assert wh.root == f"s3://{s3.bucket}/from-env"
    wh.write_table("ds", "t", pa.table({"x": [1, 2, 3]}))
    assert s3.object_keys("from-env/ds/t/_delta_log/") == ["from-env/ds/t/_delta_log/00000000000000000000.json"]
    assert wh.read_table("ds", "t").column("x").to_pylist() == [1, 2, 3]
    assert SECRET not in repr(wh) and ACCESS not in repr(wh)


def test_credentials_from_an_aws_profile(s3, monkeypatch, tmp_path):
    """AWS_PROFILE alone (keys in a shared credentials file): tables (delta-rs) and objects (pyarrow) both work."""
    (tmp_path / "credentials").write_text(
        f"[mm]\naws_access_key_id = {ACCESS}\naws_secret_access_key = {SECRET}\n")
    (tmp_path / "config").write_text("[profile mm]\nregion = us-east-1\n")
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_PROFILE", "mm")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint_url)
    wh = Warehouse.from_uri(f"s3://{s3.bucket}/profile")
    assert wh.storage_options["AWS_REGION"] == "us-east-1"  # from the profile's config
    wh.write_table("ds", "t", pa.table({"x": [7]}))
    wh.write_bytes(wh.uri("ds", "blob"), b"b")
    assert wh.read_table("ds", "t").column("x").to_pylist() == [7] and wh.read_bytes(wh.uri("ds", "blob")) == b"b"
    assert SECRET not in repr(wh)


def test_concurrent_thread_writers_lose_no_row(s3_wh):
    s3_wh.write_table("ds", "events", pa.table({"writer": pa.array([], pa.int64()), "i": pa.array([], pa.int64())}))

    def append(writer: int) -> None:
        for batch in range(2):
            rows = pa.table({"writer": [writer] * 5, "i": [batch * 5 + j for j in range(5)]})
            s3_wh.write_table("ds", "events", rows, mode="append")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(append, range(8)))
    got = s3_wh.read_table("ds", "events")
    pairs = sorted(zip(got.column("writer").to_pylist(), got.column("i").to_pylist()))
    assert pairs == [(w, i) for w in range(8) for i in range(10)]  # 80 rows, none lost, none doubled
    assert s3_wh.table_version("ds", "events") == 16  # creation + one commit per append


_WRITER = textwrap.dedent(
    """
    import sys, pyarrow as pa
    from mmsrarec_lib.storage import Warehouse
    wh, writer = Warehouse.from_uri(sys.argv[1]), int(sys.argv[2])
    for batch in range(3):
        wh.write_table("ds", "events", pa.table({"writer": [writer] * 4, "i": [batch * 4 + j for j in range(4)]}),
                       mode="append")
    """
)


def test_concurrent_process_writers_lose_no_row(s3, s3_wh):
    """Four processes append at once through delta-rs' conditional puts (no lock service): every row lands.

    The table does not exist yet, so the first commits race to create it; the loser's append is retried.
    """
    env = {**os.environ, **s3.env}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, s3_wh.root, str(w)], env=env, stderr=subprocess.PIPE)
        for w in range(4)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    got = s3_wh.read_table("ds", "events")
    pairs = sorted(zip(got.column("writer").to_pylist(), got.column("i").to_pylist()))
    assert pairs == [(w, i) for w in range(4) for i in range(12)]
    assert s3_wh.table_version("ds", "events") == 11  # twelve commits, versions 0..11


def test_concurrent_creating_appends_on_a_local_warehouse(warehouse):
    """The same creation race on a local path: every append lands once (the retry in Warehouse.write_table)."""

    def append(writer: int) -> None:
        warehouse.write_table("ds", "runs", pa.table({"writer": [writer, writer]}), mode="append")

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(append, range(6)))
    assert sorted(warehouse.read_table("ds", "runs").column("writer").to_pylist()) == sorted(list(range(6)) * 2)


def test_errors_and_logs_never_show_credentials(s3, s3_wh, caplog):
    caplog.set_level(logging.DEBUG)
    missing_bucket = Warehouse.from_uri("s3://no-such-bucket-xyz/p", storage_options=s3.storage_options)
    messages = []
    for call in (
        lambda: s3_wh.read_table("ds", "absent"),
        lambda: missing_bucket.read_table("ds", "t"),
        lambda: missing_bucket.write_table("ds", "t", pa.table({"x": [1]})),
        lambda: missing_bucket.read_bytes(missing_bucket.uri("a.bin")),
        lambda: missing_bucket.write_bytes(missing_bucket.uri("a.bin"), b"x"),
    ):
        with pytest.raises(Exception) as info:  # noqa: PT011 (the type varies; the message is what matters)
            call()
        messages.append(f"{info.type.__name__}: {info.value!s} {info.value!r}")
    assert "no Delta table 'absent'" in messages[0]
    assert "no-such-bucket-xyz" in " ".join(messages[1:])  # errors say where, never with what
    s3_wh.write_table("ds", "t", pa.table({"x": [1]}))
    text = "\n".join(messages) + caplog.text
    assert SECRET not in text and ACCESS not in text


def test_patched_env_restores_previous_values(monkeypatch):
    monkeypatch.setenv("MMSRAREC_T_A", "old")
    monkeypatch.delenv("MMSRAREC_T_B", raising=False)
    with patched_env({"MMSRAREC_T_A": "new", "MMSRAREC_T_B": "x"}):
        assert os.environ["MMSRAREC_T_A"] == "new" and os.environ["MMSRAREC_T_B"] == "x"
    assert os.environ["MMSRAREC_T_A"] == "old" and "MMSRAREC_T_B" not in os.environ


def test_traffic_counts_the_bytes_clients_upload_and_download(s3, s3_wh):
    s3.traffic.reset()
    payload = bytes(range(256)) * 100
    s3_wh.write_bytes(s3_wh.uri("blob.bin"), payload)
    # write-then-move: one upload of the body (plus aws-chunked framing), then a server-side copy of no bytes
    assert len(payload) <= s3.traffic.bytes_written < len(payload) + 1024
    s3.traffic.reset()
    assert s3_wh.read_bytes(s3_wh.uri("blob.bin")) == payload
    assert s3.traffic.bytes_read == len(payload) and s3.traffic.bytes_written == 0
    assert s3.traffic.snapshot()["requests_get"] >= 1
