"""# mmsrarec_nightly: new interactions in, recommendations for the day out

For each run (`@daily`, catchup off, one run at a time) and its partition date `run_date` (the `run_date` param,
empty = the run's logical date `ds`; set it to process another day, e.g. the demo's 1998-04-23, while the run itself
is "now"):

1. `append_interactions`: if the incoming file `incoming_interactions` (`{ds}` is replaced by `run_date`; empty or
   absent = nothing new) exists, `mmsrarec ingest --mode append` adds its rows (rows already in the table are
   dropped as duplicates, so a retry or a rerun adds nothing) and rebuilds the sequences/splits; new or changed
   items of the day (`incoming_items`, same rule) are upserted with them.
2. `refresh_collab`: updates the collaborative keywords of the users whose histories changed.
3. `plan_shards`: resolves the model run (`model_run`, default the latest trained one) and plans `shards` slices.
4. `recommend` (dynamic task mapping, one task per shard `I/N`): `mmsrarec recommend --shard I/N` scores the users
   of the selection (`users=changed` by default: users with interactions newer than the previous date's watermark;
   or `all`) whose stable hash falls in slice I, and stages them under the warehouse. A retried shard overwrites its
   own staged files, so it never adds rows twice. Shards run in parallel, up to the pool's slots.
5. `publish_recommendations`: requires every shard, runs the quality gate (`sql/quality/`: K rows per user, ranks
   1..K, no duplicates, nothing already seen, finite scores, known items) and replaces the `recommendations`
   partition `run_date` in **one** Delta commit. A missing shard or a failed assertion fails this task (naming the
   assertion and its offending count) and leaves the previous partition in place.
6. `evaluate`: the same model run's metrics into `evaluation_runs` under the run id `eval-nightly-<run_date>`, so a
   rerun of the date replaces its rows.
7. `publish`: an Asset event for `mmsrarec.recommendations` (URI `mmsrarec://<dataset>/recommendations`) whose
   extra holds the dataset, date, the partition's row count, the table's Delta version and its commit lineage.

Schedule: `@daily`, or `$MMSRAREC_NIGHTLY_SCHEDULE` (empty = triggered runs only). Past dates: trigger with
`run_date`, or `airflow backfill create --dag-id mmsrarec_nightly --from-date 2026-01-01
--to-date 2026-01-07`. GPU-heavy tasks (`recommend`, `evaluate`) go to `$MMSRAREC_GPU_POOL` / `$MMSRAREC_GPU_QUEUE`.
"""

from __future__ import annotations

import os

import _mmsrarec_common as common
from airflow.sdk import DAG, Param, task

GPU = common.gpu_task_kwargs()

