"""User embeddings: an ``Embedder`` is any callable ``histories -> (n, d) float32``; the trained SASRec is one.

The index and retrieval code only see this protocol, so they are tested with a deterministic toy embedder and run
in production with SASRec (``sasrec_embedder``). Vectors are L2-normalised here, so inner product = cosine.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

from mmsrarec_lib.model_runs import latest_complete_run
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)


class Embedder(Protocol):
    """Maps item-id histories (oldest first) to one vector each: ``(n, d)`` float32."""

    def __call__(self, histories: list[list[str]]) -> np.ndarray: ...


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero). x: (n, d) -> (n, d) float32, C-contiguous."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # (n, 1)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def embed_histories(
    embedder: Embedder, histories: Sequence[Sequence[str]], *, batch_size: int = 1024, desc: str = "embed"
) -> np.ndarray:
    """Embed in batches (with progress) and L2-normalise. Returns (len(histories), d) float32."""
    if not histories:
        raise ValueError("no histories to embed")
    chunks: list[np.ndarray] = []
    starts = range(0, len(histories), batch_size)
    for s in tqdm(starts, desc=desc, unit="batch", disable=len(starts) < 2):
        batch = [list(h) for h in histories[s : s + batch_size]]
        out = np.asarray(embedder(batch), dtype=np.float32)  # (b, d)
        if out.ndim != 2 or out.shape[0] != len(batch):
            raise ValueError(f"embedder returned shape {out.shape} for {len(batch)} histories; expected (n, d)")
        chunks.append(out)
    return l2_normalize(np.concatenate(chunks, axis=0))


# --------------------------------------------------------------------------- SASRec
def latest_sasrec_run(warehouse: Warehouse, dataset: str) -> str:
    """The SASRec run ``build-collab`` embeds with by default (:func:`mmsrarec_lib.model_runs.latest_complete_run`)."""
    return latest_complete_run(warehouse, dataset=dataset, kind="sasrec")


def sasrec_embedder(warehouse: Warehouse, dataset: str, run_id: str | None = None) -> tuple[Embedder, str]:
    """Load a trained SASRec (``run_id`` or the latest) and return its ``embed`` and the run id used."""
    from mmsrarec_lib.models.sasrec import load_sasrec

    run = run_id or latest_sasrec_run(warehouse, dataset)
    model = load_sasrec(warehouse, dataset, run)
    if hasattr(model, "eval"):
        model.eval()

    def embed(histories: list[list[str]]) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = model.embed(histories)
        if hasattr(out, "detach"):
            out = out.detach().cpu().numpy()
        return np.asarray(out, dtype=np.float32)

    log.info("embedding users with SASRec run %s", run)
    return embed, run
