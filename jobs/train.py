"""``mmsrarec train``: LoRA fine-tuning of the MLLM recommender on the mixed instruction tasks (stage 3)."""

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
                        choices=["mmsrarec", "mmsrarec-no-retrieval", "mmsrarec-no-summary", "mmsrarec-no-multitask"],
                        help="model variant (ablations: no neighbours / raw text / yes-no task only)")
    parser.add_argument("--tasks", default=None, help="'all' or a comma list of yesno,next_kw,grounding,recovery "
                                                      "(default: the variant's; 'yesno' = w/o multi-task)")
    parser.add_argument("--keywords", default=None,
                        help="keyword source: 'summary' (latest summarizer version), a version, or 'raw'")
    parser.add_argument("--protocol", default="paper", choices=["paper", "full"],
                        help="whose training data to use (never a test target)")
    parser.add_argument("--base-model", default=None,
                        help="HF image-text-to-text model id or local path (default: build the tiny LLaVA)")
    parser.add_argument("--generator-run", default=None, help="SASRec run (default: latest for the protocol)")
    parser.add_argument("--run-id", default=None, help="model run id; the same id again resumes a killed run")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup-steps", type=int, default=20)
    parser.add_argument("--save-every", type=int, default=50, help="checkpoint every N steps")
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--lora-alpha", type=int, default=16)
    parser.add_argument("--lora-dropout", type=float, default=0.05)
    parser.add_argument("--lora-targets", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")
    parser.add_argument("--positions-per-user", type=int, default=3, help="training positions per user sequence")
    parser.add_argument("--history", type=int, default=5, help="history items in the prompt")
    parser.add_argument("--fusion-weight", type=float, default=1.0,
                        help="weight of the generator's standardised score added to logit(p); 0 = MLLM only")
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
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    save_every: int
    max_length: int
    lora_rank: int
    lora_alpha: int
    lora_dropout: float
    lora_targets: tuple[str, ...]
    positions_per_user: int
    history: int
    fusion_weight: float
    seed: int
    progress: bool

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.save_every < 1:
            raise ValueError("--steps, --batch-size and --save-every must be >= 1")

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> TrainJobConfig:
        return cls(dataset=a.dataset, variant=a.variant, tasks=a.tasks, keywords=a.keywords, protocol=a.protocol,
                   base_model=a.base_model, generator_run=a.generator_run, run_id=a.run_id, steps=a.steps,
                   batch_size=a.batch_size, lr=a.lr, warmup_steps=a.warmup_steps, save_every=a.save_every,
                   max_length=a.max_length, lora_rank=a.lora_rank, lora_alpha=a.lora_alpha,
                   lora_dropout=a.lora_dropout, lora_targets=tuple(t for t in a.lora_targets.split(",") if t),
                   positions_per_user=a.positions_per_user, history=a.history, fusion_weight=a.fusion_weight,
                   seed=a.seed, progress=not a.no_progress)

    def to_rec_config(self):
        from mmsrarec_lib.recommend.finetune import LoraSettings, TrainSettings
        from mmsrarec_lib.recommend.pipeline import RecTrainConfig
        from mmsrarec_lib.recommend.prompts import PromptConfig
        from mmsrarec_lib.recommend.tasks import parse_tasks

        lora = LoraSettings(rank=self.lora_rank, alpha=self.lora_alpha, dropout=self.lora_dropout,
                            target_modules=self.lora_targets)
        train = TrainSettings(max_steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                              warmup_steps=min(self.warmup_steps, self.steps), max_length=self.max_length,
                              save_every=self.save_every, seed=self.seed, lora=lora)
        cfg = RecTrainConfig.for_variant(self.variant, dataset=self.dataset, protocol=self.protocol,
                                         base_model=self.base_model, positions_per_user=self.positions_per_user,
                                         fusion_weight=self.fusion_weight, generator_run=self.generator_run,
                                         prompt=PromptConfig(n_history=self.history), train=train)
        from dataclasses import replace

        if self.tasks is not None:
            cfg = replace(cfg, tasks=",".join(parse_tasks(self.tasks)))
        if self.keywords is not None:
            cfg = replace(cfg, keyword_source=self.keywords)
        return cfg


def main(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mmsrarec_lib.recommend.finetune import cpu_threads

    cpu_threads()
    from mmsrarec_lib.recommend.pipeline import train_recommender

    cfg = TrainJobConfig.from_args(args)
    meta = train_recommender(warehouse_from_args(args), config=cfg.to_rec_config(), run_id=cfg.run_id,
                             progress=cfg.progress)
    t = meta["training"]
    print(json.dumps({"run_id": meta["run_id"], "variant": meta["variant"], "protocol": meta["protocol"],
                      "steps": t["steps"], "resumed_from": t["resumed_from"], "first_loss": t["first_loss"],
                      "last_loss_mean10": t["last_loss_mean10"], "train_seconds": round(t["train_seconds"], 1),
                      "lineage": meta["lineage"]}, indent=1, default=str))
    return 0
