"""Content-based candidates: a faiss index over every catalogue item's content vector, queried with the user's
recent history, so an item nobody has interacted with yet (or one ingested after the models were trained) can
still be a candidate, and gets a score, on its first day.

* **Item vector** (``ItemVectors``): ``[ l2(text) ; image_weight * l2(image - image_mean) ]``, L2-normalised, where
  text is the item's ``title. description. categories`` sentence-encoded (MiniLM by default) and image is its
  pretrained image feature from ``item_image_features`` (``mmsrarec encode-images``), centred with the catalogue
  mean stored with the index so that a refresh embeds exactly like the build. An item without an image keeps a
  zero image block; an item with neither text nor image has no vector (it cannot be retrieved by content).
* **User vector**: the history's item vectors weighted ``decay ** age`` (age 0 = the latest item), summed,
  L2-normalised. **Score** of an item for a user = cosine(user vector, item vector) in [-1, 1]; NaN when the
  item or the whole history has no vector (missing, not "very low").
* **Index**: exact inner product (``IndexFlatIP``) below ``exact_threshold`` items, else IVF; faiss row i is
  ``item_ids[i]``. Stored per version under ``<dataset>/indexes/content/<version>/`` with ``LATEST`` pointing at
  the newest complete one (``store``). A refresh re-encodes only items whose content hash (text + image sha256)
  changed or that are new, keeps every other vector, and drops items no longer in the catalogue.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContentIndexConfig:
    """How item content vectors are built and searched (stored with every index version)."""

    text_encoder: str = field(default="minilm", metadata={"help": "minilm (packaged), hashing (tests) or a path"})
    image_encoder: str = field(default="efficientnet-lite0", metadata={"help": "rows of item_image_features"})
    image_weight: float = field(default=0.5, metadata={"help": "weight of the image block (0: text only)"})
    decay: float = field(default=0.8, metadata={"help": "history weight decay per step back in time"})
    exact_threshold: int = field(default=200_000, metadata={"help": "IVF above this many items"})
    nprobe: int = 16

    def __post_init__(self) -> None:
        if self.image_weight < 0 or not 0 < self.decay <= 1:
            raise ValueError(f"need image_weight >= 0 and 0 < decay <= 1, got {self.image_weight}, {self.decay}")


@dataclass(frozen=True)
class ItemContentInput:
    """What an item's content vector is made of."""

    item_id: str
    text: str
    image_sha256: str | None = None

    def content_sha256(self, config: ContentIndexConfig, *, has_image_feature: bool) -> str:
        """What the vector depends on: the settings, the text, and the image only when its feature exists (an
        image encoded after the item was indexed changes the hash, so the refresh picks it up)."""
        image = self.image_sha256 if has_image_feature else None
        key = "\x1f".join([config.text_encoder, config.image_encoder, str(config.image_weight), self.text,
                           image or ""])
        return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _l2(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # (n, 1)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def item_vectors(
    items: Sequence[ItemContentInput],
    *,
    encode_text: Callable[[list[str]], np.ndarray],
    image_features: Mapping[str, np.ndarray],
    image_mean: np.ndarray | None,
    image_weight: float,
) -> np.ndarray:
    """(n, d_text [+ d_image]) unit rows; a zero row for an item with neither text nor image."""
    has_text = np.array([bool(it.text.strip()) for it in items], dtype=bool)
    if has_text.any():
        enc = _l2(np.asarray(encode_text([it.text for it in items if it.text.strip()]), dtype=np.float32))
    else:
        enc = np.zeros((0, np.asarray(encode_text(["item"])).shape[1]), dtype=np.float32)  # probe the width
    text = np.zeros((len(items), enc.shape[1]), dtype=np.float32)  # (n, d_text)
    text[has_text] = enc
    blocks = [text]
    if image_mean is not None:
        img = np.zeros((len(items), image_mean.shape[0]), dtype=np.float32)  # (n, d_image)
        for r, it in enumerate(items):
            feat = image_features.get(it.item_id)
            if feat is not None:
                img[r] = feat - image_mean
        img = _l2(img) * image_weight
        img[~np.any(img, axis=1)] = 0.0
        blocks.append(img)
    out = np.hstack(blocks)  # (n, d)
    nonzero = np.any(out, axis=1)
    out[nonzero] = _l2(out[nonzero])
    return out


