"""Wall time of the nightly DAG with 1 vs 2 parallel shards, through a real local Airflow (LocalExecutor).

    python bench/shards.py --warehouse W --dataset D --run-date 1998-05-10 [--limit-users 60] [--model-run RUN]

Starts `airflow standalone` (mmsrarec_lib/testing/airflow_demo.py --standalone) in a scratch AIRFLOW_HOME over an
existing trained warehouse, triggers `mmsrarec_nightly` through the REST API with `shards=1`, then `shards=2` (same
run_date, same users), and prints each run's wall time (start -> end as Airflow records it), the recommend tasks'
durations and span, the ratios, the published partition's checksum after each run, and the load average. Every task runs
as in production (the evaluation too, on the paper protocol), so the whole-DAG ratio is diluted by the unsharded tasks.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DAG = "mmsrarec_nightly"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url: str, *, token: str | None = None, method: str = "GET", body: dict | None = None) -> dict:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None, headers=headers,
                                 method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"{}")


def _wait(fn, timeout: float, every: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = fn()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"gave up after {timeout:.0f} s")


def _checksum(warehouse: str, dataset: str, run_date: str) -> tuple[int, str]:
    import pyarrow.compute as pc

    from mmsrarec_lib.storage import Warehouse

    t = Warehouse.from_uri(warehouse).read_table(dataset, "recommendations")
    t = t.filter(pc.equal(t["run_date"], dt.date.fromisoformat(run_date)))
    rows = sorted(zip(t["user_id"].to_pylist(), t["rank"].to_pylist(), t["item_id"].to_pylist(),
                      [round(s, 6) for s in t["score"].to_pylist()]))
    return len(rows), hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", default=os.environ.get("MMSRAREC_WAREHOUSE", "warehouse"))
    parser.add_argument("--dataset", default="movielens-100k")
    parser.add_argument("--run-date", default="1998-05-10")
    parser.add_argument("--model-run", default="")
    parser.add_argument("--limit-users", type=int, default=60)
    parser.add_argument("--shards", default="1,2", help="comma-separated shard counts, run in this order")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))

    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
        port = _free_port()
        env = {**os.environ, "MMSRAREC_NIGHTLY_SCHEDULE": "", "PYTHONPATH": str(REPO)}
        env.pop("AIRFLOW_HOME", None)
        demo = [sys.executable, "-m", "mmsrarec_lib.testing.airflow_demo", "--airflow-home", tmp,
                "--warehouse", args.warehouse, "--dataset", args.dataset]
        subprocess.run(demo + ["--standalone", "--port", str(port)], cwd=REPO, env=env, check=True,
                       capture_output=True)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait(lambda: _call(f"{base}/api/v2/monitor/health"), 240)
            pw_file = Path(tmp) / "simple_auth_manager_passwords.json.generated"
            password = _wait(lambda: pw_file.exists() and json.loads(pw_file.read_text()).get("admin"), 60)
            token = _call(f"{base}/auth/token", method="POST", body={"username": "admin", "password": password})[
                "access_token"]
            _wait(lambda: _call(f"{base}/api/v2/dags/{DAG}", token=token), 180)
            _call(f"{base}/api/v2/dags/{DAG}", token=token, method="PATCH", body={"is_paused": False})
            results = []
            for n in [int(x) for x in args.shards.split(",")]:
                conf = {"run_date": args.run_date, "shards": n, "users": "all", "model_run": args.model_run,
                        "recommend_args": f"--limit-users {args.limit_users} --top-m 20 --no-progress",
                        "evaluate_args": "--no-progress"}
                run = _call(f"{base}/api/v2/dags/{DAG}/dagRuns", token=token, method="POST",
                            body={"logical_date": None, "conf": conf})
                url = f"{base}/api/v2/dags/{DAG}/dagRuns/{run['dag_run_id']}"
                final = _wait(lambda u=url: (r := _call(u, token=token))["state"] in ("success", "failed") and r,
                              3600, every=3)
                tis = _call(f"{url}/taskInstances", token=token)["task_instances"]
                rec = [t for t in tis if t["task_id"] == "recommend"]
                took = (dt.datetime.fromisoformat(final["end_date"]) - dt.datetime.fromisoformat(
                    final["start_date"])).total_seconds()
                starts = [dt.datetime.fromisoformat(t["start_date"]) for t in rec]
                ends = [dt.datetime.fromisoformat(t["end_date"]) for t in rec]
                span = (max(ends) - min(starts)).total_seconds()
                rows, digest = _checksum(args.warehouse, args.dataset, args.run_date)
                results.append((n, final["state"], took, span, [round(t["duration"], 1) for t in rec], rows, digest))
                print(f"shards={n}: {final['state']} in {took:.1f} s (recommend tasks {span:.1f} s start to end,"
                      f" each {[round(t['duration'], 1) for t in rec]} s); partition {rows} rows, sha {digest};"
                      f" load {os.getloadavg()[0]:.1f}", flush=True)
                other = {t["task_id"]: round(t["duration"] or 0, 1) for t in tis if t["task_id"] != "recommend"}
                print(f"  other tasks (s): {other}", flush=True)
        finally:
            subprocess.run(demo + ["--stop"], cwd=REPO, env=env, capture_output=True)
    if len(results) >= 2:
        (n1, _, t1, s1, *_), (n2, _, t2, s2, *_) = results[:2]
        print(f"\nnightly DAG wall time: shards={n1} {t1:.1f} s vs shards={n2} {t2:.1f} s -> ratio {t1 / t2:.2f}x;"
              f" recommend stage {s1:.1f} s vs {s2:.1f} s -> {s1 / s2:.2f}x; {os.cpu_count()} CPUs")
    return 0 if all(r[1] == "success" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
