"""run_ingest end to end on tiny files: tables, ingest_runs invariant, idempotent rerun, append, time travel."""

from __future__ import annotations

import dataclasses

import pyarrow.compute as pc
import pytest

from mmsrarec_lib import schemas
from mmsrarec_lib.ingest.run import TABLES, IngestConfig, run_ingest
from mmsrarec_lib.ingest.sources import read_source
from mmsrarec_lib.ingest.splits import SplitConfig
from tests._ingest_helpers import jpeg_bytes, write_rows

DS = "tiny"
N_USERS, N_ITEMS = 10, 30
# 4 users x 8 items over 30 items leave nothing after k-core 2: these tiny inputs are sparse on purpose
# (--allow-sparse); the sparse-data check itself is tested in test_ingest_validation.py
CFG = IngestConfig(dataset=DS, max_image_side=32, splits=SplitConfig(k_core=2, seed=0, n_negatives=5),
                   allow_sparse=True)


def _files(folder, *, n_users: int = N_USERS, extra: list[dict] | None = None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "img").mkdir(exist_ok=True)
    (folder / "img" / "p.jpg").write_bytes(jpeg_bytes(64, 48))
    items = [{"item_id": f"i{k:02d}", "title": f"Item {k}", "categories": ["c"],
              "image_uri": "img/p.jpg" if k % 2 == 0 else None, "brand": f"b{k % 3}"} for k in range(N_ITEMS)]
    items.append({"item_id": None, "title": "no id"})  # quarantined
    inter = [{"user_id": f"u{u}", "item_id": f"i{(u * 7 + j) % N_ITEMS:02d}", "timestamp": str(1_000_000 + 60 * j),
              "rating": "4"} for u in range(n_users) for j in range(8)]
    if inter:
        inter.append(dict(inter[0]))  # exact duplicate
    inter.append({"user_id": "u0", "item_id": "nope", "timestamp": "1000000", "rating": "1"})  # unknown item
    inter += extra or []
    return (read_source(write_rows(folder / "items.csv", items)),
            read_source(write_rows(folder / "interactions.jsonl", inter)))


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory):
    """Run 1 and an identical run 2 (overwrite); run 3 appends one old and one new row; run 4 overwrites with
    changed (smaller) inputs. Returns the warehouse, the four summaries and the tables after each run."""
    from mmsrarec_lib.storage import Warehouse

    root = tmp_path_factory.mktemp("pipe")
    wh = Warehouse.from_uri(str(root / "wh"))
    items, inter = _files(root / "in")
    new = [{"user_id": "u1", "item_id": "i07", "timestamp": "1000000", "rating": "4"},  # already present
           {"user_id": "u1", "item_id": "i00", "timestamp": "2000000", "rating": "5"}]  # new, latest for u1
    items3, inter3 = _files(root / "in3", n_users=0, extra=new)
    items4, inter4 = _files(root / "in4", n_users=4)
    inputs = [(items, inter, CFG), (items, inter, CFG), (items3, inter3, dataclasses.replace(CFG, mode="append")),
              (items4, inter4, CFG)]
    results, snaps = [], []
    for it, ia, cfg in inputs:
        results.append(run_ingest(warehouse=wh, items=it, interactions=ia, config=cfg, spark=spark))
        snaps.append({t: wh.read_table(DS, t) for t in TABLES})
    return wh, results, snaps


def test_tables_and_counts(runs):
    wh, (first, *_), (snap1, *_) = runs
    assert first.counts["items"] == N_ITEMS and first.counts["items_quarantine"] == 1
    assert first.counts["interactions"] == N_USERS * 8
    assert first.counts["interactions_duplicate"] == 1 and first.counts["interactions_quarantine"] == 1
    assert first.image_status == {"none": 15, "ok": 15}
    assert snap1["items"].schema == schemas.ITEMS and snap1["eval_candidates"].schema == schemas.EVAL_CANDIDATES
    assert snap1["user_sequences"].num_rows == N_USERS
    assert snap1["split_loo"].num_rows == 3 * N_USERS
    assert sum(first.eval_split_users.values()) == N_USERS == snap1["eval_candidates"].num_rows
    assert snap1["interactions_quarantine"].column("reason").to_pylist() == ["unknown_item_id"]


def test_ingest_runs_invariant_for_every_table_and_run(runs):
    wh, results, _ = runs
    log = wh.read_table(DS, "ingest_runs").to_pylist()
    assert len(log) == 4 * 5  # five tables per run
    assert {r["run_id"] for r in log} == {r.run_id for r in results}
    for r in log:
        assert r["rows_in"] == r["rows_written"] + r["rows_quarantined"] + r["rows_duplicate"], r
        assert r["started_at"] <= r["finished_at"] and r["code_version"]
    row = next(r for r in log if r["run_id"] == results[0].run_id and r["table"] == "interactions")
    assert (row["rows_in"], row["rows_written"], row["rows_quarantined"], row["rows_duplicate"]) == (
        N_USERS * 8 + 2, N_USERS * 8, 1, 1)


