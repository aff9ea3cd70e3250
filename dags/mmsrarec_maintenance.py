"""# mmsrarec_maintenance: weekly Delta upkeep of the warehouse

`mmsrarec maintain` on every table of the dataset (`@weekly`, catchup off, one run at a time):

1. **compact** small files with delta-rs `optimize` (nightly appends, 128-item MERGE chunks and daily partitions
   leave many), per partition;
2. **z-order** `recommendations` by `user_id` where a partition is split over several files;
3. **vacuum** data files removed more than `retention_days` ago (default 7, the time travel README "Warehouse"
   promises: every version committed within the window stays queryable with `mmsrarec sql --as-of-version`);
4. **prune** staged recommendation shards older than the retention.

Params: `retention_days`, `tables` (only these tables; empty = all), `vacuum` (false = compact only, delete
nothing) and the escape hatch `extra_args` (`{"maintain": "--target-size-mb 64"}`).

The task log lists, per table, active files and files on storage before -> after; the JSON summary is the task's
return value (XCom). Each optimize/vacuum is a Delta commit with lineage, visible in `table_history`.
"""

from __future__ import annotations

import _mmsrarec_common as common
from airflow.sdk import DAG, Param, task

with DAG(
    dag_id="mmsrarec_maintenance",
    doc_md=__doc__,
    schedule="@weekly",
    start_date=common.START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=[*common.TAGS, "maintenance", "delta"],
    default_args=common.default_args(),
    params={
        **common.warehouse_params(),
        "retention_days": Param(7, type="number", minimum=7,
                                description="vacuum keeps every version newer than this many days (time travel)"),
        "tables": Param([], type="array", items={"type": "string", "minLength": 1},
                        description="only these tables; empty = every table of the dataset"),
        "vacuum": Param(True, type="boolean", description="vacuum old files (false: compact only, delete nothing)"),
        "extra_args": common.extra_args_param('{"maintain": "--target-size-mb 64"}'),
    },
) as dag:

    @task
    def maintain(params=None) -> dict | None:
        argv = common.wh_args(params) + ["--retention-days", str(params["retention_days"])]
        argv += common.flags(params, {"tables": "--table", "vacuum": "--no-vacuum"})
        return common.run("maintain", argv + common.extra(params, "maintain"))

    maintain()
