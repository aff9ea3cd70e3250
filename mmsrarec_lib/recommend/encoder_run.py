"""One ``minilm-effnet`` run end to end: read the tables, train (resumable), choose the fusion weight on
validation users, save ``model.json`` with configs, training summary, fusion record and lineage.

Until ``model.json`` is written, ``checkpoints/`` (Trainer checkpoints) lets a killed run resume with the same
``--run-id`` (on a local warehouse); a complete run deletes them and keeps ``backbone.safetensors`` + ``tokenizer/``.
On object storage the run trains in a local temp folder and uploads only those two."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace

from mmsrarec_lib.eval.protocols import hidden_items
from mmsrarec_lib.models.minilm_effnet import NAME
from mmsrarec_lib.recommend.encoder_pipeline import (
    EncoderRunConfig,
    choose_fusion_weight,
    make_reranker,
    sasrec_dim,
    train_encoder_run,
)
from mmsrarec_lib.runs import code_version, utcnow
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)


def train_encoder_recommender(warehouse: Warehouse, *, config, run_cfg: EncoderRunConfig | None = None,
                              run_id: str | None = None, progress: bool = True) -> dict:
    """Train, choose the fusion weight and save one minilm-effnet run; returns its model.json."""
    from mmsrarec_lib.models.baselines import load_baseline
    from mmsrarec_lib.recommend.context import load_context
    from mmsrarec_lib.recommend.fusion import history_index
    from mmsrarec_lib.recommend.lineage import collect_lineage
    from mmsrarec_lib.recommend.run_config import KIND, config_dict, latest_generator, start_run, training_sequences
    from mmsrarec_lib.recommend.tasks import parse_tasks

    ds = config.dataset
    run_id, base_uri, local, work = start_run(warehouse, ds, run_id)
    run_cfg = run_cfg or EncoderRunConfig()
    generator = config.generator_run or latest_generator(warehouse, ds, config.protocol)
    backbone = replace(run_cfg.backbone, id_dim=sasrec_dim(warehouse, ds, generator) if config.id_token else 0)
    from mmsrarec_lib.eval.protocols import TRAINING_PROTOCOL

    train = replace(run_cfg.train, seed=config.train.seed).for_protocol(
        TRAINING_PROTOCOL.get(config.protocol, config.protocol))
    run_cfg = replace(run_cfg, backbone=backbone, train=train)
    hidden = hidden_items(warehouse, ds, config.protocol)  # cold protocol: the held-out items, nowhere in training
    scoring_ctx = load_context(warehouse, ds, keyword_source=config.keyword_source, neighbor_protocol="paper",
                               hidden_items=hidden, use_neighbors=config.use_neighbors)
    ctx = scoring_ctx.without_items(hidden)  # training never samples a held-out item, not even as a negative
    tasks = parse_tasks(config.tasks)
    sequences = training_sequences(warehouse, ds, config.protocol)
    model, tokenizer, features, summary = train_encoder_run(
        warehouse, ctx=ctx, sequences=sequences, run_cfg=run_cfg, tasks=tasks, generator_run=generator, dataset=ds,
        work=work, progress=progress)
    fusion = {"weight": config.fusion_weight, "chosen_on": "given"}
    if config.choose_fusion:
        from mmsrarec_lib.recommend.encoder_pipeline import EncoderAssets

        index = history_index(warehouse, ds, config.protocol)
        gen = load_baseline(warehouse, ds, generator).scorer
        reranker = make_reranker(model, EncoderAssets(tokenizer, features, run_cfg.prompt, {}), context=scoring_ctx,
                                 generator=gen, user_of=lambda h: index.get(tuple(h)), progress=progress)
        fusion = choose_fusion_weight(warehouse, ds, reranker=reranker, generator=gen, protocol=config.protocol,
                                      max_users=run_cfg.fusion_users)
        config = replace(config, fusion_weight=fusion["weight"])
    if local is None:  # the trained parts only: checkpoints serve a resume of this process's local folder
        for part in ("backbone.safetensors", "tokenizer"):
            path = work / part
            if path.is_dir():
                warehouse.upload_dir(path, f"{base_uri}/{part}")
            else:
                warehouse.write_bytes(f"{base_uri}/{part}", path.read_bytes())
    meta = {
        "kind": KIND, "backbone": NAME, "run_id": run_id, "dataset": ds, "variant": config.variant,
        "protocol": config.protocol, "seed": config.train.seed, "base_model": NAME, "generator_run": generator,
        "config": config_dict(config), "encoder": run_cfg.to_dict(), "fusion": fusion,
        "training": {k: v for k, v in summary.items() if k != "loss_curve"},
        "loss_curve": summary["loss_curve"],
        "lineage": {**collect_lineage(warehouse, ds, keyword_source=ctx.keyword_source,
                                      index_version=ctx.index_version, generator_run=generator, base_model=NAME),
                    "image_features": run_cfg.image_encoder if features.image else None,
                    "n_image_features": len(features.image)},
        "code_version": code_version(), "created_at": utcnow().isoformat(),
    }
    warehouse.write_bytes(f"{base_uri}/model.json", json.dumps(meta, indent=1, default=str).encode())
    shutil.rmtree(work / "checkpoints", ignore_errors=True)  # complete: no resume needed (~200 MB of full states)
    log.info("saved %s run %s (%s, %s, %s) at %s: %.1f s training, fusion weight %s", KIND, run_id, NAME,
             config.variant, config.protocol, base_uri, summary["train_seconds"], config.fusion_weight)
    return meta
