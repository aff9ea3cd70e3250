import datetime as dt

import pyarrow as pa
import pytest

from mmsrarec_lib import schemas
from mmsrarec_lib.storage import Warehouse, resolve_warehouse_uri, storage_options_from_env


def test_resolve_warehouse_order(monkeypatch, tmp_path):
    monkeypatch.setenv("MMSRAREC_WAREHOUSE", "s3://bucket/prefix/")
    assert resolve_warehouse_uri(None) == "s3://bucket/prefix"
    assert resolve_warehouse_uri(str(tmp_path / "w")) == str(tmp_path / "w")
    monkeypatch.delenv("MMSRAREC_WAREHOUSE")
    monkeypatch.chdir(tmp_path)
    assert resolve_warehouse_uri(None) == str(tmp_path / "warehouse")
    with pytest.raises(ValueError, match="unsupported warehouse scheme"):
        resolve_warehouse_uri("gs://x/y")


def test_storage_options_from_env_and_no_secret_in_repr(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    opts = storage_options_from_env("s3://b/p")
    assert opts["AWS_REGION"] == "eu-west-1" and opts["AWS_ALLOW_HTTP"] == "true"
    assert storage_options_from_env("/local/path") == {}
    w = Warehouse.from_uri("s3://b/p")
    assert "s3cr3t" not in repr(w) and "AKID" not in repr(w)


def test_partition_overwrite_replaces_only_that_partition(warehouse):
    t = pa.table(
        {"run_date": pa.array([dt.date(2026, 1, 1), dt.date(2026, 1, 2)], pa.date32()), "user_id": ["a", "b"]}
    )
    warehouse.write_table("ds", "recs", t, partition_by=["run_date"])
    t2 = pa.table({"run_date": pa.array([dt.date(2026, 1, 2)], pa.date32()), "user_id": ["c"]})
    v = warehouse.write_table(
        "ds", "recs", t2, partition_by=["run_date"], predicate="run_date = '2026-01-02'"
    )
    assert v == 1
    rows = warehouse.read_table("ds", "recs").sort_by("user_id").to_pylist()
    assert [r["user_id"] for r in rows] == ["a", "c"]
    assert warehouse.read_table("ds", "recs", version=0).num_rows == 2  # time travel


def test_merge_upserts_and_is_idempotent(warehouse):
    warehouse.merge_table("ds", "kw", pa.table({"k": ["x", "y"], "v": [1, 2]}), keys=["k"])
    batch = pa.table({"k": ["y", "z"], "v": [5, 6]})
    warehouse.merge_table("ds", "kw", batch, keys=["k"])
    warehouse.merge_table("ds", "kw", batch, keys=["k"])
    assert warehouse.read_table("ds", "kw").sort_by("k").to_pylist() == [
        {"k": "x", "v": 1}, {"k": "y", "v": 5}, {"k": "z", "v": 6}
    ]


def test_objects_round_trip_and_missing_table(warehouse, tmp_path):
    uri = warehouse.uri("ds", "models", "r1", "cfg.json")
    warehouse.write_bytes(uri, b"{}")
    assert warehouse.read_bytes(uri) == b"{}" and warehouse.exists(uri)
    assert warehouse.list_dir(warehouse.uri("ds", "models")) == ["r1"]
    (tmp_path / "ckpt" / "sub").mkdir(parents=True)
    (tmp_path / "ckpt" / "sub" / "w.bin").write_bytes(b"\x00\x01")
    warehouse.upload_dir(tmp_path / "ckpt", warehouse.uri("ds", "models", "r2"))
    out = warehouse.download_dir(warehouse.uri("ds", "models", "r2"), tmp_path / "back")
    assert (out / "sub" / "w.bin").read_bytes() == b"\x00\x01"
    assert not warehouse.has_table("ds", "nope")
    with pytest.raises(FileNotFoundError, match="no Delta table 'nope'"):
        warehouse.read_table("ds", "nope")
    assert warehouse.write_table("ds", "empty", schemas.empty(schemas.ITEMS)) == 0
    assert warehouse.read_table("ds", "empty").schema.names == schemas.ITEMS.names


def test_filtered_reads_after_merge(warehouse):
    """delta-rs' MERGE writes string_view files beside plain-string ones; filtered reads must still work."""
    import pyarrow.dataset as pads

    from mmsrarec_lib.sql.engine import SqlEngine

    warehouse.write_table("ds", "kw", pa.table({"k": ["a", "b"], "p": ["x", "x"], "v": [1, 2]}), partition_by=["p"])
    warehouse.merge_table("ds", "kw", pa.table({"k": ["b", "c"], "p": ["x", "y"], "v": [5, 6]}), keys=["k"])
    got = warehouse.read_table("ds", "kw", filter=pads.field("k").isin(["b", "c"]), columns=["k", "v"])
    assert got.sort_by("k").to_pylist() == [{"k": "b", "v": 5}, {"k": "c", "v": 6}]
    assert got.schema.field("k").type == pa.string()
    assert warehouse.read_table("ds", "kw", filter=pads.field("p") == "y").column("k").to_pylist() == ["c"]
    with SqlEngine(warehouse=warehouse, dataset="ds") as engine:
        rows = engine.query("SELECT k, v FROM kw WHERE k = 'b'").to_pylist()
    assert rows == [{"k": "b", "v": 5}]
