"""The tiny LLaVA: built from a config, saved as a HF folder, loaded back through the hub code path, LoRA-trainable."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from mmsrarec_lib.mllm import TinyMllmConfig, build_inputs, build_tiny_mllm, generate_text, load_mllm, train_tokenizer

TEXTS = [
    "Toy Story: a cowboy doll is threatened by a new spaceman action figure. Animation Children Comedy",
    "GoldenEye: James Bond teams up with a Russian agent to stop a satellite weapon. Action Adventure Thriller",
    "Four Rooms: four interlocking tales set in a hotel on New Year's Eve. Thriller Comedy",
] * 20
SMALL = TinyMllmConfig(vocab_size=400, hidden_size=64, intermediate_size=128, vision_hidden_size=32, image_size=32)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_mllm(tmp_path_factory.mktemp("tiny") / "llava", texts=TEXTS, config=SMALL)


def _image(color=(200, 30, 30)):
    return Image.new("RGB", (45, 70), color)


def test_tokenizer_has_chat_specials_and_roundtrips_unseen_text():
    tok = train_tokenizer(texts=TEXTS, vocab_size=400)
    for special in ("<image>", "<|im_start|>", "<|im_end|>", "<pad>"):
        ids = tok.encode(special, add_special_tokens=False)
        assert len(ids) == 1, special  # one atomic token each
    unseen = "Zürich naïve 日本 #42"
    assert tok.decode(tok.encode(unseen, add_special_tokens=False)) == unseen  # byte-level: nothing is lost
    assert tok.eos_token == "<|im_end|>"


def test_folder_is_a_complete_hf_llava(tiny_dir):
    config = json.loads((tiny_dir / "config.json").read_text())
    assert config["model_type"] == "llava"
    assert config["text_config"]["model_type"] == "llama"
    assert config["vision_config"]["model_type"] == "clip_vision_model"
    assert (tiny_dir / "model.safetensors").exists()
    assert "<|im_start|>" in (tiny_dir / "chat_template.jinja").read_text()


def test_roundtrip_gives_identical_logits_and_image_tokens(tiny_dir, tmp_path):
    model, processor = load_mllm(tiny_dir, device="cpu")
    batch = build_inputs(processor, prompts=["keywords please", "a longer prompt for padding"], images=[_image()] * 2)
    n_image = (batch["input_ids"] == model.config.image_token_index).sum(dim=1)  # [B]
    assert n_image.tolist() == [SMALL.image_tokens] * 2  # the processor expanded <image> to one token per patch
    with torch.no_grad():
        logits = model(**batch).logits  # [B, T, V]
    model.save_pretrained(tmp_path / "again")
    processor.save_pretrained(tmp_path / "again")
    model2, processor2 = load_mllm(tmp_path / "again", device="cpu")
    batch2 = build_inputs(processor2, prompts=["keywords please", "a longer prompt for padding"], images=[_image()] * 2)
    assert torch.equal(batch["input_ids"], batch2["input_ids"])
    with torch.no_grad():
        logits2 = model2(**batch2).logits
    assert torch.allclose(logits, logits2, atol=1e-6)
    # the image reaches the logits: another image changes them
    other = build_inputs(processor, prompts=["keywords please", "a longer prompt for padding"],
                         images=[_image((0, 0, 250))] * 2)
    with torch.no_grad():
        assert not torch.allclose(model(**other).logits[:, -1], logits[:, -1], atol=1e-5)


def test_generation_is_deterministic_and_batched(tiny_dir):
    model, processor = load_mllm(tiny_dir, device="cpu")
    prompts = ["keywords", "describe the image in a few keywords please"]
    a = generate_text(model, processor, prompts=prompts, images=[_image()] * 2, max_new_tokens=6)
    b = generate_text(model, processor, prompts=prompts, images=[_image()] * 2, max_new_tokens=6)
    assert a == b and len(a) == 2
    # left padding: the short prompt in a batch gives the same reply as alone
    alone = generate_text(model, processor, prompts=prompts[:1], images=[_image()], max_new_tokens=6)
    assert alone[0] == a[0]


def test_missing_local_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mllm(tmp_path / "nope")


def test_lora_step_trains_only_the_adapter_and_lowers_the_loss(tiny_dir):
    from peft import LoraConfig, get_peft_model

    model, processor = load_mllm(tiny_dir, device="cpu")
    base_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    batch = build_inputs(processor, prompts=["toy story keywords"], images=[_image()])
    labels = batch["input_ids"].clone()  # [1, T]
    labels[batch["attention_mask"] == 0] = -100
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=5e-2)
    losses = []
    for _ in range(8):
        loss = peft_model(**batch, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1
    for name, p in peft_model.base_model.model.named_parameters():
        if "lora_" not in name:
            key = name.replace(".base_layer", "")
            assert torch.equal(p, base_before[key]), name  # base weights frozen
