"""Prompts with an optional image through the processor's chat template, and batched deterministic generation."""

from __future__ import annotations

from collections.abc import Sequence


def build_messages(*, prompt: str, with_image: bool, system: str | None = None) -> list[dict]:
    """Chat messages in the typed-content form every modern processor's template accepts."""
    content: list[dict] = []
    if with_image:
        content.append({"type": "image"})
    content.append({"type": "text", "text": prompt})
    messages: list[dict] = []
    if system:
        messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
    messages.append({"role": "user", "content": content})
    return messages


def build_inputs(
    processor,
    *,
    prompts: Sequence[str],
    images: Sequence | None = None,
    system: str | None = None,
    device: str | None = None,
):
    """Tokenize a batch of prompts (left padded), each with its image when ``images`` is given.

    ``images`` is a list of PIL images aligned with ``prompts`` (all prompts then carry an image). Returns the
    processor's ``BatchFeature``: ``input_ids`` / ``attention_mask`` [B, T] and ``pixel_values`` [B, 3, H, W].
    """
    with_image = images is not None
    if with_image and len(images) != len(prompts):
        raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
    texts = [
        processor.apply_chat_template(
            build_messages(prompt=p, with_image=with_image, system=system), add_generation_prompt=True, tokenize=False
        )
        for p in prompts
    ]
    tok = getattr(processor, "tokenizer", processor)
    tok.padding_side = "left"
    kwargs = {"text": texts, "padding": True, "return_tensors": "pt"}
    if with_image:
        kwargs["images"] = list(images)
    batch = processor(**kwargs)
    return batch.to(device) if device else batch


def suppressed_token_ids(processor) -> list[int]:
    """Token ids a reply must never contain: image/video placeholders, the turn opener, padding and BOS.

    A model that emits an image placeholder would break its own next forward pass (placeholder count no longer
    matches the image features); untrained or tiny models do emit them.
    """
    tok = getattr(processor, "tokenizer", processor)
    names = {getattr(processor, "image_token", None), getattr(processor, "video_token", None), "<|im_start|>",
             tok.pad_token if tok.pad_token != tok.eos_token else None, tok.bos_token}
    ids = set()
    for name in names:
        if not name:
            continue
        tid = tok.convert_tokens_to_ids(name)
        if isinstance(tid, int) and tid != tok.unk_token_id and tid != tok.eos_token_id:
            ids.add(tid)
    return sorted(ids)


def generate_text(
    model,
    processor,
    *,
    prompts: Sequence[str],
    images: Sequence | None = None,
    system: str | None = None,
    max_new_tokens: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
) -> list[str]:
    """Generate one reply per prompt (greedy by default, so reruns give the same text) and decode it."""
    import torch

    batch = build_inputs(processor, prompts=prompts, images=images, system=system, device=str(model.device))
    tok = getattr(processor, "tokenizer", processor)
    gen_kwargs = {"max_new_tokens": max_new_tokens, "do_sample": do_sample, "pad_token_id": tok.pad_token_id,
                  "suppress_tokens": suppressed_token_ids(processor)}
    if do_sample:
        gen_kwargs["temperature"] = temperature
    with torch.no_grad():
        out = model.generate(**batch, **gen_kwargs)  # [B, T + new]
    new_tokens = out[:, batch["input_ids"].shape[1] :]  # [B, new]
    return [t.strip() for t in tok.batch_decode(new_tokens, skip_special_tokens=True)]
