"""# mmsrarec_nightly: new interactions in, recommendations for the day out

For each logical date `ds` (`@daily`, catchup off, one run at a time):

1. `append_interactions`: if the incoming file `incoming_interactions` (`{ds}` is replaced by the date; empty or
   absent = nothing new) exists, `mmsrarec ingest --mode append` adds its rows (rows already in the table are
   dropped as duplicates, so a retry or a rerun adds nothing) and rebuilds the sequences/splits; new or changed
   items of the day (`incoming_items`, same rule) are upserted with them.
2. `refresh_collab`: updates the collaborative keywords of the users whose histories changed.
3. `recommend`: top-K recommendations for `ds` (`users=changed` by default: users with interactions newer than
   the previous date's watermark; or `all`) from the model run `model_run` (default: the latest trained one) into
   the `recommendations` partition `run_date = ds`, replacing that partition (a rerun of a date replaces it;
   other dates are untouched).
4. `evaluate`: the same model run's metrics into `evaluation_runs` under the run id `eval-nightly-<ds>`, so a
   rerun of the date replaces its rows.
5. `publish`: an Asset event for `mmsrarec.recommendations` whose extra holds the date, the partition's row count
   and the table's Delta version.

Past dates: `airflow backfill create --dag-id mmsrarec_nightly --from-date 2026-01-01 --to-date 2026-01-07`.
GPU-heavy tasks (`recommend`, `evaluate`) go to `$MMSRAREC_GPU_POOL` / `$MMSRAREC_GPU_QUEUE`.
"""

from __future__ import annotations

import os

import _mmsrarec_common as common
from airflow.sdk import DAG, Param, task

GPU = common.gpu_task_kwargs()

with DAG(
    dag_id="mmsrarec_nightly",
    doc_md=__doc__,
    schedule="@daily",
    start_date=common.START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=[*common.TAGS, "nightly", "recommend"],
    default_args=common.default_args(),
    params={
        **common.warehouse_params(),
        "incoming_interactions": Param(
            os.environ.get("MMSRAREC_INCOMING_INTERACTIONS", ""),
            type="string",
            description="new interactions of the day, e.g. /data/incoming/{ds}.csv; empty/absent = nothing new",
        ),
        "incoming_items": Param(
            os.environ.get("MMSRAREC_INCOMING_ITEMS", ""),
            type="string",
            description="new or changed items of the day (same {ds} rule); empty/absent = none",
        ),
        "model_run": Param("", type="string", description="recommender model run id; empty = the latest"),
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

        env = env_from_airflow_connections()
        path = incoming_path(params["incoming_interactions"], ds=ds)
        if path is None or not path_exists(path, env=env):
            print(f"no new interactions for {ds} ({path or 'no incoming feed configured'})")
            return None
        argv = common.wh_args(params) + ["--mode", "append", "--interactions", path]
        items = incoming_path(params["incoming_items"], ds=ds)
        if items and path_exists(items, env=env):
            argv += ["--items", items]
        common.run("ingest", argv + common.extra(params, "ingest_args"))
        return path

    @task(outlets=[common.table_asset("user_collab_keywords")])
    def refresh_collab(ds=None, params=None) -> None:
        argv = common.wh_args(params) + ["--run-date", ds]
        common.run("refresh-collab", argv + common.extra(params, "collab_args"))

    @task(**GPU)
    def recommend(ds=None, params=None) -> str:
        from mmsrarec_lib.orchestration import latest_model_run
        from mmsrarec_lib.storage import Warehouse

        model_run = params["model_run"] or latest_model_run(
            Warehouse.from_uri(params["warehouse"] or None), dataset=params["dataset"]
        )
        argv = common.wh_args(params) + ["--model-run", model_run, "--top-k", str(params["top_k"])]
        argv += ["--run-date", ds, "--users", params["users"]]
        common.run("recommend", argv + common.extra(params, "recommend_args"))
        return model_run

    @task(**GPU, outlets=[common.table_asset("evaluation_runs")])
    def evaluate(model_run: str, ds=None, params=None) -> None:
        argv = common.wh_args(params) + ["--model", model_run, "--protocol", params["protocol"]]
        argv += ["--run-id", f"eval-nightly-{ds}"]  # a rerun of the date replaces that evaluation's rows
        common.run("evaluate", argv + common.extra(params, "evaluate_args"))

    @task(outlets=[common.table_asset("recommendations")])
    def publish(ds=None, params=None, outlet_events=None) -> dict:
        return common.publish(params, ["recommendations"], outlet_events, run_date=ds)

    model_run = recommend()
    append_interactions() >> refresh_collab() >> model_run
    evaluate(model_run) >> publish()
