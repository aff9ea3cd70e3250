"""Helpers of the deployment tests (S3 chain, Spark cluster): tiny input data and table comparison."""

from __future__ import annotations

import pyarrow as pa

from mmsrarec_lib.testing import write_tiny_dataset

__all__ = ["canonical", "write_tiny_dataset"]


def canonical(table: pa.Table, *, drop: tuple[str, ...] = ()) -> list[dict]:
    """Rows of ``table`` without the ``drop`` columns, sorted, for comparing tables written by different runs."""
    keep = [c for c in table.column_names if c not in drop]
    rows = table.select(keep).to_pylist()
    return sorted(rows, key=lambda r: repr(sorted(r.items())))
