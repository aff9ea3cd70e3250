"""What both stage-3 rerankers share (the decoder path's ``MllmReranker`` in ``reranker`` and the minilm-effnet
``EncoderReranker`` in ``encoder_scorer``): the ``ScoringConfig``, the score fusion ``fuse`` and ``history_index``.

Fusion: with ``fusion_weight`` w > 0 the reported score is ``logit(p) + w * z(g)``, where p is the MLLM's
p(yes)/(p(yes)+p(no)) and ``g`` the candidate generator's (SASRec's) score standardised over the user's
candidates; w = 0 gives p itself. A candidate the generator cannot score (an item added after it was trained, or
one only the content index proposed) has a *missing* g: it gets z = 0, the list's mean, so its rank rests on p
alone instead of sinking below every scored item.

``history_index``: the ``Scorer`` protocol passes histories, not user ids, but the prompt needs the user's
neighbours; a reranker maps a history back to its user through the evaluation tables (a history not found there
is scored without neighbours).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmsrarec_lib import tables
from mmsrarec_lib.eval.protocols import hidden_items, load_cold_split


@dataclass(frozen=True)
class ScoringConfig:
    batch_size: int = 32
    fusion_weight: float | None = None  # None: the run's recorded weight
    shared_prefix: bool = True
    top_m: int = 50
    content_m: int = 0  # catalogue protocols: also the content index's top-M' (0: SASRec's top-M alone)


def fuse(p: np.ndarray, generator: np.ndarray | None, weight: float) -> np.ndarray:
    """p [C] (MLLM yes-probability), generator [C] -> final scores [C] (see the module docstring)."""
    p = np.asarray(p, dtype=np.float64)
    if generator is None or weight == 0:
        return p
    g = np.asarray(generator, dtype=np.float64)
    finite = np.isfinite(g)
    z = np.zeros_like(g)
    if finite.sum() > 1 and g[finite].std() > 0:
        z[finite] = (g[finite] - g[finite].mean()) / g[finite].std()
    # non-finite g (the generator cannot score the item) is missing: z stays 0, the mean of the scored candidates
    eps = 1e-6
    pc = np.clip(p, eps, 1 - eps)
    return np.log(pc / (1 - pc)) + weight * z


def fusion_weight_for(meta: dict, protocol: str | None = None) -> float:
    """The fusion weight a saved run chose for evaluation ``protocol`` (``model.json``'s ``fusion.by_protocol``);
    the run's own weight (its training protocol's, the one serving uses) when ``protocol`` is None or was not
    chosen separately (runs from before per-protocol weights, a weight given with ``--fusion-weight``)."""
    chosen = ((meta.get("fusion") or {}).get("by_protocol") or {}).get(protocol) if protocol else None
    return float(chosen["weight"]) if chosen else float(meta["config"]["fusion_weight"])


def history_index(warehouse, dataset: str, protocol: str | None = None) -> dict[tuple[str, ...], str]:
    """tuple(history) -> user_id for every eval_candidates row and split_loo row (first wins on a clash), and for a
    model trained for the cold protocol every cold case."""
    out: dict[tuple[str, ...], str] = {}
    if protocol is not None and hidden_items(warehouse, dataset, protocol):
        split = load_cold_split(warehouse, dataset)
        for case in [*split.cases["test"], *split.cases["valid"]]:
            out.setdefault(tuple(case.history), case.user_id)
    for table in (tables.EVAL_CANDIDATES, tables.SPLIT_LOO):
        if not warehouse.has_table(dataset, table):
            continue
        for r in warehouse.read_table(dataset, table, columns=["user_id", "history"]).to_pylist():
            out.setdefault(tuple(r["history"] or ()), r["user_id"])
    return out
