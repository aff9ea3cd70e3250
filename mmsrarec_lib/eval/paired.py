"""Per-user ranks of every evaluation, and the paired bootstrap interval of (model - baseline).

``evaluate_scorer`` stores each evaluation's per-user ranks as one JSON file
``<warehouse>/<dataset>/evaluation_ranks/<run_id>/<protocol>/<model>/seed-<seed>.json``
(``{"user_ids": [...], "ranks": [...], "n_candidates": [...]}``), beside its ``evaluation_runs`` rows.

``paired_interval``: for one run, protocol and metric, the per-user metric of the model minus the baseline's on the
same user and seed (same candidates: both models were evaluated on the same cases), pooled over the seeds both have.
The point estimate is the mean difference; the 95% interval is the percentile bootstrap over *users* (a user's
differences on all seeds are resampled together, since they are not independent), ``n_boot`` resamples, seeded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmsrarec_lib.storage import Warehouse

RANKS_DIR = "evaluation_ranks"


def ranks_uri(warehouse: Warehouse, dataset: str, *, run_id: str, protocol: str, model: str, seed: int | None) -> str:
    return warehouse.uri(dataset, RANKS_DIR, run_id, protocol, model, f"seed-{seed}.json")


def write_ranks(warehouse: Warehouse, dataset: str, *, run_id: str, protocol: str, model: str, seed: int | None,
                user_ids: Sequence[str], ranks: np.ndarray, n_candidates: np.ndarray) -> str:
    uri = ranks_uri(warehouse, dataset, run_id=run_id, protocol=protocol, model=model, seed=seed)
    body = {"user_ids": list(user_ids), "ranks": [int(r) for r in ranks],
            "n_candidates": [int(n) for n in n_candidates]}
    warehouse.write_bytes(uri, json.dumps(body).encode())
    return uri


def read_ranks(warehouse: Warehouse, dataset: str, *, run_id: str, protocol: str, model: str, seed: int | None
               ) -> dict | None:
    uri = ranks_uri(warehouse, dataset, run_id=run_id, protocol=protocol, model=model, seed=seed)
    return json.loads(warehouse.read_bytes(uri)) if warehouse.exists(uri) else None


RANK_METRICS = ("hr", "ndcg", "mrr", "auc")  # per-user values from the target's rank: pairable


def per_user(metric: str, ranks: np.ndarray, n_candidates: np.ndarray) -> np.ndarray:
    """Each user's value of ``metric`` ("hr@5", "ndcg@10", "auc", "mrr"), pessimistic ranks (1-based)."""
    r = np.asarray(ranks, dtype=np.float64)
    name, _, k = metric.partition("@")
    if name == "hr":
        return (r <= int(k)).astype(np.float64)
    if name == "ndcg":
        return np.where(r <= int(k), 1.0 / np.log2(r + 1.0), 0.0)
    if name == "mrr":
        return 1.0 / r
    if name == "auc":
        n = np.asarray(n_candidates, dtype=np.float64)
        return (n - r) / np.maximum(n - 1.0, 1.0)
    raise ValueError(f"unknown metric {metric!r}")


@dataclass(frozen=True)
class PairedInterval:
    metric: str
    mean_diff: float  # raw 0..1 scale
    low: float
    high: float
    n_users: int  # distinct users
    n_pairs: int  # (seed, user) pairs
    seeds: tuple[int, ...]


def bootstrap_diff(diffs: np.ndarray, *, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """diffs [n_users, n_seeds] -> (mean, 2.5th, 97.5th percentile of the mean over user resamples)."""
    diffs = np.asarray(diffs, dtype=np.float64)
    if diffs.ndim == 1:
        diffs = diffs[:, None]
    rng = np.random.default_rng(seed)
    per_user_mean = diffs.mean(axis=1)  # every user has all seeds (aligned below), so the pooled mean is this mean
    idx = rng.integers(0, len(per_user_mean), size=(n_boot, len(per_user_mean)))
    boots = per_user_mean[idx].mean(axis=1)
    return float(per_user_mean.mean()), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def paired_interval(warehouse: Warehouse, dataset: str, *, run_id: str, protocol: str, model: str,
                    baseline: str = "sasrec", metric: str, seeds: Sequence[int], n_boot: int = 2000
                    ) -> PairedInterval | None:
    """(model - baseline) on ``metric`` over the users both were evaluated on, pooled over ``seeds`` (see the
    module docstring); None when no seed has rank files for both."""
    cols: dict[str, list[float]] = {}
    used = []
    for s in seeds:
        a = read_ranks(warehouse, dataset, run_id=run_id, protocol=protocol, model=model, seed=s)
        b = read_ranks(warehouse, dataset, run_id=run_id, protocol=protocol, model=baseline, seed=s)
        if a is None or b is None:
            continue
        va = dict(zip(a["user_ids"], per_user(metric, np.array(a["ranks"]), np.array(a["n_candidates"])),
                      strict=True))
        vb = dict(zip(b["user_ids"], per_user(metric, np.array(b["ranks"]), np.array(b["n_candidates"])),
                      strict=True))
        common = sorted(set(va) & set(vb))
        if not common:
            continue
        used.append(s)
        for u in common:
            cols.setdefault(u, []).append(va[u] - vb[u])
    if not used:
        return None
    users = [u for u, v in cols.items() if len(v) == len(used)]  # users present in every used seed
    diffs = np.array([cols[u] for u in users])  # [n_users, n_seeds]
    mean, low, high = bootstrap_diff(diffs, n_boot=n_boot)
    return PairedInterval(metric, mean, low, high, len(users), int(diffs.size), tuple(used))
