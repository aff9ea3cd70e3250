"""The quality gate's SQL assertions (sql/quality/): each one catches its own defect with the exact offending count,
and a clean day passes all of them."""

from __future__ import annotations

import datetime as dt
import math

import pyarrow as pa
import pytest

from mmsrarec_lib import schemas
from mmsrarec_lib.recommend.gate import QualityGateError, assertions, evaluate_assertions
from mmsrarec_lib.sql.catalog import render_catalog

DAY = dt.date(2026, 3, 1)
ITEMS = pa.table({"item_id": [f"i{k}" for k in range(6)]})
# u1 saw i0, i1; u2 saw i0..i3 (2 unseen left: fewer than K=3); u3 saw everything
SEQS = pa.table({"user_id": ["u1", "u2", "u3"],
                 "item_ids": [["i0", "i1"], ["i0", "i1", "i2", "i3"], [f"i{k}" for k in range(6)]]})
USERS = ["u1", "u2", "u3"]


def _row(user: str, rank: int, item: str | None, score: float | None = 0.5, day: dt.date = DAY) -> dict:
    return {"run_date": day, "user_id": user, "rank": rank, "item_id": item, "score": score, "model_version": "m",
            "explanation": {"history_keywords": [], "neighbor_keywords": [], "neighbor_ids": []},
            "created_at": dt.datetime(2026, 3, 1, tzinfo=dt.UTC)}


def _clean() -> list[dict]:
    return [_row("u1", 1, "i2", 0.9), _row("u1", 2, "i3", 0.8), _row("u1", 3, "i4", 0.7),
            _row("u2", 1, "i4", 0.6), _row("u2", 2, "i5", 0.5)]


def _check(rows: list[dict], users=USERS) -> dict[str, int]:
    staged = pa.Table.from_pylist(rows, schema=schemas.RECOMMENDATIONS)
    return evaluate_assertions(staged=staged, users=users, items=ITEMS, user_sequences=SEQS, top_k=3, run_date=DAY)


def _failing(rows: list[dict], users=USERS) -> dict[str, int]:
    return {k: v for k, v in _check(rows, users).items() if v}


def test_the_assertions_are_the_documented_ones():
    assert sorted(assertions()) == ["duplicate_user_item", "duplicate_user_rank", "finite_scores", "known_items",
                                    "rank_sequence", "rows_per_user", "run_date", "seen_items"]
    catalog = render_catalog()
    for name, sql in assertions().items():
        assert sql.startswith("-- ") and f"quality/{name}.sql" in catalog, name


def test_a_clean_day_passes_every_assertion_including_users_with_fewer_unseen_items():
    assert _check(_clean()) == dict.fromkeys(assertions(), 0)


def test_a_user_with_too_few_or_too_many_rows_or_one_outside_the_selection():
    assert _failing(_clean()[:-1]) == {"rows_per_user": 1}  # u2 has 2 unseen items but got 1 row
    assert _failing(_clean(), users=["u1", "u2", "u3", "u4"]) == {"rows_per_user": 1}  # u4 (no history): 0 of 3
    extra = _clean() + [_row("u9", 1, "i1")]
    assert _failing(extra) == {"rows_per_user": 1}  # u9 was not selected


def test_duplicates_ranks_seen_items_scores_unknown_items_and_dates_each_name_their_count():
    rows = _clean()
    rows[2] = _row("u1", 2, "i4", 0.7)  # rank 2 twice, rank 3 missing
    assert _failing(rows) == {"rank_sequence": 1, "duplicate_user_rank": 1}
    rows = _clean()
    rows[2] = _row("u1", 3, "i3", 0.7)  # i3 twice for u1
    assert _failing(rows) == {"duplicate_user_item": 1}
    rows = _clean()
    rows[0] = _row("u1", 1, "i0", 0.9)  # u1 already had i0
    rows[3] = _row("u2", 1, "i1", 0.6)  # u2 already had i1
    assert _failing(rows) == {"seen_items": 2}
    rows = _clean()
    rows[0]["score"], rows[1]["score"], rows[2]["score"] = math.nan, math.inf, None
    assert _failing(rows) == {"finite_scores": 3}
    rows = _clean()
    rows[4] = _row("u2", 2, "i99", 0.5)
    assert _failing(rows) == {"known_items": 1}
    rows = _clean()
    rows[4] = _row("u2", 2, "i5", 0.5, day=DAY - dt.timedelta(days=1))
    assert _failing(rows) == {"run_date": 1}


def test_the_gate_error_names_each_failed_assertion_and_its_count():
    err = QualityGateError({"seen_items": 2, "finite_scores": 3}, run_date=DAY)
    assert "seen_items: 2 offending" in str(err) and "finite_scores: 3 offending" in str(err)
    assert "2026-03-01" in str(err) and err.failures == {"seen_items": 2, "finite_scores": 3}


@pytest.mark.parametrize("top_k", [1, 2])
def test_k_comes_from_the_run(top_k):
    staged = pa.Table.from_pylist([r for r in _clean() if r["rank"] <= top_k], schema=schemas.RECOMMENDATIONS)
    got = evaluate_assertions(staged=staged, users=USERS, items=ITEMS, user_sequences=SEQS, top_k=top_k,
                              run_date=DAY)
    assert got["rows_per_user"] == 0
