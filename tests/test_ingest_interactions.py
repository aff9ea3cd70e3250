"""Spark job build_interactions and user_sequences: timestamp formats, quarantine reasons, duplicates, tie-break."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from mmsrarec_lib import schemas
from mmsrarec_lib.ingest.interactions import build_interactions, build_user_sequences
from mmsrarec_lib.ingest.sources import SourceTable

NOW = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
UTC = dt.UTC
ITEMS = pa.array(["i1", "i2", "i3"])


def _source(rows: list[tuple]) -> SourceTable:
    """rows of (user_id, item_id, timestamp, rating); source_row = position + 1."""
    cols = list(zip(*rows))
    return SourceTable(
        table=pa.table({
            "user_id": pa.array(cols[0], pa.string()), "item_id": pa.array(cols[1], pa.string()),
            "timestamp": pa.array(cols[2], pa.string()), "rating": pa.array(cols[3], pa.string()),
            "source_row": pa.array(range(1, len(rows) + 1), pa.int64()),
        }),
        base_dir="/nonexistent",
    )


ROWS = [
    ("u1", "i1", "881250949", "4"),  # 1 unix seconds
    ("u1", "i2", "881250949.5", None),  # 2 unix seconds with a fraction, no rating
    ("u1", "i3", "2024-03-01", "3.5"),  # 3 ISO date
    ("u2", "i1", "2024-03-01T12:30:00", "1"),  # 4 ISO datetime, no offset = UTC
    ("u2", "i2", "2024-03-01T12:30:00Z", "2"),  # 5 Zulu
    ("u2", "i3", "2024-03-01 12:30:00.25+02:00", "5"),  # 6 space, fraction, offset
    (" ", "i1", "881250949", "4"),  # 7 missing_user_id
    ("u3", None, "881250949", "4"),  # 8 missing_item_id
    ("u3", "zz", "881250949", "4"),  # 9 unknown_item_id
    ("u3", "i1", "yesterday", "4"),  # 10 unparseable_timestamp
    ("u3", "i1", "2024-13-45", "4"),  # 11 unparseable_timestamp
    ("u3", "i1", "881250949", "five"),  # 12 invalid_rating
    ("u1", "i1", "881250949.0", "4.0"),  # 13 exact duplicate of 1 after normalisation
    ("u1", "i1", "881250949", "4"),  # 14 exact duplicate of 1
    ("u3", "i2", None, "4"),  # 15 unparseable_timestamp (missing)
]


@pytest.fixture(scope="module")
def built(spark):
    return build_interactions(spark, source=_source(ROWS), item_ids=ITEMS, run_id="r", created_at=NOW)


def test_each_timestamp_format_is_parsed_to_utc(built):
    got = {r["source_row"]: r["timestamp"] for r in built.new_rows.to_pylist()}
    assert got == {
        1: dt.datetime(1997, 12, 4, 15, 55, 49, tzinfo=UTC),
        2: dt.datetime(1997, 12, 4, 15, 55, 49, 500000, tzinfo=UTC),
        3: dt.datetime(2024, 3, 1, tzinfo=UTC),
        4: dt.datetime(2024, 3, 1, 12, 30, tzinfo=UTC),
        5: dt.datetime(2024, 3, 1, 12, 30, tzinfo=UTC),
        6: dt.datetime(2024, 3, 1, 10, 30, 0, 250000, tzinfo=UTC),
    }
    assert built.new_rows.schema == schemas.INTERACTIONS
    assert {r["source_row"]: r["rating"] for r in built.new_rows.to_pylist()}[2] is None


def test_every_quarantine_reason(built):
    assert [(r["source_row"], r["reason"]) for r in built.quarantine.to_pylist()] == [
        (7, "missing_user_id"), (8, "missing_item_id"), (9, "unknown_item_id"), (10, "unparseable_timestamp"),
        (11, "unparseable_timestamp"), (12, "invalid_rating"), (15, "unparseable_timestamp")]


def test_exact_duplicates_collapse_and_every_row_is_accounted_for(built):
    assert built.rows_duplicate == 2
    assert built.rows_in == 15 == built.new_rows.num_rows + built.quarantine.num_rows + built.rows_duplicate


def test_append_skips_rows_already_present_and_offsets_source_row(spark, built):
    more = _source([("u1", "i1", "881250949", "4"), ("u4", "i2", "2025-01-01", "3")])
    res = build_interactions(spark, source=more, item_ids=ITEMS, run_id="r2", created_at=NOW,
                             existing=built.new_rows)
    assert res.rows_duplicate == 1 and res.quarantine.num_rows == 0
    assert res.new_rows.to_pylist() == [{"user_id": "u4", "item_id": "i2", "timestamp": dt.datetime(2025, 1, 1,
                                         tzinfo=UTC), "rating": 3.0, "event": None, "source_row": 6 + 2}]


def _inter(rows: list[tuple[str, str, int, int]]) -> pa.Table:
    """INTERACTIONS rows from (user, item, unix seconds, source_row)."""
    return pa.Table.from_pylist(
        [{"user_id": u, "item_id": i, "timestamp": dt.datetime.fromtimestamp(t, UTC), "rating": None, "event": None,
          "source_row": s} for u, i, t, s in rows], schema=schemas.INTERACTIONS)


def test_sequences_order_by_time_then_input_row_whatever_the_physical_order(spark):
    rows = [("u", "late", 200, 1), ("u", "tie-b", 100, 7), ("u", "tie-a", 100, 3), ("u", "first", 50, 9),
            ("v", "x", 5, 2)]
    expected = ["first", "tie-a", "tie-b", "late"]
    for order in (rows, rows[::-1], rows[2:] + rows[:2]):
        seq = build_user_sequences(spark, interactions=_inter(order)).to_pylist()
        assert [r["user_id"] for r in seq] == ["u", "v"]
        assert seq[0]["item_ids"] == expected and seq[0]["length"] == 4
        assert [t.timestamp() for t in seq[0]["timestamps"]] == [50, 100, 100, 200]
