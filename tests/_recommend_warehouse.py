"""A tiny synthetic dataset in a temp warehouse for the recommend integration tests (items with JPEGs,
interactions, user_sequences, split_loo, eval_candidates, user_collab_keywords)."""

from __future__ import annotations

import datetime as dt
import io
import random

import pyarrow as pa

from mmsrarec_lib import schemas

GENRES = ["space", "war", "robots", "drama", "comedy", "love", "crime", "horror"]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _jpeg(k: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (24, 36), (k * 37 % 255, k * 91 % 255, 120)).save(buf, "JPEG")
    return buf.getvalue()


def build(warehouse, dataset: str = "toy", *, n_items: int = 24, n_users: int = 20, seed: int = 0) -> dict:
    rng = random.Random(seed)
    items = []
    for k in range(n_items):
        g = [GENRES[k % len(GENRES)], GENRES[(k * 3 + 1) % len(GENRES)]]
        items.append({"item_id": f"i{k}", "title": f"Movie {k}", "description": f"A {g[0]} film about {g[1]}.",
                      "categories": g, "attributes": [], "image_uri": None, "image_bytes": _jpeg(k),
                      "image_sha256": None, "image_width": 24, "image_height": 36, "image_status": "ok",
                      "image_error": None, "text_sha256": None, "source_row": k})
    warehouse.write_table(dataset, "items", pa.Table.from_pylist(items, schema=schemas.ITEMS))
    seqs, inter, loo, cands, collab = {}, [], [], [], []
    for u in range(n_users):
        start = rng.randrange(n_items)
        seq = list(dict.fromkeys(f"i{(start + 2 * j + rng.randrange(2)) % n_items}" for j in range(9)))
        uid = f"u{u}"
        seqs[uid] = seq
        ts = [T0 + dt.timedelta(hours=u * 100 + j) for j in range(len(seq))]
        inter += [{"user_id": uid, "item_id": i, "timestamp": t, "rating": 4.0, "event": "rating", "source_row": 0}
                  for i, t in zip(seq, ts)]
        for split, cut in (("train", len(seq) - 3), ("valid", len(seq) - 2), ("test", len(seq) - 1)):
            loo.append({"user_id": uid, "split": split, "history": seq[:cut], "target_item_id": seq[cut],
                        "target_timestamp": ts[cut]})
        negs = rng.sample([f"i{k}" for k in range(n_items) if f"i{k}" not in seq], 5)
        cands.append({"user_id": uid, "split": "train" if u < 14 else ("valid" if u < 17 else "test"),
                      "history": seq[-6:-1], "target_item_id": seq[-1], "target_timestamp": ts[-1],
                      "negative_item_ids": negs})
    users = sorted(seqs)
    for proto in ("paper", "latest"):
        for uid in users:
            nb = [v for v in users if v != uid][:3]
            collab.append({"user_id": uid, "protocol": proto, "as_of": T0, "neighbors": [
                {"user_id": v, "score": 0.5, "next_item_id": seqs[v][-2], "keywords": []} for v in nb],
                "keyword_source": "raw", "index_version": "idx-1", "created_at": T0})
    warehouse.write_table(dataset, "interactions", pa.Table.from_pylist(inter, schema=schemas.INTERACTIONS))
    warehouse.write_table(dataset, "user_sequences", pa.Table.from_pylist(
        [{"user_id": u, "item_ids": s, "timestamps": [T0] * len(s), "length": len(s)} for u, s in seqs.items()],
        schema=schemas.USER_SEQUENCES))
    warehouse.write_table(dataset, "split_loo", pa.Table.from_pylist(loo, schema=schemas.SPLIT_LOO))
    warehouse.write_table(dataset, "eval_candidates", pa.Table.from_pylist(cands, schema=schemas.EVAL_CANDIDATES))
    collab_schema = pa.schema([*schemas.USER_COLLAB_KEYWORDS]) if "protocol" in schemas.USER_COLLAB_KEYWORDS.names \
        else None
    warehouse.write_table(dataset, "user_collab_keywords", pa.Table.from_pylist(collab, schema=collab_schema))
    return seqs
