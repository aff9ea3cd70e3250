"""Content index versions in the warehouse, and the refresh that keeps them current.

Layout: ``<warehouse>/<dataset>/indexes/content/<version>/{vectors.npz, meta.json}`` plus
``indexes/content/LATEST`` naming the newest complete version. ``meta.json`` is written last, so a version without
it is a build that did not finish and is never loaded; ``LATEST`` moves only after it. Old versions beyond
``keep`` are pruned (never ``LATEST``). Each version's meta records the items it ``added`` to the previous one
(``null`` for a first or full build), so the nightly recommend can find the users a new item now reaches
(:func:`items_added_since`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import logging
import time
from collections.abc import Mapping

import numpy as np

from mmsrarec_lib import tables
from mmsrarec_lib.candidates.content import ContentIndex, ContentIndexConfig, ItemContentInput, build_or_refresh
from mmsrarec_lib.runs import code_version, new_run_id, utcnow
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)


def content_index_uri(warehouse: Warehouse, dataset: str, *parts: str) -> str:
    return warehouse.uri(dataset, "indexes", "content", *parts)


def save_content_index(warehouse: Warehouse, dataset: str, index: ContentIndex) -> str:
    """Write a new version (vectors first, ``meta.json`` last, then ``LATEST``); returns its id."""
    version = new_run_id("content")
    buf = io.BytesIO()
    np.savez(buf, item_ids=np.array(index.item_ids, dtype=object), vectors=index.vectors,
             content_sha256=np.array(index.content_sha256, dtype=object),
             image_mean=index.image_mean if index.image_mean is not None else np.zeros(0, dtype=np.float32))
    warehouse.write_bytes(content_index_uri(warehouse, dataset, version, "vectors.npz"), buf.getvalue())
    meta = {**index.meta, "version": version, "config": dataclasses.asdict(index.config), "items": len(index),
            "dim": index.dim, "created_at": utcnow().isoformat(), "code_version": code_version()}
    warehouse.write_bytes(content_index_uri(warehouse, dataset, version, "meta.json"),
                          json.dumps(meta, indent=1).encode())
    warehouse.write_bytes(content_index_uri(warehouse, dataset, "LATEST"), version.encode())
    index.meta = meta
    return version


def latest_content_version(warehouse: Warehouse, dataset: str) -> str | None:
    uri = content_index_uri(warehouse, dataset, "LATEST")
    return warehouse.read_bytes(uri).decode().strip() if warehouse.exists(uri) else None


def load_content_index(warehouse: Warehouse, dataset: str, version: str = "latest") -> ContentIndex:
    """A stored version (``latest``: the one ``LATEST`` names). Raises ``FileNotFoundError`` when there is none."""
    if version == "latest":
        found = latest_content_version(warehouse, dataset)
        if found is None:
            raise FileNotFoundError(f"no content index for dataset {dataset!r}: run `mmsrarec index-content "
                                    f"--dataset {dataset}` first")
        version = found
    meta = json.loads(warehouse.read_bytes(content_index_uri(warehouse, dataset, version, "meta.json")))
    with np.load(io.BytesIO(warehouse.read_bytes(content_index_uri(warehouse, dataset, version, "vectors.npz"))),
                 allow_pickle=True) as z:
        mean = z["image_mean"].astype(np.float32)
        return ContentIndex([str(x) for x in z["item_ids"]], z["vectors"].astype(np.float32),
                            [str(x) for x in z["content_sha256"]], ContentIndexConfig(**meta["config"]),
                            mean if mean.size else None, meta=meta)


def version_metas(warehouse: Warehouse, dataset: str) -> dict[str, dict]:
    """Every complete stored version (its ``meta.json`` exists) -> that meta."""
    root = content_index_uri(warehouse, dataset)
    if not warehouse.exists(root):
        return {}
    out = {}
    for name in (n.rstrip("/").rsplit("/", 1)[-1] for n in warehouse.list_dir(root)):
        meta_uri = content_index_uri(warehouse, dataset, name, "meta.json")
        if name.startswith("content-") and warehouse.exists(meta_uri):
            out[name] = json.loads(warehouse.read_bytes(meta_uri))
    return out


def prune_content_versions(warehouse: Warehouse, dataset: str, *, keep: int) -> list[str]:
    """Delete complete versions beyond the newest ``keep`` (never ``LATEST``); returns the deleted ids."""
    latest = latest_content_version(warehouse, dataset)
    # ids made within one second do not sort by time: order by created_at
    created = {name: meta["created_at"] for name, meta in version_metas(warehouse, dataset).items()}
    versions = sorted(created, key=lambda v: (created[v], v))  # oldest first
    doomed = [v for v in versions[: max(0, len(versions) - keep)] if v != latest]
    for v in doomed:
        warehouse.delete_dir(content_index_uri(warehouse, dataset, v))
    return doomed


def items_added_since(warehouse: Warehouse, dataset: str, since: str) -> set[str] | None:
    """Items the content versions created after ``since`` (ISO time) added; ``None`` when that is unknown (no
    version at or before ``since`` is still stored, or a later version was a full build)."""
    metas = list(version_metas(warehouse, dataset).values())
    if not metas:
        return set()
    cutoff = dt.datetime.fromisoformat(since)
    later = [m for m in metas if dt.datetime.fromisoformat(m["created_at"]) > cutoff]
    if len(later) == len(metas) or any(m.get("added") is None for m in later):
        return None if later else set()
    return {i for m in later for i in m["added"]}


def item_content_inputs(warehouse: Warehouse, dataset: str) -> list[ItemContentInput]:
    """Every item of ``items``: ``title. description. categories`` and its image sha256 (when the image is ok)."""
    t = warehouse.read_table(dataset, tables.ITEMS, columns=["item_id", "title", "description", "categories",
                                                         "image_sha256", "image_status"])
    out = []
    for r in t.to_pylist():
        parts = [r["title"], r["description"], ", ".join(r["categories"] or [])]
        text = ". ".join(p.strip() for p in parts if p and p.strip())
        sha = r["image_sha256"] if r["image_status"] == "ok" else None
        out.append(ItemContentInput(r["item_id"], text, sha))
    return sorted(out, key=lambda it: it.item_id)


def image_features_of(warehouse: Warehouse, dataset: str, encoder: str) -> Mapping[str, np.ndarray]:
    """item_id -> pretrained image feature, or nothing when ``item_image_features`` has no rows for ``encoder``."""
    from mmsrarec_lib.vision import TABLE, read_image_features

    if not warehouse.has_table(dataset, TABLE):
        log.info("no %s table yet: content vectors are text only", TABLE)
        return {}
    ids, feats = read_image_features(warehouse, dataset, encoder=encoder)
    return dict(zip(ids, np.asarray(feats, dtype=np.float32), strict=True))


def refresh_content_index(
    warehouse: Warehouse, dataset: str, *, config: ContentIndexConfig, full: bool = False, keep_versions: int = 3
) -> dict:
    """Bring the content index up to date with ``items`` (and ``item_image_features``): encode only new or changed
    items unless ``full``; save a new version when anything changed. Returns the counts and the version."""
    from mmsrarec_lib.summarize.encoders import make_encoder

    start = time.perf_counter()
    items = item_content_inputs(warehouse, dataset)
    previous = None
    if not full and latest_content_version(warehouse, dataset) is not None:
        previous = load_content_index(warehouse, dataset)
    encoder: list = []

    def encode(texts: list[str]) -> np.ndarray:  # loaded only when something needs encoding
        if not encoder:
            encoder.append(make_encoder(config.text_encoder))
        return encoder[0].encode(texts)

    index, stats = build_or_refresh(items, config=config, encode_text=encode,
                                    image_features=image_features_of(warehouse, dataset, config.image_encoder),
                                    previous=previous)
    if previous is not None and stats["encoded"] == 0 and stats["removed"] == 0:
        stats["version"] = previous.meta["version"]
        stats["changed"] = False
    else:
        added = None if previous is None else sorted(set(index.item_ids) - set(previous.item_ids))
        index.meta = {"encoded": stats["encoded"], "reused": stats["reused"], "added": added}
        stats["version"] = save_content_index(warehouse, dataset, index)
        stats["changed"] = True
        stats["pruned"] = prune_content_versions(warehouse, dataset, keep=keep_versions)
    stats["seconds"] = round(time.perf_counter() - start, 2)
    log.info("content index %s: %s", stats["version"], stats)
    return stats
