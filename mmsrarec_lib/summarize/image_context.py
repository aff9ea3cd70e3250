"""Everything the extractive image summarizer needs, assembled once per run from the warehouse.

``build_image_context`` backfills ``item_image_features`` for images without a current row (so ``summarize`` and
``train-summarizer`` work even when ``encode-images`` was not run), reads the features and top classes of the
catalogue's images, fits the cross-fitted ``CrossModalMap`` on the catalogue's texts and builds the phrase
vocabulary. Items whose stored feature belongs to an older image (sha256 differs) are left out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmsrarec_lib.storage import Warehouse
from mmsrarec_lib.summarize.image_keywords import (
    ImageCandidateBuilder,
    ImageRewardScorer,
    PhraseVocabulary,
    short_class_names,
)
from mmsrarec_lib.summarize.image_space import CrossModalMap
from mmsrarec_lib.summarize.rewards import RewardConfig
from mmsrarec_lib.summarize.types import ItemInput

log = logging.getLogger(__name__)
MIN_ITEMS = 10  # fewer items with an image feature: no image keywords (the maps cannot be fitted)


@dataclass
class ImageKeywordContext:
    space: CrossModalMap
    vocabulary: PhraseVocabulary
    builder: ImageCandidateBuilder
    scorer: ImageRewardScorer


def image_context_from_arrays(
    catalogue: Sequence[ItemInput], item_ids: Sequence[str], features: np.ndarray,
    top_classes: Sequence[Sequence[tuple[str, float]]], *, encoder, reward_config: RewardConfig, folds: int = 5,
) -> ImageKeywordContext | None:
    """The context from image features aligned with ``item_ids`` (None when too few items have one)."""
    by_id = {it.item_id: it for it in catalogue}
    rows = [k for k, i in enumerate(item_ids) if i in by_id]
    if len(rows) < max(MIN_ITEMS, 2 * folds):
        log.warning("only %d catalogue items have an image feature: no image keywords", len(rows))
        return None
    ids = [item_ids[k] for k in rows]
    texts = encoder.encode([by_id[i].text for i in ids])  # [n, D]
    space = CrossModalMap.fit(ids, np.asarray(features)[rows], texts, folds=folds)
    vocabulary = PhraseVocabulary.build(catalogue)
    class_top = {item_ids[k]: list(top_classes[k]) for k in rows}
    builder = ImageCandidateBuilder(vocabulary=vocabulary, space=space, encoder=encoder, class_top=class_top,
                                    short_names=short_class_names())
    log.info("image keywords: %d items with features, %d catalogue phrases", len(ids), len(vocabulary.phrases))
    return ImageKeywordContext(space, vocabulary, builder, ImageRewardScorer(space=space, encoder=encoder,
                                                                              config=reward_config))


def build_image_context(
    warehouse: Warehouse, dataset: str, *, catalogue: Sequence[ItemInput], encoder, reward_config: RewardConfig,
    image_encoder: str = "efficientnet-lite0", device: str | None = None, ensure: bool = True,
) -> ImageKeywordContext | None:
    """Backfill the image features (``ensure``), read the current ones and assemble the context."""
    from mmsrarec_lib.runs import sha256_hex
    from mmsrarec_lib.vision.table import ensure_features, read_feature_rows

    n_images = sum(it.has_input("image") for it in catalogue)
    if n_images < MIN_ITEMS:
        if n_images:
            log.warning("only %d items have an image (< %d): no image keywords", n_images, MIN_ITEMS)
        return None
    if ensure:
        ensure_features(warehouse, dataset, encoder_name=image_encoder, device=device)
    rows = read_feature_rows(warehouse, dataset, encoder=image_encoder)
    current = {it.item_id: sha256_hex(it.image_bytes) for it in catalogue if it.image_bytes}
    keep = [k for k, (i, h) in enumerate(zip(rows.item_ids, rows.image_sha256)) if current.get(i) == h]
    if len(keep) < len(current):
        log.warning("%d of %d items with an image have no current %s feature", len(current) - len(keep),
                    len(current), image_encoder)
    if not keep:
        return None
    return image_context_from_arrays(catalogue, [rows.item_ids[k] for k in keep], rows.features[keep],
                                     [rows.top_classes[k] for k in keep], encoder=encoder,
                                     reward_config=reward_config)
