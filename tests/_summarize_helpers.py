"""Tiny literal items tables for the summarizer tests."""

from __future__ import annotations

import io

import pyarrow as pa
from PIL import Image

from mmsrarec_lib import schemas
from mmsrarec_lib.runs import sha256_hex

PLOTS = [
    ("Toy Story", "A cowboy doll is profoundly threatened when a new spaceman figure supplants him as top toy.",
     ["Animation", "Comedy"]),
    ("GoldenEye", "James Bond teams up with a Russian agent to stop a satellite weapon from destroying London.",
     ["Action", "Thriller"]),
    ("Four Rooms", "Four interlocking tales take place in a faded hotel on New Year's Eve.", ["Comedy"]),
    ("Get Shorty", "A mobster travels to Hollywood to collect a debt and discovers the movie business.",
     ["Comedy", "Crime"]),
    ("Copycat", "An agoraphobic psychologist and a detective hunt a serial killer who copies famous murders.",
     ["Crime", "Thriller"]),
    ("Babe", "A pig raised by sheepdogs learns to herd sheep with a little help from his friends.",
     ["Children", "Drama"]),
    ("Dead Man Walking", "A nun comforts a convicted killer on death row while empathizing with the victims' families.",
     ["Drama"]),
    ("Heat", "A group of professional bank robbers start to feel the heat from police in Los Angeles.",
     ["Action", "Crime"]),
]


def jpeg(color: tuple[int, int, int], size=(40, 60)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG")
    return buf.getvalue()


def items_table(n: int, *, images: bool = True, changed: set[int] = frozenset()) -> pa.Table:
    """``n`` items cycling through PLOTS; every third has no image; ``changed`` ids get an edited description."""
    rows = []
    for i in range(1, n + 1):
        title, desc, cats = PLOTS[(i - 1) % len(PLOTS)]
        if i > len(PLOTS):
            title = f"{title} {i}"
        if i in changed:
            desc = desc + " Now remastered."
        img = jpeg(((37 * i) % 256, (91 * i) % 256, (53 * i) % 256)) if images and i % 3 else None
        rows.append({
            "item_id": str(i), "title": title, "description": desc, "categories": cats, "attributes": None,
            "image_uri": None, "image_bytes": img, "image_sha256": sha256_hex(img) if img else None,
            "image_width": 40 if img else None, "image_height": 60 if img else None,
            "image_status": "ok" if img else "none", "image_error": None,
            "text_sha256": sha256_hex(title + desc), "source_row": i,
        })
    return pa.Table.from_pylist(rows, schema=schemas.ITEMS)
