"""model_runs: one row per state change of every training run, and one "latest complete run" rule for all
consumers (nightly DAG, ``recommend``, ``build-collab``, ``summarize``, stage-3 training)."""

from __future__ import annotations

import json

import pytest

from mmsrarec_lib import model_runs
from mmsrarec_lib.model_runs import (
    COMPLETE,
    FAILED,
    RUNNING,
    ModelRunNotFound,
    backfill_model_runs,
    latest_complete_run,
    list_model_runs,
    record_model_run,
    start_model_run,
)

DS = "toy"


def _manifest(warehouse, run_id: str, meta: dict) -> None:
    """A model folder as training writes it (``model.json`` last)."""
    warehouse.write_bytes(warehouse.uri(DS, "models", run_id, "model.json"), json.dumps(meta).encode())


def _run(warehouse, run_id: str, *, kind: str, fail: bool, manifest: dict | None = None, **kw) -> None:
    """A training run through the recorder; ``fail``: it raises after writing its folder (a folder scan would
    take it for complete)."""
    try:
        with record_model_run(warehouse, dataset=DS, kind=kind, run_id=run_id, **kw) as rec:
            if manifest is not None:
                _manifest(warehouse, run_id, {"kind": kind, "run_id": run_id, **manifest})
            rec.update(metrics={"loss": 0.5})
            if fail:
                raise RuntimeError("out of memory")
    except RuntimeError:
        assert fail


def test_every_consumer_picks_the_same_complete_run_when_a_newer_one_failed(warehouse):
    from mmsrarec_lib.collab.embed import latest_sasrec_run
    from mmsrarec_lib.orchestration import latest_model_run
    from mmsrarec_lib.recommend.run_config import latest_generator, latest_run
    from mmsrarec_lib.summarize.service import latest_policy_run

    for kind, extra in (("sasrec", {"protocol": "paper"}), ("mmsrarec", {"variant": "mmsrarec", "protocol": "paper"}),
                        ("summarizer", {"variant": "extractive"})):
        _run(warehouse, f"{kind}-1-ok", kind=kind, fail=False, manifest=extra, **extra)
        _run(warehouse, f"{kind}-2-failed", kind=kind, fail=True, manifest=extra, **extra)

    states = {r.run_id: r.status for r in list_model_runs(warehouse, dataset=DS)}
    assert states["sasrec-2-failed"] == FAILED and states["sasrec-1-ok"] == COMPLETE
    # build-collab's default SASRec and stage 3's generator (recommend / train) agree
    assert latest_sasrec_run(warehouse, DS) == latest_generator(warehouse, DS, "paper") == "sasrec-1-ok"
    # the nightly DAG (plan_shards) and `mmsrarec recommend` agree
    assert latest_model_run(warehouse, dataset=DS) == latest_run(warehouse, DS) == "mmsrarec-1-ok"
    # `summarize` (the extractive policy)
    assert latest_policy_run(warehouse, DS) == "summarizer-1-ok"

    # a third, complete run of a kind becomes everyone's choice
    _run(warehouse, "sasrec-3-ok", kind="sasrec", fail=False, protocol="paper")
    assert latest_sasrec_run(warehouse, DS) == latest_generator(warehouse, DS, "paper") == "sasrec-3-ok"
    # ... but a newer stage-3 run of the evaluation-only cold protocol (it never saw a tenth of the items) never serves
    _run(warehouse, "mmsrarec-3-cold", kind="mmsrarec", fail=False, variant="mmsrarec", protocol="cold")
    assert latest_model_run(warehouse, dataset=DS) == latest_run(warehouse, DS) == "mmsrarec-1-ok"


