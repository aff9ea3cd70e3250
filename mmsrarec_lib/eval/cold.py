"""The ``cold`` protocol's split: can a model recommend an item that has no training interaction at all?

A seeded random ``share`` (10%) of the items that occur in ``user_sequences`` are **cold test items** and another
``valid_share`` (5%) **cold validation items**; every interaction with either set is removed from training. The
first interaction of each held-out item (earliest timestamp, ties by user id) becomes an evaluation case: that
user, the items the user had before it (cold ones included: their text and image are known) as history, the item
as target (an item first had as a user's very first item has no history and no case). A user can be first for
several held-out items: each is its own case, identified as ``user_id#item_id`` (the paired intervals pair by
case). Training sequences are every user's sequence without the held-out items, cut at the user's earliest case
(nothing at or after a user's first evaluation point is trained on).

The target is ranked over the whole catalogue (as in ``full``); besides HR@10 / NDCG@10 / MRR the protocol reports
``cold_share@10``: the share of each user's top-10 slots that go to items with no training interaction (so a model
that floods every list with new items is visible, not only one that never shows them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

COLD_SHARE = 0.10
COLD_VALID_SHARE = 0.05
COLD_SEED = 0  # the held-out items are part of the protocol's definition, like the paper's negatives


@dataclass(frozen=True)
class ColdCase:
    user_id: str
    history: list[str]
    target: str

    @property
    def case_id(self) -> str:
        return f"{self.user_id}#{self.target}"


@dataclass(frozen=True)
class ColdSplit:
    test_items: frozenset[str]
    valid_items: frozenset[str]
    train: dict[str, list[str]]  # user_id -> training sequence (oldest first), at least 2 items
    cases: dict[str, list[ColdCase]]  # "test" | "valid" -> cases sorted by (user id, position)

    @property
    def held_out(self) -> frozenset[str]:
        return self.test_items | self.valid_items

    def trained_items(self) -> set[str]:
        return {i for seq in self.train.values() for i in seq}


def cold_split(
    user_ids: Sequence[str],
    sequences: Sequence[Sequence[str]],
    timestamps: Sequence[Sequence[object]],
    *,
    share: float = COLD_SHARE,
    valid_share: float = COLD_VALID_SHARE,
    seed: int = COLD_SEED,
) -> ColdSplit:
    """Hold out ``share`` + ``valid_share`` of the items (see the module docstring). ``sequences[u]`` is user
    ``user_ids[u]``'s items oldest first and ``timestamps[u]`` their times (any comparable values)."""
    if not 0 < share < 1 or not 0 <= valid_share < 1 or share + valid_share >= 1:
        raise ValueError(f"need 0 < share, 0 <= valid_share and share + valid_share < 1, got {share}, {valid_share}")
    items = sorted({i for seq in sequences for i in seq})
    if len(items) < 3:
        raise ValueError(f"the cold protocol needs at least 3 items with interactions, got {len(items)}")
    order = [items[j] for j in np.random.default_rng(seed).permutation(len(items))]
    n_test = max(1, round(share * len(items)))
    n_valid = round(valid_share * len(items))
    test_items, valid_items = frozenset(order[:n_test]), frozenset(order[n_test : n_test + n_valid])
    held = test_items | valid_items
    first: dict[str, tuple[object, str, int]] = {}  # held item -> (time, user, position) of its first interaction
    for uid, seq, times in zip(user_ids, sequences, timestamps, strict=True):
        for pos, (item, t) in enumerate(zip(seq, times, strict=True)):
            if item in held and (item not in first or (t, uid) < first[item][:2]):
                first[item] = (t, uid, pos)
    at_user: dict[str, list[int]] = {}  # user -> positions of the user's cases (a case needs a history)
    for _t, uid, pos in first.values():
        if pos > 0:
            at_user.setdefault(uid, []).append(pos)
    cases: dict[str, list[ColdCase]] = {"test": [], "valid": []}
    train: dict[str, list[str]] = {}
    for uid, seq in sorted(zip(user_ids, sequences, strict=True), key=lambda t: t[0]):
        seq = list(seq)
        for pos in sorted(at_user.get(uid, [])):
            cases["test" if seq[pos] in test_items else "valid"].append(ColdCase(uid, seq[:pos], seq[pos]))
        cut = min(at_user[uid]) if uid in at_user else None
        kept = [i for i in (seq if cut is None else seq[:cut]) if i not in held]
        if len(kept) >= 2:
            train[uid] = kept
    return ColdSplit(test_items, valid_items, train, cases)

