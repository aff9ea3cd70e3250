"""A tiny warehouse with every table the SQL layer knows, with values small enough to check results by hand.

Popularity (interactions per item): i1=4, i2=3, i3=2, i4=1, i5=0.
Recommendations: run_date 2026-01-01 has u1 (i3, i4) and u2 (i1, i2); run_date 2026-01-02 (today) has u1
(i1, i5, i2) and u3 (i2, i4). u2 was not recomputed today, so its latest list is the 2026-01-01 one.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from mmsrarec_lib import schemas
from mmsrarec_lib.storage import Warehouse

DATASET = "tiny"
UTC = dt.UTC


def ts(hour: int, minute: int = 0, second: float = 0.0) -> dt.datetime:
    whole = int(second)
    return dt.datetime(2026, 1, 1, hour, minute, whole, int(round((second - whole) * 1e6)), tzinfo=UTC)


def rows(schema: pa.Schema, records: list[dict]) -> pa.Table:
    """A table of ``schema`` from dicts; missing fields are NULL."""
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in records], schema=schema)


def items_table(n: int = 5) -> pa.Table:
    return rows(
        schemas.ITEMS,
        [
            {"item_id": f"i{k}", "title": f"Title {k}", "description": f"about {k}", "categories": ["c"],
             "image_bytes": b"\xff\xd8\xff" + bytes(k) if k == 1 else None, "image_status": "ok" if k == 1 else "none",
             "source_row": k}
            for k in range(1, n + 1)
        ],
    )


def interactions_table() -> pa.Table:
    counts = {"i1": 4, "i2": 3, "i3": 2, "i4": 1}
    records, row = [], 0
    for item, count in counts.items():
        for j in range(count):
            row += 1
            records.append({"user_id": f"u{j + 1}", "item_id": item, "timestamp": ts(1, row), "rating": 4.0,
                            "source_row": row})
    return rows(schemas.INTERACTIONS, records)


def _rec(day: int, user: str, rank: int, item: str, history: list[str], neighbor: list[str]) -> dict:
    return {
        "run_date": dt.date(2026, 1, day), "user_id": user, "rank": rank, "item_id": item,
        "score": round(1.0 - rank / 10, 2), "model_version": f"m{day}",
        "explanation": {"history_keywords": history, "neighbor_keywords": neighbor, "neighbor_ids": ["u9"]},
        "created_at": ts(day),
    }


def recommendations_table() -> pa.Table:
    return rows(
        schemas.RECOMMENDATIONS,
        [
            _rec(1, "u1", 1, "i3", ["old"], []),
            _rec(1, "u1", 2, "i4", [], []),
            _rec(1, "u2", 1, "i1", ["a"], ["b", "c"]),
            _rec(1, "u2", 2, "i2", [], []),
            _rec(2, "u1", 1, "i1", ["action", "space"], ["war"]),
            _rec(2, "u1", 2, "i5", [], ["comedy"]),
            _rec(2, "u1", 3, "i2", ["drama"], []),
            _rec(2, "u3", 1, "i2", [], []),
            _rec(2, "u3", 2, "i4", [], []),
        ],
    )


def evaluation_runs_table() -> pa.Table:
    def ev(run: str, model: str, seed: int, metric: str, k: int | None, value: float, hour: int) -> dict:
        return {"run_id": run, "dataset": DATASET, "model": model, "model_version": f"{model}-{run}",
                "protocol": "paper", "metric": metric, "k": k, "value": value, "n_users": 10, "seed": seed,
                "created_at": ts(hour)}

    return rows(
        schemas.EVALUATION_RUNS,
        [
            ev("r1", "pop", 0, "hr", 5, 0.2, 1), ev("r1", "pop", 0, "auc", None, 0.5, 1),
            ev("r2", "sasrec", 0, "hr", 5, 0.4, 2), ev("r2", "sasrec", 0, "auc", None, 0.8, 2),
            ev("r3", "sasrec", 1, "hr", 5, 0.6, 3), ev("r3", "sasrec", 1, "auc", None, 0.9, 3),
        ],
    )


def item_keywords_table() -> pa.Table:
    def kw(item: str, modality: str, words: list[str], version: str) -> dict:
        return {"item_id": item, "modality": modality, "keywords": words, "summarizer_version": version,
                "created_at": ts(1)}

    return rows(
        schemas.ITEM_KEYWORDS,
        [
            kw("i1", "text", ["Action", " space "], "v1"),
            kw("i2", "text", ["action", "drama", "ACTION"], "v1"),
            kw("i3", "text", ["drama"], "v1"),
            kw("i4", "text", ["action"], "v1"),
            kw("i1", "text", ["space"], "v2"),
            kw("i1", "image", ["poster"], "v1"),
        ],
    )


def quarantine_tables() -> tuple[pa.Table, pa.Table]:
    def q(run: str, reason: str, row: int, hour: int) -> dict:
        return {"run_id": run, "reason": reason, "source_row": row, "raw_row": "{}", "created_at": ts(hour)}

    items_q = rows(
        schemas.QUARANTINE,
        [q("q1", "missing_item_id", 7, 1), q("q1", "missing_item_id", 3, 1),
         q("q2", "missing_item_id", 4, 2), q("q2", "conflicting_content", 9, 2)],
    )
    interactions_q = rows(
        schemas.QUARANTINE,
        [q("q2", "unknown_item", 12, 2), q("q2", "unknown_item", 5, 2), q("q2", "bad_timestamp", 8, 2)],
    )
    return items_q, interactions_q


def ingest_runs_table() -> pa.Table:
    def run(run_id: str, table: str, counts: tuple[int, int, int, int], start: dt.datetime, end: dt.datetime):
        rows_in, written, quarantined, duplicate = counts
        return {"run_id": run_id, "dataset": DATASET, "table": table, "rows_in": rows_in, "rows_written": written,
                "rows_quarantined": quarantined, "rows_duplicate": duplicate, "started_at": start,
                "finished_at": end, "code_version": "abc"}

    return rows(
        schemas.INGEST_RUNS,
        [
            run("ra", "items", (10, 8, 1, 1), ts(10), ts(10, 0, 2.5)),
            run("ra", "interactions", (20, 18, 2, 0), ts(10), ts(10, 0, 4)),
            run("rb", "items", (5, 4, 0, 0), ts(11), ts(11, 0, 1)),
        ],
    )


def build_tiny_warehouse(warehouse: Warehouse, *, dataset: str = DATASET) -> Warehouse:
    """Write every table above (one commit each; recommendations partitioned by run_date)."""
    items_q, interactions_q = quarantine_tables()
    warehouse.write_table(dataset, "items", items_table())
    warehouse.write_table(dataset, "interactions", interactions_table())
    warehouse.write_table(dataset, "items_quarantine", items_q)
    warehouse.write_table(dataset, "interactions_quarantine", interactions_q)
    warehouse.write_table(dataset, "ingest_runs", ingest_runs_table())
    warehouse.write_table(dataset, "evaluation_runs", evaluation_runs_table())
    warehouse.write_table(dataset, "item_keywords", item_keywords_table())
    warehouse.write_table(dataset, "recommendations", recommendations_table(), partition_by=["run_date"])
    return warehouse
