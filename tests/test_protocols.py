"""Protocol invariants, the registry, evaluation_runs rows and the retrieve-then-rerank hook."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from _eval_helpers import T0, write_toy_dataset

from mmsrarec_lib import schemas
from mmsrarec_lib.eval import protocols, registry
from mmsrarec_lib.models.pop import PopScorer


class OracleScorer:
    """Scores each user's true next item highest, and (adversarially) the user's history items higher still."""

    def __init__(self, item_ids, next_item):
        self.item_ids, self.next_item = list(item_ids), next_item

    def score_catalogue(self, histories):
        out = np.zeros((len(histories), len(self.item_ids)))
        for u, h in enumerate(histories):
            out[u, self.item_ids.index(self.next_item[tuple(h)])] = 1.0
            for i in h:
                out[u, self.item_ids.index(i)] = 5.0  # must not count: earlier items are excluded
        return out

    def score_candidates(self, histories, candidates):
        return [np.array([1.0 if c == self.next_item[tuple(h)] else 0.0 for c in cs]) for h, cs in
                zip(histories, candidates)]


class ConstantScorer:
    def __init__(self, item_ids):
        self.item_ids = list(item_ids)

    def score_catalogue(self, histories):
        return np.zeros((len(histories), len(self.item_ids)))

    def score_candidates(self, histories, candidates):
        return [np.zeros(len(c)) for c in candidates]


def test_paper_cases_hold_the_positive_among_21_shuffled_candidates(warehouse):
    seqs = write_toy_dataset(warehouse, "toy")
    cases = protocols.load_paper_cases(warehouse, "toy")
    rows = {r["user_id"]: r for r in warehouse.read_table("toy", "eval_candidates").to_pylist()}
    assert cases.user_ids and all(rows[u]["split"] == "test" for u in cases.user_ids)
    for u, h, cands, p in zip(cases.user_ids, cases.histories, cases.candidates, cases.positive):
        assert len(cands) == 21 and len(set(cands)) == 21
        assert cands[p] == rows[u]["target_item_id"] == seqs[u][-1]
        assert set(cands) == {rows[u]["target_item_id"], *rows[u]["negative_item_ids"]}
        assert h == seqs[u][-6:-1]
    assert len(set(cases.positive.tolist())) > 1  # shuffled, not always first
    again = protocols.load_paper_cases(warehouse, "toy")
    assert again.candidates == cases.candidates  # the shuffle is seeded


def test_oracle_is_perfect_and_constant_scorer_gets_nothing_from_ties(warehouse):
    seqs = write_toy_dataset(warehouse, "toy")
    next_item = {tuple(s[:t]): s[t] for s in seqs.values() for t in range(1, len(s))}
    next_item.update({tuple(s[-6:-1]): s[-1] for s in seqs.values()})
    catalogue = protocols.load_catalogue(warehouse, "toy")
    for protocol in ("paper", "full"):
        perfect, n = protocols.run_protocol(OracleScorer(catalogue, next_item), warehouse, "toy", protocol)
        assert all(v == pytest.approx(1.0) for v in perfect.values()), (protocol, perfect)
        zero, _ = protocols.run_protocol(ConstantScorer(catalogue), warehouse, "toy", protocol)
        assert n == (6 if protocol == "paper" else 60)
        k = 5 if protocol == "paper" else 10
        assert zero[f"hr@{k}"] == 0.0 and zero[f"ndcg@{k}"] == 0.0
    assert zero["mrr"] == pytest.approx(np.mean([1 / (60 - (len(s) - 1)) for s in seqs.values()]))


def test_full_protocol_excludes_earlier_items_and_ranks_over_the_catalogue(warehouse):
    seqs = write_toy_dataset(warehouse, "toy", n_users=10)
    cases = protocols.load_full_cases(warehouse, "toy")
    assert cases.catalogue == sorted(f"i{k}" for k in range(60))
    for u, h, t in zip(cases.user_ids, cases.histories, cases.targets):
        assert h + [t] == seqs[u]

    class HistoryLover(ConstantScorer):  # history items on top, then the target, then the rest
        def score_catalogue(self, histories):
            out = np.zeros((len(histories), len(self.item_ids)))
            for u, h in enumerate(histories):
                out[u, [self.item_ids.index(i) for i in h]] = 3.0
                out[u, self.item_ids.index(cases.targets[cases.histories.index(h)])] = 2.0
            return out

    ranks = protocols.rank_full(HistoryLover(cases.catalogue), cases)
    assert ranks.tolist() == [1] * 10


def test_pop_full_protocol_by_hand(warehouse):
    """Three users over items a..e; Pop counts train prefixes; ranks computed by hand."""
    seq = {"u1": ["a", "b", "c", "d", "e"], "u2": ["a", "b", "c", "a2", "b2"], "u3": ["a", "d", "b", "c", "e"]}
    items = ["a", "b", "c", "d", "e", "a2", "b2"]
    loo = [{"user_id": u, "split": sp, "history": s[: len(s) - back], "target_item_id": s[len(s) - back],
            "target_timestamp": T0} for u, s in seq.items() for sp, back in (("train", 3), ("valid", 2), ("test", 1))]
    warehouse.write_table("h", "split_loo", pa.Table.from_pylist(loo, schema=schemas.SPLIT_LOO))
    warehouse.write_table("h", "items", pa.Table.from_pylist([{"item_id": i} for i in items], schema=schemas.ITEMS))
    data = protocols.training_data(warehouse, "h", "full")
    assert data.sequences == [["a", "b", "c"], ["a", "b", "c"], ["a", "d", "b"]]
    pop = PopScorer.fit(data.sequences)
    assert pop.counts == {"a": 3, "b": 3, "c": 2, "d": 1}
    # u1 test: history a,b,c,d excluded; target e (count 0) ties with a2,b2 (0) -> rank 3 of {e, a2, b2}
    # u2 test: history a,b,c,a2 excluded; d (1) above, e (0) ties with target b2 -> rank 3 of {d, e, b2}
    # u3 test: history a,d,b,c excluded; target e (0) ties with a2,b2 -> rank 3
    ranks = protocols.rank_full(pop, protocols.load_full_cases(warehouse, "h"))
    assert ranks.tolist() == [3, 3, 3]
    values, n = protocols.run_protocol(pop, warehouse, "h", "full")
    assert n == 3
    assert values == pytest.approx({"hr@10": 1.0, "ndcg@10": 0.5, "mrr": 1 / 3})


def test_malformed_candidates_are_rejected_naming_the_user(warehouse):
    row = {"user_id": "u9", "split": "test", "history": ["a"], "target_item_id": "b", "target_timestamp": T0,
           "negative_item_ids": ["c", "b"]}
    warehouse.write_table("bad", "eval_candidates", pa.Table.from_pylist([row], schema=schemas.EVAL_CANDIDATES))
    with pytest.raises(ValueError, match="user 'u9'.*also a negative"):
        protocols.load_paper_cases(warehouse, "bad")
    with pytest.raises(ValueError, match="no 'valid' users"):
        protocols.load_paper_cases(warehouse, "bad", split="valid")


def test_paper_training_data_uses_only_train_users(warehouse):
    seqs = write_toy_dataset(warehouse, "toy")
    data = protocols.training_data(warehouse, "toy", "paper")
    splits = {r["user_id"]: r["split"] for r in warehouse.read_table("toy", "eval_candidates").to_pylist()}
    train_users = sorted(u for u, s in splits.items() if s == "train")
    assert data.sequences == [seqs[u] for u in train_users]
    assert len(data.valid) == sum(s == "valid" for s in splits.values())
    full = protocols.training_data(warehouse, "toy", "full")
    assert all(len(s) == len(seqs[u]) - 2 for s, u in zip(full.sequences, sorted(seqs)))


def test_evaluate_scorer_writes_rows_and_a_retry_does_not_duplicate(warehouse):
    seqs = write_toy_dataset(warehouse, "toy")
    pop = PopScorer.fit(protocols.training_data(warehouse, "toy", "full").sequences)
    kw = dict(model="pop", model_version="v1", seed=0, config={"a": 1}, run_id="eval-1")
    first = registry.evaluate_scorer(warehouse, "toy", pop, "full", **kw)
    registry.evaluate_scorer(warehouse, "toy", pop, "full", **kw)  # retried with the same run id
    registry.evaluate_scorer(warehouse, "toy", pop, "full", **{**kw, "seed": 1})
    t = warehouse.read_table("toy", "evaluation_runs")
    assert t.schema.equals(schemas.EVALUATION_RUNS)
    rows = t.to_pylist()
    assert len(rows) == 6  # 3 metrics x 2 seeds, the retry replaced its own rows
    by = {(r["metric"], r["k"], r["seed"]): r for r in rows}
    assert by[("hr", 10, 0)]["value"] == first["hr@10"] and by[("mrr", None, 1)]["value"] == first["mrr"]
    assert {r["n_users"] for r in rows} == {len(seqs)}
    assert json.loads(rows[0]["config_json"]) == {"a": 1}


def test_registry_resolves_names_and_run_ids_registration_is_explicit(warehouse):
    write_toy_dataset(warehouse, "toy")
    req = registry.ModelRequest(warehouse=warehouse, dataset="toy", protocol="full", seed=0, progress=False)
    pop = registry.resolve_model("pop", req)
    assert pop.model == "pop" and pop.model_version.startswith("pop-")
    again = registry.resolve_model(pop.model_version, req)  # the saved run, by id
    assert again.model == "pop" and again.scorer.counts == pop.scorer.counts and not again.seeded
    with pytest.raises(ValueError, match="unknown model 'nope': registered: .*register_models"):
        registry.resolve_model("nope", req)
    if "mmsrarec" not in registry.available_models():  # no import side effect: a stage-3 name needs registration
        with pytest.raises(ValueError, match="unknown model 'mmsrarec'"):
            registry.resolve_model("mmsrarec", req)
    with pytest.raises(ValueError, match="protocol"):
        registry.resolve_model("pop", registry.ModelRequest(warehouse=warehouse, dataset="toy", protocol="x"))
    # an explicit registration; resolving by name goes through the registered factory
    calls = []
    registry.register_model("mmsrarec-test-only", lambda r: calls.append(r) or pop, replace=True)
    assert registry.resolve_model("mmsrarec-test-only", req) is pop and calls == [req]
