"""``mmsrarec build-collab``: stage 2 from scratch: SASRec user embeddings, a faiss index, user_collab_keywords."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from jobs._common import add_warehouse_args, warehouse_from_args

COMMAND = "build-collab"
HELP = "embed training users with SASRec, index them (faiss) and write every user's neighbours' keywords"


@dataclass(frozen=True)
class BuildCollabArgs:
    dataset: str
    sasrec_run: str | None
    summarizer_version: str | None
    window: int
    whole_history: bool
    k: int
    overfetch: int
    no_future: bool
    protocols: tuple[str, ...]
    exact_threshold: int
    approx: str
    nlist: int | None
    nprobe: int
    hnsw_m: int
    faiss_gpu: bool | None
    batch_size: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BuildCollabArgs:
        protocols = tuple(p.strip() for p in args.protocols.split(",") if p.strip())
        gpu = {"auto": None, "yes": True, "no": False}[args.faiss_gpu]
        return cls(
            dataset=args.dataset, sasrec_run=args.sasrec_run, summarizer_version=args.summarizer_version,
            window=args.window, whole_history=args.whole_history, k=args.k, overfetch=args.overfetch,
            no_future=args.no_future, protocols=protocols, exact_threshold=args.exact_threshold, approx=args.approx,
            nlist=args.nlist, nprobe=args.nprobe, hnsw_m=args.hnsw_m, faiss_gpu=gpu, batch_size=args.batch_size,
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_warehouse_args(parser)
    parser.add_argument("--sasrec-run", help="SASRec run id under <warehouse>/<dataset>/models/ (default: the latest "
                                             "run whose model.json has kind 'sasrec', by created_at then run id)")
    parser.add_argument("--summarizer-version", help="item_keywords version for neighbours' keywords, or 'raw' "
                                                     "(title words); default: the latest summarizer version, else raw")
    parser.add_argument("--window", type=int, default=5, help="items per embedded window (default 5)")
    parser.add_argument("--whole-history", action="store_true", help="embed the whole history before the cut")
    parser.add_argument("--k", type=int, default=3, help="neighbours per user (default 3)")
    parser.add_argument("--overfetch", type=int, default=8, help="extra candidates fetched before filtering")
    parser.add_argument("--no-future", action="store_true",
                        help="also drop neighbours whose next item is later than the end of the query window")
    parser.add_argument("--protocols", default="paper,latest",
                        help="query windows to write: paper (before the eval target), latest (default both)")
    parser.add_argument("--exact-threshold", type=int, default=50_000,
                        help="exact IndexFlatIP below this many training users, else --approx (default 50000)")
    parser.add_argument("--approx", choices=("ivf", "hnsw"), default="ivf", help="approximate index kind")
    parser.add_argument("--nlist", type=int, default=None, help="IVF lists (default 4*sqrt(n))")
    parser.add_argument("--nprobe", type=int, default=16, help="IVF lists searched per query (default 16)")
    parser.add_argument("--hnsw-m", type=int, default=32, help="HNSW links per node (default 32)")
    parser.add_argument("--faiss-gpu", choices=("auto", "yes", "no"), default="auto",
                        help="search on a GPU (auto: when faiss sees one)")
    parser.add_argument("--batch-size", type=int, default=1024, help="histories per embedding batch")


def main(args: argparse.Namespace) -> int:
    cfg = BuildCollabArgs.from_args(args)
    from mmsrarec_lib.collab.embed import sasrec_embedder
    from mmsrarec_lib.collab.index import IndexConfig
    from mmsrarec_lib.collab.pipeline import CollabConfig, build_collab
    from mmsrarec_lib.collab.retrieval import RetrievalConfig
    from mmsrarec_lib.collab.table import load_keywords
    from mmsrarec_lib.collab.windows import WindowConfig

    config = CollabConfig(
        dataset=cfg.dataset,
        window=WindowConfig(n=cfg.window, whole_history=cfg.whole_history),
        index=IndexConfig(exact_threshold=cfg.exact_threshold, approx=cfg.approx, nlist=cfg.nlist,
                          nprobe=cfg.nprobe, hnsw_m=cfg.hnsw_m, use_gpu=cfg.faiss_gpu),
        retrieval=RetrievalConfig(k=cfg.k, overfetch=cfg.overfetch, no_future=cfg.no_future),
        protocols=cfg.protocols,
        batch_size=cfg.batch_size,
    )
    warehouse = warehouse_from_args(args)
    embedder, run_id = sasrec_embedder(warehouse, cfg.dataset, cfg.sasrec_run)
    keywords, source = load_keywords(warehouse, cfg.dataset, cfg.summarizer_version)
    result = build_collab(
        warehouse, config=config, embedder=embedder, embedder_info={"type": "sasrec", "run_id": run_id},
        keywords=keywords, keyword_source=source,
    )
    print(json.dumps({"index_version": result.index_version, "table_version": result.table_version,
                      "training_users_indexed": result.n_indexed, "rows": result.n_rows,
                      "rows_with_fewer_than_k": result.n_short, "sasrec_run": run_id, "keyword_source": source}))
    return 0
