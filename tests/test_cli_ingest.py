"""``mmsrarec ingest`` as a real subprocess: a tiny run end to end, and clear one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmsrarec_lib.storage import Warehouse
from tests._ingest_helpers import jpeg_bytes, write_rows

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "MMSRAREC_LOG_LEVEL": "WARNING", "MMSRAREC_SPARK_DRIVER_MEMORY": "1g"}
    return subprocess.run([sys.executable, "-m", "jobs.cli", "ingest", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_ingest_tiny_files(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(jpeg_bytes(20, 10))
    items = write_rows(tmp_path / "items.tsv", [
        {"item_id": f"i{k}", "title": f"T{k}", "image_uri": "img/a.jpg" if k == 0 else ""} for k in range(8)])
    inter = write_rows(tmp_path / "inter.parquet", [
        {"user_id": f"u{u}", "item_id": f"i{(u + j) % 8}", "timestamp": f"2024-01-{j + 1:02d}T00:00:00Z"}
        for u in range(3) for j in range(7)] + [{"user_id": "u0", "item_id": "zz", "timestamp": "2024-01-01"}])
    wh = tmp_path / "wh"
    proc = _cli("--dataset", "cli", "--items", str(items), "--interactions", str(inter), "--warehouse", str(wh),
                "--spark-master", "local[1]", "--k-core", "0", "--max-image-side", "8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["counts"]["items"] == 8 and out["counts"]["interactions"] == 21
    assert out["counts"]["interactions_quarantine"] == 1 and out["image_status"] == {"none": 7, "ok": 1}
    assert out["warehouse"] == str(wh / "cli")
    w = Warehouse.from_uri(str(wh))
    row = w.read_table("cli", "items").to_pylist()[0]
    assert row["image_status"] == "ok" and (row["image_width"], row["image_height"]) == (8, 4)
    assert w.read_table("cli", "user_sequences").num_rows == 3
    runs = w.read_table("cli", "ingest_runs").to_pylist()
    assert [r["table"] for r in runs] == ["items", "interactions", "user_sequences", "split_loo", "eval_candidates"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "movielens-100k", "--items", "x.csv"], "either --source or --items/--interactions"),
        (["--dataset", "d", "--items", "x.csv"], "--items and --interactions are both required"),
        (["--dataset", "d", "--items", "/nonexistent/i.csv", "--interactions", "/nonexistent/x.csv"],
         "input file not found: /nonexistent/i.csv"),
    ],
)
def test_cli_bad_input_is_one_line_error_exit_2(tmp_path, args, message):
    proc = _cli(*args, "--warehouse", str(tmp_path / "wh"), timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr and proc.stderr.strip().startswith("mmsrarec ingest: error:")
    assert len(proc.stderr.strip().splitlines()) == 1
