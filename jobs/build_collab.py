"""``mmsrarec build-collab``: stage 2 from scratch: SASRec user embeddings, a faiss index, user_collab_keywords."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from jobs._common import add_warehouse_args, warehouse_from_args

COMMAND = "build-collab"
HELP = "embed training users' windows (SASRec + item content), index them (faiss), write neighbours' keywords"


@dataclass(frozen=True)
class BuildCollabArgs:
    dataset: str
    sasrec_run: str | None
    summarizer_version: str | None
    window: int
    whole_history: bool
    entries: str
    max_entries_per_user: int
    embedder: str
    content_weight: float
    content_dims: int
    content_decay: float
    content_encoder: str
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
    keep_index_versions: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BuildCollabArgs:
        protocols = tuple(p.strip() for p in args.protocols.split(",") if p.strip())
        gpu = {"auto": None, "yes": True, "no": False}[args.faiss_gpu]
        return cls(
            dataset=args.dataset, sasrec_run=args.sasrec_run, summarizer_version=args.summarizer_version,
            window=args.window, whole_history=args.whole_history, entries=args.entries,
            max_entries_per_user=args.max_entries_per_user, embedder=args.embedder, content_weight=args.content_weight,
            content_dims=args.content_dims, content_decay=args.content_decay, content_encoder=args.content_encoder,
            k=args.k, overfetch=args.overfetch,
            no_future=args.no_future, protocols=protocols, exact_threshold=args.exact_threshold, approx=args.approx,
            nlist=args.nlist, nprobe=args.nprobe, hnsw_m=args.hnsw_m, faiss_gpu=gpu, batch_size=args.batch_size,
            keep_index_versions=args.keep_index_versions,
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_warehouse_args(parser)
    parser.add_argument("--sasrec-run", help="SASRec run id under <warehouse>/<dataset>/models/ (default: the latest "
                                             "run whose model.json has kind 'sasrec', by created_at then run id)")
    parser.add_argument("--summarizer-version", help="item_keywords version for neighbours' keywords, or 'raw' "
                                                     "(title words); default: the latest summarizer version, else raw")
    parser.add_argument("--window", type=int, default=5, help="items per embedded window (default 5)")
    parser.add_argument("--whole-history", action="store_true", help="embed the whole history before the cut")
    parser.add_argument("--entries", choices=("all", "last"), default="all",
                        help="index every position of a training user's sequence (all, default) or only its last "
                             "window (last: one entry per user)")
    parser.add_argument("--max-entries-per-user", type=int, default=0,
                        help="with --entries all, keep only this many latest positions per user (0: all)")
    parser.add_argument("--embedder", choices=("hybrid", "sasrec"), default="hybrid",
                        help="hybrid: SASRec vector joined with the window's item content (default); sasrec: "
                             "SASRec only, as in the paper")
    parser.add_argument("--content-weight", type=float, default=1.0, help="weight of the content part (default 1)")
    parser.add_argument("--content-dims", type=int, default=32, help="PCA dimensions of item content (default 32)")
    parser.add_argument("--content-decay", type=float, default=0.8,
                        help="weight decay per step back in the window (default 0.8: the latest item counts most)")
    parser.add_argument("--content-encoder", default="minilm",
                        help="sentence encoder for item text: minilm (packaged, offline), hashing, or a "
                             "sentence-transformers model id/path")
    parser.add_argument("--k", type=int, default=3, help="neighbours per user (default 3)")
    parser.add_argument("--overfetch", type=int, default=32,
                        help="extra entries fetched before filtering and de-duplicating users (default 32)")
    parser.add_argument("--no-future", action="store_true",
                        help="also drop neighbours whose next item is later than the end of the query window")
    parser.add_argument("--protocols", default="paper,latest",
                        help="query windows to write: paper (before the eval target), latest (default both)")
    parser.add_argument("--exact-threshold", type=int, default=200_000,
                        help="exact IndexFlatIP below this many index entries, else --approx (default 200000)")
    parser.add_argument("--approx", choices=("ivf", "hnsw"), default="ivf", help="approximate index kind")
    parser.add_argument("--nlist", type=int, default=None, help="IVF lists (default 4*sqrt(n))")
    parser.add_argument("--nprobe", type=int, default=16, help="IVF lists searched per query (default 16)")
    parser.add_argument("--hnsw-m", type=int, default=32, help="HNSW links per node (default 32)")
    parser.add_argument("--faiss-gpu", choices=("auto", "yes", "no"), default="auto",
                        help="search on a GPU (auto: when faiss sees one)")
    parser.add_argument("--batch-size", type=int, default=1024, help="histories per embedding batch")
    parser.add_argument("--keep-index-versions", type=int, default=5,
                        help="index versions kept after the build; older ones are deleted (default 5)")


def main(args: argparse.Namespace) -> int:
    cfg = BuildCollabArgs.from_args(args)
    from mmsrarec_lib.collab.content import EmbedderConfig
    from mmsrarec_lib.collab.embed import sasrec_embedder
    from mmsrarec_lib.collab.index import IndexConfig
    from mmsrarec_lib.collab.pipeline import CollabConfig, build_collab
    from mmsrarec_lib.collab.retrieval import RetrievalConfig
    from mmsrarec_lib.collab.table import load_keywords
    from mmsrarec_lib.collab.windows import WindowConfig

    config = CollabConfig(
        dataset=cfg.dataset,
        window=WindowConfig(n=cfg.window, whole_history=cfg.whole_history, entries=cfg.entries,
                            max_entries_per_user=cfg.max_entries_per_user),
        embedder=EmbedderConfig(kind=cfg.embedder, content_weight=cfg.content_weight, content_dims=cfg.content_dims,
                                content_decay=cfg.content_decay, content_encoder=cfg.content_encoder),
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
        keywords=keywords, keyword_source=source, keep_index_versions=cfg.keep_index_versions,
    )
    print(json.dumps({"index_version": result.index_version, "table_version": result.table_version,
                      "training_users_indexed": result.n_indexed, "index_entries": result.n_entries,
                      "rows": result.n_rows, "pruned_index_versions": len(result.pruned_versions),
                      "rows_with_fewer_than_k": result.n_short, "sasrec_run": run_id, "keyword_source": source}))
    return 0
