"""# mmsrarec_backfill_keywords: (re)compute item keywords for one summarizer version

Runs `mmsrarec summarize --backfill` for `summarizer_version`: items whose keywords for that version are missing or
whose input (text/image hash) changed are summarized; items already done are skipped, so the backfill is resumable
(a failed or interrupted run picks up where it stopped when retried or re-triggered) and a repeat adds nothing.
`item_ids` (optional: a comma list, or `@FILE` with one id per line) restricts the backfill to those items, `limit`
to the first N of them by item_id; `policy_run` picks the trained summarizer (default: the latest), `encoder` the
text encoder of the rewards (empty = the job's default); `extra_args` is the escape hatch for other flags
(`{"summarize": "--chunk-size 64"}`). With the `extractive` backend the image keywords come from the pretrained
image model (`item_image_features`, backfilled first for new or changed images), so a changed poster gets new
features and new image keywords in the same run. Then `publish` emits an Asset event for
`mmsrarec.item_keywords` with the table's Delta version and row count.

Manual (no schedule); `max_active_runs=1` because runs write the same table. The summarizing task runs in the GPU
pool/queue (`$MMSRAREC_GPU_POOL`, `$MMSRAREC_GPU_QUEUE`).
"""

from __future__ import annotations

import _mmsrarec_common as common
from airflow.sdk import DAG, Param, task

with DAG(
    dag_id="mmsrarec_backfill_keywords",
    doc_md=__doc__,
    schedule=None,
    start_date=common.START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=[*common.TAGS, "keywords", "backfill", "gpu"],
    default_args=common.default_args(),
    params={
        **common.warehouse_params(),
        "summarizer_version": Param("v1", type="string", minLength=1, description="version of the keywords"),
        "summarizer_backend": Param("extractive", enum=["extractive", "mllm"],
                                    description="keyword summarizer (mllm: --base-model style HF model)"),
        "item_ids": Param("", type=common.OPTIONAL_STRING,
                          description="only these items: a comma list or @FILE (one id per line); empty = all"),
        "limit": Param(0, type="integer", minimum=0, description="only the first N items by item_id; 0 = all"),
        "policy_run": Param("", type=common.OPTIONAL_STRING, description="train-summarizer run; empty = the latest"),
        "encoder": common.optional_string("phi of R_info: minilm, hashing or a path"),
        "extra_args": common.extra_args_param('{"summarize": "--chunk-size 64"}'),
    },
) as dag:

    @task(**common.gpu_task_kwargs())
    def backfill(params=None) -> None:
        argv = common.wh_args(params) + ["--summarizer-version", params["summarizer_version"]]
        argv += ["--backend", params["summarizer_backend"], "--backfill"]
        argv += common.flags(params, {"item_ids": "--item-ids", "policy_run": "--policy-run", "encoder": "--encoder"})
        if params["limit"]:  # 0 = all
            argv += ["--limit", str(params["limit"])]
        common.run("summarize", argv + common.extra(params, "summarize"))

    @task(outlets=[common.table_asset("item_keywords")])
    def publish(params=None, outlet_events=None) -> dict:
        return common.publish(params, ["item_keywords"], outlet_events)

    backfill() >> publish()
