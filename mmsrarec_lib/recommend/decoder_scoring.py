"""Candidate scoring: p = p(yes) / (p(yes) + p(no)) from the logits of the first answer token.

Two paths that must agree to float tolerance (tests/test_scoring.py):

* :func:`score_naive` — one full forward pass over ``prefix + suffix`` per candidate (the reference);
* :func:`score_shared_prefix` — the user's prefix is run once; its KV cache is copied and repeated for a batch
  of candidates, whose suffixes are right-padded and run together against the cached prefix. The attention mask
  covers ``[prefix | real suffix tokens]``; the logits are gathered at each candidate's last real position.
  Positions continue from the prefix length (1-D positions: LLaMA/LLaVA-style backbones), so the padded batch
  computes exactly what the full pass computes for each candidate's real tokens (causal attention never looks
  at the right padding).

The softmax is taken over the two logits ``[yes, no]`` only, which equals p(yes)/(p(yes)+p(no)) of the full softmax.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mmsrarec_lib.recommend.prompts import NO, YES


@dataclass(frozen=True)
class EncodedSuffix:
    """One candidate's suffix: token ids [S] and, when it shows an image, that image's pixel values [3, H, W]."""

    input_ids: torch.Tensor
    pixel_values: torch.Tensor | None = None


def answer_token_ids(tokenizer: Any) -> tuple[int, int]:
    """The ids of the first token of `` yes`` and of `` no`` (they must differ)."""
    yes = tokenizer(YES, add_special_tokens=False)["input_ids"]
    no = tokenizer(NO, add_special_tokens=False)["input_ids"]
    if not yes or not no or yes[0] == no[0]:
        raise ValueError(f"the tokenizer cannot tell {YES!r} from {NO!r} by their first token ({yes} vs {no})")
    return int(yes[0]), int(no[0])


def yes_probability(last_logits: torch.Tensor, *, yes_id: int, no_id: int) -> torch.Tensor:
    """last_logits [B, V] -> p(yes)/(p(yes)+p(no)) [B] (computed in float32)."""
    two = last_logits[:, [yes_id, no_id]].float()  # [B, 2]
    return torch.softmax(two, dim=-1)[:, 0]


def _forward(model: Any, **kwargs: Any) -> Any:
    return model(**{k: v for k, v in kwargs.items() if v is not None}, return_dict=True)


def _placement(model: Any) -> tuple[torch.device, torch.dtype]:
    """Where the backbone's weights live (inputs follow them: CPU here, CUDA on a GPU worker)."""
    tensors = [*model.parameters(), *model.buffers()] if isinstance(model, torch.nn.Module) else []
    if not tensors:
        return torch.device("cpu"), torch.float32
    return tensors[0].device, tensors[0].dtype


def _pixels(pixel_values: torch.Tensor | None, model: Any) -> torch.Tensor | None:
    if pixel_values is None:
        return None
    device, dtype = _placement(model)
    return pixel_values.to(device=device, dtype=dtype if dtype.is_floating_point else pixel_values.dtype)


