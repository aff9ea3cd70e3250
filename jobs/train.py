"""``mmsrarec train``: LoRA fine-tuning of the stage-3 recommender on the four instruction tasks.

Default backbone ``minilm-effnet`` (pretrained MiniLM + LoRA, EfficientNet image tokens, trained with
``transformers.Trainer``); ``--base-model`` selects the decoder path (any HF image-text-to-text model, or
``tiny-llava``, the random test fixture). Flags left unset take the chosen backbone's defaults."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from jobs._common import add_warehouse_args, warehouse_from_args

COMMAND = "train"
HELP = "fine-tune the MLLM recommender (LoRA, four tasks mixed) and save adapter, config and lineage as a model run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_warehouse_args(parser)
    parser.add_argument("--variant", default="mmsrarec",
                        choices=["mmsrarec", "mmsrarec-id-token", "mmsrarec-no-retrieval", "mmsrarec-no-summary",
                                 "mmsrarec-no-multitask"],
                        help="model variant (id-token: + the candidate's SASRec vector as a token; ablations: no "
                             "neighbours / raw text / yes-no task only)")
    parser.add_argument("--tasks", default=None, help="'all' or a comma list of yesno,next_kw,grounding,recovery "
                                                      "(default: the variant's; 'yesno' = w/o multi-task)")
    parser.add_argument("--keywords", default=None,
                        help="keyword source: 'summary' (latest summarizer version), a version, or 'raw'")
    parser.add_argument("--protocol", default="paper", choices=["paper", "full"],
                        help="whose training data to use (never a test target)")
    parser.add_argument("--base-model", default=None,
                        help="HF image-text-to-text model id or local path: the decoder path with KV-cache "
                             "scoring ('tiny-llava' = the random test fixture); default: the minilm-effnet backbone")
    parser.add_argument("--generator-run", default=None, help="SASRec run (default: latest for the protocol)")
    parser.add_argument("--run-id", default=None, help="model run id; the same id again resumes a killed run")
    parser.add_argument("--steps", type=int, default=None, help="default: 100 minilm-effnet, 300 decoder")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 32 minilm-effnet, 8 decoder")
    parser.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps (minilm-effnet)")
    parser.add_argument("--lr", type=float, default=None, help="default: 2e-3 minilm-effnet (LoRA: --text-lr), "
                                                             "2e-3 decoder")
    parser.add_argument("--text-lr", type=float, default=2e-4, help="minilm-effnet: LoRA learning rate")
    parser.add_argument("--negatives", type=int, default=8, help="minilm-effnet: negatives per training position")
    parser.add_argument("--lora-layers", type=int, default=2, help="minilm-effnet: LoRA on the top N MiniLM layers")
    parser.add_argument("--image-tokens", type=int, default=2, help="minilm-effnet: tokens per candidate image")
    parser.add_argument("--warmup-steps", type=int, default=None)
    parser.add_argument("--save-every", type=int, default=None, help="checkpoint every N steps")
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--lora-alpha", type=int, default=16)
    parser.add_argument("--lora-dropout", type=float, default=0.05)
    parser.add_argument("--lora-targets", default=None, help="default: query,key,value (minilm-effnet), "
                                                             "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")
    parser.add_argument("--positions-per-user", type=int, default=None,
                        help="training positions per user sequence (default: 10 minilm-effnet, 3 decoder)")
    parser.add_argument("--history", type=int, default=5, help="history items in the prompt")
    parser.add_argument("--fusion-weight", type=float, default=None,
                        help="weight of the generator's standardised score added to logit(p); 0 = MLLM only "
                             "(default: minilm-effnet chooses it on validation users; decoder 1.0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")


@dataclass(frozen=True)
class TrainJobConfig:
    dataset: str
    variant: str
    tasks: str | None
    keywords: str | None
    protocol: str
    base_model: str | None
    generator_run: str | None
    run_id: str | None
    steps: int | None
    batch_size: int | None
    grad_accum: int
    lr: float | None
    text_lr: float
    negatives: int
    lora_layers: int
    image_tokens: int
    warmup_steps: int | None
    save_every: int | None
    max_length: int
    lora_rank: int
    lora_alpha: int
    lora_dropout: float
    lora_targets: tuple[str, ...] | None
    positions_per_user: int | None
    history: int
    fusion_weight: float | None
    seed: int
    progress: bool

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "save_every"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
        if self.grad_accum < 1 or self.negatives < 1:
            raise ValueError("--grad-accum and --negatives must be >= 1")

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> TrainJobConfig:
        return cls(dataset=a.dataset, variant=a.variant, tasks=a.tasks, keywords=a.keywords, protocol=a.protocol,
                   base_model=a.base_model, generator_run=a.generator_run, run_id=a.run_id, steps=a.steps,
                   batch_size=a.batch_size, grad_accum=a.grad_accum, lr=a.lr, text_lr=a.text_lr,
                   negatives=a.negatives, lora_layers=a.lora_layers, image_tokens=a.image_tokens,
                   warmup_steps=a.warmup_steps, save_every=a.save_every,
                   max_length=a.max_length, lora_rank=a.lora_rank, lora_alpha=a.lora_alpha,
                   lora_dropout=a.lora_dropout,
                   lora_targets=tuple(t for t in a.lora_targets.split(",") if t) if a.lora_targets else None,
                   positions_per_user=a.positions_per_user, history=a.history, fusion_weight=a.fusion_weight,
                   seed=a.seed, progress=not a.no_progress)

    def to_rec_config(self):
        from mmsrarec_lib.recommend.finetune import LoraSettings, TrainSettings
        from mmsrarec_lib.recommend.pipeline import RecTrainConfig
        from mmsrarec_lib.recommend.prompts import PromptConfig
        from mmsrarec_lib.recommend.tasks import parse_tasks

        lora = LoraSettings(rank=self.lora_rank, alpha=self.lora_alpha, dropout=self.lora_dropout,
                            **({"target_modules": self.lora_targets} if self.lora_targets else {}))
        steps = self.steps or 300
        train = TrainSettings(max_steps=steps, batch_size=self.batch_size or 8, lr=self.lr or 2e-3,
                              warmup_steps=min(20 if self.warmup_steps is None else self.warmup_steps, steps),
                              max_length=self.max_length, save_every=self.save_every or 50, seed=self.seed, lora=lora)
        cfg = RecTrainConfig.for_variant(self.variant, dataset=self.dataset, protocol=self.protocol,
                                         base_model=self.base_model, positions_per_user=self.positions_per_user or 3,
                                         fusion_weight=1.0 if self.fusion_weight is None else self.fusion_weight,
                                         choose_fusion=self.fusion_weight is None, generator_run=self.generator_run,
                                         prompt=PromptConfig(n_history=self.history), train=train)
        from dataclasses import replace

        if self.tasks is not None:
            cfg = replace(cfg, tasks=",".join(parse_tasks(self.tasks)))
        if self.keywords is not None:
            cfg = replace(cfg, keyword_source=self.keywords)
        return cfg

    def to_encoder_config(self):
        """The minilm-effnet settings (flags left unset take its defaults)."""
        from dataclasses import replace

        from mmsrarec_lib.recommend.encoder_pipeline import EncoderRunConfig

        enc = EncoderRunConfig()
        bb = replace(enc.backbone, lora_layers=self.lora_layers, image_tokens=self.image_tokens,
                     lora_rank=self.lora_rank, lora_alpha=self.lora_alpha,
                     **({"lora_targets": self.lora_targets} if self.lora_targets else {}))
        given = {"max_steps": self.steps, "batch_size": self.batch_size, "lr": self.lr,
                 "warmup_steps": self.warmup_steps, "save_every": self.save_every,
                 "positions_per_user": self.positions_per_user}
        train = replace(enc.train, grad_accum=self.grad_accum, text_lr=self.text_lr, negatives=self.negatives,
                        seed=self.seed, **{k: v for k, v in given.items() if v is not None})
        return replace(enc, backbone=bb, train=train, prompt=replace(enc.prompt, n_history=self.history))


def main(args: argparse.Namespace) -> int:
    from mmsrarec_lib.runtime_env import configure_threads

    configure_threads(default=1, cpu_only=True)  # $MMSRAREC_TORCH_THREADS, else 1 (offline env: jobs/cli.py)
    from mmsrarec_lib.recommend.pipeline import train_recommender

    cfg = TrainJobConfig.from_args(args)
    meta = train_recommender(warehouse_from_args(args), config=cfg.to_rec_config(), run_id=cfg.run_id,
                             progress=cfg.progress, encoder=cfg.to_encoder_config())
    t = meta["training"]
    print(json.dumps({"run_id": meta["run_id"], "backbone": meta.get("backbone", "decoder"),
                      "variant": meta["variant"], "protocol": meta["protocol"], "steps": t["steps"],
                      "resumed_from": t["resumed_from"], "first_loss": t.get("first_loss"),
                      "train_loss": t.get("train_loss", t.get("last_loss_mean10")),
                      "train_seconds": round(t["train_seconds"], 1), "fusion": meta.get("fusion"),
                      "lineage": meta["lineage"]}, indent=1, default=str))
    return 0
