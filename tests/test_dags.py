"""The DAG files: they import with no errors, carry docs/tags/retries/params, and wire tasks as designed.

The DAG folder is parsed the way the dag processor and ``dag.test()`` parse it (a ``BundleDagBag``, which puts the
folder on ``sys.path`` for ``_mmsrarec_common``). Airflow runs with a temporary ``AIRFLOW_HOME`` when this module is
the first to import it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parent.parent / "dags"

EXPECTED_EDGES = {
    "mmsrarec_item_tables": {("ingest", "encode_images"), ("encode_images", "index_content"),
                             ("index_content", "publish_tables")},
    "mmsrarec_train": {
        ("train_baseline", "evaluate_baseline"),
        ("train_baseline", "build_collab"),
        ("train_baseline", "train_recommender"),
        ("evaluate_baseline", "report"),
        ("train_summarizer", "summarize"),
        ("summarize", "build_collab"),
        ("build_collab", "train_recommender"),
        ("train_recommender", "evaluate_recommender"),
        ("evaluate_recommender", "report"),
    },
    "mmsrarec_nightly": {
        ("append_interactions", "refresh_collab"),
        ("refresh_collab", "plan_shards"),
        ("append_interactions", "index_content"),
        ("index_content", "plan_shards"),
        ("plan_shards", "recommend"),
        ("plan_shards", "publish_recommendations"),
        ("recommend", "publish_recommendations"),
        ("publish_recommendations", "evaluate"),
        ("evaluate", "publish"),
    },
    "mmsrarec_backfill_keywords": {("backfill", "publish")},
    "mmsrarec_maintenance": set(),
}
SINGLE_TASK = {"mmsrarec_maintenance": {"maintain"}}
GPU_TASKS = {
    "mmsrarec_train": {"train_baseline", "train_summarizer", "summarize", "train_recommender", "evaluate_recommender"},
    "mmsrarec_nightly": {"recommend", "evaluate"},
    "mmsrarec_backfill_keywords": {"backfill"},
    "mmsrarec_item_tables": set(),
    "mmsrarec_maintenance": set(),
}


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory):
    if "airflow" not in sys.modules:  # airflow reads AIRFLOW_HOME once, at import
        os.environ["AIRFLOW_HOME"] = str(tmp_path_factory.mktemp("airflow_home"))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    return os.environ["AIRFLOW_HOME"]


def _parse_dags():
    from airflow.dag_processing.dagbag import BundleDagBag

    return BundleDagBag(dag_folder=DAGS_DIR, bundle_path=DAGS_DIR, bundle_name="dags-folder")


@pytest.fixture(scope="module")
def dagbag(airflow_home):
    return _parse_dags()


def _edges(dag) -> set[tuple[str, str]]:
    return {(t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids}


def test_every_dag_file_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) == set(EXPECTED_EDGES)
    dag_files = {p.name for p in DAGS_DIR.glob("mmsrarec_*.py")}
    assert dag_files == {f"{dag_id}.py" for dag_id in EXPECTED_EDGES}, "one DAG per file, named after its dag_id"


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_EDGES))
def test_dag_has_docs_tags_and_retries_with_backoff(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.doc_md and dag.doc_md.startswith(f"# {dag_id}:"), "the module docstring is the DAG's doc_md"
    assert "mmsrarec" in dag.tags and len(dag.tags) >= 2
    assert dag.max_active_runs == 1
    for task in dag.tasks:
        assert task.retries >= 2, task.task_id
        assert task.retry_exponential_backoff > 0, task.task_id
        assert task.execution_timeout is not None, task.task_id


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_EDGES))
def test_task_dependencies_are_exactly_as_designed(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    expected = EXPECTED_EDGES[dag_id]
    assert _edges(dag) == expected
    assert {t.task_id for t in dag.tasks} == ({task for edge in expected for task in edge} or SINGLE_TASK[dag_id])


def test_params_have_defaults(dagbag):
    for dag in dagbag.dags.values():
        params = dag.params.dump()
        assert params["dataset"] == "movielens-100k"
        assert params["warehouse"] == os.environ.get("MMSRAREC_WAREHOUSE", "")
    assert dagbag.dags["mmsrarec_item_tables"].params.dump()["source"] == "movielens-100k"
    nightly = dagbag.dags["mmsrarec_nightly"].params.dump()
    assert (nightly["top_k"], nightly["users"], nightly["incoming_interactions"]) == (10, "changed", "")
    assert (nightly["shards"], nightly["run_date"]) == (1, ""), "one shard and the logical date by default"
    assert dagbag.dags["mmsrarec_maintenance"].params.dump()["retention_days"] == 7
    backfill = dagbag.dags["mmsrarec_backfill_keywords"].params.dump()
    assert (backfill["summarizer_version"], backfill["limit"], backfill["policy_run"]) == ("v1", 0, "")
    assert backfill["item_ids"] == ""
    train = dagbag.dags["mmsrarec_train"].params.dump()
    assert (train["seed"], train["summarizer_version"], train["protocol"]) == (42, "v1", "paper")


# params that are free text on purpose: paths, ids, dates, and the documented escape hatches for rare flags
FREE_TEXT_PARAMS = {"warehouse", "run_date", "incoming_interactions", "incoming_items", "model_run", "items",
                    "interactions", "spark_master", "source", "policy_run", "item_ids", "recommend_args",
                    "evaluate_args", "keyword_encoder", "encoder", "image_encoder", "summarizer_version", "dataset"}


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_EDGES))
def test_params_are_typed_knobs_not_flag_strings(dagbag, dag_id):
    """Every param declares a JSON-schema type (or an enum); strings of flags are only the named escape hatches."""
    params = dagbag.dags[dag_id].params
    hatches = [k for k in params.keys() if k.endswith("_args")]
    assert len(hatches) <= (2 if dag_id == "mmsrarec_nightly" else 1), hatches
    for key in params.keys():
        schema = params.get_param(key).schema
        assert "type" in schema or "enum" in schema, (dag_id, key)
        types = schema.get("type", [])
        types = [types] if isinstance(types, str) else types
        if "string" in types and not schema.get("enum"):
            assert key in FREE_TEXT_PARAMS, f"{dag_id}.{key} is free text: make it a typed param"
        if key == "extra_args":
            assert types == ["object"] and "escape hatch" in params.get_param(key).description


def test_invalid_param_values_are_rejected(dagbag):
    from airflow.sdk.exceptions import ParamValidationError

    params = dagbag.dags["mmsrarec_nightly"].params
    assert params.get_param("users").resolve("all") == "all"
    with pytest.raises(ParamValidationError):
        params.get_param("users").resolve("everyone")
    with pytest.raises(ParamValidationError):
        params.get_param("top_k").resolve(0)
    with pytest.raises(ParamValidationError):
        params.get_param("shards").resolve(0)
    with pytest.raises(ParamValidationError):
        params.get_param("top_m").resolve(0)
    with pytest.raises(ParamValidationError):
        params.get_param("limit_users").resolve("50")
    assert params.get_param("top_m").resolve(None) is None, "empty = the job's default"
    with pytest.raises(ParamValidationError):
        dagbag.dags["mmsrarec_train"].params.get_param("train_steps").resolve(0)
    with pytest.raises(ParamValidationError):
        dagbag.dags["mmsrarec_train"].params.get_param("progress").resolve("no")
    with pytest.raises(ParamValidationError):
        params.get_param("run_date").resolve("23/04/1998")
    assert params.get_param("run_date").resolve("1998-04-23") == "1998-04-23"
    with pytest.raises(ParamValidationError):
        dagbag.dags["mmsrarec_maintenance"].params.get_param("retention_days").resolve(1)
    with pytest.raises(ParamValidationError):
        dagbag.dags["mmsrarec_item_tables"].params.get_param("mode").resolve("upsert")


def test_nightly_is_daily_without_catchup(dagbag):
    dag = dagbag.dags["mmsrarec_nightly"]
    assert dag.schedule == "@daily"
    assert dag.catchup is False
    for dag_id in ("mmsrarec_item_tables", "mmsrarec_train", "mmsrarec_backfill_keywords"):
        assert dagbag.dags[dag_id].schedule is None, f"{dag_id} is manual"
    maintenance = dagbag.dags["mmsrarec_maintenance"]
    assert (maintenance.schedule, maintenance.catchup) == ("@weekly", False)


def test_nightly_fans_out_shards_with_dynamic_task_mapping(dagbag):
    dag = dagbag.dags["mmsrarec_nightly"]
    recommend = dag.get_task("recommend")
    assert type(recommend).__name__.endswith("MappedOperator"), "recommend is expanded over plan_shards' list"
    assert recommend.upstream_task_ids == {"plan_shards"}
    assert dag.get_task("publish_recommendations").upstream_task_ids == {"plan_shards", "recommend"}


def test_run_date_param_decouples_the_partition_from_the_logical_date(airflow_home):
    sys.path.insert(0, str(DAGS_DIR))
    import _mmsrarec_common as common

    assert common.run_date({"run_date": ""}, "2026-11-30") == "2026-11-30"
    assert common.run_date({"run_date": " 1998-04-23 "}, "2026-11-30") == "1998-04-23"
    with pytest.raises(ValueError):
        common.run_date({"run_date": "1998-13-01"}, "2026-11-30")


def test_item_tables_publishes_an_asset_per_table(dagbag):
    publish = dagbag.dags["mmsrarec_item_tables"].get_task("publish_tables")
    names = {asset.name for asset in publish.outlets}
    assert names == {
        f"mmsrarec.{t}"
        for t in (
            "items",
            "items_quarantine",
            "interactions",
            "interactions_quarantine",
            "user_sequences",
            "split_loo",
            "eval_candidates",
            "ingest_runs",
            "item_image_features",
        )
    }
    nightly_publish = dagbag.dags["mmsrarec_nightly"].get_task("publish")
    assert [a.name for a in nightly_publish.outlets] == ["mmsrarec.recommendations"]
    assert [a.uri for a in nightly_publish.outlets] == ["mmsrarec://movielens-100k/recommendations"], \
        "the asset URI names the dataset"


def test_gpu_tasks_use_default_pool_and_queue_unless_configured(dagbag, monkeypatch):
    # default: the pool every Airflow has, the default queue (a missing `gpu` pool must not break dag.test())
    for dag_id, _gpu in GPU_TASKS.items():
        for task in dagbag.dags[dag_id].tasks:
            assert task.pool == "default_pool", (dag_id, task.task_id)
            assert task.queue == "default", (dag_id, task.task_id)
    monkeypatch.setenv("MMSRAREC_GPU_POOL", "gpu")
    monkeypatch.setenv("MMSRAREC_GPU_QUEUE", "gpu_workers")
    configured = _parse_dags()
    assert configured.import_errors == {}
    for dag_id, gpu in GPU_TASKS.items():
        for task in configured.dags[dag_id].tasks:
            want = ("gpu", "gpu_workers") if task.task_id in gpu else ("default_pool", "default")
            assert (task.pool, task.queue) == want, (dag_id, task.task_id)


def test_retry_settings_come_from_the_environment_but_never_below_two(airflow_home, monkeypatch):
    monkeypatch.setenv("MMSRAREC_RETRIES", "0")
    monkeypatch.setenv("MMSRAREC_RETRY_DELAY_S", "5")
    bag = _parse_dags()
    task = bag.dags["mmsrarec_nightly"].get_task("recommend")
    assert task.retries == 2
    assert task.retry_delay.total_seconds() == 5.0
    monkeypatch.setenv("MMSRAREC_RETRIES", "4")
    assert _parse_dags().dags["mmsrarec_train"].get_task("report").retries == 4


def test_dag_files_import_nothing_heavy_at_parse_time(airflow_home):
    """Parsing must stay fast: torch, pyspark, deltalake and transformers are imported inside tasks only."""
    import subprocess

    code = (
        "import sys, pathlib\n"
        "from airflow.dag_processing.dagbag import BundleDagBag\n"
        f"p = pathlib.Path({str(DAGS_DIR)!r})\n"
        "bag = BundleDagBag(dag_folder=p, bundle_path=p, bundle_name='dags-folder')\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "heavy = [m for m in ('torch', 'pyspark', 'deltalake', 'transformers', 'mmsrarec_lib.storage')"
        " if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=os.environ)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HEAVY []" in out.stdout


# --------------------------------------------------------------------------- what the tasks call
def test_aws_connection_maps_to_the_standard_variables():
    from mmsrarec_lib.orchestration import aws_env_from_connection

    env = aws_env_from_connection(
        login="AKIDEXAMPLE",
        password="secret-example",
        extra={"region_name": "eu-west-1", "endpoint_url": "http://127.0.0.1:9000", "aws_session_token": "tok"},
    )
    assert env == {
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret-example",
        "AWS_SESSION_TOKEN": "tok",
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ALLOW_HTTP": "true",
    }
    nested = aws_env_from_connection(
        login=None, password=None, extra={"service_config": {"s3": {"endpoint_url": "https://minio.example"}}}
    )
    assert nested == {"AWS_ENDPOINT_URL": "https://minio.example"}, "https endpoints do not allow plain http"
    assert aws_env_from_connection(login=None, password=None, extra=None) == {}


def test_spark_connection_gives_the_master():
    from mmsrarec_lib.orchestration import spark_master_from_connection

    assert spark_master_from_connection(host="spark://master", port=7077) == "spark://master:7077"
    assert spark_master_from_connection(host="local[2]", port=None) == "local[2]"
    assert spark_master_from_connection(host="yarn", port=None) == "yarn"
    assert spark_master_from_connection(host="", port=7077) is None


def test_connections_are_looked_up_through_airflow(airflow_home, monkeypatch):
    from mmsrarec_lib.orchestration import env_from_airflow_connections

    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        '{"conn_type": "aws", "login": "AKIDEXAMPLE", "password": "secret-example",'
        ' "extra": {"region_name": "us-east-1"}}',
    )
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", '{"conn_type": "spark", "host": "spark://m", "port": 7077}')
    assert env_from_airflow_connections() == {
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret-example",
        "AWS_REGION": "us-east-1",
        "SPARK_MASTER": "spark://m:7077",
    }
    # other ids by env; connections that do not exist add nothing
    monkeypatch.setenv("MMSRAREC_AWS_CONN_ID", "aws_missing")
    monkeypatch.setenv("MMSRAREC_SPARK_CONN_ID", "spark_missing")
    assert env_from_airflow_connections() == {}


def test_job_flags_from_params():
    from mmsrarec_lib.orchestration import extra_args, incoming_path, last_json, warehouse_args

    assert warehouse_args(dataset="ml-100k", warehouse=None) == ["--dataset", "ml-100k"]
    assert warehouse_args(dataset="d", warehouse="s3://b/w") == ["--dataset", "d", "--warehouse", "s3://b/w"]
    with pytest.raises(ValueError, match="dataset"):
        warehouse_args(dataset="", warehouse=None)
    assert extra_args('--epochs 2 --name "two words"') == ["--epochs", "2", "--name", "two words"]
    assert extra_args(["--steps", 3]) == ["--steps", "3"]
    assert extra_args("") == [] and extra_args(None) == []
    assert last_json(["progress 50%", '{"run_id": "r1", "rows": 3}', "done"]) == {"run_id": "r1", "rows": 3}
    assert last_json(["{not json}", "[1, 2]"]) is None
    assert incoming_path("/in/{ds}/new.csv", ds="2026-01-02") == "/in/2026-01-02/new.csv"
    assert incoming_path("s3://b/in/{ds_nodash}.parquet", ds="2026-01-02") == "s3://b/in/20260102.parquet"
    assert incoming_path("  ", ds="2026-01-02") is None and incoming_path(None, ds="2026-01-02") is None


def test_run_tags_are_stable_per_airflow_run_and_safe_as_ids():
    from mmsrarec_lib.orchestration import run_tag

    airflow_run = "manual__2026-11-25T21:33:55.160705+00:00"
    assert run_tag("sasrec", airflow_run) == "sasrec-manual__2026-11-25T21-33-55.160705-00-00"
    assert run_tag("sasrec", airflow_run) == run_tag("sasrec", airflow_run), "a retry gets the same id"
    assert run_tag("sasrec", "scheduled__1998-04-23T00:00:00+00:00") != run_tag("sasrec", airflow_run)
    assert run_tag("eval", "///") == "eval"


def test_tasks_turn_typed_params_into_flags_the_jobs_accept(dagbag, monkeypatch):
    """A task's argv from its params (empty knobs left out: the job's default applies); every argv parses with the
    real ``mmsrarec`` parser, so a param can never name a flag that does not exist."""
    from jobs.cli import build_parser

    def call(dag_id, task_id, conf, **kwargs):
        fn = dagbag.dags[dag_id].get_task(task_id).python_callable
        calls = []
        monkeypatch.setattr(fn.__globals__["common"], "run", lambda command, argv: calls.append((command, argv)))
        fn(params={**dagbag.dags[dag_id].params.dump(), "warehouse": "", **conf}, **kwargs)
        (command, argv), = calls
        build_parser().parse_args([command, *argv])
        return command, argv

    conf = {"train_steps": 20, "progress": False, "extra_args": {"train-recommender": "--lora-rank 16"}}
    assert call("mmsrarec_train", "train_recommender", conf, sasrec_run="sasrec-r", run_id="manual__1") == (
        "train-recommender", ["--dataset", "movielens-100k", "--keywords", "v1", "--generator-run", "sasrec-r",
                              "--protocol", "paper", "--seed", "42", "--run-id", "mmsrarec-manual__1", "--steps", "20",
                              "--no-progress", "--lora-rank", "16"])
    assert call("mmsrarec_train", "train_baseline", {"baseline_epochs": 3}, run_id="r")[1][-2:] == ["--epochs", "3"]
    assert call("mmsrarec_train", "train_summarizer", {"summarizer_steps": 5, "keyword_encoder": "hashing"})[1][-4:] \
        == ["--steps", "5", "--encoder", "hashing"]
    assert call("mmsrarec_train", "build_collab", {"collab_k": 5}, sasrec_run="s")[1][-2:] == ["--k", "5"]
    assert call("mmsrarec_train", "evaluate_recommender", {}, model_run="m")[1][-1] == "eval-m", "defaults: no flag"
    assert call("mmsrarec_item_tables", "ingest", {"k_core": 2})[1][-2:] == ["--k-core", "2"]
    assert call("mmsrarec_item_tables", "index_content", {}) == (
        "index-content", ["--dataset", "movielens-100k", "--image-encoder", "efficientnet-lite0"])
    assert call("mmsrarec_nightly", "index_content", {}) == ("index-content", ["--dataset", "movielens-100k"])
    assert call("mmsrarec_nightly", "evaluate", {"progress": False}, model_run="m", ds="2026-11-30")[1][-1] \
        == "--no-progress"
    assert call("mmsrarec_maintenance", "maintain", {"tables": ["items", "recommendations"], "vacuum": False})[1] == [
        "--dataset", "movielens-100k", "--retention-days", "7", "--table", "items", "--table", "recommendations",
        "--no-vacuum"]
    assert call("mmsrarec_backfill_keywords", "backfill", {"limit": 5, "encoder": "hashing"})[1][-4:] == [
        "--encoder", "hashing", "--limit", "5"]
