"""Which items are embedded for each user, and which item counts as a training user's "next item".

All windows are cut from the user's interaction sequence, ordered by ``(timestamp, source_row)`` exactly like
``user_sequences`` (ties inside one second are frequent in MovieLens; the input row order breaks them).

* **Training entries** (what goes into the index), for a user with ``split == "train"`` in ``eval_candidates``:
  the user's *held-out part* is its ``eval_candidates`` target (its last item). Its last entry embeds the last
  ``n`` items of ``eval_candidates.history`` (exactly what the evaluation sees, after the ingest's k-core filter;
  for ``n`` longer than that history, or ``whole_history``, the items before the target in the interactions
  sequence, target found by item id and timestamp), and its **next item** is the target itself. With
  ``entries="all"`` (the default) every earlier position of the sequence is an entry too: the ``n`` items before
  position ``p`` with the item at ``p`` as next item, so a query meets the moment of a training user's history
  that looks most like its own, not only that user's final window (``max_entries_per_user`` keeps the latest
  ones). Every next item is a known interaction of a *training* user, never an item of an evaluation user.
* **Paper query** (any split): the same window (``eval_candidates.history`` for ``n=5``) with the target held
  out; retrieval drops every neighbour whose next item equals that target.
* **Latest query** (production recommendations): the user's latest ``n`` items; nothing is held out.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmsrarec_lib import tables
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)

INTERACTIONS_TABLE = tables.INTERACTIONS
EVAL_CANDIDATES_TABLE = tables.EVAL_CANDIDATES
TRAIN_SPLIT = "train"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class WindowConfig:
    """``n`` items per window (the paper uses 5); ``whole_history`` embeds everything before the cut instead.
    ``entries``: index ``all`` positions of a training user's sequence, or only its ``last`` window (one entry
    per user, the paper's reading); ``max_entries_per_user`` > 0 keeps only that many latest positions."""

    n: int = field(default=5, metadata={"help": "items per embedded window"})
    whole_history: bool = field(default=False, metadata={"help": "embed the whole history before the cut"})
    entries: Literal["all", "last"] = field(default="all", metadata={"help": (
        "index every position of a training user's sequence (all) or only its last window (last: one entry "
        "per user)")})
    max_entries_per_user: int = field(default=0, metadata={"help": (
        "with --entries all, keep only this many latest positions per user (0: all)")})

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"window length must be >= 1, got {self.n}")
        if self.entries not in ("all", "last") or self.max_entries_per_user < 0:
            raise ValueError(
                f"entries must be 'all' or 'last' and max_entries_per_user >= 0, got {self.entries!r}, "
                f"{self.max_entries_per_user}"
            )

    def cut(self, items: Sequence[str], end: int | None = None) -> list[str]:
        """The window of ``items[:end]`` (all of it with ``whole_history``), without copying the whole prefix."""
        end = len(items) if end is None else end
        return list(items[:end]) if self.whole_history else list(items[max(0, end - self.n) : end])


@dataclass(frozen=True)
class UserSequence:
    """One user's interactions, oldest first; timestamps in UTC microseconds."""

    user_id: str
    items: tuple[str, ...]
    timestamps: tuple[int, ...]


@dataclass(frozen=True)
class Target:
    """A user's row in ``eval_candidates``: its user-level split and held-out target."""

    user_id: str
    split: str
    item_id: str
    timestamp_us: int | None
    history: tuple[str, ...] = ()  # eval_candidates.history, oldest first


@dataclass(frozen=True)
class UserWindow:
    """An embedded window. ``next_item_id`` is the item right after it (a training user's next item, or a paper
    query's held-out target); ``as_of`` is the timestamp (us) of the window's last item."""

    user_id: str
    items: tuple[str, ...]
    as_of_us: int | None
    next_item_id: str | None = None
    next_timestamp_us: int | None = None
    position: int | None = None  # index of next_item_id in the user's sequence (training entries)


def to_us(value: dt.datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return (value - _EPOCH) // dt.timedelta(microseconds=1)  # exact integer arithmetic (floats lose microseconds)


def from_us(value: int | None) -> dt.datetime | None:
    if value is None:
        return None
    return _EPOCH + dt.timedelta(microseconds=int(value))


# --------------------------------------------------------------------------- reading
def load_sequences(
    warehouse: Warehouse, dataset: str, *, users: Iterable[str] | None = None
) -> dict[str, UserSequence]:
    """Users' sequences from ``interactions`` (optionally only ``users``), ordered by (timestamp, source_row)."""
    flt = None
    if users is not None:
        wanted = sorted(set(users))
        if not wanted:
            return {}
        flt = pc.field("user_id").isin(pa.array(wanted, pa.string()))
    table = warehouse.read_table(
        dataset, INTERACTIONS_TABLE, columns=["user_id", "item_id", "timestamp", "source_row"], filter=flt
    )
    table = table.sort_by([("user_id", "ascending"), ("timestamp", "ascending"), ("source_row", "ascending")])
    user_col = table.column("user_id").to_numpy(zero_copy_only=False)
    item_col = table.column("item_id").to_numpy(zero_copy_only=False)
    ts_col = pc.cast(table.column("timestamp"), pa.int64()).to_numpy(zero_copy_only=False)
    out: dict[str, UserSequence] = {}
    if len(user_col) == 0:
        return out
    bounds = np.flatnonzero(user_col[1:] != user_col[:-1]) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(user_col)]])
    for s, e in zip(starts, ends):
        uid = str(user_col[s])
        out[uid] = UserSequence(uid, tuple(str(x) for x in item_col[s:e]), tuple(int(x) for x in ts_col[s:e]))
    return out


