"""Reading and writing ``item_keywords``: MERGE on (item_id, modality, summarizer_version), chunked backfill."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.dataset as pads

from mmsrarec_lib import schemas, tables
from mmsrarec_lib.runs import utcnow
from mmsrarec_lib.storage import Warehouse
from mmsrarec_lib.summarize.types import ItemInput, KeywordResult

log = logging.getLogger(__name__)
TABLE = tables.ITEM_KEYWORDS
MERGE_KEYS = ("item_id", "modality", "summarizer_version")


def results_table(results: Sequence[KeywordResult], *, version: str) -> pa.Table:
    now = utcnow()
    rows = [
        {
            "item_id": r.item_id, "modality": r.modality, "keywords": list(r.keywords),
            "summarizer_version": version, "r_info": r.r_info, "r_recon": r.r_recon, "r_len": r.r_len,
            "reward": r.reward, "input_sha256": r.input_sha256, "created_at": now,
        }
        for r in results
    ]
    return pa.Table.from_pylist(rows, schema=schemas.ITEM_KEYWORDS)


def existing_hashes(warehouse: Warehouse, dataset: str, *, version: str) -> dict[tuple[str, str], str]:
    """(item_id, modality) -> input_sha256 already stored for ``version``."""
    if not warehouse.has_table(dataset, TABLE):
        return {}
    t = warehouse.read_table(dataset, TABLE, columns=["item_id", "modality", "input_sha256"],
                             filter=pads.field("summarizer_version") == version)
    return {(i, m): h for i, m, h in zip(*(t.column(c).to_pylist() for c in ("item_id", "modality", "input_sha256")))}


@dataclass(frozen=True)
class Plan:
    """What a run will (re)compute: items with at least one (modality) to do, and the pairs themselves."""

    items: list[ItemInput]
    todo: set[tuple[str, str]]
    skipped: int  # (item, modality) pairs already up to date


def plan_work(items: Sequence[ItemInput], *, modalities: Sequence[str], done: dict[tuple[str, str], str],
              backfill: bool) -> Plan:
    """Backfill: only pairs whose keywords are missing for V or whose input hash changed; else everything."""
    todo: set[tuple[str, str]] = set()
    skipped = 0
    for it in items:
        for m in modalities:
            h = it.input_sha256(m)
            if h is None:
                continue  # e.g. no image: text keywords only
            if backfill and done.get((it.item_id, m)) == h:
                skipped += 1
                continue
            todo.add((it.item_id, m))
    chosen = [it for it in items if any((it.item_id, m) in todo for m in modalities)]
    return Plan(items=chosen, todo=todo, skipped=skipped)


def write_chunks(
    warehouse: Warehouse,
    dataset: str,
    *,
    plan: Plan,
    summarize: Callable[[list[ItemInput]], list[KeywordResult]],
    version: str,
    chunk_size: int = 128,
    progress: bool = True,
) -> dict:
    """Summarize ``plan.items`` in chunks, MERGE each chunk in one commit (a kill loses at most one chunk)."""
    from tqdm import tqdm

    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    written = 0
    commits = 0
    bar = tqdm(total=len(plan.items), unit="item", desc=f"summarize {dataset} {version}", disable=not progress)
    for start in range(0, len(plan.items), chunk_size):
        chunk = plan.items[start : start + chunk_size]
        results = [r for r in summarize(chunk) if (r.item_id, r.modality) in plan.todo]
        if results:
            warehouse.merge_table(dataset, TABLE, results_table(results, version=version), keys=MERGE_KEYS)
            commits += 1
            written += len(results)
        bar.update(len(chunk))
    bar.close()
    return {"items": len(plan.items), "rows_written": written, "commits": commits, "skipped": plan.skipped}
