"""Everything the prompts need, read once from the warehouse: item views, keywords, images, users' neighbours.

Keyword source: ``"summary"`` = the latest summarizer version (through ``mmsrarec_lib.collab.table.load_keywords``,
which reads ``mmsrarec_lib.summarize.lookup`` when installed and otherwise falls back to raw title words), a named
summarizer version, or ``"raw"`` = the no-summary ablation (items shown by their raw title + description text).

Neighbours come from ``user_collab_keywords``: the ``paper`` rows (window before the user's held-out last item; used
for training and for both evaluation protocols, so no test target leaks into a prompt) or the ``latest`` rows
(production recommendations). A neighbour's keywords are re-rendered from its ``next_item_id`` with the same keyword
source as the items, so the no-summary ablation is raw text throughout.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

import pyarrow.dataset as pads

from mmsrarec_lib import tables
from mmsrarec_lib.recommend.prompts import Candidate
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)
COLLAB_TABLE = tables.USER_COLLAB_KEYWORDS
RAW = "raw"


@dataclass(frozen=True)
class NeighborRef:
    user_id: str
    next_item_id: str


@dataclass
class RecContext:
    """In-memory view of the tables a prompt reads (ML-100K: ~1.7k items, under 30 MB with images)."""

    items: dict[str, Candidate]
    descriptions: dict[str, str]
    keywords: dict[str, list[str]]
    images: dict[str, bytes]
    neighbors: dict[str, list[NeighborRef]] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)  # catalogue categories (genres), explanations
    keyword_source: str = RAW
    index_version: str | None = None
    use_neighbors: bool = True

    def without_items(self, items: Collection[str]) -> RecContext:
        """A copy whose catalogue lacks ``items`` (a training context of the cold protocol: a held-out item is not
        even sampled as a negative, as an item added after training never was)."""
        if not items:
            return self
        drop = set(items)

        def keep(d: Mapping) -> dict:
            return {k: v for k, v in d.items() if k not in drop}

        return replace(self, items=keep(self.items), descriptions=keep(self.descriptions), keywords=keep(self.keywords),
                       images=keep(self.images), categories=keep(self.categories))

    def image(self, item_id: str) -> bytes | None:
        return self.images.get(item_id)

    def neighbor_keywords(self, user_id: str | None, limit: int) -> list[list[str]]:
        """The keywords of each neighbour's next item, most similar neighbour first."""
        if not self.use_neighbors or user_id is None:
            return []
        return [self.keywords.get(n.next_item_id, []) for n in self.neighbors.get(user_id, [])[:limit]]

    def neighbor_ids(self, user_id: str | None, limit: int) -> list[str]:
        if not self.use_neighbors or user_id is None:
            return []
        return [n.user_id for n in self.neighbors.get(user_id, [])[:limit]]


def item_views(
    rows: Sequence[Mapping], keywords: Mapping[str, Sequence[str]], *, raw: bool
) -> dict[str, Candidate]:
    """items rows (item_id, title, description, image_status) -> prompt views (keywords, or raw text)."""
    out = {}
    for r in rows:
        iid = r["item_id"]
        out[iid] = Candidate(
            item_id=iid,
            title=r.get("title") or iid,
            keywords=tuple(keywords.get(iid, ())),
            raw_text=(r.get("description") or "") if raw else None,
            has_image=r.get("image_status") == "ok",
        )
    return out


def load_neighbors(warehouse: Warehouse, dataset: str, *, protocol: str) -> tuple[dict[str, list[NeighborRef]],
                                                                                   str | None]:
    """user_id -> neighbours (from ``user_collab_keywords`` rows of ``protocol``) and the index version."""
    if not warehouse.has_table(dataset, COLLAB_TABLE):
        log.warning("no %s table for %s: prompts get no neighbours (run `mmsrarec build-collab`)", COLLAB_TABLE,
                    dataset)
        return {}, None
    table = warehouse.read_table(dataset, COLLAB_TABLE, columns=["user_id", "neighbors", "index_version"],
                                 filter=pads.field("protocol") == protocol)
    out: dict[str, list[NeighborRef]] = {}
    versions: set[str] = set()
    for r in table.to_pylist():
        out[r["user_id"]] = [NeighborRef(n["user_id"], n["next_item_id"]) for n in (r["neighbors"] or [])]
        if r["index_version"]:
            versions.add(r["index_version"])
    version = ",".join(sorted(versions)) or None
    log.info("neighbours of %d users (%s rows, index %s)", len(out), protocol, version)
    return out, version


def load_context(
    warehouse: Warehouse,
    dataset: str,
    *,
    keyword_source: str = "summary",
    neighbor_protocol: str = "paper",
    use_neighbors: bool = True,
    hidden_items: Collection[str] = (),
) -> RecContext:
    """Read items (with images), keywords and neighbours for ``dataset``. A neighbour whose next item is one of
    ``hidden_items`` is dropped (the cold protocol hides its held-out items' interactions from the context too)."""
    from mmsrarec_lib.collab.table import load_keywords

    rows = warehouse.read_table(dataset, tables.ITEMS, columns=["item_id", "title", "description", "categories",
                                                           "image_status", "image_bytes"]).to_pylist()
    if not rows:
        raise ValueError(f"items table of {dataset!r} is empty")
    raw = keyword_source == RAW
    if raw:
        keywords, source = _raw_keywords(rows), RAW
    else:
        keywords, source = load_keywords(warehouse, dataset, None if keyword_source == "summary" else keyword_source)
    neighbors, index_version = (load_neighbors(warehouse, dataset, protocol=neighbor_protocol)
                                if use_neighbors else ({}, None))
    if hidden_items:
        hidden = set(hidden_items)
        neighbors = {u: [n for n in ns if n.next_item_id not in hidden] for u, ns in neighbors.items()}
    return RecContext(
        items=item_views(rows, keywords, raw=raw),
        descriptions={r["item_id"]: r.get("description") or "" for r in rows},
        keywords={k: list(v) for k, v in keywords.items()},
        images={r["item_id"]: r["image_bytes"] for r in rows if r.get("image_status") == "ok" and r["image_bytes"]},
        neighbors=neighbors,
        categories={r["item_id"]: list(r.get("categories") or []) for r in rows},
        keyword_source=source,
        index_version=index_version,
        use_neighbors=use_neighbors,
    )


def _raw_keywords(rows: Sequence[Mapping]) -> dict[str, list[str]]:
    """For explanations under the raw ablation: lower-cased words (3+ letters) of title and description."""
    import re

    out = {}
    for r in rows:
        words = re.findall(r"[a-z0-9']{3,}", f"{r.get('title') or ''} {r.get('description') or ''}".lower())
        out[r["item_id"]] = list(dict.fromkeys(words))[:12]
    return out
