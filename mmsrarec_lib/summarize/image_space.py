"""Bridging image features and the text encoder's space, fitted on the catalogue itself, cross-fitted.

The image encoder (EfficientNet-Lite0, 1,280-d) and phi (MiniLM, 384-d) share no space. Two ridge regressions fitted
on the catalogue's own (image feature, item text embedding) pairs bridge them:

* ``W``: image -> text. ``project(i)`` = the image's predicted text embedding, centred on the catalogue's mean text
  embedding (the mean direction says "a movie", not which one). R_info of image keywords and the proposals of
  catalogue phrases use it.
* ``B``: text -> image. ``reconstruct(kws vector, i)`` predicts the image feature's deviation from the mean image
  from a keyword embedding. R_recon of image keywords uses it.

Both ridge penalties are 7.5 per training row (on standardised inputs; 10,000 for ML-100K's ~1,330 rows per fold),
chosen on ML-100K by how often the map puts an item closer to its own counterpart than to a random item's
(image->text 72.7% of items, 61.8% with a penalty of 100; text->image 71.8%, 62.4% with 10); the choice never looks
at keywords. Per row, so a small catalogue is not flattened by a penalty sized for a big one.

Cross-fitting: items are split into ``folds`` by a hash of their id; an item's maps are fitted on the other folds
only, so an item's own text never enters its own projection (the projection cannot copy the text it is scored
against). Features are standardised per dimension before the ridge.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


def fold_of(item_id: str, folds: int) -> int:
    """A stable fold for ``item_id`` (sha1; independent of catalogue order)."""
    return int.from_bytes(hashlib.sha1(item_id.encode("utf-8")).digest()[:4], "little") % folds


def _ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x mean, x scale, W, y mean) of y - ym ~ ((x - xm) / xs) @ W."""
    xm, xs, ym = x.mean(0), x.std(0) + 1e-6, y.mean(0)
    a = (x - xm) / xs
    w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ (y - ym))
    return xm, xs, w, ym


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-12)


@dataclass
class CrossModalMap:
    """Cross-fitted image<->text maps over the catalogue items that have both an image feature and a text."""

    item_ids: list[str]
    projected: np.ndarray  # [n, D_text] centred, unit: each item's image projected into text space (other folds)
    text_mean: np.ndarray  # [D_text] mean text embedding of the catalogue
    image_dev: np.ndarray  # [n, D_img] each item's standardised image feature minus the catalogue mean
    reverse: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # per fold: (text mean, text scale, B)
    folds: int
    index: dict[str, int]

    @classmethod
    def fit(cls, item_ids: Sequence[str], image_features: np.ndarray, text_vectors: np.ndarray, *,
            folds: int = 5, lam_image: float = 7.5, lam_text: float = 7.5) -> CrossModalMap:
        """Fit both maps per fold. ``image_features`` [n, D_img], ``text_vectors`` [n, D_text], rows aligned;
        ``lam_*``: ridge penalty per training row."""
        n = len(item_ids)
        if n != len(image_features) or n != len(text_vectors):
            raise ValueError(f"{n} item ids, {len(image_features)} image rows, {len(text_vectors)} text rows")
        if n < 2 * folds:
            raise ValueError(f"need at least {2 * folds} items with an image feature to fit the maps, got {n}")
        f = np.asarray(image_features, dtype=np.float64)
        t = np.asarray(text_vectors, dtype=np.float64)
        fz = (f - f.mean(0)) / (f.std(0) + 1e-6)  # image features standardised over the catalogue
        assign = np.array([fold_of(i, folds) for i in item_ids])
        projected = np.zeros_like(t)
        reverse: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        t_mean = t.mean(0)
        for k in range(folds):
            train, held = assign != k, assign == k
            if not held.any() or train.sum() < 2:
                reverse.append((t_mean, np.ones(t.shape[1]), np.zeros((t.shape[1], f.shape[1]))))
                continue
            rows = int(train.sum())
            xm, xs, w, ym = _ridge(fz[train], t[train], lam_image * rows)
            projected[held] = ((fz[held] - xm) / xs) @ w + ym
            tm, ts, b, _ = _ridge(t[train], fz[train], lam_text * rows)
            reverse.append((tm, ts, b))
        centred = _unit(projected - t_mean)
        return cls(list(item_ids), centred.astype(np.float32), t_mean.astype(np.float32), fz.astype(np.float32),
                   reverse, folds, {i: k for k, i in enumerate(item_ids)})

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.index

    def project(self, item_id: str) -> np.ndarray:
        """[D_text] unit: the item's image in text space, centred (fitted without the item's fold)."""
        return self.projected[self.index[item_id]]

    def centred(self, text_vectors: np.ndarray) -> np.ndarray:
        """Text vectors minus the catalogue mean, unit length (the space ``project`` lives in)."""
        return _unit(np.asarray(text_vectors, dtype=np.float32) - self.text_mean)

    def reconstruct(self, text_vector: np.ndarray, item_id: str) -> np.ndarray:
        """The image feature deviation predicted from a text vector by the item's out-of-fold reverse map."""
        tm, ts, b = self.reverse[fold_of(item_id, self.folds)]
        return ((np.asarray(text_vector, dtype=np.float64) - tm) / ts) @ b

    def r_info(self, keyword_vector: np.ndarray, item_id: str) -> float:
        """cos(phi(keywords) - mean text, projected image) in [-1, 1]; 0 for an empty (zero) keyword vector."""
        if not np.any(keyword_vector):
            return 0.0
        return float(self.centred(keyword_vector[None])[0] @ self.project(item_id))

    def r_recon(self, keyword_vector: np.ndarray, item_id: str) -> float:
        """(cos(B(phi(keywords)), image deviation) - 1) / 2 in [-1, 0]: 0 when the keywords point the predicted
        image exactly where the real one lies (relative to the catalogue's mean image), -1 when opposite;
        -1 for no keywords."""
        if not np.any(keyword_vector):
            return -1.0
        pred = self.reconstruct(keyword_vector, item_id)
        dev = self.image_dev[self.index[item_id]]
        denom = float(np.linalg.norm(pred) * np.linalg.norm(dev))
        cos = float(pred @ dev) / denom if denom > 0 else 0.0
        return (cos - 1.0) / 2.0
