"""The summarize job end to end on a tiny items table: keywords, reward terms, idempotent MERGE, versions, lookup."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.cli import main as cli
from mmsrarec_lib.summarize import latest_summarizer_version, load_item_keywords
from mmsrarec_lib.summarize.candidates import N_FEATURES, extract_candidates
from mmsrarec_lib.summarize.encoders import HashingEncoder
from mmsrarec_lib.summarize.table import TABLE
from mmsrarec_lib.summarize.types import items_from_table
from tests._summarize_helpers import items_table

DS = "tiny"


def _run(warehouse, *extra):
    return cli(["--log-level", "WARNING", "summarize", "--dataset", DS, "--warehouse", warehouse.root,
                "--encoder", "hashing", "--no-progress", *extra])


def _rows(warehouse, version=None):
    t = warehouse.read_table(DS, TABLE).to_pylist()
    return sorted((r for r in t if version is None or r["summarizer_version"] == version),
                  key=lambda r: (int(r["item_id"]), r["modality"]))


def test_candidates_have_features_and_come_from_the_text():
    items = items_from_table(items_table(3))
    cands = extract_candidates(items, encoder=HashingEncoder())
    toy = cands[0]
    assert toy.features.shape == (len(toy.phrases), N_FEATURES)
    assert "animation" in toy.phrases and "comedy" in toy.phrases  # categories are always candidates
    text = items[0].text.lower()
    assert all(p in text for p in toy.phrases)  # extractive: every candidate occurs in the item's text
    sims = toy.features[:, 0]
    assert np.all(np.diff(sims) <= 1e-6)  # ordered by KeyBERT similarity, best first


def test_summarize_writes_text_keywords_and_merge_is_idempotent(warehouse):
    warehouse.write_table(DS, "items", items_table(8))
    assert _run(warehouse, "--summarizer-version", "v1", "--chunk-size", "3") == 0
    rows = _rows(warehouse)
    assert [r["item_id"] for r in rows] == [str(i) for i in range(1, 9)]
    assert {r["modality"] for r in rows} == {"text"}
    for r in rows:
        assert 1 <= len(r["keywords"]) <= 10
        assert r["r_len"] == pytest.approx(-len(r["keywords"]) / 10)
        assert -1.0 <= r["r_recon"] <= 0.0 and -1.0 <= r["r_info"] <= 1.0
        assert r["reward"] == pytest.approx(r["r_info"] + r["r_recon"] + 0.5 * r["r_len"])
    version_before = warehouse.table_version(DS, TABLE)
    assert version_before == 2  # 8 items in chunks of 3: 3 commits (versions 0, 1, 2)
    # a second full run updates the same keys: no duplicate rows, same keywords
    assert _run(warehouse, "--summarizer-version", "v1") == 0
    again = _rows(warehouse)
    assert len(again) == 8
    assert [r["keywords"] for r in again] == [r["keywords"] for r in rows]
    assert warehouse.table_version(DS, TABLE) == version_before + 1  # one MERGE commit


def test_versions_side_by_side_and_lookup(warehouse):
    warehouse.write_table(DS, "items", items_table(4))
    assert _run(warehouse, "--summarizer-version", "v1") == 0
    assert _run(warehouse, "--summarizer-version", "v2", "--limit", "2") == 0
    assert len(_rows(warehouse, "v1")) == 4 and len(_rows(warehouse, "v2")) == 2
    assert latest_summarizer_version(warehouse, DS) == "v2"
    kw = load_item_keywords(warehouse, DS, version="v1")
    assert set(kw) == {"1", "2", "3", "4"}
    assert kw["1"]["text"] == _rows(warehouse, "v1")[0]["keywords"] and kw["1"]["image"] == []
    raw = load_item_keywords(warehouse, DS, version="raw")
    assert raw["1"]["text"][:3] == ["toy", "story", "cowboy"]  # title then description words, stop words dropped
    with pytest.raises(ValueError, match="present: \\['v1', 'v2'\\]"):
        load_item_keywords(warehouse, DS, version="v9")


def test_backfill_redoes_only_changed_or_missing_items(warehouse, capsys):
    warehouse.write_table(DS, "items", items_table(8))
    assert _run(warehouse, "--summarizer-version", "v1", "--limit", "6") == 0
    before = {r["item_id"]: r for r in _rows(warehouse)}
    capsys.readouterr()
    warehouse.write_table(DS, "items", items_table(8, changed={2}))  # item 2's text changed; 7, 8 never done
    assert _run(warehouse, "--summarizer-version", "v1", "--backfill") == 0
    import json

    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["items"] == 3 and stats["rows_written"] == 3 and stats["skipped"] == 5
    after = {r["item_id"]: r for r in _rows(warehouse)}
    assert set(after) == {str(i) for i in range(1, 9)}
    assert after["2"]["input_sha256"] != before["2"]["input_sha256"]
    assert after["1"]["created_at"] == before["1"]["created_at"]  # untouched rows were not rewritten
    # nothing left: a second backfill writes nothing
    assert _run(warehouse, "--summarizer-version", "v1", "--backfill") == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows_written"] == 0


def test_bad_version_and_missing_items_are_clear_errors(warehouse, capsys):
    assert _run(warehouse, "--summarizer-version", "a/b") == 2
    assert "summarizer-version" in capsys.readouterr().err
    assert _run(warehouse, "--summarizer-version", "v1") == 2  # no items table yet
    assert "items" in capsys.readouterr().err


def test_image_keywords_from_the_tiny_mllm_only_for_items_with_images(warehouse):
    warehouse.write_table(DS, "items", items_table(4))  # items 3 has no image (every third)
    assert _run(warehouse, "--summarizer-version", "v1", "--image-model", "tiny", "--batch-size", "2") == 0
    rows = _rows(warehouse)
    pairs = {(r["item_id"], r["modality"]) for r in rows}
    assert pairs == {("1", "text"), ("2", "text"), ("3", "text"), ("4", "text"), ("1", "image"), ("2", "image"),
                     ("4", "image")}
    from mmsrarec_lib.runs import sha256_hex

    img1 = items_table(4).to_pylist()[0]["image_bytes"]
    assert next(r for r in rows if r["item_id"] == "1" and r["modality"] == "image")["input_sha256"] == sha256_hex(img1)
    assert warehouse.exists(warehouse.uri(DS, "models", "tiny-mllm", "config.json"))  # built once, reused
    # the mllm backend covers both modalities with the same (cached) tiny model
    assert _run(warehouse, "--summarizer-version", "m1", "--backend", "mllm", "--limit", "1") == 0
    m_rows = _rows(warehouse, "m1")
    assert {(r["item_id"], r["modality"]) for r in m_rows} == {("1", "text"), ("1", "image")}
    for r in m_rows:  # random weights: keywords may be noise or empty, but the terms stay in range
        assert len(r["keywords"]) <= 10 and -1.0 <= r["r_recon"] <= 0.0


def test_item_filter_summarizes_only_the_named_items(warehouse, tmp_path, capsys):
    warehouse.write_table(DS, "items", items_table(5))
    assert _run(warehouse, "--summarizer-version", "v1", "--item-ids", "2,4") == 0
    assert sorted(r["item_id"] for r in _rows(warehouse, "v1")) == ["2", "4"]
    ids = tmp_path / "ids.txt"
    ids.write_text("5\n\n1\n")
    assert _run(warehouse, "--summarizer-version", "v1", "--item-ids", f"@{ids}", "--backfill") == 0
    assert sorted(r["item_id"] for r in _rows(warehouse, "v1")) == ["1", "2", "4", "5"]
    capsys.readouterr()
    assert _run(warehouse, "--summarizer-version", "v1", "--item-ids", "2,99") == 2
    err = capsys.readouterr().err
    assert "1 unknown item" in err and "99" in err
