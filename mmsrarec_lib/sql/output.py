"""Stream a query result (an Arrow ``RecordBatchReader``) as a text table, CSV, JSON Lines or Parquet.

Results are written batch by batch, so a result larger than memory streams through. Binary columns (the items'
``image_bytes``) are never printed: in the text formats (table, csv, json) a binary column ``c`` is replaced by
``c_length`` (its size in bytes). Parquet keeps the bytes: it is a file, not a print-out.
"""

from __future__ import annotations

import codecs
import datetime as dt
import decimal
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from tqdm import tqdm

log = logging.getLogger(__name__)

Format = Literal["table", "csv", "json", "parquet"]
FORMATS: tuple[str, ...] = ("table", "csv", "json", "parquet")
DEFAULT_MAX_WIDTH = 40


def _is_binary(type_: pa.DataType) -> bool:
    return pa.types.is_binary(type_) or pa.types.is_large_binary(type_) or pa.types.is_fixed_size_binary(type_)


def _is_nested(type_: pa.DataType) -> bool:
    return pa.types.is_nested(type_)  # list, large_list, struct, map, union


def hide_binary_schema(schema: pa.Schema) -> pa.Schema:
    """The schema after :func:`hide_binary`: each binary column ``c`` becomes ``c_length: int64``."""
    return pa.schema([pa.field(f"{f.name}_length", pa.int64()) if _is_binary(f.type) else f for f in schema])


def hide_binary(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Replace every binary column ``c`` by ``c_length`` (bytes; NULL stays NULL) so bytes are never printed."""
    if not any(_is_binary(f.type) for f in batch.schema):
        return batch
    columns = [
        pc.binary_length(col).cast(pa.int64()) if _is_binary(f.type) else col
        for f, col in zip(batch.schema, batch.columns)
    ]
    return pa.RecordBatch.from_arrays(columns, schema=hide_binary_schema(batch.schema))


def _json_default(value: object) -> object:
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return len(value)
    return str(value)


def _rows(batch: pa.RecordBatch) -> list[dict]:
    return batch.to_pylist(maps_as_pydicts="lossy")


def to_json_text(value: object) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _flatten_nested(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Nested columns (lists, structs, maps) as JSON strings, for CSV, which has no nested types."""
    if not any(_is_nested(f.type) for f in batch.schema):
        return batch
    columns, fields = [], []
    for f, col in zip(batch.schema, batch.columns):
        if _is_nested(f.type):
            values = col.to_pylist(maps_as_pydicts="lossy")
            col = pa.array([None if v is None else to_json_text(v) for v in values], pa.string())
            f = pa.field(f.name, pa.string())
        columns.append(col)
        fields.append(f)
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))


def _cell(value: object, max_width: int) -> str:
    if value is None:
        text = "NULL"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (dt.datetime, dt.date)):
        text = value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (list, dict)):
        text = to_json_text(value)
    else:
        text = str(value)
    text = " ".join(text.split()) if ("\n" in text or "\t" in text) else text
    return text if len(text) <= max_width else text[: max_width - 1] + "…"


class _TableWriter:
    """A fixed-width text table; column widths come from the first batch, later rows are cut to fit."""

    def __init__(self, out: IO[str], schema: pa.Schema, max_width: int) -> None:
        self.out, self.names, self.max_width = out, schema.names, max_width
        self.widths: list[int] | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        rows = [[_cell(r[n], self.max_width) for n in self.names] for r in _rows(batch)]
        if self.widths is None:
            self.widths = [
                min(self.max_width, max([len(n)] + [len(row[i]) for row in rows])) for i, n in enumerate(self.names)
            ]
            self._line([n[: self.max_width] for n in self.names])
            self.out.write("-+-".join("-" * w for w in self.widths) + "\n")
        for row in rows:
            self._line([c if len(c) <= w else c[: w - 1] + "…" for c, w in zip(row, self.widths)])

    def _line(self, cells: list[str]) -> None:
        self.out.write(" | ".join(c.ljust(w) for c, w in zip(cells, self.widths or [])).rstrip() + "\n")

    def close(self, n_rows: int) -> None:
        if self.widths is None:  # no batch at all: still show the columns
            self.widths = [len(n) for n in self.names]
            self._line(list(self.names))
            self.out.write("-+-".join("-" * w for w in self.widths) + "\n")
        self.out.write(f"({n_rows} row{'s' if n_rows != 1 else ''})\n")


def _batches(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return


def write_result(
    reader: pa.RecordBatchReader,
    *,
    fmt: Format = "table",
    output: str | Path | None = None,
    stdout: IO[str] | None = None,
    max_width: int = DEFAULT_MAX_WIDTH,
) -> int:
    """Write every batch of ``reader`` in ``fmt`` to ``output`` (a local file) or ``stdout``; return the row count."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown --format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "parquet" and output is None:
        raise ValueError("--format parquet writes a file: give --output PATH")
    out_path = Path(output) if output is not None else None
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
    n_rows = 0
    progress = tqdm(unit=" rows", disable=out_path is None or not sys.stderr.isatty(), desc="writing")
    if fmt == "parquet":
        with pq.ParquetWriter(str(out_path), reader.schema) as writer:
            for batch in _batches(reader):
                writer.write_batch(batch)
                n_rows += batch.num_rows
                progress.update(batch.num_rows)
    else:
        handle = open(out_path, "w", encoding="utf-8", newline="") if out_path else None  # noqa: SIM115
        text_out = handle or stdout or sys.stdout
        try:
            text_schema = hide_binary_schema(reader.schema)
            table_writer = _TableWriter(text_out, text_schema, max_width) if fmt == "table" else None
            csv_writer: pacsv.CSVWriter | None = None
            csv_sink = _TextSink(text_out)
            for batch in _batches(reader):
                batch = hide_binary(batch)
                if table_writer is not None:
                    table_writer.write(batch)
                elif fmt == "csv":
                    flat = _flatten_nested(batch)
                    if csv_writer is None:
                        csv_writer = pacsv.CSVWriter(csv_sink, flat.schema)
                    csv_writer.write_batch(flat)
                else:
                    for row in _rows(batch):
                        text_out.write(to_json_text(row) + "\n")
                n_rows += batch.num_rows
                progress.update(batch.num_rows)
            if table_writer is not None:
                table_writer.close(n_rows)
            if fmt == "csv" and csv_writer is None:  # empty result: header only
                text_out.write(",".join(f'"{n}"' for n in text_schema.names) + "\n")
            if csv_writer is not None:
                csv_writer.close()
            text_out.flush()
        finally:
            if handle is not None:
                handle.close()
    progress.close()
    if out_path is not None:
        log.info("wrote %d rows to %s (%s)", n_rows, out_path, fmt)
    return n_rows


class _TextSink:
    """A binary file-like object that pyarrow's CSV writer can write to, forwarding UTF-8 text to ``out``."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.closed = False
        self._decoder = codecs.getincrementaldecoder("utf-8")()  # a chunk may end inside a character

    def write(self, data: bytes) -> int:
        self.out.write(self._decoder.decode(bytes(data)))
        return len(data)

    def flush(self) -> None:
        self.out.flush()

    def close(self) -> None:
        self.closed = True
