"""What the user's recent items are *about*: a content vector per window, joined to the SASRec vector.

The ID-based SASRec vector alone finds users whose next-item *distribution* looks alike, which on ML-100K barely
predicts what a neighbour goes on to choose (docs/collab.md, "Quality"). Adding what the window's items are about
(their title and description, sentence-encoded) makes neighbours' next items measurably closer to the user's own.

* ``ItemContent``: one unit vector per catalogue item: the item's ``title. description`` encoded (MiniLM by
  default), centred and projected on the catalogue's top ``dims`` principal axes (PCA, so the index stays small),
  then L2-normalised. Fitted once per index build and stored with the index version (``content.npz``), so a
  nightly refresh embeds with exactly the projection the index was built with; an item unknown to it (new in the
  catalogue) is encoded and projected with the stored mean and axes.
* A window's content vector: the items' vectors weighted ``decay ** age`` (age 0 = the latest item), summed and
  L2-normalised. Items without text count as absent.
* ``HybridEmbedder``: ``[ l2(SASRec(window)) ; weight * content(window) ]``; ``embed_histories`` normalises the
  concatenation, so the cosine is ``(cos_sasrec + weight^2 cos_content) / (1 + weight^2)`` for non-empty windows.
* Optional image part (``content_image_weight > 0``): the item's pretrained image feature (``item_image_features``,
  e.g. EfficientNet-Lite0) centred and projected on its own top ``content_image_dims`` principal axes, unit length,
  joined to the text part as ``l2([ text ; image_weight * image ])``; an item without an image keeps its text part
  only. Off by default: on ML-100K it did not raise the genre-share yardstick (docs/collab.md, "Image features").
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from mmsrarec_lib import tables
from mmsrarec_lib.collab.embed import Embedder, l2_normalize
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)

CONTENT_FILE = "content.npz"


@dataclass(frozen=True)
class EmbedderConfig:
    """``kind``: ``sasrec`` (the paper: ID-based SASRec only) or ``hybrid`` (SASRec joined with window content).
    ``content_encoder``: ``minilm`` (the packaged all-MiniLM-L6-v2), ``hashing`` (bag of words, no model: tests),
    or a sentence-transformers model id or path."""

    kind: Literal["sasrec", "hybrid"] = field(default="hybrid", metadata={"help": (
        "hybrid: SASRec vector joined with the window's item content; sasrec: SASRec only, as in the paper")})
    content_weight: float = field(default=1.0, metadata={"help": "weight of the content part"})
    content_dims: int = field(default=32, metadata={"help": "PCA dimensions of item content"})
    content_decay: float = field(default=0.8, metadata={"help": (
        "weight decay per step back in the window (the latest item counts most)")})
    content_encoder: str = field(default="minilm", metadata={"help": (
        "sentence encoder for item text: minilm (packaged, offline), hashing, or a sentence-transformers "
        "model id/path")})
    content_image_weight: float = field(default=0.0, metadata={"help": (
        "weight of the image-feature part (0: text only; see docs/collab.md)")})
    content_image_dims: int = field(default=16, metadata={"help": "PCA dimensions of the image features"})
    content_image_encoder: str = field(default="efficientnet-lite0", metadata={"help": (
        "image model whose item_image_features rows are used")})

    def __post_init__(self) -> None:
        if self.kind not in ("sasrec", "hybrid"):
            raise ValueError(f"embedder kind must be 'sasrec' or 'hybrid', got {self.kind!r}")
        if self.content_weight <= 0 or self.content_dims < 1 or not 0 < self.content_decay <= 1:
            raise ValueError(
                f"need content_weight > 0, content_dims >= 1 and 0 < content_decay <= 1, got {asdict(self)}"
            )
        if self.content_image_weight < 0 or self.content_image_dims < 1:
            raise ValueError(f"need content_image_weight >= 0 and content_image_dims >= 1, got {asdict(self)}")


def make_encoder(name: str):
    """A sentence encoder by name (see ``EmbedderConfig.content_encoder``)."""
    from mmsrarec_lib.summarize.encoders import HashingEncoder, MiniLMEncoder

    if name == "hashing":
        return HashingEncoder(256)
    return MiniLMEncoder(None if name == "minilm" else name)


def item_text(title: str | None, description: str | None) -> str:
    return ". ".join(t.strip() for t in (title, description) if t and t.strip())


@dataclass(frozen=True)
class ImagePart:
    """The image half of the content vectors: PCA of the catalogue's image features and its weight."""

    mean: np.ndarray  # (F,)
    axes: np.ndarray  # (F, image_dims)
    weight: float

    @classmethod
    def fit(cls, features: np.ndarray, *, dims: int, weight: float) -> ImagePart:
        feats = np.asarray(features, dtype=np.float64)
        mean = feats.mean(axis=0)
        _, _, vt = np.linalg.svd(feats - mean, full_matrices=False)
        return cls(mean.astype(np.float32), vt[: min(dims, vt.shape[0])].T.astype(np.float32), weight)

    def join(self, item_ids: Sequence[str], text_vectors: np.ndarray, images: Mapping[str, np.ndarray]) -> np.ndarray:
        """(m, dims + image_dims): ``l2([ text ; weight * image ])``; zero image part for items without one."""
        img = np.zeros((len(item_ids), self.axes.shape[1]), dtype=np.float32)
        rows = [k for k, i in enumerate(item_ids) if i in images]
        if rows:
            raw = np.stack([np.asarray(images[item_ids[k]], dtype=np.float32) for k in rows])
            img[rows] = _project(raw, self.mean, self.axes)
        return l2_normalize(np.hstack([text_vectors, self.weight * img]))


