"""A dataset is consistent across its tables: readers resolve versions through dataset_runs, a failed run is rolled
back, a killed one is rolled back (abandoned) by the next writer, and a crash between any two commits is invisible."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest

from mmsrarec_lib import snapshots
from mmsrarec_lib.snapshots import DatasetRun, repair, resolve_versions, run_states
from mmsrarec_lib.sql.engine import SqlEngine
from mmsrarec_lib.storage import Warehouse

DS = "d"
TABLES = ("a", "b", "c")
ROOT = Path(__file__).resolve().parents[1]


def _gen(warehouse: Warehouse, gen: int, *, run_id: str, tables=TABLES) -> None:
    """A three-table run writing generation ``gen``: table t gets ``gen`` rows valued ``gen``."""
    with DatasetRun(warehouse, DS, run_id=run_id, job="test", tables=tables) as run:
        for t in tables:
            run.committed(t, warehouse.write_table(DS, t, pa.table({"g": [gen] * gen})))


def _state(warehouse: Warehouse) -> tuple[int, ...]:
    """What a reader sees: the generation of each table (through Warehouse.read_table's resolution)."""
    return tuple(max(warehouse.read_table(DS, t).column("g").to_pylist()) for t in TABLES)


def _sql_state(warehouse: Warehouse) -> tuple[int, ...]:
    with SqlEngine(warehouse=warehouse, dataset=DS) as engine:
        return tuple(engine.query(f"SELECT max(g) AS g FROM {t}").column("g")[0].as_py() for t in TABLES)


def test_complete_run_is_read_at_its_versions_and_later_direct_writes_are_seen(warehouse):
    _gen(warehouse, 1, run_id="r1")
    assert _state(warehouse) == (1, 1, 1) == _sql_state(warehouse)
    [state] = run_states(warehouse, DS)
    assert state["status"] == "complete" and dict(state["published_versions"]) == {"a": 0, "b": 0, "c": 0}
    assert dict(state["base_versions"]) == {"a": -1, "b": -1, "c": -1}
    warehouse.write_table(DS, "a", pa.table({"g": [7]}))  # a writer outside any run reads its own write
    assert warehouse.read_table(DS, "a").column("g").to_pylist() == [7]


def test_a_run_that_has_not_ended_is_invisible_to_other_readers_but_not_to_itself(warehouse):
    _gen(warehouse, 1, run_id="r1")
    run = DatasetRun(warehouse, DS, run_id="r2", job="test", tables=TABLES).__enter__()
    run.committed("a", warehouse.write_table(DS, "a", pa.table({"g": [2, 2]})))
    assert warehouse.read_table(DS, "a").column("g").to_pylist() == [2, 2]  # the writer sees its own commit
    snapshots._OWN_RUNS.discard("r2")  # now read as another process would
    assert _state(warehouse) == (1, 1, 1) == _sql_state(warehouse)
    assert resolve_versions(warehouse, DS, TABLES) == {"a": 0, "b": 0, "c": 0}
    with SqlEngine(warehouse=warehouse, dataset=DS) as engine:
        row = engine.query("SELECT version, latest_version FROM warehouse_tables WHERE table_name = 'a'").to_pylist()
    assert row == [{"version": 0, "latest_version": 1}]
    snapshots._OWN_RUNS.add("r2")
    for t in ("b", "c"):
        run.committed(t, warehouse.write_table(DS, t, pa.table({"g": [2, 2]})))
    run.__exit__(None, None, None)
    assert _state(warehouse) == (2, 2, 2) == _sql_state(warehouse)


def test_a_run_that_raises_is_rolled_back_and_recorded_failed(warehouse):
    _gen(warehouse, 1, run_id="r1")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with DatasetRun(warehouse, DS, run_id="r2", job="test", tables=TABLES) as run:
            run.committed("a", warehouse.write_table(DS, "a", pa.table({"g": [2, 2]})))
            run.committed("b", warehouse.write_table(DS, "b", pa.table({"g": [2, 2]})))
            raise RuntimeError("disk on fire\nsecond line")
    states = {s["run_id"]: s for s in run_states(warehouse, DS)}
    assert states["r2"]["status"] == "failed"
    assert states["r2"]["message"].startswith("RuntimeError: disk on fire; rolled back a v1->v0, b v1->v0")
    assert warehouse.table_version(DS, "a") == 2  # a restore is a new commit with the old content
    assert _state(warehouse) == (1, 1, 1)


def test_repair_marks_a_dead_run_abandoned_and_restores_its_tables(warehouse):
    _gen(warehouse, 1, run_id="r1")
    run = DatasetRun(warehouse, DS, run_id="dead", job="test", tables=(*TABLES, "new")).__enter__()
    run.committed("a", warehouse.write_table(DS, "a", pa.table({"g": [2, 2]})))
    run.committed("new", warehouse.write_table(DS, "new", pa.table({"g": [2]})))
    snapshots._OWN_RUNS.discard("dead")  # the process "died": nobody ends it
    assert repair(warehouse, DS, by="next") == ["dead"]
    dead = {s["run_id"]: s for s in run_states(warehouse, DS)}["dead"]
    assert dead["status"] == "abandoned" and "a v1->v0" in dead["message"] and "new (removed" in dead["message"]
    assert not warehouse.has_table(DS, "new")
    assert warehouse.read_table(DS, "a", version=warehouse.table_version(DS, "a")).column("g").to_pylist() == [1]
    assert repair(warehouse, DS, by="again") == []  # nothing left to repair


def test_legacy_dataset_without_manifest_reads_latest(warehouse):
    for t in TABLES:
        warehouse.write_table(DS, t, pa.table({"g": [1]}))
        warehouse.write_table(DS, t, pa.table({"g": [3]}))
    assert _state(warehouse) == (3, 3, 3) == _sql_state(warehouse)
    assert resolve_versions(warehouse, DS, TABLES) == {"a": 1, "b": 1, "c": 1}


_CRASHING_RUN = textwrap.dedent("""
    import sys
    import pyarrow as pa
    from mmsrarec_lib.snapshots import DatasetRun
    from mmsrarec_lib.storage import Warehouse
    wh = Warehouse.from_uri(sys.argv[1])
    with DatasetRun(wh, "d", run_id=sys.argv[2], job="test", tables=("a", "b", "c")) as run:
        for t in ("a", "b", "c"):
            run.committed(t, wh.write_table("d", t, pa.table({"g": [2] * 2})))
""")


@pytest.mark.slow
def test_kill_after_every_commit_readers_see_old_or_new_never_a_mix(tmp_path):
    """Commits of a run: running row (1), a (2), b (3), c (4), complete row (5). Killed after each one."""
    states = {}
    for n in range(1, 6):
        wh = Warehouse.from_uri(str(tmp_path / f"wh{n}"))
        _gen(wh, 1, run_id="r1")
        env = {**os.environ, snapshots.FAULT_ENV: str(n), "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, "-c", _CRASHING_RUN, wh.root, f"r2-{n}"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == snapshots.FAULT_EXIT_CODE, proc.stderr[-2000:]
        states[n] = (_state(wh), _sql_state(wh))
        expected = (2, 2, 2) if n == 5 else (1, 1, 1)
        assert states[n] == (expected, expected), f"killed after commit {n}: reader saw {states[n]}"
        if n < 5:  # the next writer repairs the dead run; readers still see generation 1
            assert repair(wh, DS, by="next") == [f"r2-{n}"]
            assert _state(wh) == (1, 1, 1)
    assert sorted({s[0] for s in states.values()}) == [(1, 1, 1), (2, 2, 2)]


def test_failed_run_on_s3_is_rolled_back_and_a_dead_one_repaired():
    from mmsrarec_lib.testing.s3 import moto_s3

    with moto_s3() as s3:
        wh = Warehouse.from_uri(s3.warehouse_uri, storage_options=s3.storage_options)
        _gen(wh, 1, run_id="r1")
        with pytest.raises(RuntimeError):
            with DatasetRun(wh, DS, run_id="r2", job="test", tables=TABLES) as run:
                run.committed("a", wh.write_table(DS, "a", pa.table({"g": [2, 2]})))
                raise RuntimeError("boom")
        assert _state(wh) == (1, 1, 1)
        run = DatasetRun(wh, DS, run_id="dead", job="test", tables=TABLES).__enter__()
        run.committed("b", wh.write_table(DS, "b", pa.table({"g": [3]})))
        snapshots._OWN_RUNS.discard("dead")
        assert _state(wh) == (1, 1, 1) == _sql_state(wh)
        assert repair(wh, DS, by="next") == ["dead"] and _state(wh) == (1, 1, 1)
        assert [s["status"] for s in run_states(wh, DS)] == ["complete", "failed", "abandoned"]
