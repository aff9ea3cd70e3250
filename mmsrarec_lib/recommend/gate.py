"""The quality gate of the nightly recommendations: SQL assertions over the staged rows, run before publish.

Each file in ``sql/quality/`` is one assertion: a header comment saying what must hold, and one query returning a
single ``offending`` count (0 = the assertion holds). They run in DuckDB over these views:

- ``staged``: the rows about to be published (schema of ``recommendations``);
- ``selected_users``: ``user_id`` of every user the run selected (a user may have no row only when they have seen
  the whole catalogue);
- ``items`` (``item_id``) and ``user_sequences`` (``user_id``, ``item_ids``) at their current versions;
- variables ``top_k`` and ``run_date``.

A failed assertion raises :class:`QualityGateError` naming every failing assertion and its offending count; the
caller publishes nothing, so the date's previous partition stays visible. The assertions are listed in
``sql/catalog.md`` ("Quality gate").
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa

from mmsrarec_lib import tables
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)

def _quality_dir() -> Path:
    """``sql/quality`` of the source tree, else the copy a non-editable install puts under ``<prefix>/share``."""
    import sys

    here = Path(__file__).resolve().parents[2] / "sql" / "quality"
    installed = Path(sys.prefix) / "share" / "mmsrarec" / "sql" / "quality"
    return here if here.is_dir() or not installed.is_dir() else installed


QUALITY_DIR = _quality_dir()


class QualityGateError(ValueError):
    """At least one assertion failed; ``failures`` maps its name to the offending count."""

    def __init__(self, failures: dict[str, int], *, run_date: dt.date) -> None:
        listed = "; ".join(f"{name}: {count} offending" for name, count in failures.items())
        super().__init__(f"quality gate failed for run_date {run_date} ({listed}); nothing published, the"
                         " previous partition stays visible (assertions in sql/quality/)")
        self.failures = failures


def assertions(directory: Path = QUALITY_DIR) -> dict[str, str]:
    """Assertion name (file stem) -> SQL, in file-name order."""
    files = sorted(directory.glob("*.sql"))
    if not files:
        raise FileNotFoundError(f"no quality assertions in {directory}")
    return {p.stem: p.read_text(encoding="utf-8") for p in files}


def evaluate_assertions(
    *,
    staged: pa.Table,
    users: Sequence[str],
    items: pa.Table,
    user_sequences: pa.Table,
    top_k: int,
    run_date: dt.date,
    checks: dict[str, str] | None = None,
) -> dict[str, int]:
    """Offending count of every assertion (0 = holds)."""
    con = duckdb.connect(":memory:")
    try:
        con.register("staged", staged)
        con.register("selected_users", pa.table({"user_id": pa.array(list(users), pa.string())}))
        con.register(tables.ITEMS, items)
        con.register(tables.USER_SEQUENCES, user_sequences)
        con.execute("SET VARIABLE top_k = $1", [int(top_k)])
        con.execute("SET VARIABLE run_date = $1", [run_date.isoformat()])
        out = {}
        for name, sql in (checks or assertions()).items():
            try:
                rows = con.sql(sql).fetchall()
            except duckdb.Error as exc:
                raise RuntimeError(f"quality assertion {name} failed to run: {exc}") from exc
            if len(rows) != 1 or len(rows[0]) != 1:
                raise RuntimeError(f"quality assertion {name} must return one row with one count, got {rows!r}")
            out[name] = int(rows[0][0] or 0)
        return out
    finally:
        con.close()


def run_quality_gate(
    warehouse: Warehouse,
    dataset: str,
    *,
    staged: pa.Table,
    users: Sequence[str],
    top_k: int,
    run_date: dt.date,
) -> dict[str, int]:
    """Run every assertion against the warehouse's ``items`` / ``user_sequences``; raise if any fails."""
    items = warehouse.read_table(dataset, tables.ITEMS, columns=["item_id"])
    seqs = warehouse.read_table(dataset, tables.USER_SEQUENCES, columns=["user_id", "item_ids"])
    counts = evaluate_assertions(staged=staged, users=users, items=items, user_sequences=seqs, top_k=top_k,
                                 run_date=run_date)
    failures = {name: n for name, n in counts.items() if n}
    for name, n in counts.items():
        log.info("quality gate %-22s %s", name, "ok" if not n else f"FAILED ({n} offending)")
    if failures:
        raise QualityGateError(failures, run_date=run_date)
    return counts
