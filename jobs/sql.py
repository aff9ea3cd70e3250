"""``mmsrarec sql``: read-only analyst SQL (DuckDB) over every Delta table of a dataset, with time travel."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from jobs._common import add_warehouse_args, warehouse_from_args

COMMAND = "sql"
HELP = "run read-only SQL over the dataset's tables (one view per table), optionally as of a version or time"


@dataclass(frozen=True)
class SqlConfig:
    dataset: str
    query: str
    fmt: str = "table"
    output: str | None = None
    as_of_version: int | None = None
    table_versions: dict[str, int] = field(default_factory=dict)
    as_of: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    max_width: int = 40

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SqlConfig:
        if (args.query is None) == (args.file is None):
            raise ValueError("give exactly one of: a QUERY argument, or -f FILE")
        if args.file is not None:
            path = Path(args.file)
            if not path.is_file():
                raise FileNotFoundError(f"SQL file not found: {path}")
            query = path.read_text(encoding="utf-8")
        else:
            query = sys.stdin.read() if args.query == "-" else args.query
        as_of_version: int | None = None
        table_versions: dict[str, int] = {}
        for spec in args.as_of_version or []:
            table, sep, number = spec.rpartition("=")
            try:
                version = int(number)
            except ValueError as exc:
                raise ValueError(f"--as-of-version {spec!r}: expected N or TABLE=N") from exc
            if sep:
                table_versions[table] = version
            elif as_of_version is not None:
                raise ValueError("--as-of-version N given twice")
            else:
                as_of_version = version
        params: dict[str, str] = {}
        for spec in args.param or []:
            name, sep, value = spec.partition("=")
            if not sep:
                raise ValueError(f"--param {spec!r}: expected NAME=VALUE")
            params[name.strip()] = value
        return cls(
            dataset=args.dataset, query=query, fmt=args.format, output=args.output, as_of_version=as_of_version,
            table_versions=table_versions, as_of=args.as_of, params=params, max_width=args.max_width,
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", nargs="?", default=None, help="the SQL to run ('-' reads it from stdin)")
    parser.add_argument("-f", "--file", default=None, help="run the SQL in FILE (e.g. sql/top_k_per_user.sql)")
    add_warehouse_args(parser)
    travel = parser.add_mutually_exclusive_group()
    travel.add_argument(
        "--as-of-version", action="append", metavar="N|TABLE=N",
        help="time travel: N = every table at its latest version <= N; TABLE=N = that table at version N"
        " (repeatable; TABLE=N overrides N)",
    )
    travel.add_argument(
        "--as-of", metavar="TIMESTAMP",
        help="time travel: every table as it was at this ISO-8601 time (naive = UTC); tables created later are empty",
    )
    parser.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table",
                        help="output format (json = JSON Lines; parquet needs --output)")
    parser.add_argument("--output", default=None, help="write the result to this local file instead of stdout")
    parser.add_argument("--param", action="append", metavar="NAME=VALUE",
                        help="set a SQL variable, read with getvariable('NAME') (a string; repeatable)")
    parser.add_argument("--max-width", type=int, default=40, help="widest column in --format table (default 40)")


def main(args: argparse.Namespace) -> int:
    import duckdb

    from mmsrarec_lib.sql.engine import SqlEngine, SqlError
    from mmsrarec_lib.sql.output import write_result
    from mmsrarec_lib.sql.tables import TimeTravel, parse_timestamp

    config = SqlConfig.from_args(args)
    travel = TimeTravel(
        as_of_version=config.as_of_version,
        table_versions=config.table_versions,
        as_of=parse_timestamp(config.as_of) if config.as_of else None,
    )
    with SqlEngine(
        warehouse=warehouse_from_args(args), dataset=config.dataset, travel=travel, params=config.params
    ) as engine:
        reader = engine.execute(config.query)
        if reader is None:
            return 0
        try:
            write_result(reader, fmt=config.fmt, output=config.output, max_width=config.max_width)  # type: ignore[arg-type]
        except duckdb.Error as exc:  # an error after the first rows (the rest stream lazily)
            raise SqlError(f"query failed while streaming its result: {exc}") from exc
        except BrokenPipeError:  # e.g. `mmsrarec sql ... | head`: the reader went away, which is not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
