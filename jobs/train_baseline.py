"""``mmsrarec train-baseline``: train Pop or SASRec for one protocol and save it under <dataset>/models/<run_id>/."""

from __future__ import annotations

import argparse
import json
from typing import Any

from jobs._common import DEFAULT_PROTOCOL, TRAINING_PROTOCOLS, add_warehouse_args, warehouse_from_args

COMMAND = "train-baseline"
HELP = "train an ID baseline (pop | sasrec) on a protocol's training data and save it as a model run"

# CLI flag -> SASRecConfig field (None = keep its default). Spelled here, not generated: SASRecConfig's module
# (mmsrarec_lib/models/sasrec.py) imports torch, which the parser of every command would then load, and three of
# these flag names (layers, heads, negatives) differ from its fields.
SASREC_FLAGS = {
    "dim": ("dim", int), "layers": ("n_layers", int), "heads": ("n_heads", int), "max_len": ("max_len", int),
    "dropout": ("dropout", float), "lr": ("lr", float), "weight_decay": ("weight_decay", float),
    "epochs": ("epochs", int), "batch_size": ("batch_size", int), "patience": ("patience", int),
    "loss": ("loss", str), "negatives": ("n_negatives", int),
}


def add_sasrec_arguments(parser: argparse.ArgumentParser) -> None:
    """SASRec hyper-parameter flags (shared with ``evaluate``); unset flags keep SASRecConfig's defaults."""
    g = parser.add_argument_group("SASRec options (unset: SASRecConfig's defaults, mmsrarec_lib/models/sasrec.py)")
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
    parser.add_argument("--protocol", default=DEFAULT_PROTOCOL, choices=TRAINING_PROTOCOLS,
                        help=f"whose training data: paper = the train users; full = every user's train prefix "
                             f"(default {DEFAULT_PROTOCOL}, as `mmsrarec train-recommender`, which uses this run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-id", default=None, help="model run id (default: a new <model>-<time>-<hex>)")
    add_sasrec_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from mmsrarec_lib.models.baselines import fit_baseline

    apply_threads(args.threads)
    trained = fit_baseline(
        warehouse_from_args(args), args.dataset, kind=args.model, protocol=args.protocol, seed=args.seed,
        sasrec_overrides=sasrec_overrides(args), run_id=args.run_id, progress=not args.no_progress,
    )
    summary = {"run_id": trained.run_id, "model": trained.kind, "protocol": args.protocol, "seed": args.seed,
               **trained.info.get("metrics", {})}
    if "training" in trained.info:
        t = trained.info["training"]
        summary.update(epochs_run=t["epochs_run"], best_epoch=t["best_epoch"],
                       seconds_per_epoch=round(t["seconds_per_epoch"], 3))
    print(json.dumps(summary))
    return 0
