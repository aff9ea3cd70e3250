"""Bench of stage 1: items/s per summarizer backend, and the cost of a backfill after 1% of the items change.

    python bench/summarize.py --warehouse /tmp/wh --dataset movielens-100k [--quick]
    python bench/summarize.py --warehouse /tmp/wh --image-quality [--tiny-items 200]

``--image-quality`` instead measures the image keywords (``image_quality.py``) with the warehouse's trained
policies: coverage, the own-vs-random win rate against the item's own text (with a 95% bootstrap interval) for the
tuned policy, the untrained policy, the nearest catalogue phrases alone and ImageNet's top-3 class names (and the
tiny random LLaVA, today's former default, on ``--tiny-items`` items), whether the image reward tracks the text it
never sees, and ten posters' keywords.

Reads the dataset's ``items`` table (run ``mmsrarec ingest`` first), copies it into a scratch warehouse and
times ``summarize`` work there (model loading reported separately, as it is a fixed cost per run).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from mmsrarec_lib.runtime_env import apply_offline_defaults  # noqa: E402

apply_offline_defaults()  # offline hubs, no tokenizer threads: the jobs' defaults (mmsrarec_lib/runtime_env.py)


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
    ap.add_argument("--warehouse", default=os.environ.get("MMSRAREC_WAREHOUSE", "warehouse"))
    ap.add_argument("--dataset", default="movielens-100k")
    ap.add_argument("--quick", action="store_true", help="fewer items (400 extractive / 16 mllm)")
    ap.add_argument("--items", type=int, default=None, help="items for the extractive runs (default: all)")
    ap.add_argument("--mllm-items", type=int, default=64)
    ap.add_argument("--image-quality", action="store_true", help="measure the image keywords instead")
    ap.add_argument("--tiny-items", type=int, default=200, help="--image-quality: items for the tiny LLaVA (0: skip)")
    ap.add_argument("--tracks-only", action="store_true", help="--image-quality: only the reward-vs-text check")
    ap.add_argument("--policy-run", default=None, help="--image-quality: policy run (default: the latest)")
    args = ap.parse_args()
    if args.image_quality:
        image_quality(args.warehouse, args.dataset, tiny_items=args.tiny_items, policy_run=args.policy_run,
                      tracks_only=args.tracks_only)
        return

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
        if src.has_table(ds, "item_image_features"):  # else the extractive runs encode every image first
            wh.write_table(ds, "item_image_features", src.read_table(ds, "item_image_features"))
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


def _fmt(w) -> str:
    return f"{w.rate:.3f} [{w.ci95[0]:.3f}, {w.ci95[1]:.3f}] (n={w.n})"


def _tracks(ctx, items, encoder) -> None:
    import json

    from mmsrarec_lib.summarize.image_quality import reward_tracks_text
    from mmsrarec_lib.summarize.rewards import keyword_vector

    sample = [it for it in items if it.item_id in ctx.space][::5]
    tracks = reward_tracks_text(
        [ctx.builder.build(it.item_id).phrases for it in sample], [it.item_id for it in sample],
        encoder.encode([it.text for it in sample]),
        terms=lambda sets, ids: [{"r_info": t.r_info, "r_recon": t.r_recon} for t in ctx.scorer.score(sets, ids)],
        embed=lambda kws: keyword_vector(kws, encoder))
    for key, row in tracks.items():
        print(f"image {key} vs own-text margin, 2-keyword sets (within-item Spearman): {json.dumps(row)}")


def image_quality(warehouse: str, ds: str, *, tiny_items: int, policy_run: str | None,
                  tracks_only: bool = False) -> None:
    import json

    import numpy as np

    from mmsrarec_lib.storage import Warehouse
    from mmsrarec_lib.summarize.encoders import make_encoder
    from mmsrarec_lib.summarize.image_context import build_image_context
    from mmsrarec_lib.summarize.image_keywords import ImageExtractiveSummarizer
    from mmsrarec_lib.summarize.image_quality import own_vs_random
    from mmsrarec_lib.summarize.policy import PolicyConfig, SelectionPolicy
    from mmsrarec_lib.summarize.rewards import RewardConfig, keyword_vector
    from mmsrarec_lib.summarize.service import (
        build_summarizer,
        load_image_policy,
        load_items,
        load_policy,
        local_copy,
        models_uri,
        reward_config_from,
    )

    wh = Warehouse.from_uri(warehouse)
    catalogue = load_items(wh, ds)
    encoder = make_encoder("minilm")
    _, run = load_policy(wh, ds, policy_run=policy_run)
    reward = reward_config_from(local_copy(wh, models_uri(wh, ds, run)) if run else None, RewardConfig())
    t0 = time.perf_counter()
    ctx = build_image_context(wh, ds, catalogue=catalogue, encoder=encoder, reward_config=reward)
    print(f"image context (maps, vocabulary): {time.perf_counter() - t0:.1f} s; policy run {run}")
    items = [it for it in catalogue if it.has_input("image")]
    own = encoder.encode([it.text for it in items])
    if tracks_only:
        _tracks(ctx, items, encoder)
        return

    def vecs(lists):
        return np.stack([keyword_vector(k, encoder) for k in lists])

    def run_policy(policy):
        summ = ImageExtractiveSummarizer(policy=policy, builder=ctx.builder, scorer=ctx.scorer)
        got = {r.item_id: r.keywords for r in summ.summarize_modality(items)}
        return [got.get(it.item_id, []) for it in items]

    t0 = time.perf_counter()
    tuned = run_policy(load_image_policy(wh, ds, run=run))
    tuned_s = time.perf_counter() - t0
    from mmsrarec_lib.summarize.image_keywords import IMAGE_FEATURES

    untrained = run_policy(SelectionPolicy(PolicyConfig(), features=IMAGE_FEATURES))
    nearest = [ctx.builder.build(it.item_id).phrases[:5] if it.item_id in ctx.space else [] for it in items]
    top3 = [[ctx.builder.short_names.get(lb, lb).lower() for lb, _ in ctx.builder.class_top.get(it.item_id, [])[:3]]
            for it in items]
    rows = {"items_with_ok_image": len(items),
            "with_keyword": sum(bool(k) for k in tuned),
            "coverage": round(sum(bool(k) for k in tuned) / len(items), 4),
            "mean_keywords": round(float(np.mean([len(k) for k in tuned])), 2), "summarize_s": round(tuned_s, 1)}
    print(json.dumps(rows))
    for label, lists in (("tuned policy (default)", tuned), ("untrained policy", untrained),
                         ("nearest 5 catalogue phrases", nearest), ("ImageNet top-3 classes", top3)):
        print(f"own-vs-random win rate, {label:28s}: {_fmt(own_vs_random(vecs(lists), own))}")
    if tiny_items:
        sample = items[:: max(1, len(items) // tiny_items)][:tiny_items]
        tiny = build_summarizer(wh, ds, backend="extractive", items=sample, catalogue=catalogue, image_model="tiny")
        got = {r.item_id: r.keywords for r in tiny.image_summarizer.summarize_modality(sample, "image")}
        lists = [got.get(it.item_id, []) for it in sample]
        idx = [items.index(it) for it in sample]
        print(f"tiny LLaVA (former default) on {len(sample)} items: {sum(bool(k) for k in lists)} with a keyword; "
              f"win rate {_fmt(own_vs_random(vecs(lists), own[idx]))}; same items, tuned policy "
              f"{_fmt(own_vs_random(vecs([tuned[i] for i in idx]), own[idx]))}")
    _tracks(ctx, items, encoder)
    for it, kws in list(zip(items, tuned))[:: max(1, len(items) // 10)][:10]:
        print(f"  {it.title!r}: {kws}")


if __name__ == "__main__":
    main()
