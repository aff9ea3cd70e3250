"""What an Airflow task calls: run one ``mmsrarec`` job, and map Airflow connections to the job's environment.

DAG tasks stay thin: each one builds the flags of one job and calls :func:`run_job`. The job runs in a child
process (``python -m jobs.cli COMMAND ...``) so that a Spark JVM, a model held in memory or a crash at interpreter
exit ends with the job and never accumulates in the Airflow worker. A non-zero exit raises :class:`JobFailed`,
which Airflow retries; every job commits each table in one Delta commit and overwrites its own rows/partition on a
rerun, so a retry never leaves duplicates.

Credentials come from Airflow connections (``aws_default``, ``spark_default``; ids overridable by env) or from the
standard environment variables, and are handed to the child through its environment only: they are never put on a
command line or written to a log (logs name the variables set, never their values).

Testing hook: ``MMSRAREC_FAIL_ONCE="<command>:<before|after>:<flag file>[,...]"`` makes the first call of that job fail
(before it runs, or after it has committed) and creates the flag file so the retry succeeds. Tests use it to show
that a retried task leaves no duplicates; it has no effect unless set.
"""

from __future__ import annotations

import collections
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_FAIL_ONCE = "MMSRAREC_FAIL_ONCE"
ENV_AWS_CONN_ID = "MMSRAREC_AWS_CONN_ID"
ENV_SPARK_CONN_ID = "MMSRAREC_SPARK_CONN_ID"
DEFAULT_AWS_CONN_ID = "aws_default"
DEFAULT_SPARK_CONN_ID = "spark_default"
_TAIL_LINES = 40


class JobFailed(RuntimeError):
    """A job exited non-zero (or a test asked it to fail once); Airflow retries the task."""

    def __init__(self, command: str, returncode: int, tail: str = "") -> None:
        super().__init__(f"mmsrarec {command} exited with code {returncode}" + (f":\n{tail}" if tail else ""))
        self.command = command
        self.returncode = returncode


# --------------------------------------------------------------------------- flags
def warehouse_args(*, dataset: str, warehouse: str | None) -> list[str]:
    """``--dataset D [--warehouse W]``: an empty warehouse leaves the job's default (``$MMSRAREC_WAREHOUSE``)."""
    if not dataset:
        raise ValueError("dataset must not be empty")
    return ["--dataset", dataset] + (["--warehouse", warehouse] if warehouse else [])


def extra_args(value: str | Sequence[str] | None) -> list[str]:
    """Extra flags from a DAG param: a shell-quoted string (``"--epochs 2 --lr 1e-3"``) or a list of strings."""
    if not value:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


# --------------------------------------------------------------------------- connections -> environment
def aws_env_from_connection(
    *, login: str | None, password: str | None, extra: Mapping[str, object] | None
) -> dict[str, str]:
    """Standard AWS variables from an Airflow ``aws`` connection (login = key id, password = secret).

    ``extra`` keys follow the Amazon provider: ``region_name``, ``endpoint_url`` (or ``service_config.s3.
    endpoint_url``), ``aws_session_token``. An ``http://`` endpoint (MinIO, moto) also sets ``AWS_ALLOW_HTTP``.
    """
    extra = dict(extra or {})
    env: dict[str, str] = {}
    if login:
        env["AWS_ACCESS_KEY_ID"] = login
    if password:
        env["AWS_SECRET_ACCESS_KEY"] = password
    if extra.get("aws_session_token"):
        env["AWS_SESSION_TOKEN"] = str(extra["aws_session_token"])
    if extra.get("region_name"):
        env["AWS_REGION"] = str(extra["region_name"])
    endpoint = extra.get("endpoint_url")
    service_config = extra.get("service_config")
    if not endpoint and isinstance(service_config, Mapping):
        s3_config = service_config.get("s3")
        if isinstance(s3_config, Mapping):
            endpoint = s3_config.get("endpoint_url")
    if endpoint:
        env["AWS_ENDPOINT_URL"] = str(endpoint)
        if str(endpoint).startswith("http://"):
            env["AWS_ALLOW_HTTP"] = "true"
    return env


