"""Backfill resumability: kill a real `mmsrarec summarize` subprocess midway, rerun with --backfill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmsrarec_lib.summarize.table import TABLE
from tests._summarize_helpers import items_table

DS = "tiny"
REPO = Path(__file__).resolve().parent.parent


def _cmd(root: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "jobs.cli", "--log-level", "WARNING", "summarize", "--dataset", DS,
            "--warehouse", root, "--summarizer-version", "v1", "--encoder", "hashing", "--chunk-size", "2", *extra]


def _commits(warehouse) -> int:
    log_dir = Path(warehouse.table_uri(DS, TABLE)) / "_delta_log"
    return len(list(log_dir.glob("*.json"))) if log_dir.exists() else 0


@pytest.mark.slow
def test_kill_midway_then_backfill_does_every_item_exactly_once(warehouse):
    n = 60
    warehouse.write_table(DS, "items", items_table(n, images=False))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(_cmd(warehouse.root), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while _commits(warehouse) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed midway"

    done = warehouse.read_table(DS, TABLE)
    n_done = done.num_rows
    assert 0 < n_done < n and n_done % 2 == 0  # whole chunks only: a kill loses at most the chunk in flight
    first_keys = set(done.column("item_id").to_pylist())

    out = subprocess.run(_cmd(warehouse.root, "--backfill", "--no-progress"), cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    assert stats["items"] == n - n_done  # nothing done twice ...
    assert stats["skipped"] == n_done
    final = warehouse.read_table(DS, TABLE)
    ids = final.column("item_id").to_pylist()
    assert sorted(ids, key=int) == [str(i) for i in range(1, n + 1)]  # ... none missing, no duplicates
    # rows committed before the kill were not rewritten
    before = {r["item_id"]: r["created_at"] for r in done.to_pylist()}
    after = {r["item_id"]: r["created_at"] for r in final.to_pylist()}
    assert all(after[k] == before[k] for k in first_keys)
