"""Stage 2: collaborative keywords.

Every window of a training user is embedded (SASRec, joined with the window's item content: ``content``),
L2-normalised and indexed with faiss (``index``); every user gets its k most similar training users with the leakage
rules applied (``retrieval``), and each neighbour's next item's keywords go to ``user_collab_keywords`` (``table``).
``build.build_collab`` builds everything; ``refresh.refresh_collab`` updates only users with new interactions,
behind a watermark.
"""

from mmsrarec_lib.collab.build import CollabConfig, CollabResult, build_collab
from mmsrarec_lib.collab.content import EmbedderConfig
from mmsrarec_lib.collab.embed import Embedder, embed_histories, l2_normalize, latest_sasrec_run, sasrec_embedder
from mmsrarec_lib.collab.index import CollabIndex, IndexConfig, build_index, update_index
from mmsrarec_lib.collab.refresh import read_watermark, refresh_collab
from mmsrarec_lib.collab.retrieval import Neighbor, Query, RetrievalConfig, find_neighbors
from mmsrarec_lib.collab.store import load_index, prune_index_versions, save_index
from mmsrarec_lib.collab.table import TABLE, load_keywords
from mmsrarec_lib.collab.windows import WindowConfig

__all__ = [
    "TABLE",
    "CollabConfig",
    "CollabIndex",
    "CollabResult",
    "Embedder",
    "EmbedderConfig",
    "IndexConfig",
    "Neighbor",
    "Query",
    "RetrievalConfig",
    "WindowConfig",
    "build_collab",
    "build_index",
    "embed_histories",
    "find_neighbors",
    "l2_normalize",
    "latest_sasrec_run",
    "load_index",
    "load_keywords",
    "prune_index_versions",
    "read_watermark",
    "refresh_collab",
    "sasrec_embedder",
    "save_index",
    "update_index",
]
