"""The two evaluation protocols and the training data that goes with each.

``paper`` (arXiv 2512.20916): ``eval_candidates`` rows of the test users of the 8:1:1 user split; each user has a
5-item history and 21 candidates (target + 20 sampled negatives), shown to the scorer in a seeded shuffled order
so a position-biased scorer gains nothing; HR@5, NDCG@5, AUC.

``sampled``: every user's held-out last item (the ``full`` protocol's test row) against 20 negatives sampled
uniformly from the items the user never had, seeded per user; HR@5, NDCG@5, AUC as in ``paper`` but over all users
(943 on ML-100K instead of 94), with the ``full`` protocol's training data. It makes the paper-style comparison
decisive: ten times the users of ``paper`` narrows the paired interval about three-fold.

``full``: ``split_loo`` test rows (target = the user's last item, history = everything before it); the target is
ranked against the whole catalogue minus the user's earlier items; HR@10, NDCG@10, MRR. The catalogue is the
``items`` table (plus any item of ``split_loo``); items a scorer cannot score rank below every scored item.

``cold`` (``mmsrarec_lib.eval.cold``): the first interactions of a held-out 10% of the items, none of whose
interactions is trained on, ranked over the whole catalogue as in ``full``; HR@10, NDCG@10, MRR and
``cold_share@10`` (the share of top-10 slots given to items without training interactions).

Training data (``training_data``): for ``full`` every user's train prefix (the split_loo ``train`` row, history +
target, i.e. the sequence without its last two items), validated on the ``valid`` rows; for ``paper`` the whole
sequences of the ``train`` users of the user split, validated on the ``valid`` users' (history, target); for
``cold`` the sequences without any held-out item, validated on the cold validation items' first interactions.
None ever sees a test target.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as pads

from mmsrarec_lib import tables
from mmsrarec_lib.eval import metrics
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)

PROTOCOLS = ("paper", "full", "sampled", "cold")
# whose training data a protocol's models use: ``sampled`` scores the full protocol's held-out items
TRAINING_PROTOCOL = {"paper": "paper", "full": "full", "sampled": "full", "cold": "cold"}
CATALOGUE_PROTOCOLS = ("full", "cold")  # ranked over the whole catalogue
# metric name -> cut-off (None: no cut-off), per protocol, in display order
PROTOCOL_METRICS: dict[str, tuple[tuple[str, int | None], ...]] = {
    "paper": (("hr", 5), ("ndcg", 5), ("auc", None)),
    "full": (("hr", 10), ("ndcg", 10), ("mrr", None)),
    "sampled": (("hr", 5), ("ndcg", 5), ("auc", None)),
    "cold": (("hr", 10), ("ndcg", 10), ("mrr", None), ("cold_share", 10)),
}
N_PAPER_CANDIDATES = 21


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    return protocol


def metric_key(metric: str, k: int | None) -> str:
    return f"{metric}@{k}" if k is not None else metric


@dataclass(frozen=True)
class PaperCases:
    """One row per user: candidates in shuffled order, ``positive[u]`` = the target's position in them."""

    user_ids: list[str]
    histories: list[list[str]]
    candidates: list[list[str]]
    positive: np.ndarray  # (n_users,) int


@dataclass(frozen=True)
class FullCases:
    user_ids: list[str]
    histories: list[list[str]]
    targets: list[str]
    catalogue: list[str]  # every rankable item id, sorted


@dataclass(frozen=True)
class TrainingData:
    sequences: list[list[str]]  # item ids oldest first
    valid: list[tuple[list[str], str]]  # (history, target)
    sources: dict[str, int | None]  # table -> Delta version read
    user_ids: list[str] = field(default_factory=list)  # sequences[i] is user_ids[i]'s


def _split_rows(warehouse: Warehouse, dataset: str, table: str, split: str, columns: list[str]) -> list[dict]:
    rows = warehouse.read_table(dataset, table, columns=columns, filter=pads.field("split") == split).to_pylist()
    return sorted(rows, key=lambda r: r["user_id"])


