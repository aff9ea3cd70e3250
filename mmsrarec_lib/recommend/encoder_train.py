"""Training the ``minilm-effnet`` backbone with ``transformers.Trainer`` on the four instruction tasks.

The four tasks in their discriminative (encoder) form, all computed on every batch of B training positions
(user history -> next item), each with equal weight (``--tasks yesno`` keeps task 1 only):

1. ``yesno``: the next item (yes) and ``negatives`` never-interacted items (no) per position, scored by the
   backbone exactly as at inference (cached user part, one block pass per candidate); loss = the two-way
   cross-entropy of the yes/no readout (positives and negatives averaged separately, i.e. 1:1) + a listwise
   cross-entropy of logit(p) over the position's candidates;
2. ``next_kw``: choose the next item's keywords among the batch's next items' keywords (user text encoding vs
   keyword-text encodings, in-batch softmax);
3. ``grounding``: choose an item's keywords from its image (projected image tokens vs keyword encodings);
4. ``recovery``: choose an item's title from its keywords (keyword vs title encodings).

Training positions follow the harness' rule (never a test target): the last ``positions_per_user`` targets of each
training sequence. Negatives of position i are drawn by ``random.Random(seed * 1_000_003 + i)``, so a batch is a
pure function of its indices and a resumed run sees the same batches. With ``hard_negative_share > 0``, that share
of them comes from the generator SASRec's top-M for the position's history (``generator_top_m``: target and the
user's items excluded; computed once before training from the eval-mode generator, so a resume recomputes the same
pools): the full protocol reranks SASRec's top-M, so the reranker must separate the target from SASRec's
confusers, not only from random items. ``transformers.Trainer`` brings gradient
accumulation, mixed precision on a GPU (bf16/fp16), checkpoints with the optimizer, scheduler and all RNG states,
and resume from the last checkpoint after a kill.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from mmsrarec_lib.models.minilm_effnet import RecBackbone
from mmsrarec_lib.recommend.encoder_inputs import FeatureBank, InputBuilder

log = logging.getLogger(__name__)
TASKS = ("yesno", "next_kw", "grounding", "recovery")


@dataclass(frozen=True)
class EncoderTrainSettings:
    """Optimisation settings, sized for the 2-core CPU (one variant in about a minute or two)."""

    max_steps: int = 150  # 100 before issue 14 stage 3's measurement (docs/recommend.md)
    batch_size: int = 32
    grad_accum: int = 1
    negatives: int = 8
    lr: float = 2e-3
    text_lr: float = 2e-4  # LoRA weights of the text encoder
    weight_decay: float = 0.01
    warmup_steps: int = 10
    save_every: int = 40
    positions_per_user: int = 10
    aux_weight: float = 1.0
    seed: int = 0
    # share of the ``negatives`` per position drawn from the generator SASRec's top ``hard_negative_pool`` for the
    # position's history (target and the user's training items excluded); the rest stay uniform over the catalogue.
    # 0 = random negatives only (the behaviour before; also the fallback without a generator run). 0.25 (2 of 8)
    # was the best on the full protocol's validation users (docs/recommend.md, "Hard negatives").
    hard_negative_share: float = 0.25
    hard_negative_pool: int = 50
    # training protocols whose runs use the hard share (the others train with random negatives only): the full
    # protocol reranks the generator's top-M, the paper / sampled candidates are uniform random items
    hard_negative_protocols: tuple[str, ...] = ("full",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hard_negative_protocols", tuple(self.hard_negative_protocols))  # from JSON lists
        if not 0.0 <= self.hard_negative_share <= 1.0:
            raise ValueError(f"hard_negative_share must be in [0, 1], got {self.hard_negative_share}")
        if self.hard_negative_pool < 1:
            raise ValueError(f"hard_negative_pool must be >= 1, got {self.hard_negative_pool}")

    def for_protocol(self, protocol: str) -> EncoderTrainSettings:
        """These settings for a run trained on ``protocol``: the hard share set to 0 unless the protocol is one of
        ``hard_negative_protocols`` (so a run's model.json records the share it really trained with)."""
        from dataclasses import replace

        if self.hard_negative_share and protocol not in self.hard_negative_protocols:
            return replace(self, hard_negative_share=0.0)
        return self

    @property
    def n_hard(self) -> int:
        """Hard negatives per position (the share of ``negatives``, rounded)."""
        return int(round(self.hard_negative_share * self.negatives))


@dataclass(frozen=True)
class TrainPoint:
    user_id: str
    history: tuple[str, ...]
    target: str


def generator_top_m(scorer, points: Sequence[TrainPoint], interacted: Mapping[str, set[str]], *, top_m: int,
                    batch_size: int = 512, allowed: Collection[str] | None = None) -> list[tuple[str, ...]]:
    """Per training position, the generator's ``top_m`` items for its history (best first), excluding the target,
    the history and the user's other training items (``interacted``): the confusers a retrieve-then-rerank
    pipeline puts in front of the reranker. ``scorer``: a ``score_catalogue(histories) -> (n, len(item_ids))``
    scorer with ``item_ids`` (e.g. ``SASRecScorer``); ``allowed``: the training catalogue (items outside it, e.g.
    the cold protocol's held-out items, are never picked). Deterministic (an eval-mode model, stable sort)."""
    import numpy as np

    item_ids = list(scorer.item_ids)
    out: list[tuple[str, ...]] = []
    for start in range(0, len(points), batch_size):
        chunk = points[start : start + batch_size]
        with torch.no_grad():
            scores = np.asarray(scorer.score_catalogue([list(p.history) for p in chunk]), dtype=np.float64)
        order = np.argsort(-scores, axis=1, kind="stable")
        for p, row in zip(chunk, order, strict=True):
            bad = interacted.get(p.user_id, set()) | set(p.history) | {p.target}
            picked: list[str] = []
            for j in row:
                item = item_ids[j]
                if item not in bad and (allowed is None or item in allowed):
                    picked.append(item)
                    if len(picked) == top_m:
                        break
            out.append(tuple(picked))
    return out


def training_points(sequences: Mapping[str, Sequence[str]], *, per_user: int, known: set[str]) -> list[TrainPoint]:
    """The last ``per_user`` (history, next item) positions of each sequence (items outside ``known`` dropped)."""
    out = []
    for user in sorted(sequences):
        seq = [i for i in sequences[user] if i in known]
        for t in range(max(1, len(seq) - per_user), len(seq)):
            out.append(TrainPoint(user, tuple(seq[:t]), seq[t]))
    return out


class PointDataset(torch.utils.data.Dataset):
    """Position i -> (user text ids, positive, negatives); negatives seeded by i (see the module docstring).

    ``hard_pool[i]``: the generator's top-M for position i (``generator_top_m``); ``n_hard`` of the ``negatives``
    are drawn from it first (uniformly, without repeats), the rest uniformly from the catalogue."""

    def __init__(self, points: Sequence[TrainPoint], *, builder: InputBuilder, interacted: Mapping[str, set[str]],
                 catalogue: Sequence[str], negatives: int, seed: int,
                 hard_pool: Sequence[Sequence[str]] | None = None, n_hard: int = 0) -> None:
        self.points, self.builder, self.interacted = list(points), builder, interacted
        self.catalogue, self.negatives, self.seed = list(catalogue), negatives, seed
        if hard_pool is not None and len(hard_pool) != len(self.points):
            raise ValueError(f"hard_pool has {len(hard_pool)} rows for {len(self.points)} training positions")
        self.hard_pool = hard_pool
        self.n_hard = min(max(0, n_hard), negatives) if hard_pool is not None else 0

    def negatives_of(self, i: int) -> list[str]:
        p = self.points[i]
        rng = random.Random(self.seed * 1_000_003 + i)
        seen = self.interacted.get(p.user_id, set())
        negs: list[str] = []
        if self.n_hard:
            pool = [c for c in self.hard_pool[i] if c not in seen and c != p.target and c not in p.history]
            negs += rng.sample(pool, min(self.n_hard, len(pool)))
        while len(negs) < self.negatives:
            c = self.catalogue[rng.randrange(len(self.catalogue))]
            if c not in seen and c != p.target and c not in negs:
                negs.append(c)
        return negs

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> dict:
        p = self.points[i]
        negs = self.negatives_of(i)
        pieces = self.builder.user(p.history, self.builder.ctx.neighbor_keywords(p.user_id,
                                                                                 self.builder.cfg.n_neighbors))
        return {"user": pieces, "items": [p.target, *negs]}


class Collator:
    """Examples -> tensors: users, all candidates' inputs (pos first per row), keyword and title texts."""

    def __init__(self, builder: InputBuilder, features: FeatureBank, *, tasks: Sequence[str]) -> None:
        self.builder, self.features, self.tasks = builder, features, tuple(tasks)

    def __call__(self, examples: Sequence[dict]) -> dict:
        b = self.builder
        items = [i for e in examples for i in e["items"]]  # [B * (1 + K)], each row's positive first
        feats, has = self.features.images(items)
        out = {"user_pieces": [e["user"] for e in examples], "item_pieces": [b.item(i) for i in items],
               "image_feats": feats, "has_image": has, "n_candidates": torch.tensor(len(examples[0]["items"]))}
        ids = self.features.id_vecs(items)
        if ids is not None:
            out["id_vecs"] = ids
        if len(self.tasks) > 1 or self.tasks[0] != "yesno":
            pos = [e["items"][0] for e in examples]
            out.update(kw_pieces=[b.keywords_only(i) for i in pos], title_pieces=[b.title(i) for i in pos],
                       pos_index=torch.arange(len(examples)) * len(examples[0]["items"]))
        return out


def _in_batch_ce(a: torch.Tensor, b: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """Cross-entropy of choosing row i of b for row i of a among all rows (cosine * scale)."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T * scale  # [n, n]
    return F.cross_entropy(logits, torch.arange(a.shape[0], device=a.device))


class TrainModule(nn.Module):
    """What the Trainer optimises: the backbone + the task losses (forward returns {"loss": ..., ...})."""

    def __init__(self, backbone: RecBackbone, *, tasks: Sequence[str], aux_weight: float) -> None:
        super().__init__()
        self.backbone, self.tasks, self.aux_weight = backbone, tuple(tasks), aux_weight

    def forward(self, user_pieces, item_pieces, image_feats, has_image, n_candidates, id_vecs=None, kw_pieces=None,
                title_pieces=None, pos_index=None):
        m = self.backbone
        n_users, c = len(user_pieces), int(n_candidates)
        cache = m.encode_users(user_pieces)
        tokens = m.encode_items(item_pieces, image_feats, has_image.bool(), id_vecs)  # [B*C, Tc, d]
        user_index = torch.arange(n_users, device=image_feats.device).repeat_interleave(c)
        logits = m.score_cached(cache, user_index, tokens).view(n_users, c, 2)  # [B, C, 2]
        lp = logits.float().log_softmax(-1)
        bce = 0.5 * (-lp[:, 0, 0].mean() - lp[:, 1:, 1].mean())
        margin = logits[..., 0] - logits[..., 1]  # logit(p) [B, C]
        listwise = F.cross_entropy(margin.float(), torch.zeros(n_users, dtype=torch.long, device=margin.device))
        losses = {"yesno": bce + listwise}
        if kw_pieces is not None:
            kw = m.pool(*m.text_states(kw_pieces))  # [B, d]
            if "next_kw" in self.tasks:
                losses["next_kw"] = _in_batch_ce(cache.pooled, kw)
            if "grounding" in self.tasks:
                img = m.image_tokens(image_feats[pos_index], has_image.bool()[pos_index]).mean(1)  # [B, d]
                rows = has_image.bool()[pos_index]
                if rows.sum() > 1:
                    losses["grounding"] = _in_batch_ce(img[rows], kw[rows])
            if "recovery" in self.tasks:
                title = m.pool(*m.text_states(title_pieces))
                losses["recovery"] = _in_batch_ce(kw, title)
        aux = [v for k, v in losses.items() if k != "yesno"]
        loss = losses["yesno"] + (self.aux_weight * torch.stack(aux).mean() if aux else 0.0)
        return {"loss": loss, "logits": logits}


def train_backbone(*, backbone: RecBackbone, builder: InputBuilder, features: FeatureBank,
                   points: Sequence[TrainPoint], interacted: Mapping[str, set[str]], catalogue: Sequence[str],
                   tasks: Sequence[str], settings: EncoderTrainSettings, output_dir: str, progress: bool = True,
                   callbacks: Sequence = (), hard_pool: Sequence[Sequence[str]] | None = None) -> dict:
    """Fine-tune ``backbone`` in place with ``transformers.Trainer``; resumes from the newest checkpoint in
    ``output_dir``. ``callbacks``: extra ``TrainerCallback`` objects. ``hard_pool``: per position, the generator's
    top-M (``generator_top_m``), used when ``settings.hard_negative_share > 0``. Returns a summary (steps,
    resumed_from, loss curve, seconds)."""
    import time
    from pathlib import Path

    from transformers import Trainer, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    if not points:
        raise ValueError("no training positions: check the training sequences")
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise ValueError(f"unknown task(s) {bad}: choose from {', '.join(TASKS)}")
    data = PointDataset(points, builder=builder, interacted=interacted, catalogue=catalogue,
                        negatives=settings.negatives, seed=settings.seed,
                        hard_pool=hard_pool if settings.n_hard else None, n_hard=settings.n_hard)
    if settings.n_hard and hard_pool is None:
        log.warning("hard_negative_share=%s but no generator top-M given: random negatives only",
                    settings.hard_negative_share)
    module = TrainModule(backbone, tasks=tasks, aux_weight=settings.aux_weight)
    cuda = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=output_dir, max_steps=settings.max_steps, per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum, learning_rate=settings.lr,
        weight_decay=settings.weight_decay, warmup_steps=settings.warmup_steps, lr_scheduler_type="linear",
        logging_steps=max(1, min(10, settings.max_steps // 10)), save_strategy="steps",
        save_steps=settings.save_every, save_total_limit=2, seed=settings.seed,
        data_seed=settings.seed, report_to=[], disable_tqdm=not progress, dataloader_num_workers=0,
        remove_unused_columns=False, use_cpu=not cuda, bf16=cuda and torch.cuda.is_bf16_supported(),
        fp16=cuda and not torch.cuda.is_bf16_supported(), max_grad_norm=1.0, logging_first_step=True)
    text_params = [p for n, p in module.named_parameters() if p.requires_grad and n.startswith("backbone.text.")]
    other = [p for n, p in module.named_parameters() if p.requires_grad and not n.startswith("backbone.text.")]
    optimizer = torch.optim.AdamW([{"params": other, "lr": settings.lr},
                                   {"params": text_params, "lr": settings.text_lr}],
                                  weight_decay=settings.weight_decay)
    from transformers import get_linear_schedule_with_warmup

    scheduler = get_linear_schedule_with_warmup(optimizer, settings.warmup_steps, settings.max_steps)
    trainer = Trainer(model=module, args=args, train_dataset=data, data_collator=Collator(builder, features,
                                                                                           tasks=tasks),
                      optimizers=(optimizer, scheduler), callbacks=list(callbacks))
    last = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
    if last:
        log.info("resuming from %s", last)
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - t0
    module.eval()
    curve = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    return {"steps": settings.max_steps, "resumed_from": int(Path(last).name.split("-")[-1]) if last else None,
            "train_loss": float(result.training_loss), "loss_curve": curve, "train_seconds": seconds,
            "steps_per_second": settings.max_steps / seconds if seconds > 0 else None, "tasks": list(tasks),
            "n_positions": len(points), "settings": asdict(settings), "hard_negatives": data.n_hard}
