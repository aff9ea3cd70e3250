"""Do image keywords say what the item is about? Yardsticks that never use the image keywords' own rewards.

* ``own_vs_random``: for each item, is phi(image keywords) closer (cosine) to the item's own text than to a random
  other item's text? The win rate (0.5 = chance) with a bootstrap 95% interval; an item with no image keyword counts
  as a loss (``empty_is_loss``), so coverage and quality are judged together.
* ``reward_tracks_text``: for each item, draw random keyword sets of one fixed size from its candidates (so R_len
  is equal within an item and cannot confound); within each item, the Spearman correlation between each image
  reward term (which sees only the image) and the keywords' margin ``cos(kws, own text) - cos(kws, random text)``
  (which the rewards never see). Averaged over items; positive means raising the term raises what the keywords say
  about the item. The control scores every item's keyword sets with another item's image (a derangement) and
  should sit near 0; ``paired_diff`` is the mean per-item difference (own image minus the control) with a 95%
  bootstrap interval over items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WinRate:
    n: int
    wins: float
    rate: float
    ci95: tuple[float, float]


def _unit(m: np.ndarray) -> np.ndarray:
    return m / np.maximum(np.linalg.norm(m, axis=-1, keepdims=True), 1e-12)


def own_vs_random(keyword_vecs: np.ndarray, own_text: np.ndarray, *, seed: int = 0, bootstrap: int = 1000,
                  empty_is_loss: bool = True) -> WinRate:
    """Win rate of cos(k_i, t_i) > cos(k_i, t_j) for a random j != i; rows of ``keyword_vecs`` that are all zero
    (no keyword) are losses, or dropped with ``empty_is_loss=False``."""
    k = np.asarray(keyword_vecs, dtype=np.float64)
    t = _unit(np.asarray(own_text, dtype=np.float64))
    n = len(k)
    if n < 2 or n != len(t):
        raise ValueError(f"need >= 2 aligned rows, got {n} keyword rows and {len(t)} text rows")
    rng = np.random.default_rng(seed)
    other = (np.arange(n) + rng.integers(1, n, size=n)) % n  # a random j != i
    empty = ~np.any(k, axis=1)
    ku = _unit(k)
    win = ((ku * t).sum(1) > (ku * t[other]).sum(1)).astype(np.float64)
    win[empty] = 0.0
    if not empty_is_loss:
        win = win[~empty]
    if len(win) == 0:
        return WinRate(0, 0.0, float("nan"), (float("nan"), float("nan")))
    boots = [win[rng.integers(0, len(win), len(win))].mean() for _ in range(bootstrap)]
    return WinRate(len(win), float(win.sum()), float(win.mean()),
                   (float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))))


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); nan when either side is constant."""
    ra = _ranks(np.asarray(a, dtype=np.float64))
    rb = _ranks(np.asarray(b, dtype=np.float64))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    for v in np.unique(x):  # ties share their mean rank
        tie = x == v
        ranks[tie] = ranks[tie].mean()
    return ranks


def reward_tracks_text(
    candidates: Sequence[Sequence[str]],
    item_ids: Sequence[str],
    own_text: np.ndarray,
    *,
    terms: Callable[[list[list[str]], list[str]], list[dict]],
    embed: Callable[[list[str]], np.ndarray],
    samples: int = 8,
    size: int = 2,
    seed: int = 0,
) -> dict:
    """Per reward term (the keys of ``terms``' dicts): mean within-item Spearman(term, own-vs-random text margin)
    over ``samples`` random keyword sets of ``size`` candidates, and the same with another item's image."""
    rng = np.random.default_rng(seed)
    n = len(item_ids)
    t = _unit(np.asarray(own_text, dtype=np.float64))
    other = (np.arange(n) + rng.integers(1, n, size=n)) % n
    shifted = (np.arange(n) + rng.integers(1, n, size=n)) % n  # the control's image owner
    real: dict[str, list[float]] = {}
    control: dict[str, list[float]] = {}
    for i, cands in enumerate(candidates):
        if len(cands) <= size:
            continue
        sets = [[cands[j] for j in sorted(rng.choice(len(cands), size=size, replace=False))] for _ in range(samples)]
        vecs = _unit(np.stack([embed(s) for s in sets]))
        margin = vecs @ t[i] - vecs @ t[other[i]]
        for out, owner in ((real, item_ids[i]), (control, item_ids[shifted[i]])):
            scored = terms(sets, [owner] * samples)
            for key in scored[0]:
                out.setdefault(key, []).append(spearman([s[key] for s in scored], margin))
    out = {}
    for key in real:
        r, c = np.array(real[key]), np.array(control[key])
        both = np.isfinite(r) & np.isfinite(c)
        diff = r[both] - c[both]  # paired: the same item's keyword sets, its own image vs another's
        boots = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(1000)] if len(diff) else [np.nan]
        out[key] = {"items": int(np.isfinite(r).sum()), "spearman": float(np.nanmean(r)),
                    "spearman_control": float(np.nanmean(c)) if np.isfinite(c).any() else float("nan"),
                    "share_positive": float(np.mean(r[np.isfinite(r)] > 0)),
                    "paired_diff": float(diff.mean()) if len(diff) else float("nan"),
                    "paired_diff_ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))]}
    return out
