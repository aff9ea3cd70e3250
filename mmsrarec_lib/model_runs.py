"""The ``model_runs`` table: every training run of a dataset, and the one answer to "which run is the latest?".

Every training job (SASRec / Pop, the summarizer policy, the collab index build, stage-3 MMSRARec) wraps its work
in :func:`record_model_run`: a ``running`` row is appended when it starts, a ``complete`` row (metrics, lineage,
artefact URI) when it returns, a ``failed`` row (the error) when it raises. The table is append-only, one row per
state change (Delta appends never conflict, so concurrent trainings cannot lose each other's rows); the state of
a run is its newest row (``updated_at``; an end state wins a tie). A run killed outright stays ``running``, which
no reader ever picks.

:func:`latest_complete_run` is the only "latest run" rule of the project (the nightly DAG, ``recommend``,
``build-collab``, ``summarize`` and stage-3 training all call it): among the *complete* runs of ``kind`` matching
the filters, the one that ended last (ties, or no end time, broken by run id, which sorts by start time). A filter
(``variant``, ``protocol``) matches a run whose column equals it, or is null (the run did not record it, e.g.
a model trained before protocols existed).

Warehouses from before this table: :func:`backfill_model_runs` reads the ``model.json`` manifests (and
summarizer ``metrics.json``) under ``<dataset>/models/`` once and writes a ``complete`` row per run found. It runs
lazily on the first read or write of a dataset without the table; ``mmsrarec runs --backfill`` runs it on purpose
(rows for folders already in the table are never duplicated). See docs/runs.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from mmsrarec_lib import schemas, tables
from mmsrarec_lib.runs import code_version, new_run_id, utcnow

if TYPE_CHECKING:
    from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)

TABLE = tables.MODEL_RUNS
MODELS_DIR = "models"
RUNNING, COMPLETE, FAILED = "running", "complete", "failed"
KINDS = ("sasrec", "pop", "summarizer", "collab_index", "mmsrarec")
# protocols whose stage-3 runs may serve recommendations: a ``cold``-protocol run never saw a tenth of the items
SERVING_PROTOCOLS = ("paper", "full")
_HINTS = {
    "sasrec": "train one with `mmsrarec train-baseline --model sasrec`",
    "pop": "train one with `mmsrarec train-baseline --model pop`",
    "summarizer": "train one with `mmsrarec train-summarizer`",
    "collab_index": "build one with `mmsrarec build-collab`",
    "mmsrarec": "train one with `mmsrarec train-recommender`",
}


class ModelRunNotFound(FileNotFoundError):
    """No complete run matches what was asked."""


@dataclass(frozen=True)
class ModelRun:
    """The current state of one training run (its newest ``model_runs`` row)."""

    run_id: str
    dataset: str
    kind: str
    status: str
    variant: str | None = None
    protocol: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    lineage: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    artefact_uri: str | None = None
    code_version: str | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    message: str | None = None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    def to_row(self) -> dict:
        return {
            "run_id": self.run_id, "dataset": self.dataset, "kind": self.kind, "variant": self.variant,
            "protocol": self.protocol, "status": self.status,
            "config_json": json.dumps(dict(self.config), sort_keys=True, default=str),
            "lineage": list(self.lineage.items()), "metrics": list(self.metrics.items()),
            "artefact_uri": self.artefact_uri, "code_version": self.code_version, "started_at": self.started_at,
            "ended_at": self.ended_at, "updated_at": self.updated_at, "message": self.message,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ModelRun:
        return cls(
            run_id=row["run_id"], dataset=row["dataset"], kind=row["kind"], status=row["status"],
            variant=row["variant"], protocol=row["protocol"], config=json.loads(row["config_json"] or "{}"),
            lineage=dict(row["lineage"] or []), metrics=dict(row["metrics"] or []),
            artefact_uri=row["artefact_uri"], code_version=row["code_version"], started_at=row["started_at"],
            ended_at=row["ended_at"], updated_at=row["updated_at"], message=row["message"],
        )


def flat_strings(values: Mapping[str, Any] | None, prefix: str = "") -> dict[str, str]:
    """Nested lineage as ``{"table_versions.items": "3", "generator_run": "sasrec-..."}`` (nulls dropped)."""
    out: dict[str, str] = {}
    for key, value in (values or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_strings(value, prefix=name + "."))
        elif value is not None:
            out[name] = value if isinstance(value, str) else json.dumps(value, default=str)
    return out


def numeric(values: Mapping[str, Any] | None, prefix: str = "", *, nested: bool = True) -> dict[str, float]:
    """The numbers of a summary as ``{"after.reward": 0.41, ...}`` (bools and non-numbers dropped; nested
    mappings flattened, or skipped with ``nested=False``)."""
    out: dict[str, float] = {}
    for key, value in (values or {}).items():
        if isinstance(value, Mapping):
            if nested:
                out.update(numeric(value, prefix=f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = float(value)
    return out


def manifest_metrics(meta: Mapping[str, Any]) -> dict[str, float]:
    """The metrics summary of a ``model.json``: every number of ``metrics``, the top-level numbers of
    ``training`` and ``fusion`` (e.g. ``training.train_seconds``, ``fusion.weight``)."""
    return {**numeric(meta.get("metrics")), **numeric(meta.get("training"), "training.", nested=False),
            **numeric(meta.get("fusion"), "fusion.", nested=False)}


# --------------------------------------------------------------------------- writing
def _append(warehouse: Warehouse, runs: list[ModelRun]) -> None:
    table = pa.Table.from_pylist([r.to_row() for r in runs], schema=schemas.MODEL_RUNS)
    warehouse.write_table(runs[0].dataset, TABLE, table, mode="append")


def start_model_run(
    warehouse: Warehouse,
    *,
    dataset: str,
    kind: str,
    run_id: str | None = None,
    variant: str | None = None,
    protocol: str | None = None,
    config: Mapping[str, Any] | None = None,
    lineage: Mapping[str, Any] | None = None,
    artefact_uri: str | None = None,
) -> ModelRun:
    """Append the ``running`` row of a new (or resumed) run and return it."""
    if kind not in KINDS:
        raise ValueError(f"unknown model run kind {kind!r}: use one of {', '.join(KINDS)}")
    if not warehouse.has_table(dataset, TABLE):
        backfill_model_runs(warehouse, dataset)  # an existing warehouse: its folder runs first
    run_id = run_id or new_run_id(kind)
    now = utcnow()
    run = ModelRun(run_id=run_id, dataset=dataset, kind=kind, status=RUNNING, variant=variant, protocol=protocol,
                   config=dict(config or {}), lineage=flat_strings(lineage),
                   artefact_uri=artefact_uri or warehouse.uri(dataset, MODELS_DIR, run_id),
                   code_version=code_version(), started_at=now, updated_at=now)
    _append(warehouse, [run])
    log.info("model run %s (%s%s) started", run_id, kind, f", {variant}" if variant else "")
    return run


def finish_model_run(
    warehouse: Warehouse,
    run: ModelRun,
    *,
    status: str = COMPLETE,
    metrics: Mapping[str, Any] | None = None,
    lineage: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    artefact_uri: str | None = None,
    message: str | None = None,
) -> ModelRun:
    """Append the end row (``complete`` or ``failed``) of ``run``; metrics/lineage/config add to what it had."""
    if status not in (COMPLETE, FAILED):
        raise ValueError(f"a run ends complete or failed, not {status!r}")
    now = utcnow()
    done = replace(run, status=status, metrics={**run.metrics, **numeric(metrics)},
                   lineage={**run.lineage, **flat_strings(lineage)}, config={**run.config, **(config or {})},
                   artefact_uri=artefact_uri or run.artefact_uri, ended_at=now, updated_at=now,
                   message=message[:2000] if message else None)
    _append(warehouse, [done])
    log.info("model run %s (%s) %s", run.run_id, run.kind, status)
    return done


@dataclass
class RunRecorder:
    """What a training job reports while it runs; :func:`record_model_run` writes it in the end row."""

    run: ModelRun
    metrics: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    artefact_uri: str | None = None

    @property
    def run_id(self) -> str:
        return self.run.run_id

    def update(self, *, metrics: Mapping[str, Any] | None = None, lineage: Mapping[str, Any] | None = None,
               config: Mapping[str, Any] | None = None, artefact_uri: str | None = None) -> None:
        self.metrics.update(metrics or {})
        self.lineage.update(lineage or {})
        self.config.update(config or {})
        self.artefact_uri = artefact_uri or self.artefact_uri


@contextlib.contextmanager
def record_model_run(warehouse: Warehouse, *, dataset: str, kind: str, run_id: str | None = None,
                     variant: str | None = None, protocol: str | None = None,
                     config: Mapping[str, Any] | None = None, lineage: Mapping[str, Any] | None = None,
                     artefact_uri: str | None = None) -> Iterator[RunRecorder]:
    """``running`` on enter; ``complete`` with what the body gave :meth:`RunRecorder.update` on a normal exit;
    ``failed`` with the error when the body raises (the exception propagates)."""
    run = start_model_run(warehouse, dataset=dataset, kind=kind, run_id=run_id, variant=variant, protocol=protocol,
                          config=config, lineage=lineage, artefact_uri=artefact_uri)
    recorder = RunRecorder(run)
    try:
        yield recorder
    except BaseException as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        try:
            finish_model_run(warehouse, recorder.run, status=FAILED, metrics=recorder.metrics,
                             lineage=recorder.lineage, config=recorder.config, artefact_uri=recorder.artefact_uri,
                             message=f"{type(exc).__name__}: {first}")
        except Exception as write_exc:  # noqa: BLE001 (the training error matters more; the run stays running)
            log.error("could not mark model run %s failed: %s", recorder.run_id, write_exc)
        raise
    finish_model_run(warehouse, recorder.run, status=COMPLETE, metrics=recorder.metrics, lineage=recorder.lineage,
                     config=recorder.config, artefact_uri=recorder.artefact_uri)


# --------------------------------------------------------------------------- reading
def _state(rows: list[dict]) -> list[ModelRun]:
    last: dict[str, dict] = {}
    for row in rows:  # file order is not commit order: newest updated_at wins, an end state wins a tie
        key = (row["updated_at"], row["status"] != RUNNING)
        prev = last.get(row["run_id"])
        if prev is None or key >= (prev["updated_at"], prev["status"] != RUNNING):
            last[row["run_id"]] = row
    return [ModelRun.from_row(r) for r in last.values()]


def _all_runs(warehouse: Warehouse, dataset: str) -> list[ModelRun]:
    if not warehouse.has_table(dataset, TABLE):
        return backfill_model_runs(warehouse, dataset)
    return _state(warehouse.read_table(dataset, TABLE).to_pylist())


def _matches(value: str | None, wanted: str | Collection[str] | None) -> bool:
    """``wanted`` None: anything; a string: that value; a collection: any of its values (a run without the field
    matches, as runs recorded before it existed)."""
    if wanted is None or value is None:
        return True
    return value == wanted if isinstance(wanted, str) else value in wanted


def _newest_first(run: ModelRun) -> tuple:
    return (run.started_at or run.ended_at or dt.datetime.min.replace(tzinfo=dt.UTC), run.run_id)


def list_model_runs(warehouse: Warehouse, *, dataset: str, kind: str | None = None, status: str | None = None,
                    limit: int | None = None) -> list[ModelRun]:
    """Runs of ``dataset`` (optionally one kind / status), newest start first."""
    runs = [r for r in _all_runs(warehouse, dataset)
            if (kind is None or r.kind == kind) and (status is None or r.status == status)]
    runs.sort(key=_newest_first, reverse=True)
    return runs[:limit] if limit else runs


def latest_complete_run(warehouse: Warehouse, *, dataset: str, kind: str, variant: str | None = None,
                        protocol: str | Collection[str] | None = None) -> str:
    """The run id of the complete ``kind`` run that ended last among those matching the filters (module doc)."""
    runs = [r for r in _all_runs(warehouse, dataset) if r.kind == kind]
    chosen = [r for r in runs if r.status == COMPLETE and _matches(r.variant, variant)
              and _matches(r.protocol, protocol)]
    if not chosen:
        asked = ", ".join(f"{k}={v!r}" for k, v in (("variant", variant), ("protocol", protocol)) if v)
        states = {s: sum(r.status == s for r in runs) for s in (COMPLETE, RUNNING, FAILED)}
        seen = ", ".join(f"{n} {s}" for s, n in states.items() if n) or "none"
        raise ModelRunNotFound(
            f"no complete {kind} run{f' ({asked})' if asked else ''} in model_runs of dataset {dataset!r} "
            f"(runs of kind {kind}: {seen}): {_HINTS.get(kind, 'train one first')}")
    utc_min = dt.datetime.min.replace(tzinfo=dt.UTC)
    return max(chosen, key=lambda r: (r.ended_at or utc_min, r.run_id)).run_id


def latest_serving_run(warehouse: Warehouse, *, dataset: str, variant: str = "mmsrarec") -> str:
    """The stage-3 run the nightly top-K serves by default (``recommend`` and the nightly DAG): the newest complete
    ``mmsrarec`` run of ``variant`` trained on a serving protocol, never an evaluation-only ``cold`` run."""
    return latest_complete_run(warehouse, dataset=dataset, kind="mmsrarec", variant=variant,
                               protocol=SERVING_PROTOCOLS)


def read_manifest(warehouse: Warehouse, dataset: str, run_id: str, *, kind: str | Collection[str] | None = None
                  ) -> dict:
    """The ``model.json`` of a saved run (written last, so a folder with it is complete). FileNotFoundError when
    there is none ("no saved model ..."); ValueError when ``kind`` is given and the run is of another kind."""
    uri = warehouse.uri(dataset, MODELS_DIR, run_id, "model.json")
    if not warehouse.exists(uri):
        raise FileNotFoundError(f"no saved model {run_id!r} for dataset {dataset!r} at {uri.rsplit('/', 1)[0]}")
    meta = json.loads(warehouse.read_bytes(uri))
    return meta if kind is None else check_kind(meta, run_id, kind)


def check_kind(meta: dict, run_id: str, kind: str | Collection[str]) -> dict:
    """``meta`` (a run's model.json) when the run is of ``kind``, else a ValueError naming both."""
    if not _matches(meta.get("kind"), kind):
        want = kind if isinstance(kind, str) else " or ".join(sorted(kind))
        raise ValueError(f"model {run_id!r} is a {meta.get('kind')!r} model, not {want!r}")
    return meta


# --------------------------------------------------------------------------- backfill from model folders
def _read_json(warehouse: Warehouse, uri: str) -> dict | None:
    if not warehouse.exists(uri):
        return None
    try:
        data = json.loads(warehouse.read_bytes(uri))
    except (ValueError, UnicodeDecodeError):
        log.warning("unreadable %s; skipped", uri)
        return None
    return data if isinstance(data, dict) else None


def _timestamp(value: Any) -> dt.datetime | None:
    try:
        ts = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC)


