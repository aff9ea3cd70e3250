"""Stage-2 retrieval bench: faiss index kinds on synthetic users, refresh vs full build, and ML-100K quality.

Synthetic part (d=64, clustered unit vectors like trained user embeddings), per size:
  build seconds and queries/s (1,000 held-out users, k=12) for exact (IndexFlatIP), IVF and HNSW, recall@3 of
  IVF/HNSW against exact; then, at each ``--refresh-sizes``, for IVF and HNSW, the cost of refreshing 1% of users (load
  index, replace their entries, neighbours of the changed users, save) against a full build (build, neighbours of
  every user, save), as a ratio.
ML-100K part (``--warehouse W --dataset D``, needs ingest + a SASRec run): build-collab four ways side by side
  (SASRec or SASRec+content, last window or all windows), each with the neighbour count, the genre-share ratio of
  neighbours' next items vs random training users (95% bootstrap interval), and vs the same lists shuffled across
  users; then the wall time of a real refresh after 1% of users get a new interaction (on a scratch copy of the
  dataset) against the full build.

    .venv/bin/python bench/retrieval.py                  # 10k, 100k; refresh at 100k (a few minutes)
    .venv/bin/python bench/retrieval.py --full           # + 1M users, refresh at 100k and 1M
    .venv/bin/python bench/retrieval.py --quick          # 10k; refresh at 20k (under a minute)
    .venv/bin/python bench/retrieval.py --only-dataset --warehouse /tmp/wh --dataset movielens-100k
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mmsrarec_lib.runtime_env import apply_offline_defaults  # noqa: E402

apply_offline_defaults()  # offline hubs, no tokenizer threads: the jobs' defaults (mmsrarec_lib/runtime_env.py)

import numpy as np  # noqa: E402

from mmsrarec_lib.collab.index import IndexConfig, build_index, update_index  # noqa: E402
from mmsrarec_lib.collab.store import load_index, save_index  # noqa: E402
from mmsrarec_lib.collab.windows import UserWindow  # noqa: E402
from mmsrarec_lib.storage import Warehouse  # noqa: E402

D, N_QUERIES, FETCH, K = 64, 1000, 12, 3


def synthetic(n: int, *, seed: int = 0, clusters: int = 2000, centres_seed: int = 0) -> np.ndarray:
    """(n, D) float32 unit vectors around ``clusters`` random centres (user embeddings are clustered); the same
    ``centres_seed`` with another ``seed`` gives new users of the same population (held-out queries)."""
    centres = np.random.default_rng(centres_seed).normal(size=(clusters, D)).astype(np.float32)  # (c, D)
    rng = np.random.default_rng(seed + 1000)
    x = centres[rng.integers(0, clusters, size=n)] + 0.6 * rng.normal(size=(n, D)).astype(np.float32)  # (n, D)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def windows_for(n: int) -> list[UserWindow]:
    return [UserWindow(f"u{i}", (), i, f"i{i % 5000}", i) for i in range(n)]


def timed(fn):
    """(result, wall seconds, CPU seconds of this process, all threads): on a shared machine CPU time is the
    steadier figure."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def bench_size(n: int, *, hnsw_max: int) -> list[dict]:
    x = synthetic(n)
    wins = windows_for(n)
    q = synthetic(N_QUERIES, seed=1)  # (N_QUERIES, D) new users, not in the index
    kinds = [("exact", IndexConfig(exact_threshold=n + 1)), ("ivf", IndexConfig(exact_threshold=0, approx="ivf"))]
    if n <= hnsw_max:
        kinds.append(("hnsw", IndexConfig(exact_threshold=0, approx="hnsw")))
    rows, exact_ids = [], None
    for name, cfg in kinds:
        idx, build_s, build_cpu = timed(lambda: build_index(wins, x, config=cfg))
        (_, ids), search_s, search_cpu = timed(lambda idx=idx: idx.search(q, FETCH))
        if name == "exact":
            exact_ids = ids[:, :K]
        recall = float(np.mean([len(set(a[:K]) & set(e)) / K for a, e in zip(ids, exact_ids)]))
        rows.append({"users": n, "index": idx.kind if name != "exact" else "exact", "build_s": round(build_s, 3),
                     "build_cpu_s": round(build_cpu, 3), "qps": round(N_QUERIES / search_s),
                     "qps_per_cpu_s": round(N_QUERIES / max(search_cpu, 1e-9)), "recall@3": round(recall, 4)})
        print(json.dumps(rows[-1]), flush=True)
        del idx
    return rows


