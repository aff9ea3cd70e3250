"""Rewards checked against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmsrarec_lib.summarize.encoders import HashingEncoder
from mmsrarec_lib.summarize.grpo import group_advantages
from mmsrarec_lib.summarize.rewards import (
    KeywordCacheLM,
    RewardConfig,
    combine,
    cosine,
    r_info,
    r_len,
    r_recon,
    score_keywords,
)


class OneHotEncoder:
    """phi by hand: each known word is an axis; a text is the normalised sum of its words' axes."""

    dim = 3
    axes = {"space": 0, "toys": 1, "cowboy": 2}

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.replace(",", " ").split():
                if w in self.axes:
                    out[i, self.axes[w]] += 1
            n = np.linalg.norm(out[i])
            if n:
                out[i] /= n
        return out


def test_r_len_is_minus_n_over_nmax_and_clipped():
    assert r_len(0, n_max=10) == 0.0
    assert r_len(3, n_max=10) == pytest.approx(-0.3)
    assert r_len(25, n_max=10) == -1.0


def test_r_recon_is_log_ppl_over_log_v_clipped():
    v = 1000
    # uniform guess: NLL = log V -> -1; perfect: NLL = 0 -> 0; half-way -> -0.5
    assert r_recon(math.log(v), vocab_size=v) == pytest.approx(-1.0)
    assert r_recon(0.0, vocab_size=v) == 0.0
    assert r_recon(0.5 * math.log(v), vocab_size=v) == pytest.approx(-0.5)
    assert r_recon(3 * math.log(v), vocab_size=v) == -1.0  # worse than uniform still clips at -1
    with pytest.raises(ValueError):
        r_recon(1.0, vocab_size=1)


def test_r_info_by_hand():
    enc = OneHotEncoder()
    # keywords {space, toys} (mean of unit axes e0, e1 -> (1,1,0)/sqrt2) vs reference "toys" (e1): cos = 1/sqrt2
    assert r_info(["space", "toys"], "toys", enc) == pytest.approx(1 / math.sqrt(2), abs=1e-6)
    assert r_info(["cowboy"], "space toys", enc) == pytest.approx(0.0, abs=1e-6)
    assert r_info([], "toys", enc) == 0.0
    # joined pooling encodes "space, toys, toys" as one text: (1,2,0)/sqrt5 vs e1 -> 2/sqrt5
    assert r_info(["space", "toys", "toys"], "toys", enc, pooling="joined") == pytest.approx(2 / math.sqrt(5), abs=1e-6)
    assert cosine(np.zeros(3), np.ones(3)) == 0.0


def test_combine_uses_the_config_weights():
    cfg = RewardConfig(a_info=2.0, b_recon=0.5, c_len=0.1, n_max=5)
    t = combine(info=0.4, recon=-0.6, length=-0.2, config=cfg)
    assert t.reward == pytest.approx(2.0 * 0.4 + 0.5 * -0.6 + 0.1 * -0.2)  # 0.48
    with pytest.raises(ValueError):
        RewardConfig(n_max=0)


def test_cache_lm_probabilities_by_hand():
    # catalogue: "a b" + "a c" -> counts a=2, b=1, c=1, total 4, V = 3 + 1 (unknown) = 4; add_k = 0 keeps it exact
    lm = KeywordCacheLM(texts=["a b", "a c"], lam=0.5, add_k=0.0)
    assert lm.vocab_size == 4
    assert lm.p_catalogue("a") == pytest.approx(0.5)
    # no keywords: NLL of "b" = -log(1/4)
    assert lm.nll_one([], "b") == pytest.approx(math.log(4))
    # keyword "b": P(b) = 0.5 * 1 + 0.5 * 0.25 = 0.625
    assert lm.nll_one(["b"], "b") == pytest.approx(-math.log(0.625))
    # keywords "b", "c": P(b) = 0.5 * 0.5 + 0.5 * 0.25 = 0.375 (padding the list dilutes the cache)
    assert lm.nll_one(["b", "c"], "b") == pytest.approx(-math.log(0.375))
    # mean over target tokens: "a b" with keyword "b": (-log(0.5*0.5) - log(0.625)) / 2
    assert lm.nll_one(["b"], "a b") == pytest.approx((-math.log(0.25) - math.log(0.625)) / 2)


def test_score_keywords_prefers_informative_short_lists():
    texts = ["a cowboy doll and a spaceman toy fight", "a spy saves the world", "a hotel on new year's eve"]
    lm = KeywordCacheLM(texts=texts)
    enc = HashingEncoder(dim=512)
    ref = texts[0]
    good, padded, wrong = ["cowboy doll", "spaceman"], ["cowboy doll", "spaceman", "hotel", "spy", "world"], ["hotel"]
    terms = score_keywords([good, padded, wrong], [ref] * 3, encoder=enc, scorer=lm, config=RewardConfig())
    assert terms[0].reward > terms[1].reward > terms[2].reward
    assert terms[0].r_len == pytest.approx(-0.2) and terms[1].r_len == pytest.approx(-0.5)
    assert terms[0].r_recon > terms[2].r_recon


def test_group_advantages_by_hand():
    r = __import__("torch").tensor([[1.0, 3.0], [2.0, 2.0]])
    adv = group_advantages(r)
    # group 1: mean 2, std 1 -> [-1, 1]; group 2: equal rewards -> 0
    assert adv.tolist()[0] == pytest.approx([-1.0, 1.0], abs=1e-5)
    assert adv.tolist()[1] == pytest.approx([0.0, 0.0])
