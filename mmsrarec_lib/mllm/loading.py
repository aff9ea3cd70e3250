"""One loader for every MLLM: a hub id (``Qwen/Qwen2.5-VL-7B-Instruct``, ``llava-hf/llava-1.5-7b-hf``) or a local
folder such as the tiny model from ``build_tiny_mllm``. Set ``HF_HUB_OFFLINE=1`` where nothing may be downloaded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def resolve_device(device: str | None = None) -> str:
    """``device`` if given, else ``cuda`` when a GPU is visible, else ``cpu``."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_mllm(model_id_or_path: str | Path, *, device: str | None = None, dtype=None):
    """Load ``(model, processor)`` through ``AutoProcessor`` and ``AutoModelForImageTextToText``.

    On a GPU the model is placed with accelerate (``device_map``) in bfloat16 unless ``dtype`` says otherwise; on
    the CPU it stays float32. The model is returned in eval mode. A local path that does not exist is an error
    (rather than a silent hub lookup).
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    ref = str(model_id_or_path)
    looks_local = ref.startswith((".", "/", "~")) or os.sep in ref and not _looks_like_hub_id(ref)
    if looks_local and not Path(ref).expanduser().exists():
        raise FileNotFoundError(f"MLLM folder {ref} does not exist")
    dev = resolve_device(device)
    if dtype is None:
        dtype = torch.bfloat16 if dev.startswith("cuda") else torch.float32
    processor = AutoProcessor.from_pretrained(ref)
    kwargs: dict = {"dtype": dtype}
    if dev.startswith("cuda"):
        kwargs["device_map"] = "auto" if dev == "cuda" else dev
    model = AutoModelForImageTextToText.from_pretrained(ref, **kwargs)
    if not dev.startswith("cuda"):
        model.to(dev)
    model.eval()
    tok = getattr(processor, "tokenizer", processor)
    if getattr(tok, "pad_token", None) is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    log.info("loaded MLLM %s on %s (%s)", ref, dev, dtype)
    return model, processor


def _looks_like_hub_id(ref: str) -> bool:
    """``owner/name`` with no further slashes and no existing local folder of that name."""
    return ref.count("/") == 1 and not Path(ref).exists()
