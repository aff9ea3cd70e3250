"""The similar-user index: faiss inner product over L2-normalised training-user vectors, with its id map.

Kinds: ``flat`` (exact, ``IndexIDMap2(IndexFlatIP)``) below ``exact_threshold`` vectors, else ``ivf``
(``IndexIVFFlat``, inner product) or ``hnsw`` (``IndexIDMap2(IndexHNSWFlat)``). faiss-gpu is used for search when
``faiss.get_num_gpus() > 0``; what is stored is always the CPU index.

A faiss id is the row of the user in the id map (``entries``): ids are dense, stable across refreshes (a changed
user keeps its id; a new training user gets the next one), so an update is ``remove_ids`` + ``add_with_ids``.

Persisted under ``<warehouse>/<dataset>/indexes/collab/<version>/`` through ``Warehouse.write_bytes`` (so local
and ``s3://`` behave alike): ``index.faiss`` (``faiss.serialize_index``), ``entries.parquet`` (faiss_id, user_id,
next_item_id, next_timestamp, as_of) and ``meta.json`` (written last: a version without it is incomplete).
``indexes/collab/LATEST`` holds the newest complete version.
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmsrarec_lib.collab.windows import UserWindow
from mmsrarec_lib.runs import code_version, new_run_id, utcnow
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)

INDEX_DIR = ("indexes", "collab")
LATEST = "LATEST"
ENTRIES_SCHEMA = pa.schema(
    [
        ("faiss_id", pa.int64()),
        ("user_id", pa.string()),
        ("next_item_id", pa.string()),
        ("next_timestamp", pa.timestamp("us", tz="UTC")),
        ("as_of", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass(frozen=True)
class IndexConfig:
    """How to index: exact below ``exact_threshold`` vectors, else ``approx`` (ivf | hnsw)."""

    exact_threshold: int = 50_000
    approx: Literal["ivf", "hnsw"] = "ivf"
    nlist: int | None = None  # IVF lists; default 4*sqrt(n), at most n/39 (faiss wants >= 39 points a list)
    nprobe: int = 16
    train_per_list: int = 40  # IVF k-means trains on at most nlist * this many sampled vectors
    hnsw_m: int = 32
    hnsw_ef_search: int = 128
    use_gpu: bool | None = None  # None: use a GPU for search when faiss sees one
    seed: int = 0

    def __post_init__(self) -> None:
        if self.approx not in ("ivf", "hnsw"):
            raise ValueError(f"approx must be 'ivf' or 'hnsw', got {self.approx!r}")

    def kind_for(self, n: int) -> str:
        return "flat" if n < self.exact_threshold else self.approx


@dataclass
class CollabIndex:
    """A faiss index plus its id map (row i = faiss id i) and build metadata."""

    index: object  # faiss.Index (CPU)
    user_ids: list[str]
    next_item_ids: list[str]
    next_ts_us: list[int | None]
    as_of_us: list[int | None]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._row = {u: i for i, u in enumerate(self.user_ids)}
        self._gpu_index = None

    @property
    def version(self) -> str:
        return self.meta["version"]

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def row_of(self, user_id: str) -> int | None:
        return self._row.get(user_id)

    def contains(self, user_id: str) -> bool:
        return user_id in self._row

    def vector(self, user_id: str) -> np.ndarray:
        """The stored vector of a training user: (d,). Flat and HNSW only (IVF keeps no direct map)."""
        return self.index.reconstruct(int(self._row[user_id]))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries: (m, d) float32 normalised -> scores (m, k) float32, faiss ids (m, k) int64 (-1 = none)."""
        k = max(1, min(k, self.ntotal))
        index = self._search_index()
        return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def _search_index(self):
        import faiss

        use_gpu = self.meta.get("use_gpu")
        if use_gpu is None:
            use_gpu = _num_gpus() > 0
        if not use_gpu or self.kind == "hnsw":  # faiss has no GPU HNSW
            return self.index
        if self._gpu_index is None:
            try:
                self._gpu_index = faiss.index_cpu_to_all_gpus(self.index)
            except (RuntimeError, AttributeError) as exc:  # a kind the GPU cloner cannot take: search on the CPU
                log.warning("faiss GPU search unavailable for %s index (%s); using the CPU", self.kind, exc)
                self._gpu_index = self.index
        return self._gpu_index


def _num_gpus() -> int:
    import faiss

    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get else 0


