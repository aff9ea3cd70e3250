"""``mmsrarec train-summarizer``: GRPO-tune the summarizer (extractive selection policy, or LoRA on an MLLM)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Literal

from jobs._common import KEYWORD_ENCODER, add_warehouse_args, warehouse_from_args
from jobs._dataclass_args import add_dataclass_arguments, dataclass_from_args, device_field
from mmsrarec_lib.vision import DEFAULT_ENCODER

COMMAND = "train-summarizer"
HELP = "GRPO-tune the keyword summarizer; logs reward terms per step and writes a PNG of the curves"


@dataclass(frozen=True)
class TrainSummarizerConfig:
    """The job's settings (flags generated from these fields; the reward weights from ``RewardConfig``). The GRPO
    configs are built from them in ``main``: their module imports torch, which the CLI parser must not load."""

    backend: Literal["extractive", "mllm"] = field(default="extractive", metadata={"help": "keyword summarizer"})
    model: str | None = field(default=None, metadata={"help": "mllm: base model (hub id, path or 'tiny', the default)"})
    modality: Literal["text", "image"] = field(default="image", metadata={"help": "mllm: which prompts to tune"})
    encoder: str = field(default=KEYWORD_ENCODER, metadata={"help": "phi for R_info: minilm, hashing, or a path"})
    steps: int = field(default=40, metadata={"help": "GRPO steps"})
    group_size: int = field(default=8, metadata={"help": "samples per item (GRPO group)"})
    batch: int = field(default=32, metadata={"help": "items per step"})
    lr: float | None = field(default=None, metadata={"help": (
        "None: the backend's GRPO default (GrpoConfig / MllmGrpoConfig)")})
    limit: int | None = field(default=None, metadata={"help": "only the first N items"})
    seed: int = 0
    device: str | None = device_field()
    image_encoder: str = field(default=DEFAULT_ENCODER, metadata={"help": (
        "extractive: image model whose features give the image keywords (also tuned here); a HF vision model "
        "id/path, or 'none' for text only")})

    def __post_init__(self) -> None:
        if self.steps < 1 or self.group_size < 2 or self.batch < 1:
            raise ValueError("--steps and --batch must be >= 1 and --group-size >= 2 (GRPO compares within a group)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mmsrarec_lib.summarize.rewards import RewardConfig

    add_warehouse_args(parser)
    add_dataclass_arguments(parser, TrainSummarizerConfig)
    add_dataclass_arguments(parser.add_argument_group("rewards (RewardConfig)"), RewardConfig, skip=("pooling",))


def main(args: argparse.Namespace) -> int:
    cfg = dataclass_from_args(TrainSummarizerConfig, args)
    warehouse = warehouse_from_args(args)
    from mmsrarec_lib.runs import new_run_id
    from mmsrarec_lib.summarize.encoders import make_encoder
    from mmsrarec_lib.summarize.grpo import GrpoConfig, MllmGrpoConfig
    from mmsrarec_lib.summarize.rewards import RewardConfig
    from mmsrarec_lib.summarize.service import load_items, resolve_model
    from mmsrarec_lib.summarize.training import train_extractive, train_mllm

    items = load_items(warehouse, args.dataset, limit=cfg.limit)
    reward = dataclass_from_args(RewardConfig, args)
    encoder = make_encoder(cfg.encoder)
    run_id = new_run_id(f"summarizer-{cfg.backend}")
    lr = {} if cfg.lr is None else {"lr": cfg.lr}  # None: the backend's GRPO config default
    if cfg.backend == "extractive":
        grpo = GrpoConfig(steps=cfg.steps, batch_items=cfg.batch, group_size=cfg.group_size, seed=cfg.seed, **lr)
        image_context = None
        if cfg.image_encoder != "none":
            from mmsrarec_lib.summarize.image_context import build_image_context

            catalogue = load_items(warehouse, args.dataset)
            image_context = build_image_context(warehouse, args.dataset, catalogue=catalogue, encoder=encoder,
                                                reward_config=reward, image_encoder=cfg.image_encoder,
                                                device=cfg.device)
        result = train_extractive(warehouse, args.dataset, items=items, run_id=run_id, encoder=encoder,
                                  reward_config=reward, grpo=grpo, image_context=image_context)
    else:
        model_path = resolve_model(warehouse, args.dataset, model=cfg.model, policy_run=None, items=items)
        grpo = MllmGrpoConfig(steps=cfg.steps, batch_prompts=cfg.batch, group_size=cfg.group_size, seed=cfg.seed,
                              **lr)
        result = train_mllm(warehouse, args.dataset, items=items, run_id=run_id, model_path=model_path,
                            encoder=encoder, reward_config=reward, grpo=grpo, modality=cfg.modality,
                            device=cfg.device)
    print(f"reward curve: {result.curve_png}")
    summary = {"run_id": result.run_id, "run_uri": result.run_uri, "before": result.before, "after": result.after}
    if result.image is not None:
        summary["image"] = result.image
    print(json.dumps(summary))
    return 0
