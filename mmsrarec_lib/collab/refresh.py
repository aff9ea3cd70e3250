"""Nightly incremental refresh of stage 2, driven by a watermark.

The watermark (:class:`~mmsrarec_lib.collab.build.Watermark`) is a small JSON object next
to the index, ``<warehouse>/<dataset>/indexes/collab/WATERMARK.json``:
the newest interaction timestamp already reflected (``max_interaction_us``), plus the index and table versions it
was written with. A refresh:

1. finds the users with interactions newer than the watermark (nothing new: returns without writing anything, so
   no new index version, no new table version);
2. re-embeds those of them that are training users and replaces all their index entries (``update_index``) in a
   new index version (``LATEST`` moves to it), with the embedder the index was built with (for ``hybrid``, the
   item content stored with the index);
3. recomputes the rows of the changed users only and MERGEs them into ``user_collab_keywords`` (one commit);
4. advances the watermark **last**. A crash anywhere before leaves the old watermark, so the next run picks up the
   same users again; replacing index entries and merging rows are idempotent, so nothing is skipped or duplicated.
   Then index versions beyond the newest ``keep_index_versions`` are deleted.

The whole refresh holds the dataset's write lock (:mod:`mmsrarec_lib.locks`, shared with ``ingest`` and
``recommend``): an ``ingest --mode append`` racing it waits, so the refresh never reads interactions that are half
appended and never advances the watermark past rows it did not see.

Rows of *unchanged* users keep the neighbours they had (and the index version they name) until the next full
build, even when one of their neighbours changed: the refresh rewrites only changed users' rows.
Interactions that arrive late with a timestamp at or below the watermark are not seen by a refresh; a full
``build-collab`` picks them up.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from mmsrarec_lib.collab.build import (
    CollabConfig,
    CollabResult,
    Watermark,
    collab_embedder,
    count_short,
    query_rows,
    read_watermark,
    write_watermark,
)
from mmsrarec_lib.collab.embed import Embedder, embed_histories
from mmsrarec_lib.collab.index import update_index
from mmsrarec_lib.collab.store import load_index, prune_index_versions, save_index
from mmsrarec_lib.collab.table import KEYS, TABLE
from mmsrarec_lib.collab.windows import (
    EVAL_CANDIDATES_TABLE,
    INTERACTIONS_TABLE,
    from_us,
    load_sequences,
    load_targets,
    to_us,
    training_windows,
)
from mmsrarec_lib.locks import DEFAULT_WAIT_S, dataset_lock
from mmsrarec_lib.runs import new_run_id, utcnow
from mmsrarec_lib.snapshots import repair
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)


def changed_users(warehouse: Warehouse, dataset: str, since_us: int) -> tuple[list[str], int | None]:
    """Users with interactions newer than ``since_us``, and the newest timestamp among those interactions."""
    since = pa.scalar(from_us(since_us), type=pa.timestamp("us", tz="UTC"))
    new = warehouse.read_table(
        dataset, INTERACTIONS_TABLE, columns=["user_id", "timestamp"], filter=pc.field("timestamp") > since
    )
    if new.num_rows == 0:
        return [], None
    users = sorted(set(new.column("user_id").to_pylist()))
    return users, to_us(pc.max(new.column("timestamp")).as_py())


def refresh_collab(
    warehouse: Warehouse,
    *,
    dataset: str,
    embedder: Embedder,
    keywords: Mapping[str, Sequence[str]],
    keep_index_versions: int = 5,
    lock_wait_s: float = DEFAULT_WAIT_S,
) -> CollabResult:
    """Bring the index and table up to date with interactions newer than the watermark (see module doc); then
    delete all but the newest ``keep_index_versions`` index versions. Holds the dataset lock throughout."""
    run_id = new_run_id("refresh-collab")
    with dataset_lock(warehouse, dataset, owner=run_id, purpose="refresh-collab", wait_s=lock_wait_s) as lease:
        repair(warehouse, dataset, by=run_id)  # an ingest that died mid-way is rolled back before we read
        return _refresh(warehouse, dataset=dataset, embedder=embedder, keywords=keywords,
                        keep_index_versions=keep_index_versions, check=lease.check)


def _refresh(warehouse: Warehouse, *, dataset: str, embedder: Embedder, keywords: Mapping[str, Sequence[str]],
             keep_index_versions: int, check) -> CollabResult:
    wm = read_watermark(warehouse, dataset)
    users, new_max = changed_users(warehouse, dataset, wm.max_interaction_us)
    if not users:
        log.info("refresh-collab %s: nothing newer than the watermark; nothing written", dataset)
        return CollabResult(wm.index_version, warehouse.table_version(dataset, TABLE), 0, 0, 0)
    log.info("refresh-collab %s: %d users with new interactions", dataset, len(users))

    idx = load_index(warehouse, dataset, "latest")
    config = CollabConfig.from_meta(dataset, idx.meta)
    keyword_source = idx.meta["keyword_source"]
    sequences = load_sequences(warehouse, dataset, users=users)
    has_targets = warehouse.has_table(dataset, EVAL_CANDIDATES_TABLE)
    targets = load_targets(warehouse, dataset, users=users) if has_targets else {}

    embedder, files = collab_embedder(warehouse, dataset, embedder, config.embedder, files=idx.files)
    idx.files.update(files)  # the item content, extended with any new items
    train = training_windows(sequences, targets, config.window)
    if train:
        vectors = embed_histories(embedder, [w.items for w in train], batch_size=config.batch_size, desc="re-embed")
        idx = update_index(idx, train, vectors)
        save_index(warehouse, dataset, idx)

    rows = query_rows(
        idx,
        sequences,
        targets,
        config=config,
        embedder=embedder,
        keywords=keywords,
        keyword_source=keyword_source,
        created_at=utcnow(),
    )
    check()  # never commit after losing the lock
    version = warehouse.merge_table(dataset, TABLE, rows, keys=list(KEYS))
    write_watermark(
        warehouse,
        dataset,
        Watermark(
            max_interaction_us=max(new_max, wm.max_interaction_us), index_version=idx.version, table_version=version
        ),
    )
    pruned = prune_index_versions(warehouse, dataset, keep=keep_index_versions)
    return CollabResult(
        idx.version, version, len({w.user_id for w in train}), rows.num_rows, count_short(rows, config.retrieval.k),
        tuple(users), n_entries=len(train), pruned_versions=tuple(pruned),
    )
