"""The minilm-effnet backbone: the yes/no readout, the cached user part against the reference computation, the
image projector and id token reaching the score, and Trainer resume after a killed training subprocess.

A tiny 2-layer BERT (MiniLM's tokenizer) stands in for MiniLM so the tests stay fast; the code path is the same."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests._backbone_worker import synthetic, tiny_bert
from tests._kill_helpers import kill_when_hanging

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert(tmp_path_factory.mktemp("bert"))


def _model(bert_dir, *, id_dim=0, seed=0):
    from mmsrarec_lib.models.minilm_effnet import BackboneConfig, build_backbone

    cfg = BackboneConfig(text_model=bert_dir, lora_layers=1, image_dim=16, id_dim=id_dim, block_heads=4, block_dim=16,
                         block_ff=32, dropout=0.0)
    model, tok = build_backbone(cfg, seed=seed)
    with torch.no_grad():  # LoRA B starts at zero: make the adapters matter, as after training
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    return model.eval(), tok


def _reranker(model, tok, *, feats=None, ids=None, id_dim=0):
    from mmsrarec_lib.recommend.encoder_inputs import EncoderPromptConfig, FeatureBank, InputBuilder
    from mmsrarec_lib.recommend.encoder_scorer import EncoderReranker

    ctx, _, default_feats = synthetic()
    bank = FeatureBank(image=default_feats if feats is None else feats, image_dim=16, id_vectors=ids, id_dim=id_dim)
    builder = InputBuilder(tok, ctx, EncoderPromptConfig(max_user_tokens=40, max_item_tokens=12))
    return EncoderReranker(model=model, builder=builder, features=bank, progress=False)


def test_yes_probability_is_the_two_way_softmax_of_known_logits():
    from mmsrarec_lib.models.minilm_effnet import yes_probability

    p = yes_probability(torch.tensor([[2.0, 0.5], [-1.0, 3.0], [0.0, 0.0]]))
    want = [math.exp(2.0) / (math.exp(2.0) + math.exp(0.5)), math.exp(-1.0) / (math.exp(-1.0) + math.exp(3.0)), 0.5]
    torch.testing.assert_close(p, torch.tensor(want), atol=1e-6, rtol=0)


def test_readout_reads_the_answer_position_of_a_model_with_known_logits(bert_dir):
    model, tok = _model(bert_dir)
    with torch.no_grad():  # logits = W LN(h) + b with W = 0: exactly b whatever the inputs
        model.readout.weight.zero_()
        model.readout.bias.copy_(torch.tensor([1.25, -0.75]))
    rr = _reranker(model, tok)
    p = rr.mllm_scores("u0", ["i1", "i2", "i3"], ["i4", "i5"])
    want = 1.0 / (1.0 + math.exp(-(1.25 + 0.75)))  # p(yes) / (p(yes) + p(no)) = sigmoid(l_yes - l_no)
    assert p == pytest.approx([want, want], abs=1e-6)
    # with W = e_ANSWER-direction only, the logits follow the ANSWER state: different users now differ
    with torch.no_grad():
        model.readout.weight.normal_()
    assert not torch.allclose(torch.tensor(rr.reference_scores("u0", ["i1"], ["i4"])),
                              torch.tensor(rr.reference_scores("u1", ["i7", "i9", "i2"], ["i4"])))


@pytest.mark.parametrize("id_dim", [0, 8])
def test_cached_user_part_equals_the_reference_full_pass(bert_dir, id_dim):
    import numpy as np

    model, tok = _model(bert_dir, id_dim=id_dim)
    ids = {f"i{k}": np.random.default_rng(100 + k).standard_normal(8).astype("float32") for k in range(16)}
    rr = _reranker(model, tok, ids=ids if id_dim else None, id_dim=id_dim)
    users = ["u0", "u1", "u2"]
    hist = [["i1"], ["i2", "i3", "i4", "i5", "i6", "i7"], ["i8", "i9"]]  # different lengths: padded in the cache
    cands = [["i0", "i1", "i2", "i3"], ["i10", "i11"], ["i12", "i13", "i14", "i15", "i0"]]  # odd/even: image/none
    cached = rr.mllm_scores_batch(users, hist, cands)
    for u, h, c, got in zip(users, hist, cands, cached, strict=True):
        ref = rr.reference_scores(u, h, c)
        assert got.shape == (len(c),)
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    assert np.std(np.concatenate(cached)) > 1e-4  # not a constant model


def test_image_projector_and_id_token_change_the_score(bert_dir):
    import numpy as np

    model, tok = _model(bert_dir, id_dim=8)
    ctx, _, feats = synthetic()
    ids = {f"i{k}": np.full(8, 0.1 * k, dtype="float32") for k in range(16)}
    base = _reranker(model, tok, feats=feats, ids=ids, id_dim=8).mllm_scores("u0", ["i1", "i3"], ["i2", "i4"])
    other = {k: v + 3.0 for k, v in feats.items()}
    moved = _reranker(model, tok, feats=other, ids=ids, id_dim=8).mllm_scores("u0", ["i1", "i3"], ["i2", "i4"])
    assert np.all(np.abs(moved - base) > 1e-5)  # i2, i4 have images: their projected tokens moved the score
    no_img = _reranker(model, tok, feats={}, ids=ids, id_dim=8).mllm_scores("u0", ["i1", "i3"], ["i2", "i4"])
    assert np.all(np.abs(no_img - base) > 1e-5)  # the learned "no image" tokens replace them
    ids2 = {**ids, "i2": ids["i2"] - 2.0}
    new_id = _reranker(model, tok, feats=feats, ids=ids2, id_dim=8).mllm_scores("u0", ["i1", "i3"], ["i2", "i4"])
    assert abs(new_id[0] - base[0]) > 1e-5 and new_id[1] == pytest.approx(base[1], abs=1e-7)  # only i2's id moved


def test_hard_negatives_come_from_the_generator_top_m_without_target_or_history():
    import numpy as np

    from mmsrarec_lib.recommend.encoder_train import PointDataset, TrainPoint, generator_top_m
    from tests._backbone_worker import FakeGenerator

    ctx, seqs, _ = synthetic()
    catalogue = sorted(ctx.items)
    gen = FakeGenerator(catalogue)
    points = [TrainPoint("u0", ("i1", "i2"), "i3"), TrainPoint("u1", ("i4",), "i5"), TrainPoint("u2", (), "i6")]
    interacted = {"u0": {"i9"}, "u1": {"i4", "i5", "i11"}, "u2": set()}  # u0, u2: history / target not in it
    pools = generator_top_m(gen, points, interacted, top_m=5, batch_size=2)  # two batches
    for p, pool in zip(points, pools, strict=True):
        scores = gen.score_catalogue([list(p.history)])[0]
        bad = interacted[p.user_id] | set(p.history) | {p.target}
        want = [catalogue[j] for j in np.argsort(-scores, kind="stable") if catalogue[j] not in bad]
        assert list(pool) == want[:5]  # the generator's best 5, in order
        assert p.target not in pool and not set(p.history) & set(pool) and not interacted[p.user_id] & set(pool)
    narrow = generator_top_m(gen, points, interacted, top_m=5, allowed=set(catalogue[:8]))
    assert all(set(pool) <= set(catalogue[:8]) for pool in narrow)  # never outside the training catalogue

    builder = None  # negatives_of does not build inputs
    data = PointDataset(points, builder=builder, interacted=interacted, catalogue=catalogue, negatives=6, seed=3,
                        hard_pool=pools, n_hard=3)
    for i, (p, pool) in enumerate(zip(points, pools, strict=True)):
        negs = data.negatives_of(i)
        assert len(negs) == 6 == len(set(negs))
        assert set(negs[:3]) <= set(pool)  # the hard share from the top-5
        assert p.target not in negs and not interacted[p.user_id] & set(negs)
        again = PointDataset(points, builder=builder, interacted=interacted, catalogue=catalogue, negatives=6,
                             seed=3, hard_pool=pools, n_hard=3)
        assert again.negatives_of(i) == negs  # a pure function of (seed, position): a resumed run sees the same
    plain = PointDataset(points, builder=builder, interacted=interacted, catalogue=catalogue, negatives=6, seed=3)
    assert plain.n_hard == 0  # no pool: random negatives only


def test_hard_share_applies_to_the_listed_training_protocols_and_survives_model_json():
    import json
    from dataclasses import asdict

    from mmsrarec_lib.recommend.encoder_train import EncoderTrainSettings

    s = EncoderTrainSettings(negatives=8, hard_negative_share=0.25, hard_negative_protocols=("full",))
    assert s.for_protocol("full").n_hard == 2 and s.for_protocol("paper").n_hard == 0
    assert s.for_protocol("paper").hard_negative_share == 0.0  # model.json records what the run trained with
    back = EncoderTrainSettings(**json.loads(json.dumps(asdict(s))))
    assert back == s and back.hard_negative_protocols == ("full",)
    with pytest.raises(ValueError):
        EncoderTrainSettings(hard_negative_share=1.5)


def _worker(bert, ckpt, out, *extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return [sys.executable, "-m", "tests._backbone_worker", str(bert), str(ckpt), str(out), *extra], env


@pytest.mark.slow
def test_trainer_resumes_after_a_killed_subprocess_and_matches_an_uninterrupted_run(bert_dir, tmp_path):
    from safetensors.torch import load_file

    cmd, env = _worker(bert_dir, tmp_path / "ck_ref", tmp_path / "ref.safetensors")
    ref_run = subprocess.run(cmd, env=env, check=True, cwd=ROOT, capture_output=True, text=True, timeout=300)

    ck = tmp_path / "ck"
    cmd, env = _worker(bert_dir, ck, tmp_path / "out.safetensors", "--hang-at", "4")
    kill_when_hanging(cmd, env, cwd=ROOT, marker=ck / "hanging")  # SIGKILL at step 4: no cleanup runs
    assert (ck / "checkpoint-4" / "rng_state.pth").exists() and not (tmp_path / "out.safetensors").exists()

    cmd, env = _worker(bert_dir, ck, tmp_path / "out.safetensors")
    done = subprocess.run(cmd, env=env, check=True, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "done resumed_from=4" in done.stdout
    assert "checkpoint 2\n" not in done.stdout  # steps 1-4 were not redone
    final = [ln for ln in ref_run.stdout.splitlines() if ln.startswith("done")][0].split("loss=")[1]
    assert f"loss={final}" in done.stdout  # the same last logged loss
    ref = load_file(str(tmp_path / "ref.safetensors"))
    got = load_file(str(tmp_path / "out.safetensors"))
    assert ref.keys() == got.keys() and any("lora_B" in k for k in ref)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], atol=1e-6, rtol=1e-5)
    assert any(got[k].abs().sum() > 0 for k in got if "lora_B" in k)  # LoRA really trained (B starts at 0)
