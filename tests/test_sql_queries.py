"""Every ready query in sql/ runs on a tiny warehouse and returns the hand-computed result."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pytest

from mmsrarec_lib.sql.engine import SqlEngine
from tests._sql_helpers import DATASET, build_tiny_warehouse, ts

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
READY = sorted(p.name for p in SQL_DIR.glob("*.sql"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from mmsrarec_lib.storage import Warehouse

    return build_tiny_warehouse(Warehouse.from_uri(str(tmp_path_factory.mktemp("sqlq") / "wh")))


def run(tiny, name: str, **params: str) -> list[dict]:
    with SqlEngine(warehouse=tiny, dataset=DATASET, params=params) as engine:
        return engine.query((SQL_DIR / name).read_text()).to_pylist()


def test_every_ready_query_has_a_header_comment_and_a_test():
    assert len(READY) == 9
    for name in READY:
        first = (SQL_DIR / name).read_text().splitlines()[0]
        assert first.startswith("-- ") and len(first) > 20, name
        assert f'"{name}"' in Path(__file__).read_text(), f"{name} has no test here"


def test_top_k_per_user_uses_each_users_latest_run(tiny):
    got = run(tiny, "top_k_per_user.sql", k="2")
    assert [(r["user_id"], r["rank"], r["item_id"], r["title"], r["run_date"]) for r in got] == [
        ("u1", 1, "i1", "Title 1", dt.date(2026, 1, 2)),
        ("u1", 2, "i5", "Title 5", dt.date(2026, 1, 2)),
        ("u2", 1, "i1", "Title 1", dt.date(2026, 1, 1)),  # u2 was not recomputed on 2026-01-02
        ("u2", 2, "i2", "Title 2", dt.date(2026, 1, 1)),
        ("u3", 1, "i2", "Title 2", dt.date(2026, 1, 2)),
        ("u3", 2, "i4", "Title 4", dt.date(2026, 1, 2)),
    ]
    assert got[0]["history_keywords"] == ["action", "space"] and got[0]["neighbor_keywords"] == ["war"]
    assert got[0]["neighbor_ids"] == ["u9"] and got[0]["score"] == pytest.approx(0.9)
    one = run(tiny, "top_k_per_user.sql", user_id="u1")  # default k = 10: all three of u1's items
    assert [(r["rank"], r["item_id"]) for r in one] == [(1, "i1"), (2, "i5"), (3, "i2")]


def test_explanation_keywords_one_per_row(tiny):
    got = run(tiny, "explanation_keywords.sql", user_id="u1")
    assert [(r["rank"], r["item_id"], r["source"], r["position"], r["keyword"]) for r in got] == [
        (1, "i1", "history", 1, "action"),
        (1, "i1", "history", 2, "space"),
        (1, "i1", "neighbor", 1, "war"),
        (2, "i5", "neighbor", 1, "comedy"),
        (3, "i2", "history", 1, "drama"),
    ]
    everyone = run(tiny, "explanation_keywords.sql")
    assert len(everyone) == 5 + 3  # u2's latest (2026-01-01) list adds a, b, c; u3 has empty lists


def test_coverage_and_popularity_bias_of_today(tiny):
    (got,) = run(tiny, "coverage_popularity_today.sql")
    # today = 2026-01-02: u1 -> i1, i5, i2; u3 -> i2, i4. Popularity i1=4, i2=3, i4=1, i5=0; catalogue mean 2.0.
    assert got["run_date"] == dt.date(2026, 1, 2)
    assert (got["n_users"], got["n_recommendations"], got["distinct_items"], got["catalogue_items"]) == (2, 5, 4, 5)
    assert got["coverage"] == pytest.approx(4 / 5)
    assert got["avg_popularity_recommended"] == pytest.approx((4 + 0 + 3 + 3 + 1) / 5)
    assert got["avg_popularity_catalogue"] == pytest.approx(2.0)
    assert got["popularity_lift"] == pytest.approx(2.2 / 2.0)
    assert got["head_share"] == pytest.approx(1 / 5)  # head = top ceil(0.2*5)=1 item (i1): 1 of 5 rows


def test_metrics_by_model_over_runs(tiny):
    got = run(tiny, "metrics_by_model.sql")
    key = [(r["metric"], r["k"], r["model"]) for r in got]
    assert key == [("auc", None, "sasrec"), ("auc", None, "pop"), ("hr", 5, "sasrec"), ("hr", 5, "pop")]
    auc_sasrec, _, hr_sasrec, hr_pop = got
    assert auc_sasrec["mean_value"] == pytest.approx(0.85)
    assert auc_sasrec["std_value"] == pytest.approx(math.sqrt(2 * 0.05**2))
    assert (auc_sasrec["n_runs"], auc_sasrec["n_seeds"], auc_sasrec["latest_value"]) == (2, 2, 0.9)
    assert (hr_sasrec["min_value"], hr_sasrec["max_value"], hr_sasrec["latest_model_version"]) == (
        0.4, 0.6, "sasrec-r3")
    assert hr_pop["mean_value"] == pytest.approx(0.2) and hr_pop["std_value"] is None and hr_pop["n_runs"] == 1


def test_keyword_frequency_by_version(tiny):
    got = run(tiny, "keyword_frequency_by_version.sql", top="2")
    assert [(r["summarizer_version"], r["modality"], r["keyword_rank"], r["keyword"], r["n_items"]) for r in got] == [
        ("v1", "image", 1, "poster", 1),
        ("v1", "text", 1, "action", 3),  # "Action", "action", "ACTION" fold together; i2 counts once
        ("v1", "text", 2, "drama", 2),
        ("v2", "text", 1, "space", 1),
    ]
    assert [r["item_share"] for r in got] == pytest.approx([1.0, 0.75, 0.5, 1.0])
    assert len(run(tiny, "keyword_frequency_by_version.sql")) == 5  # default top 20 keeps "space" of v1 too


def test_quarantine_summary_by_reason(tiny):
    got = run(tiny, "quarantine_summary.sql")
    assert [
        (r["source_table"], r["reason"], r["n_rows"], r["n_runs"], r["n_rows_latest_run"], r["example_source_rows"])
        for r in got
    ] == [
        ("interactions", "unknown_item", 2, 1, 2, [5, 12]),
        ("interactions", "bad_timestamp", 1, 1, 1, [8]),
        ("items", "missing_item_id", 3, 2, 1, [4]),  # latest items run is q2
        ("items", "conflicting_content", 1, 1, 1, [9]),
    ]
    assert (got[2]["first_seen"], got[2]["last_seen"]) == (ts(1), ts(2))


def test_ingest_run_history(tiny):
    got = run(tiny, "ingest_run_history.sql")
    assert [(r["run_id"], r["table"], r["duration_s"], r["balanced"]) for r in got] == [
        ("rb", "items", 1.0, False),  # 5 in, 4 written, nothing quarantined or duplicate: 1 row unaccounted
        ("ra", "interactions", 4.0, True),
        ("ra", "items", 2.5, True),
    ]
    assert [r["run_id"] for r in run(tiny, "ingest_run_history.sql", runs="1")] == ["rb"]


def test_ready_queries_bind_on_a_warehouse_missing_their_tables(warehouse):
    """A dataset with only items: every ready query still runs (absent known tables are empty views)."""
    from tests._sql_helpers import items_table

    warehouse.write_table("only_items", "items", items_table())
    with SqlEngine(warehouse=warehouse, dataset="only_items") as engine:
        for name in READY:
            assert engine.query((SQL_DIR / name).read_text()).num_rows == 0, name


def test_demo_explained_top5_shows_the_best_explained_users_of_a_date(tiny):
    got = run(tiny, "demo_explained_top5.sql", users="1")  # default run_date: the newest (2026-01-02)
    assert [(r["user_id"], r["rank"], r["item_id"], r["title"]) for r in got] == [
        ("u1", 1, "i1", "Title 1"), ("u1", 2, "i5", "Title 5"), ("u1", 3, "i2", "Title 2")]  # u3 explains nothing
    first = got[0]
    assert (first["history_keywords"], first["neighbor_keywords"], first["neighbors"]) == ("action, space", "war", "u9")
    earlier = run(tiny, "demo_explained_top5.sql", run_date="2026-01-01")
    assert {r["user_id"] for r in earlier} == {"u1", "u2"} and all(r["rank"] <= 5 for r in earlier)


def test_demo_latest_evaluation_one_row_per_model_from_its_latest_run(tiny):
    got = run(tiny, "demo_latest_evaluation.sql")
    assert [r["model"] for r in got] == ["pop", "sasrec"]
    sasrec = got[1]
    assert sasrec["model_version"] == "sasrec-r3" and "AUC 90.00" in sasrec["metrics_x100"]
