"""The three rewards of the paper, bounded, and their weighted sum. Pure functions plus two scoring LMs.

Definitions (``RewardConfig`` holds every constant):

* ``R_info  = cos(phi(keywords), phi(reference))`` in [-1, 1]; phi is the MiniLM encoder by default. With
  ``pooling="mean"`` phi(keywords) is the normalised mean of the per-keyword embeddings (each keyword encoded
  once and cached, which makes GRPO's many samples cheap); ``pooling="joined"`` encodes "k1, k2, ..." instead.
* ``R_recon = -min(1, log(PPL) / log(V))`` in [-1, 0]: ``log(PPL)`` is the scoring LM's mean per-token negative
  log-likelihood of the reference given the keywords and ``V`` its vocabulary size, so a uniform guess over the
  vocabulary scores -1 and a perfect reconstruction 0. The paper's raw ``-PPL`` is unbounded; the log-ratio keeps
  the three terms on one scale.
* ``R_len   = -min(1, n / N_max)`` in [-1, 0] for n keywords.
* ``R = a * R_info + b * R_recon + c * R_len`` with defaults a=1, b=1, c=0.5 (so each keyword costs 0.05 when
  N_max=10 and must buy at least that much information or reconstruction).

Scoring LMs (``nll(keywords=..., targets=...)`` -> mean per-token NLL, and ``vocab_size``):
``KeywordCacheLM`` for the extractive backend, a unigram LM trained on the catalogue text, interpolated with a
cache over the keywords' words (a "cache LM"): ``P(w|K) = lam * 1[w in K]/|K| + (1 - lam) * P_cat(w)``. It rewards
keywords whose words appear in the reference and penalises padding the list (the cache mass is spread thinner).
``MllmScorer`` for the ``mllm`` backend: the frozen reference MLLM's NLL of the reference after a keywords prompt.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mmsrarec_lib.summarize.encoders import words


@dataclass(frozen=True)
class RewardConfig:
    a_info: float = field(default=1.0, metadata={"help": "weight of R_info"})
    b_recon: float = field(default=1.0, metadata={"help": "weight of R_recon"})
    c_len: float = field(default=0.5, metadata={"help": "weight of R_len"})
    n_max: int = field(default=10, metadata={"help": "keyword cap N_max (R_len = -n/N_max)"})
    pooling: str = "mean"  # mean | joined

    def __post_init__(self) -> None:
        if self.n_max < 1:
            raise ValueError(f"n_max must be >= 1, got {self.n_max}")
        if self.pooling not in ("mean", "joined"):
            raise ValueError(f"pooling must be 'mean' or 'joined', got {self.pooling!r}")


@dataclass(frozen=True)
class RewardTerms:
    r_info: float
    r_recon: float
    r_len: float
    reward: float


def r_len(n_keywords: int, *, n_max: int) -> float:
    """-min(1, n / n_max)."""
    return -min(1.0, n_keywords / n_max)


def r_recon(mean_nll: float, *, vocab_size: int) -> float:
    """-min(1, log(PPL) / log(V)) where log(PPL) = mean per-token NLL (clipped below at 0)."""
    if vocab_size < 2:
        raise ValueError("vocab_size must be >= 2")
    return -min(1.0, max(0.0, mean_nll) / math.log(vocab_size))


def cosine(u: np.ndarray, v: np.ndarray) -> float:
    nu, nv = float(np.linalg.norm(u)), float(np.linalg.norm(v))
    if nu == 0.0 or nv == 0.0:
        return 0.0
    return float(np.dot(u, v) / (nu * nv))


def keyword_vector(keywords: Sequence[str], encoder, *, pooling: str = "mean") -> np.ndarray:
    """phi(keywords): mean of per-keyword embeddings, or the embedding of the joined list. [D]"""
    if not keywords:
        return np.zeros(encoder.dim, dtype=np.float32)
    if pooling == "joined":
        return encoder.encode([", ".join(keywords)])[0]
    return encoder.encode(list(keywords)).mean(axis=0)


def r_info(keywords: Sequence[str], reference: str, encoder, *, pooling: str = "mean") -> float:
    """cos(phi(keywords), phi(reference)); 0 for an empty keyword list."""
    if not keywords:
        return 0.0
    return cosine(keyword_vector(keywords, encoder, pooling=pooling), encoder.encode([reference])[0])


def combine(*, info: float, recon: float, length: float, config: RewardConfig) -> RewardTerms:
    total = config.a_info * info + config.b_recon * recon + config.c_len * length
    return RewardTerms(r_info=info, r_recon=recon, r_len=length, reward=total)


def score_keywords(
    keyword_lists: Sequence[Sequence[str]],
    references: Sequence[str],
    *,
    encoder,
    scorer,
    config: RewardConfig,
) -> list[RewardTerms]:
    """All three terms and R for each (keywords, reference) pair; one batched NLL call for R_recon."""
    if len(keyword_lists) != len(references):
        raise ValueError(f"{len(keyword_lists)} keyword lists for {len(references)} references")
    nlls = scorer.nll(keywords=keyword_lists, targets=references)
    # warm the encoder's cache in two batched calls (per-text calls are far slower for a transformer encoder)
    encoder.encode(list(dict.fromkeys(references)))
    if config.pooling == "mean":
        encoder.encode(list(dict.fromkeys(k for kws in keyword_lists for k in kws)))
    else:
        encoder.encode(list(dict.fromkeys(", ".join(kws) for kws in keyword_lists if kws)))
    out = []
    for kws, ref, nll in zip(keyword_lists, references, nlls):
        out.append(
            combine(
                info=r_info(kws, ref, encoder, pooling=config.pooling),
                recon=r_recon(float(nll), vocab_size=scorer.vocab_size),
                length=r_len(len(kws), n_max=config.n_max),
                config=config,
            )
        )
    return out


class KeywordCacheLM:
    """Unigram LM of the catalogue text (add-k smoothed) interpolated with a cache over the keywords' words."""

    def __init__(self, *, texts: Iterable[str], lam: float = 0.5, add_k: float = 0.1) -> None:
        if not 0.0 <= lam < 1.0:
            raise ValueError(f"lam must be in [0, 1), got {lam}")
        counts = Counter(w for t in texts for w in words(t))
        self.lam = lam
        self.add_k = add_k
        self.counts = counts
        self.total = sum(counts.values())
        self.vocab_size = len(counts) + 1  # + one unknown-word symbol

    def p_catalogue(self, word: str) -> float:
        return (self.counts.get(word, 0) + self.add_k) / (self.total + self.add_k * self.vocab_size)

    def nll_one(self, keywords: Sequence[str], target: str) -> float:
        cache = [w for k in keywords for w in words(k)]
        cache_counts = Counter(cache)
        toks = words(target)
        if not toks:
            return 0.0
        total = 0.0
        for w in toks:
            p_cache = cache_counts.get(w, 0) / len(cache) if cache else 0.0
            lam = self.lam if cache else 0.0
            total -= math.log(lam * p_cache + (1.0 - lam) * self.p_catalogue(w))
        return total / len(toks)

    def nll(self, *, keywords: Sequence[Sequence[str]], targets: Sequence[str]) -> np.ndarray:
        return np.array([self.nll_one(k, t) for k, t in zip(keywords, targets)], dtype=np.float64)


