"""Spark job ``build_item_table``: validate item rows, dedup, quarantine, clean text, load images.

Flow: the driver's Arrow table -> Spark DataFrame -> (1) a row with no ``item_id`` is quarantined
(``missing_item_id``; ids are stripped of white space of any kind at both ends, tab and NBSP included); (2) per
``item_id`` the first row by ``source_row`` wins; a later row with the same content
is an exact duplicate (counted), one with different content is quarantined (``conflicting_duplicate``); (3) columns
outside the contract go into ``attributes``; (4) ``mapInArrow`` cleans text, computes ``text_sha256`` and loads
each image (see :mod:`.images`) with a small thread pool per partition, so network fetches overlap. The result is
collected as Arrow (sorted by ``source_row``) for a single delta-rs commit by the caller.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from mmsrarec_lib import schemas
from mmsrarec_lib.ingest import common
from mmsrarec_lib.ingest.images import NONE, ImageConfig, ImageResult, load_image
from mmsrarec_lib.ingest.sources import SOURCE_ROW, SourceTable, require_columns
from mmsrarec_lib.runs import sha256_hex

log = logging.getLogger(__name__)

CONTRACT_COLUMNS = ("item_id", "title", "description", "categories", "image_uri")
ITEMS_DDL = (
    "item_id string, title string, description string, categories array<string>, attributes map<string,string>, "
    "image_uri string, image_bytes binary, image_sha256 string, image_width int, image_height int, "
    "image_status string, image_error string, text_sha256 string, source_row bigint"
)


@dataclass(frozen=True)
class ItemTableResult:
    items: pa.Table  # schemas.ITEMS
    quarantine: pa.Table  # schemas.QUARANTINE
    rows_in: int
    rows_duplicate: int


def text_sha256(title: str | None, description: str | None, categories: list | None, attributes: dict) -> str:
    """A stable hash of an item's cleaned text fields (change detection for downstream summaries)."""
    payload = {"title": title, "description": description, "categories": categories,
               "attributes": dict(sorted(attributes.items()))}
    return sha256_hex(json.dumps(payload, ensure_ascii=False, sort_keys=True))


def _clean_categories(values: list | None) -> list[str]:
    seen: dict[str, None] = {}
    for v in values or []:
        text = common.normalize_text(v)
        if text:
            seen.setdefault(text, None)
    return list(seen)


OUT_SCHEMA = pa.schema([*schemas.ITEMS, pa.field("reason", pa.string()), pa.field("raw_row", pa.string()),
                        pa.field("_dup", pa.bool_())])
OUT_DDL = ITEMS_DDL + ", reason string, raw_row string, _dup boolean"


def _process_batches(batches, cfg: ImageConfig, threads: int):
    """mapInArrow body: clean text and load images of the rows to keep (others pass through for quarantine)."""
    none = ImageResult(NONE)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for batch in batches:
            rows = batch.to_pylist()
            keep = [r["reason"] is None and not r["_dup"] for r in rows]
            images = list(pool.map(lambda rk: load_image(rk[0]["image_uri"], cfg) if rk[1] else none,
                                   zip(rows, keep)))
            out = {name: [] for name in OUT_SCHEMA.names}
            for row, img in zip(rows, images):
                title = common.normalize_text(row["title"])
                description = common.normalize_text(row["description"])
                categories = _clean_categories(row["categories"])
                attrs = {k: (common.normalize_text(v) or "") for k, v in (row["attributes"] or [])}
                for name in ("item_id", "image_uri", "source_row", "reason", "raw_row", "_dup"):
                    out[name].append(row[name])
                out["title"].append(title)
                out["description"].append(description)
                out["categories"].append(categories)
                out["attributes"].append(list(attrs.items()))
                out["image_bytes"].append(img.data)
                out["image_sha256"].append(img.sha256)
                out["image_width"].append(img.width)
                out["image_height"].append(img.height)
                out["image_status"].append(img.status)
                out["image_error"].append(img.error)
                out["text_sha256"].append(text_sha256(title, description, categories, attrs))
            yield pa.RecordBatch.from_pydict(out, schema=OUT_SCHEMA)


