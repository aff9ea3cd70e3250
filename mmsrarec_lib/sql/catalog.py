"""The analysts' catalog of warehouse tables: schema (from :mod:`mmsrarec_lib.schemas`), grain, keys, partitioning
and the job that writes each table. ``sql/catalog.md`` is generated from it, so the two cannot drift:

    python -m mmsrarec_lib.sql.catalog > sql/catalog.md

Column types are shown as DuckDB (SQL) types, as analysts see them in ``mmsrarec sql``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from mmsrarec_lib import schemas, tables


@dataclass(frozen=True)
class TableDoc:
    """What an analyst needs to know about one table besides its columns."""

    name: str
    schema: pa.Schema
    description: str
    grain: str
    keys: tuple[str, ...]
    partitioning: str
    writers: str
    notes: dict[str, str] = field(default_factory=dict)


_QUARANTINE_NOTES = {
    "reason": "why the row was rejected (one value per rule)",
    "source_row": "1-based row number in the input file",
    "raw_row": "the rejected input row as JSON",
}

TABLES: dict[str, TableDoc] = {
    t.name: t
    for t in (
        TableDoc(
            tables.ITEMS, schemas.ITEMS, "The item catalogue: normalised text and the item's image.",
            "one row per item", ("item_id",), "none", "`ingest` (Spark job build_item_table), overwritten per run",
            {"image_bytes": "JPEG bytes; never printed by `mmsrarec sql` (shown as `image_bytes_length`)",
             "image_status": "ok | missing | undecodable | refused | none (no image_uri given)",
             "attributes": "every other input column", "text_sha256": "change detection of title+description"},
        ),
        TableDoc(
            tables.ITEMS_QUARANTINE, schemas.QUARANTINE, "Item rows rejected by ingest, kept with their reason.",
            "one rejected input row per ingest run", ("run_id", "source_row"), "none", "`ingest` (appends)",
            _QUARANTINE_NOTES,
        ),
        TableDoc(
            tables.INTERACTIONS, schemas.INTERACTIONS, "User-item events, timestamps normalised to UTC.",
            "one interaction (exact duplicate rows collapsed)", ("user_id", "item_id", "timestamp"), "none",
            "`ingest` (Spark job build_interactions); new interactions are appended",
            {"source_row": "1-based input row; the deterministic tie-break for equal timestamps"},
        ),
        TableDoc(
            tables.INTERACTIONS_QUARANTINE, schemas.QUARANTINE, "Interaction rows rejected by ingest.",
            "one rejected input row per ingest run", ("run_id", "source_row"), "none", "`ingest` (appends)",
            _QUARANTINE_NOTES,
        ),
        TableDoc(
            tables.USER_SEQUENCES, schemas.USER_SEQUENCES, "Each user's interaction history in time order.",
            "one row per user", ("user_id",), "none", "`ingest`",
            {"item_ids": "oldest first, ordered by (timestamp, source_row)"},
        ),
        TableDoc(
            tables.SPLIT_LOO, schemas.SPLIT_LOO, "Leave-one-out splits for full-catalogue ranking.",
            "one row per user and split", ("user_id", "split"), "none", "`ingest` (after the k-core filter)",
            {"split": "train (target = third-to-last item) | valid (second-to-last) | test (last)"},
        ),
        TableDoc(
            tables.EVAL_CANDIDATES, schemas.EVAL_CANDIDATES,
            "The paper's protocol: users split 8:1:1; history of 5, the target and 20 sampled negatives.",
            "one row per user", ("user_id",), "none", "`ingest` (seeded)",
            {"negative_item_ids": "20 items the user never interacted with"},
        ),
        TableDoc(
            tables.INGEST_RUNS, schemas.INGEST_RUNS, "Run accounting of every job that writes data.",
            "one row per job run and table written", ("run_id", "table"), "none",
            "`ingest` and the other writing jobs (append)",
            {"rows_in": "= rows_written + rows_quarantined + rows_duplicate (checked by the writer)",
             "kcore_k": "the run's --k-core; kcore_users/items/interactions: what the filter kept (same on every row"
             " of the run; null before these columns existed)",
             "kcore_share_kept": "kept share of the interactions (0..1)",
             "warnings": "e.g. the sparse-data warning with a suggested --k-core (see docs/ingest.md)"},
        ),
        TableDoc(
            tables.DATASET_RUNS, schemas.DATASET_RUNS,
            "How every multi-table run (ingest) ended, and which table versions it published; readers resolve"
            " versions through it, so a run that died between commits is invisible.",
            "one row per state change of a run (running, then complete | failed | abandoned)", ("run_id", "status"),
            "none", "`ingest` (append: `running` before its first commit, the end state last)",
            {"status": "running (in progress, or died and not yet repaired) | complete | failed (raised; its"
             " commits rolled back) | abandoned (died; found and rolled back by the next writer)",
             "base_versions": "table -> version the run started from (-1: did not exist)",
             "published_versions": "complete runs: table -> version published"},
        ),
        TableDoc(
            tables.EVALUATION_RUNS, schemas.EVALUATION_RUNS, "Every evaluation result of every model and seed.",
            "one metric value of one run", ("run_id", "model", "protocol", "metric", "k"), "none",
            "`train-baseline`, `evaluate` (append)",
            {"value": "raw 0..1 (x100 only in displays)", "k": "NULL for metrics without a cut-off (auc, mrr)",
             "protocol": "paper (1 positive + 20 negatives) | full (whole catalogue)"},
        ),
        TableDoc(
            tables.MODEL_RUNS, schemas.MODEL_RUNS,
            "Every training run (SASRec, Pop, summarizer policy, collab index, MMSRARec) and how it ended; the"
            " source of truth for \"the latest run\" of a kind (mmsrarec_lib/model_runs.py, docs/runs.md).",
            "one row per state change of a run (running, then complete | failed)", ("run_id", "status"), "none",
            "every training job (append: `running` when it starts, the end state when it ends);"
            " `mmsrarec runs --backfill` adds runs found only as model folders",
            {"status": "running (in progress, or killed) | complete | failed; a run's state is its newest row",
             "kind": "sasrec | pop | summarizer | collab_index | mmsrarec",
             "variant": "stage 3: mmsrarec, mmsrarec-no-retrieval, ...; summarizer: extractive | mllm;"
             " collab_index: the embedder (hybrid | sasrec)",
             "lineage": "input table versions (`table_versions.<table>`), upstream runs (`generator_run`,"
             " `sasrec_run`), index / summarizer versions",
             "metrics": "summary numbers, e.g. `valid_ndcg@10` (SASRec), `after.reward` (summarizer)",
             "updated_at": "when the row was written"},
        ),
        TableDoc(
            tables.ITEM_KEYWORDS, schemas.ITEM_KEYWORDS, "Stage 1: keyword summaries of each item's text and image.",
            "one row per item, modality and summarizer version", ("item_id", "modality", "summarizer_version"),
            "none", "`summarize` (MERGE on the keys; `--backfill` fills gaps)",
            {"reward": "a*r_info + b*r_recon + c*r_len", "input_sha256": "hash of the inputs summarized"},
        ),
        TableDoc(
            tables.ITEM_IMAGE_FEATURES, schemas.ITEM_IMAGE_FEATURES,
            "Pretrained image features of each item's image (pooled vector and top ImageNet classes).",
            "one row per item and image encoder", ("item_id", "encoder"), "none",
            "`encode-images` (MERGE on the keys; `--backfill` encodes only new or changed images)",
            {"image_sha256": "the image encoded; each distinct image is encoded once per encoder_version",
             "feature": "pooled image feature (1,280 floats for efficientnet-lite0)",
             "top_classes": "the 5 most probable classes, best first; empty when the encoder has no classifier"},
        ),
        TableDoc(
            tables.USER_COLLAB_KEYWORDS, schemas.USER_COLLAB_KEYWORDS,
            "Stage 2: each user's similar users and the keywords of what they chose next.",
            "one row per user and protocol", ("user_id", "protocol"), "none",
            "`build-collab` (all users), `refresh-collab` (users with new interactions)",
            {"as_of": "end of the user's query window", "keyword_source": "summarizer version, or raw",
             "protocol": "paper (window before the evaluation target) | latest (the user's latest items)"},
        ),
        TableDoc(
            tables.RECOMMENDATIONS, schemas.RECOMMENDATIONS,
            "Stage 3: top-K recommendations with keyword explanations.",
            "one row per run_date, user and rank", ("run_date", "user_id", "rank"), "`run_date` (date)",
            "`recommend` / `publish-recommendations`: one commit per run_date after the quality gate (rerunning a"
            " run_date replaces that partition only)",
            {"explanation": "history keywords and neighbour keywords supporting the item, and the neighbour ids",
             "rank": "1 = best"},
        ),
    )
}

KNOWN_SCHEMAS: dict[str, pa.Schema] = {name: doc.schema for name, doc in TABLES.items()}
READY_QUERIES_DIR = Path(__file__).resolve().parents[2] / "sql"


def sql_types(schema: pa.Schema) -> list[tuple[str, str]]:
    """(column, DuckDB type) for every column of ``schema``, as DuckDB itself names them."""
    import duckdb

    con = duckdb.connect()
    try:
        con.register("t", schema.empty_table())
        return [(row[0], row[1]) for row in con.sql("DESCRIBE SELECT * FROM t").fetchall()]
    finally:
        con.close()


def query_summary(sql: str) -> str:
    """The first sentence of a ready query's header comment (its leading ``--`` lines)."""
    header: list[str] = []
    for line in sql.splitlines():
        if not line.startswith("--"):
            break
        header.append(line.removeprefix("--").strip())
    text = " ".join(header)
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def render_catalog() -> str:
    """The Markdown text of ``sql/catalog.md``."""
    lines = [
        "# Warehouse table catalog",
        "",
        "<!-- generated by `python -m mmsrarec_lib.sql.catalog > sql/catalog.md`; edit mmsrarec_lib/sql/catalog.py -->",
        "",
        "Every table is a Delta table at `<warehouse>/<dataset>/<table>` and a view of the same name in",
        "`mmsrarec sql` (DuckDB) and in `register_spark_views` (Spark SQL). Ids are strings; timestamps are UTC.",
        "The extra view `warehouse_tables` lists which version of each table a session reads; `table_history`",
        "lists every commit still in each table's log (version, time, operation, and who wrote it: job, run id,",
        "Airflow dag/run/task/try, code version), so any version can be time-travelled to with `--as-of-version`.",
        "",
        "| table | grain | keys | partitioned by | written by |",
        "|---|---|---|---|---|",
    ]
    for doc in TABLES.values():
        keys = ", ".join(f"`{k}`" for k in doc.keys)
        lines.append(f"| [`{doc.name}`](#{doc.name}) | {doc.grain} | {keys} | {doc.partitioning} | {doc.writers} |")
    for doc in TABLES.values():
        lines += ["", f"## {doc.name}", "", doc.description, ""]
        lines += [f"- Grain: {doc.grain}", f"- Keys: {', '.join(doc.keys)}", f"- Partitioned by: {doc.partitioning}",
                  f"- Written by: {doc.writers}", "", "| column | type | notes |", "|---|---|---|"]
        for column, type_name in sql_types(doc.schema):
            note = doc.notes.get(column, "").replace("|", "\\|")  # a bare | would split the Markdown cell
            lines.append(f"| `{column}` | `{type_name}` | {note} |")
    lines += ["", "## Ready queries", "",
              "Run one with `mmsrarec sql --dataset D -f sql/FILE [--param NAME=VALUE]`.", "",
              "| file | what it answers |", "|---|---|"]
    for path in sorted(READY_QUERIES_DIR.glob("*.sql")):
        lines.append(f"| [`{path.name}`]({path.name}) | {query_summary(path.read_text(encoding='utf-8'))} |")
    lines += ["", "## Quality gate", "", "Assertions over the staged recommendations, run by `publish-recommendations`"
              " (and plain `recommend`) before the commit; each returns an `offending` count that must be 0"
              " (mmsrarec_lib/recommend/gate.py).", "", "| file | what must hold |", "|---|---|"]
    for path in sorted((READY_QUERIES_DIR / "quality").glob("*.sql")):
        lines.append(f"| [`quality/{path.name}`](quality/{path.name}) |"
                     f" {query_summary(path.read_text(encoding='utf-8'))} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_catalog())
