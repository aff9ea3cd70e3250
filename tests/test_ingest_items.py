"""Spark job build_item_table: every item quarantine reason, dedup, attributes, text cleanup, every image status."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from mmsrarec_lib import schemas
from mmsrarec_lib.ingest.items import build_item_table, text_sha256
from mmsrarec_lib.ingest.sources import read_source
from tests._ingest_helpers import corrupt_jpeg_bytes, http_server, jpeg_bytes

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("items")
    data = root / "data"
    (data / "img").mkdir(parents=True)
    (data / "img" / "a.jpg").write_bytes(jpeg_bytes(900, 300))
    (data / "img" / "bad.jpg").write_bytes(corrupt_jpeg_bytes())
    (root / "secret.jpg").write_bytes(jpeg_bytes())
    with http_server(data / "img") as base:
        lines = [
            "item_id,title,description,categories,image_uri,reason",  # an extra column named like ours
            'a,"  Tom &amp; Jerry\n  show ",<b>x</b>  y,x| y |x|,img/a.jpg,2000',  # 1 ok, cleaned
            ",Nameless,,,img/a.jpg,",  # 2 missing_item_id
            'a,"  Tom &amp; Jerry\n  show ",<b>x</b>  y,x| y |x|,img/a.jpg,2000',  # 3 exact duplicate of 1
            "a,Another title,,,img/a.jpg,2000",  # 4 conflicting_duplicate
            "b,B,,,img/nope.jpg,",  # 5 missing
            "c,C,,,img/bad.jpg,",  # 6 undecodable
            "d,D,,,../secret.jpg,",  # 7 refused (path traversal)
            f"e,E,,,{base}/a.jpg,",  # 8 ok over http
            "f,F,,,,",  # 9 none
            "g,G,,,,,,",  # 10 malformed (too many fields)
            "   ,Blank id,,,,",  # 11 missing_item_id (whitespace only)
        ]
        (data / "items.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        source = read_source(data / "items.csv")
        result = build_item_table(spark, source=source, run_id="run-1", created_at=NOW, max_image_side=90,
                                  image_timeout_s=2.0, image_retries=0)
    return result


def test_schema_and_one_row_per_item(built):
    assert built.items.schema == schemas.ITEMS and built.quarantine.schema == schemas.QUARANTINE
    assert built.items.column("item_id").to_pylist() == ["a", "b", "c", "d", "e", "f"]
    assert built.items.column("source_row").to_pylist() == [1, 5, 6, 7, 8, 9]


def test_every_quarantine_reason_with_row_number_and_raw_row(built):
    q = built.quarantine.to_pylist()
    assert [(r["source_row"], r["reason"]) for r in q] == [
        (2, "missing_item_id"), (4, "conflicting_duplicate"), (10, "malformed_row"), (11, "missing_item_id")]
    assert all(r["run_id"] == "run-1" and r["created_at"] == NOW for r in q)
    assert json.loads(q[1]["raw_row"])["title"] == "Another title"
    assert json.loads(q[2]["raw_row"])["_raw"] == "g,G,,,,,,"


def test_rows_are_accounted_for(built):
    assert built.rows_in == 11 and built.rows_duplicate == 1
    assert built.rows_in == built.items.num_rows + built.quarantine.num_rows + built.rows_duplicate


def test_text_is_normalised_and_extra_columns_become_attributes(built):
    a = built.items.to_pylist()[0]
    assert a["title"] == "Tom & Jerry show"
    assert a["description"] == "<b>x</b> y"
    assert a["categories"] == ["x", "y"]  # trimmed, de-duplicated, empties dropped
    assert dict(a["attributes"]) == {"reason": "2000"}  # kept as an attribute, not confused with ours
    assert a["text_sha256"] == text_sha256("Tom & Jerry show", "<b>x</b> y", ["x", "y"], {"reason": "2000"})
    b = built.items.to_pylist()[1]
    assert dict(b["attributes"]) == {}  # empty CSV field = missing, not an attribute


def test_every_image_status(built):
    rows = {r["item_id"]: r for r in built.items.to_pylist()}
    assert {k: r["image_status"] for k, r in rows.items()} == {
        "a": "ok", "b": "missing", "c": "undecodable", "d": "refused", "e": "ok", "f": "none"}
    assert (rows["a"]["image_width"], rows["a"]["image_height"]) == (90, 30)
    assert rows["a"]["image_sha256"] == rows["e"]["image_sha256"]  # local file and http give the same bytes
    for k in "bcdf":
        assert rows[k]["image_bytes"] is None and rows[k]["image_sha256"] is None
    for k in "bcd":
        assert rows[k]["image_error"]
    assert "outside the dataset folder" in rows["d"]["image_error"]
