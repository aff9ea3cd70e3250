"""The dev launcher behind ``make demo`` and ``make airflow`` (not a job: it drives Airflow, which runs the jobs):
the whole pipeline on the default data through Airflow, then the results through SQL.

    python -m mmsrarec_lib.testing.airflow_demo               # item tables -> train -> one nightly date
    python -m mmsrarec_lib.testing.airflow_demo --standalone  # Airflow UI/API on http://127.0.0.1:8080
    python -m mmsrarec_lib.testing.airflow_demo --stop        # stop it (its whole process group)

The demo sets ``AIRFLOW_HOME`` to ``<repo>/airflow_home`` (a SQLite metadata database under the project folder;
override with ``--airflow-home`` or ``$AIRFLOW_HOME``) and the DAG folder to ``<repo>/dags``, runs
``airflow db migrate``, then ``airflow dags test`` for ``mmsrarec_item_tables``, ``mmsrarec_train`` and
``mmsrarec_nightly`` (one ``run_date``, by default the day after ML-100K's last rating, passed as the DAG's
``run_date`` param: every run's logical date is the moment it runs, so the UI shows real start times and durations,
not a 1998 logical date leaking into a 10448-day "duration"). Each DAG gets run-conf params sized for a 2-core
machine without a GPU (one seed, no ablations, small step counts, a user limit for recommend/evaluate): see
:data:`DEMO_CONF`. Airflow's own
log of each DAG run goes to ``<airflow_home>/demo_logs/<dag_id>.log``; the console shows one line per task.

It then prints the evaluation table and the top-5 recommendations with their explanations for three users: the
queries are ``sql/demo_*.sql``, run by ``mmsrarec sql`` (the analysts' read-only engine, parameters bound). It
measures nothing itself: wrap it in ``/usr/bin/time -v``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DAG_IDS = ("mmsrarec_item_tables", "mmsrarec_train", "mmsrarec_nightly")
DEFAULT_RUN_DATE = "1998-04-23"  # the day after ML-100K's last rating
PID_FILE = "standalone.pid"

# Run-conf of each DAG, sized so that the chain fits the demo budget (10 min, 6 GB) on 2 CPU cores.
DEMO_CONF: dict[str, dict[str, object]] = {
    "mmsrarec_item_tables": {"source": "movielens-100k", "mode": "overwrite"},
    "mmsrarec_train": {
        "seed": 42,
        "summarizer_version": "demo",
        "summarizer_backend": "extractive",
        "protocol": "paper",
        "baseline_epochs": 3,
        "summarizer_steps": 5,
        "summarizer_limit": 128,
        # the hashing encoder: MiniLM made summarizing 1,682 items take ~10 min here (0.23 s/item vs 0.02)
        "keyword_encoder": "hashing",
        "train_steps": 20,
        "progress": False,
    },
    "mmsrarec_nightly": {
        "shards": 1,
        "top_k": 10,
        "users": "all",
        "protocol": "paper",
        "limit_users": 50,
        "top_m": 20,  # 3 are shown
        "progress": False,
    },
}

_TASK_LINE = re.compile(r"\[DAG TEST\] (starting|end task) task_id=(\S+)")
_STATE_LINE = re.compile(r"new_state=(\w+)")


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs on and where Airflow keeps its state."""

    dataset: str
    warehouse: str
    airflow_home: Path
    run_date: str
    skip_item_tables: bool
    users_shown: int
    port: int


def build_config(args: argparse.Namespace) -> DemoConfig:
    from mmsrarec_lib.storage import resolve_warehouse_uri

    home = args.airflow_home or os.environ.get("AIRFLOW_HOME") or str(REPO_ROOT / "airflow_home")
    warehouse = args.warehouse or os.environ.get("MMSRAREC_WAREHOUSE") or str(REPO_ROOT / "warehouse")
    return DemoConfig(
        dataset=args.dataset,
        warehouse=resolve_warehouse_uri(warehouse),
        airflow_home=Path(home).expanduser().resolve(),
        run_date=args.run_date,
        skip_item_tables=args.skip_item_tables,
        users_shown=args.users_shown,
        port=args.port,
    )


