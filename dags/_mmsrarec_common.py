"""Shared defaults of the MMSRARec DAGs: retries, pools, params, Assets, and the one call every task makes.

Not a DAG file (listed in ``.airflowignore``); the DAG files import it. Nothing heavy is imported at parse time:
``mmsrarec_lib`` is imported inside the task callables.

Settings read from the environment of the Airflow scheduler/worker (all optional):
- ``MMSRAREC_DATASET`` (default ``movielens-100k``) and ``MMSRAREC_WAREHOUSE``: defaults of the
  ``dataset``/``warehouse`` params.
- ``MMSRAREC_RETRIES`` (at least 2), ``MMSRAREC_RETRY_DELAY_S`` (first retry delay, default 60; doubles each retry,
  at most 30 min), ``MMSRAREC_TASK_TIMEOUT_H`` (default 12).
- ``MMSRAREC_GPU_POOL`` (default ``default_pool``, so a machine without a ``gpu`` pool still runs) and
  ``MMSRAREC_GPU_QUEUE`` (the executor queue of GPU-heavy tasks; unset = the default queue).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Mapping
from typing import Any

import pendulum
from airflow.sdk import Asset, Param

# Airflow creates no task instances for a logical date before a DAG's start_date (the run then "succeeds" having
# done nothing), so it is early enough for a backfill of old dates. The nightly DAG takes the partition date as its
# `run_date` param (default: the logical date), so historical data (ML-100K ends 1998-04-22) is processed by a run
# whose logical date is now, not 1998 (a 1998 logical date showed as a 10448-day run in the UI). With catchup off
# only the latest interval is scheduled, so an early start_date schedules nothing extra.
START_DATE = pendulum.datetime(1997, 1, 1, tz="UTC")
TAGS = ["mmsrarec"]
DEFAULT_DATASET = os.environ.get("MMSRAREC_DATASET", "movielens-100k")
ASSET_GROUP = "mmsrarec"
# JSON-schema type of a string param that may stay empty: the UI's trigger form treats a plain "string" param as
# required and refuses to trigger while it is empty.
OPTIONAL_STRING = ["null", "string"]


def default_args() -> dict[str, Any]:
    """Task defaults: at least 2 retries with exponential backoff, a time limit, no dependency on past runs."""
    return {
        "owner": "mmsrarec",
        "depends_on_past": False,
        "retries": max(2, int(os.environ.get("MMSRAREC_RETRIES", "2"))),
        "retry_delay": dt.timedelta(seconds=float(os.environ.get("MMSRAREC_RETRY_DELAY_S", "60"))),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": dt.timedelta(minutes=30),
        "execution_timeout": dt.timedelta(hours=float(os.environ.get("MMSRAREC_TASK_TIMEOUT_H", "12"))),
    }


def gpu_task_kwargs() -> dict[str, str]:
    """``pool`` (and ``queue`` when configured) for GPU-heavy tasks."""
    kwargs = {"pool": os.environ.get("MMSRAREC_GPU_POOL") or "default_pool"}
    if os.environ.get("MMSRAREC_GPU_QUEUE"):
        kwargs["queue"] = os.environ["MMSRAREC_GPU_QUEUE"]
    return kwargs


def warehouse_params() -> dict[str, Param]:
    """``dataset`` and ``warehouse`` params shared by every DAG."""
    return {
        "dataset": Param(DEFAULT_DATASET, type="string", minLength=1, description="dataset (warehouse folder)"),
        "warehouse": Param(
            os.environ.get("MMSRAREC_WAREHOUSE", ""),
            type=OPTIONAL_STRING,
            description="warehouse root: local path or s3://bucket/prefix (empty = the jobs' default)",
        ),
    }


def optional_int(description: str, *, minimum: int = 1) -> Param:
    """An integer knob that may stay empty: empty = the job's own default (declared once, in its config)."""
    return Param(None, type=["null", "integer"], minimum=minimum,
                 description=f"{description}; empty = the job's default")


def optional_string(description: str) -> Param:
    """A string knob that may stay empty: empty = the job's own default."""
    return Param("", type=OPTIONAL_STRING, description=f"{description}; empty = the job's default")


def extra_args_param(example: str) -> Param:
    """The one escape hatch of a DAG: extra flags per command for settings that have no param of their own."""
    return Param({}, type="object", description=f"escape hatch: extra flags per command for settings without a "
                                                f"param, e.g. {example}; typed params above are preferred")