def load_paper_cases(warehouse: Warehouse, dataset: str, *, split: str = "test", shuffle_seed: int = 0) -> PaperCases:
    """Read and validate ``eval_candidates`` rows of ``split``; a malformed row raises naming its user."""
    rows = _split_rows(
        warehouse, dataset, tables.EVAL_CANDIDATES, split, ["user_id", "history", "target_item_id", "negative_item_ids"]
    )
    if not rows:
        raise ValueError(f"eval_candidates of {dataset!r} has no {split!r} users")
    rng = np.random.default_rng(shuffle_seed)
    users, histories, candidates, positive = [], [], [], []
    for r in rows:
        uid, target, negs, hist = r["user_id"], r["target_item_id"], list(r["negative_item_ids"] or []), r["history"]
        if not target:
            raise ValueError(f"eval_candidates user {uid!r}: empty target_item_id")
        if target in negs:
            raise ValueError(f"eval_candidates user {uid!r}: the target {target!r} is also a negative")
        if len(set(negs)) != len(negs) or not negs:
            raise ValueError(f"eval_candidates user {uid!r}: negatives are empty or repeated")
        if set(negs) & set(hist or []):
            raise ValueError(f"eval_candidates user {uid!r}: a negative is in the user's history")
        cands = [target, *negs]
        order = rng.permutation(len(cands))
        users.append(uid)
        histories.append(list(hist or []))
        candidates.append([cands[i] for i in order])
        positive.append(int(np.argmin(order)))  # where index 0 (the target) landed
    return PaperCases(users, histories, candidates, np.asarray(positive, dtype=np.int64))


def load_catalogue(warehouse: Warehouse, dataset: str) -> list[str]:
    """Every item id of ``items`` (when present) and of ``split_loo``, sorted."""
    ids = set(split_items(warehouse, dataset))
    if warehouse.has_table(dataset, tables.ITEMS):
        ids.update(warehouse.read_table(dataset, tables.ITEMS, columns=["item_id"]).column("item_id").to_pylist())
    ids.discard(None)
    return sorted(ids)


def split_items(warehouse: Warehouse, dataset: str) -> list[str]:
    """The items of the evaluation sequences (every ``split_loo`` history and target: the k-core item pool, the
    only items a target can be), sorted."""
    loo = warehouse.read_table(dataset, tables.SPLIT_LOO, columns=["history", "target_item_id"])
    ids = set(loo.column("target_item_id").to_pylist()) | set(pc.list_flatten(loo.column("history")).to_pylist())
    ids.discard(None)
    return sorted(ids)


def load_full_cases(warehouse: Warehouse, dataset: str, *, split: str = "test") -> FullCases:
    rows = _split_rows(warehouse, dataset, tables.SPLIT_LOO, split, ["user_id", "history", "target_item_id"])
    if not rows:
        raise ValueError(f"split_loo of {dataset!r} has no {split!r} rows")
    for r in rows:
        if not r["target_item_id"]:
            raise ValueError(f"split_loo user {r['user_id']!r} ({split}): empty target_item_id")
    return FullCases(
        user_ids=[r["user_id"] for r in rows],
        histories=[list(r["history"] or []) for r in rows],
        targets=[r["target_item_id"] for r in rows],
        catalogue=load_catalogue(warehouse, dataset),
    )


def _check_rows(name: str, got: int, want: int) -> None:
    if got != want:
        raise ValueError(f"scorer.{name} returned {got} rows for {want} users")


def rank_paper(scorer, cases: PaperCases) -> np.ndarray:
    """Pessimistic rank of each user's target among its 21 candidates (n_users,)."""
    scores = scorer.score_candidates(cases.histories, cases.candidates)
    _check_rows("score_candidates", len(scores), len(cases.candidates))
    for u, (s, c) in enumerate(zip(scores, cases.candidates, strict=True)):
        if np.shape(s) != (len(c),):
            raise ValueError(f"user {cases.user_ids[u]!r}: {np.shape(s)} scores for {len(c)} candidates")
    return metrics.candidate_ranks(scores, cases.positive)