def bench_refresh(n: int, *, approx: str = "ivf", frac: float = 0.01) -> dict:
    """Full build (build + neighbours of all n + save) vs refresh of frac*n users (load + update + their
    neighbours + save) on an ``approx`` index. HNSW refreshes add the new vectors and leave tombstones (no
    rebuild below the threshold)."""
    x = synthetic(n, seed=2)
    wins = windows_for(n)
    cfg = IndexConfig(exact_threshold=0, approx=approx)
    with tempfile.TemporaryDirectory() as tmp:
        wh = Warehouse.from_uri(tmp)
        def full():
            idx = build_index(wins, x, config=cfg)
            for s in range(0, n, 20_000):
                idx.search(x[s : s + 20_000], FETCH)
            save_index(wh, "bench", idx)
            return idx

        idx, full_s, full_cpu = timed(full)

        rng = np.random.default_rng(3)
        changed = rng.choice(n, size=max(1, int(n * frac)), replace=False)
        new_x = synthetic(len(changed), seed=4)  # (m, D)
        def refresh():
            upd = update_index(load_index(wh, "bench"), [wins[i] for i in changed], new_x)
            upd.search(new_x, FETCH)
            save_index(wh, "bench", upd)
            return upd.meta

        upd_meta, refresh_s, refresh_cpu = timed(refresh)
    out = {"refresh_users": n, "changed": len(changed), "index": idx.kind, "rebuilt": upd_meta.get("hnsw_rebuilt"),
           "full_build_s": round(full_s, 3),
           "refresh_s": round(refresh_s, 3), "refresh_over_full": round(refresh_s / full_s, 4),
           "full_build_cpu_s": round(full_cpu, 3), "refresh_cpu_s": round(refresh_cpu, 3),
           "refresh_over_full_cpu": round(refresh_cpu / full_cpu, 4)}
    print(json.dumps(out), flush=True)
    return out


# --------------------------------------------------------------------------- ML-100K
def _genres(wh: Warehouse, ds: str) -> dict[str, frozenset[str]]:
    items = wh.read_table(ds, "items", columns=["item_id", "categories"]).to_pylist()
    return {r["item_id"]: frozenset(r["categories"] or ()) for r in items}


