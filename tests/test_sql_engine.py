"""The SQL engine: one view per Delta table, read-only enforcement for every statement kind, time travel."""

from __future__ import annotations

import datetime as dt
import time

import pyarrow as pa
import pytest

from mmsrarec_lib.sql.engine import ReadOnlyViolation, SqlEngine, SqlError
from mmsrarec_lib.sql.tables import TimeTravel, parse_timestamp
from tests._sql_helpers import DATASET, build_tiny_warehouse, items_table


@pytest.fixture
def tiny(warehouse):
    return build_tiny_warehouse(warehouse)


def _items_count(warehouse) -> int:
    with SqlEngine(warehouse=warehouse, dataset=DATASET) as engine:
        return engine.query("SELECT count(*) AS n FROM items").column("n")[0].as_py()


def test_every_table_is_a_view_by_its_name(tiny):
    with SqlEngine(warehouse=tiny, dataset=DATASET) as engine:
        assert engine.query("SELECT count(*) AS n FROM interactions").column("n")[0].as_py() == 10
        tables = {r["table_name"]: r for r in engine.query("SELECT * FROM warehouse_tables").to_pylist()}
        assert tables["recommendations"]["partition_columns"] == ["run_date"]
        assert tables["items"]["version"] == 0 and tables["items"]["exists"]
        # a known table that was never written is an empty view of its schema, flagged as absent
        assert not tables["user_collab_keywords"]["exists"]
        assert engine.query("SELECT * FROM user_collab_keywords").num_rows == 0
        # WITH, temporary views, macros and DESCRIBE work
        got = engine.query(
            "CREATE TEMP VIEW pop AS SELECT item_id, count(*) AS n FROM interactions GROUP BY item_id;"
            "CREATE MACRO twice(x) AS 2 * x;"
            "WITH top AS (SELECT * FROM pop ORDER BY n DESC LIMIT 1) SELECT item_id, twice(n) AS n2 FROM top"
        ).to_pylist()
        assert got == [{"item_id": "i1", "n2": 8}]
        assert "run_date" in engine.query("DESCRIBE recommendations").column("column_name").to_pylist()
        assert engine.execute("CREATE TEMP VIEW again AS SELECT 1 AS a") is None  # a definition outputs nothing
        assert engine.query("EXPLAIN SELECT * FROM again").num_rows >= 1


def test_missing_dataset_is_a_clear_error(tiny):
    with pytest.raises(FileNotFoundError, match=r"no Delta tables for dataset 'nope'.*datasets there: tiny"):
        SqlEngine(warehouse=tiny, dataset="nope")


REFUSED = [
    ("INSERT INTO items (item_id) VALUES ('x')", "INSERT writes data"),
    ("UPDATE items SET title = 'x'", "UPDATE writes data"),
    ("DELETE FROM items", "DELETE writes data"),
    ("CREATE TABLE t AS SELECT * FROM items", "table memory.main.t"),
    ("CREATE TEMP TABLE t (a INTEGER)", "table temp.main.t"),
    ("CREATE SEQUENCE s", "sequence"),
    ("CREATE OR REPLACE TEMP VIEW items AS SELECT 1 AS a", "view temp.main.items"),
    ("DROP VIEW recommendations", "view temp.main.recommendations"),
    ("EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1", "table memory.main.t"),
    ("COPY (SELECT * FROM items) TO '{out}'", "COPY reads or writes files"),
    ("COPY items FROM '{out}'", "COPY reads or writes files"),
    ("ATTACH '{out}' AS other", "ATTACH opens another database"),
    ("INSTALL delta", "INSTALL/LOAD"),
    ("LOAD delta", "INSTALL/LOAD"),
    ("EXPORT DATABASE '{out}'", "EXPORT DATABASE"),
    ("SELECT * FROM read_csv('/etc/passwd')", "/etc/passwd"),
    ("SELECT * FROM read_text('/etc/hostname')", "file system operations are disabled"),
    ("SELECT * FROM '{out}'", "Cannot access file"),  # a bare file path is a file scan: refused too
    ("CREATE TEMP VIEW v AS SELECT * FROM read_csv('/etc/passwd')", "/etc/passwd"),
    ("SET enable_external_access = true", "configuration has been locked"),
    ("RESET lock_configuration", "configuration has been locked"),
    ("BEGIN TRANSACTION", "transactions are managed by the engine"),
]


@pytest.mark.parametrize(("sql", "reason"), REFUSED, ids=[s.split(" (")[0][:28] for s, _ in REFUSED])
def test_refused_statements(tiny, tmp_path, sql, reason):
    out = tmp_path / "leak.csv"
    with SqlEngine(warehouse=tiny, dataset=DATASET) as engine:
        with pytest.raises(ReadOnlyViolation) as info:
            engine.query(sql.format(out=out))
        assert reason in str(info.value)
        assert isinstance(info.value, ReadOnlyViolation) and str(info.value).startswith("refused: ")
        # nothing changed: no catalog object, no file, the view still reads the warehouse
        assert engine.query("SELECT count(*) AS n FROM duckdb_tables()").column("n")[0].as_py() == 0
        assert engine.query("SELECT count(*) AS n FROM items").column("n")[0].as_py() == 5
        assert engine.query("SELECT current_setting('enable_external_access') AS v").column("v")[0].as_py() is False
    assert not out.exists()
    assert _items_count(tiny) == 5