def _catalogue_scores(scorer, cases: FullCases, *, batch_size: int = 256):
    """Yield (start, scores (b, n_catalogue) with unscored items at -inf, target columns, excluded columns)."""
    col = {iid: j for j, iid in enumerate(cases.catalogue)}
    scorer_cols = np.array([col.get(i, -1) for i in scorer.item_ids], dtype=np.int64)  # scorer column -> catalogue
    keep = scorer_cols >= 0
    for start in range(0, len(cases.targets), batch_size):
        hist = cases.histories[start : start + batch_size]
        raw = np.asarray(scorer.score_catalogue(hist), dtype=np.float64)  # (b, n_scorer_items)
        _check_rows("score_catalogue", raw.shape[0], len(hist))
        if raw.ndim != 2 or raw.shape[1] != len(scorer.item_ids):
            raise ValueError(f"score_catalogue returned {raw.shape}, expected ({len(hist)}, {len(scorer.item_ids)})")
        scores = np.full((len(hist), len(cases.catalogue)), -np.inf)  # (b, n_catalogue); unscored items at -inf
        scores[:, scorer_cols[keep]] = raw[:, keep]
        targets = [col[t] if t in col else -1 for t in cases.targets[start : start + batch_size]]
        yield start, scores, targets, [[col[i] for i in h if i in col] for h in hist]


def rank_full(scorer, cases: FullCases, *, batch_size: int = 256, top_k: int = 0
              ) -> np.ndarray | tuple[np.ndarray, list[list[str]]]:
    """Pessimistic rank of each target over ``cases.catalogue`` minus the user's history (n_users,); with
    ``top_k`` also each user's ``top_k`` items (finite scores only, history excluded, ties by catalogue order)."""
    ranks, tops = [], []
    for _start, scores, targets, exclude in _catalogue_scores(scorer, cases, batch_size=batch_size):
        ranks.append(metrics.catalogue_ranks(scores, targets=targets, exclude=exclude))
        if top_k:
            for row, ex in zip(scores, exclude, strict=True):
                row = row.copy()
                row[ex] = -np.inf
                best = np.argsort(-row, kind="stable")[:top_k]
                tops.append([cases.catalogue[j] for j in best if np.isfinite(row[j])])
    out = np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)
    return (out, tops) if top_k else out


def load_ranking_cases(warehouse: Warehouse, dataset: str, protocol: str, *, split: str = "test") -> FullCases:
    """The catalogue-ranking cases of ``protocol`` (full and sampled: ``split_loo``; cold: the held-out items)."""
    if TRAINING_PROTOCOL[check_protocol(protocol)] == "cold":
        return load_cold_cases(warehouse, dataset, split=split)[0]
    return load_full_cases(warehouse, dataset, split=split)


def hidden_items(warehouse: Warehouse, dataset: str, protocol: str) -> frozenset[str]:
    """Items whose interactions ``protocol``'s models must not see anywhere (cold: the held-out items)."""
    if TRAINING_PROTOCOL[check_protocol(protocol)] != "cold":
        return frozenset()
    return load_cold_split(warehouse, dataset).held_out


_COLD_SPLITS: dict[tuple, object] = {}  # (warehouse root, dataset, user_sequences version) -> ColdSplit


def load_cold_split(warehouse: Warehouse, dataset: str):
    """The ``cold`` protocol's split of ``user_sequences`` (``mmsrarec_lib.eval.cold``), computed once per table
    version in a process (training data, hidden items, cases and the history index all ask for it)."""
    from mmsrarec_lib.eval.cold import cold_split

    key = (warehouse.root, dataset, warehouse.table_version(dataset, tables.USER_SEQUENCES))
    if key not in _COLD_SPLITS:
        rows = warehouse.read_table(dataset, tables.USER_SEQUENCES,
                                    columns=["user_id", "item_ids", "timestamps"]).to_pylist()
        if len(_COLD_SPLITS) >= 8:
            _COLD_SPLITS.clear()
        _COLD_SPLITS[key] = cold_split([r["user_id"] for r in rows], [list(r["item_ids"]) for r in rows],
                                       [list(r["timestamps"]) for r in rows])
    return _COLD_SPLITS[key]


