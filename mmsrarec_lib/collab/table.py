"""Rows of ``user_collab_keywords``: each query user's neighbours with the keywords of their next items.

Key: ``(user_id, protocol)``. ``protocol`` is ``paper`` (the window before the user's ``eval_candidates`` target,
target held out) or ``latest`` (the user's latest items, for production recommendations).
A neighbour's ``keywords`` are its next item's text keywords followed by its image keywords (duplicates dropped,
order kept), from ``item_keywords`` of one summarizer version, or ``raw`` title words.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence

import pyarrow as pa

from mmsrarec_lib import schemas, tables
from mmsrarec_lib.collab.retrieval import Neighbor
from mmsrarec_lib.collab.windows import UserWindow, from_us
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)

TABLE = tables.USER_COLLAB_KEYWORDS
KEYS = ("user_id", "protocol")
PROTOCOLS = ("paper", "latest")
RAW = "raw"


def merge_keywords(per_modality: Mapping[str, Sequence[str]] | Sequence[str] | None) -> list[str]:
    """Text keywords then image keywords, first occurrence kept (a plain list is taken as is)."""
    if per_modality is None:
        return []
    if isinstance(per_modality, Mapping):
        words = [*per_modality.get("text", []), *per_modality.get("image", [])]
        words += [w for m, ws in per_modality.items() if m not in ("text", "image") for w in ws]
    else:
        words = list(per_modality)
    seen: dict[str, None] = {}
    for w in words:
        if w and w not in seen:
            seen[w] = None
    return list(seen)


def load_keywords(warehouse: Warehouse, dataset: str, version: str | None = None) -> tuple[dict[str, list[str]], str]:
    """Item keywords (item_id -> words) and the ``keyword_source`` they come from.

    ``version=None`` picks the latest summarizer version, else ``raw``; read through the summarizer's own lookup.
    """
    from mmsrarec_lib.summarize import lookup

    if version is None:
        try:
            version = lookup.latest_summarizer_version(warehouse, dataset) or RAW
        except FileNotFoundError:
            version = RAW
    table = lookup.load_item_keywords(warehouse, dataset, version=version)
    return {item: merge_keywords(kw) for item, kw in table.items()}, version


def build_rows(
    windows: Sequence[UserWindow],
    neighbors: Sequence[Sequence[Neighbor]],
    *,
    protocol: str,
    keywords: Mapping[str, Sequence[str]],
    keyword_source: str,
    index_version: str,
    created_at: dt.datetime,
) -> pa.Table:
    """One row per query window, in ``schemas.USER_COLLAB_KEYWORDS``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if len(windows) != len(neighbors):
        raise ValueError(f"{len(windows)} windows but {len(neighbors)} neighbour lists")
    missing: set[str] = set()
    rows = []
    for w, ns in zip(windows, neighbors):
        entries = []
        for nb in ns:
            if nb.next_item_id not in keywords:
                missing.add(nb.next_item_id)
            entries.append(
                {
                    "user_id": nb.user_id,
                    "score": nb.score,
                    "next_item_id": nb.next_item_id,
                    "keywords": list(keywords.get(nb.next_item_id, [])),
                }
            )
        rows.append(
            {
                "user_id": w.user_id,
                "protocol": protocol,
                "as_of": from_us(w.as_of_us),
                "neighbors": entries,
                "keyword_source": keyword_source,
                "index_version": index_version,
                "created_at": created_at,
            }
        )
    if missing:
        log.warning("%d neighbour next items have no %s keywords (empty lists written)", len(missing), keyword_source)
    return pa.Table.from_pylist(rows, schema=schemas.USER_COLLAB_KEYWORDS)
