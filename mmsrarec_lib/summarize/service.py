"""Assembling summarizers from options: items, the tiny MLLM, encoders, scorers, saved policies and models.

Trained artefacts live under ``<warehouse>/<dataset>/models/<run_id>/`` (``policy.json`` + ``policy.pt`` for the
extractive text policy, ``image/policy.json`` + ``image/policy.pt`` for the extractive image policy, ``model/`` for a
GRPO-tuned MLLM); local copies of remote folders are cached under
``$MMSRAREC_CACHE`` (default ``~/.cache/mmsrarec``).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from mmsrarec_lib import tables
from mmsrarec_lib.model_runs import ModelRunNotFound, latest_complete_run
from mmsrarec_lib.storage import Warehouse
from mmsrarec_lib.summarize.backends import ExtractiveSummarizer, MllmSummarizer
from mmsrarec_lib.summarize.encoders import make_encoder
from mmsrarec_lib.summarize.policy import PolicyConfig, SelectionPolicy
from mmsrarec_lib.summarize.rewards import KeywordCacheLM, MllmScorer, RewardConfig
from mmsrarec_lib.summarize.types import ItemInput, items_from_table

log = logging.getLogger(__name__)
TINY = "tiny"  # --model tiny: the dataset's tiny LLaVA, built on first use
TINY_DIR = "tiny-mllm"


def load_items(warehouse: Warehouse, dataset: str, *, limit: int | None = None) -> list[ItemInput]:
    """Items of ``dataset`` in item_id order (first ``limit`` when given)."""
    table = warehouse.read_table(dataset, tables.ITEMS)
    items = sorted(items_from_table(table), key=lambda it: (len(it.item_id), it.item_id))
    if not items:
        raise ValueError(f"the items table of {dataset!r} is empty")
    return items[:limit] if limit else items


def models_uri(warehouse: Warehouse, dataset: str, name: str) -> str:
    return warehouse.uri(dataset, "models", name)


def local_copy(warehouse: Warehouse, uri: str) -> Path:
    """A local folder with the objects under ``uri`` (the folder itself for a local warehouse)."""
    local = warehouse.local_path(uri)
    if local is not None:
        if not local.exists():
            raise FileNotFoundError(f"{uri} does not exist")
        return local
    cache = Path(os.environ.get("MMSRAREC_CACHE", Path.home() / ".cache" / "mmsrarec"))
    target = cache / uri.replace("://", "/").replace("/", "_")
    if not target.exists():
        warehouse.download_dir(uri, target)
    return target


def ensure_tiny_mllm(warehouse: Warehouse, dataset: str, items: list[ItemInput]) -> Path:
    """The dataset's tiny LLaVA (tokenizer trained on the items' text), built once under models/tiny-mllm/."""
    from mmsrarec_lib.mllm import build_tiny_mllm

    uri = models_uri(warehouse, dataset, TINY_DIR)
    if warehouse.exists(uri + "/config.json"):
        return local_copy(warehouse, uri)
    texts = [it.text for it in items]
    local = warehouse.local_path(uri)
    if local is not None:
        return build_tiny_mllm(local, texts=texts)
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_mllm(Path(tmp) / "m", texts=texts)
        warehouse.upload_dir(Path(tmp) / "m", uri)
    return local_copy(warehouse, uri)


def resolve_model(warehouse: Warehouse, dataset: str, *, model: str | None, policy_run: str | None,
                  items: list[ItemInput]) -> str:
    """``--policy-run`` (a GRPO-tuned model under models/<run>/model) wins, then ``--model`` (``tiny``, a hub
    id or a path); default ``tiny``."""
    if policy_run:
        uri = models_uri(warehouse, dataset, policy_run) + "/model"
        if not warehouse.exists(uri + "/config.json"):
            raise FileNotFoundError(f"run {policy_run!r} has no tuned MLLM at {uri}")
        return str(local_copy(warehouse, uri))
    if model in (None, TINY):
        return str(ensure_tiny_mllm(warehouse, dataset, items))
    return model


def latest_policy_run(warehouse: Warehouse, dataset: str) -> str | None:
    """The extractive policy ``summarize`` uses by default (:func:`mmsrarec_lib.model_runs.latest_complete_run`);
    None when no complete one exists."""
    try:
        return latest_complete_run(warehouse, dataset=dataset, kind="summarizer", variant="extractive")
    except ModelRunNotFound:
        return None


def load_policy(warehouse: Warehouse, dataset: str, *, policy_run: str | None) -> tuple[SelectionPolicy, str | None]:
    """The named policy run, else the latest trained one, else an untrained policy (with a warning)."""
    run = policy_run or latest_policy_run(warehouse, dataset)
    if run is None:
        log.warning("no trained selection policy for %s: using an untrained one (run train-summarizer)", dataset)
        return SelectionPolicy(PolicyConfig()), None
    uri = models_uri(warehouse, dataset, run)
    if not warehouse.exists(uri + "/policy.json"):
        raise FileNotFoundError(f"run {run!r} has no selection policy at {uri}")
    return SelectionPolicy.load(local_copy(warehouse, uri)), run


def load_image_policy(warehouse: Warehouse, dataset: str, *, run: str | None) -> SelectionPolicy:
    """The image policy saved with ``run`` (``image/``), else an untrained one (with a warning)."""
    from mmsrarec_lib.summarize.image_keywords import IMAGE_FEATURES

    if run is not None:
        uri = models_uri(warehouse, dataset, run) + "/image"
        if warehouse.exists(uri + "/policy.json"):
            return SelectionPolicy.load(local_copy(warehouse, uri), features=IMAGE_FEATURES)
    log.warning("no trained image selection policy for %s (run %s): using an untrained one", dataset, run)
    return SelectionPolicy(PolicyConfig(), features=IMAGE_FEATURES)


def reward_config_from(meta_dir: Path | None, default: RewardConfig) -> RewardConfig:
    """The reward config a policy was trained with (``reward.json`` beside it), else ``default``."""
    if meta_dir and (meta_dir / "reward.json").exists():
        return RewardConfig(**json.loads((meta_dir / "reward.json").read_text()))
    return default


def build_summarizer(
    warehouse: Warehouse,
    dataset: str,
    *,
    backend: str,
    items: list[ItemInput],
    catalogue: list[ItemInput],
    model: str | None = None,
    image_model: str | None = None,
    image_encoder: str | None = "efficientnet-lite0",
    policy_run: str | None = None,
    encoder_name: str = "minilm",
    reward_config: RewardConfig = RewardConfig(),
    batch_size: int = 16,
    device: str | None = None,
):
    """An ``ExtractiveSummarizer`` or ``MllmSummarizer`` configured from CLI-level options.

    ``catalogue`` (all items) trains the extractive R_recon LM and fits the image<->text maps, so a backfill of a
    few items scores like a full run. Extractive image keywords come from ``image_model`` (an MLLM) when given,
    else from the pretrained ``image_encoder``'s features (None: text keywords only).
    """
    from mmsrarec_lib.mllm import load_mllm

    encoder = make_encoder(encoder_name)
    if backend == "extractive":
        policy, run = load_policy(warehouse, dataset, policy_run=policy_run)
        image = None
        if not image_model and image_encoder:
            from mmsrarec_lib.summarize.image_context import build_image_context
            from mmsrarec_lib.summarize.image_keywords import ImageExtractiveSummarizer

            ctx = build_image_context(warehouse, dataset, catalogue=catalogue, encoder=encoder,
                                      reward_config=reward_config, image_encoder=image_encoder, device=device)
            if ctx is not None:
                image = ImageExtractiveSummarizer(policy=load_image_policy(warehouse, dataset, run=run),
                                                  builder=ctx.builder, scorer=ctx.scorer)
        if image_model:
            path = resolve_model(warehouse, dataset, model=image_model, policy_run=None, items=catalogue)
            m, proc = load_mllm(path, device=device)
            image = MllmSummarizer(model=m, processor=proc, encoder=encoder, scorer=MllmScorer(m, proc),
                                   reward_config=reward_config, modalities=("image",), batch_size=batch_size)
        scorer = KeywordCacheLM(texts=[it.text for it in catalogue])
        return ExtractiveSummarizer(policy=policy, encoder=encoder, scorer=scorer, reward_config=reward_config,
                                    image_summarizer=image)
    if backend == "mllm":
        path = resolve_model(warehouse, dataset, model=model, policy_run=policy_run, items=catalogue)
        m, proc = load_mllm(path, device=device)
        return MllmSummarizer(model=m, processor=proc, encoder=encoder, scorer=MllmScorer(m, proc),
                              reward_config=reward_config, batch_size=batch_size)
    raise ValueError(f"unknown backend {backend!r}: use extractive or mllm")
