"""LoRA supervised fine-tuning of the MLLM on the mixed instruction tasks, with accelerate, checkpoints and resume.

Each :class:`~mmsrarec_lib.recommend.tasks.Example` becomes ``ids(prefix) + ids(suffix) + ids(target) [+ EOS]``
(the prefix/suffix tokenised exactly as the scorer does); the loss is on the target tokens only. Generation
targets (keywords, titles) end with EOS; the yes/no target is its single answer token, as scored.

The step order is fixed by the seed before training starts (step ``s`` always sees the same batch), and every
``save_every`` steps a checkpoint holds the LoRA adapter, the optimizer and scheduler state and the torch/python RNG
state, written to ``<checkpoint_dir>/step-NNNNNN/`` and then published by atomically rewriting ``latest``. A killed
run restarted with the same arguments resumes from ``latest`` and computes the same remaining steps.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmsrarec_lib.recommend.decoder_scoring import PromptEncoder
from mmsrarec_lib.recommend.tasks import Example

log = logging.getLogger(__name__)
IGNORE = -100


@dataclass(frozen=True)
class LoraSettings:
    """peft LoRA settings. ``target_modules``: projection names (all matching Linear layers get adapters)."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings (defaults sized for the tiny CPU model: a few hundred steps, a few minutes)."""

    max_steps: int = 300
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 20
    max_length: int = 384
    save_every: int = 50
    seed: int = 0
    lora: LoraSettings = field(default_factory=LoraSettings)


@dataclass(frozen=True)
class Encoded:
    """One tokenised example: ids/labels [T] and the image's pixel values [3, H, W] (or None)."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    pixel_values: torch.Tensor | None


def encode_example(ex: Example, *, encoder: PromptEncoder, image: bytes | None, max_length: int) -> Encoded:
    """prefix + suffix + target (+ EOS for generation tasks); labels mask the prompt; long prompts lose their
    oldest prefix tokens (after the first, e.g. BOS) so the candidate and target are always kept."""
    prefix = encoder.encode_prefix(ex.prefix)
    suffix = encoder.encode_suffix(ex.suffix, image if ex.image_item_id else None)
    target = encoder.encode_text(ex.target)
    eos = encoder.tokenizer.eos_token_id
    if ex.task != "yesno" and eos is not None:
        target = torch.cat([target, torch.tensor([eos])])
    over = prefix.shape[0] + suffix.input_ids.shape[0] + target.shape[0] - max_length
    if over > 0:
        if over >= prefix.shape[0] - 1:
            raise ValueError(f"{ex.task} example does not fit max_length={max_length} even without its prefix")
        prefix = torch.cat([prefix[:1], prefix[1 + over :]])
    prompt = torch.cat([prefix, suffix.input_ids])
    ids = torch.cat([prompt, target])  # [T]
    labels = torch.cat([torch.full_like(prompt, IGNORE), target])  # [T]
    return Encoded(ids, labels, suffix.pixel_values)


def collate(batch: Sequence[Encoded], *, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example; images stacked in row order (the order LLaVA fills image tokens)."""
    t = max(int(e.input_ids.shape[0]) for e in batch)
    ids = torch.full((len(batch), t), pad_id, dtype=torch.long)  # [B, T]
    labels = torch.full((len(batch), t), IGNORE, dtype=torch.long)  # [B, T]
    mask = torch.zeros((len(batch), t), dtype=torch.long)  # [B, T]
    for i, e in enumerate(batch):
        n = int(e.input_ids.shape[0])
        ids[i, :n], labels[i, :n], mask[i, :n] = e.input_ids, e.labels, 1
    out = {"input_ids": ids, "labels": labels, "attention_mask": mask}
    images = [e.pixel_values for e in batch if e.pixel_values is not None]
    if images:
        out["pixel_values"] = torch.stack(images)  # [n_images, 3, H, W]
    return out


def step_order(n_examples: int, *, steps: int, batch_size: int, seed: int) -> list[list[int]]:
    """The example indices of every step: seeded epochs of a permutation, fixed before training (for resume)."""
    rng = random.Random(seed)
    order: list[int] = []
    while len(order) < steps * batch_size:
        perm = list(range(n_examples))
        rng.shuffle(perm)
        order += perm
    return [order[s * batch_size : (s + 1) * batch_size] for s in range(steps)]


def cpu_threads(default: int = 1) -> int:
    """Torch CPU threads (``runtime_env.configure_threads``): ``$MMSRAREC_TORCH_THREADS`` else ``default`` (1). On a
    shared 2-core machine two OpenMP threads made a small matmul 4x slower than one (thread oversubscription)."""
    from mmsrarec_lib.runtime_env import configure_threads

    configure_threads(default=default, cpu_only=True)
    return torch.get_num_threads()


