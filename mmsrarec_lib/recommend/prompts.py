"""The MMSRARec prompt: a deterministic text template split into a user PREFIX and a candidate SUFFIX.

Why the split: every candidate of a user shares the same prefix (instruction, the user's last ``n_history`` items as
keywords, the neighbours' keywords), so the scorer runs the prefix once and reuses its KV cache; only the short
suffix (the candidate's title, keywords/text and image, then the answer cue) is run per candidate. The full prompt is
*defined* as ``tokens(prefix) + tokens(suffix)`` (tokenised separately), so training, the naive scorer and the
shared-prefix scorer see exactly the same token ids.

Template (yes/no task)::

    You are a recommender. <instruction>
    User history (oldest first):
    1. kw, kw, kw
    ...
    Similar users liked: kw, kw, ...
    ------------------------------------------------ (prefix ends; suffix starts)
    Candidate: <title>. Keywords: kw, kw, ...
    <image>
    Will the user interact with the candidate next? Answer:

and the answer is `` yes`` or `` no`` (the first answer token is what the scorer reads).

Truncation policy (documented in docs/recommend.md; applied in this order, deterministic):
1. history: the last ``n_history`` items only; each item's keywords deduplicated (case-insensitive, first
   occurrence wins) and cut to ``keywords_per_item``;
2. neighbours: the first ``n_neighbors`` neighbours (they come sorted by similarity), their keywords pooled,
   deduplicated and cut to ``neighbor_keywords``;
3. when a token counter is given and the prefix is longer than ``max_prefix_tokens``: drop the oldest history item,
   then the last neighbour keyword, one at a time, until it fits (the newest history item is never dropped);
4. candidate: keywords cut to ``keywords_per_item``; raw text (the no-summary ablation) cut to
   ``max_candidate_chars`` characters at a word boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

INSTRUCTION = (
    "You are a recommender. Given the keywords of the items the user interacted with recently and the keywords "
    "of items similar users chose next, decide whether the user will interact with the candidate next."
)
YES = " yes"
NO = " no"
ANSWER_CUE = "Will the user interact with the candidate next? Answer:"


@dataclass(frozen=True)
class PromptConfig:
    """Sizes of the prompt; every cut is deterministic (see the module docstring)."""

    n_history: int = 5
    keywords_per_item: int = 6
    n_neighbors: int = 3
    neighbor_keywords: int = 12
    max_prefix_tokens: int = 256
    max_candidate_chars: int = 240
    image_token: str = "<image>"
    use_image: bool = True

    def __post_init__(self) -> None:
        for name in ("n_history", "keywords_per_item", "max_prefix_tokens", "max_candidate_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"PromptConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_neighbors < 0 or self.neighbor_keywords < 0:
            raise ValueError("PromptConfig.n_neighbors and neighbor_keywords must be >= 0")


@dataclass(frozen=True)
class Candidate:
    """What the suffix shows of one item: its title, keywords (or raw text) and whether it has an image."""

    item_id: str
    title: str
    keywords: tuple[str, ...] = ()
    raw_text: str | None = None  # set for the no-summary ablation: shown instead of the keywords
    has_image: bool = False


def dedup_keywords(keywords: Sequence[str], limit: int) -> list[str]:
    """Strip, drop empties and case-insensitive duplicates (first wins), keep at most ``limit``."""
    out: list[str] = []
    seen: set[str] = set()
    for kw in keywords:
        k = " ".join(str(kw).split())
        if not k or k.lower() in seen:
            continue
        seen.add(k.lower())
        out.append(k)
        if len(out) >= limit:
            break
    return out


def cut_text(text: str, max_chars: int) -> str:
    """``text`` with whitespace collapsed, cut to ``max_chars`` at a word boundary (``...`` marks a cut)."""
    text = " ".join((text or "").split())
    if len(text) <= max_chars:
        return text
    head = text[:max_chars].rsplit(" ", 1)[0] or text[:max_chars]
    return head + "..."


def _render_prefix(instruction: str, history: list[list[str]], neighbor_kw: list[str]) -> str:
    lines = [instruction, "User history (oldest first):"]
    lines += [f"{i}. {', '.join(kws) if kws else '(no keywords)'}" for i, kws in enumerate(history, 1)]
    lines.append(f"Similar users liked: {', '.join(neighbor_kw) if neighbor_kw else '(none)'}")
    return "\n".join(lines) + "\n"


def build_prefix(
    *,
    history_keywords: Sequence[Sequence[str]],
    neighbor_keywords: Sequence[Sequence[str]],
    config: PromptConfig,
    count_tokens: Callable[[str], int] | None = None,
    instruction: str = INSTRUCTION,
) -> str:
    """The user part of the prompt, shared by all of the user's candidates.

    ``history_keywords``: one keyword list per history item, oldest first (only the last ``n_history`` are used).
    ``neighbor_keywords``: one keyword list per neighbour, most similar first.
    """
    history = [dedup_keywords(k, config.keywords_per_item) for k in list(history_keywords)[-config.n_history :]]
    pooled = [kw for kws in list(neighbor_keywords)[: config.n_neighbors] for kw in kws]
    neigh = dedup_keywords(pooled, config.neighbor_keywords) if config.neighbor_keywords else []
    text = _render_prefix(instruction, history, neigh)
    if count_tokens is None:
        return text
    while count_tokens(text) > config.max_prefix_tokens and (len(history) > 1 or neigh):
        if len(history) > 1:
            history = history[1:]
        else:
            neigh = neigh[:-1]
        text = _render_prefix(instruction, history, neigh)
    return text


def candidate_description(candidate: Candidate, config: PromptConfig) -> str:
    """``<title>. Keywords: ...`` or, for the raw-text ablation, ``<title>. <text>``."""
    title = " ".join(candidate.title.split()) or candidate.item_id
    if candidate.raw_text is not None:
        body = cut_text(candidate.raw_text, config.max_candidate_chars)
        return f"{title}. {body}" if body else title
    kws = dedup_keywords(candidate.keywords, config.keywords_per_item)
    return f"{title}. Keywords: {', '.join(kws) if kws else '(none)'}"


def build_suffix(*, candidate: Candidate, config: PromptConfig) -> str:
    """The candidate part of the yes/no prompt (ends with the answer cue; the answer token follows)."""
    image = f"{config.image_token}\n" if (config.use_image and candidate.has_image) else ""
    return f"Candidate: {candidate_description(candidate, config)}\n{image}{ANSWER_CUE}"


def answer(label: bool) -> str:
    """The target text of the yes/no task."""
    return YES if label else NO
