"""A tiny dataset for tests and ``--quick`` benches: items with real JPEG posters and dense interactions."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

# user u interacts with the TINY_PER_USER items starting at item 2u (wrapping): every item gets exactly
# TINY_USERS * TINY_PER_USER / TINY_ITEMS = 6 interactions, so k-core 5 keeps everything, and every user has
# TINY_ITEMS - TINY_PER_USER = 24 never-seen items to draw 20 negatives from.
TINY_ITEMS = 36
TINY_USERS = 18
TINY_PER_USER = 12


def _tiny_jpeg(seed: int, size: tuple[int, int]) -> bytes:
    from PIL import Image

    rng = random.Random(seed)
    img = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    for _ in range(20):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        img.putpixel((x, y), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


def write_tiny_dataset(folder: Path) -> tuple[Path, Path]:
    """Write a tiny dataset for tests and ``--quick`` benches; return the items and interactions CSV paths.

    ``items.csv`` has 36 items with real JPEG posters under ``posters/`` except item 3 (missing file), 4 (corrupt
    JPEG) and 5 (a path outside the folder: refused); ``interactions.csv`` has 18 users x 12 items, every item seen
    6 times (k-core 5 keeps all), a third of the events tied on timestamp.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "posters").mkdir(exist_ok=True)
    genres = ["Drama", "Comedy", "Action", "Sci-Fi", "Romance"]
    items = []
    for i in range(1, TINY_ITEMS + 1):
        image = f"posters/{i}.jpg"
        if i == 3:
            image = "posters/missing.jpg"  # image_status missing
        elif i == 4:
            (folder / "posters" / "4.jpg").write_bytes(b"\xff\xd8 not really a jpeg")  # undecodable
        elif i == 5:
            image = "../outside.jpg"  # refused: outside the dataset folder
        else:
            (folder / "posters" / f"{i}.jpg").write_bytes(_tiny_jpeg(i, (40 + i, 60)))
        items.append({
            "item_id": str(i),
            "title": f"Movie {i} ({1990 + i % 20})",
            "description": f"A {genres[i % 5].lower()} film &amp; its   sequel number {i}.",
            "categories": f"{genres[i % 5]}|{genres[(i * 3) % 5]}",
            "image_uri": image,
            "release_year": str(1990 + i % 20),
        })
    with open(folder / "items.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(items[0]))
        writer.writeheader()
        writer.writerows(items)
    rng = random.Random(7)
    rows = []
    for u in range(1, TINY_USERS + 1):
        chosen = [(2 * u + j) % TINY_ITEMS + 1 for j in range(TINY_PER_USER)]
        rng.shuffle(chosen)
        for k, item in enumerate(chosen):
            # every third event ties with the previous one (tie-break on input order)
            timestamp = 1_700_000_000 + u * 1000 + k // 3 * 60
            rows.append({"user_id": f"u{u}", "item_id": str(item), "timestamp": timestamp,
                         "rating": float(1 + (u + k) % 5)})
    with open(folder / "interactions.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder / "items.csv", folder / "interactions.csv"