def add_lora(model: Any, lora: LoraSettings) -> Any:
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                     target_modules=list(lora.target_modules), bias="none")
    return get_peft_model(model, cfg)


def _latest(checkpoint_dir: Path) -> Path | None:
    pointer = checkpoint_dir / "latest"
    if not pointer.exists():
        return None
    path = checkpoint_dir / pointer.read_text().strip()
    return path if (path / "trainer.pt").exists() else None


def _save_checkpoint(checkpoint_dir: Path, *, model: Any, optimizer: Any, scheduler: Any, step: int,
                     losses: list[float], keep: int = 2) -> Path:
    path = checkpoint_dir / f"step-{step:06d}"
    tmp = checkpoint_dir / f".tmp-step-{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp / "adapter")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                "losses": losses, "torch_rng": torch.get_rng_state(), "py_rng": random.getstate()},
               tmp / "trainer.pt")
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    pointer_tmp = checkpoint_dir / "latest.tmp"
    pointer_tmp.write_text(path.name)
    os.replace(pointer_tmp, checkpoint_dir / "latest")  # atomic publish
    for old in sorted(checkpoint_dir.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def _load_checkpoint(path: Path, *, model: Any, optimizer: Any, scheduler: Any) -> tuple[int, list[float]]:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(path / "adapter" / "adapter_model.safetensors")))
    state = torch.load(path / "trainer.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["py_rng"])
    return int(state["step"]), list(state["losses"])


def finetune(
    *,
    model: Any,
    encoder: PromptEncoder,
    examples: Sequence[Example],
    images: Callable[[str], bytes | None],
    settings: TrainSettings,
    checkpoint_dir: str | Path,
    on_checkpoint: Callable[[Path], None] | None = None,
    progress: bool = True,
) -> tuple[Any, dict]:
    """Train LoRA adapters on ``examples``; resume from ``checkpoint_dir/latest`` when present.

    ``images(item_id)`` returns an item's JPEG bytes. Returns the peft model (eval mode) and a summary (steps,
    resumed_from, losses, seconds, steps/s, per-task counts).
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    if not examples:
        raise ValueError("no training examples")
    torch.manual_seed(settings.seed)
    random.seed(settings.seed)
    cpu_threads()
    ckpt = Path(checkpoint_dir)
    ckpt.mkdir(parents=True, exist_ok=True)
    encoded = [
        encode_example(ex, encoder=encoder, image=images(ex.image_item_id) if ex.image_item_id else None,
                       max_length=settings.max_length)
        for ex in tqdm(examples, desc="tokenise", unit="ex", disable=not progress)
    ]
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    model = add_lora(model, settings.lora)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, settings.warmup_steps, settings.max_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    plan = step_order(len(encoded), steps=settings.max_steps, batch_size=settings.batch_size, seed=settings.seed)
    start, losses = 0, []
    latest = _latest(ckpt)
    if latest is not None:
        start, losses = _load_checkpoint(latest, model=accelerator.unwrap_model(model), optimizer=optimizer,
                                         scheduler=scheduler)
        log.info("resumed from %s (step %d of %d)", latest, start, settings.max_steps)
    t0 = time.perf_counter()
    bar = tqdm(range(start, settings.max_steps), desc="finetune", unit="step", disable=not progress,
               initial=start, total=settings.max_steps)
    for step in bar:
        batch = collate([encoded[i] for i in plan[step]], pad_id=encoder.pad_id)
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        loss = model(**batch).loss
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        done = step + 1
        if done % settings.save_every == 0 or done == settings.max_steps:
            path = _save_checkpoint(ckpt, model=accelerator.unwrap_model(model), optimizer=optimizer,
                                    scheduler=scheduler, step=done, losses=losses)
            log.info("checkpoint %s (loss %.4f)", path.name, losses[-1])
            if on_checkpoint is not None:
                on_checkpoint(path)
    elapsed = time.perf_counter() - t0
    model = accelerator.unwrap_model(model)
    model.eval()
    counts: dict[str, int] = {}
    for ex in examples:
        counts[ex.task] = counts.get(ex.task, 0) + 1
    ran = settings.max_steps - start
    summary = {
        "steps": settings.max_steps,
        "resumed_from": start if latest is not None else None,
        "losses": losses,
        "first_loss": losses[0] if losses else None,
        "last_loss_mean10": sum(losses[-10:]) / max(1, len(losses[-10:])),
        "train_seconds": elapsed,
        "steps_per_second": ran / elapsed if elapsed > 0 and ran else None,
        "examples_per_task": counts,
        "settings": asdict(settings),
    }
    return model, summary


def save_settings(path: str | Path, settings: TrainSettings) -> None:
    Path(path).write_text(json.dumps(asdict(settings), indent=2))