def _new_faiss_index(kind: str, d: int, n: int, config: IndexConfig, train: np.ndarray):
    import faiss

    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(d))
    if kind == "hnsw":
        hnsw = faiss.IndexHNSWFlat(d, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efSearch = config.hnsw_ef_search
        return faiss.IndexIDMap2(hnsw)
    nlist = config.nlist or int(4 * np.sqrt(n))
    nlist = max(1, min(nlist, n // 39 or 1))
    quantizer = faiss.IndexFlatIP(d)
    ivf = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.seed = config.seed
    cap = nlist * config.train_per_list
    if len(train) > cap:  # a seeded sample: k-means cost grows with points x lists
        rows = np.sort(np.random.default_rng(config.seed).choice(len(train), size=cap, replace=False))
        train = train[rows]  # (cap, d)
    ivf.train(train)
    ivf.nprobe = config.nprobe
    ivf.own_fields = True
    quantizer.this.disown()  # the IVF index owns its quantizer now
    return ivf


def build_index(
    windows: list[UserWindow],
    vectors: np.ndarray,
    *,
    config: IndexConfig,
    extra_meta: dict | None = None,
    version: str | None = None,
) -> CollabIndex:
    """A new index over training windows. vectors: (n, d) float32, L2-normalised, row i = windows[i]."""
    if len(windows) != len(vectors):
        raise ValueError(f"{len(windows)} windows but {len(vectors)} vectors")
    if not windows:
        raise ValueError("no training users to index")
    users = [w.user_id for w in windows]
    if len(set(users)) != len(users):
        raise ValueError("duplicate user ids among training windows")
    n, d = vectors.shape
    kind = config.kind_for(n)
    started = time.perf_counter()
    x = np.ascontiguousarray(vectors, dtype=np.float32)  # (n, d)
    index = _new_faiss_index(kind, d, n, config, x)
    index.add_with_ids(x, np.arange(n, dtype=np.int64))
    meta = {
        "version": version or new_run_id("collab"),
        "parent_version": None,
        "kind": kind,
        "dim": int(d),
        "ntotal": int(n),
        "config": asdict(config),
        "use_gpu": config.use_gpu,
        "faiss_version": _faiss_version(),
        "code_version": code_version(),
        "created_at": utcnow().isoformat(),
        "build_seconds": round(time.perf_counter() - started, 4),
        **(extra_meta or {}),
    }
    log.info("built %s index over %d training users (d=%d) in %.2fs", kind, n, d, meta["build_seconds"])
    return CollabIndex(
        index,
        users,
        [w.next_item_id for w in windows],
        [w.next_timestamp_us for w in windows],
        [w.as_of_us for w in windows],
        meta,
    )


def update_index(
    base: CollabIndex, windows: list[UserWindow], vectors: np.ndarray, *, version: str | None = None
) -> CollabIndex:
    """Replace (or add) the entries of ``windows``' users: ``remove_ids`` + ``add_with_ids``, in place on ``base``'s
    faiss index (load a fresh copy to keep the old one); returns the index under a new version."""
    import faiss

    if len(windows) != len(vectors):
        raise ValueError(f"{len(windows)} windows but {len(vectors)} vectors")
    started = time.perf_counter()
    users, nexts = list(base.user_ids), list(base.next_item_ids)
    next_ts, as_of = list(base.next_ts_us), list(base.as_of_us)
    ids = np.empty(len(windows), dtype=np.int64)
    for j, w in enumerate(windows):
        row = base.row_of(w.user_id)
        if row is None:
            row = len(users)
            users.append(w.user_id)
            nexts.append(w.next_item_id)
            next_ts.append(w.next_timestamp_us)
            as_of.append(w.as_of_us)
        else:
            nexts[row], next_ts[row], as_of[row] = w.next_item_id, w.next_timestamp_us, w.as_of_us
        ids[j] = row
    x = np.ascontiguousarray(vectors, dtype=np.float32)  # (m, d)
    index = base.index
    if base.kind == "hnsw":
        # HNSW cannot remove: rebuild the graph from the stored vectors with the changed rows replaced.
        inner = faiss.downcast_index(index.index)
        all_x = np.zeros((len(users), x.shape[1]), dtype=np.float32)  # (n', d)
        old_ids = faiss.vector_to_array(index.id_map)
        all_x[old_ids] = inner.reconstruct_n(0, inner.ntotal)
        all_x[ids] = x
        cfg = IndexConfig(**base.meta["config"])
        index = _new_faiss_index("hnsw", x.shape[1], len(users), cfg, all_x)
        index.add_with_ids(all_x, np.arange(len(users), dtype=np.int64))
    else:
        index.remove_ids(ids[ids < len(base.user_ids)])  # rows that exist already
        index.add_with_ids(x, ids)
    meta = {
        **base.meta,
        "version": version or new_run_id("collab"),
        "parent_version": base.version,
        "ntotal": int(index.ntotal),
        "created_at": utcnow().isoformat(),
        "updated_users": len(windows),
        "update_seconds": round(time.perf_counter() - started, 4),
        "code_version": code_version(),
    }
    log.info("updated %d entries of index %s -> %s", len(windows), base.version, meta["version"])
    return CollabIndex(index, users, nexts, next_ts, as_of, meta)


def _faiss_version() -> str:
    import faiss

    return getattr(faiss, "__version__", "unknown")


# --------------------------------------------------------------------------- persistence
def index_uri(warehouse: Warehouse, dataset: str, *parts: str) -> str:
    return warehouse.uri(dataset, *INDEX_DIR, *parts)


def save_index(warehouse: Warehouse, dataset: str, idx: CollabIndex, *, set_latest: bool = True) -> str:
    """Write the index, id map and metadata (last) under its version; then point ``LATEST`` at it."""
    import faiss

    version = idx.version
    entries = pa.table(
        {
            "faiss_id": np.arange(len(idx.user_ids), dtype=np.int64),
            "user_id": idx.user_ids,
            "next_item_id": idx.next_item_ids,
            "next_timestamp": pa.array(idx.next_ts_us, pa.int64()).cast(ENTRIES_SCHEMA.field("next_timestamp").type),
            "as_of": pa.array(idx.as_of_us, pa.int64()).cast(ENTRIES_SCHEMA.field("as_of").type),
        },
        schema=ENTRIES_SCHEMA,
    )
    buf = io.BytesIO()
    pq.write_table(entries, buf)
    raw = faiss.serialize_index(idx.index).tobytes()
    warehouse.write_bytes(index_uri(warehouse, dataset, version, "index.faiss"), raw)
    warehouse.write_bytes(index_uri(warehouse, dataset, version, "entries.parquet"), buf.getvalue())
    warehouse.write_bytes(
        index_uri(warehouse, dataset, version, "meta.json"), json.dumps(idx.meta, indent=2, sort_keys=True).encode()
    )
    if set_latest:
        warehouse.write_bytes(index_uri(warehouse, dataset, LATEST), version.encode())
    log.info("saved collab index %s (%d users) to %s", version, idx.ntotal, index_uri(warehouse, dataset, version))
    return version


def latest_index_version(warehouse: Warehouse, dataset: str) -> str:
    uri = index_uri(warehouse, dataset, LATEST)
    if not warehouse.exists(uri):
        raise FileNotFoundError(f"no collab index for dataset {dataset!r} ({uri} missing): run build-collab first")
    return warehouse.read_bytes(uri).decode().strip()


def list_index_versions(warehouse: Warehouse, dataset: str) -> list[str]:
    """Complete versions (those with a meta.json), oldest first."""
    base = index_uri(warehouse, dataset)
    names = [v for v in warehouse.list_dir(base) if v not in (LATEST, "WATERMARK.json")]
    return [v for v in names if warehouse.exists(index_uri(warehouse, dataset, v, "meta.json"))]


def load_index(warehouse: Warehouse, dataset: str, version: str = "latest") -> CollabIndex:
    """Load a saved index by version (``"latest"`` follows the pointer)."""
    import faiss

    if version == "latest":
        version = latest_index_version(warehouse, dataset)
    meta_uri = index_uri(warehouse, dataset, version, "meta.json")
    if not warehouse.exists(meta_uri):
        raise FileNotFoundError(f"collab index version {version!r} not found (or incomplete) at {meta_uri}")
    meta = json.loads(warehouse.read_bytes(meta_uri))
    raw = warehouse.read_bytes(index_uri(warehouse, dataset, version, "index.faiss"))
    index = faiss.deserialize_index(np.frombuffer(raw, dtype=np.uint8))
    if meta["kind"] == "ivf":
        index.nprobe = meta["config"]["nprobe"]
    elif meta["kind"] == "hnsw":
        faiss.downcast_index(index.index).hnsw.efSearch = meta["config"]["hnsw_ef_search"]
    raw_entries = warehouse.read_bytes(index_uri(warehouse, dataset, version, "entries.parquet"))
    entries = pq.read_table(io.BytesIO(raw_entries))
    ids = entries.column("faiss_id").to_pylist()
    if ids != list(range(len(ids))):
        raise ValueError(f"collab index {version}: entries.parquet faiss ids are not 0..n-1")
    return CollabIndex(
        index,
        entries.column("user_id").to_pylist(),
        entries.column("next_item_id").to_pylist(),
        entries.column("next_timestamp").cast(pa.int64()).to_pylist(),  # microseconds, exact
        entries.column("as_of").cast(pa.int64()).to_pylist(),
        meta,
    )


__all__ = [
    "CollabIndex",
    "IndexConfig",
    "build_index",
    "update_index",
    "save_index",
    "load_index",
    "latest_index_version",
    "list_index_versions",
]
