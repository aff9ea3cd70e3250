"""``mmsrarec train-recommender``: LoRA fine-tuning of the stage-3 recommender on the four instruction tasks.

Default backbone ``minilm-effnet`` (pretrained MiniLM + LoRA, EfficientNet image tokens, trained with
``transformers.Trainer``); ``--base-model`` selects the decoder path (any HF image-text-to-text model, or
``tiny-llava``, the random test fixture). Flags left unset take the chosen backbone's defaults: those live in the
library configs (``EncoderRunConfig`` for minilm-effnet; ``RecTrainConfig``, ``TrainSettings``, ``LoraSettings``,
``PromptConfig`` for the decoder), whose modules import torch, so the flags are generated from ``TrainJobConfig``
below (the CLI parser must stay light) and only the values given are passed on."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from jobs._common import DEFAULT_PROTOCOL, add_warehouse_args, warehouse_from_args
from jobs._dataclass_args import add_dataclass_arguments, dataclass_from_args

COMMAND = "train-recommender"
ALIASES = ("train",)  # deprecated: the old name, kept so existing scripts keep working
HELP = "fine-tune the MLLM recommender (LoRA, four tasks mixed) and save adapter, config and lineage as a model run"


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class TrainJobConfig:
    """The flags of ``mmsrarec train-recommender`` (None: the chosen backbone's default)."""

    variant: Literal["mmsrarec", "mmsrarec-id-token", "mmsrarec-no-retrieval", "mmsrarec-no-summary",
                     "mmsrarec-no-multitask"] = field(default="mmsrarec", metadata={"help": (
                         "model variant (id-token: + the candidate's SASRec vector as a token; ablations: no "
                         "neighbours / raw text / yes-no task only)")})
    tasks: str | None = field(default=None, metadata={"help": (
        "'all' or a comma list of yesno,next_kw,grounding,recovery (None: the variant's; 'yesno' = w/o multi-task)")})
    keywords: str | None = field(default=None, metadata={"help": (
        "keyword source: 'summary' (latest summarizer version), a version, or 'raw' (None: the variant's)")})
    protocol: Literal["paper", "full"] = field(default=DEFAULT_PROTOCOL, metadata={"help": (
        "whose training data to use (never a test target); the SASRec generator is the latest run of this "
        "protocol, the one train-baseline writes by default")})
    base_model: str | None = field(default=None, metadata={"help": (
        "HF image-text-to-text model id or local path: the decoder path with KV-cache scoring ('tiny-llava' = the "
        "random test fixture); None: the minilm-effnet backbone")})
    generator_run: str | None = field(default=None, metadata={"help": "SASRec run (None: latest for the protocol)"})
    run_id: str | None = field(default=None, metadata={"help": "model run id; the same id again resumes a killed run"})
    steps: int | None = field(default=None, metadata={"help": "training steps"})
    batch_size: int | None = field(default=None, metadata={"help": "examples per step"})
    grad_accum: int | None = field(default=None, metadata={"help": "minilm-effnet: gradient accumulation steps"})
    lr: float | None = field(default=None, metadata={"help": (
        "learning rate (minilm-effnet: all but LoRA, see --text-lr)")})
    text_lr: float | None = field(default=None, metadata={"help": "minilm-effnet: LoRA learning rate"})
    negatives: int | None = field(default=None, metadata={"help": "minilm-effnet: negatives per training position"})
    lora_layers: int | None = field(default=None, metadata={"help": (
        "minilm-effnet: LoRA on the top N MiniLM layers (None: BackboneConfig's, 1)")})
    image_tokens: int | None = field(default=None, metadata={"help": "minilm-effnet: tokens per candidate image"})
    warmup_steps: int | None = None
    save_every: int | None = field(default=None, metadata={"help": "checkpoint every N steps"})
    max_length: int | None = field(default=None, metadata={"help": "decoder: tokens per example"})
    lora_rank: int | None = None
    lora_alpha: int | None = None
    lora_dropout: float | None = field(default=None, metadata={"help": "decoder: LoRA dropout"})
    lora_targets: tuple[str, ...] | None = field(default=None, metadata={"help": "LoRA target modules, a comma list"})
    positions_per_user: int | None = field(default=None, metadata={"help": "training positions per user sequence"})
    history: int | None = field(default=None, metadata={"help": "history items in the prompt"})
    fusion_weight: float | None = field(default=None, metadata={"help": (
        "weight of the generator's standardised score added to logit(p); 0 = MLLM only (None: minilm-effnet "
        "chooses it on validation users; the decoder's default)")})
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "save_every", "grad_accum", "negatives"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v}")

    def to_rec_config(self, dataset: str):
        """The decoder path's config: library defaults, then the values given."""
        from mmsrarec_lib.recommend.finetune import LoraSettings, TrainSettings
        from mmsrarec_lib.recommend.prompts import PromptConfig
        from mmsrarec_lib.recommend.run_config import RecTrainConfig
        from mmsrarec_lib.recommend.tasks import parse_tasks

        lora = replace(LoraSettings(), **_given(rank=self.lora_rank, alpha=self.lora_alpha, dropout=self.lora_dropout,
                                                target_modules=self.lora_targets))
        train = replace(TrainSettings(), seed=self.seed, lora=lora, **_given(
            max_steps=self.steps, batch_size=self.batch_size, lr=self.lr, warmup_steps=self.warmup_steps,
            max_length=self.max_length, save_every=self.save_every))
        train = replace(train, warmup_steps=min(train.warmup_steps, train.max_steps))
        cfg = RecTrainConfig.for_variant(
            self.variant, dataset=dataset, protocol=self.protocol, base_model=self.base_model,
            choose_fusion=self.fusion_weight is None, generator_run=self.generator_run, train=train,
            prompt=replace(PromptConfig(), **_given(n_history=self.history)),
            **_given(positions_per_user=self.positions_per_user, fusion_weight=self.fusion_weight))
        if self.tasks is not None:
            cfg = replace(cfg, tasks=",".join(parse_tasks(self.tasks)))
        if self.keywords is not None:
            cfg = replace(cfg, keyword_source=self.keywords)
        return cfg

    def to_encoder_config(self):
        """The minilm-effnet settings: ``EncoderRunConfig``'s defaults, then the values given."""
        from mmsrarec_lib.recommend.encoder_pipeline import EncoderRunConfig

        enc = EncoderRunConfig()
        bb = replace(enc.backbone, **_given(
            lora_layers=self.lora_layers, image_tokens=self.image_tokens, lora_rank=self.lora_rank,
            lora_alpha=self.lora_alpha, lora_targets=self.lora_targets))
        train = replace(enc.train, seed=self.seed, **_given(
            max_steps=self.steps, batch_size=self.batch_size, lr=self.lr, warmup_steps=self.warmup_steps,
            save_every=self.save_every, positions_per_user=self.positions_per_user, grad_accum=self.grad_accum,
            text_lr=self.text_lr, negatives=self.negatives))
        return replace(enc, backbone=bb, train=train, prompt=replace(enc.prompt, **_given(n_history=self.history)))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_warehouse_args(parser)
    add_dataclass_arguments(parser, TrainJobConfig)


def main(args: argparse.Namespace) -> int:
    from mmsrarec_lib.runtime_env import configure_threads

    configure_threads(default=1, cpu_only=True)  # $MMSRAREC_TORCH_THREADS, else 1 (offline env: jobs/cli.py)
    from mmsrarec_lib.recommend.training import train_recommender

    cfg = dataclass_from_args(TrainJobConfig, args)
    meta = train_recommender(warehouse_from_args(args), config=cfg.to_rec_config(args.dataset), run_id=cfg.run_id,
                             progress=cfg.progress, encoder=cfg.to_encoder_config())
    t = meta["training"]
    print(json.dumps({"run_id": meta["run_id"], "backbone": meta.get("backbone", "decoder"),
                      "variant": meta["variant"], "protocol": meta["protocol"], "steps": t["steps"],
                      "resumed_from": t["resumed_from"], "first_loss": t.get("first_loss"),
                      "train_loss": t.get("train_loss", t.get("last_loss_mean10")),
                      "train_seconds": round(t["train_seconds"], 1), "fusion": meta.get("fusion"),
                      "lineage": meta["lineage"]}, indent=1, default=str))
    return 0