with DAG(
    dag_id="mmsrarec_nightly",
    doc_md=__doc__,
    # MMSRAREC_NIGHTLY_SCHEDULE empty = triggered runs only (a local UI whose scheduler should not add its own run)
    schedule=os.environ.get("MMSRAREC_NIGHTLY_SCHEDULE", "@daily") or None,
    start_date=common.START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=[*common.TAGS, "nightly", "recommend"],
    default_args=common.default_args(),
    params={
        **common.warehouse_params(),
        "run_date": Param("", type=common.OPTIONAL_STRING, pattern=r"^(\d{4}-\d{2}-\d{2})?$",
                          description="partition date YYYY-MM-DD to (re)compute; empty = the run's logical date"),
        "shards": Param(1, type="integer", minimum=1, maximum=256,
                        description="parallel scoring tasks (recommend --shard I/N), one publish commit"),
        "incoming_interactions": Param(
            os.environ.get("MMSRAREC_INCOMING_INTERACTIONS", ""),
            type=common.OPTIONAL_STRING,
            description="new interactions of the day, e.g. /data/incoming/{ds}.csv; empty/absent = nothing new",
        ),
        "incoming_items": Param(
            os.environ.get("MMSRAREC_INCOMING_ITEMS", ""),
            type=common.OPTIONAL_STRING,
            description="new or changed items of the day (same {ds} rule); empty/absent = none",
        ),
        "model_run": Param("", type=common.OPTIONAL_STRING, description="recommender model run id; empty = the latest"),
        "top_k": Param(10, type="integer", minimum=1, description="recommendations per user"),
        "users": Param("changed", enum=["changed", "all"], description="whom to recommend for"),
        "protocol": Param("paper", enum=["paper", "full"], description="evaluation protocol"),
        "ingest_args": common.args_param("mmsrarec ingest"),
        "collab_args": common.args_param("mmsrarec refresh-collab"),
        "recommend_args": common.args_param("mmsrarec recommend"),
        "evaluate_args": common.args_param("mmsrarec evaluate"),
    },
) as dag:

    @task(outlets=[common.table_asset("interactions")])
    def append_interactions(ds=None, params=None) -> str | None:
        from mmsrarec_lib.orchestration import env_from_airflow_connections, incoming_path, path_exists

        day = common.run_date(params, ds)
        env = env_from_airflow_connections()
        path = incoming_path(params["incoming_interactions"], ds=day)
        if path is None or not path_exists(path, env=env):
            print(f"no new interactions for {day} ({path or 'no incoming feed configured'})")
            return None
        argv = common.wh_args(params) + ["--mode", "append", "--interactions", path]
        items = incoming_path(params["incoming_items"], ds=day)
        if items and path_exists(items, env=env):
            argv += ["--items", items]
        common.run("ingest", argv + common.extra(params, "ingest_args"))
        return path

    @task(outlets=[common.table_asset("user_collab_keywords")])
    def refresh_collab(ds=None, params=None) -> None:
        argv = common.wh_args(params) + ["--run-date", common.run_date(params, ds)]
        common.run("refresh-collab", argv + common.extra(params, "collab_args"))

    @task
    def plan_shards(ds=None, params=None) -> list[dict]:
        from mmsrarec_lib.orchestration import latest_model_run
        from mmsrarec_lib.storage import Warehouse

        model_run = params["model_run"] or latest_model_run(
            Warehouse.from_uri(params["warehouse"] or None), dataset=params["dataset"]
        )
        n = int(params["shards"])
        print(f"run_date {common.run_date(params, ds)}: {n} shard(s) of model run {model_run}")
        return [{"shard": i, "shards": n, "model_run": model_run} for i in range(n)]

    @task(**GPU, map_index_template="shard {{ shard_label }}")
    def recommend(spec: dict, ds=None, params=None) -> dict | None:
        from airflow.sdk import get_current_context

        get_current_context()["shard_label"] = f"{spec['shard']}/{spec['shards']}"
        argv = common.wh_args(params) + ["--model-run", spec["model_run"], "--top-k", str(params["top_k"])]
        argv += ["--run-date", common.run_date(params, ds), "--users", params["users"]]
        argv += ["--shard", f"{spec['shard']}/{spec['shards']}"]
        return common.run("recommend", argv + common.extra(params, "recommend_args"))

    @task
    def publish_recommendations(specs: list[dict], ds=None, params=None) -> str:
        specs = list(specs)
        argv = common.wh_args(params) + ["--run-date", common.run_date(params, ds), "--shards", str(len(specs))]
        common.run("publish-recommendations", argv)
        return specs[0]["model_run"]

    @task(**GPU, outlets=[common.table_asset("evaluation_runs")])
    def evaluate(model_run: str, ds=None, params=None) -> None:
        argv = common.wh_args(params) + ["--model", model_run, "--protocol", params["protocol"]]
        argv += ["--run-id", f"eval-nightly-{common.run_date(params, ds)}"]  # a rerun of the date replaces its rows
        common.run("evaluate", argv + common.extra(params, "evaluate_args"))

    @task(outlets=[common.table_asset("recommendations")])
    def publish(ds=None, params=None, outlet_events=None) -> dict:
        return common.publish(params, ["recommendations"], outlet_events, run_date=common.run_date(params, ds))

    plan = plan_shards()
    scored = recommend.expand(spec=plan)
    published = publish_recommendations(plan)
    append_interactions() >> refresh_collab() >> plan
    scored >> published
    evaluate(published) >> publish()
