"""Reading input files (CSV, TSV, JSONL, Parquet) and the built-in movielens-100k source, without Spark."""

from __future__ import annotations

import hashlib
import json
import zipfile

import pyarrow as pa
import pytest

from mmsrarec_lib.ingest import movielens
from mmsrarec_lib.ingest.sources import read_source
from tests._ingest_helpers import write_rows

ROWS = [
    {"item_id": "a", "title": "Alpha", "categories": ["x", "y"], "year": 1999},
    {"item_id": "b", "title": None, "categories": ["z"], "year": 2001},
]


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_every_format_gives_string_columns_categories_list_and_source_row(tmp_path, ext):
    src = read_source(write_rows(tmp_path / f"items{ext}", ROWS))
    t = src.table
    assert t.column("item_id").to_pylist() == ["a", "b"]
    assert t.column("title").to_pylist() == ["Alpha", None]
    assert t.column("categories").to_pylist() == [["x", "y"], ["z"]]
    assert t.schema.field("year").type == pa.string() and t.column("year").to_pylist() == ["1999", "2001"]
    assert t.column("source_row").to_pylist() == [1, 2]
    assert src.base_dir == str(tmp_path.resolve()) and src.malformed == ()


def test_malformed_rows_are_returned_with_their_row_number(tmp_path):
    csv_path = tmp_path / "items.csv"
    csv_path.write_text("item_id,title\na,Alpha\nb,Beta,extra\nc,Gamma\n", encoding="utf-8")
    src = read_source(csv_path)
    assert src.table.column("item_id").to_pylist() == ["a", "c"]
    assert src.table.column("source_row").to_pylist() == [1, 3]
    assert [(m.source_row, m.raw) for m in src.malformed] == [(2, "b,Beta,extra")]
    assert src.rows_in == 3
    jl = tmp_path / "items.jsonl"
    jl.write_text('{"item_id": "a"}\n{not json\n\n[1, 2]\n{"item_id": "d"}\n', encoding="utf-8")
    src = read_source(jl)
    assert src.table.column("source_row").to_pylist() == [1, 4]
    assert [(m.source_row, m.error.split(":")[0]) for m in src.malformed] == [(2, "invalid JSON"),
                                                                               (3, "not a JSON object")]


def test_jsonl_nested_values_become_json_text_and_categories_string_is_split(tmp_path):
    path = write_rows(tmp_path / "i.jsonl", [{"item_id": 7, "categories": "p|q", "meta": {"k": [1, 2]}}])
    t = read_source(path).table
    assert t.column("item_id").to_pylist() == ["7"]
    assert t.column("categories").to_pylist() == [["p", "q"]]
    assert json.loads(t.column("meta")[0].as_py()) == {"k": [1, 2]}


def test_bad_files_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="input file not found"):
        read_source(tmp_path / "nope.csv")
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(ValueError, match="unsupported input format '.xml'"):
        read_source(tmp_path / "x.xml")
    (tmp_path / "dup.csv").write_text("item_id,item_id\n1,2\n")
    with pytest.raises(ValueError, match="duplicate column names"):
        read_source(tmp_path / "dup.csv")


ITEM_FILE = ("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
             "1\tToy Story\t1995\tAnimation Children's Comedy\n2\tHeat\t1995\tAction Crime\n")
INTER_FILE = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n7\t1\t4\t881250949\n7\t2\t5\t881250949\n"


def test_movielens_folder_maps_plot_genres_poster_and_details(tmp_path):
    d = tmp_path / "ml"
    (d / "posters").mkdir(parents=True)
    (d / "ml-100k.item").write_text(ITEM_FILE)
    (d / "ml-100k.inter").write_text(INTER_FILE)
    (d / "posters" / "1.jpg").write_bytes(b"x")  # only item 1 has a poster
    (d / movielens.DETAILS_FILE).write_text(json.dumps(
        [{"movie_id": 1, "description": "Toys come alive.", "director": ["John Lasseter"],
          "cast": ["Tom Hanks", "Tim Allen"], "rating": 8.3, "age_rating": None},
         {"movie_id": 2, "description": "It looks like we don't have any Plot Summaries for this title yet."}]))
    items, inter = movielens.load_movielens(data_dir=d)
    rows = items.table.to_pylist()
    assert [r["item_id"] for r in rows] == ["1", "2"]
    assert rows[0]["description"] == "Toys come alive." and rows[1]["description"] is None
    assert rows[0]["categories"] == ["Animation", "Children's", "Comedy"]
    assert rows[0]["image_uri"] == "posters/1.jpg" and rows[1]["image_uri"] is None
    assert rows[0]["director"] == "John Lasseter" and rows[0]["cast"] == "Tom Hanks|Tim Allen"
    assert rows[0]["imdb_rating"] == "8.3" and rows[0]["age_rating"] is None and rows[0]["release_year"] == "1995"
    assert items.base_dir == str(d.resolve())
    assert inter.table.to_pylist() == [
        {"user_id": "7", "item_id": "1", "timestamp": "881250949", "rating": "4", "source_row": 1},
        {"user_id": "7", "item_id": "2", "timestamp": "881250949", "rating": "5", "source_row": 2},
    ]


def test_movielens_falls_back_to_the_cached_recbole_wheel(tmp_path, monkeypatch, caplog):
    cache = tmp_path / "cache"
    cache.mkdir()
    with zipfile.ZipFile(cache / "recbole-1.2.1-py3-none-any.whl", "w") as zf:
        zf.writestr(movielens.WHEEL_PREFIX + "ml-100k.item", ITEM_FILE)
        zf.writestr(movielens.WHEEL_PREFIX + "ml-100k.inter", INTER_FILE)
    # the cached wheel is verified by its sha256: this stand-in must pass as the real one (no download)
    fake = hashlib.sha256((cache / "recbole-1.2.1-py3-none-any.whl").read_bytes()).hexdigest()
    monkeypatch.setattr(movielens, "RECBOLE_SHA256", fake)
    monkeypatch.setenv(movielens.ENV_DATA_DIR, str(tmp_path / "absent"))
    caplog.set_level("WARNING")
    items, inter = movielens.load_movielens(cache_dir=cache)
    assert items.table.column("title").to_pylist() == ["Toy Story", "Heat"]
    assert items.table.column("image_uri").to_pylist() == [None, None]  # text only
    assert inter.table.num_rows == 2
    assert "reading ratings and titles from" in caplog.text


def test_movielens_explicit_missing_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="lacks ml-100k.inter"):
        movielens.load_movielens(data_dir=tmp_path / "nope")


def test_movielens_malformed_lines_are_returned_for_quarantine_with_their_row(tmp_path):
    d = tmp_path / "ml"
    d.mkdir()
    (d / "ml-100k.item").write_text(ITEM_FILE + "3\tbroken line\n\n4\tCasino\t1995\tDrama\n")
    (d / "ml-100k.inter").write_text(INTER_FILE + "7\t3\t4\n8\t2\t3\t881250950\n")
    items, inter = movielens.load_movielens(data_dir=d)
    assert items.table.column("item_id").to_pylist() == ["1", "2", "4"]
    assert items.table.column("source_row").to_pylist() == [1, 2, 4]  # the blank line is not a row
    [bad_item] = items.malformed
    assert (bad_item.source_row, bad_item.raw) == (3, "3\tbroken line")
    assert bad_item.error == "2 tab-separated fields, the header has 4"
    assert inter.table.column("source_row").to_pylist() == [1, 2, 4] and inter.rows_in == 4
    assert [(m.source_row, m.raw) for m in inter.malformed] == [(3, "7\t3\t4")]
