"""``mmsrarec summarize``: write keywords of every item (or, with --backfill, only stale ones) to item_keywords."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from jobs._common import add_warehouse_args, warehouse_from_args

COMMAND = "summarize"
HELP = "summarize items into text/image keywords and MERGE them into item_keywords (resumable with --backfill)"
log = logging.getLogger("mmsrarec.summarize")


@dataclass(frozen=True)
class SummarizeConfig:
    dataset: str
    version: str
    backend: str
    model: str | None
    image_model: str | None
    image_encoder: str | None
    policy_run: str | None
    encoder: str
    backfill: bool
    chunk_size: int
    batch_size: int
    limit: int | None
    item_ids: tuple[str, ...] | None
    device: str | None
    progress: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SummarizeConfig:
        if not args.summarizer_version or "/" in args.summarizer_version:
            raise ValueError(f"--summarizer-version must be a non-empty name without '/', got {args.summarizer_version!r}")
        return cls(args.dataset, args.summarizer_version, args.backend, args.model, args.image_model,
                   None if args.image_encoder == "none" else args.image_encoder, args.policy_run, args.encoder,
                   args.backfill, args.chunk_size, args.batch_size, args.limit,
                   _item_ids(args.item_ids), args.device, not args.no_progress)


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
    parser.add_argument("--summarizer-version", required=True, help="version name V stored with every row")
    parser.add_argument("--backend", choices=("extractive", "mllm"), default="extractive")
    parser.add_argument("--model", default=None,
                        help="mllm backend: HF hub id or local path, or 'tiny' (default: the dataset's tiny LLaVA)")
    parser.add_argument("--image-model", default=None,
                        help="extractive backend: image keywords from this MLLM ('tiny', hub id, path) instead of "
                             "the pretrained image encoder")
    parser.add_argument("--image-encoder", default="efficientnet-lite0",
                        help="extractive backend: image keywords from this image model's features (backfills "
                             "item_image_features first); a HF vision model id/path, or 'none' for text only")
    parser.add_argument("--policy-run", default=None,
                        help="run id of train-summarizer (extractive policy, or tuned MLLM for --backend mllm)")
    parser.add_argument("--encoder", default="minilm", help="phi for R_info: minilm (default), hashing, or a path")
    parser.add_argument("--backfill", action="store_true",
                        help="only items lacking keywords for this version or whose input changed")
    parser.add_argument("--chunk-size", type=int, default=128, help="items per MERGE commit (default 128)")
    parser.add_argument("--batch-size", type=int, default=16, help="MLLM generation batch (default 16)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N items (by item_id)")
    parser.add_argument("--item-ids", default=None,
                        help="only these items: a comma list, or @FILE with one item_id per line")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:0 (default: cuda when present)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    cfg = SummarizeConfig.from_args(args)
    warehouse = warehouse_from_args(args)
    from mmsrarec_lib.summarize.service import build_summarizer, load_items
    from mmsrarec_lib.summarize.table import existing_hashes, plan_work, write_chunks

    catalogue = load_items(warehouse, cfg.dataset)
    items = catalogue
    if cfg.item_ids is not None:
        known = {i.item_id for i in catalogue}
        unknown = [i for i in cfg.item_ids if i not in known]
        if unknown:
            raise ValueError(f"--item-ids: {len(unknown)} unknown item(s), e.g. {unknown[:5]}")
        wanted = set(cfg.item_ids)
        items = [i for i in catalogue if i.item_id in wanted]
    items = items[: cfg.limit] if cfg.limit else items
    summarizer = build_summarizer(
        warehouse, cfg.dataset, backend=cfg.backend, items=items, catalogue=catalogue, model=cfg.model,
        image_model=cfg.image_model, image_encoder=cfg.image_encoder, policy_run=cfg.policy_run,
        encoder_name=cfg.encoder,
        batch_size=cfg.batch_size, device=cfg.device,
    )
    done = existing_hashes(warehouse, cfg.dataset, version=cfg.version) if cfg.backfill else {}
    plan = plan_work(items, modalities=summarizer.modalities, done=done, backfill=cfg.backfill)
    log.info("%d items to summarize (%d pairs up to date)", len(plan.items), plan.skipped)
    stats = write_chunks(warehouse, cfg.dataset, plan=plan, summarize=summarizer.summarize, version=cfg.version,
                         chunk_size=cfg.chunk_size, progress=cfg.progress)
    print(json.dumps({"dataset": cfg.dataset, "summarizer_version": cfg.version, "backend": cfg.backend, **stats}))
    return 0
