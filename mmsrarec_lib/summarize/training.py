"""``train-summarizer``: GRPO for the extractive selection policy or a LoRA-tuned MLLM, with before/after metrics,
per-step logs and a PNG of the reward curves, saved under ``<warehouse>/<dataset>/models/<run_id>/``."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mmsrarec_lib.model_runs import record_model_run
from mmsrarec_lib.storage import Warehouse
from mmsrarec_lib.summarize.grpo import GrpoConfig, MllmGrpoConfig
from mmsrarec_lib.summarize.rewards import RewardConfig, score_keywords
from mmsrarec_lib.summarize.types import ItemInput

log = logging.getLogger(__name__)
TERMS = ("reward", "r_info", "r_recon", "r_len")


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    run_uri: str
    curve_png: str
    before: dict
    after: dict
    history: list
    image: dict | None = None  # the image policy's {"before", "after"} (extractive, when images were there)


def mean_terms(terms) -> dict:
    rows = [t if isinstance(t, dict) else asdict(t) for t in terms]
    return {k: float(np.mean([r[k] for r in rows])) for k in TERMS}


def plot_curves(history: list[dict], path: Path, *, title: str) -> Path:
    """PNG of the mean reward and its three terms per GRPO step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    for k, style in zip(TERMS, ("-", "--", "-.", ":")):
        ax.plot(steps, [h[k] for h in history], style, label=k, linewidth=2 if k == "reward" else 1.2)
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean over samples")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _split(items: list[ItemInput], *, eval_items: int, seed: int) -> tuple[list[ItemInput], list[ItemInput]]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(items))
    n_eval = min(eval_items, max(1, len(items) // 5))
    return [items[i] for i in order[n_eval:]], [items[i] for i in order[:n_eval]]


def _finish(warehouse: Warehouse, dataset: str, *, run_id: str, local: Path, history, before, after,
            meta) -> TrainResult:
    with (local / "history.jsonl").open("w") as f:
        for row in history:
            f.write(json.dumps(row) + "\n")
    (local / "metrics.json").write_text(json.dumps({"before": before, "after": after, **meta}, indent=2))
    plot_curves(history, local / "reward_curve.png", title=f"{meta['backend']} GRPO on {dataset}")
    uri = warehouse.uri(dataset, "models", run_id)
    if warehouse.local_path(uri) != local:
        warehouse.upload_dir(local, uri)
    return TrainResult(run_id, uri, uri + "/reward_curve.png", before, after, history, meta.get("image"))


def _run_dir(warehouse: Warehouse, uri: str, tmp: str) -> Path:
    local = warehouse.local_path(uri) or Path(tmp) / "run"
    local.mkdir(parents=True, exist_ok=True)
    return local


def train_image_policy(ctx, items: list[ItemInput], *, reward_config: RewardConfig, grpo: GrpoConfig,
                       eval_items: int = 200):
    """GRPO on the image selection policy (``ImageKeywordContext`` candidates and rewards); returns
    (policy, before, after, history), or None when fewer than 2 items have an image feature."""
    from mmsrarec_lib.summarize.grpo import train_selection_policy
    from mmsrarec_lib.summarize.image_keywords import IMAGE_FEATURES
    from mmsrarec_lib.summarize.policy import PolicyConfig, SelectionPolicy

    usable = [it for it in items if it.has_input("image") and it.item_id in ctx.space]
    if len(usable) < 2:
        return None
    train, held = _split(usable, eval_items=eval_items, seed=grpo.seed)
    log.info("image candidates for %d items", len(usable))
    cand_train = [ctx.builder.build(it.item_id) for it in train]
    cand_held = [ctx.builder.build(it.item_id) for it in held]
    policy = SelectionPolicy(PolicyConfig(n_max=reward_config.n_max, seed=grpo.seed), features=IMAGE_FEATURES)

    def evaluate() -> dict:
        chosen = [policy.select(c.phrases, c.features)[0] for c in cand_held]
        out = mean_terms(ctx.scorer.score(chosen, [it.item_id for it in held]))
        out["n_keywords"] = float(np.mean([len(c) for c in chosen]))
        return out

    def reward_fn(i: int, kw_lists: list[list[str]]) -> list[dict]:
        terms = ctx.scorer.score(kw_lists, [train[i].item_id] * len(kw_lists))
        return [{**asdict(t), "n_keywords": len(k)} for t, k in zip(terms, kw_lists)]

    before = evaluate()
    history = train_selection_policy(policy, cand_train, reward_fn, config=grpo,
                                     on_step=lambda r: log.info("image step %(step)d reward %(reward).4f info "
                                                                "%(r_info).4f recon %(r_recon).4f len %(r_len).4f", r))
    return policy, before, evaluate(), history


def _recorded(warehouse: Warehouse, dataset: str, *, run_id: str, backend: str, config: dict, train) -> TrainResult:
    """``train()`` as a ``model_runs`` run of kind ``summarizer`` (variant = backend): complete with the held-out
    before/after rewards, or failed when it raises."""
    with record_model_run(warehouse, dataset=dataset, kind="summarizer", run_id=run_id, variant=backend,
                          config=config, lineage={"table_versions.items": warehouse.table_version(dataset, "items")}
                          ) as recorder:
        result = train()
        recorder.update(metrics={"before": result.before, "after": result.after,
                                 "image": result.image or {}}, artefact_uri=result.run_uri)
    return result


def train_extractive(
    warehouse: Warehouse, dataset: str, *, items: list[ItemInput], run_id: str, encoder,
    reward_config: RewardConfig, grpo: GrpoConfig, eval_items: int = 200, image_context=None,
) -> TrainResult:
    """GRPO on the text selection policy over ``items`` and, with ``image_context``, on the image policy (saved
    under ``image/``); before/after measured on held-out samples (``metrics.json``: text at the top level, image
    under ``image``). Recorded in ``model_runs`` (kind summarizer, variant extractive)."""
    config = {"grpo": asdict(grpo), "reward": asdict(reward_config), "encoder": getattr(encoder, "name", "?"),
              "images": image_context is not None}
    return _recorded(warehouse, dataset, run_id=run_id, backend="extractive", config=config, train=lambda: _extractive(
        warehouse, dataset, items=items, run_id=run_id, encoder=encoder, reward_config=reward_config, grpo=grpo,
        eval_items=eval_items, image_context=image_context))


def _extractive(warehouse: Warehouse, dataset: str, *, items: list[ItemInput], run_id: str, encoder,
                reward_config: RewardConfig, grpo: GrpoConfig, eval_items: int, image_context) -> TrainResult:
    from mmsrarec_lib.summarize.candidates import extract_candidates
    from mmsrarec_lib.summarize.grpo import train_selection_policy
    from mmsrarec_lib.summarize.policy import PolicyConfig, SelectionPolicy
    from mmsrarec_lib.summarize.rewards import KeywordCacheLM

    scorer = KeywordCacheLM(texts=[it.text for it in items])
    train, held = _split(items, eval_items=eval_items, seed=grpo.seed)
    log.info("extracting candidates for %d items", len(items))
    cand_train = extract_candidates(train, encoder=encoder)
    cand_held = extract_candidates(held, encoder=encoder)
    policy = SelectionPolicy(PolicyConfig(n_max=reward_config.n_max, seed=grpo.seed))
    encoder.encode([it.reference for it in items])  # one batched call; the rewards then hit the cache

    def evaluate() -> dict:
        chosen = [policy.select(c.phrases, c.features)[0] for c in cand_held]
        out = mean_terms(score_keywords(chosen, [it.reference for it in held], encoder=encoder, scorer=scorer,
                                        config=reward_config))
        out["n_keywords"] = float(np.mean([len(c) for c in chosen]))
        return out

    def reward_fn(i: int, kw_lists: list[list[str]]) -> list[dict]:
        terms = score_keywords(kw_lists, [train[i].reference] * len(kw_lists), encoder=encoder, scorer=scorer,
                               config=reward_config)
        return [{**asdict(t), "n_keywords": len(k)} for t, k in zip(terms, kw_lists)]

    before = evaluate()
    history = train_selection_policy(policy, cand_train, reward_fn, config=grpo,
                                     on_step=lambda r: log.info("step %(step)d reward %(reward).4f info %(r_info).4f "
                                                                "recon %(r_recon).4f len %(r_len).4f", r))
    after = evaluate()
    image = train_image_policy(image_context, items, reward_config=reward_config, grpo=grpo,
                               eval_items=eval_items) if image_context is not None else None
    uri = warehouse.uri(dataset, "models", run_id)
    with tempfile.TemporaryDirectory() as tmp:
        local = _run_dir(warehouse, uri, tmp)
        policy.save(local)
        (local / "reward.json").write_text(json.dumps(asdict(reward_config)))
        meta = {"backend": "extractive", "grpo": asdict(grpo), "reward": asdict(reward_config),
                "encoder": getattr(encoder, "name", "?"), "train_items": len(train), "eval_items": len(held)}
        if image is not None:
            image_policy, image_before, image_after, image_history = image
            image_policy.save(local / "image")
            with (local / "image" / "history.jsonl").open("w") as f:
                f.writelines(json.dumps(row) + "\n" for row in image_history)
            plot_curves(image_history, local / "image" / "reward_curve.png",
                        title=f"extractive image-keyword GRPO on {dataset}")
            meta["image"] = {"before": image_before, "after": image_after}
            log.info("image policy: reward %.4f -> %.4f on held-out items", image_before["reward"],
                     image_after["reward"])
        return _finish(warehouse, dataset, run_id=run_id, local=local, history=history, before=before, after=after,
                       meta=meta)


def train_mllm(
    warehouse: Warehouse, dataset: str, *, items: list[ItemInput], run_id: str, model_path: str, encoder,
    reward_config: RewardConfig, grpo: MllmGrpoConfig, modality: str = "image", eval_items: int = 32,
    device: str | None = None,
) -> TrainResult:
    """LoRA GRPO on an MLLM for one modality; R_recon from the same model with the adapter disabled (frozen
    reference). Saves the merged model under models/<run_id>/model/ (``summarize --policy-run <run_id>``).
    Recorded in ``model_runs`` (kind summarizer, variant mllm)."""
    config = {"grpo": asdict(grpo), "reward": asdict(reward_config), "base_model": model_path, "modality": modality}
    return _recorded(warehouse, dataset, run_id=run_id, backend="mllm", config=config, train=lambda: _mllm(
        warehouse, dataset, items=items, run_id=run_id, model_path=model_path, encoder=encoder,
        reward_config=reward_config, grpo=grpo, modality=modality, eval_items=eval_items, device=device))


def _mllm(warehouse: Warehouse, dataset: str, *, items: list[ItemInput], run_id: str, model_path: str, encoder,
          reward_config: RewardConfig, grpo: MllmGrpoConfig, modality: str, eval_items: int,
          device: str | None) -> TrainResult:
    from mmsrarec_lib.mllm import load_mllm
    from mmsrarec_lib.summarize.backends import SYSTEM_PROMPT, MllmSummarizer, decode_image
    from mmsrarec_lib.summarize.grpo import add_lora, train_mllm_grpo
    from mmsrarec_lib.summarize.parsing import parse_keywords
    from mmsrarec_lib.summarize.rewards import MllmScorer

    usable = [it for it in items if it.has_input(modality)]
    if len(usable) < 2:
        raise ValueError(f"need at least 2 items with {modality} input to train, found {len(usable)}")
    train, held = _split(usable, eval_items=eval_items, seed=grpo.seed)
    model, processor = load_mllm(model_path, device=device)
    peft_model = add_lora(model, r=grpo.lora_r, alpha=grpo.lora_alpha)
    scorer = _FrozenScorer(MllmScorer(peft_model, processor), peft_model)
    summ = MllmSummarizer(model=peft_model, processor=processor, encoder=encoder, scorer=scorer,
                          reward_config=reward_config, modalities=(modality,), max_new_tokens=grpo.max_new_tokens)

    def evaluate() -> dict:
        res = summ.summarize_modality(held, modality)
        out = mean_terms([asdict(r) for r in res])
        out["n_keywords"] = float(np.mean([len(r.keywords) for r in res]))
        return out

    def reward_fn(i: int, completions: list[str]) -> list[dict]:
        kws = [parse_keywords(c, max_keywords=reward_config.n_max) for c in completions]
        terms = score_keywords(kws, [train[i].reference] * len(kws), encoder=encoder, scorer=scorer,
                               config=reward_config)
        return [{**asdict(t), "n_keywords": len(k)} for t, k in zip(terms, kws)]

    before = evaluate()
    prompts = [summ.prompt(it, modality) for it in train]
    images = [decode_image(it.image_bytes) for it in train] if modality == "image" else None
    history = train_mllm_grpo(peft_model, processor, prompts=prompts, images=images, reward_fn=reward_fn,
                              config=grpo, system=SYSTEM_PROMPT,
                              on_step=lambda r: log.info("step %(step)d reward %(reward).4f info %(r_info).4f "
                                                         "recon %(r_recon).4f len %(r_len).4f", r))
    after = evaluate()
    uri = warehouse.uri(dataset, "models", run_id)
    with tempfile.TemporaryDirectory() as tmp:
        local = _run_dir(warehouse, uri, tmp)
        merged = peft_model.merge_and_unload()
        merged.save_pretrained(local / "model")
        processor.save_pretrained(local / "model")
        meta = {"backend": "mllm", "modality": modality, "base_model": model_path, "grpo": asdict(grpo),
                "reward": asdict(reward_config), "train_items": len(train), "eval_items": len(held)}
        return _finish(warehouse, dataset, run_id=run_id, local=local, history=history, before=before, after=after,
                       meta=meta)


class _FrozenScorer:
    """Runs an ``MllmScorer`` with the LoRA adapter disabled: R_recon under the frozen reference model."""

    def __init__(self, scorer, peft_model) -> None:
        self.scorer = scorer
        self.peft_model = peft_model
        self.vocab_size = scorer.vocab_size

    def nll(self, *, keywords, targets):
        with self.peft_model.disable_adapter():
            return self.scorer.nll(keywords=keywords, targets=targets)
