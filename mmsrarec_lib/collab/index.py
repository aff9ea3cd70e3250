"""The similar-user index: faiss inner product over L2-normalised training-user window vectors, with its id map.

Kinds: ``flat`` (exact, ``IndexIDMap2(IndexFlatIP)``) below ``exact_threshold`` entries, else ``ivf``
(``IndexIVFFlat``, inner product) or ``hnsw`` (``IndexIDMap2(IndexHNSWFlat)``). faiss-gpu is used for search when
``faiss.get_num_gpus() > 0``; what is stored is always the CPU index.

An entry is one window of a training user (a user has one entry per indexed position, see ``windows``). Its faiss
id is stable across refreshes: an update removes the changed users' entries and adds their new windows under fresh
ids (``meta["next_faiss_id"]`` onwards). Flat and IVF remove for real (``remove_ids``); HNSW cannot, so removed
ids stay in the graph as *tombstones* that searches skip, until they outnumber ``hnsw_rebuild_dead_fraction`` of
the live entries and the graph is rebuilt from the live vectors.

Flat and IVF updates also keep an ``IndexDelta`` against the last fully stored version, so that saving a refresh
writes only what changed (``store``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from mmsrarec_lib.collab.windows import UserWindow
from mmsrarec_lib.runs import code_version, new_run_id, utcnow

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class IndexConfig:
    """How to index: exact below ``exact_threshold`` entries, else ``approx`` (ivf | hnsw)."""

    exact_threshold: int = field(default=200_000, metadata={"help": (
        "exact IndexFlatIP below this many index entries, else --approx")})
    approx: Literal["ivf", "hnsw"] = field(default="ivf", metadata={"help": "approximate index kind"})
    nlist: int | None = field(default=None, metadata={"help": (
        "IVF lists (None: 4*sqrt(n), at most n/39: faiss wants >= 39 points a list)")})
    nprobe: int = field(default=16, metadata={"help": "IVF lists searched per query"})
    train_per_list: int = field(default=40, metadata={"help": (
        "IVF k-means trains on at most nlist * this many sampled vectors")})
    hnsw_m: int = field(default=32, metadata={"help": "HNSW links per node"})
    hnsw_ef_search: int = field(default=128, metadata={"help": "HNSW candidates explored per query"})
    hnsw_rebuild_dead_fraction: float = field(default=0.25, metadata={"help": (
        "rebuild the HNSW graph once tombstones exceed this share")})
    delta_max_fraction: float = field(default=0.2, metadata={"help": (
        "flat/IVF: store a refresh as a delta until it changes this share of entries")})
    use_gpu: bool | None = field(default=None, metadata={"help": "search on a GPU (auto: when faiss sees one)"})
    seed: int = field(default=0, metadata={"help": "seed of the IVF k-means sample"})

    def __post_init__(self) -> None:
        if self.approx not in ("ivf", "hnsw"):
            raise ValueError(f"approx must be 'ivf' or 'hnsw', got {self.approx!r}")

    def kind_for(self, n: int) -> str:
        return "flat" if n < self.exact_threshold else self.approx


@dataclass(frozen=True)
class IndexDelta:
    """What changed since ``base_version``, the last version stored in full: base ids removed, entries added."""

    base_version: str
    removed_ids: np.ndarray  # (r,) int64, ids present in the base index
    added_ids: np.ndarray  # (a,) int64
    added_vectors: np.ndarray  # (a, d) float32

    @property
    def size(self) -> int:
        return len(self.removed_ids) + len(self.added_ids)


@dataclass
class CollabIndex:
    """A faiss index plus its entries (position i has faiss id ``faiss_ids[i]``), extra files and metadata."""

    index: object  # faiss.Index (CPU)
    faiss_ids: np.ndarray  # (n,) int64, unique
    user_ids: list[str]
    positions: list[int | None]
    next_item_ids: list[str]
    next_ts_us: list[int | None]
    as_of_us: list[int | None]
    meta: dict = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # stored next to the index (the embedder's content)
    delta: IndexDelta | None = None  # set when this index = a stored version + a small change (store saves only it)

    def __post_init__(self) -> None:
        self.faiss_ids = np.asarray(self.faiss_ids, dtype=np.int64)
        self._order = np.argsort(self.faiss_ids, kind="stable")  # (n,): positions by ascending faiss id
        self._sorted_ids = self.faiss_ids[self._order]  # (n,)
        if np.any(self._sorted_ids[1:] == self._sorted_ids[:-1]):
            raise ValueError("duplicate faiss ids among index entries")
        self._rows: dict[str, list[int]] | None = None  # user -> positions, built on first use
        self._gpu_index = None

    def _by_user(self) -> dict[str, list[int]]:
        if self._rows is None:
            self._rows = {}
            for p, u in enumerate(self.user_ids):
                self._rows.setdefault(u, []).append(p)
        return self._rows

    def positions_of_ids(self, ids: np.ndarray) -> np.ndarray:
        """faiss ids (any shape) -> entry positions, -1 for ids with no live entry (none, or a tombstone)."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(self._sorted_ids):
            return np.full(ids.shape, -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._sorted_ids, ids), len(self._sorted_ids) - 1)
        return np.where(self._sorted_ids[at] == ids, self._order[at], -1)

    @property
    def version(self) -> str:
        return self.meta["version"]

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    @property
    def ntotal(self) -> int:
        """Live entries (HNSW tombstones excluded)."""
        return len(self.faiss_ids)

    @property
    def n_users(self) -> int:
        return len(self._by_user())

    def rows_of(self, user_id: str) -> list[int]:
        """Entry positions of a training user (oldest window first); empty when it has none."""
        return list(self._by_user().get(user_id, ()))

    def contains(self, user_id: str) -> bool:
        return user_id in self._by_user()

    def vectors_of(self, user_id: str) -> np.ndarray:
        """The stored vectors of a training user's entries: (m, d). Flat and HNSW only (IVF keeps no direct map)."""
        return np.stack([self.index.reconstruct(int(self.faiss_ids[p])) for p in self._by_user()[user_id]])

    @property
    def capacity(self) -> int:
        """Vectors in the faiss index: live entries plus HNSW tombstones (the most one search can return)."""
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries: (m, d) float32 normalised -> scores (m, k) float32, entry positions (m, k) int64 (-1: none, or
        an HNSW tombstone: ask for more to fill up)."""
        k = max(1, min(k, self.capacity))
        scores, ids = self._search_index().search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, self.positions_of_ids(ids)

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


def _entry_lists(windows: list[UserWindow]) -> tuple[list, list, list, list, list]:
    return ([w.user_id for w in windows], [w.position for w in windows], [w.next_item_id for w in windows],
            [w.next_timestamp_us for w in windows], [w.as_of_us for w in windows])


def build_index(
    windows: list[UserWindow],
    vectors: np.ndarray,
    *,
    config: IndexConfig,
    extra_meta: dict | None = None,
    files: dict[str, bytes] | None = None,
    version: str | None = None,
) -> CollabIndex:
    """A new index over training windows. vectors: (n, d) float32, L2-normalised, row i = windows[i]."""
    if len(windows) != len(vectors):
        raise ValueError(f"{len(windows)} windows but {len(vectors)} vectors")
    if not windows:
        raise ValueError("no training users to index")
    n, d = vectors.shape
    kind = config.kind_for(n)
    started = time.perf_counter()
    x = np.ascontiguousarray(vectors, dtype=np.float32)  # (n, d)
    index = _new_faiss_index(kind, d, n, config, x)
    index.add_with_ids(x, np.arange(n, dtype=np.int64))
    users, positions, nexts, next_ts, as_of = _entry_lists(windows)
    meta = {
        "version": version or new_run_id("collab"),
        "parent_version": None,
        "kind": kind,
        "dim": int(d),
        "ntotal": int(n),
        "n_users": len(set(users)),
        "next_faiss_id": int(n),
        "config": asdict(config),
        "use_gpu": config.use_gpu,
        "faiss_version": _faiss_version(),
        "code_version": code_version(),
        "created_at": utcnow().isoformat(),
        "build_seconds": round(time.perf_counter() - started, 4),
        **(extra_meta or {}),
    }
    log.info("built %s index over %d entries of %d training users (d=%d) in %.2fs", kind, n, meta["n_users"], d,
             meta["build_seconds"])
    return CollabIndex(index, np.arange(n), users, positions, nexts, next_ts, as_of, meta, dict(files or {}))


def update_index(
    base: CollabIndex, windows: list[UserWindow], vectors: np.ndarray, *, version: str | None = None
) -> CollabIndex:
    """Replace the entries of ``windows``' users (all of each user's old entries go, its new windows come in under
    fresh ids), in place on ``base``'s faiss index (load a fresh copy to keep the old one); returns the index under
    a new version. HNSW keeps removed ids as tombstones until they pass the configured share, then rebuilds."""
    if len(windows) != len(vectors):
        raise ValueError(f"{len(windows)} windows but {len(vectors)} vectors")
    started = time.perf_counter()
    changed = {w.user_id for w in windows}
    hit = np.fromiter((u in changed for u in base.user_ids), dtype=bool, count=len(base.user_ids))  # (n,)
    keep = np.flatnonzero(~hit).tolist()
    removed = base.faiss_ids[hit]  # (r,)
    first = int(base.meta.get("next_faiss_id", int(base.faiss_ids.max(initial=-1)) + 1))
    new_ids = np.arange(first, first + len(windows), dtype=np.int64)  # (m,)
    cols = [[col[p] for p in keep] + new for col, new in zip(
        (base.user_ids, base.positions, base.next_item_ids, base.next_ts_us, base.as_of_us), _entry_lists(windows))]
    ids = np.concatenate([base.faiss_ids[keep], new_ids])  # (n',)
    x = np.ascontiguousarray(vectors, dtype=np.float32)  # (m, d)
    index, rebuilt = base.index, False
    if base.kind == "hnsw":  # HNSW cannot remove: removed ids become tombstones
        cfg = IndexConfig(**base.meta["config"])
        dead = index.ntotal + len(new_ids) - len(ids)
        if dead > cfg.hnsw_rebuild_dead_fraction * len(ids):
            live = np.stack([index.reconstruct(int(i)) for i in base.faiss_ids[keep]]) if keep else x[:0]
            index = _new_faiss_index("hnsw", x.shape[1], len(ids), cfg, x)
            index.add_with_ids(np.ascontiguousarray(np.vstack([live, x]), dtype=np.float32), ids)
            rebuilt = True
        else:
            index.add_with_ids(x, new_ids)
    else:
        index.remove_ids(removed)
        index.add_with_ids(x, new_ids)
    delta = _next_delta(base, removed, new_ids, x) if base.kind != "hnsw" else None
    meta = {
        **base.meta,
        "version": version or new_run_id("collab"),
        "parent_version": base.version,
        "ntotal": len(ids),
        "n_users": len(set(cols[0])),
        "next_faiss_id": int(first + len(windows)),
        "tombstones": int(index.ntotal) - len(ids),
        "created_at": utcnow().isoformat(),
        "updated_users": len(changed),
        "update_seconds": round(time.perf_counter() - started, 4),
        "hnsw_rebuilt": rebuilt,
        "code_version": code_version(),
    }
    for key in ("stored_as", "base_version"):  # this version is not stored yet
        meta.pop(key, None)
    log.info("index %s -> %s: %d users' %d entries replaced by %d%s", base.version, meta["version"], len(changed),
             len(removed), len(windows), " (HNSW graph rebuilt)" if rebuilt else "")
    return CollabIndex(index, ids, *cols, meta=meta, files=dict(base.files), delta=delta)


def _next_delta(base: CollabIndex, removed: np.ndarray, new_ids: np.ndarray, x: np.ndarray) -> IndexDelta | None:
    """The change from the last fully stored version after this update, or None when the update should be stored
    in full (``base`` was never stored, or the accumulated change passed ``delta_max_fraction``)."""
    stored = base.meta.get("stored_as")  # set by store.save_index / load_index: "full" or "delta"
    if stored is None:
        return None
    prev = base.delta or IndexDelta(base.version, np.zeros(0, np.int64), np.zeros(0, np.int64),
                                    np.zeros((0, x.shape[1]), np.float32))
    again = np.isin(prev.added_ids, removed)  # entries added since the base and now replaced again
    delta = IndexDelta(
        prev.base_version,
        np.union1d(prev.removed_ids, removed[~np.isin(removed, prev.added_ids)]),
        np.concatenate([prev.added_ids[~again], new_ids]),
        np.vstack([prev.added_vectors[~again], x]).astype(np.float32),
    )
    limit = IndexConfig(**base.meta["config"]).delta_max_fraction * (len(base.faiss_ids) + len(new_ids))
    return delta if delta.size <= limit else None


def _faiss_version() -> str:
    import faiss

    return getattr(faiss, "__version__", "unknown")




__all__ = ["CollabIndex", "IndexConfig", "IndexDelta", "build_index", "update_index"]
