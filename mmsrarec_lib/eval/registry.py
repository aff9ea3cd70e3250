"""The model registry: names and saved run ids -> ``Scorer`` objects; ``evaluate_scorer`` writes evaluation_runs.

A scorer is anything with ``item_ids`` and the two methods of ``Scorer``. ``evaluate`` resolves ``--model``:
1. a registered name (``pop``, ``sasrec``: trained afresh for the protocol and seed, and saved);
2. a saved run id: ``<warehouse>/<dataset>/models/<run_id>/model.json`` names its ``kind``, whose loader
   (``register_kind_loader``) rebuilds the scorer; ``pop``/``sasrec`` are built in.
Registration is explicit: the stage-3 names (``mmsrarec...``) and the loader of kind ``mmsrarec`` exist once the
caller ran ``mmsrarec_lib.recommend.reranker.register_models()`` (``jobs/evaluate.py`` does); nothing is
imported here by name.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from mmsrarec_lib import schemas, tables
from mmsrarec_lib.eval.protocols import check_protocol, evaluate_protocol
from mmsrarec_lib.runs import code_version, new_run_id, utcnow
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)
EVALUATION_RUNS_TABLE = tables.EVALUATION_RUNS
# where the stage-3 models are registered (named in errors only: the registry never imports a higher layer)
STAGE3_REGISTRATION = "mmsrarec_lib.recommend.reranker.register_models()"


@runtime_checkable
class Scorer(Protocol):
    item_ids: Sequence[str]  # the columns of score_catalogue

    def score_candidates(self, histories: list[list[str]], candidates: list[list[str]]) -> list[np.ndarray]:
        """One score per candidate per user (higher is better; -inf allowed, NaN rejected)."""

    def score_catalogue(self, histories: list[list[str]]) -> np.ndarray:
        """(n_users, len(item_ids)) scores of every item the scorer knows."""


@dataclass(frozen=True)
class ModelRequest:
    """What a factory gets: where, which protocol/seed, and free-form options (e.g. SASRec overrides)."""

    warehouse: Warehouse
    dataset: str
    protocol: str
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)
    progress: bool = True


@dataclass(frozen=True)
class ResolvedModel:
    scorer: Scorer
    model: str  # evaluation_runs.model
    model_version: str  # evaluation_runs.model_version, e.g. the saved run id
    config: Mapping[str, Any]  # stored as config_json
    seeded: bool = True  # False: a fixed saved model, further seeds would only repeat it
    seed: int | None = None  # the seed the model was trained with, when known (stored in evaluation_runs)


ModelFactory = Callable[[ModelRequest], ResolvedModel]
KindLoader = Callable[..., ResolvedModel]  # (warehouse, dataset, run_id, model_json, *, protocol=evaluated protocol)
_FACTORIES: dict[str, ModelFactory] = {}
_KIND_LOADERS: dict[str, KindLoader] = {}


def register_model(name: str, factory: ModelFactory, *, replace: bool = False) -> None:
    """Make ``--model name`` resolve through ``factory(request) -> ResolvedModel``."""
    if name in _FACTORIES and not replace:
        raise ValueError(f"model {name!r} is already registered")
    _FACTORIES[name] = factory


def register_kind_loader(kind: str, loader: KindLoader, *, replace: bool = False) -> None:
    """Make saved runs whose model.json has ``"kind": kind`` loadable by run id."""
    if kind in _KIND_LOADERS and not replace:
        raise ValueError(f"a loader for kind {kind!r} is already registered")
    _KIND_LOADERS[kind] = loader


def available_models() -> list[str]:
    return sorted(_FACTORIES)


def resolve_model(name_or_run_id: str, request: ModelRequest) -> ResolvedModel:
    """A scorer for a registered name or a saved run id (see the module docstring)."""
    check_protocol(request.protocol)
    if name_or_run_id in _FACTORIES:
        return _FACTORIES[name_or_run_id](request)
    from mmsrarec_lib.model_runs import read_manifest

    wh, ds = request.warehouse, request.dataset
    try:
        meta = read_manifest(wh, ds, name_or_run_id)
    except FileNotFoundError:
        raise ValueError(
            f"unknown model {name_or_run_id!r}: registered: {', '.join(available_models())}; stage-3 models are "
            f"registered by {STAGE3_REGISTRATION} (and no saved run at {wh.uri(ds, 'models', name_or_run_id)})"
        ) from None
    kind = str(meta.get("kind"))
    if kind not in _KIND_LOADERS:
        raise ValueError(f"saved run {name_or_run_id!r} has kind {kind!r}, for which no loader is registered "
                         f"(registered: {', '.join(sorted(_KIND_LOADERS))}; stage-3 runs are loadable once "
                         f"{STAGE3_REGISTRATION} ran)")
    trained_on = meta.get("protocol")
    if trained_on and trained_on != request.protocol:
        log.warning("model %s was trained for protocol %r, evaluated under %r", name_or_run_id, trained_on,
                    request.protocol)
    return _KIND_LOADERS[kind](wh, ds, name_or_run_id, meta, protocol=request.protocol)


# --------------------------------------------------------------------------- built-in baselines
def _baseline_factory(kind: str) -> ModelFactory:
    def factory(request: ModelRequest) -> ResolvedModel:
        from mmsrarec_lib.models.baselines import fit_baseline

        trained = fit_baseline(
            request.warehouse, request.dataset, kind=kind, protocol=request.protocol, seed=request.seed,
            sasrec_overrides=request.options.get("sasrec"), progress=request.progress,
        )
        return ResolvedModel(trained.scorer, kind, trained.run_id, _baseline_config(trained.info), seed=request.seed)

    return factory


def _baseline_config(info: Mapping[str, Any]) -> dict:
    keep = ("protocol", "seed", "config", "metrics", "sources", "n_train_sequences")
    out = {k: info[k] for k in keep if k in info}
    if "training" in info:
        out["training"] = {k: info["training"][k] for k in ("epochs_run", "best_epoch", "seconds_per_epoch")}
    return out


def _baseline_loader(warehouse: Warehouse, dataset: str, run_id: str, meta: dict, *,
                     protocol: str | None = None) -> ResolvedModel:
    from mmsrarec_lib.models.baselines import load_baseline

    trained = load_baseline(warehouse, dataset, run_id, meta=meta)
    return ResolvedModel(trained.scorer, trained.kind, run_id, _baseline_config(trained.info), seeded=False,
                         seed=trained.info.get("seed"))


for _kind in ("pop", "sasrec"):
    register_model(_kind, _baseline_factory(_kind))
    register_kind_loader(_kind, _baseline_loader)


# --------------------------------------------------------------------------- evaluation_runs
def _sql_str(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def append_evaluation_rows(warehouse: Warehouse, dataset: str, rows: Sequence[Mapping[str, Any]]) -> int | None:
    """Write metric rows (EVALUATION_RUNS columns; code_version/created_at filled when absent) in one commit.

    Idempotent per (run_id, model, protocol, seed): rows already stored for that key are replaced in the same
    commit (a retried job does not duplicate), otherwise they are appended (safe beside concurrent writers).
    """
    if not rows:
        return None
    now, cv = utcnow(), code_version()
    full = [{"code_version": cv, "created_at": now, **r} for r in rows]
    keys = {(r["run_id"], r["model"], r["protocol"], r["seed"]) for r in full}
    if len(keys) != 1:
        raise ValueError(f"rows of one write must share run_id/model/protocol/seed, got {sorted(keys)}")
    run_id, model, protocol, seed = keys.pop()
    table = pa.Table.from_pylist(full, schema=schemas.EVALUATION_RUNS)
    predicate = (f"run_id = {_sql_str(run_id)} AND model = {_sql_str(model)} AND protocol = {_sql_str(protocol)}"
                 + (f" AND seed = {int(seed)}" if seed is not None else " AND seed IS NULL"))
    if warehouse.has_table(dataset, EVALUATION_RUNS_TABLE):
        import pyarrow.dataset as pads

        ds = warehouse.dataset(dataset, EVALUATION_RUNS_TABLE)
        seed_filter = pads.field("seed").is_null() if seed is None else pads.field("seed") == seed
        exists = ds.count_rows(filter=(pads.field("run_id") == run_id) & (pads.field("model") == model)
                               & (pads.field("protocol") == protocol) & seed_filter) > 0
        if exists:
            return warehouse.write_table(dataset, EVALUATION_RUNS_TABLE, table, mode="overwrite", predicate=predicate)
    return warehouse.write_table(dataset, EVALUATION_RUNS_TABLE, table, mode="append")


def evaluate_scorer(
    warehouse: Warehouse,
    dataset: str,
    scorer: Scorer,
    protocol: str,
    *,
    model: str,
    model_version: str,
    seed: int | None,
    config: Mapping[str, Any] | None,
    run_id: str | None = None,
    split: str = "test",
    record: bool = True,
) -> dict[str, float]:
    """Run ``protocol`` on ``split`` for ``scorer``; append its metrics to evaluation_runs (``record``); return them
    as ``{"hr@5": 0.31, "ndcg@5": ..., "auc": ...}`` (raw 0..1 values). The per-user ranks go to
    ``evaluation_ranks/`` (``mmsrarec_lib.eval.paired``) for the paired intervals."""
    from mmsrarec_lib.eval.paired import write_ranks

    result = evaluate_protocol(scorer, warehouse, dataset, protocol, split=split)
    values, n_users = result.values, len(result.ranks)
    log.info("%s %s (%s, seed %s) on %s/%s: %s", model, model_version, protocol, seed, dataset, split,
             {k: round(v, 4) for k, v in values.items()})
    if record:
        cfg = {**(config or {}), **({"split": split} if split != "test" else {})}
        config_json = json.dumps(cfg, sort_keys=True, default=str)
        run_id = run_id or new_run_id("eval")
        if split == "test":
            write_ranks(warehouse, dataset, run_id=run_id, protocol=protocol, model=model, seed=seed,
                        user_ids=result.user_ids, ranks=result.ranks, n_candidates=result.n_candidates)
        rows = []
        for key, value in values.items():
            metric, _, k = key.partition("@")
            rows.append({
                "run_id": run_id, "dataset": dataset, "model": model, "model_version": model_version,
                "protocol": protocol, "metric": metric, "k": int(k) if k else None, "value": float(value),
                "n_users": n_users, "seed": seed, "config_json": config_json,
            })
        append_evaluation_rows(warehouse, dataset, rows)
    return values
