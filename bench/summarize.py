"""Bench of stage 1: items/s per summarizer backend, and the cost of a backfill after 1% of the items change.

    python bench/summarize.py --warehouse /tmp/wh --dataset movielens-100k [--quick]

Reads the dataset's ``items`` table (run ``mmsrarec ingest`` first), copies it into a scratch warehouse and
times ``summarize`` work there (model loading reported separately, as it is a fixed cost per run).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _timed_run(wh, ds, *, summarizer, version, backfill, items, chunk_size):
    from mmsrarec_lib.summarize.table import existing_hashes, plan_work, write_chunks

    t0 = time.perf_counter()
    done = existing_hashes(wh, ds, version=version) if backfill else {}
    plan = plan_work(items, modalities=summarizer.modalities, done=done, backfill=backfill)
    stats = write_chunks(wh, ds, plan=plan, summarize=summarizer.summarize, version=version, chunk_size=chunk_size,
                         progress=False)
    return time.perf_counter() - t0, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warehouse", required=True)
    ap.add_argument("--dataset", default="movielens-100k")
    ap.add_argument("--quick", action="store_true", help="fewer items (400 extractive / 16 mllm)")
    ap.add_argument("--items", type=int, default=None, help="items for the extractive runs (default: all)")
    ap.add_argument("--mllm-items", type=int, default=64)
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.compute as pc

    from mmsrarec_lib.storage import Warehouse
    from mmsrarec_lib.summarize.service import build_summarizer, load_items

    src = Warehouse.from_uri(args.warehouse)
    n_ext = 400 if args.quick and args.items is None else args.items
    n_mllm = 16 if args.quick else args.mllm_items
    items_tbl = src.read_table(args.dataset, "items")
    with tempfile.TemporaryDirectory() as tmp:
        wh = Warehouse.from_uri(tmp)
        ds = args.dataset
        wh.write_table(ds, "items", items_tbl)
        catalogue = load_items(wh, ds)
        items = catalogue[:n_ext] if n_ext else catalogue
        print(f"items: {len(items)} of {len(catalogue)}; cpu cores: {os.cpu_count()}")

        results = {}
        version = "bench-backfill"  # the cold extractive/minilm run doubles as the full run the backfill is compared to
        for label, kwargs, n in (
            ("extractive/hashing", {"backend": "extractive", "encoder_name": "hashing"}, len(items)),
            ("extractive/minilm", {"backend": "extractive", "encoder_name": "minilm"}, len(items)),
            ("mllm/tiny text+image", {"backend": "mllm", "encoder_name": "minilm", "model": "tiny"}, n_mllm),
        ):
            t0 = time.perf_counter()
            summ = build_summarizer(wh, ds, items=items[:n], catalogue=catalogue, **kwargs)
            load_s = time.perf_counter() - t0
            v = version if label == "extractive/minilm" else label.replace("/", "-").replace(" ", "_")
            secs, stats = _timed_run(wh, ds, summarizer=summ, version=v, backfill=False, items=items[:n],
                                     chunk_size=128)
            results[label] = (kwargs, secs, stats)
            print(f"{label:24s} {n:5d} items  {n / secs:8.1f} items/s  ({stats['rows_written']} rows, "
                  f"{stats['commits']} commits, {secs:.1f} s; load {load_s:.1f} s)")

        # backfill after 1% of the items change, with a fresh (cold-cache) extractive/minilm summarizer
        kwargs, full_s, full = results["extractive/minilm"]
        n_change = max(1, len(items) // 100)
        ids = {it.item_id for it in items[:: max(1, len(items) // n_change)][:n_change]}
        mask = pc.is_in(items_tbl.column("item_id"), value_set=pa.array(sorted(ids)))
        desc = pc.if_else(mask, pc.binary_join_element_wise(pc.fill_null(items_tbl.column("description"), ""),
                                                            " (re-released)", ""), items_tbl.column("description"))
        wh.write_table(ds, "items", items_tbl.set_column(items_tbl.schema.get_field_index("description"),
                                                           "description", desc))
        catalogue2 = load_items(wh, ds)
        items2 = catalogue2[:n_ext] if n_ext else catalogue2
        summ = build_summarizer(wh, ds, items=items2, catalogue=catalogue2, **kwargs)
        back_s, back = _timed_run(wh, ds, summarizer=summ, version=version, backfill=True, items=items2,
                                  chunk_size=128)
        print(f"full run: {full['items']} items in {full_s:.2f} s; backfill after {len(ids)} changed "
              f"({100 * len(ids) / len(items):.1f}%): {back['items']} items, {back['rows_written']} rows in "
              f"{back_s:.2f} s")
        print(f"backfill/full cost ratio: {back_s / full_s:.4f} (items ratio {back['items'] / full['items']:.4f})")


if __name__ == "__main__":
    main()
