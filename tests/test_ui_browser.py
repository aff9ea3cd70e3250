"""The operator's view in a real browser: `make airflow` (the local Airflow UI), headless Chromium (Debian's
`chromium`) driven by Playwright, logs in, finds the project's DAGs with their tags and docs, triggers the nightly
DAG from the trigger form with a `run_date`, and sees the run succeed with a sensible duration.

Screenshots of the DAG list and the run's graph are written to docs/ (airflow_ui_dags.png,
airflow_ui_nightly_graph.png). Needs `chromium` on PATH (.ci/run installs it); skipped without it."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_airflow_nightly import DATASET, RUN_DATE, tiny_trained  # noqa: F401 - the fixture

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
DAG_IDS = ("mmsrarec_backfill_keywords", "mmsrarec_item_tables", "mmsrarec_maintenance", "mmsrarec_nightly",
           "mmsrarec_train")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
RUN_TIMEOUT_S = 420


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _demo(*args: str, env: dict) -> None:
    subprocess.run([sys.executable, "-m", "mmsrarec_lib.testing.airflow_demo", *args], cwd=REPO, env=env, check=True,
                   capture_output=True, timeout=120)


def _wait(predicate, *, timeout: float, what: str, every: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _get(url: str, token: str | None = None) -> dict | None:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


@pytest.fixture()
def airflow_ui(tiny_trained, tmp_path):  # noqa: F811 - the imported fixture
    """`make airflow` (mmsrarec_lib/testing/airflow_demo.py --standalone) on a free port, over the tiny trained
    warehouse."""
    port = _free_port()
    home = tmp_path / "airflow_home"
    env = {**os.environ, "MMSRAREC_NIGHTLY_SCHEDULE": "", "MMSRAREC_RETRY_DELAY_S": "5", "PYTHONPATH": str(REPO)}
    env.pop("AIRFLOW_HOME", None)
    args = ("--airflow-home", str(home), "--warehouse", tiny_trained["warehouse"], "--dataset", DATASET)
    _demo("--standalone", "--port", str(port), *args, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait(lambda: _get(f"{base}/api/v2/monitor/health"), timeout=180, what="the Airflow API server")
        pw_file = home / "simple_auth_manager_passwords.json.generated"
        password = _wait(lambda: pw_file.exists() and json.loads(pw_file.read_text()).get("admin"), timeout=60,
                         what=str(pw_file))
        yield {"base": base, "password": password, "warehouse": tiny_trained["warehouse"]}
    finally:
        _demo("--stop", *args, env=env)


def _token(base: str, password: str) -> str:
    req = urllib.request.Request(f"{base}/auth/token", data=json.dumps({"username": "admin", "password": password})
                                 .encode(), headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["access_token"]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; .ci/run does)")
def test_operator_triggers_the_nightly_dag_from_the_ui_and_sees_it_succeed(airflow_ui):
    from playwright.sync_api import sync_playwright

    base, started = airflow_ui["base"], time.monotonic()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(60_000)
        # log in with the simple auth manager's generated admin password
        page.goto(f"{base}/")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", airflow_ui["password"])
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/auth/login" not in url)

        # the DAG list: every project DAG, with its tags (the dag-processor may still be parsing: reload)
        def listed() -> bool:
            page.goto(f"{base}/dags")
            page.get_by_text("mmsrarec_train").first.wait_for(timeout=15_000)
            return all(page.get_by_text(d, exact=True).count() for d in DAG_IDS)

        _wait(lambda: _try(listed), timeout=120, what="the five DAGs in the list", every=1)
        assert page.get_by_text("nightly", exact=True).count() and page.get_by_text("maintenance", exact=True).count()
        page.screenshot(path=str(DOCS / "airflow_ui_dags.png"))

        # the nightly DAG's page and its docs (doc_md)
        page.goto(f"{base}/dags/mmsrarec_nightly")
        page.get_by_test_id("markdown-button").click()
        page.get_by_text("new interactions in, recommendations for the day out").first.wait_for()
        assert page.get_by_text("quality gate").count()
        page.keyboard.press("Escape")

        # trigger with a run_date (the run's logical date stays "now"); small sizes for a 2-core machine
        page.get_by_test_id("trigger-dag-button").click()
        page.fill("#element_run_date", RUN_DATE)
        page.fill("#element_recommend_args", "--top-m 12 --batch-size 64 --limit-users 4 --no-progress")
        page.fill("#element_evaluate_args", "--no-progress")
        page.get_by_test_id("trigger-dag-submit").click()

        token = _token(base, airflow_ui["password"])
        runs_url = f"{base}/api/v2/dags/mmsrarec_nightly/dagRuns?order_by=-run_after"
        run = _wait(lambda: ((_get(runs_url, token) or {}).get("dag_runs") or [None])[0], timeout=60,
                    what="the triggered run")
        assert run["run_type"] == "manual" and run["conf"]["run_date"] == RUN_DATE
        run_id = run["dag_run_id"]
        run_url = f"{base}/api/v2/dags/mmsrarec_nightly/dagRuns/{run_id}"
        final = _wait(lambda: (r := _get(run_url, token)) and r["state"] in ("success", "failed") and r,
                      timeout=RUN_TIMEOUT_S, what=f"run {run_id} to finish", every=5)
        assert final["state"] == "success", final

        # what the operator sees: the run's page says success; the graph view shows every task
        page.goto(f"{base}/dags/mmsrarec_nightly/runs/{run_id}")
        page.get_by_text("success", exact=False).first.wait_for()
        page.get_by_role("button", name="Show Graph (Press g)").click()
        page.get_by_text("publish_recommendations").first.wait_for()
        time.sleep(2)  # let the graph layout settle before the screenshot
        page.screenshot(path=str(DOCS / "airflow_ui_nightly_graph.png"))
        browser.close()

    # the run's timing makes sense: logical date = when it was triggered, a duration of minutes, not 10448 days
    start = dt.datetime.fromisoformat(final["start_date"])
    end = dt.datetime.fromisoformat(final["end_date"])
    logical = dt.datetime.fromisoformat(final["logical_date"])
    assert dt.timedelta(0) < end - start < dt.timedelta(seconds=RUN_TIMEOUT_S)
    assert abs(start - logical) < dt.timedelta(minutes=10)
    from mmsrarec_lib.storage import Warehouse

    recs = Warehouse.from_uri(airflow_ui["warehouse"]).read_table(DATASET, "recommendations").to_pylist()
    assert {r["run_date"].isoformat() for r in recs} == {RUN_DATE} and len(recs) == 4 * 10
    print(f"browser test: {time.monotonic() - started:.0f} s in the browser, run took {(end - start).seconds} s")


def _try(fn) -> bool:
    try:
        return bool(fn())
    except Exception:  # noqa: BLE001 - a page still loading; the caller retries until its timeout
        return False
