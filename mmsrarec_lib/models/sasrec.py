"""SASRec (Kang & McAuley, 2018) in one readable file: model, training loop, checkpoint save/load.

Item embedding + learned absolute positions, pre-norm causal self-attention blocks, output scores tied to the item
embedding. Sequences are RIGHT-padded with index 0, so position ``t`` always means "the (t+1)-th visible item" in
training and at inference (a 5-item history uses positions 0..4 exactly as the first 5 items of a training window
did), and causal attention never lets a real item see padding. The user vector is the hidden state at the last real
position (``SASRec.embed``). Training is next-item prediction at every position, cross-entropy over the whole
catalogue (or a sampled softmax with shared uniform negatives), early stopping on validation NDCG@10.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmsrarec_lib.eval import metrics
from mmsrarec_lib.models import MODELS_DIR
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)
KIND = "sasrec"


@dataclass(frozen=True)
class SASRecConfig:
    """Architecture and training hyper-parameters (defaults sized for ML-100K on a 2-core CPU: ~1 min a seed)."""

    dim: int = 64
    n_layers: int = 2
    n_heads: int = 2
    max_len: int = 50
    dropout: float = 0.2
    lr: float = 2e-3
    weight_decay: float = 0.0
    epochs: int = 20
    batch_size: int = 128
    patience: int = 3  # epochs without a better validation NDCG@10 before stopping
    loss: str = "ce"  # ce: softmax over the whole catalogue | sampled: shared uniform negatives
    n_negatives: int = 256  # for loss="sampled"
    seed: int = 0
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        if self.dim % self.n_heads:
            raise ValueError(f"dim={self.dim} must be divisible by n_heads={self.n_heads}")
        if self.loss not in ("ce", "sampled"):
            raise ValueError(f"loss must be 'ce' or 'sampled', got {self.loss!r}")
        for name in ("dim", "n_layers", "n_heads", "max_len", "epochs", "batch_size", "n_negatives"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.n_heads, self.dropout = cfg.n_heads, cfg.dropout
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.dim)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape  # (B, L, D)
        q, k, v = self.qkv(x).split(D, dim=2)  # 3 x (B, L, D)
        q, k, v = (t.view(B, L, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))  # (B, H, L, Dh)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, L, D)  # (B, L, D)
        return self.resid_drop(self.proj(y))


class Block(nn.Module):
    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.dim), nn.LayerNorm(cfg.dim)
        self.attn = CausalSelfAttention(cfg)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.dim, 4 * cfg.dim), nn.GELU(), nn.Linear(4 * cfg.dim, cfg.dim), nn.Dropout(cfg.dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, L, D)
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class SASRec(nn.Module):
    """Self-attentive sequential recommender over a fixed catalogue ``item_ids`` (index i+1 is item_ids[i]; 0 pads)."""

    def __init__(self, config: SASRecConfig, item_ids: Sequence[str]) -> None:
        super().__init__()
        if len(set(item_ids)) != len(item_ids):
            raise ValueError("item_ids must be unique")
        self.config = config
        self.item_ids = list(item_ids)
        self.item_index = {iid: i + 1 for i, iid in enumerate(self.item_ids)}
        d = config.dim
        self.item_emb = nn.Embedding(len(self.item_ids) + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(config.max_len, d)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(d)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def encode(self, histories: Sequence[Sequence[str]]) -> torch.Tensor:
        """String histories -> (n, L) right-padded index tensor of their last ``max_len`` known items.

        Items outside the catalogue are dropped (a model cannot embed what it never saw); an empty history is all
        padding and gets the padding token's vector.
        """
        L = self.config.max_len
        rows = [[self.item_index[i] for i in h if i in self.item_index][-L:] for h in histories]
        width = max((len(r) for r in rows), default=1) or 1
        out = torch.zeros((len(rows), width), dtype=torch.long)  # (n, width <= L)
        for r, idx in enumerate(rows):
            if idx:
                out[r, : len(idx)] = torch.tensor(idx, dtype=torch.long)
        return out

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, L) right-padded item indices -> (B, L, D) hidden states (position t sees items 0..t)."""
        B, L = seq.shape
        if L > self.config.max_len:
            raise ValueError(f"sequence length {L} exceeds max_len={self.config.max_len}")
        pos = torch.arange(L, device=seq.device)  # (L,)
        x = self.item_emb(seq) * math.sqrt(self.config.dim) + self.pos_emb(pos)  # (B, L, D)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)  # (B, L, D)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., n_items + 1) scores; column 0 (padding) is -inf."""
        out = hidden @ self.item_emb.weight.T  # (..., N+1)
        out[..., 0] = float("-inf")
        return out

    @torch.no_grad()
    def embed(self, histories: Sequence[Sequence[str]] | torch.Tensor) -> torch.Tensor:
        """User vectors (n, D): the final hidden state at each history's last item.

        ``histories`` is a list of item-id lists (oldest first) or an (n, L) right-padded LongTensor of indices
        (``encode``'s output). Call ``.eval()`` first for deterministic vectors (``load_sasrec`` returns eval mode).
        """
        seq = histories if isinstance(histories, torch.Tensor) else self.encode(histories)  # (n, L)
        seq = seq[:, -self.config.max_len :] if seq.shape[1] > self.config.max_len else seq
        last = (seq != 0).sum(dim=1).clamp(min=1) - 1  # (n,)
        out = []
        for start in range(0, seq.shape[0], self.config.eval_batch_size):
            chunk = seq[start : start + self.config.eval_batch_size]  # (b, L)
            h = self.forward(chunk)  # (b, L, D)
            out.append(h[torch.arange(chunk.shape[0]), last[start : start + chunk.shape[0]]])  # (b, D)
        return torch.cat(out) if out else torch.zeros((0, self.config.dim))

    @torch.no_grad()
    def score_catalogue(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
        """(n_users, n_items) next-item scores, columns aligned with ``self.item_ids``."""
        u = self.embed(histories)  # (n, D)
        return (u @ self.item_emb.weight[1:].T).numpy().astype(np.float32)  # (n, N)


# --------------------------------------------------------------------------- training
def make_windows(sequences: Sequence[Sequence[int]], max_len: int) -> torch.Tensor:
    """Cut index sequences into right-padded windows of ``max_len + 1`` items (W, max_len + 1).

    Windows are taken from the end backwards and overlap by one item, so every transition a -> b of every sequence
    is a training target exactly once; sequences shorter than 2 items give no window.
    """
    windows: list[list[int]] = []
    for s in sequences:
        end = len(s)
        while end >= 2:
            start = max(0, end - (max_len + 1))
            windows.append(list(s[start:end]))
            if start == 0:
                break
            end = start + 1
    out = torch.zeros((len(windows), max_len + 1), dtype=torch.long)
    for r, w in enumerate(windows):
        out[r, : len(w)] = torch.tensor(w, dtype=torch.long)
    return out


def _loss(model: SASRec, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    inputs, targets = batch[:, :-1], batch[:, 1:]  # (B, L), (B, L); target 0 = padding, ignored
    h = model(inputs)  # (B, L, D)
    cfg = model.config
    if cfg.loss == "ce":
        return F.cross_entropy(model.logits(h).flatten(0, 1), targets.flatten(), ignore_index=0)
    negs = torch.randint(1, model.n_items + 1, (cfg.n_negatives,), generator=gen)  # (K,)
    pos = (h * model.item_emb(targets)).sum(-1, keepdim=True)  # (B, L, 1)
    neg = h @ model.item_emb(negs).T  # (B, L, K)
    neg = neg.masked_fill(negs.view(1, 1, -1) == targets.unsqueeze(-1), float("-inf"))  # accidental hits
    logits = torch.cat([pos, neg], dim=-1)[targets != 0]  # (T, 1 + K)
    return F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def validation_ndcg(model: SASRec, valid: Sequence[tuple[Sequence[str], str]], *, k: int = 10) -> float:
    """NDCG@k of the targets ranked over the model's catalogue, excluding each history's items (pessimistic ties)."""
    if not valid:
        return float("nan")
    model.eval()
    histories = [h for h, _ in valid]
    scores = model.score_catalogue(histories)  # (n, N)
    ranks = metrics.catalogue_ranks(
        scores,
        targets=[model.item_index.get(t, 0) - 1 for _, t in valid],
        exclude=[[model.item_index[i] - 1 for i in h if i in model.item_index] for h in histories],
    )
    return metrics.ndcg_at_k(ranks, k)


def train_sasrec(
    *,
    sequences: Sequence[Sequence[str]],
    valid: Sequence[tuple[Sequence[str], str]],
    config: SASRecConfig,
    item_ids: Sequence[str] | None = None,
    progress: bool = True,
) -> tuple[SASRec, dict]:
    """Train on ``sequences`` (item-id lists, oldest first); early-stop on NDCG@10 of ``valid`` (history, target).

    The catalogue is ``item_ids`` (default: the items seen in ``sequences``, sorted). Returns the best model (eval
    mode) and a summary: epochs run, best epoch, best validation NDCG@10, seconds per epoch, loss per epoch.
    """
    from tqdm.auto import tqdm

    seed_everything(config.seed)
    catalogue = list(item_ids) if item_ids is not None else sorted({i for s in sequences for i in s})
    model = SASRec(config, catalogue)
    idx = [[model.item_index[i] for i in s if i in model.item_index] for s in sequences]
    windows = make_windows(idx, config.max_len)  # (W, L + 1)
    if windows.shape[0] == 0:
        raise ValueError("no training sequence has 2 or more items")
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    best, best_state, best_epoch, bad = -1.0, copy.deepcopy(model.state_dict()), 0, 0
    losses: list[float] = []
    valid_curve: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(range(1, config.epochs + 1), desc="sasrec", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        perm = torch.randperm(windows.shape[0], generator=gen)
        total, n = 0.0, 0
        for start in range(0, windows.shape[0], config.batch_size):
            batch = windows[perm[start : start + config.batch_size]]  # (B, L + 1)
            loss = _loss(model, batch, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + loss.item() * batch.shape[0], n + batch.shape[0]
        losses.append(total / n)
        ndcg = validation_ndcg(model, valid)
        valid_curve.append(ndcg)
        bar.set_postfix(loss=f"{losses[-1]:.4f}", valid_ndcg10=f"{ndcg:.4f}")
        log.info("sasrec epoch %d loss %.4f valid NDCG@10 %.4f", epoch, losses[-1], ndcg)
        if not valid or ndcg > best:
            best, best_state, best_epoch, bad = ndcg, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            bad += 1
            if bad >= config.patience:
                log.info("early stop at epoch %d (best %d, NDCG@10 %.4f)", epoch, best_epoch, best)
                break
    elapsed = time.perf_counter() - t0
    model.load_state_dict(best_state)
    model.eval()
    summary = {
        "epochs_run": len(losses),
        "best_epoch": best_epoch,
        "valid_ndcg@10": best if valid else None,
        "seconds_per_epoch": elapsed / len(losses),
        "train_seconds": elapsed,
        "loss": losses,
        "valid_curve": valid_curve,
        "n_windows": int(windows.shape[0]),
    }
    return model, summary


# --------------------------------------------------------------------------- checkpoints
def model_dir_uri(warehouse: Warehouse, dataset: str, run_id: str) -> str:
    return warehouse.uri(dataset, MODELS_DIR, run_id)


def save_sasrec(warehouse: Warehouse, dataset: str, run_id: str, model: SASRec, *, info: dict) -> str:
    """Write ``model.pt`` (state dict), ``config.json`` and ``model.json`` (kind, run_id, dataset, item id map,
    plus ``info``: metrics, protocol, ...) under ``<warehouse>/<dataset>/models/<run_id>/``; returns that URI.
    ``model.json`` is written last, so a directory with it is complete."""
    base = model_dir_uri(warehouse, dataset, run_id)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    warehouse.write_bytes(f"{base}/model.pt", buf.getvalue())
    warehouse.write_bytes(f"{base}/config.json", json.dumps(dataclasses.asdict(model.config), indent=2).encode())
    meta = {**info, "kind": KIND, "run_id": run_id, "dataset": dataset, "item_ids": model.item_ids}
    warehouse.write_bytes(f"{base}/model.json", json.dumps(meta, indent=1, default=str).encode())
    return base


def load_sasrec(warehouse: Warehouse, dataset: str, run_id: str, *, meta: dict | None = None) -> SASRec:
    """The SASRec saved by run ``run_id`` of ``dataset``, in eval mode (its ``model_json`` attribute holds
    model.json; ``meta``: that manifest when the caller has already read it)."""
    from mmsrarec_lib.model_runs import read_manifest

    meta = meta if meta is not None else read_manifest(warehouse, dataset, run_id, kind=KIND)
    base = model_dir_uri(warehouse, dataset, run_id)
    cfg = SASRecConfig(**json.loads(warehouse.read_bytes(f"{base}/config.json")))
    model = SASRec(cfg, meta["item_ids"])
    state = torch.load(io.BytesIO(warehouse.read_bytes(f"{base}/model.pt")), weights_only=True)
    model.load_state_dict(state)
    model.model_json = meta
    return model.eval()
