"""The ``Summarizer`` interface and its two backends.

``summarize(items) -> list[KeywordResult]``, one result per (item, modality) the backend covers. Text keywords are
read from title + description + categories; image keywords from the image alone (the paper summarizes the two
separately against modality bias). Every result carries its three reward terms.

* ``ExtractiveSummarizer`` (CPU default): text keywords from YAKE/KeyBERT candidates + a learned selection policy;
  its ``image_summarizer`` adds image keywords: by default an ``ImageExtractiveSummarizer`` (pretrained image
  features, ``image_keywords.py``), or an ``MllmSummarizer`` (``--image-model``).
* ``MllmSummarizer``: any HF image-text-to-text model; prompts below; greedy decoding; output parsed by
  ``parse_keywords``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Protocol

from mmsrarec_lib.summarize.candidates import extract_candidates
from mmsrarec_lib.summarize.parsing import parse_keywords
from mmsrarec_lib.summarize.policy import SelectionPolicy
from mmsrarec_lib.summarize.rewards import RewardConfig, score_keywords
from mmsrarec_lib.summarize.types import ItemInput, KeywordResult

log = logging.getLogger(__name__)

SYSTEM_PROMPT = "You summarize catalogue items into short keywords."
TEXT_PROMPT = (
    "List at most {n} keywords that describe this item, comma separated, nothing else.\n{text}"
)
IMAGE_PROMPT = "List at most {n} keywords that describe this image, comma separated, nothing else."


class Summarizer(Protocol):
    modalities: tuple[str, ...]
    version_tag: str

    def summarize(self, items: Sequence[ItemInput]) -> list[KeywordResult]: ...


def _results(items, modality, keyword_lists, *, encoder, scorer, reward_config) -> list[KeywordResult]:
    terms = score_keywords(keyword_lists, [it.reference for it in items], encoder=encoder, scorer=scorer,
                           config=reward_config)
    return [
        KeywordResult(it.item_id, modality, kws, it.input_sha256(modality), t.r_info, t.r_recon, t.r_len, t.reward)
        for it, kws, t in zip(items, keyword_lists, terms)
    ]


class ExtractiveSummarizer:
    """Text keywords chosen from YAKE/KeyBERT candidates + categories by a ``SelectionPolicy``; image keywords by
    ``image_summarizer`` (anything with ``summarize_modality(items, "image")``), when given."""

    version_tag = "extractive"

    def __init__(self, *, policy: SelectionPolicy, encoder, scorer, reward_config: RewardConfig = RewardConfig(),
                 image_summarizer=None) -> None:
        self.policy = policy
        self.encoder = encoder
        self.scorer = scorer
        self.reward_config = reward_config
        self.image_summarizer = image_summarizer
        self.modalities = ("text", "image") if image_summarizer else ("text",)

    def summarize(self, items: Sequence[ItemInput]) -> list[KeywordResult]:
        cands = extract_candidates(items, encoder=self.encoder)
        chosen = [self.policy.select(c.phrases, c.features)[0] for c in cands]
        out = _results(list(items), "text", chosen, encoder=self.encoder, scorer=self.scorer,
                       reward_config=self.reward_config)
        if self.image_summarizer:
            out.extend(self.image_summarizer.summarize_modality(items, "image"))
        return out


def decode_image(data: bytes):
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


class MllmSummarizer:
    """Keywords from an image-text-to-text model, text and image prompted separately."""

    version_tag = "mllm"

    def __init__(self, *, model, processor, encoder, scorer, reward_config: RewardConfig = RewardConfig(),
                 modalities: tuple[str, ...] = ("text", "image"), batch_size: int = 16, max_new_tokens: int = 32,
                 max_text_chars: int = 600) -> None:
        self.model = model
        self.processor = processor
        self.encoder = encoder
        self.scorer = scorer
        self.reward_config = reward_config
        self.modalities = modalities
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.max_text_chars = max_text_chars

    def prompt(self, item: ItemInput, modality: str) -> str:
        n = self.reward_config.n_max
        if modality == "text":
            return TEXT_PROMPT.format(n=n, text=item.text[: self.max_text_chars])
        return IMAGE_PROMPT.format(n=n)

    def raw_outputs(self, items: Sequence[ItemInput], modality: str) -> list[str]:
        """The model's replies for ``items`` (which must all have ``modality`` input), batched."""
        from mmsrarec_lib.mllm.chat import generate_text

        replies: list[str] = []
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            images = [decode_image(it.image_bytes) for it in chunk] if modality == "image" else None
            replies.extend(
                generate_text(self.model, self.processor, prompts=[self.prompt(it, modality) for it in chunk],
                              images=images, system=SYSTEM_PROMPT, max_new_tokens=self.max_new_tokens)
            )
        return replies

    def summarize_modality(self, items: Sequence[ItemInput], modality: str) -> list[KeywordResult]:
        todo = [it for it in items if it.has_input(modality)]
        if not todo:
            return []
        kws = [parse_keywords(r, max_keywords=self.reward_config.n_max) for r in self.raw_outputs(todo, modality)]
        return _results(todo, modality, kws, encoder=self.encoder, scorer=self.scorer,
                        reward_config=self.reward_config)

    def summarize(self, items: Sequence[ItemInput]) -> list[KeywordResult]:
        out: list[KeywordResult] = []
        for modality in self.modalities:
            out.extend(self.summarize_modality(items, modality))
        return out