def load_cold_cases(warehouse: Warehouse, dataset: str, *, split: str = "test") -> tuple[FullCases, set[str]]:
    """The cold protocol's cases of ``split`` (test | valid) and the items without a training interaction."""
    cold = load_cold_split(warehouse, dataset)
    rows = cold.cases[split]
    if not rows:
        raise ValueError(f"the cold protocol of {dataset!r} has no {split!r} cases")
    catalogue = load_catalogue(warehouse, dataset)
    cases = FullCases([c.case_id for c in rows], [c.history for c in rows], [c.target for c in rows], catalogue)
    return cases, set(catalogue) - cold.trained_items()


@dataclass(frozen=True)
class ProtocolResult:
    """Metrics plus what the paired intervals need: each user's pessimistic rank of the target."""

    values: dict[str, float]
    user_ids: list[str]
    ranks: np.ndarray  # (n_users,) int, 1-based
    n_candidates: np.ndarray  # (n_users,) candidates ranked per user


def load_sampled_cases(warehouse: Warehouse, dataset: str, *, split: str = "test", n_negatives: int = 20,
                       seed: int = 0) -> PaperCases:
    """Protocol ``sampled``: every user's held-out item (the split_loo ``split`` row: target = last item, history =
    everything before) against ``n_negatives`` items drawn uniformly from the k-core item pool (``split_items``, as
    the paper protocol's ``eval_candidates``) minus the user's whole sequence (seeded by (seed, user_id), so the
    lists do not depend on other users), in a seeded shuffled order.

    Not from the whole catalogue: an item the k-core dropped can never be a target, and a model that has never seen
    it (SASRec) ranks it last for free. Drawn from the catalogue (before 2026-11-30 evening) about a fifth of
    ML-100K's negatives were such items, which cost a fused model about 1 AUC point for nothing."""
    import hashlib

    full = load_full_cases(warehouse, dataset, split=split)
    later = {}  # the user's items after the held-out one (valid split: the test target) are not negatives either
    if split != "test":
        for r in _split_rows(warehouse, dataset, tables.SPLIT_LOO, "test", ["user_id", "target_item_id"]):
            later[r["user_id"]] = r["target_item_id"]
    catalogue = np.asarray(split_items(warehouse, dataset))
    users, histories, candidates, positive = [], [], [], []
    for uid, hist, target in zip(full.user_ids, full.histories, full.targets, strict=True):
        seen = {*hist, target, later.get(uid)}
        h = int.from_bytes(hashlib.sha1(f"{seed}:{uid}".encode()).digest()[:8], "little")
        rng = np.random.default_rng(h)
        pool = [i for i in catalogue[rng.permutation(len(catalogue))] if i not in seen][:n_negatives]
        if len(pool) < n_negatives:
            raise ValueError(f"split_loo user {uid!r}: fewer than {n_negatives} items left to sample as negatives")
        cands = [target, *pool]
        order = rng.permutation(len(cands))
        users.append(uid)
        histories.append(hist)
        candidates.append([cands[i] for i in order])
        positive.append(int(np.argmin(order)))
    return PaperCases(users, histories, candidates, np.asarray(positive, dtype=np.int64))