def test_a_refused_statement_later_in_a_script_stops_everything_before_it_runs(tiny):
    with SqlEngine(warehouse=tiny, dataset=DATASET) as engine:
        with pytest.raises(ReadOnlyViolation, match="statement 2"):
            engine.execute("CREATE TEMP VIEW v AS SELECT 1 AS a; DELETE FROM items; SELECT * FROM v")
        with pytest.raises(SqlError, match="does not exist"):
            engine.query("SELECT * FROM v")


def test_python_variables_are_not_queryable(tiny, monkeypatch):
    """DuckDB's Python replacement scans are off: a table in the scope that runs the query is not reachable."""
    import mmsrarec_lib.sql.engine as engine_module

    monkeypatch.setattr(engine_module, "secret_rows", pa.table({"password": ["hunter2"]}), raising=False)
    with SqlEngine(warehouse=tiny, dataset=DATASET) as engine:
        with pytest.raises(SqlError, match="secret_rows does not exist"):
            engine.query("SELECT * FROM secret_rows")


def test_sql_errors_are_clear(tiny):
    with SqlEngine(warehouse=tiny, dataset=DATASET) as engine:
        with pytest.raises(SqlError, match="syntax error"):
            engine.query("SELEC 1")
        with pytest.raises(SqlError, match='"nope" not found'):
            engine.query("SELECT nope FROM items")
        with pytest.raises(SqlError, match="no SQL statement"):
            engine.query("  ;  ")
    with pytest.raises(ValueError, match="not an identifier"):
        SqlEngine(warehouse=tiny, dataset=DATASET, params={"bad name": "1"})


def _three_versions(warehouse) -> list[dt.datetime]:
    """items: v0 = 2 rows, v1 = 3 rows, v2 = 5 rows; returns an instant after each commit."""
    instants = []
    for n in (2, 3, 5):
        warehouse.write_table(DATASET, "items", items_table(n))
        time.sleep(0.02)
        instants.append(dt.datetime.now(dt.UTC))
        time.sleep(0.02)
    warehouse.write_table(DATASET, "interactions", pa.table({"user_id": ["u"], "item_id": ["i1"]}))
    return instants


def _count(warehouse, travel: TimeTravel, table: str = "items") -> int:
    with SqlEngine(warehouse=warehouse, dataset=DATASET, travel=travel) as engine:
        return engine.query(f"SELECT count(*) AS n FROM {table}").column("n")[0].as_py()


def test_time_travel_by_version(warehouse):
    _three_versions(warehouse)
    assert _count(warehouse, TimeTravel()) == 5
    assert _count(warehouse, TimeTravel(as_of_version=0)) == 2
    assert _count(warehouse, TimeTravel(as_of_version=1)) == 3
    assert _count(warehouse, TimeTravel(as_of_version=1), "interactions") == 1  # only v0 exists: latest <= 1
    assert _count(warehouse, TimeTravel(as_of_version=9)) == 5
    assert _count(warehouse, TimeTravel(as_of_version=2, table_versions={"items": 0})) == 2
    with SqlEngine(warehouse=warehouse, dataset=DATASET, travel=TimeTravel(as_of_version=1)) as engine:
        got = engine.query("SELECT version, latest_version FROM warehouse_tables WHERE table_name = 'items'")
        assert got.to_pylist() == [{"version": 1, "latest_version": 2}]
    with pytest.raises(ValueError, match=r"items has versions 0\.\.2"):
        _count(warehouse, TimeTravel(table_versions={"items": 7}))
    with pytest.raises(ValueError, match="do not exist: recs"):
        _count(warehouse, TimeTravel(table_versions={"recs": 0}))
    with pytest.raises(ValueError, match=">= 0"):
        TimeTravel(as_of_version=-1)


def test_time_travel_by_timestamp(warehouse):
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    after_v0, after_v1, _ = _three_versions(warehouse)
    assert _count(warehouse, TimeTravel(as_of=after_v0)) == 2
    assert _count(warehouse, TimeTravel(as_of=after_v1)) == 3
    # interactions was created after after_v1: it did not exist yet, so its view is empty
    assert _count(warehouse, TimeTravel(as_of=after_v1), "interactions") == 0
    assert _count(warehouse, TimeTravel(as_of=before)) == 0
    with pytest.raises(ValueError, match="either --as-of"):
        TimeTravel(as_of=after_v0, as_of_version=1)


def test_parse_timestamp():
    utc = dt.UTC
    assert parse_timestamp("2026-11-25T21:00:00Z") == dt.datetime(2026, 11, 25, 21, tzinfo=utc)
    assert parse_timestamp("2026-11-25") == dt.datetime(2026, 11, 25, tzinfo=utc)
    assert parse_timestamp("2026-11-25T23:00:00+02:00") == dt.datetime(2026, 11, 25, 21, tzinfo=utc)
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_timestamp("yesterday")
