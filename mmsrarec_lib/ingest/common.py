"""Pieces shared by the Spark ingest jobs: Arrow <-> Spark hand-off, raw-row JSON, quarantine rows, text cleanup."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import unicodedata

import pyarrow as pa

from mmsrarec_lib import schemas
from mmsrarec_lib.ingest.sources import (  # noqa: F401 (the reader's reasons, re-exported with the others)
    BAD_ENCODING,
    FIELD_TOO_LARGE,
    MALFORMED_ROW,
    SOURCE_ROW,
    Malformed,
)

# quarantine reasons (the ``reason`` column); docs/ingest.md explains each
MISSING_ITEM_ID = "missing_item_id"
CONFLICTING_DUPLICATE = "conflicting_duplicate"
MISSING_USER_ID = "missing_user_id"
UNKNOWN_ITEM_ID = "unknown_item_id"
UNPARSEABLE_TIMESTAMP = "unparseable_timestamp"
INVALID_RATING = "invalid_rating"
TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"

# Characters stripped from both ends of an id: every Unicode white space (space, tab, NBSP, ideographic space...),
# control characters and invisible format characters (zero-width space, BOM). Java regex, for Spark.
ID_EDGE_CHARS = r"[\p{IsWhite_Space}\p{Cc}\p{Cf}]"

_SPACE = re.compile(r"\s+")


def normalize_text(value: str | None) -> str | None:
    """Unescape HTML entities, drop control characters, collapse whitespace; blank becomes None."""
    if value is None:
        return None
    text = html.unescape(unicodedata.normalize("NFC", value))
    text = "".join(ch if ch.isprintable() or ch.isspace() else " " for ch in text)
    text = _SPACE.sub(" ", text).strip()
    return text or None


def strip_id(column: str):
    """A Spark column: the id in ``column`` without leading/trailing white space of any kind (see ID_EDGE_CHARS);
    an id that is empty after that is a missing id."""
    from pyspark.sql import functions as F

    edge = ID_EDGE_CHARS
    return F.regexp_replace(F.col(f"`{column}`"), f"^{edge}+|{edge}+$", "")


def to_spark(spark, table: pa.Table):
    """A Spark DataFrame from an Arrow table (the driver read the file; Spark does the rest)."""
    return spark.createDataFrame(table)


def raw_row_column(columns: list[str]):
    """A Spark column: the input row (all input columns but ``source_row``) as JSON, for quarantine."""
    from pyspark.sql import functions as F

    cols = [c for c in columns if c != SOURCE_ROW]
    return F.to_json(F.struct(*[F.col(f"`{c}`") for c in cols]))


def quarantine_table(bad: pa.Table, *, run_id: str, created_at: dt.datetime) -> pa.Table:
    """QUARANTINE rows from collected rows that carry ``reason``, ``source_row`` and ``raw_row``."""
    n = bad.num_rows
    return pa.table(
        {
            "run_id": pa.array([run_id] * n, pa.string()),
            "reason": bad.column("reason").cast(pa.string()),
            "source_row": bad.column(SOURCE_ROW).cast(pa.int64()),
            "raw_row": bad.column("raw_row").cast(pa.string()),
            "created_at": pa.array([created_at] * n, schemas.TS),
        },
        schema=schemas.QUARANTINE,
    )


def malformed_table(malformed: tuple[Malformed, ...], *, run_id: str, created_at: dt.datetime) -> pa.Table:
    """QUARANTINE rows for input rows that could not be parsed into columns."""
    rows = [
        {
            "run_id": run_id,
            "reason": m.reason,
            "source_row": m.source_row,
            "raw_row": json.dumps({"_raw": m.raw, "_error": m.error}, ensure_ascii=False),
            "created_at": created_at,
        }
        for m in malformed
    ]
    return pa.Table.from_pylist(rows, schema=schemas.QUARANTINE)


def to_arrow(df, schema: pa.Schema, *, sort_by: list[tuple[str, str]]) -> pa.Table:
    """Collect a Spark DataFrame as Arrow with exactly ``schema``, in a deterministic order."""
    table = df.toArrow() if df is not None else schema.empty_table()
    table = table.select(schema.names).cast(schema)
    return table.sort_by(sort_by) if table.num_rows else table


def concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    return pa.concat_tables([t.select(schema.names).cast(schema) for t in tables]) if tables else schema.empty_table()
