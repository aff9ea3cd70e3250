"""Reading input files into Arrow on the driver, before Spark sees them.

Every column comes back as a string (the validation in Spark decides what is valid, and the raw row quarantined
is what the file said), except ``categories`` which becomes a list of strings (``|``-separated in CSV/TSV, a list
or a ``|``-separated string in JSONL/Parquet). A 1-based ``source_row`` (the data row number, header not counted)
is added; blank lines are not rows. Rows that cannot be read as a row at all are returned separately as
``malformed`` (with their reason) so the caller can quarantine them: nothing is dropped silently, and no input
crashes the reader:

- ``malformed_row``: wrong field count in CSV/TSV, a JSONL line that is not a JSON object;
- ``bad_encoding``: bytes that are not valid in the file's encoding (``encoding``, default UTF-8 with an optional
  BOM); that row only, the rest of the file loads. Its raw text keeps the bad bytes as ``\\xNN`` escapes;
- ``field_too_large``: a CSV/TSV field longer than ``MAX_FIELD_CHARS`` (64 Mi characters; fields of any size
  below that are read).

CSV is parsed strictly: a quote that is never closed (which makes the rest of the file one field) or text right
after a closing quote quarantines that row as ``malformed_row``, with the lines it spans; rows before it load.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

SOURCE_ROW = "source_row"
CATEGORIES = "categories"
MALFORMED_ROW, BAD_ENCODING, FIELD_TOO_LARGE = "malformed_row", "bad_encoding", "field_too_large"
DEFAULT_ENCODING = "utf-8-sig"  # UTF-8, a leading byte-order mark ignored
MAX_FIELD_CHARS = 64 * 1024 * 1024
MAX_RAW_CHARS = 64 * 1024  # the raw text kept in quarantine for one unreadable row
_SURROGATE = re.compile("[\udc80-\udcff]")  # undecodable bytes, kept by the surrogateescape handler
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet",
           ".pq": "parquet"}


@dataclass(frozen=True)
class Malformed:
    """A row that could not be parsed into columns: its 1-based row number, raw text and why."""

    source_row: int
    raw: str
    error: str
    reason: str = MALFORMED_ROW


@dataclass(frozen=True)
class SourceTable:
    """An input file as Arrow (string columns, ``categories`` list, ``source_row``) plus its unparseable rows."""

    table: pa.Table
    base_dir: str  # the folder relative image paths resolve against (and must stay inside)
    malformed: tuple[Malformed, ...] = field(default_factory=tuple)
    path: str = ""  # the input file, for messages

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


def _escape_bad_bytes(text: str) -> str:
    """Text read with ``surrogateescape``: each undecodable byte shown as ``\\xNN`` (valid UTF-8 to store)."""
    return _SURROGATE.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", text)


def _bad_encoding(n: int, raw: str, encoding: str) -> Malformed:
    first = _SURROGATE.search(raw)
    where = f" at character {first.start() + 1}" if first else ""
    return Malformed(n, _escape_bad_bytes(raw)[:MAX_RAW_CHARS],
                     f"bytes not valid {encoding}{where} (declare the file's encoding with --encoding)", BAD_ENCODING)


def _open_text(path: Path, encoding: str):
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"{path}: unknown encoding {encoding!r} (e.g. utf-8, latin-1, cp1252)") from None
    # undecodable bytes become lone surrogates: found per row below, so one bad byte costs one row, not the file
    return path.open(newline="", encoding=encoding, errors="surrogateescape")


def _read_delimited(path: Path, delimiter: str, encoding: str) -> tuple[pa.Table, list[Malformed]]:
    source_rows, malformed = [], []
    csv.field_size_limit(MAX_FIELD_CHARS)
    consumed: list[str] = []  # the physical lines of the row being parsed (the raw text of a bad row)

    with _open_text(path, encoding) as f:

        def lines():
            for line in f:
                consumed.append(line)
                yield line

        reader = csv.reader(lines(), delimiter=delimiter, strict=True)  # a broken quote is an error, never a guess
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ValueError(f"{path}: empty file (no header row)") from None
        except csv.Error as exc:
            raise ValueError(f"{path}: header row cannot be read: {exc}") from None
        if any(_SURROGATE.search(h) for h in header):
            raise ValueError(f"{path}: header row has bytes that are not valid {encoding} "
                             f"({_escape_bad_bytes(delimiter.join(header))[:200]}); "
                             "declare the encoding with --encoding")
        if len(set(header)) != len(header):
            raise ValueError(f"{path}: duplicate column names in header {header}")
        cols: list[list] = [[] for _ in header]
        n = 0
        while True:
            line_before = reader.line_num
            consumed.clear()
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:  # not valid CSV from here; the reader resumes at the next line
                n += 1
                span = f"lines {line_before + 1}-{reader.line_num}" if reader.line_num > line_before + 1 \
                    else f"line {line_before + 1}"
                raw = _escape_bad_bytes("".join(consumed))[:MAX_RAW_CHARS]
                if "field larger" in str(exc):
                    malformed.append(Malformed(n, raw, f"a field longer than {MAX_FIELD_CHARS} characters "
                                               f"({span}; an unclosed quote makes the rest of the file one field)",
                                               FIELD_TOO_LARGE))
                else:
                    hint = "; a quote opened there is never closed" if "end of data" in str(exc) else ""
                    malformed.append(Malformed(n, raw, f"not valid CSV: {exc} ({span}{hint})"))
                continue
            if not fields:
                continue  # a blank line is not a row (as in JSONL)
            n += 1
            raw = "".join(consumed).rstrip("\r\n")
            if any(_SURROGATE.search(v) for v in fields):
                malformed.append(_bad_encoding(n, raw, encoding))
                continue
            if len(fields) != len(header):
                hint = (f"; a quote opened on line {line_before + 1} may be unclosed (the row spans lines "
                        f"{line_before + 1}-{reader.line_num})") if reader.line_num - line_before > 1 else ""
                malformed.append(Malformed(n, raw[:MAX_RAW_CHARS],
                                           f"{len(fields)} fields, header has {len(header)}{hint}"))
                continue
            for col, v in zip(cols, fields):
                col.append(v if v != "" else None)  # an empty CSV field is a missing value
            source_rows.append(n)
    return _columns_to_table(dict(zip(header, cols)), source_rows), malformed


def _read_jsonl(path: Path, encoding: str) -> tuple[pa.Table, list[Malformed]]:
    rows, source_rows, malformed, columns = [], [], [], {}
    with _open_text(path, encoding) as f:
        n = 0
        for line in f:
            if not line.strip():
                continue  # blank lines are not rows
            n += 1
            if _SURROGATE.search(line):
                malformed.append(_bad_encoding(n, line.rstrip("\r\n"), encoding))
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                malformed.append(Malformed(n, line.rstrip("\n")[:MAX_RAW_CHARS], f"invalid JSON: {exc.msg}"))
                continue
            if not isinstance(obj, dict):
                malformed.append(Malformed(n, line.rstrip("\n")[:MAX_RAW_CHARS], "not a JSON object"))
                continue
            columns.update(dict.fromkeys(obj))
            rows.append(obj)
            source_rows.append(n)
    return _columns_to_table({c: [r.get(c) for r in rows] for c in columns}, source_rows), malformed


def _read_parquet(path: Path) -> pa.Table:
    table = pq.read_table(path)
    return _columns_to_table({c: table.column(c).to_pylist() for c in table.column_names},
                             list(range(1, table.num_rows + 1)))


def read_source(path: str | Path, *, encoding: str = DEFAULT_ENCODING) -> SourceTable:
    """Read one input file (CSV, TSV, JSONL or Parquet by extension) into a :class:`SourceTable`.

    ``encoding`` applies to the text formats (Parquet strings are UTF-8 by definition).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    fmt = file_format(path)
    malformed: list[Malformed] = []
    if fmt == "csv":
        table, malformed = _read_delimited(path, ",", encoding)
    elif fmt == "tsv":
        table, malformed = _read_delimited(path, "\t", encoding)
    elif fmt == "jsonl":
        table, malformed = _read_jsonl(path, encoding)
    else:
        table = _read_parquet(path)
    log.info("read %s: %d rows, %d malformed, columns %s", path, table.num_rows, len(malformed), table.column_names)
    for m in malformed[:5]:
        log.warning("%s row %d: %s: %s", path, m.source_row, m.reason, m.error)
    return SourceTable(table=table, base_dir=str(path.resolve().parent), malformed=tuple(malformed), path=str(path))


