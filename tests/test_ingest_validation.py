"""No input crashes ingest: out-of-range timestamps, huge fields, unclosed quotes, undecodable bytes, white space
ids and empty files each end as a quarantined row (with its reason and row number) or a clear refusal."""

from __future__ import annotations

import dataclasses
import json

import pyarrow.compute as pc
import pytest

from mmsrarec_lib.ingest import sources
from mmsrarec_lib.ingest.interactions import TimestampRange
from mmsrarec_lib.ingest.run import IngestConfig, run_ingest
from mmsrarec_lib.ingest.sources import read_source
from mmsrarec_lib.ingest.splits import SplitConfig
from mmsrarec_lib.sql.engine import SqlEngine

DS = "hostile"
CFG = IngestConfig(dataset=DS, splits=SplitConfig(k_core=0, n_negatives=2, history_len=2))
N_ITEMS = 6


def _items_csv(path, *, extra: str = "") -> str:
    rows = "".join(f"i{k},Item {k},A short description {k}\n" for k in range(N_ITEMS))
    path.write_text("item_id,title,description\n" + rows + extra, encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------ the reader alone (no Spark)
def test_one_bad_byte_quarantines_its_row_only_and_encoding_can_be_declared(tmp_path):
    path = tmp_path / "inter.csv"
    path.write_bytes(b"user_id,item_id,timestamp\nu1,i1,100\nu\xe9,i2,100\nu3,i3,100\n")
    src = read_source(path)
    assert src.table.column("user_id").to_pylist() == ["u1", "u3"]
    [bad] = src.malformed
    assert (bad.source_row, bad.reason, bad.raw) == (2, "bad_encoding", "u\\xe9,i2,100")
    assert "--encoding" in bad.error
    latin = read_source(path, encoding="latin-1")
    assert latin.table.column("user_id").to_pylist() == ["u1", "u\u00e9", "u3"] and not latin.malformed
    with pytest.raises(ValueError, match=r"inter.csv: unknown encoding 'klingon'"):
        read_source(path, encoding="klingon")
    jl = tmp_path / "inter.jsonl"
    jl.write_bytes(b'{"user_id": "u1"}\n{"user_id": "\xff"}\n')
    assert [m.reason for m in read_source(jl).malformed] == ["bad_encoding"]


def test_fields_of_any_length_are_read_and_over_the_limit_quarantined_by_row(tmp_path, monkeypatch):
    path = tmp_path / "items.csv"
    _items_csv(path, extra=f'big,Big,"{"d" * 1_000_000}"\n')  # a 1 MB description (the old limit was 128 KB)
    src = read_source(path)
    assert src.table.num_rows == N_ITEMS + 1 and len(src.table.column("description")[N_ITEMS].as_py()) == 1_000_000
    monkeypatch.setattr(sources, "MAX_FIELD_CHARS", 1000)
    path.write_text("item_id,title\ni1,ok\ni2," + "x" * 5000 + "\ni3,fine\n")
    src = read_source(path)
    assert src.table.column("item_id").to_pylist() == ["i1", "i3"]
    [bad] = src.malformed
    assert (bad.source_row, bad.reason) == (2, "field_too_large") and "line 3" in bad.error


def test_unclosed_quote_quarantines_its_row_and_says_where(tmp_path):
    path = tmp_path / "items.csv"
    _items_csv(path, extra='bad,"never closed\n' + ("z" * 1000 + "\n") * 200)  # > 128 KB after the quote
    src = read_source(path)
    assert src.table.num_rows == N_ITEMS
    [bad] = src.malformed
    assert bad.source_row == N_ITEMS + 1 and bad.reason == "malformed_row"
    assert f"lines {N_ITEMS + 2}-{N_ITEMS + 202}" in bad.error and "never closed" in bad.error
    assert len(bad.raw) == sources.MAX_RAW_CHARS  # the raw text kept is bounded


# ------------------------------------------------------------------ whole ingest (Spark)
@pytest.fixture(scope="module")
def hostile(spark, tmp_path_factory):
    """One ingest of files with every kind of bad row, plus the valid ones around them."""
    from mmsrarec_lib.storage import Warehouse

    d = tmp_path_factory.mktemp("hostile")
    items = read_source(_items_csv(d / "items.csv", extra="\t,tab id,d\n\u00a0i7\u00a0,nbsp padded,d\n"))
    rows = [
        "u1,i0,1700000000", "u1,i1,1700000060", "u1,i2,1700000120",  # valid
        "\tu2\t,i1,1700000000",  # tab-padded user: stored as u2
        "\t,i1,1700000000",  # only a tab: missing user
        "\u200b,i1,1700000000",  # only a zero-width space: missing user
        "u3,i1,-62135596801",  # before year 1: crashed ingest before
        "u3,i1,0001-01-01T00:00:00Z",
        "u3,i1,3000-01-01",  # far future
        "u3,i1,-5",  # negative epoch
        "u3,i1,1969-12-31T23:59:59Z",
        "u4,i7,1700000000",  # the NBSP-padded item id, stripped
    ]
    path = d / "inter.csv"
    path.write_bytes(("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n").encode("utf-8")
                     + b"u\xff,i1,1700000000\n" + b"u5,i2,1700000000\n")
    inter = read_source(path)
    wh = Warehouse.from_uri(str(d / "wh"))
    summary = run_ingest(warehouse=wh, items=items, interactions=inter, config=CFG, spark=spark)
    return wh, summary


def _quarantine(wh, table):
    return {r["source_row"]: r["reason"] for r in wh.read_table(DS, table).to_pylist()}


def test_hostile_interactions_are_quarantined_with_reason_and_row(hostile):
    wh, summary = hostile
    assert _quarantine(wh, "interactions_quarantine") == {
        5: "missing_user_id", 6: "missing_user_id", 7: "timestamp_out_of_range", 8: "timestamp_out_of_range",
        9: "timestamp_out_of_range", 10: "timestamp_out_of_range", 11: "timestamp_out_of_range",
        13: "bad_encoding"}
    inter = wh.read_table(DS, "interactions")
    assert sorted(inter.column("user_id").to_pylist()) == ["u1", "u1", "u1", "u2", "u4", "u5"]
    assert "u4" in inter.column("user_id").to_pylist() and "i7" in inter.column("item_id").to_pylist()
    [run] = [r for r in summary.runs if r.table == "interactions"]
    assert (run.rows_in, run.rows_written, run.rows_quarantined, run.rows_duplicate) == (14, 6, 8, 0)


def test_hostile_item_ids_are_stripped_and_blank_ones_quarantined(hostile):
    wh, summary = hostile
    ids = wh.read_table(DS, "items").column("item_id").to_pylist()
    assert sorted(ids) == sorted([f"i{k}" for k in range(N_ITEMS)] + ["i7"])
    assert _quarantine(wh, "items_quarantine") == {N_ITEMS + 1: "missing_item_id"}


def test_every_stored_timestamp_is_in_range_and_sql_reads_them(hostile):
    wh, _ = hostile
    ts = wh.read_table(DS, "interactions").column("timestamp")
    assert pc.min(ts).as_py().year >= 1970 and pc.max(ts).as_py().year < 2100
    with SqlEngine(warehouse=wh, dataset=DS) as engine:
        rows = engine.query("SELECT * FROM interactions ORDER BY source_row").to_pylist()
    assert len(rows) == 6 and json.dumps(rows, default=str)
    [state] = [s for s in wh.read_table(DS, "dataset_runs").to_pylist() if s["status"] == "complete"]
    assert dict(state["published_versions"])["interactions"] == 0


def test_timestamp_range_is_configurable(spark, tmp_path):
    import datetime as dt

    from mmsrarec_lib.storage import Warehouse

    path = tmp_path / "inter.csv"
    path.write_text("user_id,item_id,timestamp\nu1,i0,2020-01-01\nu1,i1,2030-01-01\nu1,i2,1999-01-01\n")
    cfg = dataclasses.replace(CFG, timestamps=TimestampRange(
        earliest=dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
        latest=dt.datetime(2025, 1, 1, tzinfo=dt.UTC)))
    wh = Warehouse.from_uri(str(tmp_path / "wh"))
    run_ingest(warehouse=wh, items=read_source(_items_csv(tmp_path / "items.csv")), interactions=read_source(path),
               config=cfg, spark=spark)
    assert _quarantine(wh, "interactions_quarantine") == {2: "timestamp_out_of_range", 3: "timestamp_out_of_range"}


def test_empty_items_file_is_refused_unless_allowed_and_missing_column_names_file(spark, tmp_path):
    from mmsrarec_lib.storage import Warehouse

    empty = tmp_path / "items.csv"
    empty.write_text("item_id,title\n")
    inter = tmp_path / "inter.csv"
    inter.write_text("user_id,item_id,timestamp\nu1,i0,1700000000\n")
    wh = Warehouse.from_uri(str(tmp_path / "wh"))
    with pytest.raises(ValueError, match=r"items.csv: the items file has no data rows.*--allow-empty"):
        run_ingest(warehouse=wh, items=read_source(empty), interactions=read_source(inter), config=CFG, spark=spark)
    assert not wh.has_table(DS, "items")  # refused before anything was written
    summary = run_ingest(warehouse=wh, items=read_source(empty), interactions=read_source(inter),
                         config=dataclasses.replace(CFG, allow_empty=True), spark=spark)
    assert summary.counts["items"] == 0 and summary.counts["interactions_quarantine"] == 1

    no_id = tmp_path / "noid.csv"
    no_id.write_text("title,source_row\nA,1\n")
    with pytest.raises(ValueError) as err:
        run_ingest(warehouse=wh, items=read_source(no_id), interactions=read_source(inter), config=CFG, spark=spark)
    message = str(err.value)
    assert message.startswith(f"{no_id}: the items file lacks required column(s) ['item_id']")
    assert message.endswith("its columns are ['title', 'source_row']")  # the file's own, not internal ones
    failed = [s for s in wh.read_table(DS, "dataset_runs").to_pylist() if s["status"] == "failed"]
    assert len(failed) == 1 and "lacks required column" in failed[0]["message"]


@pytest.mark.slow
def test_cli_refuses_an_empty_items_file_in_one_line(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "items.csv").write_text("item_id,title\n")
    (tmp_path / "inter.csv").write_text("user_id,item_id,timestamp\nu1,i0,1700000000\n")
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "ingest", "--dataset", "x", "--items", str(tmp_path / "items.csv"),
         "--interactions", str(tmp_path / "inter.csv"), "--warehouse", str(tmp_path / "wh")],
        cwd=Path(__file__).resolve().parents[1], env={**os.environ, "MMSRAREC_LOG_LEVEL": "WARNING"},
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == (
        f"mmsrarec ingest: error: {tmp_path / 'items.csv'}: the items file has no data rows; refusing to replace "
        "the dataset with an empty items table (pass --allow-empty if that is intended)")