def spark_master_from_connection(*, host: str | None, port: int | None) -> str | None:
    """The Spark master of a ``spark`` connection, as the Spark provider builds it: ``host[:port]``.

    ``host`` may be ``local[*]``, ``yarn``, ``spark://name`` or ``k8s://https://name``; an empty host gives None.
    """
    if not host:
        return None
    return f"{host}:{port}" if port else host


def env_from_airflow_connections(
    *, aws_conn_id: str | None = None, spark_conn_id: str | None = None
) -> dict[str, str]:
    """Job environment from the Airflow connections that exist; a missing connection adds nothing.

    Must run inside an Airflow task (connections are looked up through the task SDK, so ``AIRFLOW_CONN_*``
    variables, the metadata database and secrets backends all work).
    """
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    aws_conn_id = aws_conn_id or os.environ.get(ENV_AWS_CONN_ID, DEFAULT_AWS_CONN_ID)
    spark_conn_id = spark_conn_id or os.environ.get(ENV_SPARK_CONN_ID, DEFAULT_SPARK_CONN_ID)
    env: dict[str, str] = {}
    try:
        conn = BaseHook.get_connection(aws_conn_id)
        env.update(aws_env_from_connection(login=conn.login, password=conn.password, extra=conn.extra_dejson))
    except AirflowNotFoundException:
        log.debug("no Airflow connection %r: AWS settings come from the environment", aws_conn_id)
    try:
        conn = BaseHook.get_connection(spark_conn_id)
        master = spark_master_from_connection(host=conn.host, port=conn.port)
        if master:
            env["SPARK_MASTER"] = master
    except AirflowNotFoundException:
        log.debug("no Airflow connection %r: Spark master from $SPARK_MASTER or local[*]", spark_conn_id)
    return env


# --------------------------------------------------------------------------- running a job
def _maybe_fail_once(command: str, stage: str) -> None:
    """Honour ``MMSRAREC_FAIL_ONCE`` (tests only): fail the first time ``command`` reaches ``stage``.

    The variable holds one or more comma-separated ``command:stage:flag_file`` specs.
    """
    for spec in filter(None, os.environ.get(ENV_FAIL_ONCE, "").split(",")):
        want_command, _, rest = spec.strip().partition(":")
        want_stage, _, flag = rest.partition(":")
        if want_command != command or want_stage != stage or not flag:
            continue
        flag_path = Path(flag)
        if flag_path.exists():
            continue
        flag_path.parent.mkdir(parents=True, exist_ok=True)
        flag_path.write_text(f"{command}:{stage}\n")
        raise JobFailed(command, 1, f"injected one-time failure {stage} the job ({ENV_FAIL_ONCE})")


def job_command(command: str, argv: Sequence[str]) -> list[str]:
    """The child process's command line: this interpreter running the ``mmsrarec`` CLI."""
    return [sys.executable, "-m", "jobs.cli", command, *argv]


