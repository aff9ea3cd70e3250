"""Running jobs from Airflow tasks: failures raise (so Airflow retries), one-time failures for retry tests,
secrets stay out of logs; and (slow) ``dag.test()`` of ``mmsrarec_nightly`` on a tiny warehouse built here.
"""

from __future__ import annotations

import logging

import pytest

from mmsrarec_lib.orchestration import ENV_FAIL_ONCE, JobFailed, run_job


# --------------------------------------------------------------------------- run_job
def test_a_failing_job_raises_with_its_exit_code_and_output():
    with pytest.raises(JobFailed) as err:
        run_job("no-such-command", [])
    assert err.value.returncode == 2 and err.value.command == "no-such-command"
    assert "invalid choice: 'no-such-command'" in str(err.value), "the job's own error is in the exception"


def test_a_job_error_on_bad_input_fails_the_task(tmp_path):
    with pytest.raises(JobFailed) as err:
        run_job("ingest", ["--dataset", "d", "--warehouse", str(tmp_path / "w"), "--items", str(tmp_path / "x.csv")])
    assert err.value.returncode == 2
    assert "--items and --interactions are both required" in str(err.value)


def test_fail_once_before_the_job_then_the_retry_runs(tmp_path, monkeypatch, caplog):
    flag = tmp_path / "flags" / "ingest-before"
    monkeypatch.setenv(ENV_FAIL_ONCE, f"ingest:before:{flag}")
    caplog.set_level(logging.INFO, logger="mmsrarec_lib.orchestration")
    with pytest.raises(JobFailed, match="injected one-time failure before"):
        run_job("ingest", ["--help"])
    assert flag.exists()
    assert "usage: mmsrarec ingest" not in caplog.text, "the job did not run on the failed try"
    run_job("ingest", ["--help"])  # the retry
    assert "usage: mmsrarec ingest" in caplog.text
    run_job("sql", ["--help"])  # other commands are never affected


def test_fail_once_after_the_job_has_run(tmp_path, monkeypatch, caplog):
    flag = tmp_path / "after"
    monkeypatch.setenv(ENV_FAIL_ONCE, f"ingest:after:{flag}")
    caplog.set_level(logging.INFO, logger="mmsrarec_lib.orchestration")
    with pytest.raises(JobFailed, match="injected one-time failure after"):
        run_job("ingest", ["--help"])
    assert "usage: mmsrarec ingest" in caplog.text, "the job ran (and would have committed) before the failure"
    run_job("ingest", ["--help"])


