"""The batch recommender behind ``mmsrarec recommend``: users -> top-K rows in ``recommendations`` (one commit).

Users: ``all`` = every user of ``user_sequences``; ``changed`` = users with an interaction newer than the
watermark of the previous run (the newest interaction timestamp covered by the latest run whose run_date is
*earlier* than this one; no earlier run -> all users). Using "earlier run_date" makes a rerun of a date pick the
same users, so it replaces that date's partition with the same rows (idempotent). The watermarks are a small JSON
object ``<warehouse>/<dataset>/state/recommend_watermarks.json`` ({run_date: max interaction us}), updated after the
Delta commit; a crash before it leaves the previous state.
Prompts use the ``latest`` rows of ``user_collab_keywords`` (neighbours of the user's latest items).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass

import pyarrow.compute as pc

from mmsrarec_lib.recommend.topk import (
    TopKConfig,
    explain,
    generate_candidates,
    recommendation_rows,
    select_top_k,
    to_table,
    write_partition,
)
from mmsrarec_lib.runs import utcnow
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)
TABLE = "recommendations"


@dataclass(frozen=True)
class RecommendConfig:
    dataset: str
    model_run: str
    run_date: dt.date
    users: str = "all"  # all | changed
    topk: TopKConfig = TopKConfig()
    batch_size: int = 32
    limit_users: int | None = None  # for benches and smoke runs

    def __post_init__(self) -> None:
        if self.users not in ("all", "changed"):
            raise ValueError(f"--users must be 'changed' or 'all', got {self.users!r}")


def _watermarks_uri(warehouse: Warehouse, dataset: str) -> str:
    return warehouse.uri(dataset, "state", "recommend_watermarks.json")


def read_watermarks(warehouse: Warehouse, dataset: str) -> dict[str, int]:
    uri = _watermarks_uri(warehouse, dataset)
    return json.loads(warehouse.read_bytes(uri)) if warehouse.exists(uri) else {}


def select_users(warehouse: Warehouse, dataset: str, *, mode: str, run_date: dt.date) -> tuple[list[str], int]:
    """(users to recommend for, newest interaction timestamp in us) for ``mode`` (see the module docstring)."""
    inter = warehouse.read_table(dataset, "interactions", columns=["user_id", "timestamp"])
    ts = pc.cast(inter.column("timestamp"), "int64")
    newest = int(pc.max(ts).as_py())
    all_users = sorted(set(warehouse.read_table(dataset, "user_sequences", columns=["user_id"])
                           .column("user_id").to_pylist()))
    if mode == "all":
        return all_users, newest
    earlier = {d: v for d, v in read_watermarks(warehouse, dataset).items() if d < run_date.isoformat()}
    if not earlier:
        log.info("no earlier recommend run: 'changed' means every user")
        return all_users, newest
    since = earlier[max(earlier)]
    changed = set(inter.filter(pc.greater(ts, since)).column("user_id").to_pylist())
    log.info("%d users with interactions after the %s watermark", len(changed), max(earlier))
    return [u for u in all_users if u in changed], newest


def recommend(warehouse: Warehouse, *, config: RecommendConfig, progress: bool = True) -> dict:
    """Score, select and write one run_date partition (replacing it); returns counts and throughput."""
    from tqdm.auto import tqdm

    from mmsrarec_lib.models.baselines import load_baseline
    from mmsrarec_lib.recommend.context import load_context
    from mmsrarec_lib.recommend.pipeline import config_from_dict, load_recommender
    from mmsrarec_lib.recommend.scorer import MllmReranker, ScoringConfig

    ds = config.dataset
    model, processor, meta = load_recommender(warehouse, ds, config.model_run)
    train_cfg = config_from_dict(meta["config"])
    ctx = load_context(warehouse, ds, keyword_source=train_cfg.keyword_source, neighbor_protocol="latest",
                       use_neighbors=train_cfg.use_neighbors)
    generator = load_baseline(warehouse, ds, meta["generator_run"]).scorer
    reranker = MllmReranker(model=model, processor=processor, context=ctx, prompt=train_cfg.prompt,
                            generator=generator, config=ScoringConfig(batch_size=config.batch_size,
                                                                      fusion_weight=train_cfg.fusion_weight),
                            progress=False)
    users, newest = select_users(warehouse, ds, mode=config.users, run_date=config.run_date)
    if config.limit_users is not None:
        users = users[: config.limit_users]
    seqs = {r["user_id"]: list(r["item_ids"]) for r in
            warehouse.read_table(ds, "user_sequences", columns=["user_id", "item_ids"]).to_pylist()}
    created = utcnow()
    rows: list[dict] = []
    t0 = time.perf_counter()
    item_ids = list(generator.item_ids)
    for start in tqdm(range(0, len(users), 64), desc="recommend", unit="64 users", disable=not progress):
        chunk = users[start : start + 64]
        hists = [seqs.get(u, []) for u in chunk]
        gen_scores = generator.score_catalogue(hists)  # [n, N]
        cands = [generate_candidates(gen_scores[i], item_ids, seen=set(h), m=config.topk.top_m)
                 for i, h in enumerate(hists)]
        for uid, h, c, (_, final) in zip(chunk, hists, cands, reranker.score_users(chunk, hists, cands),
                                         strict=True):
            picks = select_top_k(c, final, seen=set(h), k=config.topk.top_k)
            exps = [explain(ctx, user_id=uid, history=h, item_id=item, n_history=train_cfg.prompt.n_history,
                            n_neighbors=train_cfg.prompt.n_neighbors) for item, _ in picks]
            rows += recommendation_rows(run_date=config.run_date, user_id=uid, picks=picks, explanations=exps,
                                        model_version=config.model_run, created_at=created)
    elapsed = time.perf_counter() - t0
    version = write_partition(warehouse, ds, to_table(rows), run_date=config.run_date, name=TABLE)
    marks = read_watermarks(warehouse, ds)
    marks[config.run_date.isoformat()] = newest
    warehouse.write_bytes(_watermarks_uri(warehouse, ds), json.dumps(marks, indent=1, sort_keys=True).encode())
    return {"users": len(users), "rows": len(rows), "table_version": version, "seconds": elapsed,
            "users_per_second": len(users) / elapsed if elapsed > 0 else None}
