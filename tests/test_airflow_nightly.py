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