def load_targets(warehouse: Warehouse, dataset: str, *, users: Iterable[str] | None = None) -> dict[str, Target]:
    """``eval_candidates`` rows (split and held-out target) by user id."""
    flt = None
    if users is not None:
        flt = pc.field("user_id").isin(pa.array(sorted(set(users)), pa.string()))
    table = warehouse.read_table(
        dataset,
        EVAL_CANDIDATES_TABLE,
        columns=["user_id", "split", "history", "target_item_id", "target_timestamp"],
        filter=flt,
    )
    out: dict[str, Target] = {}
    for row in table.to_pylist():
        uid = row["user_id"]
        if uid in out:
            raise ValueError(f"eval_candidates: user {uid!r} appears twice (splits {out[uid].split}, {row['split']})")
        out[uid] = Target(
            uid, row["split"], row["target_item_id"], to_us(row["target_timestamp"]), tuple(row["history"] or ())
        )
    return out


def max_interaction_us(warehouse: Warehouse, dataset: str) -> int | None:
    """The newest interaction timestamp (the refresh watermark after a full build)."""
    col = warehouse.read_table(dataset, INTERACTIONS_TABLE, columns=["timestamp"]).column("timestamp")
    value = pc.max(col).as_py()
    return to_us(value)


# --------------------------------------------------------------------------- cutting windows
def target_position(seq: UserSequence, target: Target) -> int:
    """Index of the held-out target in the sequence (item id and timestamp must match; the last match wins)."""
    candidates = [i for i, item in enumerate(seq.items) if item == target.item_id]
    exact = [i for i in candidates if target.timestamp_us is None or seq.timestamps[i] == target.timestamp_us]
    chosen = exact or candidates
    if not chosen:
        raise ValueError(
            f"eval_candidates: user {seq.user_id!r}: target item {target.item_id!r} is not in its interactions"
        )
    return chosen[-1]


def held_out_window(seq: UserSequence, target: Target, config: WindowConfig) -> UserWindow:
    """The window before the user's held-out target, with the target as its next item (training entries and
    paper queries)."""
    pos = target_position(seq, target)
    if target.history and not config.whole_history and config.n <= len(target.history):
        items = list(target.history[-config.n :])
        # as_of: when the window's last item was seen (searching back from the target)
        last = next((i for i in range(pos - 1, -1, -1) if seq.items[i] == items[-1]), pos - 1)
    else:
        items = config.cut(seq.items, pos)
        last = pos - 1
    as_of = seq.timestamps[last] if last >= 0 else None
    return UserWindow(seq.user_id, tuple(items), as_of, seq.items[pos], seq.timestamps[pos], pos)


def latest_window(seq: UserSequence, config: WindowConfig) -> UserWindow:
    """The user's latest ``n`` items (production queries); nothing is held out."""
    return UserWindow(seq.user_id, tuple(config.cut(seq.items)), seq.timestamps[-1] if seq.items else None)


def earlier_windows(seq: UserSequence, last: UserWindow, config: WindowConfig) -> list[UserWindow]:
    """Entries at the positions before ``last`` (oldest first): the window before each item, that item next."""
    assert last.position is not None
    first = 1 if config.max_entries_per_user == 0 else max(1, last.position + 1 - config.max_entries_per_user)
    return [
        UserWindow(seq.user_id, tuple(config.cut(seq.items, p)), seq.timestamps[p - 1], seq.items[p],
                   seq.timestamps[p], p)
        for p in range(first, last.position)
    ]


def training_windows(
    sequences: Mapping[str, UserSequence], targets: Mapping[str, Target], config: WindowConfig
) -> list[UserWindow]:
    """Index entries of training users with a non-empty window, by user id then position (see module doc)."""
    out: list[UserWindow] = []
    skipped = 0
    for uid in sorted(targets):
        t = targets[uid]
        if t.split != TRAIN_SPLIT or uid not in sequences:
            skipped += t.split == TRAIN_SPLIT
            continue
        w = held_out_window(sequences[uid], t, config)
        if not w.items:
            skipped += 1
            continue
        if config.entries == "all":
            out.extend(earlier_windows(sequences[uid], w, config))
        out.append(w)
    if skipped:
        log.warning("%d training users have no interactions before their target and are not indexed", skipped)
    return out


def paper_windows(
    sequences: Mapping[str, UserSequence], targets: Mapping[str, Target], config: WindowConfig
) -> list[UserWindow]:
    """Paper-protocol queries: every ``eval_candidates`` user, window before its held-out target."""
    out = []
    for uid in sorted(targets):
        if uid in sequences:
            w = held_out_window(sequences[uid], targets[uid], config)
            if w.items:
                out.append(w)
    return out


def latest_windows(sequences: Mapping[str, UserSequence], config: WindowConfig) -> list[UserWindow]:
    """Latest-window queries for every user with interactions."""
    return [latest_window(sequences[uid], config) for uid in sorted(sequences) if sequences[uid].items]
