"""Arrow schemas of every warehouse table: the contract between jobs (sql/catalog.md documents them for analysts).

Ids (``item_id``, ``user_id``) are strings everywhere; models map them to dense integer indices internally.
Timestamps are UTC microseconds. Lists of item ids are ordered oldest first.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
STR_LIST = pa.list_(pa.string())

# --------------------------------------------------------------------------- ingest (foundation)
ITEMS = pa.schema(
    [
        ("item_id", pa.string()),
        ("title", pa.string()),
        ("description", pa.string()),
        ("categories", STR_LIST),
        ("attributes", pa.map_(pa.string(), pa.string())),
        ("image_uri", pa.string()),
        ("image_bytes", pa.binary()),  # JPEG, RGB, longest side bounded
        ("image_sha256", pa.string()),
        ("image_width", pa.int32()),
        ("image_height", pa.int32()),
        ("image_status", pa.string()),  # ok | missing | undecodable | refused | none (no image_uri given)
        ("image_error", pa.string()),
        ("text_sha256", pa.string()),
        ("source_row", pa.int64()),
    ]
)

QUARANTINE = pa.schema(
    [
        ("run_id", pa.string()),
        ("reason", pa.string()),
        ("source_row", pa.int64()),  # 1-based row number in the input file
        ("raw_row", pa.string()),  # the input row as JSON
        ("created_at", TS),
    ]
)

INTERACTIONS = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("timestamp", TS),
        ("rating", pa.float64()),
        ("event", pa.string()),
        ("source_row", pa.int64()),
    ]
)

USER_SEQUENCES = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_ids", STR_LIST),  # ordered by (timestamp, source_row)
        ("timestamps", pa.list_(TS)),
        ("length", pa.int32()),
    ]
)

# Leave-one-out: for every split, the user's sequence up to the target is history + [target].
# train: target = third-to-last item; valid: second-to-last; test: last.
SPLIT_LOO = pa.schema(
    [
        ("user_id", pa.string()),
        ("split", pa.string()),  # train | valid | test
        ("history", STR_LIST),
        ("target_item_id", pa.string()),
        ("target_timestamp", TS),
    ]
)

# The paper's protocol: users split 8:1:1; the target is the user's last item, history its 5 predecessors,
# negatives 20 items the user never interacted with.
EVAL_CANDIDATES = pa.schema(
    [
        ("user_id", pa.string()),
        ("split", pa.string()),  # train | valid | test (user-level)
        ("history", STR_LIST),
        ("target_item_id", pa.string()),
        ("target_timestamp", TS),
        ("negative_item_ids", STR_LIST),
    ]
)

INGEST_RUNS = pa.schema(
    [
        ("run_id", pa.string()),
        ("dataset", pa.string()),
        ("table", pa.string()),
        ("rows_in", pa.int64()),
        ("rows_written", pa.int64()),
        ("rows_quarantined", pa.int64()),
        ("rows_duplicate", pa.int64()),
        ("started_at", TS),
        ("finished_at", TS),
        ("code_version", pa.string()),
        # what the k-core filter kept (null in rows written before these columns existed)
        ("kcore_k", pa.int64()),
        ("kcore_users", pa.int64()),
        ("kcore_items", pa.int64()),
        ("kcore_interactions", pa.int64()),
        ("kcore_share_kept", pa.float64()),  # of the interactions
        ("warnings", pa.string()),  # e.g. the sparse-data warning, with the suggested --k-core
    ]
)

# One row per state change of a multi-table run (append-only): running -> complete | failed | abandoned.
# Readers resolve table versions through it (mmsrarec_lib/snapshots.py). A base version of -1: the table did not exist.
DATASET_RUNS = pa.schema(
    [
        ("run_id", pa.string()),
        ("job", pa.string()),  # e.g. ingest
        ("status", pa.string()),  # running | complete | failed | abandoned
        ("base_versions", pa.map_(pa.string(), pa.int64())),  # table -> version the run started from
        ("published_versions", pa.map_(pa.string(), pa.int64())),  # complete: table -> version it published
        ("started_at", TS),
        ("finished_at", TS),  # null while running
        ("message", pa.string()),  # failed/abandoned: why, and what was rolled back
        ("code_version", pa.string()),
    ]
)

# --------------------------------------------------------------------------- evaluation
EVALUATION_RUNS = pa.schema(
    [
        ("run_id", pa.string()),
        ("dataset", pa.string()),
        ("model", pa.string()),
        ("model_version", pa.string()),
        ("protocol", pa.string()),  # paper | full
        ("metric", pa.string()),  # hr | ndcg | mrr | auc
        ("k", pa.int32()),  # null for metrics without a cut-off
        ("value", pa.float64()),  # raw (0..1), x100 only in displays
        ("n_users", pa.int64()),
        ("seed", pa.int64()),
        ("config_json", pa.string()),
        ("code_version", pa.string()),
        ("created_at", TS),
    ]
)

# --------------------------------------------------------------------------- stage 1: keywords
ITEM_KEYWORDS = pa.schema(
    [
        ("item_id", pa.string()),
        ("modality", pa.string()),  # text | image
        ("keywords", STR_LIST),
        ("summarizer_version", pa.string()),
        ("r_info", pa.float64()),
        ("r_recon", pa.float64()),
        ("r_len", pa.float64()),
        ("reward", pa.float64()),
        ("input_sha256", pa.string()),
        ("created_at", TS),
    ]
)

# --------------------------------------------------------------------------- pretrained image features
TOP_CLASS = pa.struct([("label", pa.string()), ("prob", pa.float32())])

# One row per (item_id, encoder); computed once per image (image_sha256) and encoder_version.
ITEM_IMAGE_FEATURES = pa.schema(
    [
        ("item_id", pa.string()),
        ("image_sha256", pa.string()),  # sha256 of the stored image bytes (items.image_bytes)
        ("encoder", pa.string()),  # e.g. efficientnet-lite0, or a HF model id / path
        ("encoder_version", pa.string()),
        ("feature", pa.list_(pa.float32())),  # pooled feature, encoder's feature_dim
        ("top_classes", pa.list_(TOP_CLASS)),  # most probable classes, best first (empty: no classifier)
        ("created_at", TS),
    ]
)

# --------------------------------------------------------------------------- stage 2: collaborative keywords
NEIGHBOR = pa.struct(
    [
        ("user_id", pa.string()),
        ("score", pa.float64()),
        ("next_item_id", pa.string()),
        ("keywords", STR_LIST),
    ]
)
USER_COLLAB_KEYWORDS = pa.schema(
    [
        ("user_id", pa.string()),
        ("protocol", pa.string()),  # paper (window before the eval target) | latest (latest items); key with user_id
        ("as_of", TS),  # end of the query window
        ("neighbors", pa.list_(NEIGHBOR)),
        ("keyword_source", pa.string()),  # summarizer version, or "raw"
        ("index_version", pa.string()),
        ("created_at", TS),
    ]
)

# --------------------------------------------------------------------------- stage 3: recommendations
EXPLANATION = pa.struct(
    [
        ("history_keywords", STR_LIST),
        ("neighbor_keywords", STR_LIST),
        ("neighbor_ids", STR_LIST),
    ]
)
RECOMMENDATIONS = pa.schema(
    [
        ("run_date", pa.date32()),  # partition column
        ("user_id", pa.string()),
        ("rank", pa.int32()),
        ("item_id", pa.string()),
        ("score", pa.float64()),
        ("model_version", pa.string()),
        ("explanation", EXPLANATION),
        ("created_at", TS),
    ]
)


def empty(schema: pa.Schema) -> pa.Table:
    """An empty table of ``schema`` (for writing a table that has no rows yet)."""
    return schema.empty_table()

# --------------------------------------------------------------------------- model runs (every training job)
# One row per state change of a training run (append-only): running -> complete | failed. The current state of a
# run is its newest row (mmsrarec_lib/model_runs.py); "which run is the latest?" is answered from this table only.
MODEL_RUNS = pa.schema(
    [
        ("run_id", pa.string()),  # also the artefact folder name under <dataset>/models/ (collab: index version)
        ("dataset", pa.string()),
        ("kind", pa.string()),  # sasrec | pop | summarizer | collab_index | mmsrarec
        ("variant", pa.string()),  # e.g. mmsrarec-no-retrieval (stage 3), extractive | mllm (summarizer)
        ("protocol", pa.string()),  # paper | full: the training data's protocol (null: not protocol-bound)
        ("status", pa.string()),  # running | complete | failed
        ("config_json", pa.string()),
        ("lineage", pa.map_(pa.string(), pa.string())),  # input table versions, upstream run ids
        ("metrics", pa.map_(pa.string(), pa.float64())),  # summary numbers (e.g. valid_ndcg@10)
        ("artefact_uri", pa.string()),
        ("code_version", pa.string()),
        ("started_at", TS),
        ("ended_at", TS),  # null while running
        ("updated_at", TS),  # when this row was written; the newest row of a run is its state
        ("message", pa.string()),  # failed: the error
    ]
)
