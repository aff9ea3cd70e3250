"""Train, save and load an MMSRARec recommender run (``<warehouse>/<dataset>/models/<run_id>/``).

Two backbones: without ``base_model`` the pretrained CPU default ``minilm-effnet`` (MiniLM + LoRA, EfficientNet
image tokens, interaction block; ``mmsrarec_lib.recommend.encoder_pipeline``); with ``base_model`` any HF
image-text-to-text model (the decoder path below: LoRA SFT, KV-cache shared-prefix scoring).

A decoder run folder holds ``adapter/`` (the LoRA adapter), ``base/`` (the tiny base model when none was given),
``checkpoints/`` (local warehouses; resume after a kill) and ``model.json`` (kind ``mmsrarec``: variant, configs,
training summary, lineage), written last so a folder with ``model.json`` is complete.

Training data follows the evaluation harness' rule (``mmsrarec_lib.eval.protocols.training_data``): protocol
``paper`` = whole sequences of the train users of the user split; ``full`` = every user's sequence without its last
two items. No test target is ever a training target.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from mmsrarec_lib.eval.protocols import hidden_items
from mmsrarec_lib.model_runs import manifest_metrics, record_model_run
from mmsrarec_lib.recommend.context import RecContext, load_context
from mmsrarec_lib.recommend.finetune import finetune
from mmsrarec_lib.recommend.lineage import collect_lineage
from mmsrarec_lib.recommend.prompts import ANSWER_CUE, INSTRUCTION
from mmsrarec_lib.recommend.run_config import (
    KIND,
    TINY_LLAVA,
    RecTrainConfig,
    config_dict,
    latest_generator,
    refuse_complete,
    run_uri,
    start_run,
    training_sequences,
)
from mmsrarec_lib.recommend.tasks import (
    build_grounding,
    build_next_keywords,
    build_recovery,
    build_yesno,
    mix_uniform,
    parse_tasks,
)
from mmsrarec_lib.runs import code_version, new_run_id, utcnow
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)


def build_examples(ctx: RecContext, sequences: dict[str, list[str]], *, config: RecTrainConfig) -> list:
    """The mixed instruction examples of a run (task pools per ``config.tasks``, uniform mix)."""
    tasks = parse_tasks(config.tasks)
    cfg, per = config.prompt, config.positions_per_user
    seqs = {u: [i for i in s if i in ctx.items] for u, s in sequences.items()}
    seqs = {u: s for u, s in seqs.items() if len(s) >= 2}
    neigh = {u: ctx.neighbor_keywords(u, cfg.n_neighbors) for u in seqs}
    pools = {}
    if "yesno" in tasks:
        pools["yesno"] = build_yesno(sequences=seqs, interacted={u: set(sequences[u]) for u in seqs},
                                     neighbors=neigh, items=ctx.items, config=cfg, per_user=per,
                                     seed=config.train.seed)
    if "next_kw" in tasks:
        pools["next_kw"] = build_next_keywords(sequences=seqs, neighbors=neigh, items=ctx.items, config=cfg,
                                               per_user=per)
    if "grounding" in tasks:
        pools["grounding"] = build_grounding(items=ctx.items, descriptions=ctx.descriptions, config=cfg)
    if "recovery" in tasks:
        pools["recovery"] = build_recovery(items=ctx.items, config=cfg)
    n_total = config.train.max_steps * config.train.batch_size
    log.info("task pools: %s -> %d mixed examples", {k: len(v) for k, v in pools.items()}, n_total)
    return mix_uniform(pools, n_total=n_total, seed=config.train.seed)


def build_base_model(ctx: RecContext, out_dir: Path) -> Path:
    """The tiny LLaVA with a tokenizer trained on this dataset's item text and the prompt template."""
    from mmsrarec_lib.mllm.tiny import build_tiny_mllm

    texts = [f"{c.title}. {ctx.descriptions.get(i, '')} {', '.join(ctx.keywords.get(i, []))}"
             for i, c in ctx.items.items()]
    texts += [f"{INSTRUCTION}\nUser history (oldest first):\nSimilar users liked:\nCandidate: Keywords:\n"
              f"{ANSWER_CUE} yes no yes no\nTitle: Item: Describe the item with keywords. Name the item"] * 50
    return build_tiny_mllm(out_dir, texts=texts)


def train_recommender(warehouse: Warehouse, *, config: RecTrainConfig, run_id: str | None = None,
                      progress: bool = True, encoder: Any = None) -> dict:
    """Fine-tune one run end to end and save it; returns its model.json. Same ``run_id`` again = resume.

    ``encoder``: an ``EncoderRunConfig`` for the minilm-effnet backbone (default settings when None). The run is
    recorded in ``model_runs`` (kind ``mmsrarec``): ``running``, then ``complete`` or ``failed``."""
    run_id = run_id or new_run_id(KIND)
    refuse_complete(warehouse, config.dataset, run_id)
    with record_model_run(warehouse, dataset=config.dataset, kind=KIND, run_id=run_id, variant=config.variant,
                          protocol=config.protocol, config=config_dict(config)) as recorder:
        if config.base_model is None:
            from mmsrarec_lib.recommend.encoder_run import train_encoder_recommender

            meta = train_encoder_recommender(warehouse, config=config, run_cfg=encoder, run_id=run_id,
                                             progress=progress)
        else:
            meta = _train_decoder(warehouse, config=config, run_id=run_id, progress=progress)
        recorder.update(metrics=manifest_metrics(meta), lineage=meta.get("lineage"), config=meta.get("config"))
    return meta


