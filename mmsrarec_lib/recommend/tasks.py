"""The four instruction tasks of MMSRARec's fine-tuning (inspired by LC-Rec) and their uniform mixing.

1. ``yesno``      — will the user interact with this candidate next? (1:1 positives : never-interacted negatives)
2. ``next_kw``    — from the user's history (+ neighbours), generate the keywords of the next item
3. ``grounding``  — from an item's image and text, generate its keywords
4. ``recovery``   — from an item's keywords, name the item (its title)

Every example is ``prefix + suffix -> target``; the loss is on the target only. Task 1 uses exactly the scoring
prompt of :mod:`mmsrarec_lib.recommend.prompts`, so what is trained is what is scored. ``--tasks yesno`` trains on
task 1 alone (the "w/o multi-task" ablation).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from mmsrarec_lib.recommend.prompts import (
    Candidate,
    PromptConfig,
    answer,
    build_prefix,
    build_suffix,
    cut_text,
    dedup_keywords,
)

TASKS = ("yesno", "next_kw", "grounding", "recovery")
NEXT_KW_INSTRUCTION = (
    "You are a recommender. Given the keywords of the items the user interacted with recently and the keywords "
    "of items similar users chose next, predict the keywords of the user's next item."
)


@dataclass(frozen=True)
class Example:
    """One training example; ``image_item_id`` names the item whose image goes where the image token is."""

    task: str
    prefix: str
    suffix: str
    target: str
    image_item_id: str | None = None


def parse_tasks(spec: str) -> tuple[str, ...]:
    """``"all"`` or a comma list of task names -> task tuple (unknown names are an error)."""
    names = TASKS if spec.strip() == "all" else tuple(t.strip() for t in spec.split(",") if t.strip())
    bad = [t for t in names if t not in TASKS]
    if bad or not names:
        raise ValueError(f"unknown task(s) {bad or spec!r}: choose from {', '.join(TASKS)} or 'all'")
    return names


def _keywords_text(keywords: Sequence[str], config: PromptConfig) -> str:
    return " " + ", ".join(dedup_keywords(keywords, config.keywords_per_item) or ["(none)"])


def _positions(seq: Sequence[str], per_user: int) -> range:
    """The last ``per_user`` target positions t >= 1 of a training sequence (history = seq[:t])."""
    return range(max(1, len(seq) - per_user), len(seq))


def _item_keywords(items: Mapping[str, Candidate], item_id: str) -> list[str]:
    item = items.get(item_id)
    if item is None:
        return []
    if item.raw_text is not None:  # no-summary ablation: the "keywords" of an item are its raw text
        return [cut_text(item.raw_text, 80)]
    return list(item.keywords)


def user_prefix(
    *,
    history: Sequence[str],
    neighbors: Sequence[Sequence[str]],
    items: Mapping[str, Candidate],
    config: PromptConfig,
    instruction: str | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> str:
    """The shared user prefix for a history of item ids (oldest first); history items show title + keywords."""
    kwargs: dict = {} if instruction is None else {"instruction": instruction}
    return build_prefix(
        history_keywords=[[items[i].title] + _item_keywords(items, i) if i in items else [i] for i in history],
        neighbor_keywords=neighbors,
        config=config,
        count_tokens=count_tokens,
        **kwargs,
    )


def sample_negative(rng: random.Random, catalogue: Sequence[str], interacted: set[str]) -> str:
    """A uniformly drawn item the user never interacted with."""
    if len(interacted) >= len(catalogue):
        raise ValueError("the user interacted with every item: no negative can be sampled")
    while True:
        item = catalogue[rng.randrange(len(catalogue))]
        if item not in interacted:
            return item


def build_yesno(
    *,
    sequences: Mapping[str, Sequence[str]],
    interacted: Mapping[str, set[str]],
    neighbors: Mapping[str, Sequence[Sequence[str]]],
    items: Mapping[str, Candidate],
    config: PromptConfig,
    per_user: int,
    seed: int,
) -> list[Example]:
    """Task 1: for each user's last ``per_user`` positions, the true next item (yes) and one negative (no)."""
    rng = random.Random(seed)
    catalogue = sorted(items)
    out: list[Example] = []
    for user in sorted(sequences):
        seq = list(sequences[user])
        seen = interacted.get(user, set(seq))
        for t in _positions(seq, per_user):
            prefix = user_prefix(history=seq[:t], neighbors=neighbors.get(user, ()), items=items, config=config)
            for item_id, label in ((seq[t], True), (sample_negative(rng, catalogue, seen), False)):
                cand = items[item_id]
                out.append(
                    Example("yesno", prefix, build_suffix(candidate=cand, config=config), answer(label),
                            item_id if (config.use_image and cand.has_image) else None)
                )
    return out


def build_next_keywords(
    *,
    sequences: Mapping[str, Sequence[str]],
    neighbors: Mapping[str, Sequence[Sequence[str]]],
    items: Mapping[str, Candidate],
    config: PromptConfig,
    per_user: int,
) -> list[Example]:
    """Task 2: history (+ neighbours) -> the keywords of the next item."""
    out: list[Example] = []
    for user in sorted(sequences):
        seq = list(sequences[user])
        for t in _positions(seq, per_user):
            prefix = user_prefix(history=seq[:t], neighbors=neighbors.get(user, ()), items=items, config=config,
                                 instruction=NEXT_KW_INSTRUCTION)
            out.append(Example("next_kw", prefix, "Keywords of the next item:",
                               _keywords_text(_item_keywords(items, seq[t]), config)))
    return out


def build_grounding(*, items: Mapping[str, Candidate], descriptions: Mapping[str, str],
                    config: PromptConfig) -> list[Example]:
    """Task 3: an item's text (title + description) and image -> its keywords."""
    out: list[Example] = []
    for item_id in sorted(items):
        item = items[item_id]
        image = config.use_image and item.has_image
        text = cut_text(f"{item.title}. {descriptions.get(item_id, '')}", config.max_candidate_chars)
        suffix = f"Item: {text}\n{config.image_token + chr(10) if image else ''}Keywords:"
        out.append(Example("grounding", "Describe the item with keywords.\n", suffix,
                           _keywords_text(_item_keywords(items, item_id), config), item_id if image else None))
    return out


def build_recovery(*, items: Mapping[str, Candidate], config: PromptConfig) -> list[Example]:
    """Task 4: an item's keywords -> its title."""
    out: list[Example] = []
    for item_id in sorted(items):
        kws = _keywords_text(_item_keywords(items, item_id), config)
        out.append(Example("recovery", "Name the item that these keywords describe.\n",
                           f"Keywords:{kws}\nTitle:", " " + " ".join(items[item_id].title.split())))
    return out


def mix_uniform(pools: Mapping[str, Sequence[Example]], *, n_total: int, seed: int) -> list[Example]:
    """``n_total`` examples with the tasks in equal shares (within one), shuffled deterministically.

    A task whose pool is smaller than its share is drawn with replacement; an empty pool is an error.
    """
    if not pools:
        raise ValueError("no task pools to mix")
    empty = [t for t, p in pools.items() if not p]
    if empty:
        raise ValueError(f"task(s) {empty} produced no examples: check the input tables")
    rng = random.Random(seed)
    names = sorted(pools)
    out: list[Example] = []
    for i, name in enumerate(names):
        share = n_total // len(names) + (1 if i < n_total % len(names) else 0)
        pool = list(pools[name])
        if share <= len(pool):
            out += rng.sample(pool, share)
        else:
            out += [pool[rng.randrange(len(pool))] for _ in range(share)]
    rng.shuffle(out)
    return out
