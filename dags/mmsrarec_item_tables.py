"""# mmsrarec_item_tables: ingest the catalogue and the interactions

Runs `mmsrarec ingest` (Spark) once: validates and writes **items**, **interactions** (bad rows to the
`*_quarantine` tables, accounting to `ingest_runs`), then derives **user_sequences**, **split_loo** and
**eval_candidates**. `encode_images` then runs `mmsrarec encode-images --backfill`: pretrained image features
(EfficientNet-Lite0 by default, `image_encoder` param) into **item_image_features**, encoding only new or changed
images (docs/vision.md). `index_content` runs `mmsrarec index-content`: the item content index (text + image vectors,
faiss) is refreshed incrementally, so new items can be recommended without retraining (docs/candidates.md).
`publish_tables` then emits an Asset event per table (`mmsrarec.<table>`) whose extra holds the
dataset, URI, Delta version and row count, so downstream DAGs and people see what was produced.

- Source: `source=movielens-100k` (the built-in loader) or `items` + `interactions` file paths (CSV/TSV/JSONL/Parquet,
  local or s3://).
- Spark master, first that is set: the `spark_master` param, the Airflow connection `spark_default` (host[:port],
  e.g. `spark://master:7077`), `$SPARK_MASTER`, else `local[*]`.
- S3 credentials: the Airflow connection `aws_default`, else the standard AWS environment variables.
- Typed knobs: `k_core` and `seed` (k-core filter and user-split seed of ingest), `image_encoder`; empty = the
  job's default. `extra_args` is the escape hatch for other flags, e.g. `{"ingest": "--encoding latin-1"}`.
- `mode=overwrite` replaces the tables; `append` adds new rows (exact duplicates are counted and dropped), so a rerun
  or a retry gives the same tables.

Manual (no schedule); `max_active_runs=1` because every run writes the same tables.
"""

from __future__ import annotations

import _mmsrarec_common as common
from airflow.sdk import DAG, Param, task

ITEM_TABLES = (
    "items",
    "items_quarantine",
    "interactions",
    "interactions_quarantine",
    "user_sequences",
    "split_loo",
    "eval_candidates",
    "ingest_runs",
    "item_image_features",
)
# absent when no row was ever quarantined / no item has a decodable image
OPTIONAL_TABLES = ("items_quarantine", "interactions_quarantine", "item_image_features")

with DAG(
    dag_id="mmsrarec_item_tables",
    doc_md=__doc__,
    schedule=None,
    start_date=common.START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=[*common.TAGS, "ingest", "spark"],
    default_args=common.default_args(),
    params={
        **common.warehouse_params(),
        "source": Param("movielens-100k", type="string", description="built-in source; empty = use the paths"),
        "items": Param("", type=common.OPTIONAL_STRING, description="items file (when source is empty)"),
        "interactions": Param("", type=common.OPTIONAL_STRING,
                              description="interactions file (when source is empty)"),
        "mode": Param("overwrite", enum=["overwrite", "append"], description="replace the tables or add rows"),
        "spark_master": Param("", type=common.OPTIONAL_STRING,
                              description="Spark master; empty = connection/env/local[*]"),
        "k_core": common.optional_int("ingest: k-core filter before the splits (<=1: off)", minimum=0),
        "seed": common.optional_int("ingest: seed of the user split and negative sampling", minimum=0),
        "image_encoder": Param("efficientnet-lite0", type="string", minLength=1,
                               description="image encoder: efficientnet-lite0 or a HF vision model id / path"),
        "extra_args": common.extra_args_param('{"ingest": "--encoding latin-1", "encode-images": "--batch-size 8"}'),
    },
) as dag:

    @task
    def ingest(params=None) -> None:
        argv = common.wh_args(params) + ["--mode", params["mode"]]
        if params["source"]:
            argv += ["--source", params["source"]]
        else:
            argv += ["--items", params["items"], "--interactions", params["interactions"]]
        if params["spark_master"]:
            argv += ["--spark-master", params["spark_master"]]
        argv += common.flags(params, {"k_core": "--k-core", "seed": "--seed"})
        common.run("ingest", argv + common.extra(params, "ingest"))

    @task
    def encode_images(params=None) -> None:
        argv = common.wh_args(params) + ["--encoder", params["image_encoder"], "--backfill"]
        common.run("encode-images", argv + common.extra(params, "encode-images"))

    @task
    def index_content(params=None) -> None:
        argv = common.wh_args(params) + ["--image-encoder", params["image_encoder"]]
        common.run("index-content", argv + common.extra(params, "index-content"))

    @task(outlets=[common.table_asset(t) for t in ITEM_TABLES])
    def publish_tables(params=None, outlet_events=None) -> dict:
        return common.publish(params, ITEM_TABLES, outlet_events, optional=OPTIONAL_TABLES)

    ingest() >> encode_images() >> index_content() >> publish_tables()
