"""Concurrent writers and crashes, counted: nothing lost, nothing doubled, never half a run visible.

Three experiments, each on a local warehouse and on moto's S3 server (``--storage``):

1. **appenders**: an overwrite ingest of the tiny dataset, then 2 processes x ``--rounds`` (5) rounds of
   ``run_ingest(mode="append")``, each round a new interactions file of distinct rows. Counts rows in (appended),
   rows out (interactions), events in ``user_sequences`` (derived: must equal rows out), distinct ``source_row``.
2. **recommend**: 2 processes publishing one run_date with :func:`mmsrarec_lib.testing.writers.recommend_style_writer`
   (stage shards, one partition commit, watermark update), with the dataset lock and without it (the unguarded
   publish step). Counts rows published vs expected and watermark entries kept.
3. **crash** (local only): the overwrite ingest of dataset B over dataset A, killed (``MMSRAREC_FAULT_AFTER_COMMIT``)
   after each of its commits in turn; after each kill a reader (the ``mmsrarec sql`` engine) fingerprints what it
   sees, then the next writer repairs. Counts how many kills left the reader on A, on B, or on a mix.

``--repo PATH`` runs experiment 1 against another checkout (e.g. a worktree of the commit before the lock), to show
the lost rows there. Spark runs ``local[1]`` per process.

    python bench/concurrency.py                 # everything (~10 minutes on 2 cores)
    python bench/concurrency.py --quick         # 2 rounds, local only, crash after 3 chosen commits
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _write_interactions(path: Path, rows: list[tuple[str, str, int]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp"])
        w.writerows(rows)
    return path


def _appender(repo: str, root: str, opts: dict, writer: int, rounds: int, folder: str, out) -> None:
    """One appending process: ``rounds`` append ingests of 6 new rows each (users u1..u6, writer-specific times)."""
    sys.path.insert(0, repo)
    os.environ["MMSRAREC_SPARK_DRIVER_MEMORY"] = "1g"
    from mmsrarec_lib.ingest.run import IngestConfig, run_ingest
    from mmsrarec_lib.ingest.sources import read_source
    from mmsrarec_lib.ingest.splits import SplitConfig
    from mmsrarec_lib.spark import get_spark
    from mmsrarec_lib.storage import Warehouse

    spark = get_spark("local[1]", app_name=f"bench-append-{writer}", shuffle_partitions=2)
    wh = Warehouse.from_uri(root, storage_options=opts)
    cfg = IngestConfig(dataset="tiny", mode="append", splits=SplitConfig(k_core=5))
    appended, seconds = 0, []
    for r in range(rounds):
        rows = [(f"u{u}", str((u * 5 + r + writer) % 36 + 1), 1_800_000_000 + writer * 100_000 + r * 1000 + u)
                for u in range(1, 7)]
        path = _write_interactions(Path(folder) / f"w{writer}-r{r}.csv", rows)
        t0 = time.perf_counter()
        run_ingest(warehouse=wh, items=None, interactions=read_source(path), config=cfg, spark=spark)
        seconds.append(time.perf_counter() - t0)
        appended += len(rows)
    spark.stop()
    out.put({"writer": writer, "appended": appended, "seconds": seconds})


def _storage(kind: str):
    import contextlib

    from mmsrarec_lib.testing.s3 import moto_s3

    @contextlib.contextmanager
    def local():
        with tempfile.TemporaryDirectory(prefix="bench-conc-") as d:
            yield str(Path(d) / "wh"), {}

    @contextlib.contextmanager
    def s3():
        with moto_s3() as ep:
            yield ep.warehouse_uri, ep.storage_options

    return local() if kind == "local" else s3()


def appenders(kind: str, *, rounds: int, repo: str) -> dict:
    sys.path.insert(0, repo)
    from mmsrarec_lib.ingest.run import IngestConfig, run_ingest
    from mmsrarec_lib.ingest.sources import read_source
    from mmsrarec_lib.spark import get_spark
    from mmsrarec_lib.storage import Warehouse
    from mmsrarec_lib.testing.data import write_tiny_dataset

    with _storage(kind) as (root, opts), tempfile.TemporaryDirectory() as folder:
        items, inter = write_tiny_dataset(Path(folder) / "tiny")
        wh = Warehouse.from_uri(root, storage_options=opts)
        spark = get_spark("local[1]", app_name="bench-initial", shuffle_partitions=2)
        first = run_ingest(warehouse=wh, items=read_source(items), interactions=read_source(inter),
                           config=IngestConfig(dataset="tiny"), spark=spark)
        spark.stop()
        initial = first.counts["interactions"]
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        t0 = time.perf_counter()
        procs = [ctx.Process(target=_appender, args=(repo, root, opts, w, rounds, folder, queue)) for w in (1, 2)]
        for p in procs:
            p.start()
        results = [queue.get(timeout=1800) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        wall = time.perf_counter() - t0
        inter_t = wh.read_table("tiny", "interactions")
        seqs = wh.read_table("tiny", "user_sequences")
        runs = wh.read_table("tiny", "ingest_runs").to_pylist()
        appended = sum(r["appended"] for r in results)
        return {
            "storage": kind, "writers": 2, "rounds": rounds, "exit_codes": [p.exitcode for p in procs],
            "rows_initial": initial, "rows_appended": appended, "rows_expected": initial + appended,
            "interactions_rows": inter_t.num_rows,
            "user_sequences_events": int(sum(seqs.column("length").to_pylist())),
            "distinct_source_rows": len(set(inter_t.column("source_row").to_pylist())),
            "ingest_runs_interactions_written": sum(r["rows_written"] for r in runs if r["table"] == "interactions"),
            "wall_s": round(wall, 1),
            "per_ingest_s": [round(s, 1) for r in results for s in r["seconds"]],
        }


def _recommend_writer(root: str, opts: dict, writer: str, locked: bool, out) -> None:
    sys.path.insert(0, str(REPO))
    from mmsrarec_lib.storage import Warehouse
    from mmsrarec_lib.testing.writers import recommend_style_writer

    wh = Warehouse.from_uri(root, storage_options=opts)
    try:
        out.put(recommend_style_writer(wh, "tiny", writer=writer, run_date=dt.date(2026, 11, 30),
                                       users=[f"u{i}" for i in range(50)], k=10, shards=4, locked=locked,
                                       pause_s=0.05))
    except Exception as exc:  # noqa: BLE001 (reported: an unguarded writer can fail outright)
        out.put(f"failed: {type(exc).__name__}")


def recommend(kind: str, *, locked: bool) -> dict:
    sys.path.insert(0, str(REPO))
    from mmsrarec_lib.storage import Warehouse

    with _storage(kind) as (root, opts):
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        procs = [ctx.Process(target=_recommend_writer, args=(root, opts, w, locked, queue)) for w in ("r1", "r2")]
        for p in procs:
            p.start()
        published = [queue.get(timeout=600) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        wh = Warehouse.from_uri(root, storage_options=opts)
        recs = wh.read_table("tiny", "recommendations").to_pylist() if wh.has_table("tiny", "recommendations") \
            else []
        marks_uri = wh.uri("tiny", "state", "recommend_writers.json")
        marks = json.loads(wh.read_bytes(marks_uri)) if wh.exists(marks_uri) else {}
        return {"storage": kind, "locked": locked, "rows_expected": 500, "rows_published_by_writers": published,
                "rows_in_partition": len(recs), "distinct_user_rank": len({(r["user_id"], r["rank"]) for r in recs}),
                "writers_mixed_in_partition": len({r["model_version"] for r in recs}),
                "watermark_entries_kept": len(marks)}


_CRASH = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from mmsrarec_lib.ingest.run import IngestConfig, run_ingest
    from mmsrarec_lib.ingest.sources import read_source
    from mmsrarec_lib.ingest.splits import SplitConfig
    from mmsrarec_lib.storage import Warehouse
    run_ingest(warehouse=Warehouse.from_uri(sys.argv[2]), items=read_source(sys.argv[3]),
               interactions=read_source(sys.argv[4]), spark_master="local[1]",
               config=IngestConfig(dataset="tiny", splits=SplitConfig(k_core=2)))  # B is too sparse for 5
""")
FINGERPRINT = ("SELECT (SELECT count(*) FROM items) AS items, (SELECT count(*) FROM interactions) AS interactions,"
               " (SELECT CAST(coalesce(sum(length), 0) AS BIGINT) FROM user_sequences) AS seq_events,"
               " (SELECT count(*) FROM split_loo) AS split_loo, (SELECT count(*) FROM eval_candidates) AS eval,"
               " (SELECT count(*) FROM ingest_runs) AS ingest_runs")


