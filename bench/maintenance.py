"""Delta upkeep after 30 simulated nightly runs: files per table and the top-K query time, before vs after.

    python bench/maintenance.py [--nights 30] [--users 2000] [--items 1000] [--repeats 5]

A scratch warehouse gets 30 nights of what the nightly DAG commits (appended interactions, rewritten
user_sequences, one published recommendations partition a night), each night's commits backdated to its day
(mmsrarec_lib/testing/delta_clock.py). Then, side by side:

- files per table (active files of the latest version, data files on storage) before and after
  ``mmsrarec maintain`` (compact, z-order recommendations, vacuum with the default 7-day retention);
- the median wall time of ``mmsrarec sql -f sql/top_k_per_user.sql`` (a real CLI process, as an analyst runs it)
  and of the same query inside one process (engine setup + query), ``--repeats`` runs each;
- every version committed within the retention window is read back at that version (time travel); versions older
  than the window whose files were vacuumed are counted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATASET = "bench"
QUERY = REPO / "sql" / "top_k_per_user.sql"
# a query over the table that compaction changes most (30 appended files -> 1)
POPULAR = "SELECT item_id, count(*) AS n FROM interactions GROUP BY item_id ORDER BY n DESC, item_id LIMIT 10"


def cli_seconds(root: str, repeats: int) -> list[float]:
    cmd = [sys.executable, "-m", "jobs.cli", "--log-level", "WARNING", "sql", "--dataset", DATASET, "--warehouse",
           root, "-f", str(QUERY), "--param", "k=10", "--format", "csv"]
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
        out.append(time.perf_counter() - t0)
    return out


def engine_seconds(warehouse, repeats: int, sql: str | None = None) -> tuple[list[float], int]:
    from mmsrarec_lib.sql.engine import SqlEngine

    out, rows = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        with SqlEngine(warehouse=warehouse, dataset=DATASET, params={"k": "10"}) as engine:
            rows = engine.query(sql or QUERY.read_text()).num_rows
        out.append(time.perf_counter() - t0)
    return out, rows


def files(warehouse, tables) -> dict[str, tuple[int, int]]:
    from mmsrarec_lib.maintenance import file_stats

    return {t: (s.active_files, s.storage_files) for t in tables for s in [file_stats(warehouse, DATASET, t)]}


def check_time_travel(
    warehouse, when: dict, retention_days: float, now: dt.datetime
) -> dict[str, tuple[int, int, int]]:
    """Per table: (versions in the window, of them readable, older versions no longer readable)."""
    cutoff = now - dt.timedelta(days=retention_days)
    out = {}
    for table, versions in when.items():
        inside = readable = gone = 0
        for version, moment in versions.items():
            try:
                _ = warehouse.read_table(DATASET, table, version=version).num_rows  # the read is the check
                ok = True
            except Exception:  # noqa: BLE001 - a vacuumed version fails with the storage's own error
                ok = False
            if moment >= cutoff:
                inside += 1
                readable += ok
            else:
                gone += not ok
        out[table] = (inside, readable, gone)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=30)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from mmsrarec_lib.maintenance import RETENTION_DAYS, MaintenanceConfig, maintain
    from mmsrarec_lib.storage import Warehouse
    from mmsrarec_lib.testing.delta_clock import simulate_nights

    with tempfile.TemporaryDirectory(prefix="bench-maint-") as tmp:
        warehouse = Warehouse.from_uri(str(Path(tmp) / "wh"))
        now = dt.datetime.now(dt.UTC)
        t0 = time.perf_counter()
        when = simulate_nights(warehouse, DATASET, nights=args.nights, users=args.users, items=args.items, now=now)
        print(f"{args.nights} simulated nights ({args.users} users x top-10, {args.items} items) in"
              f" {time.perf_counter() - t0:.1f} s", flush=True)
        tables = sorted(when)
        before = files(warehouse, tables)
        cli_before = cli_seconds(warehouse.root, args.repeats)
        eng_before, rows = engine_seconds(warehouse, args.repeats)
        pop_before, _ = engine_seconds(warehouse, args.repeats, POPULAR)
        t0 = time.perf_counter()
        maintain(warehouse, config=MaintenanceConfig(dataset=DATASET), today=now.date())
        took = time.perf_counter() - t0
        after = files(warehouse, tables)
        cli_after = cli_seconds(warehouse.root, args.repeats)
        eng_after, rows_after = engine_seconds(warehouse, args.repeats)
        pop_after, _ = engine_seconds(warehouse, args.repeats, POPULAR)
        assert rows_after == rows, "maintenance changed the query's result"
        travel = check_time_travel(warehouse, when, RETENTION_DAYS, now)

    print(f"\nmaintenance (compact + z-order + vacuum, {RETENTION_DAYS}-day retention): {took:.1f} s")
    print(f"\n{'table':<18} {'active files':>14} {'files on storage':>18}")
    for t in tables:
        print(f"{t:<18} {before[t][0]:>6} -> {after[t][0]:<5} {before[t][1]:>8} -> {after[t][1]:<6}")
    med = statistics.median
    print(f"\ntop_k_per_user.sql ({rows} rows), median of {args.repeats}:")
    print(f"  mmsrarec sql (CLI process)   before {med(cli_before):.2f} s  after {med(cli_after):.2f} s"
          f"  ratio {med(cli_before) / med(cli_after):.2f}x")
    print(f"  in-process (engine + query)  before {med(eng_before):.3f} s  after {med(eng_after):.3f} s"
          f"  ratio {med(eng_before) / med(eng_after):.2f}x")
    print(f"  item popularity over interactions, in-process: before {med(pop_before):.3f} s  after"
          f" {med(pop_after):.3f} s  ratio {med(pop_before) / med(pop_after):.2f}x")
    print(f"\ntime travel after vacuum (window = last {RETENTION_DAYS} days):")
    for t, (inside, readable, gone) in travel.items():
        print(f"  {t:<18} versions in window {inside}, readable {readable}; older versions vacuumed away {gone}")
        assert readable == inside, f"{t}: a version inside the retention window is no longer readable"
    print(f"\nload average while measuring: {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
