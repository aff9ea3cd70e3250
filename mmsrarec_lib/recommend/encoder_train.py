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
pure function of its indices and a resumed run sees the same batches. ``transformers.Trainer`` brings gradient
accumulation, mixed precision on a GPU (bf16/fp16), checkpoints with the optimizer, scheduler and all RNG states,
and resume from the last checkpoint after a kill.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from mmsrarec_lib.recommend.backbone import RecBackbone
from mmsrarec_lib.recommend.encoder_inputs import FeatureBank, InputBuilder

log = logging.getLogger(__name__)
TASKS = ("yesno", "next_kw", "grounding", "recovery")


@dataclass(frozen=True)
class EncoderTrainSettings:
    """Optimisation settings, sized for the 2-core CPU (one variant in about a minute or two)."""

    max_steps: int = 100
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


@dataclass(frozen=True)
class TrainPoint:
    user_id: str
    history: tuple[str, ...]
    target: str


def training_points(sequences: Mapping[str, Sequence[str]], *, per_user: int, known: set[str]) -> list[TrainPoint]:
    """The last ``per_user`` (history, next item) positions of each sequence (items outside ``known`` dropped)."""
    out = []
    for user in sorted(sequences):
        seq = [i for i in sequences[user] if i in known]
        for t in range(max(1, len(seq) - per_user), len(seq)):
            out.append(TrainPoint(user, tuple(seq[:t]), seq[t]))
    return out


class PointDataset(torch.utils.data.Dataset):
    """Position i -> (user text ids, positive, negatives); negatives seeded by i (see the module docstring)."""

    def __init__(self, points: Sequence[TrainPoint], *, builder: InputBuilder, interacted: Mapping[str, set[str]],
                 catalogue: Sequence[str], negatives: int, seed: int) -> None:
        self.points, self.builder, self.interacted = list(points), builder, interacted
        self.catalogue, self.negatives, self.seed = list(catalogue), negatives, seed

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> dict:
        p = self.points[i]
        rng = random.Random(self.seed * 1_000_003 + i)
        seen = self.interacted.get(p.user_id, set())
        negs: list[str] = []
        while len(negs) < self.negatives:
            c = self.catalogue[rng.randrange(len(self.catalogue))]
            if c not in seen and c != p.target and c not in negs:
                negs.append(c)
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
                   callbacks: Sequence = ()) -> dict:
    """Fine-tune ``backbone`` in place with ``transformers.Trainer``; resumes from the newest checkpoint in
    ``output_dir``. ``callbacks``: extra ``TrainerCallback`` objects. Returns a summary (steps, resumed_from,
    loss curve, seconds)."""
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
                        negatives=settings.negatives, seed=settings.seed)
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
            "n_positions": len(points), "settings": asdict(settings)}
