"""``mmsrarec build-collab``: stage 2 from scratch: SASRec user embeddings, a faiss index, user_collab_keywords.

Flags are generated from the library configs (``CollabConfig`` and its window, embedder, index and retrieval parts),
so each default is declared once, there."""

from __future__ import annotations

import argparse
import json

from jobs._common import add_warehouse_args, warehouse_from_args
from jobs._dataclass_args import add_dataclass_arguments, dataclass_from_args

COMMAND = "build-collab"
HELP = "embed training users' windows (SASRec + item content), index them (faiss), write neighbours' keywords"
# part of CollabConfig -> (its config class's module, class name, flag names kept from before the generated flags)
PARTS = {
    "window": ("mmsrarec_lib.collab.windows", "WindowConfig", {"n": "window"}),
    "embedder": ("mmsrarec_lib.collab.content", "EmbedderConfig", {"kind": "embedder"}),
    "index": ("mmsrarec_lib.collab.index", "IndexConfig", {"use_gpu": "faiss-gpu", "seed": "index-seed"}),
    "retrieval": ("mmsrarec_lib.collab.retrieval", "RetrievalConfig", {}),
}
# CollabConfig lives in collab/build.py (owned elsewhere; no field metadata yet): its help, job-side
COLLAB_HELP = {"protocols": "query windows to write: paper (before the eval target), latest",
               "batch_size": "histories per embedding batch"}


def _part(name: str) -> tuple[type, dict[str, str]]:
    import importlib

    module, cls, names = PARTS[name]
    return getattr(importlib.import_module(module), cls), names


def add_keep_index_versions(parser: argparse.ArgumentParser) -> None:
    """``--keep-index-versions`` (shared with ``refresh-collab``)."""
    parser.add_argument("--keep-index-versions", type=int, default=5,
                        help="index versions kept after the build or refresh; older ones are deleted (default 5)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mmsrarec_lib.collab.build import CollabConfig

    add_warehouse_args(parser)
    parser.add_argument("--sasrec-run", help="SASRec run id under <warehouse>/<dataset>/models/ (default: the latest "
                                             "run whose model.json has kind 'sasrec', by created_at then run id)")
    parser.add_argument("--summarizer-version", help="item_keywords version for neighbours' keywords, or 'raw' "
                                                     "(title words); default: the latest summarizer version, else raw")
    add_keep_index_versions(parser)
    add_dataclass_arguments(parser, CollabConfig, skip=("dataset", *PARTS), extra_help=COLLAB_HELP)
    for name in PARTS:
        cls, names = _part(name)
        add_dataclass_arguments(parser.add_argument_group(f"{name} ({cls.__name__})"), cls, names=names)


def collab_config(args: argparse.Namespace):
    """The ``CollabConfig`` of the parsed flags."""
    from mmsrarec_lib.collab.build import CollabConfig

    parts = {name: dataclass_from_args(_part(name)[0], args) for name in PARTS}
    return dataclass_from_args(CollabConfig, args, dataset=args.dataset, **parts)


def main(args: argparse.Namespace) -> int:
    config = collab_config(args)
    from mmsrarec_lib.collab.build import build_collab
    from mmsrarec_lib.collab.embed import sasrec_embedder
    from mmsrarec_lib.collab.table import load_keywords

    warehouse = warehouse_from_args(args)
    embedder, run_id = sasrec_embedder(warehouse, config.dataset, args.sasrec_run)
    keywords, source = load_keywords(warehouse, config.dataset, args.summarizer_version)
    result = build_collab(
        warehouse, config=config, embedder=embedder, embedder_info={"type": "sasrec", "run_id": run_id},
        keywords=keywords, keyword_source=source, keep_index_versions=args.keep_index_versions,
    )
    print(json.dumps({"index_version": result.index_version, "table_version": result.table_version,
                      "training_users_indexed": result.n_indexed, "index_entries": result.n_entries,
                      "rows": result.n_rows, "pruned_index_versions": len(result.pruned_versions),
                      "rows_with_fewer_than_k": result.n_short, "sasrec_run": run_id, "keyword_source": source}))
    return 0