def test_sparse_catalogue_stops_with_a_suggested_k_core_and_allow_sparse_proceeds(spark, tmp_path):
    """A fashion-like catalogue: 60 items bought about twice each by 40 users; k-core 5 keeps nothing."""
    from mmsrarec_lib.ingest.diagnostics import SparseDataError
    from mmsrarec_lib.storage import Warehouse

    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n" + "".join(f"p{k},Product {k}\n" for k in range(60)))
    rows = [f"c{u},p{(u * 3 + j) % 60},{1_700_000_000 + 60 * j}" for u in range(40) for j in range(3)]
    inter = tmp_path / "inter.csv"
    inter.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    wh = Warehouse.from_uri(str(tmp_path / "wh"))
    cfg = IngestConfig(dataset="fashion", splits=SplitConfig(k_core=5, n_negatives=5, history_len=2))
    with pytest.raises(SparseDataError) as err:
        run_ingest(warehouse=wh, items=read_source(items), interactions=read_source(inter), config=cfg, spark=spark)
    message = str(err.value)
    # 40 users x 3 purchases; items p0..p59 each bought twice (u*3+j covers 0..119 mod 60)
    assert message.startswith("k-core(5) kept 0/40 users, 0/60 items, 0/120 interactions (0%)")
    assert "try --k-core 2" in message and "k=2: 40 users, 60 items, 120 interactions (100%)" in message
    assert "--allow-sparse" in message
    assert not wh.has_table("fashion", "items")  # nothing was committed: every table is built before the commits
    from mmsrarec_lib.snapshots import run_states

    [failed] = run_states(wh, "fashion")
    assert failed["status"] == "failed" and "SparseDataError" in failed["message"]

    summary = run_ingest(warehouse=wh, items=read_source(items), interactions=read_source(inter),
                         config=dataclasses.replace(cfg, allow_sparse=True), spark=spark)
    assert summary.kcore["interactions_kept"] == 0 and summary.warnings and "try --k-core 2" in summary.warnings[0]
    logged = wh.read_table("fashion", "ingest_runs").to_pylist()
    assert {r["kcore_k"] for r in logged} == {5} and {r["kcore_interactions"] for r in logged} == {0}
    assert all("try --k-core 2" in r["warnings"] for r in logged)

    good = run_ingest(warehouse=wh, items=read_source(items), interactions=read_source(inter),
                      config=dataclasses.replace(cfg, splits=SplitConfig(k_core=2, n_negatives=5, history_len=2)),
                      spark=spark)
    assert good.warnings == () and good.kcore["share_kept"] == 1.0 and sum(good.eval_split_users.values()) == 40


