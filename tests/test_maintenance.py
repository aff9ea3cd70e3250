"""Delta upkeep (mmsrarec maintain): compaction and z-order cut the active files without changing any row, vacuum
keeps every version inside the retention window readable (and only removes older ones), lineage on every commit."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mmsrarec_lib.maintenance import MaintenanceConfig, file_stats, maintain
from mmsrarec_lib.testing.delta_clock import simulate_nights

REPO = Path(__file__).resolve().parent.parent
# vacuum compares with the real clock: the simulated nights end an hour before it (no boundary at exactly 7 days)
NOW = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)


@pytest.fixture()
def nights(warehouse):
    when = simulate_nights(warehouse, "sim", nights=10, users=12, items=40, top_k=3, new_interactions=5, now=NOW)
    return warehouse, when


def _rows(warehouse, table, version=None):
    t = warehouse.read_table("sim", table, version=version)
    return sorted(map(str, t.to_pylist()))


def test_compaction_cuts_files_keeps_rows_and_vacuum_keeps_the_retention_window(nights):
    warehouse, when = nights
    assert file_stats(warehouse, "sim", "interactions").active_files == 10
    assert file_stats(warehouse, "sim", "user_sequences").storage_files == 10  # 9 removed files kept for travel
    before = {t: _rows(warehouse, t) for t in when}
    # one partition split over two files: z-order rewrites exactly that one
    last_day = (NOW - dt.timedelta(days=1)).date()
    recs = warehouse.read_table("sim", "recommendations")
    import pyarrow.compute as pc

    warehouse.write_table("sim", "recommendations", recs.filter(pc.equal(recs["run_date"], last_day)).slice(0, 0),
                          mode="append")
    report = maintain(warehouse, config=MaintenanceConfig(dataset="sim"), today=NOW.date())
    by_table = {r["table"]: r for r in report["tables"]}
    assert by_table["interactions"]["before"]["active_files"] == 10
    assert by_table["interactions"]["after"]["active_files"] == 1
    assert by_table["recommendations"]["after"]["active_files"] == 10  # one file per run_date partition
    assert {t: _rows(warehouse, t) for t in when} == before, "upkeep never changes a row"
    # vacuum: user_sequences version v (night v, NOW-(10-v) days) lost its file when v+1 was committed; files
    # removed more than 7 days ago are deleted: v = 0, 1, 2 (removed 9, 8, 7 days + 1 h ago), all committed before
    # the window. v >= 3 (committed within the last 7 days) stay readable.
    readable = {}
    for version, _moment in when["user_sequences"].items():
        try:
            warehouse.read_table("sim", "user_sequences", version=version)
            readable[version] = True
        except Exception:  # noqa: BLE001
            readable[version] = False
    inside = [v for v, m in when["user_sequences"].items() if m >= NOW - dt.timedelta(days=7)]
    assert inside and all(readable[v] for v in inside), readable
    assert [v for v, ok in readable.items() if not ok] == [0, 1, 2], readable
    assert inside == list(range(3, 10)) and by_table["user_sequences"]["vacuumed_files"] == 3


def test_a_retention_shorter_than_promised_needs_a_flag():
    with pytest.raises(ValueError, match="shorter than the 7 days"):
        MaintenanceConfig(dataset="d", retention_days=1)
    assert MaintenanceConfig(dataset="d", retention_days=1, allow_short_retention=True).retention_hours == 24


@pytest.mark.slow
def test_maintain_cli_reports_files_and_commits_with_lineage(nights):
    warehouse, _ = nights
    out = subprocess.run([sys.executable, "-m", "jobs.cli", "maintain", "--dataset", "sim", "--warehouse",
                          warehouse.root, "--table", "interactions"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "interactions" in out.stdout and "active files    10 -> 1" in out.stdout
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["active_files"] == {"before": 10, "after": 1}
    log = Path(warehouse.table_uri("sim", "interactions")) / "_delta_log"
    last = sorted(log.glob("*.json"))[-1]
    info = next(json.loads(x)["commitInfo"] for x in last.read_text().splitlines() if "commitInfo" in x)
    assert info["operation"] == "OPTIMIZE" and info["mmsrarec"]["job"] == "maintain"