def airflow_env(cfg: DemoConfig, *, demo: bool) -> dict[str, str]:
    """The environment of every Airflow command: this project's home, DAG folder, no examples, offline hubs."""
    from mmsrarec_lib.runtime_env import OFFLINE_DEFAULTS

    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)  # `airflow standalone` starts its components by the name `airflow`
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.update(
        {
            "AIRFLOW_HOME": str(cfg.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "MMSRAREC_WAREHOUSE": cfg.warehouse,
            "MMSRAREC_DATASET": cfg.dataset,
            **OFFLINE_DEFAULTS,  # mmsrarec_lib.runtime_env: the jobs' own defaults, forced for the demo
            "PYTHONUNBUFFERED": "1",
        }
    )
    if demo:
        env.setdefault("MMSRAREC_RETRY_DELAY_S", "5")  # a retry in the demo should not wait a minute
    return env


def _airflow_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "airflow", *args]


def run_dag_test(cfg: DemoConfig, dag_id: str, *, logical_date: str | None, env: dict[str, str]) -> float:
    """``airflow dags test`` one DAG with the demo's run-conf; its log goes to a file, one console line per task.

    Returns the wall time in seconds; raises RuntimeError (with the log's tail) when the run fails.
    """
    conf = {"dataset": cfg.dataset, "warehouse": cfg.warehouse, **DEMO_CONF[dag_id]}
    if dag_id == "mmsrarec_nightly":
        conf["run_date"] = cfg.run_date  # the partition; the run's logical date stays "now"
    cmd = _airflow_cmd("dags", "test", dag_id)
    if logical_date:
        cmd.append(logical_date)
    cmd += ["--conf", json.dumps(conf)]
    log_dir = cfg.airflow_home / "demo_logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{dag_id}.log"
    label = f" (run_date {conf['run_date']})" if "run_date" in conf else (f" ({logical_date})" if logical_date else "")
    print(f"\n== {dag_id}{label}  [log: {log_path}]", flush=True)
    start = time.monotonic()
    task_start: dict[str, float] = {}
    tail: list[str] = []
    with open(log_path, "w") as log, subprocess.Popen(
        cmd, cwd=str(REPO_ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as proc:
        assert proc.stdout is not None
        state = ""
        for line in proc.stdout:
            log.write(line)
            tail = (tail + [line.rstrip()])[-60:]
            if found := _STATE_LINE.search(line):
                state = found.group(1)
            if found := _TASK_LINE.search(line):
                kind, task_id = found.groups()
                if kind == "starting":
                    task_start[task_id] = time.monotonic()
                    state = ""
                else:
                    took = time.monotonic() - task_start.get(task_id, start)
                    print(f"   {task_id:<22} {state or 'done':<13} {took:7.1f} s", flush=True)
        returncode = proc.wait()
    took = time.monotonic() - start
    if returncode != 0:
        raise RuntimeError(f"{dag_id} failed (exit {returncode}); last lines of {log_path}:\n" + "\n".join(tail))
    print(f"   {dag_id} succeeded in {took:.0f} s", flush=True)
    return took


# --------------------------------------------------------------------------- results
SQL_DIR = REPO_ROOT / "sql"


def run_query(cfg: DemoConfig, sql_file: str, *, env: dict[str, str], fmt: str = "table", **params: object) -> None:
    """Print the result of ``sql/<sql_file>`` through ``mmsrarec sql`` (the analysts' read-only engine), the
    ``params`` bound as SQL variables (``--param``), never pasted into the query text."""
    cmd = [sys.executable, "-m", "jobs.cli", "sql", "--dataset", cfg.dataset, "--warehouse", cfg.warehouse,
           "--format", fmt, "-f", str(SQL_DIR / sql_file)]
    for name, value in params.items():
        cmd += ["--param", f"{name}={value}"]
    out = subprocess.run(cmd, cwd=str(REPO_ROOT), env=env, text=True, capture_output=True)
    if out.returncode != 0:
        raise RuntimeError(f"mmsrarec sql failed (exit {out.returncode}): {out.stderr.strip()[-2000:]}")
    print(out.stdout.rstrip(), flush=True)


def show_results(cfg: DemoConfig, *, env: dict[str, str]) -> None:
    print("\n== evaluation (latest run per model, metrics x100)", flush=True)
    run_query(cfg, "demo_latest_evaluation.sql", env=env)
    print(f"\n== top-5 recommendations on {cfg.run_date} for {cfg.users_shown} users, with explanations", flush=True)
    run_query(cfg, "demo_explained_top5.sql", env=env, run_date=cfg.run_date, users=cfg.users_shown)


def run_demo(cfg: DemoConfig) -> int:
    env = airflow_env(cfg, demo=True)
    print(f"AIRFLOW_HOME={cfg.airflow_home}\nwarehouse={cfg.warehouse}  dataset={cfg.dataset}", flush=True)
    start = time.monotonic()
    subprocess.run(_airflow_cmd("db", "migrate"), env=env, check=True, stdout=subprocess.DEVNULL)
    print(f"airflow db migrate: {time.monotonic() - start:.0f} s", flush=True)
    if not cfg.skip_item_tables:
        run_dag_test(cfg, "mmsrarec_item_tables", logical_date=None, env=env)
    run_dag_test(cfg, "mmsrarec_train", logical_date=None, env=env)
    run_dag_test(cfg, "mmsrarec_nightly", logical_date=None, env=env)
    show_results(cfg, env=env)
    print(f"\ndemo finished in {time.monotonic() - start:.0f} s", flush=True)
    return 0


# --------------------------------------------------------------------------- local Airflow UI
def start_standalone(cfg: DemoConfig) -> int:
    """``airflow standalone`` on 127.0.0.1 in its own session (setsid), so ``--stop`` ends its process group."""
    pid_path = cfg.airflow_home / PID_FILE
    if pid_path.exists() and _alive(int(pid_path.read_text())):
        print(f"Airflow is already running (pid {pid_path.read_text().strip()}); stop it with --stop")
        return 1
    cfg.airflow_home.mkdir(parents=True, exist_ok=True)
    env = airflow_env(cfg, demo=False)
    env.update({"AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(cfg.port),
                # workers report to the API server's execution API: on another port than 8080 it must be named
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{cfg.port}/execution/"})
    log_path = cfg.airflow_home / "standalone.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            _airflow_cmd("standalone"), cwd=str(REPO_ROOT), env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
    pid_path.write_text(str(proc.pid))
    print(f"Airflow standalone started (pid {proc.pid}, log {log_path}).")
    print(f"UI: http://127.0.0.1:{cfg.port}  user 'admin', password in "
          f"{cfg.airflow_home / 'simple_auth_manager_passwords.json.generated'} (written on first start)")
    print("Stop it with: python -m mmsrarec_lib.testing.airflow_demo --stop")
    return 0


def _alive(pid: int, *, group: bool = False) -> bool:
    """Whether process ``pid`` (``group``: the process group ``pid``) still exists (signal 0 probes it)."""
    try:
        (os.killpg if group else os.kill)(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def stop_standalone(cfg: DemoConfig, *, grace_s: float = 30.0) -> int:
    """SIGTERM the standalone's process group, SIGKILL what is left after ``grace_s``."""
    pid_path = cfg.airflow_home / PID_FILE
    if not pid_path.exists():
        print(f"no {pid_path}: Airflow standalone is not running from this AIRFLOW_HOME")
        return 0
    pid = int(pid_path.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)  # the group id is the pid: the process was started with setsid
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _alive(pid, group=True):
            time.sleep(0.5)
        if _alive(pid, group=True):
            os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pid_path.unlink(missing_ok=True)
    print(f"Airflow standalone (process group {pid}) stopped")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mmsrarec_lib.testing.airflow_demo",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="movielens-100k",
                        help="dataset name in the warehouse (default movielens-100k)")
    parser.add_argument("--warehouse", default=None, help="warehouse root (default $MMSRAREC_WAREHOUSE or ./warehouse)")
    parser.add_argument("--airflow-home", default=None, help="AIRFLOW_HOME (default $AIRFLOW_HOME or ./airflow_home)")
    parser.add_argument("--run-date", default=DEFAULT_RUN_DATE,
                        help="run_date param of the nightly run (YYYY-MM-DD); its logical date is now")
    parser.add_argument("--skip-item-tables", action="store_true", help="reuse the item tables already ingested")
    parser.add_argument("--users-shown", type=int, default=3, help="users whose top-5 is printed (default 3)")
    parser.add_argument("--port", type=int, default=8080, help="UI/API port for --standalone (default 8080)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--standalone", action="store_true", help="start a local Airflow on 127.0.0.1 and return")
    mode.add_argument("--stop", action="store_true", help="stop the local Airflow started with --standalone")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = build_config(args)
    if args.standalone:
        return start_standalone(cfg)
    if args.stop:
        return stop_standalone(cfg)
    try:
        return run_demo(cfg)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
