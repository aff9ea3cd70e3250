"""``mmsrarec train-summarizer``: GRPO-tune the summarizer (extractive selection policy, or LoRA on an MLLM)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from jobs._common import add_warehouse_args, warehouse_from_args

COMMAND = "train-summarizer"
HELP = "GRPO-tune the keyword summarizer; logs reward terms per step and writes a PNG of the curves"


@dataclass(frozen=True)
class TrainSummarizerConfig:
    dataset: str
    backend: str
    model: str | None
    modality: str
    encoder: str
    steps: int
    group_size: int
    batch: int
    lr: float | None
    limit: int | None
    seed: int
    a_info: float
    b_recon: float
    c_len: float
    n_max: int
    device: str | None
    image_encoder: str | None

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> TrainSummarizerConfig:
        if a.steps < 1 or a.group_size < 2 or a.batch < 1:
            raise ValueError("--steps and --batch must be >= 1 and --group-size >= 2 (GRPO compares within a group)")
        return cls(a.dataset, a.backend, a.model, a.modality, a.encoder, a.steps, a.group_size, a.batch, a.lr,
                   a.limit, a.seed, a.a_info, a.b_recon, a.c_len, a.n_max, a.device,
                   None if a.image_encoder == "none" else a.image_encoder)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_warehouse_args(parser)
    parser.add_argument("--backend", choices=("extractive", "mllm"), default="extractive")
    parser.add_argument("--model", default=None, help="mllm: base model (hub id, path or 'tiny', the default)")
    parser.add_argument("--modality", choices=("text", "image"), default="image", help="mllm: which prompts to tune")
    parser.add_argument("--encoder", default="minilm", help="phi for R_info: minilm (default), hashing, or a path")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--group-size", type=int, default=8, help="samples per item (GRPO group)")
    parser.add_argument("--batch", type=int, default=32, help="items per step")
    parser.add_argument("--lr", type=float, default=None, help="default 0.03 (extractive) / 5e-3 (mllm LoRA)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N items")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--a-info", type=float, default=1.0, help="weight of R_info")
    parser.add_argument("--b-recon", type=float, default=1.0, help="weight of R_recon")
    parser.add_argument("--c-len", type=float, default=0.5, help="weight of R_len")
    parser.add_argument("--n-max", type=int, default=10, help="keyword cap N_max (R_len = -n/N_max)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--image-encoder", default="efficientnet-lite0",
                        help="extractive: image model whose features give the image keywords (also tuned here); "
                             "a HF vision model id/path, or 'none' for text only (default efficientnet-lite0)")


def main(args: argparse.Namespace) -> int:
    cfg = TrainSummarizerConfig.from_args(args)
    warehouse = warehouse_from_args(args)
    from mmsrarec_lib.runs import new_run_id
    from mmsrarec_lib.summarize.encoders import make_encoder
    from mmsrarec_lib.summarize.grpo import GrpoConfig, MllmGrpoConfig
    from mmsrarec_lib.summarize.rewards import RewardConfig
    from mmsrarec_lib.summarize.service import load_items, resolve_model
    from mmsrarec_lib.summarize.training import train_extractive, train_mllm

    items = load_items(warehouse, cfg.dataset, limit=cfg.limit)
    reward = RewardConfig(a_info=cfg.a_info, b_recon=cfg.b_recon, c_len=cfg.c_len, n_max=cfg.n_max)
    encoder = make_encoder(cfg.encoder)
    run_id = new_run_id(f"summarizer-{cfg.backend}")
    if cfg.backend == "extractive":
        grpo = GrpoConfig(steps=cfg.steps, batch_items=cfg.batch, group_size=cfg.group_size,
                          lr=cfg.lr if cfg.lr is not None else 0.03, seed=cfg.seed)
        image_context = None
        if cfg.image_encoder:
            from mmsrarec_lib.summarize.image_context import build_image_context

            catalogue = load_items(warehouse, cfg.dataset)
            image_context = build_image_context(warehouse, cfg.dataset, catalogue=catalogue, encoder=encoder,
                                                reward_config=reward, image_encoder=cfg.image_encoder,
                                                device=cfg.device)
        result = train_extractive(warehouse, cfg.dataset, items=items, run_id=run_id, encoder=encoder,
                                  reward_config=reward, grpo=grpo, image_context=image_context)
    else:
        model_path = resolve_model(warehouse, cfg.dataset, model=cfg.model, policy_run=None, items=items)
        grpo = MllmGrpoConfig(steps=cfg.steps, batch_prompts=cfg.batch, group_size=cfg.group_size,
                              lr=cfg.lr if cfg.lr is not None else 5e-3, seed=cfg.seed)
        result = train_mllm(warehouse, cfg.dataset, items=items, run_id=run_id, model_path=model_path,
                            encoder=encoder, reward_config=reward, grpo=grpo, modality=cfg.modality,
                            device=cfg.device)
    print(f"reward curve: {result.curve_png}")
    summary = {"run_id": result.run_id, "run_uri": result.run_uri, "before": result.before, "after": result.after}
    if result.image is not None:
        summary["image"] = result.image
    print(json.dumps(summary))
    return 0
