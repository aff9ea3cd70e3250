"""``mmsrarec encode-images``: pretrained image features of every item's image into item_image_features."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass

from jobs._common import add_warehouse_args, warehouse_from_args

COMMAND = "encode-images"
HELP = ("encode every item's image with a pretrained image model (default efficientnet-lite0) into "
        "item_image_features; --backfill encodes only new or changed images")
log = logging.getLogger("mmsrarec.encode_images")


@dataclass(frozen=True)
class EncodeImagesConfig:
    dataset: str
    encoder: str
    backfill: bool
    batch_size: int
    chunk_size: int
    device: str | None
    threads: int | None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EncodeImagesConfig:
        if args.batch_size < 1 or args.chunk_size < 1:
            raise ValueError(f"--batch-size and --chunk-size must be >= 1, got {args.batch_size}, {args.chunk_size}")
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        return cls(args.dataset, args.encoder, args.backfill, args.batch_size, args.chunk_size, args.device,
                   args.threads)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_warehouse_args(parser)
    parser.add_argument("--encoder", default="efficientnet-lite0",
                        help="efficientnet-lite0 (packaged, default) or a Hugging Face vision model id / local path")
    parser.add_argument("--backfill", action="store_true",
                        help="only images not yet encoded for this encoder version (new or changed images)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    parser.add_argument("--chunk-size", type=int, default=256, help="images per MERGE commit (default 256)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:0 (default: cuda when present)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 was 2x faster on a busy shared CPU)")


def main(args: argparse.Namespace) -> int:
    cfg = EncodeImagesConfig.from_args(args)
    warehouse = warehouse_from_args(args)
    from mmsrarec_lib.vision import load_image_encoder
    from mmsrarec_lib.vision.table import load_images, plan_images, stored_rows, write_features

    from mmsrarec_lib.runtime_env import configure_threads

    configure_threads(cfg.threads)
    if not warehouse.has_table(cfg.dataset, "items"):
        raise FileNotFoundError(f"{cfg.dataset}/items does not exist: run `mmsrarec ingest` first")
    images, all_items = load_images(warehouse, cfg.dataset)
    encoder = load_image_encoder(cfg.encoder, device=cfg.device)
    stored = stored_rows(warehouse, cfg.dataset, encoder=encoder.name)
    plan = plan_images(images, stored=stored, encoder_version=encoder.version, backfill=cfg.backfill)
    log.info("%d items, %d with an ok image; %d distinct images to encode, %d rows copied, %d up to date",
             len(all_items), len(images), len(plan.todo), sum(len(plan.rows[s]) for s in plan.reuse),
             plan.up_to_date)
    stats = write_features(warehouse, cfg.dataset, plan=plan, encoder=encoder, batch_size=cfg.batch_size,
                           chunk_size=cfg.chunk_size)
    print(json.dumps({"dataset": cfg.dataset, "encoder": encoder.name, "encoder_version": encoder.version,
                      "items": len(all_items), "items_with_image": len(images), **stats}))
    return 0
