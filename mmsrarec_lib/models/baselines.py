"""Train, save and load the ID baselines (``pop``, ``sasrec``) for one protocol, as evaluation ``Scorer`` objects."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mmsrarec_lib.eval.protocols import check_protocol, training_data
from mmsrarec_lib.model_runs import check_kind, read_manifest, record_model_run
from mmsrarec_lib.models.pop import PopScorer
from mmsrarec_lib.models.sasrec import SASRec, SASRecConfig, load_sasrec, save_sasrec, train_sasrec
from mmsrarec_lib.runs import code_version, new_run_id, utcnow
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)
BASELINES = ("pop", "sasrec")


class SASRecScorer:
    """Adapts a trained ``SASRec`` to the ``Scorer`` protocol; candidates it never saw score -inf."""

    def __init__(self, model: SASRec) -> None:
        self.model = model.eval()
        self.item_ids = model.item_ids

    def score_catalogue(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
        return self.model.score_catalogue(histories)  # (n_users, N)

    @torch.no_grad()
    def score_candidates(self, histories: Sequence[Sequence[str]], candidates: Sequence[Sequence[str]]) -> list:
        u = self.model.embed(histories)  # (n, D)
        out = []
        for vec, cands in zip(u, candidates, strict=True):
            idx = torch.tensor([self.model.item_index.get(c, 0) for c in cands], dtype=torch.long)  # (C,)
            s = (self.model.item_emb(idx) @ vec).numpy().astype(np.float64)  # (C,)
            s[idx.numpy() == 0] = -np.inf
            out.append(s)
        return out


@dataclass(frozen=True)
class TrainedBaseline:
    run_id: str
    kind: str
    scorer: Any  # PopScorer | SASRecScorer
    info: dict  # what model.json holds besides the item map


def sasrec_config(overrides: Mapping[str, Any] | None, *, seed: int) -> SASRecConfig:
    """Defaults, then non-None ``overrides`` (field names of ``SASRecConfig``), then ``seed``."""
    fields = {f.name for f in dataclasses.fields(SASRecConfig)}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(given) - fields
    if unknown:
        raise ValueError(f"unknown SASRec option(s) {sorted(unknown)}; known: {sorted(fields)}")
    return SASRecConfig(**{**given, "seed": seed})


def fit_baseline(
    warehouse: Warehouse,
    dataset: str,
    *,
    kind: str,
    protocol: str,
    seed: int = 0,
    sasrec_overrides: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    progress: bool = True,
) -> TrainedBaseline:
    """Train ``kind`` on ``protocol``'s training data and save it under ``<dataset>/models/<run_id>/``."""
    check_protocol(protocol)
    if kind not in BASELINES:
        raise ValueError(f"unknown baseline {kind!r}: use one of {', '.join(BASELINES)}")
    run_id = run_id or new_run_id(kind)
    with record_model_run(warehouse, dataset=dataset, kind=kind, run_id=run_id, protocol=protocol,
                          config={"seed": seed, **{k: v for k, v in (sasrec_overrides or {}).items() if v is not None}}
                          ) as recorder:
        data = training_data(warehouse, dataset, protocol)
        recorder.update(lineage={"table_versions": data.sources})
        info: dict[str, Any] = {
            "protocol": protocol, "seed": seed, "sources": data.sources, "code_version": code_version(),
            "created_at": utcnow().isoformat(), "n_train_sequences": len(data.sequences), "n_valid": len(data.valid),
        }
        if kind == "pop":
            scorer = PopScorer.fit(data.sequences)
            info["config"] = {}
            info["metrics"] = {}
            scorer.save(warehouse, dataset, run_id, info=info)
        else:
            cfg = sasrec_config(sasrec_overrides, seed=seed)
            model, summary = train_sasrec(sequences=data.sequences, valid=data.valid, config=cfg, progress=progress)
            info["config"] = dataclasses.asdict(cfg)
            info["metrics"] = {"valid_ndcg@10": summary["valid_ndcg@10"]}
            info["training"] = summary
            save_sasrec(warehouse, dataset, run_id, model, info=info)
            scorer = SASRecScorer(model)
        recorder.update(config=info["config"], metrics={**info["metrics"], "n_train_sequences": len(data.sequences),
                                                        "epochs_run": info.get("training", {}).get("epochs_run")})
    log.info("trained %s %s on %s/%s (seed %d)", kind, run_id, dataset, protocol, seed)
    return TrainedBaseline(run_id=run_id, kind=kind, scorer=scorer, info=info)


def load_baseline(warehouse: Warehouse, dataset: str, run_id: str, *, meta: dict | None = None) -> TrainedBaseline:
    """Load a saved ``pop`` or ``sasrec`` run as a scorer (``meta``: its model.json, when already read)."""
    kinds = ("pop", "sasrec")
    meta = check_kind(meta, run_id, kinds) if meta is not None else read_manifest(warehouse, dataset, run_id,
                                                                                  kind=kinds)
    kind = meta["kind"]
    scorer: Any = (PopScorer.load(warehouse, dataset, run_id) if kind == "pop"
                   else SASRecScorer(load_sasrec(warehouse, dataset, run_id, meta=meta)))
    info = {k: v for k, v in meta.items() if k != "item_ids"}
    return TrainedBaseline(run_id=run_id, kind=kind, scorer=scorer, info=info)
