"""``mmsrarec summarize``: write keywords of every item (or, with --backfill, only stale ones) to item_keywords."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from jobs._common import KEYWORD_ENCODER, add_warehouse_args, warehouse_from_args
from jobs._dataclass_args import add_dataclass_arguments, dataclass_from_args, device_field
from mmsrarec_lib.vision import DEFAULT_ENCODER

COMMAND = "summarize"
HELP = "summarize items into text/image keywords and MERGE them into item_keywords (resumable with --backfill)"
log = logging.getLogger("mmsrarec.summarize")


@dataclass(frozen=True)
class SummarizeConfig:
    """The job's settings; its flags are generated from these fields (declared once, here: the summarizer library
    takes them as arguments). ``version`` keeps its flag name ``--summarizer-version``."""

    version: str = field(metadata={"help": "version name V stored with every row"})
    backend: Literal["extractive", "mllm"] = field(default="extractive", metadata={"help": "keyword summarizer"})
    model: str | None = field(default=None, metadata={"help": (
        "mllm backend: HF hub id or local path, or 'tiny' (None: the dataset's tiny LLaVA)")})
    image_model: str | None = field(default=None, metadata={"help": (
        "extractive backend: image keywords from this MLLM ('tiny', hub id, path) instead of the pretrained image "
        "encoder")})
    image_encoder: str = field(default=DEFAULT_ENCODER, metadata={"help": (
        "extractive backend: image keywords from this image model's features (backfills item_image_features "
        "first); a HF vision model id/path, or 'none' for text only")})
    policy_run: str | None = field(default=None, metadata={"help": (
        "run id of train-summarizer (extractive policy, or tuned MLLM for --backend mllm)")})
    encoder: str = field(default=KEYWORD_ENCODER, metadata={"help": "phi for R_info: minilm, hashing, or a path"})
    backfill: bool = field(default=False, metadata={"help": (
        "only items lacking keywords for this version or whose input changed")})
    chunk_size: int = field(default=128, metadata={"help": "items per MERGE commit"})
    batch_size: int = field(default=16, metadata={"help": "MLLM generation batch"})
    limit: int | None = field(default=None, metadata={"help": "only the first N items (by item_id)"})
    item_ids: str | None = field(default=None, metadata={"help": (
        "only these items: a comma list, or @FILE with one item_id per line")})
    device: str | None = device_field()
    progress: bool = field(default=True, metadata={"help": "progress bar"})

    def __post_init__(self) -> None:
        if not self.version or "/" in self.version:
            raise ValueError(f"--summarizer-version must be a non-empty name without '/', got {self.version!r}")


def _item_ids(spec: str | None) -> tuple[str, ...] | None:
    """``a,b,c`` or ``@file`` (one id per line) -> ids; None when not given."""
    if not spec:
        return None
    text = Path(spec[1:]).read_text(encoding="utf-8") if spec.startswith("@") else spec.replace(",", "\n")
    ids = tuple(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
    if not ids:
        raise ValueError(f"--item-ids {spec!r} names no item")
    return ids


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_warehouse_args(parser)
    add_dataclass_arguments(parser, SummarizeConfig, names={"version": "summarizer-version"})


def main(args: argparse.Namespace) -> int:
    cfg = dataclass_from_args(SummarizeConfig, args)
    item_ids = _item_ids(cfg.item_ids)
    warehouse = warehouse_from_args(args)
    from mmsrarec_lib.summarize.service import build_summarizer, load_items
    from mmsrarec_lib.summarize.table import existing_hashes, plan_work, write_chunks

    catalogue = load_items(warehouse, args.dataset)
    items = catalogue
    if item_ids is not None:
        known = {i.item_id for i in catalogue}
        unknown = [i for i in item_ids if i not in known]
        if unknown:
            raise ValueError(f"--item-ids: {len(unknown)} unknown item(s), e.g. {unknown[:5]}")
        wanted = set(item_ids)
        items = [i for i in catalogue if i.item_id in wanted]
    items = items[: cfg.limit] if cfg.limit else items
    summarizer = build_summarizer(
        warehouse, args.dataset, backend=cfg.backend, items=items, catalogue=catalogue, model=cfg.model,
        image_model=cfg.image_model, image_encoder=None if cfg.image_encoder == "none" else cfg.image_encoder,
        policy_run=cfg.policy_run,
        encoder_name=cfg.encoder,
        batch_size=cfg.batch_size, device=cfg.device,
    )
    done = existing_hashes(warehouse, args.dataset, version=cfg.version) if cfg.backfill else {}
    plan = plan_work(items, modalities=summarizer.modalities, done=done, backfill=cfg.backfill)
    log.info("%d items to summarize (%d pairs up to date)", len(plan.items), plan.skipped)
    stats = write_chunks(warehouse, args.dataset, plan=plan, summarize=summarizer.summarize, version=cfg.version,
                         chunk_size=cfg.chunk_size, progress=cfg.progress)
    print(json.dumps({"dataset": args.dataset, "summarizer_version": cfg.version, "backend": cfg.backend, **stats}))
    return 0