@dataclass(frozen=True)
class ItemContent:
    """Projected item vectors (n_items, dims) plus the projection (mean (D,), axes (D, dims)) that made them."""

    item_ids: tuple[str, ...]
    vectors: np.ndarray  # (n_items, dims) float32, unit rows (zero for items without text)
    mean: np.ndarray  # (D,)
    axes: np.ndarray  # (D, dims)
    encoder: str
    image: ImagePart | None = None  # the image projection, when the vectors join image features

    def __post_init__(self) -> None:
        object.__setattr__(self, "_row", {item: i for i, item in enumerate(self.item_ids)})

    @property
    def dims(self) -> int:
        return int(self.vectors.shape[1])

    def project(self, raw: np.ndarray) -> np.ndarray:
        """Encoder outputs (m, D) -> unit rows (m, dims); all-zero inputs (no text) stay zero."""
        return _project(raw, self.mean, self.axes)

    def with_items(self, texts: Mapping[str, str], encode: Callable[[list[str]], np.ndarray], *,
                   images: Mapping[str, np.ndarray] | None = None) -> ItemContent:
        """Add items this content has never seen (same projections); known items keep their vectors."""
        new = sorted(i for i in texts if i not in self._row and texts[i])
        if not new:
            return self
        extra = self.project(np.asarray(encode([texts[i] for i in new]), dtype=np.float32))  # (m, dims)
        if self.image is not None:
            extra = self.image.join(new, extra, images or {})
        return ItemContent(self.item_ids + tuple(new), np.vstack([self.vectors, extra]), self.mean, self.axes,
                           self.encoder, self.image)

    def window_vectors(self, histories: Sequence[Sequence[str]], *, decay: float) -> np.ndarray:
        """(n, dims): each history's items weighted ``decay ** age`` (age 0 = latest), summed, L2-normalised."""
        out = np.zeros((len(histories), self.dims), dtype=np.float32)
        for r, hist in enumerate(histories):
            rows = [self._row.get(i, -1) for i in hist]
            weights = decay ** np.arange(len(rows) - 1, -1, -1, dtype=np.float32)  # (h,), 1 for the latest
            keep = [j for j, row in enumerate(rows) if row >= 0]
            if keep:
                out[r] = weights[keep] @ self.vectors[[rows[j] for j in keep]]
        return l2_normalize(out)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        extra = {} if self.image is None else {"image_mean": self.image.mean, "image_axes": self.image.axes,
                                               "image_weight": np.array(self.image.weight)}
        np.savez(buf, item_ids=np.array(self.item_ids, dtype=object), vectors=self.vectors, mean=self.mean,
                 axes=self.axes, encoder=np.array(self.encoder), **extra)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, raw: bytes) -> ItemContent:
        with np.load(io.BytesIO(raw), allow_pickle=True) as z:
            image = (ImagePart(z["image_mean"].astype(np.float32), z["image_axes"].astype(np.float32),
                               float(z["image_weight"])) if "image_mean" in z.files else None)
            return cls(tuple(str(x) for x in z["item_ids"]), z["vectors"].astype(np.float32),
                       z["mean"].astype(np.float32), z["axes"].astype(np.float32), str(z["encoder"]), image)


