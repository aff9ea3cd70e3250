"""A read-only DuckDB session over every Delta table of a dataset, with time travel.

Each table is registered as a view of its own name over ``Warehouse.dataset(...)`` (a pyarrow dataset through the
Delta log, with a native filesystem: no delta-rs exit crash, works for local and ``s3://`` warehouses alike).

Read-only is enforced by the engine, in two layers, never by matching words in the SQL text:

1. **DuckDB settings**, applied after the views are registered and then locked: ``enable_external_access=false``
   (no file, network, COPY, ATTACH, INSTALL/LOAD or EXPORT), no replacement scans of Python variables, no
   extension autoloading, and ``lock_configuration=true`` so a query cannot switch any of it back.
2. **Statement kinds from DuckDB's own parser** (``duckdb.extract_statements``): SELECT (incl. WITH, DESCRIBE,
   SUMMARIZE) streams; INSERT/UPDATE/DELETE/MERGE, COPY, ATTACH, INSTALL/LOAD, EXPORT, ALTER, transactions and
   the rest are refused before anything runs. CREATE, DROP, EXPLAIN, CALL, PRAGMA and SET run inside a
   transaction whose catalog change is inspected afterwards: only views and macros may appear, change or go
   (never the warehouse views), otherwise the transaction is rolled back and the statement refused. That is how
   ``CREATE TEMP VIEW`` passes while ``CREATE TABLE``/``CREATE SEQUENCE``/``CREATE SECRET`` do not.

Writes to DuckDB's in-memory catalog could never reach the warehouse (views over Arrow datasets are read-only
objects); they are refused anyway so the tool's contract is simply "queries only".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from types import TracebackType

import duckdb
import pyarrow as pa

from mmsrarec_lib.sql.catalog import KNOWN_SCHEMAS
from mmsrarec_lib.sql.tables import TableSnapshot, TimeTravel, resolve_tables, snapshot_dataset, snapshots_table
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)

TABLES_VIEW = "warehouse_tables"
HISTORY_VIEW = "table_history"  # every commit and its lineage (mmsrarec_lib/sql/history.py), registered on first use
DEFAULT_BATCH_ROWS = 65_536
ST = duckdb.StatementType

# Statement kinds refused before anything runs, with the reason shown to the analyst.
_REFUSED: dict[duckdb.StatementType, str] = {
    ST.INSERT: "INSERT writes data",
    ST.UPDATE: "UPDATE writes data",
    ST.DELETE: "DELETE writes data",
    ST.MERGE_INTO: "MERGE INTO writes data",
    ST.COPY: "COPY reads or writes files (save a result with --output instead)",
    ST.COPY_DATABASE: "COPY FROM DATABASE writes a database",
    ST.EXPORT: "EXPORT DATABASE writes files",
    ST.ATTACH: "ATTACH opens another database",
    ST.DETACH: "DETACH changes the attached databases",
    ST.LOAD: "INSTALL/LOAD of extensions is not allowed",
    ST.EXTENSION: "extension statements are not allowed",
    ST.ALTER: "ALTER changes the catalog",
    ST.VACUUM: "VACUUM/ANALYZE maintain storage",
    ST.TRANSACTION: "transactions are managed by the engine",
    ST.PREPARE: "PREPARE is not supported (use --param NAME=VALUE and getvariable('NAME'))",
    ST.EXECUTE: "EXECUTE is not supported (use --param NAME=VALUE and getvariable('NAME'))",
}
_STREAMED = {ST.SELECT}
# Run in a transaction; the catalog change decides whether they are kept.
_CHECKED = {ST.CREATE, ST.DROP, ST.EXPLAIN, ST.CALL, ST.PRAGMA, ST.SET, ST.VARIABLE_SET}
# Checked kinds whose (empty) result is not output.
_SILENT = {ST.CREATE, ST.DROP, ST.SET, ST.VARIABLE_SET}
# Kinds of catalog objects a query may create, replace or drop (never the registered warehouse views).
_ALLOWED_OBJECTS = {"view", "macro"}

# Locked down after registration. Required ones must exist in this DuckDB; optional ones harden further.
_REQUIRED_SETTINGS = (("enable_external_access", "false"), ("lock_configuration", "true"))
_OPTIONAL_SETTINGS = (
    ("python_enable_replacements", "false"),
    ("autoinstall_known_extensions", "false"),
    ("autoload_known_extensions", "false"),
    ("allow_community_extensions", "false"),
    ("allow_persistent_secrets", "false"),
    ("allow_extension_repositories", "'forbidden'"),
)
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_CATALOG_QUERIES = {
    "table": "SELECT database_name, schema_name, table_name, sql FROM duckdb_tables()",
    "view": "SELECT database_name, schema_name, view_name, sql FROM duckdb_views() WHERE NOT internal",
    "macro": "SELECT database_name, schema_name, function_name, CAST(macro_definition AS VARCHAR) "
    "FROM duckdb_functions() WHERE function_type IN ('macro', 'table_macro') AND NOT internal",
    "sequence": "SELECT database_name, schema_name, sequence_name, sql FROM duckdb_sequences()",
    "index": "SELECT database_name, schema_name, index_name, sql FROM duckdb_indexes()",
    "type": "SELECT database_name, schema_name, type_name, logical_type FROM duckdb_types() WHERE NOT internal",
    "schema": "SELECT database_name, schema_name, '', '' FROM duckdb_schemas()",
    "database": "SELECT database_name, '', '', CAST(path AS VARCHAR) FROM duckdb_databases()",
}


class ReadOnlyViolation(PermissionError):
    """A statement that would write, or reach outside the warehouse, was refused."""


class SqlError(ValueError):
    """The SQL could not be parsed or failed (syntax, unknown column, ...)."""


_INSTALL_HINT = re.compile(r"\s*Please try installing and loading .*", re.DOTALL)


def _without_install_hint(exc: Exception) -> str:
    """DuckDB's message without its advice to INSTALL/LOAD an extension (which this engine refuses)."""
    text, n = _INSTALL_HINT.subn("", str(exc))
    return text + " (extensions cannot be installed or loaded in `mmsrarec sql`)" if n else text


