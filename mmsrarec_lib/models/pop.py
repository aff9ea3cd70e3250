"""Popularity baseline: every user gets the same scores, the item's interaction count in the training data.

Ties between equally popular items are resolved pessimistically by the metrics (``mmsrarec_lib.eval.metrics``),
so Pop gains nothing from the many items that share a count.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from mmsrarec_lib.models import MODELS_DIR
from mmsrarec_lib.storage import Warehouse

KIND = "pop"


class PopScorer:
    """A ``Scorer`` (see ``mmsrarec_lib.eval.registry``) that ranks by training popularity."""

    def __init__(self, counts: Mapping[str, int]) -> None:
        self.counts = dict(counts)
        self.item_ids = sorted(self.counts)
        self._row = np.array([self.counts[i] for i in self.item_ids], dtype=np.float32)  # (N,)

    @classmethod
    def fit(cls, sequences: Sequence[Sequence[str]]) -> PopScorer:
        return cls(Counter(i for s in sequences for i in s))

    def score_candidates(self, histories: Sequence[Sequence[str]], candidates: Sequence[Sequence[str]]) -> list:
        return [np.array([self.counts.get(c, 0) for c in cands], dtype=np.float32) for cands in candidates]

    def score_catalogue(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
        return np.tile(self._row, (len(histories), 1))  # (n_users, N)

    # ------------------------------------------------------------------ persistence
    def save(self, warehouse: Warehouse, dataset: str, run_id: str, *, info: dict) -> str:
        """``counts.json`` then ``model.json`` (kind, run_id, dataset, item id map, ``info``) under models/<run_id>/."""
        base = warehouse.uri(dataset, MODELS_DIR, run_id)
        warehouse.write_bytes(f"{base}/counts.json", json.dumps(self.counts, sort_keys=True).encode())
        meta = {**info, "kind": KIND, "run_id": run_id, "dataset": dataset, "item_ids": self.item_ids}
        warehouse.write_bytes(f"{base}/model.json", json.dumps(meta, indent=1, default=str).encode())
        return base

    @classmethod
    def load(cls, warehouse: Warehouse, dataset: str, run_id: str) -> PopScorer:
        base = warehouse.uri(dataset, MODELS_DIR, run_id)
        if not warehouse.exists(f"{base}/counts.json"):
            raise FileNotFoundError(f"no saved pop model {run_id!r} for dataset {dataset!r} at {base}")
        return cls(json.loads(warehouse.read_bytes(f"{base}/counts.json")))