def test_ingest_runs_written_before_the_kcore_columns_is_migrated_once(warehouse):
    import datetime as dt

    import pyarrow as pa

    from mmsrarec_lib import schemas
    from mmsrarec_lib.runs import IngestRun, ingest_runs_update

    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    old_schema = pa.schema([f for f in schemas.INGEST_RUNS if not f.name.startswith("kcore") and f.name != "warnings"])
    old = pa.Table.from_pylist([{"run_id": "old", "dataset": "d", "table": "items", "rows_in": 3, "rows_written": 3,
                                 "rows_quarantined": 0, "rows_duplicate": 0, "started_at": now, "finished_at": now,
                                 "code_version": "x"}], schema=old_schema)
    warehouse.write_table("d", "ingest_runs", old)
    run = IngestRun("new", "d", "items", 2, 2, 0, 0, now, now, kcore_k=5, kcore_users=1, kcore_items=2,
                    kcore_interactions=3, kcore_share_kept=0.5, warnings="w")
    table, mode = ingest_runs_update(warehouse, [run])
    assert mode == "overwrite" and table.schema == schemas.INGEST_RUNS
    assert [(r["run_id"], r["kcore_k"]) for r in table.to_pylist()] == [("old", None), ("new", 5)]
    warehouse.write_table("d", "ingest_runs", table, mode=mode)
    again, mode = ingest_runs_update(warehouse, [run])
    assert mode == "append" and again.num_rows == 1
