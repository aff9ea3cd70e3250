"""The summarizer's inputs and outputs, and how they are read from the ``items`` table."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from mmsrarec_lib.runs import sha256_hex

MODALITIES = ("text", "image")


@dataclass(frozen=True)
class ItemInput:
    """One catalogue item as the summarizer sees it."""

    item_id: str
    title: str
    description: str
    categories: tuple[str, ...] = ()
    image_bytes: bytes | None = None

    @property
    def text(self) -> str:
        """What the text summarizer reads: title, description, categories (one line each, empty ones skipped)."""
        parts = [self.title.strip(), self.description.strip()]
        if self.categories:
            parts.append("Categories: " + ", ".join(self.categories))
        return "\n".join(p for p in parts if p)

    @property
    def reference(self) -> str:
        """The text the rewards compare keywords against: the description, else title + categories."""
        if self.description.strip():
            return self.description.strip()
        return " ".join([self.title.strip(), *self.categories]).strip()

    def input_sha256(self, modality: str) -> str | None:
        """sha256 of exactly what the summarizer reads for ``modality`` (None: no image)."""
        if modality == "text":
            return sha256_hex(self.text)
        if modality == "image":
            return sha256_hex(self.image_bytes) if self.image_bytes else None
        raise ValueError(f"unknown modality {modality!r}")

    def has_input(self, modality: str) -> bool:
        return self.input_sha256(modality) is not None


@dataclass(frozen=True)
class KeywordResult:
    """The keywords of one (item, modality) and the reward terms they scored."""

    item_id: str
    modality: str
    keywords: list[str]
    input_sha256: str
    r_info: float
    r_recon: float
    r_len: float
    reward: float
    extra: dict = field(default_factory=dict, compare=False)


def items_from_table(table: pa.Table) -> list[ItemInput]:
    """``ItemInput`` rows from an ``items`` table; images only where ``image_status == 'ok'``.

    Raises ValueError naming the row when an item id is missing or repeated.
    """
    cols = set(table.column_names)
    missing = {"item_id", "title"} - cols
    if missing:
        raise ValueError(f"items table lacks columns {sorted(missing)}")
    rows = table.to_pylist()
    seen: set[str] = set()
    out: list[ItemInput] = []
    for i, row in enumerate(rows):
        item_id = row.get("item_id")
        if not item_id:
            raise ValueError(f"items row {i}: empty item_id")
        if item_id in seen:
            raise ValueError(f"items row {i}: duplicate item_id {item_id!r}")
        seen.add(item_id)
        status = row.get("image_status")
        image = row.get("image_bytes") if (status in (None, "ok")) else None
        out.append(
            ItemInput(
                item_id=item_id,
                title=row.get("title") or "",
                description=row.get("description") or "",
                categories=tuple(c for c in (row.get("categories") or []) if c),
                image_bytes=image or None,
            )
        )
    return out