@dataclass
class ContentIndex:
    """Item content vectors (row i = ``item_ids[i]``), their content hashes, and the faiss index over them."""

    item_ids: list[str]
    vectors: np.ndarray  # (n, d) float32, unit rows
    content_sha256: list[str]
    config: ContentIndexConfig
    image_mean: np.ndarray | None  # (d_image,) or None when the index has no image block
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._row = {item: i for i, item in enumerate(self.item_ids)}
        self._faiss = None

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.item_ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._row

    def _index(self):
        if self._faiss is None:
            import faiss

            n, d = self.vectors.shape
            if n >= self.config.exact_threshold:
                nlist = int(min(4 * np.sqrt(n), n // 39))
                index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
                index.train(self.vectors)
                index.nprobe = self.config.nprobe
            else:
                index = faiss.IndexFlatIP(d)
            index.add(self.vectors)
            self._faiss = index
        return self._faiss

    def subset(self, item_ids: Sequence[str]) -> ContentIndex:
        """An index over ``item_ids`` only (those it has), e.g. the items an ID model cannot score."""
        rows = [self._row[i] for i in item_ids if i in self._row]
        return ContentIndex([self.item_ids[r] for r in rows], self.vectors[rows],
                            [self.content_sha256[r] for r in rows], self.config, self.image_mean, dict(self.meta))

    def user_vectors(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
        """(n_users, d): history items weighted ``decay ** age`` (age 0 = latest), summed, L2-normalised; a zero
        row when no history item has a vector."""
        out = np.zeros((len(histories), self.dim), dtype=np.float32)
        for r, hist in enumerate(histories):
            for age, item in enumerate(reversed(list(hist))):
                row = self._row.get(item)
                if row is not None:
                    out[r] += self.config.decay ** age * self.vectors[row]
        nonzero = np.any(out, axis=1)
        out[nonzero] = _l2(out[nonzero])
        return out

    def score(self, histories: Sequence[Sequence[str]], candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Cosine of each candidate to its user's vector; NaN where either has no content vector."""
        users = self.user_vectors(histories)
        out = []
        for u, cands in zip(users, candidates, strict=True):
            s = np.full(len(cands), np.nan, dtype=np.float64)
            if np.any(u):
                for j, c in enumerate(cands):
                    row = self._row.get(c)
                    if row is not None and np.any(self.vectors[row]):
                        s[j] = float(self.vectors[row] @ u)
            out.append(s)
        return out

    def score_catalogue(self, histories: Sequence[Sequence[str]], item_ids: Sequence[str]) -> np.ndarray:
        """(n_users, len(item_ids)) cosines; NaN for items without a vector and for users without one."""
        users = self.user_vectors(histories)  # (u, d)
        rows = np.array([self._row.get(i, -1) for i in item_ids])
        known = rows >= 0
        out = np.full((len(histories), len(item_ids)), np.nan, dtype=np.float64)
        sims = users @ self.vectors[rows[known]].T  # (u, n_known)
        out[:, known] = sims
        out[~np.any(users, axis=1)] = np.nan
        empty_items = np.zeros(len(item_ids), dtype=bool)
        empty_items[known] = ~np.any(self.vectors[rows[known]], axis=1)
        out[:, empty_items] = np.nan
        return out

    def candidates(
        self, histories: Sequence[Sequence[str]], *, m: int, exclude: Sequence[set[str]] | None = None
    ) -> list[list[tuple[str, float]]]:
        """Each user's ``m`` nearest items by content (best first, ties by item id), minus ``exclude[u]`` (e.g. the
        items the user already had); an empty list for a user whose history has no content vector."""
        if m < 1:
            raise ValueError(f"m must be >= 1, got {m}")
        users = self.user_vectors(histories)
        exclude = exclude or [set() for _ in histories]
        out: list[list[tuple[str, float]]] = [[] for _ in histories]
        live = [u for u in range(len(histories)) if np.any(users[u])]
        if not live or not len(self):
            return out
        extra = max(len(exclude[u]) for u in live)
        k = min(len(self), m + extra)
        sims, rows = self._index().search(users[live], k)  # (len(live), k)
        for j, u in enumerate(live):
            picked = [(self.item_ids[r], float(s)) for s, r in zip(sims[j], rows[j], strict=True)
                      if r >= 0 and self.item_ids[r] not in exclude[u] and np.any(self.vectors[r])]
            picked.sort(key=lambda t: (-round(t[1], 6), t[0]))
            out[u] = picked[:m]
        return out


def build_or_refresh(
    items: Sequence[ItemContentInput],
    *,
    config: ContentIndexConfig,
    encode_text: Callable[[list[str]], np.ndarray],
    image_features: Mapping[str, np.ndarray],
    previous: ContentIndex | None = None,
) -> tuple[ContentIndex, dict]:
    """A content index over ``items``. With ``previous`` (same config), items whose content hash is unchanged keep
    their stored vectors and only new or changed items are encoded; items gone from ``items`` are dropped.
    Returns the index and counts (``items``, ``encoded``, ``reused``, ``removed``)."""
    gains_images = (previous is not None and previous.image_mean is None and bool(image_features)
                    and config.image_weight > 0)  # built before any image feature existed: the width changes
    reuse = previous is not None and previous.config == config and not gains_images
    if previous is not None and not reuse:
        log.info("content index %s: re-encoding every item",
                 "gains an image block" if gains_images else f"config changed ({previous.config} -> {config})")
    if reuse:
        image_mean = previous.image_mean
    else:
        feats = [image_features[it.item_id] for it in items if it.item_id in image_features]
        image_mean = np.mean(np.stack(feats), axis=0).astype(np.float32) if feats and config.image_weight > 0 else None
    hashes = [it.content_sha256(config, has_image_feature=it.item_id in image_features) for it in items]
    keep: dict[int, int] = {}  # position in items -> row in previous
    if reuse:
        for pos, (it, h) in enumerate(zip(items, hashes, strict=True)):
            row = previous._row.get(it.item_id)
            if row is not None and previous.content_sha256[row] == h:
                keep[pos] = row
    todo = [pos for pos in range(len(items)) if pos not in keep]
    dim = previous.dim if reuse else None
    new_vecs = (item_vectors([items[p] for p in todo], encode_text=encode_text, image_features=image_features,
                             image_mean=image_mean, image_weight=config.image_weight) if todo else None)
    if dim is None:
        dim = new_vecs.shape[1] if new_vecs is not None else 0
    vectors = np.zeros((len(items), dim), dtype=np.float32)
    for pos, row in keep.items():
        vectors[pos] = previous.vectors[row]
    if new_vecs is not None:
        if new_vecs.shape[1] != dim:
            raise ValueError(f"new item vectors have {new_vecs.shape[1]} dims, the stored index {dim}")
        vectors[todo] = new_vecs
    removed = len(set(previous.item_ids) - {it.item_id for it in items}) if previous is not None else 0
    index = ContentIndex([it.item_id for it in items], vectors, hashes, config, image_mean)
    stats = {"items": len(items), "encoded": len(todo), "reused": len(keep), "removed": removed,
             "with_image": sum(it.item_id in image_features for it in items)}
    log.info("content index: %(items)d items (%(encoded)d encoded, %(reused)d reused, %(removed)d removed)", stats)
    return index, stats