def input_columns(source: SourceTable) -> list[str]:
    """The file's own column names (without the ``source_row`` added by the reader)."""
    return ["source_row" if c == "input_source_row" else c for c in source.table.column_names if c != SOURCE_ROW]


def require_columns(source: SourceTable, required: tuple[str, ...], *, what: str) -> None:
    """A ValueError naming the file and the missing required columns of an input file."""
    missing = [c for c in required if c not in source.table.column_names]
    if missing:
        raise ValueError(f"{source.path or what + ' file'}: the {what} file lacks required column(s) {missing}; "
                         f"its columns are {input_columns(source)}")


def describe_quarantine(source: SourceTable, quarantine: pa.Table, *, what: str, examples: int = 3) -> None:
    """Log one warning per quarantine reason, naming the file and the first rows (readable in Airflow logs)."""
    if quarantine.num_rows == 0:
        return
    reasons = quarantine.column("reason")
    for reason in sorted(set(reasons.to_pylist())):
        rows = quarantine.filter(pc.equal(reasons, reason)).column("source_row").to_pylist()
        shown = ", ".join(map(str, rows[:examples])) + (", ..." if len(rows) > examples else "")
        log.warning("%s: %d %s row(s) quarantined as %s (row %s)", source.path or what, len(rows), what, reason,
                    shown)
