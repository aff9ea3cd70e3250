"""``mmsrarec build-collab`` / ``refresh-collab`` as real subprocesses, with a (small, untrained) saved SASRec."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmsrarec_lib.collab.table import TABLE
from mmsrarec_lib.storage import Warehouse
from tests._collab_helpers import ITEMS, interactions_table, ts, write_tiny

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_build_then_refresh_cli(tmp_path):
    from mmsrarec_lib.models.sasrec import SASRec, SASRecConfig, save_sasrec

    wh = Warehouse.from_uri(str(tmp_path / "wh"))
    write_tiny(wh)
    model = SASRec(SASRecConfig(dim=16, n_layers=1, n_heads=1, max_len=8), ITEMS).eval()
    save_sasrec(wh, "tiny", "sasrec-20260101T000000-aaaa", model, info={})
    base = ["--dataset", "tiny", "--warehouse", wh.root]

    missing = _cli("build-collab", *base, "--sasrec-run", "nope")
    assert missing.returncode == 2 and "no saved model 'nope'" in missing.stderr

    built = _cli("build-collab", *base, "--window", "2", "--summarizer-version", "raw")
    assert built.returncode == 0, built.stderr
    summary = json.loads(built.stdout.strip().splitlines()[-1])
    assert summary["sasrec_run"] == "sasrec-20260101T000000-aaaa" and summary["rows"] == 16
    assert summary["rows_with_fewer_than_k"] == 0 and summary["keyword_source"] == "raw"
    rows = wh.read_table("tiny", TABLE).to_pylist()
    assert all(len(r["neighbors"]) == 3 for r in rows)

    noop = _cli("refresh-collab", *base, "--run-date", "2026-01-02")
    assert noop.returncode == 0 and json.loads(noop.stdout.strip().splitlines()[-1])["changed_users"] == 0
    assert wh.table_version("tiny", TABLE) == 0

    wh.write_table("tiny", "interactions", interactions_table([("T2", "n1", ts(50_000))], first_source_row=900),
                   mode="append")
    wrong = _cli("refresh-collab", *base, "--sasrec-run", "other")
    assert wrong.returncode == 2 and "cannot share an index" in wrong.stderr
    done = _cli("refresh-collab", *base)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["changed_users"] == 1 and out["rows_merged"] == 2 and wh.table_version("tiny", TABLE) == 1
