"""Concurrent writers lose nothing: the dataset lock (local disk and moto's S3 server), recommend-style publishers
racing for one run date, appenders racing each other and an append racing refresh-collab."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import threading
import time

import pyarrow.compute as pc
import pytest

from mmsrarec_lib.locks import LockLost, LockTimeout, acquire, dataset_lock, lock_uri
from mmsrarec_lib.storage import Warehouse
from mmsrarec_lib.testing.s3 import moto_s3
from mmsrarec_lib.testing.writers import append_interactions, recommend_style_writer

DS = "ds"


@pytest.fixture(params=["local", "s3"])
def any_wh(request, tmp_path):
    if request.param == "local":
        yield Warehouse.from_uri(str(tmp_path / "wh"))
    else:
        with moto_s3() as s3:
            yield Warehouse.from_uri(s3.warehouse_uri, storage_options=s3.storage_options)


def _threads(targets):
    errors: list[BaseException] = []

    def run(fn):
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 (re-raised below in the test thread)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(fn,)) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    if errors:
        raise errors[0]


def test_lock_is_exclusive_and_counter_loses_no_increment(any_wh):
    uri = any_wh.uri(DS, "counter.json")
    inside, overlaps = [0], []

    def worker(w):
        for _ in range(5):
            with dataset_lock(any_wh, DS, owner=f"w{w}", ttl_s=20, poll_s=0.02):
                inside[0] += 1
                overlaps.append(inside[0])
                value = json.loads(any_wh.read_bytes(uri)) if any_wh.exists(uri) else 0
                time.sleep(0.01)
                any_wh.write_bytes(uri, json.dumps(value + 1).encode())
                inside[0] -= 1

    _threads([lambda w=w: worker(w) for w in range(3)])
    assert json.loads(any_wh.read_bytes(uri)) == 15  # 3 writers x 5 read-modify-writes, none lost
    assert max(overlaps) == 1
    assert not any_wh.exists(lock_uri(any_wh, DS))  # released


def test_expired_lease_is_taken_over_once_and_the_old_holder_cannot_commit(any_wh):
    dead = acquire(any_wh, DS, owner="dead", ttl_s=0.6)
    dead._stop.set()  # a holder that stopped renewing (as if killed)
    with pytest.raises(LockTimeout, match="locked by dead"):
        acquire(any_wh, DS, owner="early", ttl_s=5, wait_s=0.2, poll_s=0.05)
    time.sleep(0.7)
    winners: list[str] = []

    def waiter(name):
        try:
            lease = acquire(any_wh, DS, owner=name, ttl_s=5, wait_s=0.3, poll_s=0.05)
        except LockTimeout:
            return
        winners.append(name)
        time.sleep(0.5)  # hold past the other waiter's patience
        lease.release()

    _threads([lambda: waiter("a"), lambda: waiter("b")])
    assert len(winners) == 1  # exactly one waiter took the expired lease over
    with pytest.raises(LockLost):
        dead.check()  # the dead holder's lease is gone: it must not commit
    dead.release()  # releasing a lost lease deletes nothing of the new holder's


@pytest.mark.parametrize("locked", [True])
def test_two_recommend_style_writers_for_one_date_publish_one_complete_partition(any_wh, locked):
    run_date, users = dt.date(2026, 11, 30), [f"u{i}" for i in range(12)]
    _threads([lambda w=w: recommend_style_writer(any_wh, DS, writer=w, run_date=run_date, users=users, k=3,
                                                 locked=locked)
              for w in ("r1", "r2")])
    recs = any_wh.read_table(DS, "recommendations")
    assert recs.num_rows == len(users) * 3  # nothing doubled, nothing lost
    keys = {(r["user_id"], r["rank"]) for r in recs.to_pylist()}
    assert len(keys) == recs.num_rows
    assert len(set(recs.column("model_version").to_pylist())) == 1  # one writer's rows, never a mix
    marks = json.loads(any_wh.read_bytes(any_wh.uri(DS, "state", "recommend_writers.json")))
    assert marks == {"r1": 36, "r2": 36}  # both watermark updates kept


def test_concurrent_appenders_keep_every_row_and_unique_source_rows(any_wh):
    rounds = 3

    def appender(w):
        for r in range(rounds):
            append_interactions(any_wh, DS, [(f"u{j}", f"i{w}{r}{j}", 1_700_000_000 + j) for j in range(4)],
                                writer=f"w{w}")

    _threads([lambda w=w: appender(w) for w in (1, 2)])
    inter = any_wh.read_table(DS, "interactions")
    assert inter.num_rows == 2 * rounds * 4
    src = inter.column("source_row").to_pylist()
    assert sorted(src) == list(range(1, inter.num_rows + 1))  # unique and gap-free across the writers
    counts = any_wh.read_table(DS, "user_event_counts")
    assert int(pc.sum(counts.column("events")).as_py()) == inter.num_rows  # derived table saw every row


def _spawn_appender(root: str, writer: int, rounds: int) -> None:
    wh = Warehouse.from_uri(root)
    for r in range(rounds):
        append_interactions(wh, DS, [(f"u{j}", f"i{writer}{r}{j}", 1_700_000_000 + j) for j in range(3)],
                            writer=f"p{writer}")


@pytest.mark.slow
def test_appenders_in_separate_processes(tmp_path):
    root = str(tmp_path / "wh")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_spawn_appender, args=(root, w, 3)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    wh = Warehouse.from_uri(root)
    inter = wh.read_table(DS, "interactions")
    assert inter.num_rows == 18 and len(set(inter.column("source_row").to_pylist())) == 18
    assert int(pc.sum(wh.read_table(DS, "user_event_counts").column("events")).as_py()) == 18


def test_append_racing_refresh_collab_leaves_no_user_behind(warehouse):
    """An ingest append commits interactions, then (after its Spark work) eval_candidates. A refresh that read the
    new interactions with the old targets would store a stale window for the user and advance the watermark past
    it for good; with the lock every refresh sees all of the append or none of it."""
    from mmsrarec_lib.collab.build import CollabConfig, build_collab
    from mmsrarec_lib.collab.content import EmbedderConfig
    from mmsrarec_lib.collab.index import IndexConfig
    from mmsrarec_lib.collab.refresh import read_watermark, refresh_collab
    from mmsrarec_lib.collab.table import TABLE
    from mmsrarec_lib.collab.windows import WindowConfig, to_us
    from tests._collab_helpers import (
        ITEMS,
        KEYWORDS,
        USERS,
        ToyEmbedder,
        eval_candidates_table,
        interactions_table,
        ts,
        write_tiny,
    )

    times = write_tiny(warehouse)
    cfg = CollabConfig(dataset="tiny", window=WindowConfig(n=2, entries="last"),
                       embedder=EmbedderConfig(kind="sasrec"), index=IndexConfig())
    build_collab(warehouse, config=cfg, embedder=ToyEmbedder(ITEMS), embedder_info={"type": "toy"},
                 keywords=KEYWORDS, keyword_source="raw")
    late, done = ts(10_000), threading.Event()

    def appender():
        time.sleep(0.2)
        with dataset_lock(warehouse, "tiny", owner="append", ttl_s=20, poll_s=0.02):
            warehouse.write_table("tiny", "interactions", interactions_table(
                [("T3", "n1", late), ("X1", "n2", late)], first_source_row=1000), mode="append")
            time.sleep(0.4)  # the splits being rebuilt
            users = {**USERS, "T3": ("train", USERS["T3"][1] + ["n1"]), "X1": ("test", USERS["X1"][1] + ["n2"])}
            warehouse.write_table("tiny", "eval_candidates", eval_candidates_table(
                users, {**times, "T3": times["T3"] + [late], "X1": times["X1"] + [late]}))
        done.set()

    def refresher():
        while not done.is_set():
            refresh_collab(warehouse, dataset="tiny", embedder=ToyEmbedder(ITEMS), keywords=KEYWORDS, lock_wait_s=30)
            time.sleep(0.02)

    _threads([appender, refresher])
    refresh_collab(warehouse, dataset="tiny", embedder=ToyEmbedder(ITEMS), keywords=KEYWORDS)
    rows = {(r["user_id"], r["protocol"]): r for r in warehouse.read_table("tiny", TABLE).to_pylist()}
    # X1's paper window now ends right before its new target n2, i.e. at z (its 4th item)
    assert rows[("X1", "paper")]["as_of"] == times["X1"][3]
    assert rows[("X1", "latest")]["as_of"] == late
    assert read_watermark(warehouse, "tiny").max_interaction_us == to_us(late)