def _project(raw: np.ndarray, mean: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """(m, D) -> centred, projected on ``axes`` (D, dims), unit rows (m, dims); all-zero inputs stay zero."""
    out = l2_normalize((raw - mean) @ axes)  # (m, dims)
    out[~np.any(raw, axis=1)] = 0.0
    return out


def fit_item_content(
    texts: Mapping[str, str], encode: Callable[[list[str]], np.ndarray], *, dims: int, encoder: str,
    images: Mapping[str, np.ndarray] | None = None, image_dims: int = 16, image_weight: float = 0.0,
) -> ItemContent:
    """Encode every item's text and project on the top ``dims`` principal axes of the catalogue; with ``images``
    and ``image_weight > 0``, join each item's projected image feature (``ImagePart``)."""
    ids = sorted(i for i in texts if texts[i])
    if len(ids) < 2:
        raise ValueError(f"need text for at least 2 items to fit item content, got {len(ids)}")
    raw = np.asarray(encode([texts[i] for i in ids]), dtype=np.float64)  # (n, D)
    mean = raw.mean(axis=0)  # (D,)
    _, _, vt = np.linalg.svd(raw - mean, full_matrices=False)  # vt: (min(n, D), D)
    axes = vt[: min(dims, vt.shape[0])].T  # (D, dims')
    axes *= np.where(axes[np.abs(axes).argmax(axis=0), np.arange(axes.shape[1])] < 0, -1.0, 1.0)  # fixed signs
    mean, axes = mean.astype(np.float32), axes.astype(np.float32)
    vectors = _project(raw.astype(np.float32), mean, axes)
    image = None
    if images and image_weight > 0:
        image = ImagePart.fit(np.stack([images[i] for i in sorted(images)]), dims=image_dims, weight=image_weight)
        vectors = image.join(ids, vectors, images)
    content = ItemContent(tuple(ids), vectors, mean, axes, encoder, image)
    log.info("item content: %d items, %s encoder, %d -> %d dims%s", len(ids), encoder, raw.shape[1], content.dims,
             f" (with {len(images)} image features, weight {image_weight})" if image else "")
    return content


def load_item_image_features(warehouse: Warehouse, dataset: str, config: EmbedderConfig) -> dict | None:
    """item_id -> image feature for the content vectors; None when ``config`` uses no image part or the table
    has no rows for its encoder (then the content is text only, with a warning)."""
    if config.kind != "hybrid" or config.content_image_weight <= 0:
        return None
    from mmsrarec_lib.vision.table import read_feature_rows

    rows = read_feature_rows(warehouse, dataset, encoder=config.content_image_encoder)
    if not rows.item_ids:
        log.warning("no %s image features in %s: content vectors stay text only (run encode-images)",
                    config.content_image_encoder, dataset)
        return None
    return dict(zip(rows.item_ids, rows.features))


def load_item_texts(warehouse: Warehouse, dataset: str) -> dict[str, str]:
    """``title. description`` of every item in the ``items`` table."""
    table = warehouse.read_table(dataset, tables.ITEMS, columns=["item_id", "title", "description"])
    return {r["item_id"]: item_text(r["title"], r["description"]) for r in table.to_pylist()}


class HybridEmbedder:
    """``[ l2(ids(window)) ; weight * content(window) ]`` (n, d_ids + dims); see the module doc."""

    def __init__(self, ids: Embedder, content: ItemContent, *, weight: float, decay: float) -> None:
        self.ids, self.content, self.weight, self.decay = ids, content, weight, decay

    def __call__(self, histories: list[list[str]]) -> np.ndarray:
        a = l2_normalize(np.asarray(self.ids(histories), dtype=np.float32))  # (n, d_ids)
        b = self.content.window_vectors(histories, decay=self.decay)  # (n, dims)
        return np.hstack([a, self.weight * b])


def hybrid_embedder(
    ids: Embedder,
    config: EmbedderConfig,
    texts: Mapping[str, str],
    *,
    content: ItemContent | None = None,
    images: Mapping[str, np.ndarray] | None = None,
) -> HybridEmbedder:
    """Fit the item content (or extend a stored one with new items) and wrap the ID embedder; ``images``
    (item_id -> image feature) join the content when ``config.content_image_weight > 0``."""
    loaded: list = []

    def encode(batch: list[str]) -> np.ndarray:  # the encoder is loaded only when something needs encoding
        if not loaded:
            loaded.append(make_encoder(config.content_encoder))
        return loaded[0].encode(batch)

    if content is None:
        content = fit_item_content(texts, encode, dims=config.content_dims, encoder=config.content_encoder,
                                   images=images, image_dims=config.content_image_dims,
                                   image_weight=config.content_image_weight)
    else:
        content = content.with_items(texts, encode, images=images)
    return HybridEmbedder(ids, content, weight=config.content_weight, decay=config.content_decay)
