"""``item_image_features``: one row per (item_id, encoder), computed once per image (``image_sha256``).

Mirrors ``item_keywords`` (``summarize/table.py``): a plan of what to compute, chunks MERGEd one commit each (a kill
loses at most one chunk). A backfill computes only images whose sha256 or encoder version changed; an image
already encoded for another item is copied, not recomputed. Items without an ``ok`` image get no row (a stale row
of an item whose image went missing is deleted), and an undecodable image is logged and skipped, never fatal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads

from mmsrarec_lib import schemas, tables
from mmsrarec_lib.runs import utcnow
from mmsrarec_lib.storage import Warehouse
from mmsrarec_lib.vision.encoder import ImageEncoder
from mmsrarec_lib.vision.preprocess import decode_image

log = logging.getLogger(__name__)
TABLE = tables.ITEM_IMAGE_FEATURES
MERGE_KEYS = ("item_id", "encoder")
TOP_K = 5


@dataclass(frozen=True)
class ImageInput:
    item_id: str
    image_sha256: str
    image_bytes: bytes


@dataclass
class ImagePlan:
    """Images to encode (one per distinct sha256), items to (re)write, and what is reused or skipped."""

    todo: list[ImageInput]  # distinct images to run through the encoder
    rows: dict[str, list[str]]  # image_sha256 -> item_ids to write for it (computed or copied)
    reuse: dict[str, tuple[list[float], list[dict]]] = field(default_factory=dict)  # sha -> stored feature
    up_to_date: int = 0  # items whose row already matches image and encoder version
    stale: list[str] = field(default_factory=list)  # items with a row but no ok image any more


def load_images(warehouse: Warehouse, dataset: str) -> tuple[list[ImageInput], list[str]]:
    """(items with an ``ok`` image, all item ids) from ``items``; sha256 computed when the column is empty."""
    from mmsrarec_lib.runs import sha256_hex

    t = warehouse.read_table(dataset, tables.ITEMS, columns=["item_id", "image_status", "image_sha256", "image_bytes"])
    out: list[ImageInput] = []
    for item_id, status, sha, data in zip(*(t.column(c).to_pylist() for c in t.column_names)):
        if status == "ok" and data:
            out.append(ImageInput(item_id, sha or sha256_hex(data), data))
    return out, t.column("item_id").to_pylist()


def stored_rows(warehouse: Warehouse, dataset: str, *, encoder: str) -> pa.Table | None:
    if not warehouse.has_table(dataset, TABLE):
        return None
    return warehouse.read_table(dataset, TABLE, filter=pads.field("encoder") == encoder)


def plan_images(images: Sequence[ImageInput], *, stored: pa.Table | None, encoder_version: str,
                backfill: bool) -> ImagePlan:
    """Full run: every distinct image. Backfill: only images not stored for this encoder version."""
    have: dict[str, tuple[str, str]] = {}  # item_id -> (sha, version)
    by_sha: dict[str, tuple[list[float], list[dict]]] = {}
    if stored is not None and stored.num_rows:
        cols = {c: stored.column(c).to_pylist() for c in ("item_id", "image_sha256", "encoder_version")}
        for i, (item, sha, ver) in enumerate(zip(cols["item_id"], cols["image_sha256"], cols["encoder_version"])):
            have[item] = (sha, ver)
            if backfill and ver == encoder_version and sha not in by_sha:
                by_sha[sha] = (stored.column("feature")[i].as_py(), stored.column("top_classes")[i].as_py())
    plan = ImagePlan(todo=[], rows={})
    ok_items = {im.item_id for im in images}
    plan.stale = sorted(set(have) - ok_items)
    for im in images:
        if backfill and have.get(im.item_id) == (im.image_sha256, encoder_version):
            plan.up_to_date += 1
            continue
        if im.image_sha256 not in plan.rows:
            plan.rows[im.image_sha256] = []
            if backfill and im.image_sha256 in by_sha:
                plan.reuse[im.image_sha256] = by_sha[im.image_sha256]
            else:
                plan.todo.append(im)
        plan.rows[im.image_sha256].append(im.item_id)
    return plan


def _top_classes(probs: np.ndarray | None, names: Sequence[str] | None, *, k: int = TOP_K) -> list[list[dict]]:
    if probs is None or not names:
        return [[] for _ in range(0 if probs is None else len(probs))]
    idx = np.argsort(-probs, axis=1)[:, :k]
    return [[{"label": names[j], "prob": float(p[j])} for j in row] for p, row in zip(probs, idx)]


def _rows_table(entries: list[tuple[str, str, list[float], list[dict]]], *, encoder: ImageEncoder) -> pa.Table:
    now = utcnow()
    rows = [{"item_id": item, "image_sha256": sha, "encoder": encoder.name, "encoder_version": encoder.version,
             "feature": feat, "top_classes": top, "created_at": now} for item, sha, feat, top in entries]
    return pa.Table.from_pylist(rows, schema=schemas.ITEM_IMAGE_FEATURES)


def write_features(warehouse: Warehouse, dataset: str, *, plan: ImagePlan, encoder: ImageEncoder,
                   batch_size: int = 32, chunk_size: int = 256) -> dict:
    """Encode ``plan.todo`` in chunks, MERGE each chunk (plus copied rows) and drop stale rows; returns counts."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    started = time.perf_counter()
    encoded = failed = written = commits = 0
    entries: list[tuple[str, str, list[float], list[dict]]] = []
    for sha, (feat, top) in plan.reuse.items():
        entries.extend((item, sha, feat, top) for item in plan.rows[sha])
    total = len(plan.todo)
    for start in range(0, total, chunk_size):
        chunk = plan.todo[start : start + chunk_size]
        good, pics = [], []
        for im in chunk:
            try:
                pics.append(decode_image(im.image_bytes))
                good.append(im)
            except ValueError as exc:
                failed += 1
                log.warning("item %s (image %s…): %s; no feature row", im.item_id, im.image_sha256[:12], exc)
        if pics:
            enc = encoder.encode(pics, batch_size=batch_size)
            tops = _top_classes(enc.probs, encoder.class_names)
            for im, feat, top in zip(good, enc.features, tops):
                entries.extend((item, im.image_sha256, feat.tolist(), top) for item in plan.rows[im.image_sha256])
            encoded += len(good)
        if entries:
            warehouse.merge_table(dataset, TABLE, _rows_table(entries, encoder=encoder), keys=MERGE_KEYS)
            commits += 1
            written += len(entries)
            entries = []
        done = start + len(chunk)
        rate = encoded / max(time.perf_counter() - started, 1e-9)
        log.info("encode-images %s: %d/%d images (%.1f images/s, %d undecodable)", dataset, done, total, rate, failed)
    if entries:  # only copied rows, nothing to encode
        warehouse.merge_table(dataset, TABLE, _rows_table(entries, encoder=encoder), keys=MERGE_KEYS)
        commits += 1
        written += len(entries)
    if plan.stale:
        quoted = ", ".join("'" + i.replace("'", "''") + "'" for i in plan.stale)
        dt = warehouse.delta_table(dataset, TABLE)
        dt.delete(f"encoder = '{encoder.name.replace(chr(39), chr(39) * 2)}' AND item_id IN ({quoted})")
        commits += 1
        log.info("removed %d rows of items whose image is no longer ok", len(plan.stale))
    seconds = time.perf_counter() - started
    return {"images_encoded": encoded, "undecodable": failed, "rows_written": written, "rows_copied":
            sum(len(plan.rows[s]) for s in plan.reuse), "up_to_date": plan.up_to_date, "rows_deleted":
            len(plan.stale), "commits": commits, "seconds": round(seconds, 3),
            "images_per_s": round(encoded / seconds, 2) if seconds > 0 and encoded else None}