def test_env_reaches_the_job_but_values_never_reach_the_log(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "wJalrXUtnFEMI-not-a-real-secret"
    env = {"AWS_SECRET_ACCESS_KEY": secret, "MMSRAREC_LOG_LEVEL": "DEBUG"}
    with pytest.raises(JobFailed):
        run_job("ingest", ["--dataset", "d", "--warehouse", str(tmp_path), "--items", "x.csv"], env=env)
    assert "DEBUG mmsrarec: failed" in caplog.text, "the child saw MMSRAREC_LOG_LEVEL from env"
    assert "AWS_SECRET_ACCESS_KEY" in caplog.text, "the variable's name is logged"
    assert secret not in caplog.text


def test_one_place_for_the_offline_environment(monkeypatch):
    """runtime_env: offline hubs and log-friendly progress bars unless the environment says otherwise; the job's
    env (credentials) wins over everything."""
    from mmsrarec_lib import runtime_env

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")  # an operator's choice is kept
    env = runtime_env.job_env({"AWS_REGION": "eu-west-1"})
    assert (env["HF_HUB_OFFLINE"], env["TRANSFORMERS_OFFLINE"], env["TOKENIZERS_PARALLELISM"]) == ("1", "0", "false")
    assert env["TQDM_MININTERVAL"] == "30" and env["PYTHONUNBUFFERED"] == "1" and env["AWS_REGION"] == "eu-west-1"
    environ: dict[str, str] = {"TRANSFORMERS_OFFLINE": "0"}
    runtime_env.apply_offline_defaults(environ)
    assert environ == {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "0", "TOKENIZERS_PARALLELISM": "false"}
    monkeypatch.delenv(runtime_env.ENV_TORCH_THREADS, raising=False)
    assert runtime_env.configure_threads() is None, "nothing asked: torch keeps its own choice"
    with pytest.raises(ValueError, match=">= 1"):
        runtime_env.configure_threads(0)


# --------------------------------------------------------------------------- dag.test() of mmsrarec_nightly
DATASET = "tiny"
RUN_DATE = "1998-04-10"  # after every interaction of the tiny data (1998-04-01 .. 04-07)
GENRES = ["space", "war", "robots", "drama", "comedy", "love", "crime", "horror"]
N_ITEMS, N_USERS, PER_USER = 60, 16, 10
DAG_TEST_SCRIPT = """
import json, sys, pathlib, pendulum
from airflow.dag_processing.dagbag import BundleDagBag
p = pathlib.Path(sys.argv[1])
dag = BundleDagBag(dag_folder=p, bundle_path=p, bundle_name="dags-folder").dags["mmsrarec_nightly"]
dr = dag.test(logical_date=pendulum.parse(sys.argv[2]) if sys.argv[2] else None, run_conf=json.loads(sys.argv[3]))
tis = {ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): [str(ti.state), ti.try_number]
       for ti in dr.get_task_instances()}
print("DAG_TEST_RESULT " + json.dumps({"state": str(dr.state), "tis": tis}))
"""


def _write_tiny_inputs(root):
    """60 items (title, description, genres, a local JPEG) and 16 users x 10 interactions in April 1998."""
    import csv
    import datetime as dt
    import random

    from PIL import Image

    (root / "img").mkdir(parents=True)
    with open(root / "items.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "title", "description", "categories", "image_uri"])
        for k in range(N_ITEMS):
            Image.new("RGB", (24, 36), (k * 37 % 255, k * 91 % 255, 120)).save(root / "img" / f"{k}.jpg")
            g1, g2 = GENRES[k % 8], GENRES[(3 * k + 1) % 8]
            w.writerow([f"i{k}", f"Movie {k}", f"A {g1} film about {g2}.", f"{g1}|{g2}", f"img/{k}.jpg"])
    rng, t0 = random.Random(0), dt.datetime(1998, 4, 1, tzinfo=dt.UTC)
    rows = []
    for u in range(N_USERS):
        start = rng.randrange(N_ITEMS)
        for j in range(PER_USER):
            item = f"i{(start + 2 * j + rng.randrange(2)) % N_ITEMS}"
            rows.append([f"u{u}", item, (t0 + dt.timedelta(hours=u * 10 + j)).isoformat(), 4])
    with open(root / "interactions.csv", "w", newline="") as f:
        csv.writer(f).writerows([["user_id", "item_id", "timestamp", "rating"], *rows])
    # the day's feed: 3 new interactions plus 2 rows that are already in the table (a re-delivered file)
    new = [["u0", "i5", "1998-04-09T10:00:00+00:00", 5], ["u1", "i7", "1998-04-09T11:00:00+00:00", 3],
           ["u2", "i9", "1998-04-09T12:00:00+00:00", 4]]
    with open(root / f"incoming-{RUN_DATE}.csv", "w", newline="") as f:
        csv.writer(f).writerows([["user_id", "item_id", "timestamp", "rating"], *new, *rows[:2]])
    return len(rows), len(new)


@pytest.fixture(scope="module")
def tiny_trained(tmp_path_factory):
    """A tiny warehouse with everything the nightly DAG needs, built by the real jobs: ingest, SASRec,
    collaborative index (raw keywords) and a 2-step recommender fine-tuning."""
    root = tmp_path_factory.mktemp("nightly")
    n_base, n_new = _write_tiny_inputs(root)
    wh = ["--dataset", DATASET, "--warehouse", str(root / "warehouse")]
    run_job("ingest", wh + ["--items", str(root / "items.csv"), "--interactions", str(root / "interactions.csv"),
                            "--k-core", "0", "--spark-master", "local[1]"])
    run_job("train-baseline", wh + ["--model", "sasrec", "--protocol", "paper", "--run-id", "sasrec-t", "--epochs",
                                    "1", "--dim", "16", "--layers", "1", "--no-progress"])
    run_job("build-collab", wh + ["--sasrec-run", "sasrec-t", "--summarizer-version", "raw"])
    run_job("train-recommender", wh + ["--keywords", "raw", "--generator-run", "sasrec-t", "--protocol", "paper",
                           "--run-id", "mmsrarec-t", "--steps", "2", "--no-progress"])
    return {"root": root, "warehouse": str(root / "warehouse"), "n_base": n_base, "n_new": n_new}


def _dag_test(home, run_date: str, conf: dict, *, extra_env: dict | None = None) -> dict:
    """``dag.test()`` of mmsrarec_nightly in a fresh process with its own AIRFLOW_HOME (SQLite)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    dags = Path(__file__).resolve().parent.parent / "dags"
    env = {k: v for k, v in os.environ.items() if k != ENV_FAIL_ONCE}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "MMSRAREC_RETRY_DELAY_S": "1", **(extra_env or {})})
    if not (Path(home) / "airflow.db").exists():
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True,
                       capture_output=True, timeout=300)
    out = subprocess.run([sys.executable, "-c", DAG_TEST_SCRIPT, str(dags), run_date, json.dumps(conf)],
                         env=env, capture_output=True, text=True, timeout=900)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("DAG_TEST_RESULT ")]
    assert out.returncode == 0 and lines, (out.stdout + out.stderr)[-4000:]
    return json.loads(lines[-1][len("DAG_TEST_RESULT "):])


def _read(warehouse_uri: str, table: str):
    from mmsrarec_lib.storage import Warehouse

    return Warehouse.from_uri(warehouse_uri).read_table(DATASET, table)


def _snapshot(warehouse: str, run_date: str):
    """Interactions row count, the date's recommendation rows, and the date's evaluation metrics."""
    import datetime as dt

    import pyarrow.compute as pc

    inter = _read(warehouse, "interactions")
    recs = _read(warehouse, "recommendations")
    day = recs.filter(pc.equal(recs["run_date"], dt.date.fromisoformat(run_date)))
    evals = _read(warehouse, "evaluation_runs")
    evals = evals.filter(pc.equal(evals["run_id"], f"eval-nightly-{run_date}"))
    rec_rows = sorted(zip(*(day[c].to_pylist() for c in ("user_id", "rank", "item_id", "score"))))
    return inter.num_rows, rec_rows, sorted(zip(evals["metric"].to_pylist(), evals["k"].to_pylist()))


@pytest.mark.slow
def test_nightly_dag_test_retry_and_rerun_of_a_date_leave_no_duplicates(tiny_trained, tmp_path):
    conf = {
        "dataset": DATASET,
        "warehouse": tiny_trained["warehouse"],
        "run_date": RUN_DATE,  # the partition; the run's logical date is now
        "shards": 2,
        "incoming_interactions": "",  # no feed: nothing new (the append path is tested below)
        "users": "all",
        "top_k": 5,
        "recommend_args": "--top-m 8 --batch-size 64 --limit-users 4 --no-progress",
        "evaluate_args": "--no-progress",
    }
    flag = tmp_path / "flags" / "recommend"
    # first run, 2 shards: the first shard to run fails once AFTER staging its rows, and is retried by Airflow
    first = _dag_test(tmp_path / "home", "", conf, extra_env={ENV_FAIL_ONCE: f"recommend:after:{flag}"})
    assert first["state"] == "success", first
    assert {t: s for t, (s, _) in first["tis"].items()} == dict.fromkeys(
        ["append_interactions", "refresh_collab", "index_content", "plan_shards", "recommend[0]", "recommend[1]",
         "publish_recommendations", "evaluate", "publish"], "success"
    ), "every task ran, the recommend task once per shard"
    assert sorted(first["tis"][f"recommend[{i}]"][1] for i in (0, 1)) == [1, 2] and flag.exists(), \
        "one shard failed once and was retried"
    assert first["tis"]["evaluate"][1] == 1

    n_inter, recs, evals = _snapshot(tiny_trained["warehouse"], RUN_DATE)
    assert n_inter == tiny_trained["n_base"]
    assert len(recs) == 4 * 5, "one top-5 for each of the 4 users, written once despite the retry"
    assert len({(u, r) for u, r, _, _ in recs}) == len(recs)
    assert sorted({r for _, r, _, _ in recs}) == [1, 2, 3, 4, 5]
    assert evals == [("auc", None), ("hr", 5), ("ndcg", 5)], "one evaluation run per date, no duplicate metrics"

    # the same date again with ONE shard: the same users, items and ranks (scores equal up to float noise)
    second = _dag_test(tmp_path / "home", "", {**conf, "shards": 1})
    assert second["state"] == "success", second
    assert all(try_number == 1 for _, try_number in second["tis"].values())
    n2, recs2, evals2 = _snapshot(tiny_trained["warehouse"], RUN_DATE)
    assert (n2, evals2) == (n_inter, evals)
    assert [r[:3] for r in recs2] == [r[:3] for r in recs]
    assert [r[3] for r in recs2] == pytest.approx([r[3] for r in recs], abs=1e-5)


@pytest.mark.slow
def test_a_retried_append_adds_the_new_interactions_once(tiny_trained, tmp_path, monkeypatch):
    """What ``append_interactions`` runs: the append commits, the task fails, the retry appends nothing again."""
    feed = str(tiny_trained["root"] / f"incoming-{RUN_DATE}.csv")
    argv = ["--dataset", DATASET, "--warehouse", tiny_trained["warehouse"], "--mode", "append",
            "--interactions", feed, "--items", str(tiny_trained["root"] / "items.csv"), "--k-core", "0",
            "--spark-master", "local[1]"]
    before = _read(tiny_trained["warehouse"], "interactions").num_rows
    monkeypatch.setenv(ENV_FAIL_ONCE, f"ingest:after:{tmp_path / 'flag'}")
    with pytest.raises(JobFailed, match="injected one-time failure after"):
        run_job("ingest", argv)
    assert _read(tiny_trained["warehouse"], "interactions").num_rows == before + tiny_trained["n_new"]
    run_job("ingest", argv)  # Airflow's retry
    inter = _read(tiny_trained["warehouse"], "interactions")
    assert inter.num_rows == before + tiny_trained["n_new"], "re-delivered and retried rows are not duplicated"
    keys = list(zip(inter["user_id"].to_pylist(), inter["item_id"].to_pylist(), inter["timestamp"].to_pylist()))
    assert len(set(keys)) == len(keys)


# --------------------------------------------------------------------------- what the demo prints
def test_demo_prints_the_latest_evaluation_and_three_users_top5(warehouse, capsys):
    import csv
    import datetime as dt
    import io
    import os
    from pathlib import Path

    import pyarrow as pa

    from mmsrarec_lib import schemas
    from mmsrarec_lib.testing.airflow_demo import DemoConfig, run_query

    def ts(minute: int) -> dt.datetime:
        return dt.datetime(2026, 1, 1, 0, minute, tzinfo=dt.UTC)

    def ev(run_id, model, metric, k, value, minute):
        return {"run_id": run_id, "dataset": "d", "model": model, "model_version": model + "-1", "protocol": "paper",
                "metric": metric, "k": k, "value": value, "n_users": 94, "seed": 0, "config_json": "{}",
                "code_version": "x", "created_at": ts(minute)}

    evals = [ev("e-old", "sasrec", "hr", 5, 0.1, 1), ev("e-old", "sasrec", "ndcg", 5, 0.05, 1),
             ev("e-new", "sasrec", "hr", 5, 0.25, 2), ev("e-new", "sasrec", "ndcg", 5, 0.125, 2),
             ev("e-mm", "mmsrarec", "hr", 5, 0.5, 3), ev("e-mm", "mmsrarec", "ndcg", 5, 0.3333, 3)]
    warehouse.write_table("d", "evaluation_runs", pa.Table.from_pylist(evals, schema=schemas.EVALUATION_RUNS))
    day, other = dt.date(1998, 4, 23), dt.date(1998, 4, 22)
    def explanation(user: str) -> dict:  # u3 has the fewest explanation terms, so it is the one left out
        extra = [] if user == "u3" else ["extra"]
        return {"history_keywords": ["space", "war", "robots", "drama", *extra], "neighbor_keywords": ["love"],
                "neighbor_ids": ["u9"]}

    recs = [{"run_date": d, "user_id": u, "rank": r, "item_id": f"i{r}", "score": 1.0 / r, "model_version": "m",
             "explanation": explanation(u), "created_at": ts(0)}
            for d, users in ((day, ("u1", "u2", "u3", "u4")), (other, ("u0",))) for u in users for r in range(1, 7)]
    warehouse.write_table("d", "recommendations", pa.Table.from_pylist(recs, schema=schemas.RECOMMENDATIONS))
    items = pa.Table.from_pylist([{"item_id": f"i{r}", "title": f"Movie {r}"} for r in range(1, 7)])
    warehouse.write_table("d", "items", items)

    cfg = DemoConfig(dataset="d", warehouse=warehouse.root, airflow_home=Path("unused"), run_date="1998-04-23",
                     skip_item_tables=True, users_shown=3, port=8080)
    run_query(cfg, "demo_latest_evaluation.sql", env=dict(os.environ), fmt="csv")
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["model"], r["model_version"], r["metrics_x100"]) for r in rows] == [
        ("mmsrarec", "mmsrarec-1", "HR@5 50.00  NDCG@5 33.33"), ("sasrec", "sasrec-1", "HR@5 25.00  NDCG@5 12.50")
    ], "only each model's latest run, x100"

    run_query(cfg, "demo_explained_top5.sql", env=dict(os.environ), fmt="csv", run_date="1998-04-23", users=3)
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["user_id"], r["rank"]) for r in rows] == [(u, str(k)) for u in ("u1", "u2", "u4") for k in range(1, 6)]
    assert rows[0]["title"] == "Movie 1"
    assert rows[0]["history_keywords"] == "space, war, robots, drama", "the first four keywords"
    assert (rows[0]["neighbor_keywords"], rows[0]["neighbors"]) == ("love", "u9")
