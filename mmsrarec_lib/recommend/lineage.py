"""Lineage of a fine-tuned recommender: which data, keywords, neighbours and generator it was trained from.

Saved in the run's ``model.json`` (``lineage``) so a recommendation or an evaluation row can be traced back to the
exact Delta table versions (time travel), summarizer version, collaborative index version and SASRec run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mmsrarec_lib import tables
from mmsrarec_lib.runs import code_version, utcnow
from mmsrarec_lib.storage import Warehouse

LINEAGE_TABLES = (tables.ITEMS, tables.INTERACTIONS, tables.USER_SEQUENCES, tables.SPLIT_LOO, tables.EVAL_CANDIDATES,
                  tables.ITEM_KEYWORDS, tables.USER_COLLAB_KEYWORDS)


def table_versions(warehouse: Warehouse, dataset: str, tables: Sequence[str] = LINEAGE_TABLES) -> dict[str, int | None]:
    """Current Delta version of each table (None when the table does not exist)."""
    return {t: warehouse.table_version(dataset, t) for t in tables}


def collect_lineage(
    warehouse: Warehouse,
    dataset: str,
    *,
    keyword_source: str,
    index_version: str | None,
    generator_run: str | None,
    base_model: str,
) -> dict[str, Any]:
    """The lineage record stored with a run."""
    return {
        "dataset": dataset,
        "summarizer_version": keyword_source,  # "raw" for the no-summary ablation or when no summarizer ran
        "collab_index_version": index_version,
        "generator_run": generator_run,
        "base_model": base_model,
        "table_versions": table_versions(warehouse, dataset),
        "code_version": code_version(),
        "recorded_at": utcnow().isoformat(),
    }
