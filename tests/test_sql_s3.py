"""`mmsrarec sql` over an s3:// warehouse (moto's S3 server): discovery, views, ready queries, time travel."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from mmsrarec_lib.sql.engine import ReadOnlyViolation, SqlEngine
from mmsrarec_lib.sql.tables import TimeTravel
from mmsrarec_lib.storage import Warehouse
from mmsrarec_lib.testing import moto_s3
from tests._sql_helpers import DATASET, build_tiny_warehouse, items_table

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


def test_engine_over_an_s3_warehouse():
    with moto_s3() as s3:
        warehouse = build_tiny_warehouse(
            Warehouse.from_uri(s3.warehouse_uri, storage_options=s3.storage_options)
        )
        warehouse.write_table(DATASET, "items", items_table(2))  # items v1
        with SqlEngine(warehouse=warehouse, dataset=DATASET, params={"k": "1"}) as engine:
            assert set(engine.table_names) >= {"items", "recommendations", "evaluation_runs"}
            got = engine.query((SQL_DIR / "top_k_per_user.sql").read_text()).to_pylist()
            # items v1 keeps only i1 and i2, which are exactly the top-1 items: every title resolves
            assert [(r["user_id"], r["item_id"], r["title"]) for r in got] == [
                ("u1", "i1", "Title 1"), ("u2", "i1", "Title 1"), ("u3", "i2", "Title 2"),
            ]
            assert engine.query("SELECT count(*) AS n FROM items").column("n")[0].as_py() == 2
            with pytest.raises(ReadOnlyViolation):
                engine.query(f"SELECT * FROM read_parquet('{s3.warehouse_uri}/{DATASET}/items/*.parquet')")
        for travel, expected in (
            (TimeTravel(as_of_version=0), 5),
            (TimeTravel(as_of=dt.datetime.now(dt.UTC)), 2),
            (TimeTravel(as_of=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)), 0),
        ):
            with SqlEngine(warehouse=warehouse, dataset=DATASET, travel=travel) as engine:
                assert engine.query("SELECT count(*) AS n FROM items").column("n")[0].as_py() == expected
