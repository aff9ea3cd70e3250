"""The train-baseline / evaluate / report commands, the report's arithmetic, and SASRec beating Pop end to end."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from _eval_helpers import write_toy_dataset

from jobs.cli import main as cli
from mmsrarec_lib import schemas
from mmsrarec_lib.eval import report

REPO = Path(__file__).resolve().parent.parent
T = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
FAST_SASREC = ["--dim", "32", "--layers", "1", "--epochs", "4", "--max-len", "20", "--no-progress", "--threads", "1"]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: on a busy shared CPU two spinning threads made training several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _row(run_id, model, protocol, metric, k, value, seed, minutes):
    return {"run_id": run_id, "dataset": "d", "model": model, "model_version": f"{model}-{seed}",
            "protocol": protocol, "metric": metric, "k": k, "value": value, "n_users": 10, "seed": seed,
            "config_json": "{}", "code_version": "x", "created_at": T + dt.timedelta(minutes=minutes)}


def test_report_takes_the_latest_run_and_averages_its_seeds(warehouse, tmp_path):
    rows = [
        _row("old", "pop", "full", "hr", 10, 0.9, 0, 0),  # an older run: ignored
        _row("new", "pop", "full", "hr", 10, 0.2, 0, 5),
        _row("new", "pop", "full", "hr", 10, 0.4, 1, 6),
        _row("new", "pop", "full", "mrr", None, 0.1, 0, 5),
        _row("new", "pop", "full", "mrr", None, 0.3, 1, 6),
        _row("p1", "sasrec", "paper", "auc", None, 0.8, 0, 1),
    ]
    warehouse.write_table("d", "evaluation_runs", pa.Table.from_pylist(rows, schema=schemas.EVALUATION_RUNS))
    s = report.build_report(warehouse, "d").summary.set_index(["protocol", "model", "metric"])
    assert s.loc[("full", "pop", "hr@10"), "mean"] == pytest.approx(0.3)
    assert s.loc[("full", "pop", "hr@10"), "std"] == pytest.approx(0.1414213562, rel=1e-6)  # sample std of .2, .4
    assert s.loc[("full", "pop", "mrr"), "mean"] == pytest.approx(0.2)
    assert s.loc[("full", "pop", "hr@10"), "n_seeds"] == 2 and s.loc[("full", "pop", "hr@10"), "run_id"] == "new"
    assert s.loc[("paper", "sasrec", "auc"), "std"] == 0.0
    markdown, paths = report.write_report(warehouse, "d", out_dir=str(tmp_path / "out"))
    assert "| pop | 30.00 ± 14.14 | - | 20.00 ± 14.14 | 2 | 10 | new |" in markdown
    assert sorted(Path(p).name for p in paths) == ["full.png", "paper.png", "report.md"]
    assert (tmp_path / "out" / "full.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_without_runs_is_a_clear_error(warehouse, capsys):
    assert cli(["report", "--dataset", "none", "--warehouse", warehouse.root]) == 2
    assert "no evaluation_runs for dataset 'none'" in capsys.readouterr().err


def test_evaluate_pop_two_seeds_in_process(warehouse, capsys):
    write_toy_dataset(warehouse, "toy")
    assert cli(["evaluate", "--dataset", "toy", "--warehouse", warehouse.root, "--model", "pop",
                "--protocol", "paper", "--seeds", "2", "--run-id", "e1"]) == 0
    out = capsys.readouterr().out
    assert "seed\tmodel_version\thr@5\tndcg@5\tauc" in out
    rows = pd.DataFrame(warehouse.read_table("toy", "evaluation_runs").to_pylist())
    assert sorted(rows.seed.unique()) == [0, 1] and len(rows) == 6 and set(rows.run_id) == {"e1"}
    assert set(rows.model) == {"pop"} and set(rows.protocol) == {"paper"}
    # each seed trained and saved its own model run
    assert rows.model_version.nunique() == 2
    assert all(warehouse.exists(warehouse.uri("toy", "models", v, "model.json")) for v in rows.model_version)
    assert cli(["evaluate", "--dataset", "toy", "--warehouse", warehouse.root, "--model", "nope",
                "--protocol", "full"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    saved = rows.model_version.iloc[0]  # a saved run is one fixed model: extra seeds would only repeat it
    assert cli(["evaluate", "--dataset", "toy", "--warehouse", warehouse.root, "--model", saved,
                "--protocol", "paper", "--seeds", "2"]) == 2
    assert "--seeds > 1 needs a model name" in capsys.readouterr().err
    assert cli(["evaluate", "--dataset", "toy", "--warehouse", warehouse.root, "--model", saved,
                "--protocol", "paper", "--run-id", "e2"]) == 0
    again = pd.DataFrame(warehouse.read_table("toy", "evaluation_runs").to_pylist()).query("run_id == 'e2'")
    first = rows[(rows.model_version == saved)].set_index("metric").value
    assert again.set_index("metric").value.to_dict() == first.to_dict()  # same model, same numbers


def _run(*args: str, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_cli_subprocesses_sasrec_beats_pop_and_is_reproducible(tmp_path):
    """Real processes: train-baseline, evaluate by name and by run id, report; SASRec > Pop on both protocols."""
    from mmsrarec_lib.storage import Warehouse

    wh = Warehouse.from_uri(str(tmp_path / "wh"))
    write_toy_dataset(wh, "toy", n_users=120, n_items=60)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MMSRAREC_WAREHOUSE": wh.root, "PYTHONPATH": str(REPO)}
    trained = json.loads(_run("train-baseline", "--dataset", "toy", "--model", "sasrec", "--protocol", "full",
                              "--seed", "7", *FAST_SASREC, env=env).stdout.strip().splitlines()[-1])
    assert trained["model"] == "sasrec" and trained["seed"] == 7
    for protocol in ("paper", "full"):
        _run("evaluate", "--dataset", "toy", "--model", "pop", "--protocol", protocol, env=env)
        _run("evaluate", "--dataset", "toy", "--model", "sasrec", "--protocol", protocol, "--seed", "7",
             *FAST_SASREC, env=env)
    _run("evaluate", "--dataset", "toy", "--model", trained["run_id"], "--protocol", "full", env=env)
    rows = pd.DataFrame(wh.read_table("toy", "evaluation_runs").to_pylist())
    value = {(r.model, r.protocol, r.metric, r.model_version == trained["run_id"]): r.value
             for r in rows.itertuples()}
    # the same seed and data give the same numbers: the saved run and the retrained seed 7 agree
    assert value[("sasrec", "full", "ndcg", True)] == value[("sasrec", "full", "ndcg", False)]
    for protocol, metric in (("paper", "ndcg"), ("paper", "auc"), ("full", "ndcg"), ("full", "mrr")):
        assert value[("sasrec", protocol, metric, False)] > value[("pop", protocol, metric, False)] + 0.2
    out = _run("report", "--dataset", "toy", "--out", str(tmp_path / "rep"), env=env).stdout
    assert "| sasrec |" in out and "| pop |" in out
    assert (tmp_path / "rep" / "paper.png").exists() and (tmp_path / "rep" / "full.png").exists()


def test_s3_warehouse_models_runs_and_report():
    """On a real S3 endpoint (moto server): checkpoints, evaluation_runs and the report all go through s3://."""
    import torch

    from mmsrarec_lib.eval.registry import evaluate_scorer
    from mmsrarec_lib.models.baselines import fit_baseline, load_baseline
    from mmsrarec_lib.models.sasrec import load_sasrec
    from mmsrarec_lib.storage import Warehouse
    from mmsrarec_lib.testing import moto_s3

    with moto_s3() as s3:
        wh = Warehouse.from_uri(f"{s3.warehouse_uri}/eval", storage_options=s3.storage_options)
        write_toy_dataset(wh, "toy", n_users=30, n_items=40)
        trained = fit_baseline(wh, "toy", kind="sasrec", protocol="full", seed=1, progress=False,
                               sasrec_overrides={"dim": 16, "n_layers": 1, "n_heads": 1, "epochs": 1, "max_len": 10})
        assert wh.list_dir(wh.uri("toy", "models", trained.run_id)) == ["config.json", "model.json", "model.pt"]
        model = load_sasrec(wh, "toy", trained.run_id)
        h = [["i1", "i2"], ["i5"]]
        assert torch.allclose(model.embed(h), trained.scorer.model.embed(h))
        again = load_baseline(wh, "toy", trained.run_id).scorer
        v1 = evaluate_scorer(wh, "toy", trained.scorer, "full", model="sasrec", model_version=trained.run_id,
                             seed=1, config={})
        v2 = evaluate_scorer(wh, "toy", again, "full", model="sasrec", model_version=trained.run_id, seed=1,
                             config={})
        assert v1 == v2
        assert wh.read_table("toy", "evaluation_runs").num_rows == 6
        _, paths = report.write_report(wh, "toy")
        assert paths[0] == f"{s3.warehouse_uri}/eval/toy/reports/report.md"
        assert wh.read_bytes(paths[1])[:4] == b"\x89PNG"
