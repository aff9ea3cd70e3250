"""Group-relative policy optimisation (GRPO) for both summarizer backends.

For each prompt (item) the policy draws a group of G samples; each sample's advantage is its reward minus the
group mean, divided by the group standard deviation (``group_advantages``). The loss is
``-mean(A * log pi(sample))``: one gradient step per batch of fresh samples, so the PPO ratio is 1 and clipping is
a no-op; no KL term (beta = 0, as in Dr. GRPO / DAPO), the reference model is only the frozen R_recon scorer.

Why a compact loop and not TRL's GRPOTrainer for ``mllm``: the reward needs the item's image *and* its description
per completion, and scoring with the frozen base (adapter disabled) in the same process; a 60-line loop drives the
LLaVA processor directly and stays within this CPU's budget, where GRPOTrainer's dataset/generation machinery was
not verified with LLaVA image inputs here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mmsrarec_lib.summarize.candidates import Candidates
from mmsrarec_lib.summarize.policy import SelectionPolicy

log = logging.getLogger(__name__)


def group_advantages(rewards: torch.Tensor, *, eps: float = 1e-6) -> torch.Tensor:
    """[B, G] rewards -> [B, G] advantages (r - mean_g) / (std_g + eps); a group with equal rewards gives 0."""
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, unbiased=False)
    return (rewards - mean) / (std + eps)


@dataclass(frozen=True)
class GrpoConfig:
    steps: int = 40
    batch_items: int = 32
    group_size: int = 8
    lr: float = 0.03
    seed: int = 0


# reward_fn(item_index, list of keyword lists) -> list of dicts with reward, r_info, r_recon, r_len
RewardFn = Callable[[int, list[list[str]]], list[dict]]


def train_selection_policy(
    policy: SelectionPolicy,
    candidates: Sequence[Candidates],
    reward_fn: RewardFn,
    *,
    config: GrpoConfig,
    on_step: Callable[[dict], None] | None = None,
) -> list[dict]:
    """GRPO on the extractive selection policy; returns one log row per step (means over the batch's samples)."""
    usable = [i for i, c in enumerate(candidates) if c.phrases]
    if not usable:
        raise ValueError("no item has any keyword candidate to learn from")
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(policy.parameters(), lr=config.lr)
    history: list[dict] = []
    n_max = policy.config.n_max
    for step in range(config.steps):
        batch = rng.choice(usable, size=min(config.batch_items, len(usable)), replace=False)
        logps, rewards, terms = [], [], []
        for i in batch:
            cand = candidates[i]
            masks, logp = policy.sample(cand.features, n=config.group_size, generator=gen)  # [G, C], [G]
            kw_lists = [[p for p, m in zip(cand.phrases, row) if m > 0][:n_max] for row in masks.tolist()]
            scored = reward_fn(int(i), kw_lists)
            logps.append(logp)
            rewards.append([s["reward"] for s in scored])
            terms.extend(scored)
        r = torch.tensor(rewards, dtype=torch.float32)  # [B, G]
        adv = group_advantages(r)  # [B, G]
        loss = -(adv * torch.stack(logps)).mean()
        history.append(_update(opt, loss, step=step, terms=terms, on_step=on_step))
    policy.eval()
    return history


def _update(opt, loss, *, step, terms, on_step):
    """One policy-gradient update; returns (and reports) the step's log row."""
    opt.zero_grad()
    loss.backward()
    opt.step()
    row = _log_row(step, terms, loss.item())
    if on_step:
        on_step(row)
    return row


def _log_row(step: int, terms: list[dict], loss: float) -> dict:
    keys = ("reward", "r_info", "r_recon", "r_len")
    row = {"step": step, "loss": loss}
    for k in keys:
        row[k] = float(np.mean([t[k] for t in terms]))
    if terms and "n_keywords" in terms[0]:
        row["n_keywords"] = float(np.mean([t["n_keywords"] for t in terms]))
    return row


@dataclass(frozen=True)
class MllmGrpoConfig:
    steps: int = 10
    batch_prompts: int = 4
    group_size: int = 4
    lr: float = 5e-3
    max_new_tokens: int = 16
    temperature: float = 1.0
    lora_r: int = 8
    lora_alpha: int = 16
    seed: int = 0


def add_lora(model, *, r: int, alpha: int):
    """Wrap ``model`` with a LoRA adapter on the language model's attention and MLP projections (not the vision
    tower). The MLP's down projection writes straight into the residual stream, which makes small models steerable."""
    from peft import LoraConfig, get_peft_model

    target = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
    return get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=target))