def test_filters_and_a_clear_error_naming_what_was_asked(warehouse):
    _run(warehouse, "sasrec-full", kind="sasrec", fail=False, protocol="full")
    _run(warehouse, "mm-ablation", kind="mmsrarec", fail=False, variant="mmsrarec-no-retrieval", protocol="paper")
    assert latest_complete_run(warehouse, dataset=DS, kind="sasrec", protocol="full") == "sasrec-full"
    with pytest.raises(ModelRunNotFound, match=r"no complete sasrec run \(protocol='paper'\).*1 complete"):
        latest_complete_run(warehouse, dataset=DS, kind="sasrec", protocol="paper")
    with pytest.raises(FileNotFoundError, match=r"variant='mmsrarec'.*mmsrarec train"):
        latest_complete_run(warehouse, dataset=DS, kind="mmsrarec", variant="mmsrarec")
    from mmsrarec_lib.summarize.service import latest_policy_run

    assert latest_policy_run(warehouse, DS) is None  # summarize falls back to an untrained policy


def test_a_failed_training_leaves_status_failed_with_the_error(warehouse):
    from mmsrarec_lib.models.baselines import fit_baseline
    from mmsrarec_lib.recommend.run_config import RecTrainConfig
    from mmsrarec_lib.recommend.training import train_recommender

    with pytest.raises(FileNotFoundError):  # no training tables in this warehouse
        fit_baseline(warehouse, DS, kind="sasrec", protocol="paper", run_id="sasrec-broken", progress=False)
    with pytest.raises(FileNotFoundError, match="no complete sasrec run"):  # stage 3 without a generator
        train_recommender(warehouse, config=RecTrainConfig(dataset=DS), run_id="mm-broken", progress=False)
    runs = {r.run_id: r for r in list_model_runs(warehouse, dataset=DS)}
    assert runs["sasrec-broken"].status == FAILED and runs["sasrec-broken"].protocol == "paper"
    assert runs["mm-broken"].status == FAILED and runs["mm-broken"].variant == "mmsrarec"
    assert "no complete sasrec run" in runs["mm-broken"].message
    assert runs["mm-broken"].ended_at >= runs["mm-broken"].started_at
    # the table keeps every transition: running then failed
    rows = warehouse.read_table(DS, model_runs.TABLE).to_pylist()
    assert sorted(r["status"] for r in rows if r["run_id"] == "mm-broken") == [FAILED, RUNNING]


def test_a_real_baseline_training_records_a_complete_run_with_lineage(warehouse):
    from _eval_helpers import write_toy_dataset

    from mmsrarec_lib.models.baselines import fit_baseline

    write_toy_dataset(warehouse, DS, n_users=30)
    trained = fit_baseline(warehouse, DS, kind="sasrec", protocol="full", seed=0, progress=False,
                           sasrec_overrides={"dim": 16, "n_layers": 1, "n_heads": 1, "epochs": 1, "max_len": 10})
    (run,) = list_model_runs(warehouse, dataset=DS, kind="sasrec")
    assert run.run_id == trained.run_id and run.status == COMPLETE and run.protocol == "full"
    assert run.metrics["valid_ndcg@10"] == pytest.approx(trained.info["metrics"]["valid_ndcg@10"])
    assert run.lineage["table_versions.split_loo"] == str(warehouse.table_version(DS, "split_loo"))
    assert run.config["dim"] == 16 and run.artefact_uri == warehouse.uri(DS, "models", trained.run_id)


