"""``mmsrarec sql``: options, output formats (bytes never printed), refusals as exit code 2; a real subprocess."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.cli import main as cli_main
from mmsrarec_lib.sql.output import write_result
from tests._sql_helpers import DATASET, build_tiny_warehouse, items_table

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def tiny(warehouse):
    return build_tiny_warehouse(warehouse)


def sql(tiny, *argv: str) -> int:
    return cli_main(["sql", "--dataset", DATASET, "--warehouse", tiny.root, *argv])


def test_json_output_hides_image_bytes(tiny, capsys):
    assert sql(tiny, "SELECT item_id, image_bytes, categories FROM items ORDER BY item_id LIMIT 2",
               "--format", "json") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        {"item_id": "i1", "image_bytes_length": 4, "categories": ["c"]},
        {"item_id": "i2", "image_bytes_length": None, "categories": ["c"]},
    ]


def test_table_and_csv_output(tiny, capsys):
    assert sql(tiny, "SELECT * FROM items ORDER BY item_id", "--max-width", "12") == 0
    out = capsys.readouterr().out
    assert "\\xff" not in out and "image_bytes_length" not in out  # header cut to the 12-char width
    header, rule, *body = out.splitlines()
    assert header.startswith("item_id | title") and set(rule) <= {"-", "+"}
    assert body[-1] == "(5 rows)" and body[0].startswith("i1      | Title 1")
    assert sql(tiny, "-f", str(ROOT / "sql" / "top_k_per_user.sql"), "--param", "k=1", "--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["user_id"], r["item_id"], r["history_keywords"]) for r in rows] == [
        ("u1", "i1", '["action", "space"]'), ("u2", "i1", '["a"]'), ("u3", "i2", "[]"),
    ]


def test_parquet_output_keeps_the_bytes_and_needs_a_path(tiny, tmp_path, capsys):
    out = tmp_path / "res" / "items.parquet"
    assert sql(tiny, "SELECT item_id, image_bytes FROM items", "--format", "parquet", "--output", str(out)) == 0
    got = pq.read_table(out)
    assert got.num_rows == 5 and got.column("image_bytes")[0].as_py() == b"\xff\xd8\xff\x00"
    assert sql(tiny, "SELECT 1", "--format", "parquet") == 2
    assert "--format parquet writes a file" in capsys.readouterr().err


def test_time_travel_options(tiny, capsys):
    tiny.write_table(DATASET, "items", items_table(2))  # items v1: 2 rows (v0 had 5)
    for argv, expected in (([], 2), (["--as-of-version", "0"], 5), (["--as-of-version", "items=0"], 5)):
        assert sql(tiny, "SELECT count(*) AS n FROM items", "--format", "csv", *argv) == 0
        assert capsys.readouterr().out.splitlines()[1] == str(expected)
    assert sql(tiny, "SELECT count(*) AS n FROM items", "--as-of", "2000-01-01", "--format", "csv") == 0
    assert capsys.readouterr().out.splitlines()[1] == "0"  # nothing existed in 2000
    assert sql(tiny, "SELECT 1", "--as-of-version", "x=y") == 2
    assert "expected N or TABLE=N" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("DELETE FROM items", "refused: DELETE writes data"),
        ("COPY (SELECT 1) TO '/tmp/mmsrarec-sql-leak.csv'", "refused: COPY"),
        ("SELECT * FROM read_csv('/etc/passwd')", "refused: Permission Error"),
        ("SELECT nope FROM items", "statement 1 failed: Binder Error"),
    ],
)
def test_refusals_and_errors_exit_2_with_one_line(tiny, capsys, query, message):
    assert sql(tiny, query) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmsrarec sql: error: ") and message in err
    assert not Path("/tmp/mmsrarec-sql-leak.csv").exists()


def test_query_and_file_are_exclusive(tiny, capsys):
    assert sql(tiny) == 2
    assert "exactly one of" in capsys.readouterr().err
    assert sql(tiny, "-f", "/nonexistent.sql") == 2
    assert "SQL file not found" in capsys.readouterr().err


def test_output_streams_in_batches():
    """A 3-batch result is written batch by batch, with one header, and counts every row."""
    schema = pa.schema([("n", pa.int64()), ("blob", pa.binary())])
    batches = [pa.record_batch([pa.array([i, i + 1]), pa.array([b"ab", b""])], schema=schema) for i in (0, 2, 4)]
    buf = io.StringIO()
    assert write_result(pa.RecordBatchReader.from_batches(schema, batches), fmt="csv", stdout=buf) == 6
    assert buf.getvalue().splitlines() == ['"n","blob_length"', "0,2", "1,0", "2,2", "3,0", "4,2", "5,0"]


@pytest.mark.slow
def test_real_subprocess(tiny):
    """The console entry point in a fresh interpreter: exits 0 (no delta-rs exit crash) and prints JSON."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    base = [sys.executable, "-m", "jobs.cli", "--log-level", "WARNING", "sql", "--dataset", DATASET,
            "--warehouse", tiny.root]
    for _ in range(3):  # the exit crash was intermittent: run it a few times
        done = subprocess.run(base + ["SELECT item_id FROM items ORDER BY 1", "--format", "json"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert [json.loads(x)["item_id"] for x in done.stdout.splitlines()] == ["i1", "i2", "i3", "i4", "i5"]
    refused = subprocess.run(base + ["INSERT INTO items (item_id) VALUES ('x')"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "refused: INSERT writes data" in refused.stderr