class MllmScorer:
    """Mean per-token NLL of the target after "Keywords: ...\\nDescription:" under a (frozen) causal MLLM."""

    def __init__(self, model, processor, *, max_target_tokens: int = 64, batch_size: int = 16) -> None:
        self.model = model
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.vocab_size = len(self.tokenizer)
        self.max_target_tokens = max_target_tokens
        self.batch_size = batch_size

    def nll(self, *, keywords: Sequence[Sequence[str]], targets: Sequence[str]) -> np.ndarray:
        import torch

        out: list[float] = []
        tok = self.tokenizer
        for start in range(0, len(targets), self.batch_size):
            kw = keywords[start : start + self.batch_size]
            tg = targets[start : start + self.batch_size]
            seqs, n_prompt = [], []
            for k, t in zip(kw, tg):
                p_ids = tok.encode("Keywords: " + ", ".join(k) + "\nDescription:", add_special_tokens=False)
                t_ids = tok.encode(" " + t, add_special_tokens=False)[: self.max_target_tokens]
                seqs.append(p_ids + t_ids)
                n_prompt.append(len(p_ids))
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), tok.pad_token_id, dtype=torch.long)  # [B, T] right padded
            mask = torch.zeros_like(ids)
            target_mask = torch.zeros_like(ids, dtype=torch.bool)
            for i, s in enumerate(seqs):
                ids[i, : len(s)] = torch.tensor(s)
                mask[i, : len(s)] = 1
                target_mask[i, n_prompt[i] : len(s)] = True
            dev = self.model.device
            with torch.no_grad():
                logits = self.model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits.float()  # [B,T,V]
            logp = torch.log_softmax(logits[:, :-1], dim=-1)  # predicts token t+1
            tgt = ids[:, 1:].to(dev)
            tok_lp = logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)  # [B, T-1]
            m = target_mask[:, 1:].to(dev).float()
            nll = -(tok_lp * m).sum(1) / m.sum(1).clamp(min=1)
            out.extend(nll.cpu().tolist())
        return np.array(out, dtype=np.float64)
