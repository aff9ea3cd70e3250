"""Ingest throughput: build_item_table (items/s, images decoded and re-encoded) and build_interactions
(interactions/s) at 1x, 2x and 4x the ML-100K catalogue (rows replicated with new ids), and the time ratio per
doubling (2.0 = linear).

    .venv/bin/python bench/ingest.py [--quick] [--master local[2]] [--data-dir DIR]

``--quick`` uses a quarter of the catalogue as 1x. Needs the movielens-100k folder (posters) for image work.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

from mmsrarec_lib.ingest.interactions import build_interactions  # noqa: E402
from mmsrarec_lib.ingest.items import build_item_table  # noqa: E402
from mmsrarec_lib.ingest.movielens import load_movielens  # noqa: E402
from mmsrarec_lib.ingest.sources import SourceTable  # noqa: E402
from mmsrarec_lib.spark import get_spark  # noqa: E402


def tree_cpu_seconds() -> float:
    """CPU seconds (user+sys, incl. reaped children) of this process and all its live descendants (JVM, workers).

    On a shared machine wall time depends on the others' load; CPU time shows this job's own cost.
    """
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0.0, [os.getpid()]
    while todo:
        pid = todo.pop()
        if pid in stats:
            f = stats[pid]
            total += sum(int(x) for x in f[11:15]) / tick  # utime, stime, cutime, cstime
        todo += children.get(pid, [])
    return total


def _suffix(col: pa.ChunkedArray, k: int) -> pa.ChunkedArray:
    return col if k == 0 else pc.binary_join_element_wise(col, pa.scalar(f"-r{k}"), "")


def replicate(items: SourceTable, inter: SourceTable, factor: int, fraction: float) -> tuple[SourceTable, SourceTable]:
    """``factor`` copies of the (first ``fraction`` of the) catalogue and its interactions, ids suffixed -rK."""
    it = items.table.slice(0, max(1, int(items.table.num_rows * fraction)))
    keep = pc.is_in(inter.table.column("item_id"), value_set=it.column("item_id"))
    ia = inter.table.filter(keep)
    it_parts, ia_parts = [], []
    for k in range(factor):
        it_parts.append(it.set_column(0, "item_id", _suffix(it.column("item_id"), k)))
        t = ia.set_column(ia.column_names.index("item_id"), "item_id", _suffix(ia.column("item_id"), k))
        ia_parts.append(t.set_column(t.column_names.index("user_id"), "user_id", _suffix(t.column("user_id"), k)))
    it_all, ia_all = pa.concat_tables(it_parts), pa.concat_tables(ia_parts)
    it_all = it_all.set_column(it_all.column_names.index("source_row"), "source_row",
                               pa.array(range(1, it_all.num_rows + 1), pa.int64()))
    ia_all = ia_all.set_column(ia_all.column_names.index("source_row"), "source_row",
                               pa.array(range(1, ia_all.num_rows + 1), pa.int64()))
    return SourceTable(it_all, items.base_dir), SourceTable(ia_all, inter.base_dir)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1x = a quarter of the catalogue")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--factors", default="1,2,4")
    p.add_argument("--full", action="store_true", help="also time the whole run_ingest on ML-100K (1x)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("MMSRAREC_LOG_LEVEL", "WARNING")
    items, inter = load_movielens(data_dir=args.data_dir)
    fraction = 0.25 if args.quick else 1.0
    t0, c0 = time.perf_counter(), tree_cpu_seconds()
    spark = get_spark(args.master, app_name="bench-ingest")
    print(f"spark session start: {time.perf_counter() - t0:.1f} s wall, {tree_cpu_seconds() - c0:.1f} s CPU")
    now = dt.datetime.now(dt.UTC)
    # warm-up: JVM, Python workers
    w_items, w_inter = replicate(items, inter, 1, 0.05)
    t0, c0 = time.perf_counter(), tree_cpu_seconds()
    build_item_table(spark, source=w_items, run_id="warm", created_at=now)
    print(f"warm-up (5% items): {time.perf_counter() - t0:.1f} s wall, {tree_cpu_seconds() - c0:.1f} s CPU")
    factors = [int(f) for f in args.factors.split(",")]
    print(f"ingest bench, master={args.master}, 1x = {fraction:g} of ML-100K, cpus={os.cpu_count()}")
    print(f"{'scale':>5} {'items':>7} {'ok imgs':>7} {'items s':>8} {'items/s':>8} {'cpu s':>6} {'inter':>8} "
          f"{'inter s':>8} {'inter/s':>9} {'cpu s':>6}")
    times: list[tuple[float, float]] = []
    for f in factors:
        it, ia = replicate(items, inter, f, fraction)
        t0, c0 = time.perf_counter(), tree_cpu_seconds()
        res = build_item_table(spark, source=it, run_id="bench", created_at=now)
        t_items, c_items = time.perf_counter() - t0, tree_cpu_seconds() - c0
        t0, c0 = time.perf_counter(), tree_cpu_seconds()
        ires = build_interactions(spark, source=ia, item_ids=res.items.column("item_id").combine_chunks(),
                                  run_id="bench", created_at=now)
        t_inter, c_inter = time.perf_counter() - t0, tree_cpu_seconds() - c0
        n_ok = pc.sum(pc.equal(res.items.column("image_status"), "ok")).as_py()
        assert ires.new_rows.num_rows == ia.table.num_rows  # nothing lost or quarantined in a clean replica
        times.append((t_items, t_inter))
        print(f"{f:>4}x {it.table.num_rows:>7} {n_ok:>7} {t_items:>8.2f} {it.table.num_rows / t_items:>8.0f} "
              f"{c_items:>6.1f} {ia.table.num_rows:>8} {t_inter:>8.2f} {ia.table.num_rows / t_inter:>9.0f} "
              f"{c_inter:>6.1f}", flush=True)
    for (a, b), (fa, fb) in zip(zip(times, times[1:]), zip(factors, factors[1:])):
        print(f"time ratio {fb}x/{fa}x: items {b[0] / a[0]:.2f}, interactions {b[1] / a[1]:.2f} "
              f"(data ratio {fb / fa:g})")
    if args.full:
        import tempfile

        from mmsrarec_lib.ingest.run import IngestConfig, run_ingest
        from mmsrarec_lib.storage import Warehouse

        with tempfile.TemporaryDirectory() as tmp:
            t0, c0 = time.perf_counter(), tree_cpu_seconds()
            summary = run_ingest(warehouse=Warehouse.from_uri(tmp), items=items, interactions=inter,
                                 config=IngestConfig(dataset="movielens-100k"), spark=spark)
            wall, cpu = time.perf_counter() - t0, tree_cpu_seconds() - c0
        print(f"full ML-100K run_ingest (warm session): {wall:.1f} s wall, {cpu:.1f} s CPU; stages {summary.seconds}")
    print(f"load average now: {os.getloadavg()[0]:.1f} (on {os.cpu_count()} cpus; wall times scale with it)")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
