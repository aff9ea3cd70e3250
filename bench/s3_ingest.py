"""One ingest with the warehouse on S3 (moto's server on 127.0.0.1) vs on a local folder: time and bytes.

Runs ``mmsrarec ingest`` as a subprocess (the real CLI, ``--source movielens-100k`` from ../shared by default, or
the tiny test dataset with ``--quick``) three times:

1. local warehouse, timed;
2. S3 warehouse, timed; the S3 server counts the bytes the job downloaded (GET bodies) and uploaded (PUT bodies);
3. local warehouse again under ``strace -f`` (skipped with ``--no-strace`` or when strace is missing), counting the
   bytes the job's processes read from warehouse files and from the input folder, the local counterpart of (2).

Prints one table and a JSON line. Times on a shared 2-core machine vary with its load: the script prints the load
average next to them.

    python bench/s3_ingest.py            # ML-100K (a few minutes)
    python bench/s3_ingest.py --quick    # the tiny test dataset
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mmsrarec_lib.runtime_env import offline_env  # noqa: E402
from mmsrarec_lib.storage import Warehouse  # noqa: E402
from mmsrarec_lib.testing import moto_s3, write_tiny_dataset  # noqa: E402

TABLES = ("items", "interactions", "user_sequences", "split_loo", "eval_candidates")
# strace line: "PID read(FD</path>, ..., N) = BYTES", possibly split into "<unfinished ...>" / "<... read resumed>"
_CALL = re.compile(r"^(\d+)\s+(?:read|pread64|readv|preadv2?)\(\d+<([^>]*)>")
_RESUMED = re.compile(r"^(\d+)\s+<\.\.\. (?:read|pread64|readv|preadv2?) resumed>")
_RESULT = re.compile(r"=\s+(\d+)\s*$")


@dataclass(frozen=True)
class BenchConfig:
    quick: bool
    data_dir: str | None
    spark_master: str
    strace: bool
    keep: bool


def _ingest_cmd(cfg: BenchConfig, data: Path | None, warehouse: str) -> list[str]:
    cmd = [sys.executable, "-m", "jobs.cli", "ingest", "--warehouse", warehouse, "--spark-master", cfg.spark_master]
    if cfg.quick:
        assert data is not None
        return cmd + ["--dataset", "tiny", "--items", str(data / "items.csv"),
                      "--interactions", str(data / "interactions.csv")]
    return cmd + ["--dataset", "movielens-100k", "--source", "movielens-100k"] + (
        ["--data-dir", cfg.data_dir] if cfg.data_dir else [])


def _run(cmd: list[str], env: dict[str, str], label: str) -> float:
    print(f"[{label}] {' '.join(cmd[3:6])} ... (load average {os.getloadavg()[0]:.1f})", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"[{label}] ingest failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    print(f"[{label}] {elapsed:.1f}s", flush=True)
    return elapsed


def strace_read_bytes(log_path: Path, prefixes: dict[str, str]) -> dict[str, int]:
    """Bytes returned by read-family calls on files under each prefix (``{label: path prefix}``)."""
    totals: dict[str, int] = defaultdict(int)
    pending: dict[str, str] = {}  # pid -> path of its unfinished read
    with open(log_path, errors="replace") as f:
        for line in f:
            path = None
            if m := _CALL.match(line):
                if line.rstrip().endswith("<unfinished ...>"):
                    pending[m.group(1)] = m.group(2)
                    continue
                path = m.group(2)
            elif m := _RESUMED.match(line):
                path = pending.pop(m.group(1), None)
            if path is None or not (r := _RESULT.search(line)):
                continue
            for label, prefix in prefixes.items():
                if path.startswith(prefix):
                    totals[label] += int(r.group(1))
    return dict(totals)


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _counts(wh: Warehouse, dataset: str) -> dict[str, int]:
    return {t: wh.read_table(dataset, t).num_rows for t in TABLES}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the tiny test dataset instead of ML-100K")
    p.add_argument("--data-dir", help="ML-100K folder (default: the ingest job's default)")
    p.add_argument("--spark-master", default="local[2]")
    p.add_argument("--no-strace", action="store_true", help="skip the third (strace) run")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    a = p.parse_args(argv)
    cfg = BenchConfig(quick=a.quick, data_dir=a.data_dir, spark_master=a.spark_master,
                      strace=not a.no_strace and shutil.which("strace") is not None, keep=a.keep)
    scratch = Path(tempfile.mkdtemp(prefix="mmsrarec-s3bench-"))
    data = None
    if cfg.quick:
        write_tiny_dataset(scratch / "data")
        data = scratch / "data"
    dataset = "tiny" if cfg.quick else "movielens-100k"
    input_dir = str(data) if data else (cfg.data_dir or os.environ.get("MMSRAREC_DATA_DIR")
                                        or str(REPO.parent / "shared" / "data" / "movielens-100k"))
    base_env = {**offline_env(), "PYSPARK_PYTHON": sys.executable}
    for k in [k for k in base_env if k.startswith("AWS_")]:
        base_env.pop(k)

    local_root = scratch / "wh_local"
    t_local = _run(_ingest_cmd(cfg, data, str(local_root)), base_env, "local")
    local_counts = _counts(Warehouse.from_uri(str(local_root)), dataset)

    with moto_s3() as s3:
        s3.traffic.reset()
        t_s3 = _run(_ingest_cmd(cfg, data, s3.warehouse_uri), {**base_env, **s3.env}, "s3")
        traffic = s3.traffic.snapshot()
        client = s3.boto3_client()
        stored = sum(o["Size"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket)
                     for o in page.get("Contents", []))
        s3_counts = _counts(Warehouse.from_uri(s3.warehouse_uri, storage_options=s3.storage_options), dataset)
    if s3_counts != local_counts:
        sys.exit(f"row counts differ: local {local_counts} vs s3 {s3_counts}")

    local_read = None
    if cfg.strace:
        traced_root = scratch / "wh_traced"
        log_path = scratch / "strace.log"
        cmd = ["strace", "-f", "-qq", "-s", "0", "-y", "-e", "trace=read,pread64,readv,preadv,preadv2",
               "-o", str(log_path), *_ingest_cmd(cfg, data, str(traced_root))]
        _run(cmd, base_env, "local+strace")
        local_read = strace_read_bytes(log_path, {"warehouse": str(traced_root), "input": input_dir})

    local_bytes = _dir_bytes(local_root)
    rows = [
        ("time (s)", f"{t_local:.1f}", f"{t_s3:.1f}", f"{t_s3 / t_local:.2f}"),
        ("warehouse bytes read", f"{local_read['warehouse']:,}" if local_read else "n/a",
         f"{traffic['bytes_read']:,}",
         f"{traffic['bytes_read'] / local_read['warehouse']:.2f}" if local_read and local_read["warehouse"] else ""),
        ("warehouse bytes written/stored", f"{local_bytes:,}", f"{traffic['bytes_written']:,} / {stored:,}", ""),
        ("input bytes read (local files)", f"{local_read['input']:,}" if local_read else "n/a", "same input", ""),
        ("S3 requests", "", " ".join(f"{k[9:].upper()}={v}" for k, v in traffic.items()
                                      if k.startswith("requests_")), ""),
    ]
    print(f"\ningest of {dataset} ({', '.join(f'{t}={n}' for t, n in local_counts.items())}), "
          f"spark {cfg.spark_master}, load average now {os.getloadavg()[0]:.1f}")
    print(f"{'':32} {'local':>14} {'S3 (moto)':>28} {'S3/local':>9}")
    for r in rows:
        print(f"{r[0]:32} {r[1]:>14} {r[2]:>28} {r[3]:>9}")
    print(json.dumps({"dataset": dataset, "time_local_s": round(t_local, 2), "time_s3_s": round(t_s3, 2),
                      "time_ratio": round(t_s3 / t_local, 3), "s3": traffic, "s3_stored_bytes": stored,
                      "local_warehouse_bytes": local_bytes, "local_read_bytes": local_read, "rows": local_counts}))
    if not cfg.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
