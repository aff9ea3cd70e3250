"""Benchmark of the evaluation harness and the ID baselines; prints its figures (eval times: best of 3).

- SASRec training seconds per epoch (full-protocol training data);
- evaluation throughput (users/s) of SASRec and Pop under the ``paper`` and ``full`` protocols;
- full-catalogue evaluation time with the catalogue at 1x, 2x and 4x its size (extra items get copies of real
  item embeddings plus noise, so scores stay realistic).

Reads ``--dataset`` from ``--warehouse`` (default $MMSRAREC_WAREHOUSE); when that dataset has no ``split_loo`` it
writes a synthetic dataset of ML-100K's shape (943 users, 1,682 items, ~106 items a user) to a temp folder.
Usage: ``python bench/baselines.py [--warehouse /tmp/wh --dataset movielens-100k] [--quick] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mmsrarec_lib.runtime_env import apply_offline_defaults  # noqa: E402

apply_offline_defaults()  # offline hubs, no tokenizer threads: the jobs' defaults (mmsrarec_lib/runtime_env.py)

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import torch  # noqa: E402

from mmsrarec_lib import schemas  # noqa: E402
from mmsrarec_lib.eval import protocols  # noqa: E402
from mmsrarec_lib.models.baselines import SASRecScorer  # noqa: E402
from mmsrarec_lib.models.pop import PopScorer  # noqa: E402
from mmsrarec_lib.models.sasrec import SASRec, SASRecConfig, train_sasrec  # noqa: E402
from mmsrarec_lib.runtime_env import configure_threads  # noqa: E402
from mmsrarec_lib.storage import Warehouse  # noqa: E402


def synthetic_dataset(wh: Warehouse, dataset: str, *, n_users: int = 943, n_items: int = 1682, seed: int = 0) -> None:
    """ML-100K-shaped data: Zipf-popular items, each user a random walk that often moves to a nearby item."""
    rng = np.random.default_rng(seed)
    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    pop = 1.0 / np.arange(1, n_items + 1)
    pop /= pop.sum()
    items = [f"i{k}" for k in range(n_items)]
    seqs = {}
    for u in range(n_users):
        length = int(np.clip(rng.lognormal(4.2, 0.8), 20, 700))
        cur, seq, seen = int(rng.integers(n_items)), [], set()
        while len(seq) < min(length, n_items // 2):
            cur = (cur + int(rng.integers(1, 4))) % n_items if rng.random() < 0.6 else int(rng.choice(n_items, p=pop))
            if cur not in seen:
                seen.add(cur)
                seq.append(items[cur])
        seqs[f"u{u}"] = seq
    wh.write_table(dataset, "items", pa.Table.from_pylist([{"item_id": i} for i in items], schema=schemas.ITEMS))
    wh.write_table(dataset, "user_sequences", pa.Table.from_pylist(
        [{"user_id": u, "item_ids": s, "length": len(s)} for u, s in seqs.items()], schema=schemas.USER_SEQUENCES))
    loo = [{"user_id": u, "split": sp, "history": s[: len(s) - b], "target_item_id": s[len(s) - b],
            "target_timestamp": t0} for u, s in seqs.items() for sp, b in (("train", 3), ("valid", 2), ("test", 1))]
    wh.write_table(dataset, "split_loo", pa.Table.from_pylist(loo, schema=schemas.SPLIT_LOO))
    cands = []
    for n, (u, s) in enumerate(seqs.items()):
        unseen = np.setdiff1d(np.arange(n_items), [int(i[1:]) for i in s])
        negs = [items[j] for j in rng.choice(unseen, 20, replace=False)]
        split = "valid" if n % 10 == 8 else "test" if n % 10 == 9 else "train"
        cands.append({"user_id": u, "split": split, "history": s[-6:-1], "target_item_id": s[-1],
                      "target_timestamp": t0, "negative_item_ids": negs})
    wh.write_table(dataset, "eval_candidates", pa.Table.from_pylist(cands, schema=schemas.EVAL_CANDIDATES))


def widen(model: SASRec, factor: int, *, seed: int = 0) -> SASRec:
    """A copy of ``model`` whose catalogue is ``factor`` times larger (extra items: real embeddings + noise)."""
    if factor == 1:
        return model
    extra = [f"{i}#x{f}" for f in range(1, factor) for i in model.item_ids]
    big = SASRec(model.config, model.item_ids + extra)
    state = {k: v for k, v in model.state_dict().items() if k != "item_emb.weight"}
    big.load_state_dict(state, strict=False)
    g = torch.Generator().manual_seed(seed)
    real = model.item_emb.weight.detach()[1:]  # (N, D)
    with torch.no_grad():
        big.item_emb.weight[: real.shape[0] + 1] = model.item_emb.weight
        noise = 0.5 * real.std() * torch.randn((len(extra), real.shape[1]), generator=g)  # (N*(f-1), D)
        big.item_emb.weight[real.shape[0] + 1 :] = real.repeat(factor - 1, 1) + noise
    return big.eval()


def timed(fn, *args, repeat: int = 3, **kwargs):
    """(result, best wall seconds of ``repeat`` calls): the minimum is the least disturbed by a shared CPU."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t)
    return out, best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warehouse", default=os.environ.get("MMSRAREC_WAREHOUSE"))
    ap.add_argument("--dataset", default="movielens-100k")
    ap.add_argument("--epochs", type=int, default=3, help="SASRec epochs to time")
    ap.add_argument("--quick", action="store_true", help="1 epoch, scaling at 1x/2x only")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default torch's)")
    args = ap.parse_args()
    configure_threads(args.threads)
    wh = Warehouse.from_uri(args.warehouse) if args.warehouse else None
    source = f"{args.dataset} at {wh.root}" if wh else ""
    if wh is None or not wh.has_table(args.dataset, "split_loo"):
        wh = Warehouse.from_uri(tempfile.mkdtemp(prefix="bench-baselines-"))
        args.dataset = "synthetic"
        synthetic_dataset(wh, args.dataset)
        source = "synthetic ML-100K-shaped data (943 users, 1,682 items)"
    epochs = 1 if args.quick else args.epochs
    print(f"# bench/baselines.py on {source}; torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}, "
          f"load average {os.getloadavg()}")

    data = protocols.training_data(wh, args.dataset, "full")
    cfg = SASRecConfig(epochs=epochs, patience=epochs)
    model, summary = train_sasrec(sequences=data.sequences, valid=data.valid, config=cfg, progress=False)
    print(f"sasrec train: {summary['n_windows']} windows of {cfg.max_len + 1}, dim {cfg.dim}, {cfg.n_layers} layers: "
          f"{summary['seconds_per_epoch']:.2f} s/epoch (mean of {epochs}, incl. validation)")

    scorers = {"sasrec": SASRecScorer(model), "pop": PopScorer.fit(data.sequences)}
    paper = protocols.load_paper_cases(wh, args.dataset)
    full = protocols.load_full_cases(wh, args.dataset)
    for name, scorer in scorers.items():
        _, tp = timed(protocols.rank_paper, scorer, paper)
        _, tf = timed(protocols.rank_full, scorer, full)
        print(f"eval {name:6s}: paper {len(paper.user_ids) / tp:9.0f} users/s ({len(paper.user_ids)} users, "
              f"{tp:.3f} s) | full {len(full.user_ids) / tf:7.0f} users/s ({len(full.user_ids)} users x "
              f"{len(full.catalogue)} items, {tf:.3f} s)")

    factors = (1, 2) if args.quick else (1, 2, 4)
    base: dict[str, float] = {}
    for f in factors:
        # the ranked universe and every scorer's catalogue grow f-fold (copies "<id>#x<k>" of each item)
        catalogue = full.catalogue + [f"{i}#x{k}" for k in range(1, f) for i in full.catalogue]
        cases = protocols.FullCases(full.user_ids, full.histories, full.targets, catalogue)
        pop = scorers["pop"]
        wide = {"sasrec": SASRecScorer(widen(model, f)),
                "pop": PopScorer({**pop.counts,
                                  **{f"{i}#x{k}": c for k in range(1, f) for i, c in pop.counts.items()}})}
        for name, scorer in wide.items():
            ranks, t = timed(protocols.rank_full, scorer, cases)
            base.setdefault(name, t)
            ndcg = float(np.mean(np.where(ranks <= 10, 1 / np.log2(ranks + 1), 0)))
            print(f"full eval {name:6s} at {f}x items ({len(catalogue)} ranked, {len(scorer.item_ids)} scored): "
                  f"{t:.3f} s, {len(cases.user_ids) / t:.0f} users/s, {t / base[name]:.2f}x the 1x time; "
                  f"NDCG@10 {ndcg:.4f}")
    print(f"load average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