def run_job(
    command: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """Run ``mmsrarec COMMAND ARGV...`` in a child process; raise :class:`JobFailed` unless it exits 0.

    ``env`` adds variables (e.g. credentials from :func:`env_from_airflow_connections`) to this process's
    environment for the child only. Output is streamed line by line to this module's logger (so long jobs show
    progress in the Airflow task log); its last lines are put in the error, or returned on success (jobs end with a
    JSON summary line: see :func:`last_json`). Time limits are the task's
    ``execution_timeout``: when Airflow interrupts the task, the child is killed too.
    """
    from mmsrarec_lib.runtime_env import job_env

    # offline hubs, unbuffered output and sparse progress bars unless this environment says otherwise (runtime_env)
    child_env = job_env(env)
    pythonpath = child_env.get("PYTHONPATH", "")
    child_env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + pythonpath if pythonpath else "")
    cmd = job_command(command, argv)
    log.info("running: mmsrarec %s %s", command, shlex.join(argv))
    if env:
        log.info("job environment adds: %s", ", ".join(sorted(env)))  # names only, never values
    _maybe_fail_once(command, "before")
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    with subprocess.Popen(
        cmd,
        cwd=str(REPO_ROOT),
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                line = line.rstrip("\n")
                tail.append(line)
                log.info("[%s] %s", command, line)
            returncode = proc.wait()
        except BaseException:
            # the task timed out (Airflow's execution_timeout) or was killed: do not leave the job running
            proc.kill()
            proc.wait()
            raise
    if returncode != 0:
        raise JobFailed(command, returncode, "\n".join(tail))
    log.info("mmsrarec %s finished", command)
    _maybe_fail_once(command, "after")
    return list(tail)


def last_json(lines: Sequence[str]) -> dict | None:
    """The last line that is a JSON object (a job's summary, e.g. ``{"run_id": ...}``), else None."""
    import json

    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


# --------------------------------------------------------------------------- publishing
def table_summary(warehouse, *, dataset: str, table: str, run_date: str | None = None) -> dict[str, object]:
    """Dataset, URI, Delta version and row count of a table (``run_date``: rows of that partition only).

    What a publish task attaches to the table's Asset event, so consumers see which version was produced.
    Raises FileNotFoundError when the table does not exist.
    """
    import datetime as dt

    import pyarrow.dataset as pads

    delta = warehouse.delta_table(dataset, table)  # FileNotFoundError when missing
    data = warehouse.dataset(dataset, table)
    summary: dict[str, object] = {
        "dataset": dataset,
        "table": table,
        "uri": warehouse.table_uri(dataset, table),
        "version": delta.version(),
    }
    if run_date is None:
        summary["rows"] = data.count_rows()
    else:
        day = dt.date.fromisoformat(run_date)
        summary["run_date"] = run_date
        summary["rows"] = data.count_rows(filter=pads.field("run_date") == day)
    return summary


# --------------------------------------------------------------------------- nightly input
def incoming_path(template: str | None, *, ds: str) -> str | None:
    """The incoming-interactions file of a logical date: ``{ds}`` in ``template`` becomes ``YYYY-MM-DD``.

    An empty template means no incoming feed (None).
    """
    if not template or not template.strip():
        return None
    return template.strip().replace("{ds}", ds).replace("{ds_nodash}", ds.replace("-", ""))


def path_exists(path: str, *, env: Mapping[str, str] | None = None) -> bool:
    """Whether a local path or ``s3://`` object exists (S3 settings: ``env`` over the AWS environment)."""
    from mmsrarec_lib.storage import Warehouse, storage_options_from_env

    parent = path.rsplit("/", 1)[0] if "/" in path.rstrip("/") else "."
    if parent.startswith("s3://"):
        options = {**storage_options_from_env(parent), **{k: v for k, v in (env or {}).items() if k.startswith("AWS_")}}
        if "AWS_ENDPOINT_URL" in options and options["AWS_ENDPOINT_URL"].startswith("http://"):
            options.setdefault("AWS_ALLOW_HTTP", "true")
        warehouse = Warehouse.from_uri(parent, storage_options=options)
        return warehouse.exists(path)
    return Path(path).exists()


def run_tag(prefix: str, airflow_run_id: str) -> str:
    """A model/evaluation run id derived from the Airflow run: the same on every retry of that run, so a retried
    task replaces what its failed try wrote instead of adding a second copy. Only ``[A-Za-z0-9_.-]`` are kept.
    """
    import re

    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", airflow_run_id).strip("-")
    return f"{prefix}-{safe}" if safe else prefix


def latest_model_run(warehouse, *, dataset: str, variant: str = "mmsrarec") -> str:
    """The nightly DAG's model run: ``recommend``'s default (:func:`mmsrarec_lib.model_runs.latest_serving_run`;
    no torch)."""
    from mmsrarec_lib.model_runs import latest_serving_run

    return latest_serving_run(warehouse, dataset=dataset, variant=variant)