def args_param(description: str, default: str = "") -> Param:
    """A string param of extra flags for one job, e.g. ``"--top-m 20"``: an escape hatch for settings without a
    typed param (only where operators already rely on it)."""
    return Param(default, type=OPTIONAL_STRING, description=f"escape hatch: extra flags for {description}")


def flags(params: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    """Flags of typed params: ``{param: flag}``; an empty param (None or "") is left out, so the job's default
    applies; a boolean param adds its flag when true (``{"progress": "--no-progress"}`` is negated: added when
    false); a list repeats the flag per value."""
    argv: list[str] = []
    for param, flag in names.items():
        value = params.get(param)
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            if value != flag.startswith("--no-"):
                argv.append(flag)
        elif isinstance(value, (list, tuple)):
            for v in value:
                argv += [flag, str(v)]
        else:
            argv += [flag, str(value)]
    return argv


def table_asset(table: str, *, dataset: str = DEFAULT_DATASET) -> Asset:
    """The Asset of a warehouse table, its URI naming the dataset (``mmsrarec://<dataset>/<table>``); events carry
    the dataset, table, storage URI, Delta version, row count and the version's commit lineage as extras."""
    return Asset(name=f"mmsrarec.{table}", uri=f"mmsrarec://{dataset}/{table}", group=ASSET_GROUP)


def run_date(params: Mapping[str, Any], ds: str) -> str:
    """The partition date a nightly run works on: the ``run_date`` param, else the run's logical date ``ds``.

    The param lets an operator (re)compute any date, e.g. the demo's 1998 data, while the run's logical date stays
    the moment it was triggered, so the UI's run times and durations are real ones.
    """
    value = (params.get("run_date") or "").strip()
    if not value:
        return ds
    dt.date.fromisoformat(value)  # ValueError names a bad date before any job starts
    return value


def wh_args(params: Mapping[str, Any]) -> list[str]:
    from mmsrarec_lib.orchestration import warehouse_args

    return warehouse_args(dataset=params["dataset"], warehouse=params.get("warehouse") or None)


def extra(params: Mapping[str, Any], key: str) -> list[str]:
    """Escape-hatch flags: ``params[key]`` when it is a per-job string param (``recommend_args``), else the
    ``extra_args`` object's entry for the command ``key`` (``{"train-recommender": "--lora-rank 16"}``)."""
    from mmsrarec_lib.orchestration import extra_args

    if key in params and not isinstance(params[key], Mapping):
        return extra_args(params.get(key))
    return extra_args((params.get("extra_args") or {}).get(key))


def tag(prefix: str, airflow_run_id: str) -> str:
    """A run id for a model/evaluation that is stable across retries of one Airflow run."""
    from mmsrarec_lib.orchestration import run_tag

    return run_tag(prefix, airflow_run_id)


def run(command: str, argv: list[str]) -> dict | None:
    """Run one job with credentials/Spark master from the Airflow connections; raises on failure (→ retry).

    Returns the job's JSON summary line (its last JSON object printed), if any.
    """
    from mmsrarec_lib.orchestration import env_from_airflow_connections, last_json, run_job

    return last_json(run_job(command, argv, env=env_from_airflow_connections()))


def publish(
    params: Mapping[str, Any],
    tables: Iterable[str],
    outlet_events: Any,
    *,
    run_date: str | None = None,
    optional: Iterable[str] = (),
) -> dict[str, dict[str, Any]]:
    """Attach each table's Delta version and row count to its Asset event (``run_date``: rows of that date only).

    Raises FileNotFoundError when a table is missing, unless it is ``optional`` (e.g. a quarantine table that a
    clean input never creates): a publish after a successful job must find what the job wrote.
    """
    from mmsrarec_lib.orchestration import table_summary
    from mmsrarec_lib.sql.history import commit_lineage
    from mmsrarec_lib.storage import Warehouse

    warehouse = Warehouse.from_uri(params.get("warehouse") or None)
    summaries = {}
    optional = set(optional)
    for table in tables:
        if table in optional and not warehouse.has_table(params["dataset"], table):
            continue
        summary = table_summary(warehouse, dataset=params["dataset"], table=table, run_date=run_date)
        summary["commit"] = commit_lineage(warehouse, dataset=params["dataset"], table=table,
                                           version=int(summary["version"]))
        if outlet_events is not None:
            outlet_events[table_asset(table)].extra = summary
        summaries[table] = summary
    return summaries
