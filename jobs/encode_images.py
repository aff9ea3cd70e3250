"""``mmsrarec encode-images``: pretrained image features of every item's image into item_image_features."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field

from jobs._common import add_warehouse_args, warehouse_from_args
from jobs._dataclass_args import add_dataclass_arguments, dataclass_from_args, device_field
from mmsrarec_lib.vision import DEFAULT_ENCODER

COMMAND = "encode-images"
HELP = ("encode every item's image with a pretrained image model (default efficientnet-lite0) into "
        "item_image_features; --backfill encodes only new or changed images")
log = logging.getLogger("mmsrarec.encode_images")


@dataclass(frozen=True)
class EncodeImagesConfig:
    """The job's settings; its flags are generated from these fields (declared once, here: the vision library has
    no config of its own)."""

    encoder: str = field(default=DEFAULT_ENCODER, metadata={"help": (
        "efficientnet-lite0 (packaged) or a Hugging Face vision model id / local path")})
    backfill: bool = field(default=False, metadata={"help": (
        "only images not yet encoded for this encoder version (new or changed images)")})
    batch_size: int = field(default=32, metadata={"help": "images per forward pass"})
    chunk_size: int = field(default=256, metadata={"help": "images per MERGE commit"})
    device: str | None = device_field()
    threads: int | None = field(default=None, metadata={"help": (
        "torch CPU threads (None: $MMSRAREC_TORCH_THREADS, else torch's choice; 1 was 2x faster on a busy shared "
        "CPU)")})

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.chunk_size < 1:
            raise ValueError(f"--batch-size and --chunk-size must be >= 1, got {self.batch_size}, {self.chunk_size}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_warehouse_args(parser)
    add_dataclass_arguments(parser, EncodeImagesConfig)


def main(args: argparse.Namespace) -> int:
    cfg = dataclass_from_args(EncodeImagesConfig, args)
    warehouse = warehouse_from_args(args)
    from mmsrarec_lib.runtime_env import configure_threads
    from mmsrarec_lib.vision import load_image_encoder
    from mmsrarec_lib.vision.table import load_images, plan_images, stored_rows, write_features

    configure_threads(cfg.threads)
    if not warehouse.has_table(args.dataset, "items"):
        raise FileNotFoundError(f"{args.dataset}/items does not exist: run `mmsrarec ingest` first")
    images, all_items = load_images(warehouse, args.dataset)
    encoder = load_image_encoder(cfg.encoder, device=cfg.device)
    stored = stored_rows(warehouse, args.dataset, encoder=encoder.name)
    plan = plan_images(images, stored=stored, encoder_version=encoder.version, backfill=cfg.backfill)
    log.info("%d items, %d with an ok image; %d distinct images to encode, %d rows copied, %d up to date",
             len(all_items), len(images), len(plan.todo), sum(len(plan.rows[s]) for s in plan.reuse),
             plan.up_to_date)
    stats = write_features(warehouse, args.dataset, plan=plan, encoder=encoder, batch_size=cfg.batch_size,
                           chunk_size=cfg.chunk_size)
    print(json.dumps({"dataset": args.dataset, "encoder": encoder.name, "encoder_version": encoder.version,
                      "items": len(all_items), "items_with_image": len(images), **stats}))
    return 0