def build_item_table(
    spark,
    *,
    source: SourceTable,
    run_id: str,
    created_at: dt.datetime,
    max_image_side: int = 512,
    image_timeout_s: float = 10.0,
    image_retries: int = 2,
    image_threads: int = 8,
    image_deadline_s: float = 30.0,
    image_max_bytes: int = 50 * 1024 * 1024,
) -> ItemTableResult:
    """Validate, dedup and enrich the item rows of ``source``; returns the items and quarantine tables."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    require_columns(source, ("item_id",), what="items")
    if max_image_side < 1:
        raise ValueError(f"max_image_side must be >= 1, got {max_image_side}")
    columns = source.table.column_names
    df = common.to_spark(spark, source.table)
    for name in CONTRACT_COLUMNS:
        if name not in columns:
            df = df.withColumn(name, F.lit(None).cast("array<string>" if name == "categories" else "string"))
    # derived columns get a "__" prefix so they cannot clash with input columns (which become attributes)
    df = df.withColumn("__raw", common.raw_row_column(columns))
    df = df.withColumn("item_id", common.strip_id("item_id"))
    has_id = F.col("item_id").isNotNull() & (F.length("item_id") > 0)
    # content = the input row as given (its raw_row JSON), row number aside
    w = Window.partitionBy("item_id").orderBy(SOURCE_ROW)
    df = df.withColumn("__first_raw", F.when(has_id, F.first("__raw").over(w)))
    df = df.withColumn("__rank", F.when(has_id, F.row_number().over(w)))
    df = df.withColumn(
        "__reason",
        F.when(~has_id, F.lit(common.MISSING_ITEM_ID))
        .when((F.col("__rank") > 1) & (F.col("__raw") != F.col("__first_raw")), F.lit(common.CONFLICTING_DUPLICATE)),
    )
    df = df.withColumn("__dup", F.col("__reason").isNull() & (F.col("__rank") > 1))

    attr_cols = [c for c in columns if c not in (*CONTRACT_COLUMNS, SOURCE_ROW)]
    if attr_cols:
        pairs = [x for c in attr_cols for x in (F.lit(c), F.col(f"`{c}`"))]
        attributes = F.map_filter(F.create_map(*pairs), lambda k, v: v.isNotNull())
    else:
        attributes = F.create_map().cast("map<string,string>")
    flagged = df.select("item_id", "title", "description", "categories", attributes.alias("attributes"),
                        "image_uri", SOURCE_ROW, F.col("__reason").alias("reason"),
                        F.col("__raw").alias("raw_row"), F.col("__dup").alias("_dup"))
    cfg = ImageConfig(base_dir=source.base_dir, max_side=max_image_side, timeout_s=image_timeout_s,
                      retries=image_retries, deadline_s=image_deadline_s, max_bytes=image_max_bytes)
    # one Spark job: every row goes through; only rows to keep load their image. The explicit repartition
    # spreads image work over all cores (adaptive execution would coalesce a small shuffle into one task).
    flagged = flagged.repartition(max(2, spark.sparkContext.defaultParallelism))
    out = flagged.mapInArrow(lambda it: _process_batches(it, cfg, image_threads), OUT_DDL).toArrow()
    reason, dup = out.column("reason"), out.column("_dup")
    keep = pc.and_(pc.is_null(reason), pc.invert(dup))
    items = out.filter(keep).select(schemas.ITEMS.names).cast(schemas.ITEMS)
    items = items.sort_by([(SOURCE_ROW, "ascending")]) if items.num_rows else items
    bad = out.filter(pc.is_valid(reason))
    bad_q = common.quarantine_table(bad, run_id=run_id, created_at=created_at)
    quarantine = common.concat(
        [common.malformed_table(source.malformed, run_id=run_id, created_at=created_at), bad_q], schemas.QUARANTINE
    )
    quarantine = quarantine.sort_by([(SOURCE_ROW, "ascending")]) if quarantine.num_rows else quarantine
    duplicates = int(pc.sum(dup.cast(pa.int64())).as_py() or 0)
    statuses = dict(zip(*[items.column("image_status").value_counts().field(f).to_pylist()
                          for f in ("values", "counts")])) if items.num_rows else {}
    log.info("build_item_table: %d rows in, %d items, %d quarantined, %d duplicates; images %s",
             source.rows_in, items.num_rows, quarantine.num_rows, duplicates, statuses)
    return ItemTableResult(items=items, quarantine=quarantine, rows_in=source.rows_in, rows_duplicate=duplicates)
