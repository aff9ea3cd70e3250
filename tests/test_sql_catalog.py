"""sql/catalog.md documents every column of every table schema, and is the current rendering of the catalog."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from mmsrarec_lib import schemas
from mmsrarec_lib.sql.catalog import TABLES, render_catalog

CATALOG_MD = Path(__file__).resolve().parent.parent / "sql" / "catalog.md"


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## ", text, flags=re.M)
    return {part.split("\n", 1)[0].strip(): part for part in parts[1:]}


def test_every_schema_in_schemas_py_is_catalogued():
    defined = {name for name, value in vars(schemas).items() if isinstance(value, pa.Schema)}
    used = {name for name, value in vars(schemas).items() if any(value is doc.schema for doc in TABLES.values())}
    assert defined == used, f"schemas without a catalog entry: {defined - used}"


def test_catalog_md_lists_every_column_of_every_table_with_its_type():
    sections = _sections(CATALOG_MD.read_text(encoding="utf-8"))
    for name, doc in TABLES.items():
        assert name in sections, f"catalog.md has no section for {name}"
        body = sections[name]
        for field in doc.schema:
            assert re.search(rf"^\| `{re.escape(field.name)}` \| `[^`]+` \|", body, flags=re.M), (name, field.name)
        assert "Grain:" in body and "Keys:" in body and "Partitioned by:" in body and "Written by:" in body
    assert "`run_date` (date)" in sections["recommendations"]
    assert "| `explanation` | `STRUCT(history_keywords VARCHAR[]" in sections["recommendations"]


def test_catalog_md_is_up_to_date():
    assert CATALOG_MD.read_text(encoding="utf-8") == render_catalog(), (
        "sql/catalog.md is stale: run `python -m mmsrarec_lib.sql.catalog > sql/catalog.md`"
    )