def _train_decoder(warehouse: Warehouse, *, config: RecTrainConfig, run_id: str, progress: bool) -> dict:
    """The decoder path of :func:`train_recommender` (``base_model`` given)."""
    from mmsrarec_lib.mllm.loading import load_mllm
    from mmsrarec_lib.recommend.decoder_scoring import PromptEncoder

    ds = config.dataset
    run_id, base_uri, local, work = start_run(warehouse, ds, run_id)
    if local is None and warehouse.exists(f"{base_uri}/checkpoints/latest"):
        warehouse.download_dir(f"{base_uri}/checkpoints", work / "checkpoints")  # resume from object storage
    hidden = hidden_items(warehouse, ds, config.protocol)  # cold protocol: the held-out items, nowhere in training
    ctx = load_context(warehouse, ds, keyword_source=config.keyword_source, neighbor_protocol="paper",
                       hidden_items=hidden, use_neighbors=config.use_neighbors).without_items(hidden)
    generator = config.generator_run or latest_generator(warehouse, ds, config.protocol)
    examples = build_examples(ctx, training_sequences(warehouse, ds, config.protocol), config=config)
    base_model = config.base_model
    if base_model == TINY_LLAVA:
        base_dir = work / "base"
        if not (base_dir / "config.json").exists():
            build_base_model(ctx, base_dir)
            if local is None:
                warehouse.upload_dir(base_dir, f"{base_uri}/base")
        base_model = str(base_dir)
    model, processor = load_mllm(base_model)
    encoder = PromptEncoder(processor)
    prompt = replace(config.prompt, image_token=encoder.image_token, use_image=config.prompt.use_image
                     and encoder.has_images)
    if prompt != config.prompt:
        config = replace(config, prompt=prompt)
        examples = build_examples(ctx, training_sequences(warehouse, ds, config.protocol), config=config)

    def upload(path: Path) -> None:
        if local is None:
            warehouse.upload_dir(path, f"{base_uri}/checkpoints/{path.name}")
            warehouse.write_bytes(f"{base_uri}/checkpoints/latest", path.name.encode())

    model, summary = finetune(model=model, encoder=encoder, examples=examples, images=ctx.image,
                              settings=config.train, checkpoint_dir=work / "checkpoints", on_checkpoint=upload,
                              progress=progress)
    adapter_dir = work / "adapter"
    model.save_pretrained(adapter_dir)
    processor.save_pretrained(adapter_dir)
    if local is None:
        warehouse.upload_dir(adapter_dir, f"{base_uri}/adapter")
    meta = {
        "kind": KIND, "run_id": run_id, "dataset": ds, "variant": config.variant, "protocol": config.protocol,
        "seed": config.train.seed, "generator_run": generator,
        "base_model": "base" if config.base_model == TINY_LLAVA else config.base_model,
        "config": config_dict(config), "training": {k: v for k, v in summary.items() if k != "losses"},
        "loss_curve": summary["losses"][:: max(1, len(summary["losses"]) // 50)],
        "lineage": collect_lineage(warehouse, ds, keyword_source=ctx.keyword_source, index_version=ctx.index_version,
                                   generator_run=generator, base_model=base_model),
        "code_version": code_version(), "created_at": utcnow().isoformat(),
    }
    warehouse.write_bytes(f"{base_uri}/model.json", json.dumps(meta, indent=1, default=str).encode())
    log.info("saved %s run %s (%s, %s) at %s", KIND, run_id, config.variant, config.protocol, base_uri)
    return meta


def load_recommender(warehouse: Warehouse, dataset: str, run_id: str) -> tuple[Any, Any, dict]:
    """(peft model in eval mode, processor, model.json) of a saved run."""
    from peft import PeftModel

    from mmsrarec_lib.mllm.loading import load_mllm
    from mmsrarec_lib.model_runs import read_manifest

    meta = read_manifest(warehouse, dataset, run_id, kind=KIND)  # only a complete run has one
    base_uri = run_uri(warehouse, dataset, run_id)
    if meta.get("backbone") == "minilm-effnet":  # (RecBackbone, EncoderAssets, meta)
        from mmsrarec_lib.recommend.encoder_pipeline import load_encoder_run

        return (*load_encoder_run(warehouse, dataset, run_id, meta), meta)
    local = warehouse.local_path(base_uri)
    folder = local if local is not None else warehouse.download_dir(base_uri, tempfile.mkdtemp(prefix="mmsrarec-"))
    base = str(folder / "base") if meta["base_model"] == "base" else meta["base_model"]
    model, processor = load_mllm(base)
    model = PeftModel.from_pretrained(model, str(folder / "adapter"))
    model.eval()
    return model, processor, meta


