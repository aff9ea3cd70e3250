"""Analyst SQL bench: latency of `mmsrarec sql` queries at 1x and 10x the ML-100K recommendations size.

1x = 943 users x top-10 = 9,430 rows in one run_date partition (10x = 9,430 users, 94,300 rows), next to an
items table of 1,682 items (text only) and 100,000 interactions, so joins look like ML-100K's. Per scale:

- open: building the session (Delta log reads, one view per table, lock-down), median over repeats;
- top-K for one user: ``sql/top_k_per_user.sql`` with ``user_id`` set to a different random user each time;
- full-table aggregate: per-item count / mean score / distinct users over every recommendation row;
- coverage query: ``sql/coverage_popularity_today.sql`` (joins recommendations, items and interactions);
- cli: one ``mmsrarec sql`` subprocess end to end (interpreter start and imports included), unless --quick.

Prints median and p95 in milliseconds. Run: ``.venv/bin/python bench/sql.py [--quick] [--repeats N]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from mmsrarec_lib.runtime_env import apply_offline_defaults  # noqa: E402

apply_offline_defaults()  # offline hubs, no tokenizer threads: the jobs' defaults (mmsrarec_lib/runtime_env.py)

import pyarrow as pa  # noqa: E402

from mmsrarec_lib import schemas  # noqa: E402
from mmsrarec_lib.sql.engine import SqlEngine  # noqa: E402
from mmsrarec_lib.storage import Warehouse  # noqa: E402

ML100K_USERS, ML100K_ITEMS, TOP_K, N_INTERACTIONS = 943, 1682, 10, 100_000
DATASET = "bench"
AGGREGATE = (
    "SELECT item_id, count(*) AS n, avg(score) AS mean_score, count(DISTINCT user_id) AS users "
    "FROM recommendations GROUP BY item_id ORDER BY n DESC"
)


def build(warehouse: Warehouse, *, scale: int, seed: int = 0) -> int:
    """Write items, interactions and one day of recommendations for ``scale`` x 943 users; return the row count."""
    rng = random.Random(seed)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    items = [f"i{k}" for k in range(ML100K_ITEMS)]
    warehouse.write_table(DATASET, "items", pa.Table.from_pylist(
        [{"item_id": i, "title": f"Title {i}", "description": "text " * 20, "categories": ["drama"],
          "image_status": "none", "source_row": k + 1} for k, i in enumerate(items)], schema=schemas.ITEMS))
    popular = [rng.paretovariate(1.2) for _ in items]  # a long tail, like real interactions
    picks = rng.choices(items, weights=popular, k=N_INTERACTIONS)
    warehouse.write_table(DATASET, "interactions", pa.table({
        "user_id": [f"u{rng.randrange(ML100K_USERS)}" for _ in picks], "item_id": picks,
        "timestamp": pa.array([now] * len(picks), schemas.TS), "rating": [4.0] * len(picks),
        "event": pa.nulls(len(picks), pa.string()), "source_row": pa.array(range(1, len(picks) + 1), pa.int64()),
    }, schema=schemas.INTERACTIONS))
    users = ML100K_USERS * scale
    kw = ["space", "war", "romance", "comedy", "crime", "family", "music", "noir"]
    records = []
    for u in range(users):
        for rank, item in enumerate(rng.sample(items, TOP_K), start=1):
            records.append({
                "run_date": now.date(), "user_id": f"u{u}", "rank": rank, "item_id": item, "score": 1.0 / rank,
                "model_version": "bench", "created_at": now,
                "explanation": {"history_keywords": rng.sample(kw, 3), "neighbor_keywords": rng.sample(kw, 2),
                                "neighbor_ids": [f"u{rng.randrange(users)}" for _ in range(3)]},
            })
    table = pa.Table.from_pylist(records, schema=schemas.RECOMMENDATIONS)
    warehouse.write_table(DATASET, "recommendations", table, partition_by=["run_date"])
    return table.num_rows


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median and p95 in milliseconds of ``repeats`` calls (after one warm-up call)."""
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))]


def bench_scale(scale: int, *, repeats: int, quick: bool) -> list[tuple[str, float, float]]:
    with tempfile.TemporaryDirectory(prefix="bench-sql-") as tmp:
        warehouse = Warehouse.from_uri(str(Path(tmp) / "wh"))
        start = time.perf_counter()
        n_rows = build(warehouse, scale=scale)
        print(f"\n{scale}x: {n_rows:,} recommendation rows ({ML100K_USERS * scale:,} users), "
              f"built in {time.perf_counter() - start:.1f} s", flush=True)
        top_k = (ROOT / "sql" / "top_k_per_user.sql").read_text()
        coverage = (ROOT / "sql" / "coverage_popularity_today.sql").read_text()
        rng = random.Random(1)
        results = [("open session", *timed(lambda: SqlEngine(warehouse=warehouse, dataset=DATASET).close(), repeats))]
        with SqlEngine(warehouse=warehouse, dataset=DATASET) as engine:

            def one_user() -> None:
                engine.set_param("user_id", f"u{rng.randrange(ML100K_USERS * scale)}")
                assert engine.query(top_k).num_rows == TOP_K

            results.append(("top-K for one user", *timed(one_user, repeats)))
            results.append(("full-table aggregate", *timed(lambda: engine.query(AGGREGATE), repeats)))
            results.append(("coverage query", *timed(lambda: engine.query(coverage), repeats)))
        if not quick:
            cmd = [sys.executable, "-m", "jobs.cli", "--log-level", "WARNING", "sql", "--dataset", DATASET,
                   "--warehouse", warehouse.root, "-f", str(ROOT / "sql" / "top_k_per_user.sql"),
                   "--param", "user_id=u1", "--format", "csv"]
            run = lambda: subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)  # noqa: E731
            results.append(("cli top-K (subprocess)", *timed(run, max(3, repeats // 5))))
        for name, median, p95 in results:
            print(f"  {name:<24} median {median:8.1f} ms   p95 {p95:8.1f} ms", flush=True)
        return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no subprocess timing")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per query (default 20, quick 5)")
    parser.add_argument("--scales", default="1,10", help="comma-separated multiples of 943 users x 10 (default 1,10)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    repeats = args.repeats or (5 if args.quick else 20)
    print(f"mmsrarec sql bench: repeats={repeats}, cpus={os.cpu_count()}, "
          f"load average={os.getloadavg()[0]:.1f} (other work on the machine inflates every figure)")
    table = {scale: bench_scale(scale, repeats=repeats, quick=args.quick) for scale in map(int, args.scales.split(","))}
    if len(table) > 1:
        first, last = min(table), max(table)
        print(f"\nmedian ratio {last}x / {first}x:")
        for (name, m1, _), (_, m2, _) in zip(table[first], table[last]):
            print(f"  {name:<24} {m2 / m1:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
