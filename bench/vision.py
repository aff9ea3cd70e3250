"""Bench of the image encoder: images/s on this CPU, and a backfill after 1% of the images change.

    python bench/vision.py --warehouse /tmp/wh --dataset movielens-100k [--items 400] [--encoder efficientnet-lite0]

Copies the dataset's ``items`` (the first ``--items`` with an ok image, default all) into a scratch warehouse, runs
a full ``encode-images`` there (model loading timed separately: a fixed cost per run), changes 1% of the images
(a small rectangle drawn on each, so their sha256 changes), runs the backfill and prints what it recomputed and the
backfill/full time ratio.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time

from mmsrarec_lib.runtime_env import apply_offline_defaults  # noqa: E402

apply_offline_defaults()  # offline hubs, no tokenizer threads: the jobs' defaults (mmsrarec_lib/runtime_env.py)


def _edited(data: bytes) -> bytes:
    from PIL import Image, ImageDraw

    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("RGB")
    ImageDraw.Draw(img).rectangle((2, 2, 12, 12), fill=(255, 0, 255))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _run(wh, ds, encoder, *, backfill: bool, batch_size: int) -> tuple[float, float, dict]:
    """(wall s, this process's CPU s, stats) of one encode-images run (a shared machine: report both)."""
    from mmsrarec_lib.vision.table import load_images, plan_images, stored_rows, write_features

    t0, c0 = time.perf_counter(), time.process_time()
    images, _ = load_images(wh, ds)
    plan = plan_images(images, stored=stored_rows(wh, ds, encoder=encoder.name), encoder_version=encoder.version,
                       backfill=backfill)
    stats = write_features(wh, ds, plan=plan, encoder=encoder, batch_size=batch_size)
    return time.perf_counter() - t0, time.process_time() - c0, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warehouse", default=os.environ.get("MMSRAREC_WAREHOUSE", "warehouse"))
    ap.add_argument("--dataset", default="movielens-100k")
    ap.add_argument("--items", type=int, default=None, help="first N items with an ok image (default: all)")
    ap.add_argument("--encoder", default="efficientnet-lite0")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--frac", type=float, default=0.01, help="share of images changed before the backfill")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.compute as pc
    import torch

    from mmsrarec_lib.runs import sha256_hex
    from mmsrarec_lib.runtime_env import configure_threads
    from mmsrarec_lib.storage import Warehouse
    from mmsrarec_lib.vision import load_image_encoder

    configure_threads(args.threads)
    src = Warehouse.from_uri(args.warehouse)
    items = src.read_table(args.dataset, "items")
    items = items.filter(pc.equal(items.column("image_status"), "ok"))
    if args.items:
        items = items.slice(0, args.items)
    print(f"{items.num_rows} items with an ok image; cpu cores {os.cpu_count()}, torch threads "
          f"{torch.get_num_threads()}")
    t0 = time.perf_counter()
    encoder = load_image_encoder(args.encoder)
    print(f"load {encoder.name} {encoder.version} on {encoder.device}: {time.perf_counter() - t0:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        wh = Warehouse.from_uri(tmp)
        ds = args.dataset
        wh.write_table(ds, "items", items)
        full_s, full_cpu, full = _run(wh, ds, encoder, backfill=False, batch_size=args.batch_size)
        n = full["images_encoded"]
        print(f"full run: {n} images in {full_s:.1f} s wall = {n / full_s:.2f} images/s; {full_cpu:.1f} CPU s = "
              f"{n / full_cpu:.2f} images per CPU second (table writes included)")

        n_change = max(1, round(items.num_rows * args.frac))
        rows = items.to_pylist()
        step = max(1, len(rows) // n_change)
        changed = {r["item_id"] for r in rows[::step][:n_change]}
        for r in rows:
            if r["item_id"] in changed:
                r["image_bytes"] = _edited(r["image_bytes"])
                r["image_sha256"] = sha256_hex(r["image_bytes"])
        wh.write_table(ds, "items", pa.Table.from_pylist(rows, schema=items.schema))
        back_s, back_cpu, back = _run(wh, ds, encoder, backfill=True, batch_size=args.batch_size)
        print(f"backfill after changing {len(changed)} images ({100 * len(changed) / len(rows):.1f}%): "
              f"{back['images_encoded']} images encoded, {back['up_to_date']} rows up to date, {back_s:.2f} s wall, "
              f"{back_cpu:.2f} CPU s")
        print(f"backfill/full: images {back['images_encoded'] / n:.4f}, time {back_s / full_s:.4f} (wall), "
              f"{back_cpu / full_cpu:.4f} (CPU)")
        print(json.dumps({"images": n, "full_s": round(full_s, 2), "full_cpu_s": round(full_cpu, 2),
                          "images_per_s": round(n / full_s, 2), "images_per_cpu_s": round(n / full_cpu, 2),
                          "changed": len(changed), "backfill_encoded": back["images_encoded"],
                          "backfill_s": round(back_s, 2), "backfill_cpu_s": round(back_cpu, 2),
                          "time_ratio": round(back_s / full_s, 4), "cpu_ratio": round(back_cpu / full_cpu, 4)}))


if __name__ == "__main__":
    main()