def _cache_of(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


@torch.inference_mode()
def score_naive(
    model: Any, *, prefix_ids: torch.Tensor, suffixes: Sequence[EncodedSuffix], yes_id: int, no_id: int
) -> np.ndarray:
    """One full pass per candidate. prefix_ids [P]; returns scores [N]."""
    scores = []
    for suf in suffixes:
        ids = torch.cat([prefix_ids, suf.input_ids])[None].to(_placement(model)[0])  # [1, P+S]
        pv = _pixels(suf.pixel_values[None] if suf.pixel_values is not None else None, model)  # [1, 3, H, W]
        logits = _forward(model, input_ids=ids, pixel_values=pv, use_cache=False).logits  # [1, P+S, V]
        scores.append(yes_probability(logits[:, -1], yes_id=yes_id, no_id=no_id))
    return torch.cat(scores).cpu().numpy() if scores else np.zeros(0, dtype=np.float32)


@torch.inference_mode()
def prefix_cache(model: Any, prefix_ids: torch.Tensor) -> Any:
    """Run the prefix [P] once and return its KV cache (batch 1)."""
    out = _forward(model, input_ids=prefix_ids[None].to(_placement(model)[0]), use_cache=True)
    cache = _cache_of(out)
    if cache is None:
        raise ValueError("the backbone returned no KV cache: shared-prefix scoring needs use_cache support")
    return cache


@torch.inference_mode()
def score_shared_prefix(
    model: Any,
    *,
    prefix_ids: torch.Tensor,
    suffixes: Sequence[EncodedSuffix],
    yes_id: int,
    no_id: int,
    batch_size: int = 32,
    pad_id: int = 0,
) -> np.ndarray:
    """The prefix once, then the suffixes in right-padded batches against a copy of its cache. Returns [N]."""
    if not suffixes:
        return np.zeros(0, dtype=np.float32)
    base = prefix_cache(model, prefix_ids)
    p_len = int(prefix_ids.shape[0])
    scores = []
    for start in range(0, len(suffixes), batch_size):
        batch = suffixes[start : start + batch_size]
        b = len(batch)
        lens = torch.tensor([int(s.input_ids.shape[0]) for s in batch])  # [B]
        s_len = int(lens.max())
        ids = torch.full((b, s_len), pad_id, dtype=torch.long)  # [B, S]
        mask = torch.zeros((b, p_len + s_len), dtype=torch.long)  # [B, P+S]
        mask[:, :p_len] = 1
        for i, s in enumerate(batch):
            ids[i, : lens[i]] = s.input_ids
            mask[i, p_len : p_len + lens[i]] = 1
        images = [s.pixel_values for s in batch if s.pixel_values is not None]
        pv = _pixels(torch.stack(images) if images else None, model)  # [n_images, 3, H, W]
        cache = copy.deepcopy(base)
        cache.batch_repeat_interleave(b)
        device = _placement(model)[0]
        logits = _forward(model, input_ids=ids.to(device), attention_mask=mask.to(device), cache=cache,
                          pixel_values=pv, use_cache=True).logits  # [B, S, V]
        last = logits[torch.arange(b, device=device), (lens - 1).to(device)]  # [B, V]
        scores.append(yes_probability(last, yes_id=yes_id, no_id=no_id))
    return torch.cat(scores).cpu().numpy()


class PromptEncoder:
    """Text (and image) -> token ids for a backbone, given its processor or plain tokenizer.

    The prefix gets the tokenizer's special tokens (BOS); the suffix and the answer do not, so
    ``ids(prefix) + ids(suffix) + ids(answer)`` is the training sequence and the scoring input.
    """

    def __init__(self, processor: Any, *, image_token: str = "<image>") -> None:
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.image_token = getattr(processor, "image_token", None) or image_token
        self.has_images = hasattr(processor, "image_processor")
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (self.tokenizer.eos_token_id or 0))
        self.yes_id, self.no_id = answer_token_ids(self.tokenizer)

    def encode_prefix(self, text: str) -> torch.Tensor:
        """text -> ids [P] (with the tokenizer's BOS when it adds one)."""
        return torch.tensor(self.tokenizer(text)["input_ids"], dtype=torch.long)

    def encode_text(self, text: str) -> torch.Tensor:
        """text -> ids [T] without special tokens (suffixes without image, targets)."""
        return torch.tensor(self.tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)

    def encode_suffix(self, text: str, image: bytes | None = None) -> EncodedSuffix:
        """A suffix; with ``image`` (JPEG bytes) its image token is expanded by the processor."""
        if image is None or not self.has_images or self.image_token not in text:
            return EncodedSuffix(self.encode_text(text.replace(self.image_token + "\n", "")))
        from PIL import Image

        pil = Image.open(io.BytesIO(image)).convert("RGB")
        out = self.processor(text=[text], images=[pil], return_tensors="pt", add_special_tokens=False)
        return EncodedSuffix(out["input_ids"][0], out["pixel_values"][0])