def evaluate_protocol(scorer, warehouse: Warehouse, dataset: str, protocol: str, *,
                      split: str = "test") -> ProtocolResult:
    """Run ``protocol`` for ``scorer``: metrics, user ids, per-user ranks and candidate counts."""
    check_protocol(protocol)
    if protocol in ("paper", "sampled"):
        cases = (load_paper_cases(warehouse, dataset, split=split) if protocol == "paper"
                 else load_sampled_cases(warehouse, dataset, split=split))
        ranks = rank_paper(scorer, cases)
        n_cand = np.array([len(c) for c in cases.candidates])
        values = {"hr": lambda k: metrics.hr_at_k(ranks, k), "ndcg": lambda k: metrics.ndcg_at_k(ranks, k),
                  "auc": lambda _: metrics.auc(ranks, n_cand)}
    else:  # the catalogue protocols: full, cold
        cases, cold_items = (load_cold_cases(warehouse, dataset, split=split) if protocol == "cold"
                             else (load_full_cases(warehouse, dataset, split=split), None))
        ranks, tops = rank_full(scorer, cases, top_k=10) if cold_items is not None else (rank_full(scorer, cases), [])
        n_cand = np.array([len(cases.catalogue) - len(set(h)) for h in cases.histories])
        values = {"hr": lambda k: metrics.hr_at_k(ranks, k), "ndcg": lambda k: metrics.ndcg_at_k(ranks, k),
                  "mrr": lambda _: metrics.mrr(ranks),
                  "cold_share": lambda k: metrics.slot_share([t[:k] for t in tops], cold_items)}
    out = {metric_key(m, k): values[m](k) for m, k in PROTOCOL_METRICS[protocol]}
    return ProtocolResult(out, list(cases.user_ids), np.asarray(ranks), n_cand)


def run_protocol(scorer, warehouse: Warehouse, dataset: str, protocol: str, *, split: str = "test"):
    """Evaluate ``scorer`` and return (metrics ``{"hr@5": v, ...}``, n_users)."""
    res = evaluate_protocol(scorer, warehouse, dataset, protocol, split=split)
    return res.values, len(res.ranks)


def training_data(warehouse: Warehouse, dataset: str, protocol: str) -> TrainingData:
    """Training sequences and validation (history, target) pairs for ``protocol`` (see the module docstring)."""
    protocol = TRAINING_PROTOCOL[check_protocol(protocol)]
    if protocol == "cold":
        cold = load_cold_split(warehouse, dataset)
        users = sorted(cold.train)
        seqs, user_ids = [list(cold.train[u]) for u in users], users  # copies: the split is shared
        valid = [(c.history, c.target) for c in cold.cases["valid"]]
        sources = {tables.USER_SEQUENCES: warehouse.table_version(dataset, tables.USER_SEQUENCES)}
    elif protocol == "full":
        loo = warehouse.read_table(dataset, tables.SPLIT_LOO, columns=["user_id", "split", "history", "target_item_id"])
        rows = sorted(loo.to_pylist(), key=lambda r: r["user_id"])
        train = [r for r in rows if r["split"] == "train"]
        seqs, user_ids = [[*(r["history"] or []), r["target_item_id"]] for r in train], [r["user_id"] for r in train]
        valid = [(list(r["history"] or []), r["target_item_id"]) for r in rows if r["split"] == "valid"]
        sources = {tables.SPLIT_LOO: warehouse.table_version(dataset, tables.SPLIT_LOO)}
    else:
        cands = warehouse.read_table(dataset, tables.EVAL_CANDIDATES, columns=["user_id", "split", "history",
                                                                         "target_item_id"]).to_pylist()
        train_users = {r["user_id"] for r in cands if r["split"] == "train"}
        seq_rows = warehouse.read_table(dataset, tables.USER_SEQUENCES, columns=["user_id", "item_ids"]).to_pylist()
        kept = [r for r in sorted(seq_rows, key=lambda r: r["user_id"]) if r["user_id"] in train_users]
        seqs, user_ids = [list(r["item_ids"]) for r in kept], [r["user_id"] for r in kept]
        valid = [(list(r["history"] or []), r["target_item_id"])
                 for r in sorted(cands, key=lambda r: r["user_id"]) if r["split"] == "valid"]
        sources = {t: warehouse.table_version(dataset, t) for t in (tables.EVAL_CANDIDATES, tables.USER_SEQUENCES)}
    if not seqs:
        raise ValueError(f"no training sequences for protocol {protocol!r} in dataset {dataset!r}")
    log.info("%s training data: %d sequences, %d validation pairs", protocol, len(seqs), len(valid))
    return TrainingData(seqs, valid, sources, user_ids)

