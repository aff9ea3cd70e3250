"""What later stages call: keywords of a chosen summarizer version, or the raw text (the "w/o summarization"
ablation), and the latest version present."""

from __future__ import annotations

import pyarrow.compute as pc
import pyarrow.dataset as pads

from mmsrarec_lib import tables
from mmsrarec_lib.storage import Warehouse
from mmsrarec_lib.summarize.encoders import words
from mmsrarec_lib.summarize.table import TABLE

RAW = "raw"
_STOP = frozenset("a an the of and or in on at to for with by from is are was were be as its it his her their "
                  "this that".split())


def latest_summarizer_version(warehouse: Warehouse, dataset: str) -> str | None:
    """The summarizer_version with the most recent ``created_at`` in item_keywords (None when empty/missing)."""
    if not warehouse.has_table(dataset, TABLE):
        return None
    t = warehouse.read_table(dataset, TABLE, columns=["summarizer_version", "created_at"])
    if t.num_rows == 0:
        return None
    i = pc.index(t.column("created_at"), pc.max(t.column("created_at"))).as_py()
    return t.column("summarizer_version")[i].as_py()


def raw_words(text: str, *, max_words: int = 32) -> list[str]:
    """Lower-cased words of ``text`` without a few function words, first occurrence order, at most ``max_words``."""
    out: list[str] = []
    for w in words(text):
        if w not in _STOP and w not in out:
            out.append(w)
            if len(out) == max_words:
                break
    return out


def load_item_keywords(warehouse: Warehouse, dataset: str, *, version: str) -> dict[str, dict[str, list[str]]]:
    """item_id -> {"text": [...], "image": [...]} for ``version``.

    ``version="raw"`` reads the ``items`` table instead: "text" = words of title + description (+ categories),
    "image" = [] (there is no raw image text). Items lacking a modality get an empty list. An unknown version is
    a ValueError listing the versions present.
    """
    if version == RAW:
        items = warehouse.read_table(dataset, tables.ITEMS, columns=["item_id", "title", "description", "categories"])
        out = {}
        for row in items.to_pylist():
            text = " ".join([row["title"] or "", row["description"] or "", " ".join(row["categories"] or [])])
            out[row["item_id"]] = {"text": raw_words(text), "image": []}
        return out
    if not warehouse.has_table(dataset, TABLE):
        raise FileNotFoundError(f"no item_keywords table for dataset {dataset!r}: run `mmsrarec summarize` first")
    t = warehouse.read_table(dataset, TABLE, columns=["item_id", "modality", "keywords"],
                             filter=pads.field("summarizer_version") == version)
    if t.num_rows == 0:
        present = sorted(set(warehouse.read_table(dataset, TABLE, columns=["summarizer_version"])
                             .column("summarizer_version").to_pylist()))
        raise ValueError(f"no keywords of summarizer_version {version!r} for {dataset!r}; present: {present}")
    out: dict[str, dict[str, list[str]]] = {}
    for item_id, modality, kws in zip(*(t.column(c).to_pylist() for c in ("item_id", "modality", "keywords"))):
        out.setdefault(item_id, {"text": [], "image": []})[modality] = list(kws or [])
    return out
