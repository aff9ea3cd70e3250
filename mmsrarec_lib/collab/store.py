"""Index versions in the warehouse: save, load, list, prune.

Everything goes through ``Warehouse.write_bytes`` (so local and ``s3://`` behave alike), under
``<warehouse>/<dataset>/indexes/collab/<version>/``:

* ``index.faiss`` (``faiss.serialize_index``): a version stored **in full**; or ``delta.npz``: a version stored as a
  **delta** against ``meta.base_version`` (the last full one): the base ids removed and the entries added since,
  with their vectors. A nightly refresh changes ~1% of entries, so it writes that much instead of a copy of the
  whole index; once the accumulated change passes ``IndexConfig.delta_max_fraction`` (20%) the next version is
  stored in full again. Loading a delta version = the base index, ``remove_ids``, ``add_with_ids``. HNSW versions
  are always stored in full (their tombstones live in the graph).
* ``entries.parquet`` (faiss_id, user_id, position, next_item_id, next_timestamp, as_of): always complete.
* extra files of the embedder (``content.npz``), then ``meta.json``, written **last**: a version without it is
  incomplete and never loaded.

``LATEST`` names the newest complete version; ``prune_index_versions`` deletes all but the newest few, never a base
that a kept version still needs.
"""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmsrarec_lib.collab.index import CollabIndex, IndexDelta
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)

INDEX_DIR = ("indexes", "collab")
LATEST = "LATEST"
NOT_VERSIONS = (LATEST, "WATERMARK.json")
ENTRIES_SCHEMA = pa.schema(
    [
        ("faiss_id", pa.int64()),
        ("user_id", pa.string()),
        ("position", pa.int32()),  # index of next_item_id in the user's sequence
        ("next_item_id", pa.string()),
        ("next_timestamp", pa.timestamp("us", tz="UTC")),
        ("as_of", pa.timestamp("us", tz="UTC")),
    ]
)


def index_uri(warehouse: Warehouse, dataset: str, *parts: str) -> str:
    return warehouse.uri(dataset, *INDEX_DIR, *parts)


def _entries_bytes(idx: CollabIndex) -> bytes:
    ts = ENTRIES_SCHEMA.field("as_of").type
    entries = pa.table(
        {
            "faiss_id": idx.faiss_ids,
            "user_id": idx.user_ids,
            "position": pa.array(idx.positions, pa.int32()),
            "next_item_id": idx.next_item_ids,
            "next_timestamp": pa.array(idx.next_ts_us, pa.int64()).cast(ts),
            "as_of": pa.array(idx.as_of_us, pa.int64()).cast(ts),
        },
        schema=ENTRIES_SCHEMA,
    )
    buf = io.BytesIO()
    pq.write_table(entries, buf)
    return buf.getvalue()


def _delta_bytes(delta: IndexDelta) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, removed_ids=delta.removed_ids, added_ids=delta.added_ids, added_vectors=delta.added_vectors)
    return buf.getvalue()


def save_index(warehouse: Warehouse, dataset: str, idx: CollabIndex, *, set_latest: bool = True) -> str:
    """Write the index (in full, or as a delta when ``idx.delta`` says so and its base is there), id map, extra
    files and metadata (last) under its version; then point ``LATEST`` at it."""
    import faiss

    version = idx.version
    delta = idx.delta
    if delta is not None and not warehouse.exists(index_uri(warehouse, dataset, delta.base_version, "meta.json")):
        delta = None  # the base is gone (pruned, another warehouse): store in full
    if delta is None:
        raw = memoryview(faiss.serialize_index(idx.index))  # (bytes,) uint8, written without another copy
        warehouse.write_bytes(index_uri(warehouse, dataset, version, "index.faiss"), raw)
    else:
        warehouse.write_bytes(index_uri(warehouse, dataset, version, "delta.npz"), _delta_bytes(delta))
    warehouse.write_bytes(index_uri(warehouse, dataset, version, "entries.parquet"), _entries_bytes(idx))
    for name, data in sorted(idx.files.items()):
        warehouse.write_bytes(index_uri(warehouse, dataset, version, name), data)
    idx.meta["stored_as"] = "full" if delta is None else "delta"
    idx.meta.pop("base_version", None)
    if delta is not None:
        idx.meta["base_version"] = delta.base_version
    idx.delta = delta
    meta = {**idx.meta, "files": sorted(idx.files)}
    warehouse.write_bytes(
        index_uri(warehouse, dataset, version, "meta.json"), json.dumps(meta, indent=2, sort_keys=True).encode()
    )
    if set_latest:
        warehouse.write_bytes(index_uri(warehouse, dataset, LATEST), version.encode())
    log.info("saved collab index %s (%d entries, %s) to %s", version, idx.ntotal,
             "full" if delta is None else f"delta of {delta.size} against {delta.base_version}",
             index_uri(warehouse, dataset, version))
    return version


def latest_index_version(warehouse: Warehouse, dataset: str) -> str:
    uri = index_uri(warehouse, dataset, LATEST)
    if not warehouse.exists(uri):
        raise FileNotFoundError(f"no collab index for dataset {dataset!r} ({uri} missing): run build-collab first")
    return warehouse.read_bytes(uri).decode().strip()