def test_backfill_reads_model_folders_once_and_never_duplicates(warehouse):
    # an existing warehouse: folders only, no model_runs table (manifests of several generations)
    _manifest(warehouse, "r-20260101", {"kind": "sasrec"})
    _manifest(warehouse, "r-20260201", {"model_type": "SASRec-v0"})  # early manifests had no "kind"
    _manifest(warehouse, "r-20260301", {"kind": "popularity"})
    _manifest(warehouse, "mm-old", {"kind": "mmsrarec", "created_at": "2026-02-01T00:00:00+00:00",
                                    "training": {"train_seconds": 12.0}})  # before variants existed
    warehouse.write_bytes(warehouse.uri(DS, "models", "summ-1", "metrics.json"),
                          json.dumps({"backend": "extractive", "after": {"reward": 0.4}}).encode())
    warehouse.write_bytes(warehouse.uri(DS, "models", "tiny-mllm", "config.json"), b"{}")  # not a run
    assert not warehouse.has_table(DS, model_runs.TABLE)

    from mmsrarec_lib.collab.embed import latest_sasrec_run
    from mmsrarec_lib.orchestration import latest_model_run
    from mmsrarec_lib.summarize.service import latest_policy_run

    assert latest_sasrec_run(warehouse, DS) == "r-20260201"  # the lazy backfill, then the one rule
    assert warehouse.has_table(DS, model_runs.TABLE)
    assert latest_model_run(warehouse, dataset=DS) == "mm-old"
    assert latest_policy_run(warehouse, DS) == "summ-1"
    runs = {r.run_id: r for r in list_model_runs(warehouse, dataset=DS)}
    assert set(runs) == {"r-20260101", "r-20260201", "r-20260301", "mm-old", "summ-1"}
    assert runs["mm-old"].metrics == {"training.train_seconds": 12.0} and runs["mm-old"].variant == "mmsrarec"
    n_rows = warehouse.read_table(DS, model_runs.TABLE).num_rows
    backfill_model_runs(warehouse, DS)  # again: nothing new
    _manifest(warehouse, "r-20260401", {"kind": "sasrec"})  # a folder the table lacks
    backfill_model_runs(warehouse, DS)
    assert warehouse.read_table(DS, model_runs.TABLE).num_rows == n_rows + 1
    assert latest_sasrec_run(warehouse, DS) == "r-20260401"


def test_the_first_recorded_run_backfills_older_folders_first(warehouse):
    _manifest(warehouse, "sasrec-old", {"kind": "sasrec", "protocol": "paper",
                                        "created_at": "2026-01-01T00:00:00+00:00"})
    run = start_model_run(warehouse, dataset=DS, kind="sasrec", protocol="paper")
    states = {r.run_id: r.status for r in list_model_runs(warehouse, dataset=DS)}
    assert states == {"sasrec-old": COMPLETE, run.run_id: RUNNING}
    assert latest_complete_run(warehouse, dataset=DS, kind="sasrec") == "sasrec-old"  # running never counts


def test_runs_cli_lists_runs_as_a_table_and_json(warehouse, capsys):
    from jobs.cli import main

    _run(warehouse, "sasrec-1", kind="sasrec", fail=False, protocol="paper")
    _run(warehouse, "summ-2", kind="summarizer", fail=True, variant="extractive")
    args = ["runs", "--warehouse", warehouse.root, "--dataset", DS]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["run_id", "kind", "variant", "protocol", "status"]
    by_id = {line.split()[0]: line.split() for line in lines[1:]}
    assert by_id["sasrec-1"][1:5] == ["sasrec", "-", "paper", "complete"] and by_id["sasrec-1"][-1] == "loss=0.5"
    assert by_id["summ-2"][1:5] == ["summarizer", "extractive", "-", "failed"]
    assert main([*args, "--kind", "sasrec", "--json"]) == 0
    (only,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert only["run_id"] == "sasrec-1" and only["metrics"] == {"loss": 0.5} and only["duration_s"] >= 0
    assert main([*args, "--kind", "pop"]) == 0
    assert "no model runs" in capsys.readouterr().out


def test_read_manifest_is_the_one_reader_of_a_saved_run_s_model_json(warehouse):
    """``load_sasrec``, ``load_baseline`` and ``load_recommender`` read a run's ``model.json`` through it: a folder
    without one is not a saved model (training writes it last), and a run of another kind is refused by name."""
    from mmsrarec_lib.models.baselines import load_baseline

    _manifest(warehouse, "mm-1", {"kind": "mmsrarec", "run_id": "mm-1"})
    assert model_runs.read_manifest(warehouse, DS, "mm-1")["run_id"] == "mm-1"
    assert model_runs.read_manifest(warehouse, DS, "mm-1", kind=("mmsrarec", "sasrec"))["kind"] == "mmsrarec"
    with pytest.raises(ValueError, match=r"'mm-1' is a 'mmsrarec' model, not 'pop or sasrec'"):
        load_baseline(warehouse, DS, "mm-1")
    warehouse.write_bytes(warehouse.uri(DS, "models", "half", "config.json"), b"{}")  # a crash before model.json
    with pytest.raises(FileNotFoundError, match="no saved model 'half'"):
        model_runs.read_manifest(warehouse, DS, "half", kind="sasrec")