def test_rerun_leaves_identical_tables(runs):
    _, _, (snap1, snap2, *_) = runs
    for t in TABLES:
        a, b = snap1[t], snap2[t]
        if t.endswith("_quarantine"):  # run_id / created_at name the run; the rows are the same
            a, b = a.drop(["run_id", "created_at"]), b.drop(["run_id", "created_at"])
        assert a.equals(b), t


def test_append_adds_only_new_interactions_and_rebuilds_sequences(runs):
    _, (_, second, third, _), (_, _, snap3, _) = runs
    assert third.counts["interactions"] == N_USERS * 8 + 1
    assert third.counts["interactions_duplicate"] == 1
    inter = snap3["interactions"]
    assert inter.num_rows == N_USERS * 8 + 1
    assert pc.max(inter.column("source_row")).as_py() == N_USERS * 8 + 3  # file row 3, offset by the old max 80
    seq = {r["user_id"]: r for r in snap3["user_sequences"].to_pylist()}
    assert seq["u1"]["item_ids"][-1] == "i00" and seq["u1"]["length"] == 9
    test_row = next(r for r in snap3["split_loo"].to_pylist() if r["user_id"] == "u1" and r["split"] == "test")
    assert test_row["target_item_id"] == "i00"
    q = snap3["interactions_quarantine"]
    assert sorted(q.column("run_id").to_pylist()) == sorted([second.run_id, third.run_id])  # appended
    assert snap3["items"].num_rows == N_ITEMS  # upsert by item_id, no duplicates
    wh = runs[0]
    ops = [(h["version"], h["operation"]) for h in wh.delta_table(DS, "items").history()]
    assert [op for _, op in sorted(ops)] == ["WRITE", "WRITE", "MERGE", "WRITE"], ops  # run 3 upserts by MERGE


def test_changed_inputs_replace_rows_and_old_versions_stay_readable(runs):
    wh, _, (snap1, _, snap3, snap4) = runs
    assert snap4["interactions"].num_rows == 4 * 8
    assert sorted(snap4["user_sequences"].column("user_id").to_pylist()) == ["u0", "u1", "u2", "u3"]
    assert wh.table_version(DS, "interactions") == 3  # one commit per run
    assert wh.read_table(DS, "interactions", version=2).equals(snap3["interactions"])  # the appended version
    assert wh.read_table(DS, "items", version=0).equals(snap1["items"])  # time travel to run 1


@pytest.mark.slow
def test_ingest_into_an_s3_warehouse_on_a_moto_server(spark, tmp_path):
    import boto3
    from moto.server import ThreadedMotoServer

    from mmsrarec_lib.storage import Warehouse

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        opts = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
        boto3.client("s3", endpoint_url=opts["AWS_ENDPOINT_URL"], region_name="us-east-1",
                     aws_access_key_id="test", aws_secret_access_key="test").create_bucket(Bucket="lake")
        wh = Warehouse.from_uri("s3://lake/wh", storage_options=opts)
        items, inter = _files(tmp_path / "in", n_users=3)
        cfg = dataclasses.replace(CFG, splits=SplitConfig(k_core=0, n_negatives=5))
        run_ingest(warehouse=wh, items=items, interactions=inter, config=cfg, spark=spark)
        again = run_ingest(warehouse=wh, items=items, interactions=inter,
                           config=dataclasses.replace(cfg, mode="append"), spark=spark)
        assert again.counts["interactions"] == 3 * 8 and again.runs[1].rows_duplicate == 3 * 8 + 1
        assert wh.read_table(DS, "items").num_rows == N_ITEMS
        assert wh.read_table(DS, "user_sequences").num_rows == 3
        assert len(wh.read_table(DS, "ingest_runs").to_pylist()) == 2 * 5
    finally:
        server.stop()


def test_interactions_only_append_keeps_the_catalogue(spark, tmp_path):
    """The nightly feed may hold interactions alone: append them without an items file."""
    from mmsrarec_lib.storage import Warehouse

    wh = Warehouse.from_uri(str(tmp_path / "wh"))
    items, inter = _files(tmp_path / "in", n_users=4)
    with pytest.raises(ValueError, match="items file is required"):
        run_ingest(warehouse=wh, items=None, interactions=inter, config=dataclasses.replace(CFG, mode="append"),
                   spark=spark)
    run_ingest(warehouse=wh, items=items, interactions=inter, config=CFG, spark=spark)
    items_before = wh.read_table(DS, "items")
    _, feed = _files(tmp_path / "feed", n_users=0, extra=[
        {"user_id": "u2", "item_id": "i05", "timestamp": "3000000", "rating": "5"}])
    summary = run_ingest(warehouse=wh, items=None, interactions=feed,
                         config=dataclasses.replace(CFG, mode="append"), spark=spark)
    assert wh.read_table(DS, "items").equals(items_before)
    assert summary.counts["interactions"] == 4 * 8 + 1
    assert "items" not in {r.table for r in summary.runs}  # no items were read, so no items accounting row
    seq = {r["user_id"]: r["item_ids"] for r in wh.read_table(DS, "user_sequences").to_pylist()}
    assert seq["u2"][-1] == "i05"