def _simulate_new_interactions(wh: Warehouse, ds: str, frac: float, seed: int = 0) -> list[str]:
    """Give ``frac`` of users one new interaction (an unseen item, after everything) and re-derive their
    eval_candidates row as the ingest's append mode would (target = the new item)."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.compute as pc

    from mmsrarec_lib import schemas

    inter = wh.read_table(ds, "interactions")
    ec = wh.read_table(ds, "eval_candidates").to_pylist()
    rng = np.random.default_rng(seed)
    users = sorted(set(inter.column("user_id").to_pylist()))
    changed = sorted(rng.choice(users, size=max(1, int(len(users) * frac)), replace=False).tolist())
    items = sorted(set(inter.column("item_id").to_pylist()))
    when = pc.max(inter.column("timestamp")).as_py() + dt.timedelta(days=1)
    seen: dict[str, list[str]] = {}
    for r in inter.select(["user_id", "item_id"]).to_pylist():
        seen.setdefault(r["user_id"], []).append(r["item_id"])
    new_rows, picks = [], {}
    next_row = pc.max(inter.column("source_row")).as_py() + 1
    for j, u in enumerate(changed):
        pick = next(i for i in rng.permutation(items) if i not in set(seen[u]))
        picks[u] = str(pick)
        new_rows.append({"user_id": u, "item_id": str(pick), "timestamp": when, "rating": 4.0, "event": "rating",
                         "source_row": next_row + j})
    wh.write_table(ds, "interactions", pa.Table.from_pylist(new_rows, schema=schemas.INTERACTIONS), mode="append")
    for r in ec:
        if r["user_id"] in picks:
            r["history"] = (r["history"] + [r["target_item_id"]])[-5:]
            r["target_item_id"], r["target_timestamp"] = picks[r["user_id"]], when
    wh.write_table(ds, "eval_candidates", pa.Table.from_pylist(ec, schema=schemas.EVAL_CANDIDATES))
    return changed


def _quality(wh: Warehouse, ds: str, genres: dict, targets: dict) -> dict:
    """Genre share of the built table's paper rows (all users, and valid+test users only) against random training
    users (their final next item, and any entry's next item) and against shuffled lists."""
    from mmsrarec_lib.collab.quality import genre_share
    from mmsrarec_lib.collab.table import TABLE

    rows = [r for r in wh.read_table(ds, TABLE).to_pylist() if r["protocol"] == "paper"]
    idx = load_index(wh, ds)
    last_next: dict[str, str] = {}
    any_next: dict[str, list[str]] = {}
    for u, n, _pos in sorted(zip(idx.user_ids, idx.next_item_ids, idx.positions), key=lambda t: (t[0], t[2] or 0)):
        last_next[u] = n
        any_next.setdefault(u, []).append(n)
    queries = [(r["user_id"], targets[r["user_id"]].item_id, [n["next_item_id"] for n in r["neighbors"]])
               for r in rows]
    out = {"min_neighbors": min(len(q[2]) for q in queries), "entries": idx.ntotal}
    for name, qs in (("all", queries), ("eval_users", [q for q in queries if targets[q[0]].split != "train"])):
        g = genre_share(qs, training_next=last_next, genres=genres, bootstrap=1000)
        g_any = genre_share(qs, training_next=any_next, genres=genres)
        out[name] = {"queries": g.n_queries, "neighbors": round(g.neighbor_share, 4),
                     "random": round(g.random_share, 4), "ratio": round(g.ratio, 3),
                     "ratio_ci95": [round(v, 3) for v in g.ratio_ci],
                     "random_any_entry": round(g_any.random_share, 4), "ratio_any_entry": round(g_any.ratio, 3),
                     "shuffled": round(g.shuffled_share, 4), "ratio_to_shuffled": round(g.ratio_to_shuffled, 3)}
    return out


def plot_quality(variants: list[dict], path: str) -> None:
    """Bar chart: genre-share ratio (95% interval) and ratio to shuffled lists, per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [v["variant"].replace(" (", "\n(") for v in variants]
    ratio = [v["all"]["ratio"] for v in variants]
    lo = [r - v["all"]["ratio_ci95"][0] for r, v in zip(ratio, variants)]
    hi = [v["all"]["ratio_ci95"][1] - r for r, v in zip(ratio, variants)]
    shuffled = [v["all"]["ratio_to_shuffled"] for v in variants]
    x = np.arange(len(variants))
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(x - 0.2, ratio, 0.4, yerr=[lo, hi], capsize=4, label="vs random training users (95% CI)")
    ax.bar(x + 0.2, shuffled, 0.4, label="vs the same lists shuffled across users")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0.9, max(r + h for r, h in zip(ratio, hi)) + 0.05)
    ax.set_ylabel("genre-share ratio")
    ax.set_title(f"Stage 2 on ML-100K: do neighbours' next items match the user's? ({variants[0]['all']['queries']} "
                 "users)", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}", flush=True)


def bench_ml100k(warehouse: str, ds: str, *, frac: float = 0.01, plot: str | None = None,
                 image_variants: bool = False) -> dict:
    """Side by side in one run: the paper's reading (SASRec, one last window per user), all windows, content
    joined, and both (the default); then a real refresh of the default after ``frac`` of users change.
    ``image_variants``: instead, the default against the default with pretrained image features joined to the
    content vector (``content_image_weight`` 0.5 and 1; needs ``item_image_features``), no refresh."""
    from mmsrarec_lib.collab.build import CollabConfig, build_collab
    from mmsrarec_lib.collab.content import EmbedderConfig
    from mmsrarec_lib.collab.embed import sasrec_embedder
    from mmsrarec_lib.collab.refresh import refresh_collab
    from mmsrarec_lib.collab.table import load_keywords
    from mmsrarec_lib.collab.windows import WindowConfig, load_targets

    variants = [
        ("sasrec, last window (paper)", WindowConfig(entries="last"), EmbedderConfig(kind="sasrec")),
        ("sasrec, all windows", WindowConfig(), EmbedderConfig(kind="sasrec")),
        ("hybrid, last window", WindowConfig(entries="last"), EmbedderConfig()),
        ("hybrid, all windows (default)", WindowConfig(), EmbedderConfig()),
    ]
    if image_variants:
        variants = [variants[-1]] + [
            (f"hybrid + image x{w}, all windows", WindowConfig(), EmbedderConfig(content_image_weight=w))
            for w in (0.5, 1.0)
        ]
    src = Warehouse.from_uri(warehouse)
    with tempfile.TemporaryDirectory() as tmp:
        names = ("interactions", "eval_candidates", "items", "models")
        if image_variants:
            names += ("item_image_features",)
        for name in names:
            shutil.copytree(Path(src.uri(ds, name)), Path(tmp) / ds / name)
        wh = Warehouse.from_uri(tmp)
        embedder, run_id = sasrec_embedder(wh, ds)
        keywords, source = load_keywords(wh, ds, None)
        genres, targets = _genres(wh, ds), load_targets(wh, ds)
        results = []
        for label, window, emb_cfg in variants:
            config = CollabConfig(dataset=ds, window=window, embedder=emb_cfg)
            res, build_s, build_cpu = timed(lambda: build_collab(
                wh, config=config, embedder=embedder, embedder_info={"type": "sasrec", "run_id": run_id},
                keywords=keywords, keyword_source=source))
            row = {"variant": label, "sasrec_run": run_id, "build_s": round(build_s, 2),
                   "build_cpu_s": round(build_cpu, 2), "rows_with_fewer_than_3": res.n_short,
                   **_quality(wh, ds, genres, targets)}
            print(json.dumps(row), flush=True)
            results.append(row)
        if image_variants:
            return {"variants": results}
        if plot:
            plot_quality(results, plot)
        changed = _simulate_new_interactions(wh, ds, frac)  # the default variant was built last
        ref, refresh_s, refresh_cpu = timed(lambda: refresh_collab(wh, dataset=ds, embedder=embedder,
                                                                   keywords=keywords))
    out = {
        "dataset": ds, "refresh_changed_users": len(changed), "refresh_training_users": ref.n_indexed,
        "refresh_index_entries": ref.n_entries, "refresh_s": round(refresh_s, 2),
        "refresh_over_full": round(refresh_s / build_s, 4), "refresh_cpu_s": round(refresh_cpu, 2),
        "refresh_over_full_cpu": round(refresh_cpu / build_cpu, 4),
    }
    print(json.dumps(out), flush=True)
    return {"variants": results, "refresh": out}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="10k users only, refresh at 20k (a smoke run)")
    p.add_argument("--full", action="store_true", help="also 1M users (minutes of k-means on 2 cores)")
    p.add_argument("--sizes", default=None, help="comma-separated user counts (default 10000,100000)")
    p.add_argument("--hnsw-max", type=int, default=1_000_000, help="skip HNSW above this many users")
    p.add_argument("--refresh-sizes", default=None,
                   help="comma-separated user counts for the refresh-vs-full comparison (default 100000; with "
                        "--full 100000,1000000; with --quick 20000; 0: skip)")
    p.add_argument("--threads", type=int, default=2, help="faiss OpenMP threads")
    p.add_argument("--warehouse", help="also run the ML-100K part on this warehouse")
    p.add_argument("--dataset", default="movielens-100k")
    p.add_argument("--only-dataset", action="store_true", help="skip the synthetic part (needs --warehouse)")
    p.add_argument("--plot", default="docs/collab_quality.png", help="PNG of the ML-100K quality comparison")
    p.add_argument("--image-variants", action="store_true",
                   help="ML-100K: the default vs content vectors with image features joined (no plot, no refresh)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    default_sizes = "10000" if args.quick else "10000,100000,1000000" if args.full else "10000,100000"
    sizes = [int(s) for s in (args.sizes or default_sizes).split(",")]
    default_refresh = "20000" if args.quick else "100000,1000000" if args.full else "100000"
    refresh_sizes = [int(v) for v in (args.refresh_sizes or default_refresh).split(",") if int(v) > 0]
    if not args.only_dataset:
        for n in sizes:
            bench_size(n, hnsw_max=args.hnsw_max)
        for refresh_size in refresh_sizes:
            for approx in ("ivf", "hnsw") if refresh_size <= args.hnsw_max else ("ivf",):
                bench_refresh(refresh_size, approx=approx)
    if args.warehouse:
        bench_ml100k(args.warehouse, args.dataset, plot=None if args.image_variants else args.plot,
                     image_variants=args.image_variants)
    return 0


if __name__ == "__main__":
    sys.exit(main())
