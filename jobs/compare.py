"""``mmsrarec compare``: Pop, SASRec, MMSRARec and its three ablations, N seeds, both protocols, one run."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from jobs._common import add_warehouse_args, warehouse_from_args

COMMAND = "compare"
HELP = ("train and evaluate Pop, SASRec, MMSRARec and its ablations over N seeds under both protocols into "
        "evaluation_runs (one run id), then print mean ± std")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_warehouse_args(parser)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--protocols", default="paper,full")
    parser.add_argument("--models", default="all", help="'all' or a comma list (pop,sasrec,mmsrarec,...)")
    parser.add_argument("--run-id", default=None, help="evaluation run id; the same id again resumes")
    parser.add_argument("--steps", type=int, default=150, help="fine-tuning steps per MMSRARec variant")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--top-m", type=int, default=50, help="full protocol: SASRec candidates reranked")
    parser.add_argument("--fusion-weight", type=float, default=1.0)
    parser.add_argument("--sasrec-epochs", type=int, default=None)
    parser.add_argument("--base-model", default=None, help="HF id or path (default: tiny LLaVA per run)")
    parser.add_argument("--no-progress", action="store_true")


@dataclass(frozen=True)
class CompareJobConfig:
    dataset: str
    seeds: tuple[int, ...]
    protocols: tuple[str, ...]
    models: tuple[str, ...] | None
    run_id: str | None
    steps: int
    batch_size: int
    lr: float
    top_m: int
    fusion_weight: float
    sasrec_epochs: int | None
    base_model: str | None
    progress: bool

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> CompareJobConfig:
        if a.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {a.seeds}")
        models = None if a.models == "all" else tuple(m.strip() for m in a.models.split(",") if m.strip())
        return cls(dataset=a.dataset, seeds=tuple(range(a.seed, a.seed + a.seeds)),
                   protocols=tuple(p.strip() for p in a.protocols.split(",") if p.strip()), models=models,
                   run_id=a.run_id, steps=a.steps, batch_size=a.batch_size, lr=a.lr, top_m=a.top_m,
                   fusion_weight=a.fusion_weight, sasrec_epochs=a.sasrec_epochs, base_model=a.base_model,
                   progress=not a.no_progress)


def main(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mmsrarec_lib.recommend.finetune import cpu_threads

    cpu_threads()
    from mmsrarec_lib.recommend.compare import ALL_MODELS, CompareConfig, run_compare, summary_table
    from mmsrarec_lib.recommend.finetune import TrainSettings
    from mmsrarec_lib.recommend.scorer import ScoringConfig
    from mmsrarec_lib.runs import new_run_id

    c = CompareJobConfig.from_args(args)
    wh = warehouse_from_args(args)
    run_id = c.run_id or new_run_id("compare")
    print(f"comparison run {run_id} on {c.dataset}: seeds {list(c.seeds)}, protocols {list(c.protocols)}")
    cfg = CompareConfig(
        dataset=c.dataset, run_id=run_id, seeds=c.seeds, protocols=c.protocols, models=c.models or ALL_MODELS,
        train=TrainSettings(max_steps=c.steps, batch_size=c.batch_size, lr=c.lr, warmup_steps=min(20, c.steps),
                            save_every=max(1, c.steps // 3)),
        scoring=ScoringConfig(fusion_weight=c.fusion_weight, top_m=c.top_m),
        sasrec={"epochs": c.sasrec_epochs} if c.sasrec_epochs else {}, base_model=c.base_model, progress=c.progress)
    run_compare(wh, config=cfg)
    print(summary_table(wh, c.dataset, run_id))
    return 0
