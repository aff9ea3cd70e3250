"""``mmsrarec encode-images`` and item_image_features: once per image, backfill, corrupt/missing images, reads."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from jobs.cli import main as cli
from mmsrarec_lib import schemas
from mmsrarec_lib.runs import sha256_hex
from mmsrarec_lib.vision import read_image_features
from mmsrarec_lib.vision.table import TABLE, read_feature_rows
from tests._summarize_helpers import items_table, jpeg
from tests._vision_helpers import tiny_vit

DS = "tiny"


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    return str(tiny_vit(tmp_path_factory.mktemp("m") / "vit-clf", classify=True))


def _encode(warehouse, vit, capsys, *extra) -> dict:
    capsys.readouterr()
    assert cli(["--log-level", "WARNING", "encode-images", "--dataset", DS, "--warehouse", warehouse.root,
                "--encoder", vit, "--batch-size", "2", "--chunk-size", "3", *extra]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _with_images(table: pa.Table, images: dict[int, bytes | None], *,
                 status: dict[int, str] | None = None) -> pa.Table:
    status = {} if status is None else status
    rows = table.to_pylist()
    for r in rows:
        i = int(r["item_id"])
        if i in images:
            r["image_bytes"] = images[i]
            r["image_sha256"] = sha256_hex(images[i]) if images[i] else None
            r["image_status"] = status.get(i, "ok" if images[i] else "missing")
    return pa.Table.from_pylist(rows, schema=schemas.ITEMS)


def _rows(warehouse) -> dict[str, dict]:
    return {r["item_id"]: r for r in warehouse.read_table(DS, TABLE).to_pylist()}


def test_each_image_once_backfill_only_new_or_changed(warehouse, vit, capsys):
    base = _with_images(items_table(9), {9: jpeg((37, 199, 5))})  # items 3, 6 have no image
    base = _with_images(base, {7: base.to_pylist()[0]["image_bytes"]})  # item 7 shows item 1's image
    warehouse.write_table(DS, "items", base)
    stats = _encode(warehouse, vit, capsys)
    assert stats["items_with_image"] == 7 and stats["images_encoded"] == 6  # 7 items, 6 distinct images
    rows = _rows(warehouse)
    assert sorted(rows, key=int) == ["1", "2", "4", "5", "7", "8", "9"]  # no row without an ok image
    assert rows["7"]["feature"] == rows["1"]["feature"] and rows["7"]["image_sha256"] == rows["1"]["image_sha256"]
    assert len(rows["1"]["feature"]) == 16 and rows["1"]["encoder_version"].startswith("local-")
    top = rows["1"]["top_classes"]
    assert [c["label"] for c in top][:3] and {c["label"] for c in top} <= {"cat", "dog", "car"}
    assert all(a["prob"] >= b["prob"] for a, b in zip(top, top[1:]))
    ids, feats = read_image_features(warehouse, DS, encoder=vit)
    assert ids == sorted(rows) and feats.shape == (7, 16) and feats.dtype == np.float32
    np.testing.assert_allclose(feats[ids.index("2")], rows["2"]["feature"], rtol=1e-6)

    # nothing changed: a backfill encodes nothing and rewrites nothing
    version = warehouse.table_version(DS, TABLE)
    stats = _encode(warehouse, vit, capsys, "--backfill")
    assert stats["images_encoded"] == 0 and stats["rows_written"] == 0 and stats["up_to_date"] == 7
    assert warehouse.table_version(DS, TABLE) == version

    # item 2's image changed, item 3 got an image equal to item 4's (copied, not encoded), item 5 lost its image
    img4 = base.to_pylist()[3]["image_bytes"]
    changed = _with_images(base, {2: jpeg((1, 2, 250)), 3: img4, 5: None})
    warehouse.write_table(DS, "items", changed)
    before = _rows(warehouse)
    stats = _encode(warehouse, vit, capsys, "--backfill")
    assert stats["images_encoded"] == 1 and stats["rows_copied"] == 1 and stats["rows_deleted"] == 1
    after = _rows(warehouse)
    assert sorted(after, key=int) == ["1", "2", "3", "4", "7", "8", "9"]
    assert after["2"]["image_sha256"] == sha256_hex(changed.to_pylist()[1]["image_bytes"])
    assert after["2"]["feature"] != before["2"]["feature"] and after["3"]["feature"] == before["4"]["feature"]
    for untouched in ("1", "4", "7", "8", "9"):
        assert after[untouched]["created_at"] == before[untouched]["created_at"]


def test_a_corrupt_image_never_stops_a_run(warehouse, vit, capsys):
    table = _with_images(items_table(5), {2: b"\xff\xd8\xff\xe0 truncated jpeg", 4: b"GIF89a?"})
    warehouse.write_table(DS, "items", table)
    stats = _encode(warehouse, vit, capsys)
    assert stats["undecodable"] == 2 and stats["images_encoded"] == 2  # items 1 and 5 are fine
    rows = _rows(warehouse)
    assert "2" not in rows and "4" not in rows and {"1", "5"} <= set(rows)
    assert read_feature_rows(warehouse, DS, encoder=vit).features.shape[1] == 16


def test_read_before_encoding_names_the_command(warehouse):
    with pytest.raises(FileNotFoundError, match="mmsrarec encode-images --dataset tiny"):
        read_image_features(warehouse, DS)
