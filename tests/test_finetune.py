"""LoRA fine-tuning: tokenisation/label masking, collation, and resume after a killed training subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmsrarec_lib.recommend.decoder_scoring import PromptEncoder
from mmsrarec_lib.recommend.finetune import IGNORE, Encoded, collate, encode_example, step_order
from mmsrarec_lib.recommend.tasks import Example
from tests._kill_helpers import kill_when_hanging
from tests._recommend_helpers import tiny_tokenizer

ROOT = Path(__file__).resolve().parent.parent


def test_labels_cover_only_the_target_and_generation_targets_end_with_eos():
    tok = tiny_tokenizer()
    enc = PromptEncoder(tok)
    yes = encode_example(Example("yesno", "User history", "Answer:", " yes"), encoder=enc, image=None,
                         max_length=100)
    n_prompt = len(enc.encode_prefix("User history")) + len(enc.encode_text("Answer:"))
    assert yes.labels[:n_prompt].eq(IGNORE).all()
    assert yes.labels[n_prompt:].tolist() == [enc.yes_id]  # exactly the scored answer token
    gen = encode_example(Example("recovery", "Keywords", " kids\nTitle:", " Movie"), encoder=enc, image=None,
                         max_length=100)
    assert gen.labels[-1].item() == tok.eos_token_id and gen.input_ids[-1].item() == tok.eos_token_id


def test_long_prompt_loses_its_oldest_prefix_tokens_but_keeps_bos_and_target():
    tok = tiny_tokenizer()
    enc = PromptEncoder(tok)
    ex = Example("yesno", "space war robots drama comedy love crime", "Answer:", " no")
    full = encode_example(ex, encoder=enc, image=None, max_length=1000)
    cut = encode_example(ex, encoder=enc, image=None, max_length=len(full.input_ids) - 3)
    assert len(cut.input_ids) == len(full.input_ids) - 3
    assert cut.input_ids[0] == tok.bos_token_id and cut.input_ids[-1].item() == enc.no_id
    assert cut.input_ids[1:].tolist() == full.input_ids[4:].tolist()
    with pytest.raises(ValueError, match="does not fit"):
        encode_example(ex, encoder=enc, image=None, max_length=3)


def test_collate_right_pads_and_stacks_images_in_row_order():
    img = torch.ones(3, 4, 4)
    batch = collate([Encoded(torch.tensor([5, 6, 7]), torch.tensor([IGNORE, IGNORE, 7]), None),
                     Encoded(torch.tensor([8]), torch.tensor([8]), img)], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, IGNORE, 7], [8, IGNORE, IGNORE]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["pixel_values"].shape == (1, 3, 4, 4)


def test_step_order_is_fixed_by_the_seed_and_covers_every_example_each_epoch():
    plan = step_order(10, steps=5, batch_size=4, seed=1)
    assert plan == step_order(10, steps=5, batch_size=4, seed=1)
    flat = [i for b in plan for i in b]
    assert sorted(flat[:10]) == list(range(10)) and all(len(b) == 4 for b in plan)


@pytest.fixture(scope="module")
def tiny_mllm_dir(tmp_path_factory):
    from mmsrarec_lib.mllm.tiny import build_tiny_mllm
    from tests._finetune_worker import synthetic_examples

    texts = [e.prefix + e.suffix + e.target for e in synthetic_examples()] * 3
    return build_tiny_mllm(tmp_path_factory.mktemp("mllm") / "tiny", texts=texts)


def _worker(model_dir, ckpt, out, *extra) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return [sys.executable, "-m", "tests._finetune_worker", str(model_dir), str(ckpt), str(out), *extra], env


@pytest.mark.slow
def test_training_resumes_after_a_killed_subprocess_and_matches_an_uninterrupted_run(tiny_mllm_dir, tmp_path):
    from safetensors.torch import load_file

    cmd, env = _worker(tiny_mllm_dir, tmp_path / "ck_ref", tmp_path / "ref")
    subprocess.run(cmd, env=env, check=True, cwd=ROOT, capture_output=True, timeout=300)

    ck = tmp_path / "ck"
    cmd, env = _worker(tiny_mllm_dir, ck, tmp_path / "out", "--hang-at", "4")
    kill_when_hanging(cmd, env, cwd=ROOT, marker=ck / "hanging")  # SIGKILL at step 4: no cleanup runs
    assert (ck / "latest").read_text() == "step-000004" and not (tmp_path / "out").exists()

    cmd, env = _worker(tiny_mllm_dir, ck, tmp_path / "out")
    done = subprocess.run(cmd, env=env, check=True, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "done resumed_from=4" in done.stdout
    assert "checkpoint step-000002" not in done.stdout  # steps 1-4 were not redone
    ref = load_file(str(tmp_path / "ref" / "adapter_model.safetensors"))
    got = load_file(str(tmp_path / "out" / "adapter_model.safetensors"))
    assert ref.keys() == got.keys() and len(ref) > 0
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], atol=1e-6, rtol=1e-5)
    # LoRA B matrices start at zero: non-zero ones show real training happened
    assert any(got[k].abs().sum() > 0 for k in got if "lora_B" in k)
    assert sorted(p.name for p in ck.glob("step-*")) == ["step-000006", "step-000008"]  # only the last 2 kept
