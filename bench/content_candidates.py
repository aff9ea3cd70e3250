"""How good are content candidates alone? The full protocol (every user's held-out last item ranked over the whole
catalogue minus the user's history) for the content index's cosine and for popularity, side by side on the same
users, with the paired bootstrap 95% interval of (content - pop) per metric, and the share of targets inside each
method's top-M (what a candidate generator of size M can hand to the reranker).

    .venv/bin/python bench/content_candidates.py --warehouse W --dataset movielens-100k [--m 50]

Refreshes the content index first (incremental: nothing is encoded when it is current).
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import time

import numpy as np

from mmsrarec_lib.runtime_env import apply_offline_defaults  # noqa: E402

apply_offline_defaults()  # offline hubs, no tokenizer threads: the jobs' defaults (mmsrarec_lib/runtime_env.py)

from mmsrarec_lib.candidates import ContentIndexConfig, load_content_index, refresh_content_index  # noqa: E402
from mmsrarec_lib.eval.paired import bootstrap_diff, per_user  # noqa: E402
from mmsrarec_lib.eval.protocols import load_full_cases, rank_full, training_data  # noqa: E402
from mmsrarec_lib.storage import Warehouse  # noqa: E402

METRICS = ("hr@10", "ndcg@10", "mrr")


class ContentScorer:
    """The evaluation ``Scorer`` view of a content index: cosine, -inf where content is missing."""

    def __init__(self, index) -> None:
        self.index = index
        self.item_ids = list(index.item_ids)

    def score_catalogue(self, histories: list[list[str]]) -> np.ndarray:
        s = self.index.score_catalogue(histories, self.item_ids)
        return np.where(np.isnan(s), -np.inf, s)


class PopScorer:
    def __init__(self, sequences: list[list[str]]) -> None:
        counts = collections.Counter(i for seq in sequences for i in seq)
        self.item_ids = sorted(counts)
        self._scores = np.array([counts[i] for i in self.item_ids], dtype=np.float64)

    def score_catalogue(self, histories: list[list[str]]) -> np.ndarray:
        return np.tile(self._scores, (len(histories), 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", default=os.environ.get("MMSRAREC_WAREHOUSE", "warehouse"))
    parser.add_argument("--dataset", default="movielens-100k")
    parser.add_argument("--m", type=int, default=50, help="candidate list size for the top-M share (default 50)")
    parser.add_argument("--image-weight", type=float, default=ContentIndexConfig().image_weight)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    wh = Warehouse.from_uri(args.warehouse)
    t0 = time.perf_counter()
    stats = refresh_content_index(wh, args.dataset, config=ContentIndexConfig(image_weight=args.image_weight))
    print(f"content index {stats['version']}: {stats['items']} items, {stats['with_image']} with image features, "
          f"{stats['encoded']} encoded now ({time.perf_counter() - t0:.1f} s)")
    cases = load_full_cases(wh, args.dataset)
    scorers = {"pop": PopScorer(training_data(wh, args.dataset, "full").sequences),
               "content": ContentScorer(load_content_index(wh, args.dataset))}
    ranks = {name: rank_full(s, cases) for name, s in scorers.items()}
    n = np.ones(len(cases.targets))  # unused by hr/ndcg/mrr
    print(f"\nfull protocol, {len(cases.targets)} test users, x100 (pessimistic ranks)")
    print("| model | " + " | ".join(METRICS) + f" | target in top-{args.m} |")
    print("|---" * (len(METRICS) + 2) + "|")
    for name, r in ranks.items():
        vals = [100 * per_user(m, r, n).mean() for m in METRICS]
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in vals) + f" | {100 * np.mean(r <= args.m):.1f} |")
    print("\ncontent - pop, paired bootstrap 95% interval over users, x100")
    for m in METRICS:
        mean, lo, hi = bootstrap_diff(per_user(m, ranks["content"], n) - per_user(m, ranks["pop"], n))
        print(f"  {m}: {100 * mean:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]")
    both = np.mean((ranks["content"] <= args.m) | (ranks["pop"] <= args.m))
    print(f"\ntarget inside the union of both top-{args.m} lists: {100 * both:.1f}%")


if __name__ == "__main__":
    main()
