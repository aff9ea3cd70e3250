"""GRPO must raise a toy reward (a wrong-signed or broken update fails these tests)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mmsrarec_lib.summarize.candidates import N_FEATURES, Candidates
from mmsrarec_lib.summarize.grpo import GrpoConfig, MllmGrpoConfig, _completion_mask, train_selection_policy
from mmsrarec_lib.summarize.policy import PolicyConfig, SelectionPolicy


def _toy_candidates(n_items=40, n_cand=8, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_items):
        feats = rng.normal(size=(n_cand, N_FEATURES)).astype(np.float32)
        out.append(Candidates(str(i), [f"c{i}_{j}" for j in range(n_cand)], feats))
    return out


def test_selection_policy_grpo_raises_a_toy_reward(tmp_path):
    cands = _toy_candidates()
    good = {p for c in cands for p, f in zip(c.phrases, c.features) if f[0] > 0}  # toy target: feature 0 > 0

    def reward_fn(i, kw_lists):
        n = len(cands[i].phrases)
        return [{"reward": (sum(k in good for k in kws) - sum(k not in good for k in kws)) / n,
                 "r_info": 0.0, "r_recon": 0.0, "r_len": 0.0} for kws in kw_lists]

    policy = SelectionPolicy(PolicyConfig(n_max=8, seed=1))
    history = train_selection_policy(policy, cands, reward_fn, config=GrpoConfig(steps=40, batch_items=16,
                                                                                 group_size=8, lr=0.05))
    first = np.mean([h["reward"] for h in history[:5]])
    last = np.mean([h["reward"] for h in history[-5:]])
    assert last > first + 0.2, (first, last)
    # the deterministic choice now keeps mostly the good candidates
    kept = [k for c in cands for k in policy.select(c.phrases, c.features)[0]]
    assert np.mean([k in good for k in kept]) > 0.85
    # save / load keeps the decision
    policy.save(tmp_path)
    again = SelectionPolicy.load(tmp_path)
    assert again.select(cands[0].phrases, cands[0].features)[0] == policy.select(cands[0].phrases, cands[0].features)[0]


def test_completion_mask_stops_after_first_eos():
    eos, pad = 9, 0
    comp = torch.tensor([[5, 6, 9, 0, 0], [5, 9, 7, 9, 0], [5, 6, 7, 8, 4]])
    assert _completion_mask(comp, eos_id=eos, pad_id=pad).int().tolist() == [
        [1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    # models whose pad is their eos: the first eos still counts, later ones do not
    assert _completion_mask(torch.tensor([[5, 9, 9, 9]]), eos_id=9, pad_id=9).int().tolist() == [[1, 1, 0, 0]]


@pytest.mark.slow
def test_mllm_lora_grpo_raises_a_toy_reward(tmp_path):
    from mmsrarec_lib.mllm import TinyMllmConfig, build_tiny_mllm, load_mllm
    from mmsrarec_lib.summarize.grpo import add_lora, train_mllm_grpo

    texts = ["Toy Story: a cowboy doll is threatened by a new spaceman action figure. Animation Comedy",
             "GoldenEye: James Bond teams up with a Russian agent to stop a satellite weapon. Action"] * 20
    cfg = TinyMllmConfig(vocab_size=400, hidden_size=64, intermediate_size=128, vision_hidden_size=32, image_size=32)
    model, processor = load_mllm(build_tiny_mllm(tmp_path / "m", texts=texts, config=cfg), device="cpu")
    peft_model = add_lora(model, r=8, alpha=16)

    def even_share(i, completion_ids):  # toy reward: share of even token ids (half the vocabulary) in the reply
        return [{"reward": sum(t % 2 == 0 for t in ids) / max(len(ids), 1), "r_info": 0.0, "r_recon": 0.0,
                 "r_len": 0.0} for ids in completion_ids]

    img = Image.new("RGB", (40, 40), (9, 9, 9))
    history = train_mllm_grpo(peft_model, processor, prompts=["keywords a", "keywords b"], images=[img, img],
                              reward_fn=even_share, reward_on_token_ids=True,
                              config=MllmGrpoConfig(steps=16, batch_prompts=2, group_size=8, lr=2e-2,
                                                    max_new_tokens=3))
    first = np.mean([h["reward"] for h in history[:4]])
    last = np.mean([h["reward"] for h in history[-4:]])
    assert last > first + 0.15, [round(h["reward"], 3) for h in history]
    assert all("lora_" in n for n, p in peft_model.named_parameters() if p.requires_grad)