def _short(text: str, limit: int = 80) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 3] + "..."


class SqlEngine:
    """A locked-down DuckDB connection with one view per warehouse table (at the versions ``travel`` selects)."""

    def __init__(
        self,
        *,
        warehouse: Warehouse,
        dataset: str,
        travel: TimeTravel = TimeTravel(),
        params: Mapping[str, str] | None = None,
    ) -> None:
        self.warehouse = warehouse
        self.dataset = dataset
        self.travel = travel
        self.snapshots: list[TableSnapshot] = resolve_tables(
            warehouse, dataset=dataset, travel=travel, known=KNOWN_SCHEMAS
        )
        self._con = duckdb.connect(":memory:")
        try:
            for snap in self.snapshots:
                data = snapshot_dataset(
                    warehouse, dataset=dataset, snapshot=snap, schema=KNOWN_SCHEMAS.get(snap.name)
                )
                self._con.register(snap.name, data)
                log.info("view %s -> version %s (latest %s)", snap.name, snap.version, snap.latest_version)
            self._con.register(TABLES_VIEW, snapshots_table(self.snapshots))
            for name, value in (params or {}).items():
                self.set_param(name, value)
            self._lock_down()
        except BaseException:
            self._con.close()
            raise
        self._protected = {("temp", "main", s.name) for s in self.snapshots} | {("temp", "main", TABLES_VIEW)}
        self._protected.add(("temp", "main", HISTORY_VIEW))
        self._history_registered = False

    # ------------------------------------------------------------------ setup
    def _lock_down(self) -> None:
        available = {row[0] for row in self._con.sql("SELECT name FROM duckdb_settings()").fetchall()}
        missing = [name for name, _ in _REQUIRED_SETTINGS if name not in available]
        if missing:
            raise RuntimeError(f"this DuckDB has no {missing} setting: cannot enforce read-only SQL")
        for name, value in _OPTIONAL_SETTINGS:
            if name in available:
                try:
                    self._con.execute(f"SET {name} = {value}")
                except duckdb.Error as exc:  # some can only be set at startup: the required ones still hold
                    log.debug("could not set %s: %s", name, exc)
        for name, value in _REQUIRED_SETTINGS:
            self._con.execute(f"SET {name} = {value}")
        if self._con.sql("SELECT current_setting('enable_external_access')").fetchall()[0][0] is not False:
            raise RuntimeError("enable_external_access is still on: refusing to run queries")

    def set_param(self, name: str, value: str) -> None:
        """Set the SQL variable ``name`` (read in queries with ``getvariable('name')``) to the string ``value``."""
        if not _PARAM_NAME.match(name):
            raise ValueError(f"--param name {name!r} is not an identifier (letters, digits, _)")
        self._con.execute(f"SET VARIABLE {name} = $1", [value])  # the value is bound, never spliced into SQL

    @property
    def table_names(self) -> list[str]:
        return [s.name for s in self.snapshots]

    # ------------------------------------------------------------------ queries
    def _parse(self, sql: str) -> list[tuple[duckdb.StatementType, str]]:
        try:
            parsed = [(s.type, s.query.strip()) for s in duckdb.extract_statements(sql)]
        except duckdb.ParserException as exc:
            raise SqlError(f"SQL syntax error: {exc}") from exc
        except ValueError as exc:  # a statement kind this Python API does not even name
            raise ReadOnlyViolation(f"refused: unsupported statement kind ({exc})") from exc
        if not parsed:
            raise SqlError("no SQL statement given")
        for number, (kind, text) in enumerate(parsed, start=1):
            if kind not in _STREAMED and kind not in _CHECKED:
                reason = _REFUSED.get(kind, f"{kind.name} statements are not allowed")
                raise ReadOnlyViolation(
                    f"refused: {reason}; `mmsrarec sql` is read-only (statement {number}: {_short(text)})"
                )
        return parsed

    def execute(self, sql: str, *, batch_rows: int = DEFAULT_BATCH_ROWS) -> pa.RecordBatchReader | None:
        """Run every statement of ``sql`` in order; return a streaming reader over the last one's result.

        Every statement is checked before the first runs, so a refused statement late in a script changes nothing.
        """
        parsed = self._parse(sql)
        if not self._history_registered and HISTORY_VIEW in sql.lower():
            # lazily: reading every commit file of every table is only worth it when a query asks for it
            from mmsrarec_lib.sql.history import history_table

            existing = [s.name for s in self.snapshots if s.latest_version is not None]
            self._con.register(HISTORY_VIEW, history_table(self.warehouse, self.dataset, existing))
            self._history_registered = True
        result: pa.RecordBatchReader | None = None
        for number, (kind, text) in enumerate(parsed, start=1):
            last = number == len(parsed)
            try:
                if kind in _STREAMED:
                    rel = self._con.sql(text)
                    if last and rel is not None:
                        result = rel.to_arrow_reader(batch_rows)
                    elif rel is not None:
                        rel.fetch_arrow_table()  # run it; an earlier SELECT's rows are not output
                else:
                    table = self._run_checked(kind, text, number)
                    if kind in _SILENT or table is None:
                        result = None  # a definition has no rows to show (DuckDB reports an empty "Count")
                    else:
                        result = pa.RecordBatchReader.from_batches(table.schema, table.to_batches())
            except duckdb.PermissionException as exc:
                raise ReadOnlyViolation(
                    f"refused: {exc} (statement {number}: {_short(text)}); files and the network outside the"
                    " warehouse views are not reachable from `mmsrarec sql`"
                ) from exc
            except duckdb.InvalidInputException as exc:
                if "configuration has been locked" in str(exc):  # DuckDB's own refusal, surfaced as such
                    raise ReadOnlyViolation(f"refused: {exc} (statement {number})") from exc
                raise SqlError(f"statement {number} failed: {_without_install_hint(exc)}") from exc
            except duckdb.Error as exc:
                raise SqlError(f"statement {number} failed: {_without_install_hint(exc)}") from exc
        return result

    def query(self, sql: str) -> pa.Table:
        """Run ``sql`` and return the whole result of its last statement (for tests and small results)."""
        reader = self.execute(sql)
        return reader.read_all() if reader is not None else pa.table({})

    def _catalog(self) -> set[tuple[str, str, str, str, str]]:
        objects: set[tuple[str, str, str, str, str]] = set()
        for kind, query in _CATALOG_QUERIES.items():
            for db, schema, name, definition in self._con.sql(query).fetchall():
                objects.add((kind, str(db), str(schema), str(name), str(definition)))
        return objects

    def _run_checked(self, kind: duckdb.StatementType, text: str, number: int) -> pa.Table | None:
        """Run a catalog-touching statement in a transaction; keep it only if it changed views/macros alone."""
        self._con.execute("BEGIN TRANSACTION")
        try:
            before = self._catalog()
            rel = self._con.sql(text)
            table = rel.fetch_arrow_table() if rel is not None else None
            changed = before ^ self._catalog()
            bad = sorted(
                {f"{obj} " + ".".join(p for p in (db, schema, name) if p)
                for obj, db, schema, name, _ in changed
                if obj not in _ALLOWED_OBJECTS or (db, schema, name) in self._protected}
            )
            if bad:
                raise ReadOnlyViolation(
                    f"refused: statement {number} ({_short(text)}) would create, change or drop {', '.join(bad)};"
                    " only temporary views and macros may be defined, and the warehouse views are fixed"
                )
            if kind == ST.CREATE and not changed:
                raise ReadOnlyViolation(
                    f"refused: statement {number} ({_short(text)}) defines no view or macro;"
                    " only CREATE [TEMP] VIEW and CREATE MACRO are allowed"
                )
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self._con.execute("COMMIT")
        return table

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> SqlEngine:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