def _kind_of(meta: Mapping[str, Any]) -> str | None:
    """A manifest's kind: ``kind``, else (manifests of early SASRec runs) any name key starting with sasrec."""
    if meta.get("kind"):
        return str(meta["kind"]).lower()
    names = [str(meta.get(k, "")).lower() for k in ("model", "model_type", "type", "name")]
    return "sasrec" if any(n.startswith("sasrec") for n in names) else None


def folder_run(warehouse: Warehouse, dataset: str, run_id: str) -> ModelRun | None:
    """The ``complete`` run a model folder describes (its ``model.json``, or a summarizer's ``metrics.json``)."""
    uri = warehouse.uri(dataset, MODELS_DIR, run_id)
    meta = _read_json(warehouse, f"{uri}/model.json")
    if meta is not None and _kind_of(meta):
        kind = _kind_of(meta)
        variant = meta.get("variant") or ("mmsrarec" if kind == "mmsrarec" else None)  # before variants existed
        metrics = manifest_metrics(meta)
        lineage = {**flat_strings(meta.get("lineage")), **flat_strings(meta.get("sources"), "table_versions."),
                   **flat_strings({"generator_run": meta.get("generator_run")})}
        config = meta.get("config") if isinstance(meta.get("config"), Mapping) else {}
    else:
        meta = _read_json(warehouse, f"{uri}/metrics.json")
        if meta is None or "backend" not in meta:
            return None
        kind, variant = "summarizer", str(meta["backend"])
        metrics = {**numeric(meta.get("after"), "after."), **numeric(meta.get("before"), "before.")}
        lineage, config = {}, {k: meta[k] for k in ("grpo", "reward", "encoder", "base_model") if k in meta}
    created = _timestamp(meta.get("created_at")) if meta.get("created_at") else None
    return ModelRun(run_id=run_id, dataset=dataset, kind=kind, status=COMPLETE, variant=variant,
                    protocol=meta.get("protocol"), config=config, lineage=lineage, metrics=metrics,
                    artefact_uri=uri, code_version=meta.get("code_version"), started_at=None, ended_at=created,
                    updated_at=utcnow(), message="backfilled from the model folder")


def backfill_model_runs(warehouse: Warehouse, dataset: str) -> list[ModelRun]:
    """Write a ``complete`` row for every model folder of ``dataset`` not yet in ``model_runs``; returns every
    run the folders describe (the table's view of them after this call)."""
    known = set()
    if warehouse.has_table(dataset, TABLE):
        known = set(warehouse.read_table(dataset, TABLE, columns=["run_id"]).column("run_id").to_pylist())
    found = [r for name in warehouse.list_dir(warehouse.uri(dataset, MODELS_DIR))
             if (r := folder_run(warehouse, dataset, name)) is not None]
    new = [r for r in found if r.run_id not in known]
    if new:
        try:
            _append(warehouse, new)
            log.info("model_runs of %s: backfilled %d runs from model folders", dataset, len(new))
        except OSError as exc:  # e.g. a read-only warehouse: answer from the folders anyway
            log.warning("could not write the model_runs backfill of %s: %s", dataset, exc)
    return found
