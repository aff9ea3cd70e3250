"""``make demo``: run the pipeline end to end on the default data and show a few rows (grows as stages land).

For now: ingest movielens-100k into the warehouse ($MMSRAREC_WAREHOUSE, else ./warehouse), then print where each
table is, its row count and a few rows.
"""

from __future__ import annotations

import sys

DATASET = "movielens-100k"
SHOW = {
    "items": ["item_id", "title", "categories", "image_status", "image_width", "image_height"],
    "interactions": ["user_id", "item_id", "timestamp", "rating"],
    "user_sequences": ["user_id", "length", "item_ids"],
    "split_loo": ["user_id", "split", "target_item_id", "history"],
    "eval_candidates": ["user_id", "split", "history", "target_item_id", "negative_item_ids"],
    "ingest_runs": ["table", "rows_in", "rows_written", "rows_quarantined", "rows_duplicate"],
}


def _short(value: object, width: int = 60) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def main(argv: list[str] | None = None) -> int:
    from jobs._common import setup_logging
    from mmsrarec_lib.ingest.movielens import load_movielens
    from mmsrarec_lib.ingest.pipeline import TABLES, IngestConfig, run_ingest
    from mmsrarec_lib.storage import Warehouse

    setup_logging()
    warehouse = Warehouse.from_uri(None)
    items, interactions = load_movielens()
    summary = run_ingest(warehouse=warehouse, items=items, interactions=interactions,
                         config=IngestConfig(dataset=DATASET))
    print(f"\n== ingest {summary.run_id}: {summary.seconds}")
    print(f"images: {summary.image_status}; eval_candidates users per split: {summary.eval_split_users}")
    for table in (*TABLES, "ingest_runs"):
        data = warehouse.read_table(DATASET, table)
        print(f"\n-- {table}: {data.num_rows} rows at {warehouse.table_uri(DATASET, table)}")
        cols = SHOW.get(table, data.column_names)
        for row in data.select(cols).slice(0, 3).to_pylist():
            print("   ", {k: _short(v) for k, v in row.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