def _complete_versions(warehouse: Warehouse, dataset: str) -> dict[str, dict]:
    """Complete versions (those with a meta.json) and their metadata, oldest first (by ``created_at``, then name:
    names sort by time only to the second)."""
    names = [v for v in warehouse.list_dir(index_uri(warehouse, dataset)) if v not in NOT_VERSIONS]
    metas = {v: _read_meta(warehouse, dataset, v) for v in names
             if warehouse.exists(index_uri(warehouse, dataset, v, "meta.json"))}
    return dict(sorted(metas.items(), key=lambda kv: (str(kv[1].get("created_at", "")), kv[0])))


def list_index_versions(warehouse: Warehouse, dataset: str) -> list[str]:
    """Complete versions, oldest first."""
    return list(_complete_versions(warehouse, dataset))


def _read_meta(warehouse: Warehouse, dataset: str, version: str) -> dict:
    meta_uri = index_uri(warehouse, dataset, version, "meta.json")
    if not warehouse.exists(meta_uri):
        raise FileNotFoundError(f"collab index version {version!r} not found (or incomplete) at {meta_uri}")
    return json.loads(warehouse.read_bytes(meta_uri))


def _read_faiss(warehouse: Warehouse, dataset: str, version: str):
    import faiss

    raw = warehouse.read_bytes(index_uri(warehouse, dataset, version, "index.faiss"))
    return faiss.deserialize_index(np.frombuffer(raw, dtype=np.uint8))


def read_index_meta(warehouse: Warehouse, dataset: str, version: str = "latest") -> dict:
    """A version's ``meta.json`` alone (which embedder, window and keyword source built it), without the index."""
    return _read_meta(warehouse, dataset, latest_index_version(warehouse, dataset) if version == "latest" else version)


def load_index(warehouse: Warehouse, dataset: str, version: str = "latest") -> CollabIndex:
    """Load a saved index by version (``"latest"`` follows the pointer); a delta version is rebuilt on its base."""
    import faiss

    if version == "latest":
        version = latest_index_version(warehouse, dataset)
    meta = _read_meta(warehouse, dataset, version)
    delta = None
    if meta.get("base_version"):
        index = _read_faiss(warehouse, dataset, meta["base_version"])
        with np.load(io.BytesIO(warehouse.read_bytes(index_uri(warehouse, dataset, version, "delta.npz")))) as z:
            delta = IndexDelta(meta["base_version"], z["removed_ids"], z["added_ids"],
                               z["added_vectors"].astype(np.float32))
        index.remove_ids(delta.removed_ids)
        index.add_with_ids(np.ascontiguousarray(delta.added_vectors), delta.added_ids)
    else:
        index = _read_faiss(warehouse, dataset, version)
    if meta["kind"] == "ivf":
        index.nprobe = meta["config"]["nprobe"]
    elif meta["kind"] == "hnsw":
        faiss.downcast_index(index.index).hnsw.efSearch = meta["config"]["hnsw_ef_search"]
    entries = pq.read_table(io.BytesIO(warehouse.read_bytes(index_uri(warehouse, dataset, version, "entries.parquet"))))
    n = entries.num_rows
    if meta["kind"] != "hnsw" and index.ntotal != n:
        raise ValueError(f"collab index {version}: {index.ntotal} vectors but {n} entries")
    names = meta.pop("files", [])  # saved by save_index from CollabIndex.files
    files = {name: warehouse.read_bytes(index_uri(warehouse, dataset, version, name)) for name in names}
    meta.setdefault("stored_as", "full")
    return CollabIndex(
        index,
        entries.column("faiss_id").to_numpy(),
        entries.column("user_id").to_pylist(),
        entries.column("position").to_pylist() if "position" in entries.column_names else [None] * n,
        entries.column("next_item_id").to_pylist(),
        entries.column("next_timestamp").cast(pa.int64()).to_pylist(),  # microseconds, exact
        entries.column("as_of").cast(pa.int64()).to_pylist(),
        meta,
        files,
        delta,
    )


def prune_index_versions(warehouse: Warehouse, dataset: str, *, keep: int, protect: tuple[str, ...] = ()) -> list[str]:
    """Delete all but the newest ``keep`` complete versions (never ``LATEST``, ``protect`` or the base of a kept
    delta version), and incomplete versions older than the newest complete one (a crashed write). Returns the
    deleted versions."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    metas = _complete_versions(warehouse, dataset)
    complete = list(metas)
    if not complete:
        return []
    keep_set = set(complete[-keep:]) | {latest_index_version(warehouse, dataset), *protect}
    keep_set |= {b for v in list(keep_set) if v in metas and (b := metas[v].get("base_version"))}
    every = [v for v in warehouse.list_dir(index_uri(warehouse, dataset)) if v not in NOT_VERSIONS]
    newest_name = max(complete)
    incomplete = [v for v in every if v not in complete and v < newest_name]  # not a build still in progress
    doomed = sorted([v for v in complete if v not in keep_set] + incomplete)
    for v in doomed:
        warehouse.delete_dir(index_uri(warehouse, dataset, v))
    if doomed:
        log.info("pruned %d old collab index versions of %s (kept %d)", len(doomed), dataset, len(keep_set))
    return doomed


__all__ = [
    "index_uri",
    "save_index",
    "load_index",
    "read_index_meta",
    "latest_index_version",
    "list_index_versions",
    "prune_index_versions",
]