def train_mllm_grpo(
    peft_model,
    processor,
    *,
    prompts: Sequence[str],
    images: Sequence | None,
    reward_fn: Callable[[int, list[str]], list[dict]],
    config: MllmGrpoConfig,
    system: str | None = None,
    on_step: Callable[[dict], None] | None = None,
    reward_on_token_ids: bool = False,
) -> list[dict]:
    """Compact GRPO with a LoRA-wrapped MLLM: sample G completions per prompt, reward, one policy-gradient step.

    ``reward_fn(prompt_index, completions)`` returns one dict per completion (reward and its terms).
    ``images`` (PIL, aligned with ``prompts``) or None for text-only prompts. With ``reward_on_token_ids`` the
    reward function gets each completion's token ids (up to its first EOS) instead of its text.
    """
    from mmsrarec_lib.mllm.chat import build_inputs, suppressed_token_ids

    tok = getattr(processor, "tokenizer", processor)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable (LoRA) parameters")
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    history: list[dict] = []
    dev = peft_model.device
    for step in range(config.steps):
        idx = rng.choice(len(prompts), size=min(config.batch_prompts, len(prompts)), replace=False)
        rep = [int(i) for i in idx for _ in range(config.group_size)]  # B*G prompt indices, groups contiguous
        batch = build_inputs(
            processor,
            prompts=[prompts[i] for i in rep],
            images=[images[i] for i in rep] if images is not None else None,
            system=system,
            device=str(dev),
        )
        peft_model.eval()
        with torch.no_grad():
            seqs = peft_model.generate(
                **batch, max_new_tokens=config.max_new_tokens, do_sample=True, temperature=config.temperature,
                top_k=0, pad_token_id=tok.pad_token_id, suppress_tokens=suppressed_token_ids(processor),
            )  # [B*G, T + new]
        t_prompt = batch["input_ids"].shape[1]
        completion = seqs[:, t_prompt:]  # [B*G, new]
        comp_mask = _completion_mask(completion, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id)  # [B*G, new]
        texts = tok.batch_decode(completion, skip_special_tokens=True)
        terms: list[dict] = []
        rewards = []
        for g0 in range(0, len(rep), config.group_size):
            group = slice(g0, g0 + config.group_size)
            if reward_on_token_ids:
                ids = [c[mk].tolist() for c, mk in zip(completion[group], comp_mask[group])]
                scored = reward_fn(rep[g0], ids)
            else:
                scored = reward_fn(rep[g0], texts[group])
            terms.extend(scored)
            rewards.append([s["reward"] for s in scored])
        adv = group_advantages(torch.tensor(rewards, dtype=torch.float32)).reshape(-1).to(dev)  # [B*G]

        peft_model.train()
        full_mask = torch.cat([batch["attention_mask"], comp_mask.long()], dim=1)  # [B*G, T + new]
        fwd = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}
        logits = peft_model(input_ids=seqs, attention_mask=full_mask, **fwd).logits  # [B*G, T+new, V]
        logp = torch.log_softmax(logits[:, t_prompt - 1 : -1].float(), dim=-1)  # predicts completion tokens
        tok_lp = logp.gather(-1, completion.unsqueeze(-1)).squeeze(-1)  # [B*G, new]
        m = comp_mask.float()
        seq_lp = (tok_lp * m).sum(1) / m.sum(1).clamp(min=1)  # [B*G] mean token log-prob
        loss = -(adv * seq_lp).mean()
        history.append(_update(opt, loss, step=step, terms=terms, on_step=on_step))
    peft_model.eval()
    return history


def _completion_mask(completion: torch.Tensor, *, eos_id: int, pad_id: int) -> torch.Tensor:
    """[N, L] bool: tokens up to and including the first EOS (pads after it excluded)."""
    is_eos = completion == eos_id
    after_eos = (is_eos.cumsum(dim=1) - is_eos.long()) > 0  # strictly after the first EOS
    return ~after_eos & ~((completion == pad_id) & ~is_eos)
