"""A tiny model of a real MLLM architecture (LLaVA: CLIP vision tower + projector + Llama), random weights.

Why LLaVA: its processor works without torchvision (see the shared stack notes) and its language model uses plain
1-D positions, which the recommender needs for shared-prefix KV-cache scoring. The model is saved as an ordinary
Hugging Face folder (``config.json``, ``model.safetensors``, tokenizer, processor with the chat template), so
``load_mllm`` loads it through exactly the code path a hub id like ``llava-hf/llava-1.5-7b-hf`` takes.

The weights are random: the tiny model exercises shapes, batching, generation, LoRA and GRPO on a CPU; its
outputs are not meaningful until it is trained.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mmsrarec_lib.mllm.tokenizer import IMAGE_TOKEN, train_tokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TinyMllmConfig:
    """Sizes of the tiny LLaVA. Defaults: ~1.3 M parameters, 16 image tokens per 64 px image."""

    vocab_size: int = 2000
    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    max_positions: int = 2048
    vision_hidden_size: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    image_size: int = 64
    patch_size: int = 16
    init_std: float = 0.1  # wider than the usual 0.02: a tiny random model then has peaked, steerable logits
    seed: int = 0

    @property
    def image_tokens(self) -> int:
        """Image tokens per image in the prompt: one per patch (CLS dropped, ``default`` feature strategy)."""
        return (self.image_size // self.patch_size) ** 2


def build_tiny_mllm(
    out_dir: str | Path,
    *,
    texts: Iterable[str],
    arch: str = "llava",
    config: TinyMllmConfig | None = None,
) -> Path:
    """Train a tokenizer on ``texts``, build a tiny ``arch`` model from a config and save a complete HF folder.

    Returns ``out_dir``. Only ``arch="llava"`` is built (see the module docstring for why).
    """
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    if arch != "llava":
        raise ValueError(f"unsupported tiny MLLM arch {arch!r}: only 'llava' is built here")
    cfg = config or TinyMllmConfig()
    if cfg.image_size % cfg.patch_size:
        raise ValueError(f"image_size {cfg.image_size} must be a multiple of patch_size {cfg.patch_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = train_tokenizer(texts=texts, vocab_size=cfg.vocab_size)
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    vision = CLIPVisionConfig(
        hidden_size=cfg.vision_hidden_size,
        intermediate_size=cfg.vision_hidden_size * 2,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        projection_dim=cfg.vision_hidden_size,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        initializer_range=cfg.init_std,
    )
    model_cfg = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token_id,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    model_cfg.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(cfg.seed)
    model = LlavaForConditionalGeneration(model_cfg)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(out)

    processor = _llava_processor(tokenizer, cfg)
    processor.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("built tiny %s (%d parameters, vocab %d) at %s", arch, n_params, len(tokenizer), out)
    return out


def _llava_processor(tokenizer, cfg: TinyMllmConfig):
    """A LlavaProcessor with the PIL CLIP image processor (no torchvision) sized for the tiny vision tower."""
    from transformers import LlavaProcessor

    try:
        from transformers import CLIPImageProcessorPil as ImageProcessor
    except ImportError:  # older transformers: the plain class is PIL-based
        from transformers import CLIPImageProcessor as ImageProcessor

    image_processor = ImageProcessor(
        size={"shortest_edge": cfg.image_size},
        crop_size={"height": cfg.image_size, "width": cfg.image_size},
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=cfg.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
        chat_template=tokenizer.chat_template,
        image_token=IMAGE_TOKEN,
    )
