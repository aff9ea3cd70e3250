"""Sharded scoring, staging and publish: shards partition the selection, N shards publish what 1 does, a retried
shard adds nothing, a missing shard or a failed gate publishes nothing, two publishes of a date leave one copy.

The fast tests score with a deterministic stand-in for the stage-3 scorer (the scorer is not what they test); the
slow test runs the real `mmsrarec recommend --shard` / `publish-recommendations` CLI on a tiny trained model."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading

import pyarrow.compute as pc
import pytest

from mmsrarec_lib.recommend.batch import RecommendConfig, Shard, recommend, shard_of, stage_recommendations
from mmsrarec_lib.recommend.gate import QualityGateError
from mmsrarec_lib.recommend.publish import PublishError, publish_recommendations, read_watermarks
from mmsrarec_lib.recommend.topk import TopKConfig, recommendation_rows
from tests import _recommend_warehouse as toy

DAY = dt.date(2026, 2, 1)
EXPL = {"history_keywords": [], "neighbor_keywords": [], "neighbor_ids": []}


@pytest.fixture()
def wh(tmp_path):
    from mmsrarec_lib.storage import Warehouse

    warehouse = Warehouse.from_uri(str(tmp_path / "wh"))
    seqs = toy.build(warehouse)
    return warehouse, seqs


def scorer(seqs, *, k=3, bad_user: str | None = None, calls: list | None = None):
    """Stand-in scorer: each user's k unseen items with the smallest sha256(user|item), scores from the hash."""
    items = [f"i{n}" for n in range(24)]

    def score(users):
        if calls is not None:
            calls.append(list(users))
        rows = []
        for u in users:
            keyed = sorted((hashlib.sha256(f"{u}|{i}".encode()).hexdigest(), i) for i in items if i not in seqs[u])
            picks = [(i, 1.0 - int(h[:6], 16) / 16**6) for h, i in keyed[:k]]
            if u == bad_user:
                picks[0] = (seqs[u][0], picks[0][1])  # an item the user already had
            rows += recommendation_rows(run_date=DAY, user_id=u, picks=picks, explanations=[EXPL] * len(picks),
                                        model_version="m1", created_at=dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
        return rows

    return score


def cfg(shard=Shard(), **kw) -> RecommendConfig:
    return RecommendConfig(dataset="toy", model_run="m1", run_date=DAY, users="all",
                           topk=TopKConfig(top_m=6, top_k=3), shard=shard, **kw)


def partition(warehouse, day=DAY):
    t = warehouse.read_table("toy", "recommendations")
    t = t.filter(pc.equal(t["run_date"], day))
    return sorted(zip(*(t[c].to_pylist() for c in ("user_id", "rank", "item_id", "score"))))


def checksum(rows) -> str:
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


def test_shard_of_is_a_stable_hash_and_shards_partition_any_selection():
    # a golden value: the shard of a user must never change between processes, machines or Python versions
    assert [shard_of(f"u{n}", 3) for n in range(8)] == [
        int(hashlib.sha256(f"u{n}".encode()).hexdigest()[:16], 16) % 3 for n in range(8)]
    users = [f"user-{n}" for n in range(1000)]
    parts = [[u for u in users if shard_of(u, 4) == i] for i in range(4)]
    assert sorted(sum(parts, [])) == sorted(users)
    assert all(200 <= len(p) <= 300 for p in parts), [len(p) for p in parts]  # roughly even
    assert Shard.parse("2/4") == Shard(2, 4) and str(Shard(2, 4)) == "2/4"
    for bad in ("4/4", "1", "a/b", "-1/3", "0/0"):
        with pytest.raises(ValueError, match="I/N"):
            Shard.parse(bad)


def test_three_shards_publish_exactly_what_one_unsharded_run_publishes(wh):
    warehouse, seqs = wh
    one = recommend(warehouse, config=cfg(), score_users=scorer(seqs))
    assert one["users"] == len(seqs) and one["rows"] == 3 * len(seqs)
    single = partition(warehouse)
    calls: list = []
    staged = [stage_recommendations(warehouse, config=cfg(Shard(i, 3)), score_users=scorer(seqs, calls=calls))
              for i in range(3)]
    assert sorted(u for c in calls for u in c) == sorted(seqs), "every user scored once, by one shard"
    assert sum(s["users"] for s in staged) == len(seqs) and all(s["users"] > 0 for s in staged)
    out = publish_recommendations(warehouse, "toy", run_date=DAY, shards=3)
    assert out["checks"] == dict.fromkeys(out["checks"], 0) and out["rows"] == 3 * len(seqs)
    assert checksum(partition(warehouse)) == checksum(single)
    assert read_watermarks(warehouse, "toy") == {DAY.isoformat(): out_newest(warehouse)}


def out_newest(warehouse) -> int:
    ts = warehouse.read_table("toy", "interactions")["timestamp"]
    return int(pc.max(pc.cast(ts, "int64")).as_py())


def test_selection_happens_before_sharding(wh):
    warehouse, seqs = wh
    calls: list = []
    for i in range(2):
        stage_recommendations(warehouse, config=cfg(Shard(i, 2), limit_users=5), score_users=scorer(seqs, calls=calls))
    assert sorted(u for c in calls for u in c) == sorted(sorted(seqs)[:5])
    assert publish_recommendations(warehouse, "toy", run_date=DAY, shards=2)["users"] == 5


def test_a_retried_shard_overwrites_its_own_staging_and_never_duplicates(wh):
    warehouse, seqs = wh
    for i in (0, 1, 0, 0):  # shard 0 staged three times (retries / reruns)
        stage_recommendations(warehouse, config=cfg(Shard(i, 2)), score_users=scorer(seqs))
    out = publish_recommendations(warehouse, "toy", run_date=DAY, shards=2)
    rows = partition(warehouse)
    assert out["rows"] == len(rows) == 3 * len(seqs)
    assert len({(u, r) for u, r, _, _ in rows}) == len(rows)
    publish_recommendations(warehouse, "toy", run_date=DAY, shards=2)  # publish retried: replaces, same rows
    assert partition(warehouse) == rows


def test_a_missing_shard_or_a_failed_gate_publishes_nothing_and_the_old_partition_stays(wh):
    warehouse, seqs = wh
    recommend(warehouse, config=cfg(), score_users=scorer(seqs))
    before, version = partition(warehouse), warehouse.table_version("toy", "recommendations")
    stage_recommendations(warehouse, config=cfg(Shard(0, 3)), score_users=scorer(seqs))
    stage_recommendations(warehouse, config=cfg(Shard(2, 3)), score_users=scorer(seqs))
    with pytest.raises(PublishError, match=r"1 of 3 shards .*\(missing shard 1 "):
        publish_recommendations(warehouse, "toy", run_date=DAY, shards=3)
    bad_user = next(u for u in sorted(seqs) if shard_of(u, 3) == 1)
    stage_recommendations(warehouse, config=cfg(Shard(1, 3)), score_users=scorer(seqs, bad_user=bad_user))
    with pytest.raises(QualityGateError, match=r"seen_items: 1 offending") as err:
        publish_recommendations(warehouse, "toy", run_date=DAY, shards=3)
    assert err.value.failures == {"seen_items": 1}
    with pytest.raises(QualityGateError):
        recommend(warehouse, config=cfg(), score_users=scorer(seqs, bad_user=bad_user))
    assert warehouse.table_version("toy", "recommendations") == version
    assert partition(warehouse) == before, "yesterday's rows are still the readable partition"


def test_shards_of_another_selection_are_refused(wh):
    warehouse, seqs = wh
    stage_recommendations(warehouse, config=cfg(Shard(0, 2)), score_users=scorer(seqs))
    stage_recommendations(warehouse, config=cfg(Shard(1, 2), limit_users=10), score_users=scorer(seqs))
    with pytest.raises(PublishError, match="another selection"):
        publish_recommendations(warehouse, "toy", run_date=DAY, shards=2)


def test_two_publishes_of_one_date_at_once_leave_exactly_one_copy(wh):
    warehouse, seqs = wh
    recommend(warehouse, config=cfg(), score_users=scorer(seqs))  # the table and the partition exist
    for i in range(2):
        stage_recommendations(warehouse, config=cfg(Shard(i, 2)), score_users=scorer(seqs))
    errors: list = []

    def publish():
        try:
            publish_recommendations(warehouse, "toy", run_date=DAY, shards=2)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=publish) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = partition(warehouse)
    assert len(rows) == 3 * len(seqs) and len({(u, r) for u, r, _, _ in rows}) == len(rows)


def test_unlocked_concurrent_partition_replacements_retry_the_lost_commit_and_leave_one_copy(wh):
    """Without the dataset lock (a writer that does not take it), delta-rs' conflict detection still decides."""
    import pyarrow as pa

    from mmsrarec_lib import schemas
    from mmsrarec_lib.recommend.publish import replace_partition

    warehouse, seqs = wh
    recommend(warehouse, config=cfg(), score_users=scorer(seqs))
    rows = pa.Table.from_pylist(scorer(seqs)(sorted(seqs)), schema=schemas.RECOMMENDATIONS)
    barrier, errors = threading.Barrier(4), []

    def write():
        try:
            barrier.wait()
            replace_partition(warehouse, "toy", rows, run_date=DAY)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = partition(warehouse)
    assert len(got) == rows.num_rows and len({(u, r) for u, r, _, _ in got}) == len(got)
