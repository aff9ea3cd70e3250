"""``mmsrarec train-baseline``: train Pop or SASRec for one protocol and save it under <dataset>/models/<run_id>/."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jobs._common import add_warehouse_args, warehouse_from_args

COMMAND = "train-baseline"
HELP = "train an ID baseline (pop | sasrec) on a protocol's training data and save it as a model run"

# CLI flag -> SASRecConfig field (None = keep the default)
SASREC_FLAGS = {
    "dim": ("dim", int), "layers": ("n_layers", int), "heads": ("n_heads", int), "max_len": ("max_len", int),
    "dropout": ("dropout", float), "lr": ("lr", float), "weight_decay": ("weight_decay", float),
    "epochs": ("epochs", int), "batch_size": ("batch_size", int), "patience": ("patience", int),
    "loss": ("loss", str), "negatives": ("n_negatives", int),
}


def add_sasrec_arguments(parser: argparse.ArgumentParser) -> None:
    """SASRec hyper-parameter flags (shared with ``evaluate``); unset flags keep SASRecConfig's defaults."""
    g = parser.add_argument_group("SASRec options (defaults: dim 64, 2 layers, 2 heads, max-len 50, ...)")
    for flag, (_, typ) in SASREC_FLAGS.items():
        kwargs: dict[str, Any] = {"type": typ, "default": None}
        if flag == "loss":
            kwargs["choices"] = ["ce", "sampled"]
            kwargs["help"] = "ce: softmax over the catalogue; sampled: shared uniform negatives"
        g.add_argument("--" + flag.replace("_", "-"), **kwargs)
    parser.add_argument("--no-progress", action="store_true", help="hide the per-epoch progress bar")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is much faster on a busy shared CPU)")


def apply_threads(threads: int | None) -> None:
    """Torch's intra-op thread count: ``--threads``, else ``$MMSRAREC_TORCH_THREADS``, else torch's choice."""
    from mmsrarec_lib.runtime_env import configure_threads

    configure_threads(threads)


def sasrec_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, flag) for flag, (name, _) in SASREC_FLAGS.items() if getattr(args, flag) is not None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_warehouse_args(parser)
    parser.add_argument("--model", required=True, choices=["pop", "sasrec"])
    parser.add_argument("--protocol", default="full", choices=["paper", "full"],
                        help="whose training data: full = every user's train prefix; paper = the train users")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-id", default=None, help="model run id (default: a new <model>-<time>-<hex>)")
    add_sasrec_arguments(parser)


@dataclass(frozen=True)
class TrainBaselineConfig:
    warehouse: str | None
    dataset: str
    model: str
    protocol: str
    seed: int
    run_id: str | None
    sasrec: Mapping[str, Any] = field(default_factory=dict)
    progress: bool = True

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainBaselineConfig:
        return cls(warehouse=args.warehouse, dataset=args.dataset, model=args.model, protocol=args.protocol,
                   seed=args.seed, run_id=args.run_id, sasrec=sasrec_overrides(args), progress=not args.no_progress)


def main(args: argparse.Namespace) -> int:
    from mmsrarec_lib.models.baselines import fit_baseline

    cfg = TrainBaselineConfig.from_args(args)
    apply_threads(args.threads)
    trained = fit_baseline(
        warehouse_from_args(args), cfg.dataset, kind=cfg.model, protocol=cfg.protocol, seed=cfg.seed,
        sasrec_overrides=cfg.sasrec, run_id=cfg.run_id, progress=cfg.progress,
    )
    summary = {"run_id": trained.run_id, "model": trained.kind, "protocol": cfg.protocol, "seed": cfg.seed,
               **trained.info.get("metrics", {})}
    if "training" in trained.info:
        t = trained.info["training"]
        summary.update(epochs_run=t["epochs_run"], best_epoch=t["best_epoch"],
                       seconds_per_epoch=round(t["seconds_per_epoch"], 3))
    print(json.dumps(summary))
    return 0
