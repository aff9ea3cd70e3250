"""Stage 2 on an S3 warehouse (moto server): index save/load round trip, build and refresh through s3:// URIs."""

from __future__ import annotations

import numpy as np
import pytest

from mmsrarec_lib.collab.build import CollabConfig, build_collab
from mmsrarec_lib.collab.content import EmbedderConfig
from mmsrarec_lib.collab.index import IndexConfig, build_index
from mmsrarec_lib.collab.refresh import read_watermark, refresh_collab
from mmsrarec_lib.collab.store import latest_index_version, load_index, save_index
from mmsrarec_lib.collab.table import TABLE
from mmsrarec_lib.collab.windows import UserWindow, WindowConfig
from mmsrarec_lib.storage import Warehouse
from mmsrarec_lib.testing import moto_s3
from tests._collab_helpers import ITEMS, KEYWORDS, ToyEmbedder, interactions_table, ts, write_tiny


@pytest.fixture(scope="module")
def s3():
    with moto_s3() as endpoint:
        yield endpoint


def _s3_warehouse(s3, prefix: str) -> Warehouse:
    return Warehouse.from_uri(f"{s3.warehouse_uri}/{prefix}", storage_options=s3.storage_options)


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_index_round_trip_on_s3(s3, kind):
    wh = _s3_warehouse(s3, f"rt-{kind}")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    windows = [UserWindow(f"u{i}", ("a",), 1000 + i, f"i{i}", 2000 + i) for i in range(300)]
    idx = build_index(windows, x, config=IndexConfig(exact_threshold=10**6 if kind == "flat" else 50, nprobe=4))
    version = save_index(wh, "ds", idx)
    assert wh.uri("ds", "indexes", "collab", version, "index.faiss").startswith("s3://")
    assert latest_index_version(wh, "ds") == version
    back = load_index(wh, "ds", version)
    assert back.kind == kind and back.meta == idx.meta
    assert back.user_ids == idx.user_ids and back.next_item_ids == idx.next_item_ids
    assert back.next_ts_us == idx.next_ts_us and back.as_of_us == idx.as_of_us
    s_a, i_a = idx.search(x[:50], 3)
    s_b, i_b = back.search(x[:50], 3)
    assert np.array_equal(i_a, i_b) and np.allclose(s_a, s_b)
    if kind == "ivf":
        assert back.index.nprobe == 4  # search settings survive the round trip


def test_build_and_refresh_on_s3(s3):
    wh = _s3_warehouse(s3, "pipeline")
    write_tiny(wh)
    cfg = CollabConfig(dataset="tiny", window=WindowConfig(n=2), embedder=EmbedderConfig(content_encoder="hashing"))
    res = build_collab(wh, config=cfg, embedder=ToyEmbedder(ITEMS), embedder_info={"type": "toy"},
                       keywords=KEYWORDS, keyword_source="raw")
    assert wh.read_table("tiny", TABLE).num_rows == 16 and read_watermark(wh, "tiny").index_version == res.index_version
    assert load_index(wh, "tiny").files.keys() == {"content.npz"}  # the item content travels with the index
    wh.write_table("tiny", "interactions", interactions_table([("X1", "n3", ts(9_000))], first_source_row=500),
                   mode="append")
    out = refresh_collab(wh, dataset="tiny", embedder=ToyEmbedder(ITEMS), keywords=KEYWORDS)
    assert out.changed_users == ("X1",) and out.n_indexed == 0  # X1 is a test user: no index entry to update
    assert out.index_version == res.index_version  # no training user changed: the index version stays
    assert wh.table_version("tiny", TABLE) == 1
    latest = {(r["user_id"], r["protocol"]): r for r in wh.read_table("tiny", TABLE).to_pylist()}
    assert latest[("X1", "latest")]["as_of"] == ts(9_000)
