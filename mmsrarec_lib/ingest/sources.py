"""Reading input files into Arrow on the driver, before Spark sees them.

Every column comes back as a string (the validation in Spark decides what is valid, and the raw row quarantined
is what the file said), except ``categories`` which becomes a list of strings (``|``-separated in CSV/TSV, a list
or a ``|``-separated string in JSONL/Parquet). A 1-based ``source_row`` (the data row number, header not counted)
is added; blank lines are not rows. Rows that cannot be read as a row at all (wrong field count in CSV/TSV, a
JSONL line that is not a JSON object) are returned separately as ``malformed`` so the caller can quarantine them:
nothing is dropped silently.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

SOURCE_ROW = "source_row"
CATEGORIES = "categories"
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet",
           ".pq": "parquet"}


@dataclass(frozen=True)
class Malformed:
    """A row that could not be parsed into columns: its 1-based row number, raw text and why."""

    source_row: int
    raw: str
    error: str


@dataclass(frozen=True)
class SourceTable:
    """An input file as Arrow (string columns, ``categories`` list, ``source_row``) plus its unparseable rows."""

    table: pa.Table
    base_dir: str  # the folder relative image paths resolve against (and must stay inside)
    malformed: tuple[Malformed, ...] = field(default_factory=tuple)

    @property
    def rows_in(self) -> int:
        return self.table.num_rows + len(self.malformed)


def file_format(path: str | Path) -> str:
    """``csv``/``tsv``/``jsonl``/``parquet`` from the file extension, else a ValueError naming the file."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unsupported input format {suffix!r} (use .csv, .tsv, .jsonl or .parquet)")
    return FORMATS[suffix]


def to_text(value: object) -> str | None:
    """One input value as a string: None stays None, strings as they are, numbers/bools plain, else JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def to_categories(value: object) -> list[str] | None:
    """``categories`` as a list: a list stays a list, a string is split on ``|``; None stays None."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [to_text(v) for v in value if v is not None]
    text = to_text(value)
    return [part for part in text.split("|")] if text != "" else []


def _columns_to_table(columns: dict[str, list], source_rows: list[int]) -> pa.Table:
    """Arrow table from column name -> values: strings, ``categories`` a list, plus ``source_row``."""
    arrays, names = [], []
    for name, values in columns.items():
        if name == SOURCE_ROW:
            name = "input_source_row"  # a user column of that name would clash with ours: kept renamed
        if name == CATEGORIES:
            arrays.append(pa.array([to_categories(v) for v in values], type=pa.list_(pa.string())))
        else:
            arrays.append(pa.array([to_text(v) for v in values], type=pa.string()))
        names.append(name)
    arrays.append(pa.array(source_rows, type=pa.int64()))
    names.append(SOURCE_ROW)
    return pa.Table.from_arrays(arrays, names=names)


def _read_delimited(path: Path, delimiter: str) -> tuple[pa.Table, list[Malformed]]:
    source_rows, malformed = [], []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ValueError(f"{path}: empty file (no header row)") from None
        if len(set(header)) != len(header):
            raise ValueError(f"{path}: duplicate column names in header {header}")
        cols: list[list] = [[] for _ in header]
        n = 0
        for fields in reader:
            if not fields:
                continue  # a blank line is not a row (as in JSONL)
            n += 1
            if len(fields) != len(header):
                raw = delimiter.join(fields)
                malformed.append(Malformed(n, raw, f"{len(fields)} fields, header has {len(header)}"))
                continue
            for col, v in zip(cols, fields):
                col.append(v if v != "" else None)  # an empty CSV field is a missing value
            source_rows.append(n)
    return _columns_to_table(dict(zip(header, cols)), source_rows), malformed


def _read_jsonl(path: Path) -> tuple[pa.Table, list[Malformed]]:
    rows, source_rows, malformed, columns = [], [], [], {}
    with path.open(encoding="utf-8-sig") as f:
        n = 0
        for line in f:
            if not line.strip():
                continue  # blank lines are not rows
            n += 1
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                malformed.append(Malformed(n, line.rstrip("\n"), f"invalid JSON: {exc.msg}"))
                continue
            if not isinstance(obj, dict):
                malformed.append(Malformed(n, line.rstrip("\n"), "not a JSON object"))
                continue
            columns.update(dict.fromkeys(obj))
            rows.append(obj)
            source_rows.append(n)
    return _columns_to_table({c: [r.get(c) for r in rows] for c in columns}, source_rows), malformed


def _read_parquet(path: Path) -> pa.Table:
    table = pq.read_table(path)
    return _columns_to_table({c: table.column(c).to_pylist() for c in table.column_names},
                             list(range(1, table.num_rows + 1)))


def read_source(path: str | Path) -> SourceTable:
    """Read one input file (CSV, TSV, JSONL or Parquet by extension) into a :class:`SourceTable`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    fmt = file_format(path)
    malformed: list[Malformed] = []
    if fmt == "csv":
        table, malformed = _read_delimited(path, ",")
    elif fmt == "tsv":
        table, malformed = _read_delimited(path, "\t")
    elif fmt == "jsonl":
        table, malformed = _read_jsonl(path)
    else:
        table = _read_parquet(path)
    log.info("read %s: %d rows, %d malformed, columns %s", path, table.num_rows, len(malformed), table.column_names)
    return SourceTable(table=table, base_dir=str(path.resolve().parent), malformed=tuple(malformed))


def require_columns(source: SourceTable, required: tuple[str, ...], *, what: str) -> None:
    """A ValueError naming the missing required columns of an input file."""
    missing = [c for c in required if c not in source.table.column_names]
    if missing:
        raise ValueError(f"{what} file lacks required column(s) {missing}; it has {source.table.column_names}")
