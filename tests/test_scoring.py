"""Scoring: p(yes)/(p(yes)+p(no)) on known logits; shared-prefix KV reuse == one full pass per candidate."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mmsrarec_lib.recommend.decoder_scoring import (
    EncodedSuffix,
    PromptEncoder,
    answer_token_ids,
    score_naive,
    score_shared_prefix,
    yes_probability,
)
from tests._recommend_helpers import tiny_llama, tiny_tokenizer


class LastTokenLogits(torch.nn.Module):
    """A 'model' whose logits at each position are a fixed row chosen by that position's token id."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = table  # [V, V]

    def forward(self, input_ids, **_):
        return SimpleNamespace(logits=self.table[input_ids])  # [B, T, V]


def test_yes_probability_matches_hand_computed_value():
    logits = torch.tensor([[0.0, 2.0, 0.5, 7.0]])  # yes=1, no=2; token 3 dominates the full softmax
    p = yes_probability(logits, yes_id=1, no_id=2)
    assert p.item() == pytest.approx(math.exp(2.0) / (math.exp(2.0) + math.exp(0.5)), abs=1e-6)
    full = torch.softmax(logits, -1)[0]
    assert p.item() == pytest.approx((full[1] / (full[1] + full[2])).item(), abs=1e-6)


def test_naive_score_reads_the_last_position_of_a_known_model():
    table = torch.zeros(5, 5)
    table[3, 1], table[3, 2] = 1.0, -1.0  # after token 3: yes logit 1, no logit -1 -> 1/(1+e^-2)
    table[4, 1], table[4, 2] = 0.0, 3.0  # after token 4: 1/(1+e^3)
    model = LastTokenLogits(table)
    sufs = [EncodedSuffix(torch.tensor([4, 3])), EncodedSuffix(torch.tensor([3, 4]))]
    got = score_naive(model, prefix_ids=torch.tensor([0, 0]), suffixes=sufs, yes_id=1, no_id=2)
    np.testing.assert_allclose(got, [1 / (1 + math.exp(-2)), 1 / (1 + math.exp(3))], atol=1e-6)


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_shared_prefix_equals_naive_on_a_real_transformer(batch_size):
    tok = tiny_tokenizer()
    model = tiny_llama(len(tok))
    enc = PromptEncoder(tok)
    prefix = enc.encode_prefix("You are a recommender. User history (oldest first):\n1. space war, robots\n")
    texts = ["Candidate: drama", "Candidate: comedy love crime thriller. Keywords: kids music",
             "Candidate: x yes", "Candidate: horror western sci-fi animation. Answer:", "yes no yes no yes no"] * 2
    sufs = [enc.encode_suffix(t) for t in texts]
    assert len({int(s.input_ids.shape[0]) for s in sufs}) > 2  # padding is really exercised
    naive = score_naive(model, prefix_ids=prefix, suffixes=sufs, yes_id=enc.yes_id, no_id=enc.no_id)
    shared = score_shared_prefix(model, prefix_ids=prefix, suffixes=sufs, yes_id=enc.yes_id, no_id=enc.no_id,
                                 batch_size=batch_size, pad_id=enc.pad_id)
    np.testing.assert_allclose(shared, naive, atol=1e-5)
    assert naive.std() > 0  # different candidates really get different scores
    assert ((naive > 0) & (naive < 1)).all()


def test_answer_token_ids_are_the_first_tokens_of_yes_and_no():
    tok = tiny_tokenizer()
    yes_id, no_id = answer_token_ids(tok)
    assert tok.decode([yes_id]).strip() == "yes" and tok.decode([no_id]).strip() == "no"


def test_encoder_prefix_has_bos_and_suffix_does_not():
    tok = tiny_tokenizer()
    enc = PromptEncoder(tok)
    assert int(enc.encode_prefix("Answer:")[0]) == tok.bos_token_id
    assert tok.bos_token_id not in enc.encode_suffix("Answer:").input_ids.tolist()
    # no image processor: the image placeholder line is dropped rather than left as text
    assert enc.encode_suffix("Candidate: x\n<image>\nAnswer:").input_ids.tolist() == \
        enc.encode_text("Candidate: x\nAnswer:").tolist()


def _jpeg(color) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 60), color).save(buf, "JPEG")
    return buf.getvalue()


def test_shared_prefix_equals_naive_on_tiny_llava_with_images(tmp_path):
    from mmsrarec_lib.mllm.loading import load_mllm
    from mmsrarec_lib.mllm.tiny import build_tiny_mllm

    d = build_tiny_mllm(tmp_path / "m", texts=["space war robots drama comedy yes no Candidate Answer"] * 20)
    model, processor = load_mllm(str(d))
    enc = PromptEncoder(processor)
    prefix = enc.encode_prefix("You are a recommender.\n1. space war\n")
    sufs = [enc.encode_suffix("Candidate: drama\n<image>\nAnswer:", _jpeg((30 * i, 50, 200 - 20 * i)))
            if i % 2 == 0 else enc.encode_suffix(f"Candidate: comedy robots {'war ' * i}\nAnswer:") for i in range(7)]
    assert sufs[0].pixel_values is not None and sufs[1].pixel_values is None
    naive = score_naive(model, prefix_ids=prefix, suffixes=sufs, yes_id=enc.yes_id, no_id=enc.no_id)
    shared = score_shared_prefix(model, prefix_ids=prefix, suffixes=sufs, yes_id=enc.yes_id, no_id=enc.no_id,
                                 batch_size=3, pad_id=enc.pad_id)
    np.testing.assert_allclose(shared, naive, atol=1e-5)
    assert len(set(np.round(naive[::2], 6))) > 1  # the image changes the score


def test_fusion_adds_the_standardised_generator_score_to_the_logit():
    from mmsrarec_lib.recommend.fusion import fuse

    p = np.array([0.5, 0.8, 0.2])
    np.testing.assert_allclose(fuse(p, np.array([1.0, 2.0, 3.0]), 0.0), p)  # weight 0: p itself
    got = fuse(p, np.array([1.0, 2.0, 3.0]), 2.0)
    z = (np.array([1.0, 2.0, 3.0]) - 2.0) / np.std([1.0, 2.0, 3.0])
    np.testing.assert_allclose(got, np.log(p / (1 - p)) + 2.0 * z, atol=1e-9)
    # a generator score that is missing (an item the generator cannot score) is neutral, not very low: z = 0
    part = fuse(p, np.array([1.0, -np.inf, 3.0]), 1.0)
    pc = np.clip(p, 1e-6, 1 - 1e-6)
    np.testing.assert_allclose(part, np.log(pc / (1 - pc)) + np.array([-1.0, 0.0, 1.0]))