def read_image_features(warehouse: Warehouse, dataset: str, *, encoder: str = "efficientnet-lite0",
                        ) -> tuple[list[str], np.ndarray]:
    """(item_ids sorted, float32 [n, d]) of the items that have a row for ``encoder``; items without an ok image
    are simply absent. FileNotFoundError naming the command when the table does not exist yet."""
    if not warehouse.has_table(dataset, TABLE):
        raise FileNotFoundError(f"{dataset}/{TABLE} does not exist: run `mmsrarec encode-images --dataset {dataset}`")
    t = warehouse.read_table(dataset, TABLE, columns=["item_id", "feature"], filter=pads.field("encoder") == encoder)
    if t.num_rows == 0:
        return [], np.zeros((0, 0), dtype=np.float32)
    t = t.sort_by("item_id")
    ids = t.column("item_id").to_pylist()
    flat = t.column("feature").combine_chunks()
    feats = np.asarray(flat.values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(ids), -1)
    return ids, feats


@dataclass(frozen=True)
class FeatureRows:
    """Rows of ``item_image_features`` for one encoder, aligned: ids, image hashes, features [n, d], top classes."""

    item_ids: list[str]
    image_sha256: list[str]
    features: np.ndarray
    top_classes: list[list[tuple[str, float]]]


def read_feature_rows(warehouse: Warehouse, dataset: str, *, encoder: str = "efficientnet-lite0") -> FeatureRows:
    """Every row for ``encoder`` (empty when the table does not exist), sorted by item_id."""
    if not warehouse.has_table(dataset, TABLE):
        return FeatureRows([], [], np.zeros((0, 0), dtype=np.float32), [])
    t = warehouse.read_table(dataset, TABLE, columns=["item_id", "image_sha256", "feature", "top_classes"],
                             filter=pads.field("encoder") == encoder).sort_by("item_id")
    ids = t.column("item_id").to_pylist()
    if not ids:
        return FeatureRows([], [], np.zeros((0, 0), dtype=np.float32), [])
    flat = t.column("feature").combine_chunks()
    feats = np.asarray(flat.values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(ids), -1)
    tops = [[(c["label"], float(c["prob"])) for c in (row or [])] for row in t.column("top_classes").to_pylist()]
    return FeatureRows(ids, t.column("image_sha256").to_pylist(), feats, tops)


def ensure_features(warehouse: Warehouse, dataset: str, *, encoder_name: str = "efficientnet-lite0",
                    device: str | None = None, batch_size: int = 32) -> dict | None:
    """Backfill ``item_image_features`` for images that have no row with their current sha256 (loads the image
    model only when something is missing); returns the write stats, or None when everything was up to date."""
    images, _ = load_images(warehouse, dataset)
    rows = read_feature_rows(warehouse, dataset, encoder=encoder_name)
    have = dict(zip(rows.item_ids, rows.image_sha256))
    if all(have.get(im.item_id) == im.image_sha256 for im in images):
        return None
    from mmsrarec_lib.vision.encoder import load_image_encoder

    encoder = load_image_encoder(encoder_name, device=device)
    plan = plan_images(images, stored=stored_rows(warehouse, dataset, encoder=encoder.name),
                       encoder_version=encoder.version, backfill=True)
    log.info("image features of %s: %d images missing or changed, encoding them", dataset, len(plan.todo))
    return write_features(warehouse, dataset, plan=plan, encoder=encoder, batch_size=batch_size)
