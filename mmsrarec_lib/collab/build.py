"""Full build of stage 2: embed training users, index them, retrieve neighbours for every user, write the table.

Order of writes (each one atomic): index version files, the ``LATEST`` pointer, ``user_collab_keywords`` (one
overwrite commit, so a re-run replaces rows and never duplicates them), and last the refresh watermark (the
:class:`Watermark` helpers live here; :mod:`mmsrarec_lib.collab.refresh` reads and advances it). Every build is
a ``model_runs`` run of kind ``collab_index`` (variant: the embedder kind; lineage: the SASRec run, keyword
source, index and table versions).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import pyarrow as pa

from mmsrarec_lib import tables
from mmsrarec_lib.collab.content import (
    CONTENT_FILE,
    EmbedderConfig,
    ItemContent,
    hybrid_embedder,
    load_item_image_features,
    load_item_texts,
)
from mmsrarec_lib.collab.embed import Embedder, embed_histories
from mmsrarec_lib.collab.index import CollabIndex, IndexConfig, build_index
from mmsrarec_lib.collab.retrieval import Query, RetrievalConfig, find_neighbors
from mmsrarec_lib.collab.store import index_uri, prune_index_versions, save_index
from mmsrarec_lib.collab.table import PROTOCOLS, TABLE, build_rows
from mmsrarec_lib.collab.windows import (
    Target,
    UserSequence,
    WindowConfig,
    from_us,
    latest_windows,
    load_sequences,
    load_targets,
    paper_windows,
    training_windows,
)
from mmsrarec_lib.model_runs import record_model_run
from mmsrarec_lib.runs import new_run_id, utcnow
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)

WATERMARK = "WATERMARK.json"


@dataclass(frozen=True)
class Watermark:
    max_interaction_us: int
    index_version: str
    table_version: int | None
    updated_at: str = ""


def watermark_uri(warehouse: Warehouse, dataset: str) -> str:
    return index_uri(warehouse, dataset, WATERMARK)


def read_watermark(warehouse: Warehouse, dataset: str) -> Watermark:
    uri = watermark_uri(warehouse, dataset)
    if not warehouse.exists(uri):
        raise FileNotFoundError(f"no collab watermark for dataset {dataset!r} ({uri}): run build-collab first")
    data = json.loads(warehouse.read_bytes(uri))
    data.pop("max_interaction_timestamp", None)
    return Watermark(**data)


def write_watermark(warehouse: Warehouse, dataset: str, wm: Watermark) -> None:
    data = {**asdict(wm), "updated_at": utcnow().isoformat()}
    data["max_interaction_timestamp"] = from_us(wm.max_interaction_us).isoformat()  # for people reading the file
    warehouse.write_bytes(watermark_uri(warehouse, dataset), json.dumps(data, indent=2, sort_keys=True).encode())
    log.info("watermark of %s advanced to %s", dataset, data["max_interaction_timestamp"])


@dataclass(frozen=True)
class CollabConfig:
    """Everything that decides the stage-2 output (stored in the index metadata so a refresh reuses it)."""

    dataset: str
    window: WindowConfig = field(default_factory=WindowConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    protocols: tuple[str, ...] = PROTOCOLS
    batch_size: int = 1024

    def __post_init__(self) -> None:
        bad = [p for p in self.protocols if p not in PROTOCOLS]
        if bad or not self.protocols:
            raise ValueError(f"protocols must be a non-empty subset of {PROTOCOLS}, got {self.protocols}")

    def to_meta(self) -> dict:
        return {
            "window": asdict(self.window),
            "embedding": asdict(self.embedder),
            "retrieval": asdict(self.retrieval),
            "protocols": list(self.protocols),
            "batch_size": self.batch_size,
        }

    @classmethod
    def from_meta(cls, dataset: str, meta: Mapping) -> CollabConfig:
        # indexes built before multi-window entries and content had one SASRec entry per user
        return cls(
            dataset=dataset,
            window=WindowConfig(**{"entries": "last", **meta["window"]}),
            embedder=EmbedderConfig(**meta.get("embedding", {"kind": "sasrec"})),
            index=IndexConfig(**meta["config"]),
            retrieval=RetrievalConfig(**meta["retrieval"]),
            protocols=tuple(meta["protocols"]),
            batch_size=int(meta.get("batch_size", 1024)),
        )


@dataclass(frozen=True)
class CollabResult:
    index_version: str
    table_version: int | None
    n_indexed: int  # training users whose index entries were (re)written
    n_rows: int  # table rows written or merged
    n_short: int  # rows with fewer than k neighbours
    changed_users: tuple[str, ...] = ()
    n_entries: int = 0  # index entries (windows) written
    pruned_versions: tuple[str, ...] = ()


def collab_embedder(
    warehouse: Warehouse,
    dataset: str,
    ids: Embedder,
    config: EmbedderConfig,
    *,
    files: Mapping[str, bytes] | None = None,
) -> tuple[Embedder, dict[str, bytes]]:
    """The embedder ``config`` asks for around the ID embedder ``ids`` (SASRec), and the files to store with the
    index: for ``hybrid``, the item content, fitted on the catalogue (a build) or loaded from ``files`` (a
    refresh: the same projection as the index, extended with items added since)."""
    if config.kind == "sasrec":
        return ids, {}
    stored = ItemContent.from_bytes(files[CONTENT_FILE]) if files and CONTENT_FILE in files else None
    hybrid = hybrid_embedder(ids, config, load_item_texts(warehouse, dataset), content=stored,
                             images=load_item_image_features(warehouse, dataset, config))
    return hybrid, {CONTENT_FILE: hybrid.content.to_bytes()}


def query_rows(
    idx: CollabIndex,
    sequences: Mapping[str, UserSequence],
    targets: Mapping[str, Target],
    *,
    config: CollabConfig,
    embedder: Embedder,
    keywords: Mapping[str, Sequence[str]],
    keyword_source: str,
    created_at: dt.datetime,
) -> pa.Table:
    """Table rows for the given users under every configured protocol."""
    parts = []
    for protocol in config.protocols:
        if protocol == "paper":
            windows = paper_windows(sequences, targets, config.window)
            queries = [Query(w.user_id, w.next_item_id, w.as_of_us) for w in windows]
        else:
            windows = latest_windows(sequences, config.window)
            queries = [Query(w.user_id, None, w.as_of_us) for w in windows]
        if not windows:
            continue
        vectors = embed_histories(
            embedder, [w.items for w in windows], batch_size=config.batch_size, desc=f"embed {protocol} queries"
        )  # (m, d)
        neighbors = find_neighbors(idx, queries, vectors, config=config.retrieval)
        parts.append(
            build_rows(
                windows,
                neighbors,
                protocol=protocol,
                keywords=keywords,
                keyword_source=keyword_source,
                index_version=idx.version,
                created_at=created_at,
            )
        )
        log.info("%s: neighbours for %d users", protocol, len(windows))
    if not parts:
        from mmsrarec_lib import schemas

        return schemas.empty(schemas.USER_COLLAB_KEYWORDS)
    return pa.concat_tables(parts)


def count_short(rows: pa.Table, k: int) -> int:
    import pyarrow.compute as pc

    if rows.num_rows == 0:
        return 0
    return int(pc.sum(pc.less(pc.list_value_length(rows.column("neighbors")), k)).as_py() or 0)


def build_collab(
    warehouse: Warehouse,
    *,
    config: CollabConfig,
    embedder: Embedder,
    embedder_info: Mapping,
    keywords: Mapping[str, Sequence[str]],
    keyword_source: str,
    keep_index_versions: int = 5,
) -> CollabResult:
    """Build everything from scratch: a new index version, all table rows (one overwrite), the watermark.
    ``embedder`` is the ID embedder (SASRec); ``config.embedder`` decides what is built around it. Afterwards all
    but the newest ``keep_index_versions`` index versions are deleted. Recorded in ``model_runs``."""
    ds = config.dataset
    lineage = {"sasrec_run": embedder_info.get("run_id"), "keyword_source": keyword_source,
               "table_versions": {t: warehouse.table_version(ds, t)
                                  for t in (tables.INTERACTIONS, tables.EVAL_CANDIDATES)}}
    with record_model_run(warehouse, dataset=ds, kind="collab_index", run_id=new_run_id("collab"),
                          variant=config.embedder.kind, config={**config.to_meta(), "embedder": dict(embedder_info)},
                          lineage=lineage, artefact_uri=index_uri(warehouse, ds)) as recorder:
        result = _build(warehouse, config=config, embedder=embedder, embedder_info=embedder_info, keywords=keywords,
                        keyword_source=keyword_source, keep_index_versions=keep_index_versions)
        recorder.update(
            metrics={"users_indexed": result.n_indexed, "index_entries": result.n_entries, "rows": result.n_rows,
                     "rows_short": result.n_short},
            lineage={"index_version": result.index_version, "table_version": result.table_version},
            artefact_uri=index_uri(warehouse, ds, result.index_version))
    return result


def _build(warehouse: Warehouse, *, config: CollabConfig, embedder: Embedder, embedder_info: Mapping,
           keywords: Mapping[str, Sequence[str]], keyword_source: str, keep_index_versions: int) -> CollabResult:
    ds = config.dataset
    targets = load_targets(warehouse, ds)
    sequences = load_sequences(warehouse, ds)
    if not sequences:
        raise ValueError(f"dataset {ds!r}: the interactions table is empty")
    train = training_windows(sequences, targets, config.window)
    if not train:
        raise ValueError(f"dataset {ds!r}: no training users (split == 'train' in eval_candidates) to index")
    embedder, files = collab_embedder(warehouse, ds, embedder, config.embedder)
    vectors = embed_histories(embedder, [w.items for w in train], batch_size=config.batch_size, desc="embed training")
    meta = {**config.to_meta(), "embedder": dict(embedder_info), "keyword_source": keyword_source, "dataset": ds}
    idx = build_index(train, vectors, config=config.index, extra_meta=meta, files=files)
    save_index(warehouse, ds, idx)

    rows = query_rows(
        idx,
        sequences,
        targets,
        config=config,
        embedder=embedder,
        keywords=keywords,
        keyword_source=keyword_source,
        created_at=utcnow(),
    )
    version = warehouse.write_table(ds, TABLE, rows, mode="overwrite")
    max_ts = max(s.timestamps[-1] for s in sequences.values() if s.timestamps)
    write_watermark(
        warehouse, ds, Watermark(max_interaction_us=max_ts, index_version=idx.version, table_version=version)
    )
    pruned = prune_index_versions(warehouse, ds, keep=keep_index_versions)
    short = count_short(rows, config.retrieval.k)
    log.info(
        "build-collab %s: %d entries of %d training users indexed (%s), %d rows (table version %s), "
        "%d with < %d neighbours",
        ds, idx.ntotal, idx.n_users, idx.kind, rows.num_rows, version, short, config.retrieval.k,
    )
    return CollabResult(idx.version, version, idx.n_users, rows.num_rows, short, n_entries=idx.ntotal,
                        pruned_versions=tuple(pruned))
