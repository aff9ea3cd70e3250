"""A tiny randomly initialised HF vision model (ViT) saved locally: the HF-backbone path without a download."""

from __future__ import annotations

from pathlib import Path


def tiny_vit(path: Path, *, classify: bool) -> Path:
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32, num_labels=3,
                    id2label={0: "cat", 1: "dog", 2: "car"}, label2id={"cat": 0, "dog": 1, "car": 2})
    model = ViTForImageClassification(cfg) if classify else ViTModel(cfg)
    model.save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path