def crash(*, points: list[int]) -> dict:
    sys.path.insert(0, str(REPO))
    from mmsrarec_lib.snapshots import FAULT_ENV, repair
    from mmsrarec_lib.sql.engine import SqlEngine
    from mmsrarec_lib.storage import Warehouse
    from mmsrarec_lib.testing.data import write_tiny_dataset

    def seen(wh):
        with SqlEngine(warehouse=wh, dataset="tiny") as engine:
            return tuple(engine.query(FINGERPRINT).to_pylist()[0].values())

    out = {"kills": {}, "states": {}}
    with tempfile.TemporaryDirectory(prefix="bench-crash-") as d:
        a_items, a_inter = write_tiny_dataset(Path(d) / "a")
        b_items, b_inter = write_tiny_dataset(Path(d) / "b")
        rows = list(csv.reader(b_inter.open()))
        with b_inter.open("w", newline="") as f:  # dataset B: the first 150 interactions only
            csv.writer(f).writerows(rows[:151])
        env = {**os.environ, "MMSRAREC_SPARK_DRIVER_MEMORY": "1g", "MMSRAREC_LOG_LEVEL": "WARNING"}

        def run(root, items, inter, fault=None):
            e = {**env, FAULT_ENV: str(fault)} if fault else env
            return subprocess.run([sys.executable, "-c", _CRASH, str(REPO), root, str(items), str(inter)], env=e,
                                  capture_output=True, text=True, timeout=900).returncode

        ref = str(Path(d) / "ref")
        assert run(ref, a_items, a_inter) == 0
        state_a = seen(Warehouse.from_uri(ref))
        assert run(ref, b_items, b_inter) == 0
        state_b = seen(Warehouse.from_uri(ref))
        out["state_a"], out["state_b"] = state_a, state_b
        base = Path(d) / "base"
        assert run(str(base), a_items, a_inter) == 0
        for n in points:
            root = str(Path(d) / f"wh{n}")
            shutil.copytree(base, root)  # dataset A, as the reference run wrote it
            code = run(root, b_items, b_inter, fault=n)
            wh = Warehouse.from_uri(root)
            state = seen(wh)
            label = "A" if state == state_a else "B" if state == state_b else f"MIX {state}"
            repair(wh, "tiny", by="bench")
            after_repair = seen(wh)
            out["kills"][n] = {"exit": code, "reader_saw": label,
                               "after_repair": "A" if after_repair == state_a else "B" if after_repair == state_b
                               else f"MIX {after_repair}"}
            print(f"kill after commit {n}: {out['kills'][n]}", flush=True)
        labels = [k["reader_saw"] for k in out["kills"].values()]
        out["states"] = {s: labels.count(s) for s in sorted(set(labels))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--storage", choices=("local", "s3", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repo", default=str(REPO), help="checkout whose run_ingest the appenders run")
    parser.add_argument("--only", choices=("appenders", "recommend", "crash"), action="append")
    args = parser.parse_args()
    kinds = ["local"] if args.quick or args.storage == "local" else ["s3"] if args.storage == "s3" \
        else ["local", "s3"]
    rounds = 2 if args.quick else args.rounds
    only = set(args.only or ("appenders", "recommend", "crash"))
    print(f"load average before: {os.getloadavg()}", flush=True)
    if "recommend" in only:
        for kind in kinds:
            for locked in (False, True):
                print("recommend", json.dumps(recommend(kind, locked=locked), default=str), flush=True)
    if "appenders" in only:
        for kind in kinds:
            print("appenders", json.dumps(appenders(kind, rounds=rounds, repo=args.repo), default=str), flush=True)
    if "crash" in only:
        points = [1, 3, 10] if args.quick else list(range(1, 11))
        print("crash", json.dumps(crash(points=points), default=str), flush=True)


if __name__ == "__main__":
    main()
