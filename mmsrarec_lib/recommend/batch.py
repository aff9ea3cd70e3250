"""The batch recommender behind ``mmsrarec recommend``: users -> top-K rows, staged, checked, published.

Users: ``all`` = every user of ``user_sequences``; ``changed`` = users with an interaction newer than the
watermark of the previous run (the newest interaction timestamp covered by the latest run whose run_date is
*earlier* than this one; no earlier run -> all users), plus, with content candidates, the users an item added to
the content index since that run now reaches (the new item is among their content top-M'; when that cannot be
known, e.g. the index was rebuilt in full, every user). Using "earlier run_date" makes a rerun of a date pick the
same users, so it replaces that date's partition with the same rows (idempotent). The watermarks are a small JSON
object ``<warehouse>/<dataset>/state/recommend_watermarks.json`` ({run_date: max interaction us}), updated after the
Delta commit; a crash before it leaves the previous state. ``limit_users`` keeps the first N selected users.

Sharding: the selection above is made first, then shard ``I/N`` keeps the users whose stable hash
(:func:`shard_of`: sha256 of the user id, not Python's salted ``hash``) is ``I mod N``. The shards of one
selection are disjoint and together are the whole selection, so N shards publish exactly the rows of one
unsharded run. Each shard is staged (:mod:`mmsrarec_lib.recommend.publish`); ``publish-recommendations`` checks
and commits them. Plain :func:`recommend` stages one shard under a private key, then publishes it.

Prompts use the ``latest`` rows of ``user_collab_keywords`` (neighbours of the user's latest items).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from mmsrarec_lib import tables
from mmsrarec_lib.candidates.union import DEFAULT_CONTENT_POOL
from mmsrarec_lib.recommend.publish import (
    ShardReceipt,
    publish_recommendations,
    read_watermarks,
    selection_fingerprint,
    shards_key,
    write_shard,
)
from mmsrarec_lib.recommend.topk import TopKConfig, to_table
from mmsrarec_lib.runs import new_run_id, utcnow
from mmsrarec_lib.storage import Warehouse, set_commit_context

log = logging.getLogger(__name__)
TABLE = tables.RECOMMENDATIONS
ScoreUsers = Callable[[Sequence[str]], list[dict]]  # user ids -> recommendation rows (schemas.RECOMMENDATIONS)


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0 <= index < count); ``Shard(0, 1)`` is every user."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"--shard I/N needs N >= 1 and 0 <= I < N, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        index, sep, count = text.partition("/")
        if not sep or not index.strip().isdigit() or not count.strip().isdigit():
            raise ValueError(f"--shard must look like I/N (e.g. 0/4), got {text!r}")
        return cls(int(index), int(count))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(user_id: str, count: int) -> int:
    """The shard of ``user_id`` among ``count``: stable across processes, machines and Python versions."""
    return int.from_bytes(hashlib.sha256(user_id.encode("utf-8")).digest()[:8], "big") % count


@dataclass(frozen=True)
class RecommendConfig:
    dataset: str
    model_run: str
    run_date: dt.date
    users: Literal["changed", "all"] = field(default="changed", metadata={
        "help": "changed = users with interactions newer than the previous run's watermark, or reached by a new item"})
    topk: TopKConfig = TopKConfig()
    batch_size: int = field(default=32, metadata={"help": "candidate suffixes per forward pass"})
    limit_users: int | None = field(default=None, metadata={"help": "only the first N selected users (smoke runs)"})
    shard: Shard = Shard()

    def __post_init__(self) -> None:
        if self.users not in ("all", "changed"):
            raise ValueError(f"--users must be 'changed' or 'all', got {self.users!r}")
        if self.limit_users is not None and self.limit_users < 0:
            raise ValueError(f"--limit-users must be >= 0, got {self.limit_users}")


def select_users(warehouse: Warehouse, dataset: str, *, mode: str, run_date: dt.date, content_m: int = 0,
                 content_pool: str = DEFAULT_CONTENT_POOL) -> tuple[list[str], int]:
    """(users to recommend for, newest interaction timestamp in us) for ``mode`` (see the module docstring)."""
    item_col = ["item_id"] if content_m and content_pool == "unscored" and mode == "changed" else []
    inter = warehouse.read_table(dataset, tables.INTERACTIONS, columns=["user_id", "timestamp", *item_col])
    ts = pc.cast(inter.column("timestamp"), "int64")
    newest = int(pc.max(ts).as_py())
    all_users = sorted(set(warehouse.read_table(dataset, tables.USER_SEQUENCES, columns=["user_id"])
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
    if content_m:
        bought = inter.column("item_id") if item_col else None
        reached = users_reached_by_new_items(warehouse, dataset, since_date=max(earlier), m=content_m,
                                             bought=bought)
        changed = set(all_users) if reached is None else changed | reached
    return [u for u in all_users if u in changed], newest


def users_reached_by_new_items(warehouse: Warehouse, dataset: str, *, since_date: str, m: int,
                               bought: pa.ChunkedArray | None = None) -> set[str] | None:
    """Users with an item added to the content index after the ``since_date`` run among their content top-``m``
    (None: unknown, recommend for everyone). With ``bought`` (the interactions' item ids: the ``unscored`` pool) the
    search covers the new items and the items nobody interacted with: at most the items SASRec cannot score, so no
    reached user is missed."""
    import pyarrow.dataset as pads

    from mmsrarec_lib.candidates.store import items_added_since, load_content_index

    if not warehouse.has_table(dataset, tables.RECOMMENDATIONS):
        return None
    done = warehouse.read_table(dataset, tables.RECOMMENDATIONS, columns=["created_at"],
                                filter=pads.field("run_date") == dt.date.fromisoformat(since_date))
    if not done.num_rows:
        return None
    new = items_added_since(warehouse, dataset, pc.max(done.column("created_at")).as_py().isoformat())
    if not new:
        if new is None:
            log.info("items added to the content index since %s are unknown: every user", since_date)
        return new
    seqs = warehouse.read_table(dataset, tables.USER_SEQUENCES, columns=["user_id", "item_ids"]).to_pylist()
    hists = [list(r["item_ids"]) for r in seqs]
    index = load_content_index(warehouse, dataset)
    if bought is not None:
        had = set(pc.unique(bought).to_pylist())
        index = index.subset([i for i in index.item_ids if i in new or i not in had])
    near = index.candidates(hists, m=m, exclude=[set(h) for h in hists])
    reached = {r["user_id"] for r, cands in zip(seqs, near, strict=True) if any(i in new for i, _ in cands)}
    log.info("%d new items since the %s run reach %d users through content candidates", len(new), since_date,
             len(reached))
    return reached


def load_scorer(warehouse: Warehouse, *, config: RecommendConfig, progress: bool = True,
                n_content: int | None = None) -> ScoreUsers:
    """The stage-3 scorer of ``config.model_run``: SASRec's top-M ∪ the content index's top-M' -> MLLM rerank ->
    top-K + explanations. Items added after SASRec was trained reach the list through the content index (their
    SASRec score is missing, see ``recommend.fusion.fuse``)."""
    from tqdm.auto import tqdm

    from mmsrarec_lib.candidates.union import candidate_source
    from mmsrarec_lib.models.baselines import load_baseline
    from mmsrarec_lib.recommend.context import load_context
    from mmsrarec_lib.recommend.fusion import ScoringConfig
    from mmsrarec_lib.recommend.reranker import MllmReranker
    from mmsrarec_lib.recommend.run_config import config_from_dict
    from mmsrarec_lib.recommend.topk import explain, recommendation_rows, select_top_k
    from mmsrarec_lib.recommend.training import load_recommender

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
    seqs = {r["user_id"]: list(r["item_ids"]) for r in
            warehouse.read_table(ds, tables.USER_SEQUENCES, columns=["user_id", "item_ids"]).to_pylist()}
    source = candidate_source(warehouse, ds, generator, top_m=config.topk.top_m,
                              content_m=content_m(warehouse, ds, config.topk) if n_content is None else n_content,
                              content_pool=config.topk.content_pool)

    def score(users: Sequence[str]) -> list[dict]:
        created = utcnow()
        rows: list[dict] = []
        for start in tqdm(range(0, len(users), 64), desc="recommend", unit="64 users", disable=not progress):
            chunk = list(users[start : start + 64])
            hists = [seqs.get(u, []) for u in chunk]
            cands = source.generate(hists)
            for uid, h, c, (_, final) in zip(chunk, hists, cands, reranker.score_users(chunk, hists, cands),
                                             strict=True):
                picks = select_top_k(c, final, seen=set(h), k=config.topk.top_k, fresh=source.fresh,
                                     fresh_slots=config.topk.fresh_slots)
                exps = [explain(ctx, user_id=uid, history=h, item_id=item, n_history=train_cfg.prompt.n_history,
                                n_neighbors=train_cfg.prompt.n_neighbors) for item, _ in picks]
                rows += recommendation_rows(run_date=config.run_date, user_id=uid, picks=picks, explanations=exps,
                                            model_version=config.model_run, created_at=created)
            if not progress:
                log.info("scored %d of %d users", min(start + 64, len(users)), len(users))
        return rows

    return score


def content_m(warehouse: Warehouse, dataset: str, topk: TopKConfig) -> int:
    """``topk.content_m``, or 0 with a warning when the dataset has no content index yet."""
    from mmsrarec_lib.candidates.store import latest_content_version

    if topk.content_m and latest_content_version(warehouse, dataset) is None:
        log.warning("no content index for %r (run `mmsrarec index-content --dataset %s`): candidates come from "
                    "SASRec alone, so items without interactions cannot be recommended", dataset, dataset)
        return 0
    return topk.content_m


def stage_recommendations(
    warehouse: Warehouse,
    *,
    config: RecommendConfig,
    key: str | None = None,
    score_users: ScoreUsers | None = None,
    progress: bool = True,
) -> dict:
    """Score this shard's users and stage their rows (see the module docstring); returns counts and throughput."""
    ds, shard = config.dataset, config.shard
    set_commit_context(run_date=config.run_date.isoformat(), model_run=config.model_run, shard=str(shard))
    n_content = content_m(warehouse, ds, config.topk)  # once: the selection and the scorer agree, one warning
    selected, newest = select_users(warehouse, ds, mode=config.users, run_date=config.run_date, content_m=n_content,
                                    content_pool=config.topk.content_pool)
    if config.limit_users is not None:
        selected = selected[: config.limit_users]
    mine = [u for u in selected if shard_of(u, shard.count) == shard.index]
    log.info("shard %s of %s: %d of %d selected users", shard, config.run_date, len(mine), len(selected))
    t0 = time.perf_counter()
    if mine:
        score_users = score_users or load_scorer(warehouse, config=config, progress=progress, n_content=n_content)
        rows = score_users(mine)
    else:
        rows = []
    elapsed = time.perf_counter() - t0
    receipt = ShardReceipt(shard=shard.index, shards=shard.count, run_date=config.run_date.isoformat(),
                           selection_sha256=selection_fingerprint(selected), selected_users=len(selected),
                           users=tuple(mine), rows=len(rows), parquet_sha256="", model_run=config.model_run,
                           top_k=config.topk.top_k, newest_interaction_us=newest, created_at=utcnow().isoformat())
    folder = write_shard(warehouse, ds, rows=to_table(rows), receipt=receipt, key=key or shards_key(shard.count))
    return {"shard": str(shard), "selected_users": len(selected), "users": len(mine), "rows": len(rows),
            "seconds": elapsed, "users_per_second": len(mine) / elapsed if elapsed > 0 and mine else None,
            "staging": folder}


def recommend(
    warehouse: Warehouse, *, config: RecommendConfig, score_users: ScoreUsers | None = None, progress: bool = True
) -> dict:
    """Unsharded: score every selected user, stage, check and publish the run_date partition in one commit."""
    if config.shard.count != 1:
        raise ValueError(f"recommend() scores every user; stage shard {config.shard} with stage_recommendations")
    key = f"run-{new_run_id()}"  # private to this process: a concurrent run of the date never reads it half-done
    staged = stage_recommendations(warehouse, config=config, key=key, score_users=score_users, progress=progress)
    # a failed check raises here and leaves the staged rows for inspection (the maintenance job prunes them)
    out = publish_recommendations(warehouse, config.dataset, run_date=config.run_date, shards=1, key=key)
    warehouse.delete_dir(staged["staging"])
    return {**out, "seconds": staged["seconds"], "users_per_second": staged["users_per_second"]}
